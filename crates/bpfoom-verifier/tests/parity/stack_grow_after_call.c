/* The caller's 280-byte frame is touched only after a 240-byte callee
 * returns: Linux counts each function's deepest frame over all paths
 * (288 + 240 > 512), not the stack in use at the call. */
static __noinline int leaf(struct task_struct *t)
{
	char b[240];
	__builtin_memset(b, 1, sizeof(b));
	return b[t->pid & 127];
}
TWIN
{
	int r = leaf(task);
	volatile char a[280];
	for (int i = 0; i < 280; i += 8)
		a[i] = r;
	return a[task->pid & 255];
}
