/* A loop whose bound comes from an object field: no bound the verifier can see. */
TWIN
{
	u32 n = 0;
	u32 lim = task->pid;
	while (n < lim)
		n += 1;
	return n;
}
