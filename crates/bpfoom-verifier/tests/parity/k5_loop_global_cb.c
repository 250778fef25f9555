/* helpers: bpf_loop. A global (non-static) callback. */
__noinline long glob_cb(u64 i, void *c) { return 0; }
TWIN
{
	return bpf_loop(3, glob_cb, NULL, 0) == 3;
}
