/* kfuncs: bpf_task_under_cgroup. A walked task (task->real_parent outside an
 * RCU section) passed to a KF_RCU kfunc: "must be a rcu pointer". */
TWIN
{
	return bpf_task_under_cgroup(task->real_parent, cgrp) ? 1 : 0;
}
