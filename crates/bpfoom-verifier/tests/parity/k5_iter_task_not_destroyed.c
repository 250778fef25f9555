/* kfuncs: bpf_iter_task_*. A task iterator not destroyed: rejected. */
TWIN
{
	struct bpf_iter_task it;
	struct task_struct *t;
	int pid = 0;
	bpf_rcu_read_lock();
	bpf_iter_task_new(&it, NULL, BPF_TASK_ITER_ALL_PROCS);
	t = bpf_iter_task_next(&it);
	if (t)
		pid = t->pid;
	bpf_rcu_read_unlock();
	return pid;
}
