/* kfuncs: bpf_iter_num_*. helpers: bpf_probe_read_kernel. As
 * prec_iter_helper_size_ok with (n + 3) & 15: a size of up to 15 bytes into
 * an 8-byte buffer. */
#ifndef bpf_for /* libbpf 1.1 lacks it; bpf_oom.h has the same */
#define bpf_for(i, start, end) for (struct bpf_iter_num ___it __attribute__((aligned(8), cleanup(bpf_iter_num_destroy))), *___p __attribute__((unused)) = (bpf_iter_num_new(&___it, (start), (end)), (void)bpf_iter_num_destroy, (void *)0); ({ int *___t = bpf_iter_num_next(&___it); (___t && ((i) = *___t, (i) >= (start) && (i) < (end))); });)
#define bpf_repeat(N) for (struct bpf_iter_num ___it __attribute__((aligned(8), cleanup(bpf_iter_num_destroy))), *___p __attribute__((unused)) = (bpf_iter_num_new(&___it, 0, (N)), (void)bpf_iter_num_destroy, (void *)0); bpf_iter_num_next(&___it);)
#endif
TWIN
{
	char c[8] = {};
	u32 n = 0;
	bpf_repeat(20) {
		n = (n + 3) & 15;
	}
	bpf_probe_read_kernel(c, n, task->comm);
	return c[0] == 1;
}
