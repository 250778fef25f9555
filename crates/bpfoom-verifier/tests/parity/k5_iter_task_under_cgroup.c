/* kfuncs: bpf_iter_task_*, bpf_task_under_cgroup. Elements (RCU pointers) passed to a KF_RCU kfunc. */
u32 seen;
TWIN
{
	struct task_struct *t;
	bpf_rcu_read_lock();
	bpf_for_each(task, t, NULL, BPF_TASK_ITER_ALL_PROCS) {
		if (bpf_task_under_cgroup(t, cgrp))
			seen++;
	}
	bpf_rcu_read_unlock();
	return 1;
}
