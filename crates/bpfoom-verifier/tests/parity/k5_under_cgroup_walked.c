/* kfuncs: bpf_task_under_cgroup. A walked task->real_parent outside RCU is not trusted: rejected. */
TWIN
{
	return bpf_task_under_cgroup(task->real_parent, cgrp) ? 1 : 0;
}
