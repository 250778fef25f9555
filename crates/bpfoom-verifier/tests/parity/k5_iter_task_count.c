/* kfuncs: bpf_iter_task_*, bpf_rcu_read_lock. Count every process inside an RCU section. */
u32 seen;
TWIN
{
	struct task_struct *t;
	bpf_rcu_read_lock();
	bpf_for_each(task, t, NULL, BPF_TASK_ITER_ALL_PROCS) {
		if (t->pid > 1)
			seen++;
	}
	bpf_rcu_read_unlock();
	return 1;
}
