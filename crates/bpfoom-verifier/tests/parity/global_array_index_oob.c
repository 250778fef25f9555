/* A global array indexed one past its end. */
u64 slots[32];
TWIN
{
	u32 i = task->pid;
	if (i > 32)
		return 0;
	slots[i] += 1;
	return 0;
}
