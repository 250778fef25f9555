/* kfuncs: bpf_task_acquire. task->group_leader inside an RCU section. */
TWIN
{
	struct task_struct *p;
	int r = 0;
	bpf_rcu_read_lock();
	p = bpf_task_acquire(task->group_leader);
	bpf_rcu_read_unlock();
	if (p) {
		r = p->tgid;
		bpf_task_release(p);
	}
	return r;
}
