/* kfuncs: bpf_iter_task_*. The threads of a trusted task. */
u32 seen;
TWIN
{
	struct task_struct *t;
	bpf_rcu_read_lock();
	bpf_for_each(task, t, task, BPF_TASK_ITER_PROC_THREADS) {
		seen += t->pid;
	}
	bpf_rcu_read_unlock();
	return 1;
}
