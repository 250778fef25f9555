/* kfuncs: bpf_task_acquire, bpf_task_release. Acquire and release in a bounded loop. */
TWIN
{
	int n = 0;
	for (int i = 0; i < 8; i++) {
		struct task_struct *t = bpf_task_acquire(task);
		if (!t)
			continue;
		n += t->pid & 1;
		bpf_task_release(t);
	}
	return n;
}
