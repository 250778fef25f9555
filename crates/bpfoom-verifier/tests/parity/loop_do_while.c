/* A do-while loop counting down from a masked value. */
TWIN
{
	u32 n = task->pid & 31;
	u32 s = 0;
	do {
		s += n;
	} while (n-- > 0);
	return s > 10;
}
