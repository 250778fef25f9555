/* A 260-byte frame calling a global function with a 248-byte frame. */
__noinline int gleaf(int x)
{
	char b[248];
	__builtin_memset(b, 1, sizeof(b));
	return b[x & 127];
}
TWIN
{
	char a[260];
	__builtin_memset(a, 2, sizeof(a));
	return gleaf(task->pid) + a[task->pid & 255];
}
