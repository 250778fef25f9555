/* kfuncs: bpf_cgroup_ancestor. The result may be NULL: using it unchecked is rejected. */
TWIN
{
	struct cgroup *a = bpf_cgroup_ancestor(cgrp, 0);
	int l = a->level;
	bpf_cgroup_release(a);
	return l == 0;
}
