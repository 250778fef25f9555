/* kfuncs: bpf_iter_css_*. Leave a css loop at its first element. */
TWIN
{
	struct cgroup_subsys_state *p;
	int id = 0;
	bpf_rcu_read_lock();
	bpf_for_each(css, p, &cgrp->self, BPF_CGROUP_ITER_DESCENDANTS_POST) {
		id = p->id;
		break;
	}
	bpf_rcu_read_unlock();
	return id;
}
