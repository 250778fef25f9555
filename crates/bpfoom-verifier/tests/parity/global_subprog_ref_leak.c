/* kfuncs: bpf_task_acquire. A global subprogram that returns holding a reference. */
__noinline int gleak(struct task_struct *t __arg_trusted)
{
	struct task_struct *a = bpf_task_acquire(t);
	return a != 0;
}
TWIN
{
	return gleak(task);
}
