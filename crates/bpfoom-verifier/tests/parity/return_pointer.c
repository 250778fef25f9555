/* A pointer returned as the body's value (through r & 1 in the wrapper). */
TWIN
{
	return (int)(unsigned long)task->real_parent;
}
