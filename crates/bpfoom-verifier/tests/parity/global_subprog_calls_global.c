/* A global subprogram calling another global subprogram. */
__noinline int ginner(int a)
{
	return a + 1;
}
__noinline int gouter(int a)
{
	return ginner(a) * 2;
}
TWIN
{
	return gouter(task->pid);
}
