/* helpers: bpf_loop. kfuncs: bpf_task_from_pid, bpf_task_release. A callback acquires and releases a reference. */
struct tctx { u32 found; };
static long find_cb(u64 i, void *c) { struct tctx *x = c; struct task_struct *t = bpf_task_from_pid(i + 1); if (!t) return 0; x->found++; bpf_task_release(t); return 0; }
TWIN
{
	struct tctx c = {};
	bpf_loop(4, find_cb, &c, 0);
	return c.found > 0;
}
