/* A loop that never changes its state. */
TWIN
{
	volatile int x = 1;
	while (task->pid != 12345)
		x = 1;
	return x;
}
