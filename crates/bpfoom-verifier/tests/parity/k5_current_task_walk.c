/* helpers: bpf_get_current_task_btf. Walk from the current task (no NULL check needed). */
TWIN
{
	struct task_struct *t = bpf_get_current_task_btf();
	return t->real_parent->pid > 0;
}
