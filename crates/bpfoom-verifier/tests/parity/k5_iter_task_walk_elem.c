/* kfuncs: bpf_iter_task_*. Walk from an element: task->mm and task->signal reads. */
u64 seen;
TWIN
{
	struct task_struct *t;
	bpf_rcu_read_lock();
	bpf_for_each(task, t, NULL, BPF_TASK_ITER_ALL_PROCS) {
		struct mm_struct *mm = t->mm;
		if (mm && t->signal->oom_score_adj != -1000)
			seen += mm->total_vm;
	}
	bpf_rcu_read_unlock();
	return 1;
}
