/* A walked pointer (task->group_leader) passed to an __arg_trusted parameter. */
__noinline int gsub(struct task_struct *t __arg_trusted)
{
	return t->pid;
}
TWIN
{
	return gsub(task->group_leader);
}
