/* maps: rb. Reserve, fill, submit. */
struct { __uint(type, BPF_MAP_TYPE_RINGBUF); __uint(max_entries, 4096); } rb SEC(".maps");
struct ev { u32 pid; u32 tgid; u64 t; };
TWIN
{
	struct ev *e = bpf_ringbuf_reserve(&rb, sizeof(*e), 0);
	if (!e)
		return 0;
	e->pid = task->pid;
	e->tgid = task->tgid;
	e->t = bpf_ktime_get_ns();
	bpf_ringbuf_submit(e, 0);
	return 0;
}
