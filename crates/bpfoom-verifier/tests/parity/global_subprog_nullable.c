/* A global subprogram with an __arg_nullable __arg_trusted task, called with NULL and with a task. */
__noinline int gsub(struct task_struct *t __arg_trusted __arg_nullable)
{
	if (!t)
		return 0;
	return t->pid;
}
TWIN
{
	return gsub(task) + gsub(0);
}
