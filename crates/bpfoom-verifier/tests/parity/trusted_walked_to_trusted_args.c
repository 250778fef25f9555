/* kfuncs: bpf_iter_css_task_*. A walked pointer (cgrp->self.parent) to a
 * kfunc whose arguments must be trusted (bpf_iter_css_task_new). */
TWIN
{
	struct task_struct *t;
	int n = 0;
	bpf_for_each(css_task, t, cgrp->self.parent, CSS_TASK_ITER_PROCS) {
		n++;
	}
	return n;
}
