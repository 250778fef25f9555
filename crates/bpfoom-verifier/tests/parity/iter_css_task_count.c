/* kfuncs: bpf_iter_css_task_*. Count tasks of a cgroup. */
TWIN
{
	struct task_struct *t;
	u32 n = 0;
	bpf_for_each(css_task, t, &cgrp->self, CSS_TASK_ITER_PROCS) {
		if (t->pid > 1)
			n++;
	}
	return n > 3;
}
