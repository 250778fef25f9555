/* kfuncs: bpf_task_acquire, bpf_rcu_read_lock. task->real_parent inside an RCU
 * section is an RCU pointer: bpf_task_acquire (KF_RCU) takes it. */
TWIN
{
	struct task_struct *p;
	int r = 0;
	bpf_rcu_read_lock();
	p = bpf_task_acquire(task->real_parent);
	if (p) {
		r = p->pid;
		bpf_task_release(p);
	}
	bpf_rcu_read_unlock();
	return r;
}
