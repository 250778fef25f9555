/* A store into .rodata through a cast-away const. */
const volatile u32 cfg = 3;
TWIN
{
	*(u32 *)&cfg = task->pid;
	return 0;
}
