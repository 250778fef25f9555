/* kfuncs: bpf_task_acquire. An RCU pointer passed to a KF_RCU kfunc after the unlock. */
TWIN
{
	struct task_struct *p, *a;
	bpf_rcu_read_lock();
	p = task->real_parent;
	bpf_rcu_read_unlock();
	a = bpf_task_acquire(p);
	if (a)
		bpf_task_release(a);
	return 0;
}
