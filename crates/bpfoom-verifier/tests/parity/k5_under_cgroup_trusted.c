/* kfuncs: bpf_task_under_cgroup. Trusted task and cgroup. */
TWIN
{
	return bpf_task_under_cgroup(task, cgrp) ? 1 : 0;
}
