/* A walked pointer that is not RCU-safe (task->signal) read inside a section. */
TWIN
{
	int r;
	bpf_rcu_read_lock();
	r = task->signal->oom_score_adj;
	bpf_rcu_read_unlock();
	return r;
}
