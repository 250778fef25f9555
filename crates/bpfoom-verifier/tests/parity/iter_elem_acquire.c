/* kfuncs: bpf_iter_css_task_*, bpf_task_acquire. The first task of a cgroup, kept past the loop. */
TWIN
{
	struct task_struct *t, *keep = 0;
	int r = 0;
	bpf_for_each(css_task, t, &cgrp->self, CSS_TASK_ITER_PROCS) {
		keep = bpf_task_acquire(t);
		break;
	}
	if (keep) {
		r = keep->pid;
		bpf_task_release(keep);
	}
	return r;
}
