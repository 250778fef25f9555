/* A global (non-static) 240-byte callee; the caller's 280-byte frame is
 * touched only after it returns (288 + 240 > 512). */
__noinline int gleaf(int x)
{
	char b[240];
	__builtin_memset(b, 1, sizeof(b));
	return b[x & 127];
}
TWIN
{
	int r = gleaf(task->pid);
	volatile char a[280];
	for (int i = 0; i < 280; i += 8)
		a[i] = r;
	return a[task->pid & 255];
}
