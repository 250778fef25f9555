/* kfuncs: bpf_task_acquire, bpf_task_release. Released twice. */
TWIN
{
	struct task_struct *t = bpf_task_acquire(task);
	if (!t)
		return 0;
	bpf_task_release(t);
	bpf_task_release(t);
	return 0;
}
