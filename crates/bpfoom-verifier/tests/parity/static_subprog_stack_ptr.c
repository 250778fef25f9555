/* A static subprogram writing through a pointer to the caller's stack. */
static __noinline void fill(u64 *out, struct task_struct *t)
{
	out[0] = t->pid;
	out[1] = t->tgid;
}
TWIN
{
	u64 v[2];
	fill(v, task);
	return v[0] + v[1] > 2;
}
