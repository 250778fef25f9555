/* kfuncs: bpf_iter_css_*, bpf_iter_css_task_*. Nested iterators: the css
 * element (RCU) passed straight to bpf_iter_css_task_new. */
TWIN
{
	struct cgroup_subsys_state *p;
	struct task_struct *t;
	int n = 0;
	bpf_rcu_read_lock();
	bpf_for_each(css, p, &cgrp->self, BPF_CGROUP_ITER_DESCENDANTS_PRE) {
		bpf_for_each(css_task, t, p, CSS_TASK_ITER_PROCS) {
			n++;
		}
	}
	bpf_rcu_read_unlock();
	return n > 1;
}
