/* A variable-offset read inside task->comm. */
TWIN
{
	u32 i = task->pid & 15;
	return task->comm[i];
}
