/* helpers: bpf_loop. kfuncs: bpf_task_from_pid. A callback that keeps a reference leaks it: rejected. */
static long leak_cb(u64 i, void *c) { struct task_struct *t = bpf_task_from_pid(i + 1); return t ? 1 : 0; }
TWIN
{
	bpf_loop(4, leak_cb, NULL, 0);
	return 0;
}
