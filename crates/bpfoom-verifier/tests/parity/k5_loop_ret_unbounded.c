/* helpers: bpf_loop. A callback returning its index (any value) is rejected. */
static long idx_cb(u64 i, void *c) { return i; }
TWIN
{
	bpf_loop(4, idx_cb, NULL, 0);
	return 0;
}
