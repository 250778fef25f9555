/* The 300-byte buffer is used only on the path that does not call the
 * 240-byte callee: Linux adds the deepest frames of both functions anyway. */
static __noinline int leaf(struct task_struct *t)
{
	char b[240];
	__builtin_memset(b, 1, sizeof(b));
	return b[t->pid & 127];
}
TWIN
{
	if (task->pid & 1) {
		volatile char a[300];
		for (int i = 0; i < 300; i += 8)
			a[i] = 1;
		return a[task->pid & 255];
	}
	return leaf(task);
}
