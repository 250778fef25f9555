/* Two frames of 260 and 248 bytes (Linux rounds each frame before summing:
 * 272 + 248 > 512). Variable indexes keep the whole arrays on the stack. */
static __noinline int leaf(struct task_struct *t)
{
	char b[248];
	__builtin_memset(b, 1, sizeof(b));
	return b[t->pid & 127];
}
TWIN
{
	char a[260];
	__builtin_memset(a, 2, sizeof(a));
	return leaf(task) + a[task->pid & 255];
}
