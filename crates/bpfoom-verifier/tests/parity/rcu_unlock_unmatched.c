/* kfuncs: bpf_rcu_read_unlock. Unlock without lock. */
TWIN
{
	bpf_rcu_read_unlock();
	return 0;
}
