/* A global subprogram taking a plain struct task_struct * (not trusted in Linux). */
__noinline int gsub(struct task_struct *t)
{
	if (!t)
		return 0;
	return t->pid;
}
TWIN
{
	return gsub(task);
}
