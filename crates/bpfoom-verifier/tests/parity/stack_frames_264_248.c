/* Frames of 264 and 240 bytes: 504 bytes, but 272 + 240 = 512 after rounding. */
static __noinline int leaf(struct task_struct *t)
{
	char b[240];
	__builtin_memset(b, 1, sizeof(b));
	return b[t->pid & 127];
}
TWIN
{
	char a[264];
	__builtin_memset(a, 2, sizeof(a));
	return leaf(task) + a[task->pid & 255];
}
