/* kfuncs: bpf_iter_css_task_*, bpf_task_under_cgroup. The css_task
 * iterator's element passed to a KF_RCU kfunc: accepted where the kernel
 * trusts iterator elements, "must be a rcu pointer" where it does not. */
TWIN
{
	struct task_struct *t;
	int r = 0;
	bpf_for_each(css_task, t, &cgrp->self, CSS_TASK_ITER_PROCS) {
		r = bpf_task_under_cgroup(t, cgrp);
		break;
	}
	return r;
}
