/* kfuncs: bpf_cgroup_ancestor, bpf_cgroup_release. Acquire, read, release. */
TWIN
{
	struct cgroup *a = bpf_cgroup_ancestor(cgrp, 0);
	int l;
	if (!a)
		return 0;
	l = a->level;
	bpf_cgroup_release(a);
	return l == 0;
}
