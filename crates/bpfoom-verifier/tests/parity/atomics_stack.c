/* Atomic add on a stack slot. */
TWIN
{
	u64 x = task->pid;
	__sync_fetch_and_add(&x, 1);
	return x > 3;
}
