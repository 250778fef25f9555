/* A variable-offset stack write inside bounds, then a constant read. */
TWIN
{
	u8 buf[16] = {};
	u32 i = task->pid & 15;
	buf[i] = 1;
	return buf[3];
}
