/* kfuncs: bpf_rcu_read_lock. Lock without unlock at exit. */
TWIN
{
	bpf_rcu_read_lock();
	return task->pid > 1;
}
