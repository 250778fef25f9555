/* kfuncs: bpf_task_acquire. An acquired reference never released. */
TWIN
{
	struct task_struct *t = bpf_task_acquire(task);
	return t != 0;
}
