/* kfuncs: bpf_cgroup_ancestor, bpf_iter_num_*. Every level from the root down, in a loop. */
TWIN
{
	struct bpf_iter_num it;
	struct cgroup *a;
	int *v, deepest = -1;
	bpf_iter_num_new(&it, 0, 8);
	while ((v = bpf_iter_num_next(&it))) {
		a = bpf_cgroup_ancestor(cgrp, *v);
		if (!a)
			break;
		deepest = a->level;
		bpf_cgroup_release(a);
	}
	bpf_iter_num_destroy(&it);
	return deepest >= 0;
}
