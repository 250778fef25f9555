/* helpers: bpf_loop. The callback indexes an array in its context with a checked index. */
struct actx { u64 v[8]; };
static long fill_cb(u64 i, void *c) { struct actx *x = c; if (i >= 8) return 1; x->v[i] = i * 3; return 0; }
TWIN
{
	struct actx c = {};
	bpf_loop(8, fill_cb, &c, 0);
	return c.v[2] == 6;
}
