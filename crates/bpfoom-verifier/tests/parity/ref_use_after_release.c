/* kfuncs: bpf_task_acquire, bpf_task_release. A field read after release. */
TWIN
{
	struct task_struct *t = bpf_task_acquire(task);
	if (!t)
		return 0;
	bpf_task_release(t);
	return t->pid;
}
