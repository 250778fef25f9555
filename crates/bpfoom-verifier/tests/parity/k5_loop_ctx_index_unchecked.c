/* helpers: bpf_loop. The callback indexes its context with the unchecked index: rejected. */
struct actx { u64 v[8]; };
static long fill_cb(u64 i, void *c) { struct actx *x = c; x->v[i] = i; return 0; }
TWIN
{
	struct actx c = {};
	bpf_loop(8, fill_cb, &c, 0);
	return c.v[2] == 2;
}
