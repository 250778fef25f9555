/* kfuncs: bpf_cgroup_release. A task released as a cgroup. */
TWIN
{
	struct task_struct *t = bpf_task_acquire(task);
	if (!t)
		return 0;
	bpf_cgroup_release((struct cgroup *)t);
	return 0;
}
