/* A direct read of stack memory that was never written. */
TWIN
{
	volatile u64 x[2];
	x[0] = task->pid;
	return x[1] > 5;
}
