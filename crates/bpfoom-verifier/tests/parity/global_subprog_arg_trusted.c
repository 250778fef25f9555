/* kfuncs: bpf_task_acquire. A global subprogram with an __arg_trusted task. */
__noinline int gsub(struct task_struct *t __arg_trusted)
{
	struct task_struct *a = bpf_task_acquire(t);
	int r;
	if (!a)
		return 0;
	r = a->pid;
	bpf_task_release(a);
	return r;
}
TWIN
{
	return gsub(task);
}
