/* kfuncs: bpf_iter_css_*, bpf_iter_css_task_*. Nested: the css element's
 * cgroup taken with bpf_cgroup_from_id before iterating its tasks. */
TWIN
{
	struct cgroup_subsys_state *p;
	struct task_struct *t;
	int n = 0;
	bpf_rcu_read_lock();
	bpf_for_each(css, p, &cgrp->self, BPF_CGROUP_ITER_DESCENDANTS_PRE) {
		struct cgroup *c = bpf_cgroup_from_id(p->serial_nr);
		if (!c)
			continue;
		bpf_for_each(css_task, t, &c->self, CSS_TASK_ITER_PROCS) {
			n++;
		}
		bpf_cgroup_release(c);
	}
	bpf_rcu_read_unlock();
	return n > 1;
}
