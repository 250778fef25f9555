/* A variable-offset stack write that can go past the buffer (and the frame). */
TWIN
{
	volatile u8 buf[16] = {};
	u32 i = task->pid & 31;
	((volatile u8 *)buf)[i + 512 - 16] = 1;
	return buf[3];
}
