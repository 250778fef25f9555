/* kfuncs: bpf_cgroup_ancestor. The acquired ancestor is never released: rejected. */
TWIN
{
	struct cgroup *a = bpf_cgroup_ancestor(cgrp, 0);
	if (!a)
		return 0;
	return a->level == 0;
}
