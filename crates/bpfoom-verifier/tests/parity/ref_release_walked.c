/* kfuncs: bpf_task_release. Releasing a pointer that was never acquired. */
TWIN
{
	bpf_task_release(task->real_parent);
	return 0;
}
