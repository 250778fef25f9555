/* A global subprogram on scalars. */
__noinline int gsum(int a, int b)
{
	return a * 3 + b;
}
TWIN
{
	return gsum(task->pid, 4);
}
