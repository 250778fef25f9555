/* kfuncs: bpf_task_from_pid. A RET_NULL result passed on without a check. */
TWIN
{
	struct task_struct *t = bpf_task_from_pid(task->pid);
	bpf_task_release(t);
	return 0;
}
