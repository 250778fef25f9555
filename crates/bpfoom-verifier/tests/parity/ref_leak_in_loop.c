/* kfuncs: bpf_task_acquire, bpf_task_release. The loop keeps only the last reference. */
TWIN
{
	struct task_struct *t = 0;
	for (int i = 0; i < 4; i++)
		t = bpf_task_acquire(task);
	if (t)
		bpf_task_release(t);
	return 0;
}
