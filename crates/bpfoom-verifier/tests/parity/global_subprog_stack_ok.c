/* A 200-byte frame calling a global function with a 200-byte frame. */
__noinline int gleaf(int x)
{
	char b[200];
	__builtin_memset(b, 1, sizeof(b));
	return b[x & 127];
}
TWIN
{
	char a[200];
	__builtin_memset(a, 2, sizeof(a));
	return gleaf(task->pid) + a[task->pid & 127];
}
