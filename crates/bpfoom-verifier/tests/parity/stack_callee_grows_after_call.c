/* Three frames: the middle one touches its 200 bytes only after its own
 * callee (160 bytes) returns: 160 + 208 + 160 > 512. */
static __noinline int leaf2(struct task_struct *t)
{
	char c[160];
	__builtin_memset(c, 3, sizeof(c));
	return c[t->pid & 127];
}
static __noinline int leaf1(struct task_struct *t)
{
	int r = leaf2(t);
	volatile char b[200];
	for (int i = 0; i < 200; i += 8)
		b[i] = r;
	return b[t->pid & 127];
}
TWIN
{
	char a[160];
	__builtin_memset(a, 2, sizeof(a));
	return leaf1(task) + a[task->pid & 127];
}
