/* kfuncs: bpf_rcu_read_lock. Nested RCU sections. */
TWIN
{
	int r;
	bpf_rcu_read_lock();
	bpf_rcu_read_lock();
	r = task->real_parent->pid;
	bpf_rcu_read_unlock();
	bpf_rcu_read_unlock();
	return r;
}
