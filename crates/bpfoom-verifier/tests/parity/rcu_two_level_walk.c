/* kfuncs: bpf_task_acquire. task->real_parent->real_parent inside an RCU section. */
TWIN
{
	struct task_struct *p;
	int r = 0;
	bpf_rcu_read_lock();
	p = bpf_task_acquire(task->real_parent->real_parent);
	bpf_rcu_read_unlock();
	if (p) {
		r = p->pid;
		bpf_task_release(p);
	}
	return r;
}
