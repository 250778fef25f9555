/* A static subprogram returning a pointer to its own stack. */
static __noinline u64 *bad(struct task_struct *t)
{
	u64 x[2];
	x[0] = t->pid;
	return (u64 *)((volatile u64 *)x);
}
TWIN
{
	u64 *p = bad(task);
	return p != 0;
}
