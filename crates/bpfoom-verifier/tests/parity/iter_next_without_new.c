/* kfuncs: bpf_iter_css_task_*. next on an iterator that was never created. */
TWIN
{
	struct bpf_iter_css_task it;
	struct task_struct *t = bpf_iter_css_task_next(&it);
	return t ? t->pid : 0;
}
