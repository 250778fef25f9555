/* A variable-offset read of a partly written stack buffer. */
TWIN
{
	volatile u8 buf[16];
	u32 i = task->pid & 15;
	buf[0] = 1;
	return buf[i];
}
