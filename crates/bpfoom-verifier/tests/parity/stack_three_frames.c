/* Three frames of 200, 160 and 160 bytes (520 bytes in all). */
static __noinline int leaf2(struct task_struct *t)
{
	char c[160];
	__builtin_memset(c, 3, sizeof(c));
	return c[t->pid & 127];
}
static __noinline int leaf1(struct task_struct *t)
{
	char b[160];
	__builtin_memset(b, 1, sizeof(b));
	return b[t->pid & 127] + leaf2(t);
}
TWIN
{
	char a[200];
	__builtin_memset(a, 2, sizeof(a));
	return leaf1(task) + a[task->pid & 127];
}
