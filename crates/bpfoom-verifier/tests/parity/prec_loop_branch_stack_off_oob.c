/* A bounded loop counts data-dependent branches (n <= 9); n indexes
 * an 8-element stack array after the loop. */
#ifndef bpf_for /* libbpf 1.1 lacks it; bpf_oom.h has the same */
#define bpf_for(i, start, end) for (struct bpf_iter_num ___it __attribute__((aligned(8), cleanup(bpf_iter_num_destroy))), *___p __attribute__((unused)) = (bpf_iter_num_new(&___it, (start), (end)), (void)bpf_iter_num_destroy, (void *)0); ({ int *___t = bpf_iter_num_next(&___it); (___t && ((i) = *___t, (i) >= (start) && (i) < (end))); });)
#define bpf_repeat(N) for (struct bpf_iter_num ___it __attribute__((aligned(8), cleanup(bpf_iter_num_destroy))), *___p __attribute__((unused)) = (bpf_iter_num_new(&___it, 0, (N)), (void)bpf_iter_num_destroy, (void *)0); bpf_iter_num_next(&___it);)
#endif
TWIN
{
	u64 buf[8] = {};
	u32 n = 0;
#pragma clang loop unroll(disable)
	for (int i = 0; i < 9; i++)
		if (task->pid & (1 << i))
			n++;
	((volatile u64 *)buf)[n] = 1;
	return buf[task->pid & 7] > 0;
}
