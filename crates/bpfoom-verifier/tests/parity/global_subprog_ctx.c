/* A global subprogram taking the program's context (__arg_ctx). */
__noinline int gctx(void *ctx __arg_ctx)
{
	return ctx != 0;
}
TWIN
{
	return gctx(0);
}
