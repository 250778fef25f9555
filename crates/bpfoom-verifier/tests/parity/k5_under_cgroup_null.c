/* kfuncs: bpf_task_under_cgroup. A NULL task: rejected. */
TWIN
{
	return bpf_task_under_cgroup(NULL, cgrp) ? 1 : 0;
}
