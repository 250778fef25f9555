/* kfuncs: bpf_iter_css_*, bpf_rcu_read_lock. The css iterator inside an RCU section. */
TWIN
{
	struct cgroup_subsys_state *p;
	int n = 0;
	bpf_rcu_read_lock();
	bpf_for_each(css, p, &cgrp->self, BPF_CGROUP_ITER_DESCENDANTS_PRE) {
		if (p->cgroup && p->cgroup->level > 1)
			n++;
	}
	bpf_rcu_read_unlock();
	return n > 1;
}
