/* helpers: bpf_loop. A callback that runs its own bpf_loop. */
struct nctx { u64 sum; };
static long inner_cb(u64 i, void *c) { struct nctx *x = c; x->sum += i; return 0; }
static long outer_cb(u64 i, void *c) { bpf_loop(3, inner_cb, c, 0); return 0; }
TWIN
{
	struct nctx c = {};
	bpf_loop(3, outer_cb, &c, 0);
	return c.sum > 2;
}
