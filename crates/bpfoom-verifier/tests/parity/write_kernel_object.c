/* A store into a kernel object. */
TWIN
{
	task->pid = 5;
	return 0;
}
