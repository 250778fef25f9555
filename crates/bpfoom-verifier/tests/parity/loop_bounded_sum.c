/* A bounded loop over a stack array. */
TWIN
{
	u32 a[8];
	u32 s = 0;
	for (int i = 0; i < 8; i++)
		a[i] = task->pid + i;
	for (int i = 0; i < 8; i++)
		s += a[i];
	return s > 100;
}
