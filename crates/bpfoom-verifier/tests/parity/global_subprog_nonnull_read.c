/* A global subprogram reading its memory argument without a NULL check. */
struct pair { u64 a; u64 b; };
__noinline int gread(struct pair *p)
{
	return p->a > p->b;
}
TWIN
{
	struct pair p = { .a = task->pid, .b = 1 };
	return gread(&p);
}
