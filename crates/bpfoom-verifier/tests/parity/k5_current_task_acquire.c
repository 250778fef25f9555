/* helpers: bpf_get_current_task_btf. kfuncs: bpf_task_acquire. Trusted enough to acquire. */
TWIN
{
	struct task_struct *t = bpf_task_acquire(bpf_get_current_task_btf());
	int pid;
	if (!t)
		return 0;
	pid = t->pid;
	bpf_task_release(t);
	return pid > 0;
}
