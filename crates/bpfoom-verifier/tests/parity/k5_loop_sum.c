/* helpers: bpf_loop. A callback sums into a context on the caller's stack. */
struct lctx { u64 sum; u32 n; };
static long add_cb(u64 i, void *c) { struct lctx *x = c; x->sum += i; x->n++; return 0; }
TWIN
{
	struct lctx c = {};
	long r = bpf_loop(10, add_cb, &c, 0);
	return r == 10 && c.sum > 1;
}
