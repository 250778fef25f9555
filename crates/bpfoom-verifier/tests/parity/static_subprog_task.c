/* A static subprogram taking the trusted task (verified in the caller's context). */
static __noinline int ssub(struct task_struct *t)
{
	return t->pid;
}
TWIN
{
	return ssub(task) > 1;
}
