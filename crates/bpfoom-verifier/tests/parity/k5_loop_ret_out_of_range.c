/* helpers: bpf_loop. A callback returning 2 (outside [0, 1]) is rejected. */
static long two_cb(u64 i, void *c) { return 2; }
TWIN
{
	bpf_loop(4, two_cb, NULL, 0);
	return 0;
}
