/* Two frames well under the limit. */
static __noinline int leaf(struct task_struct *t)
{
	volatile char b[128];
	b[0] = t->pid;
	b[127] = 1;
	return b[0] + b[127];
}
TWIN
{
	volatile char a[128];
	a[0] = 1;
	a[127] = 2;
	return leaf(task) + a[0] + a[127];
}
