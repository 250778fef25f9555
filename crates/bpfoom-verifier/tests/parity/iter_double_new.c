/* kfuncs: bpf_iter_css_task_*. An iterator created twice in the same slot. */
TWIN
{
	struct bpf_iter_css_task it;
	bpf_iter_css_task_new(&it, &cgrp->self, CSS_TASK_ITER_PROCS);
	bpf_iter_css_task_new(&it, &cgrp->self, CSS_TASK_ITER_PROCS);
	bpf_iter_css_task_destroy(&it);
	return 0;
}
