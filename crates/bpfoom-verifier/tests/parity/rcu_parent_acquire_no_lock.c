/* kfuncs: bpf_task_acquire. task->real_parent outside an RCU section, to a KF_RCU kfunc. */
TWIN
{
	struct task_struct *p;
	int r = 0;
	p = bpf_task_acquire(task->real_parent);
	if (p) {
		r = p->pid;
		bpf_task_release(p);
	}
	return r;
}
