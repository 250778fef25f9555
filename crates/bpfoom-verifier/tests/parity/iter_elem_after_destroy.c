/* kfuncs: bpf_iter_css_task_*. A task element used after the iterator is destroyed. */
TWIN
{
	struct bpf_iter_css_task it;
	struct task_struct *t;
	int r = 0;
	bpf_iter_css_task_new(&it, &cgrp->self, CSS_TASK_ITER_PROCS);
	t = bpf_iter_css_task_next(&it);
	bpf_iter_css_task_destroy(&it);
	if (t)
		r = t->pid;
	return r;
}
