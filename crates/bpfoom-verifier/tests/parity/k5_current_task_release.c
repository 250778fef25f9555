/* helpers: bpf_get_current_task_btf. kfuncs: bpf_task_release. Not a reference: releasing it is rejected. */
TWIN
{
	struct task_struct *t = bpf_get_current_task_btf();
	bpf_task_release(t);
	return 0;
}
