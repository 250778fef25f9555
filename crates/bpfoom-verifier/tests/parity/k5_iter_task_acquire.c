/* kfuncs: bpf_iter_task_*, bpf_task_acquire. Keep one task past the RCU section by acquiring it. */
TWIN
{
	struct task_struct *t, *v = NULL;
	int pid;
	bpf_rcu_read_lock();
	bpf_for_each(task, t, NULL, BPF_TASK_ITER_ALL_PROCS) {
		if (t->pid == 1) {
			v = bpf_task_acquire(t);
			break;
		}
	}
	bpf_rcu_read_unlock();
	if (!v)
		return 0;
	pid = v->pid;
	bpf_task_release(v);
	return pid == 1;
}
