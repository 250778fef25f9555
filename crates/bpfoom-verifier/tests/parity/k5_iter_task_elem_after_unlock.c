/* kfuncs: bpf_iter_task_*, bpf_task_under_cgroup. An element used after bpf_rcu_read_unlock is no longer RCU-protected: rejected. */
TWIN
{
	struct task_struct *t, *last = NULL;
	bpf_rcu_read_lock();
	bpf_for_each(task, t, NULL, BPF_TASK_ITER_ALL_PROCS) {
		last = t;
		break;
	}
	bpf_rcu_read_unlock();
	if (!last)
		return 0;
	return bpf_task_under_cgroup(last, cgrp);
}
