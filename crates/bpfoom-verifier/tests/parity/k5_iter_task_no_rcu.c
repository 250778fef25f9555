/* kfuncs: bpf_iter_task_*. Outside an RCU section in a sleepable program: rejected. */
TWIN
{
	struct task_struct *t;
	u32 n = 0;
	bpf_for_each(task, t, NULL, BPF_TASK_ITER_ALL_PROCS) {
		n++;
	}
	return n > 3;
}
