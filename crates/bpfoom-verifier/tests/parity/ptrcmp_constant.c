/* A pointer compared with a non-zero constant. */
TWIN
{
	if ((unsigned long)task->real_parent > 4096)
		return 1;
	return 0;
}
