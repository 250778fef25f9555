/* An __arg_nonnull memory parameter read without a check, passed a stack buffer. */
struct pair { u64 a; u64 b; };
__noinline int gread(struct pair *p __arg_nonnull)
{
	return p->a > p->b;
}
TWIN
{
	struct pair p = { .a = task->pid, .b = 1 };
	return gread(&p);
}
