/* A global subprogram taking a pointer to a struct of the program (memory of its size). */
struct pair { u64 a; u64 b; };
__noinline int gpair(struct pair *p)
{
	if (!p)
		return 0;
	return p->a + p->b > 4;
}
TWIN
{
	struct pair p = { .a = task->pid, .b = 2 };
	return gpair(&p);
}
