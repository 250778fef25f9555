/* helpers: bpf_get_current_task_btf. A trusted, never-NULL task. */
TWIN
{
	struct task_struct *t = bpf_get_current_task_btf();
	return t->pid > 0;
}
