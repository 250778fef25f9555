/* helpers: bpf_get_current_task_btf. kfuncs: bpf_task_under_cgroup. */
TWIN
{
	return bpf_task_under_cgroup(bpf_get_current_task_btf(), cgrp) ? 1 : 0;
}
