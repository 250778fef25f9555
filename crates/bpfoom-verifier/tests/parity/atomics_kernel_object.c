/* An atomic add on a kernel object. */
TWIN
{
	__sync_fetch_and_add(&task->pid, 1);
	return 0;
}
