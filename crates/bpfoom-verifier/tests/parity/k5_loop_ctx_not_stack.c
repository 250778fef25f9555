/* helpers: bpf_loop. The context must be the stack or NULL: a task is rejected. */
static long stop_cb(u64 i, void *c) { return 1; }
TWIN
{
	bpf_loop(4, stop_cb, task, 0);
	return 0;
}
