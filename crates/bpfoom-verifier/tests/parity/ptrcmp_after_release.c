/* kfuncs: bpf_task_acquire, bpf_task_release
 * A released reference compared with a live pointer: after the release it is
 * no longer a pointer to a live object. */
TWIN
{
	struct task_struct *t = bpf_task_acquire(task);
	if (!t)
		return 0;
	bpf_task_release(t);
	return t == task;
}
