/* Two frames of 260 and 248 bytes (Linux rounds each frame before summing). */
static __noinline int leaf(struct task_struct *t)
{
	volatile char b[248];
	b[0] = t->pid;
	b[247] = 1;
	return b[0] + b[247];
}
TWIN
{
	volatile char a[260];
	a[0] = 1;
	a[259] = 2;
	return leaf(task) + a[0] + a[259];
}
