/* kfuncs: bpf_iter_css_task_*. An iterator never destroyed. */
TWIN
{
	struct bpf_iter_css_task it;
	struct task_struct *t;
	bpf_iter_css_task_new(&it, &cgrp->self, CSS_TASK_ITER_PROCS);
	t = bpf_iter_css_task_next(&it);
	return t ? t->pid : 0;
}
