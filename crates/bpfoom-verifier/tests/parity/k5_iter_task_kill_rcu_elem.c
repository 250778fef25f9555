/* kfuncs: bpf_iter_task_*, bpf_task_release. Releasing an RCU element (no reference): rejected. */
TWIN
{
	struct task_struct *t;
	bpf_rcu_read_lock();
	bpf_for_each(task, t, NULL, BPF_TASK_ITER_ALL_PROCS) {
		bpf_task_release(t);
		break;
	}
	bpf_rcu_read_unlock();
	return 1;
}
