/* kfuncs: bpf_iter_num_*. A count (n++) around an iterator loop that
 * is used after it only in a way that needs no exact value (n & 1 returned
 * through the wrapper's r & 1 needs no precision: the return check is on
 * the wrapper's own value): imprecise, widened, converges. */
#ifndef bpf_for /* libbpf 1.1 lacks it; bpf_oom.h has the same */
#define bpf_for(i, start, end) for (struct bpf_iter_num ___it __attribute__((aligned(8), cleanup(bpf_iter_num_destroy))), *___p __attribute__((unused)) = (bpf_iter_num_new(&___it, (start), (end)), (void)bpf_iter_num_destroy, (void *)0); ({ int *___t = bpf_iter_num_next(&___it); (___t && ((i) = *___t, (i) >= (start) && (i) < (end))); });)
#define bpf_repeat(N) for (struct bpf_iter_num ___it __attribute__((aligned(8), cleanup(bpf_iter_num_destroy))), *___p __attribute__((unused)) = (bpf_iter_num_new(&___it, 0, (N)), (void)bpf_iter_num_destroy, (void *)0); bpf_iter_num_next(&___it);)
#endif
TWIN
{
	u32 n = 0;
	bpf_repeat(20) {
		n++;
	}
	return n;
}
