/* A 4-byte stack buffer passed where the prototype says 16 bytes of memory. */
struct pair { u64 a; u64 b; };
__noinline int gpair(struct pair *p)
{
	if (!p)
		return 0;
	return p->a > 2;
}
TWIN
{
	u32 x = task->pid;
	return gpair((struct pair *)&x);
}
