/* helpers: bpf_loop. A callback returning a pointer is rejected. */
struct lctx { u64 sum; };
static long ptr_cb(u64 i, void *c) { return (long)c; }
TWIN
{
	struct lctx c = {};
	bpf_loop(4, ptr_cb, &c, 0);
	return c.sum > 0;
}
