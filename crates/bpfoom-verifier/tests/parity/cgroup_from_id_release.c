/* kfuncs: bpf_cgroup_from_id, bpf_cgroup_release. */
TWIN
{
	struct cgroup *c = bpf_cgroup_from_id(task->pid);
	int l;
	if (!c)
		return 0;
	l = c->level;
	bpf_cgroup_release(c);
	return l;
}
