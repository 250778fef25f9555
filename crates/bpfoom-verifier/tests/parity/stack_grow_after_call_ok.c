/* As stack_grow_after_call with a 200-byte callee: 288 + 208 fits. */
static __noinline int leaf(struct task_struct *t)
{
	char b[200];
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
