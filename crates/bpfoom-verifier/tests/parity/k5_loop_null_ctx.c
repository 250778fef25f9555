/* helpers: bpf_loop. NULL context; the callback stops the loop. */
static long stop_cb(u64 i, void *c) { return i >= 3; }
TWIN
{
	return bpf_loop(100, stop_cb, NULL, 0) > 3;
}
