/* A .rodata value known at verification time prunes a branch with a leak. */
const volatile u32 mode = 0;
TWIN
{
	if (mode == 1) {
		struct task_struct *t = bpf_task_acquire(task);
		return t != 0;
	}
	return 0;
}
