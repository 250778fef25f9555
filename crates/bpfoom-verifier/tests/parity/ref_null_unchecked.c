/* kfuncs: bpf_task_acquire. A RET_NULL result dereferenced without a check. */
TWIN
{
	struct task_struct *t = bpf_task_acquire(task);
	int p = t->pid;
	if (t)
		bpf_task_release(t);
	return p;
}
