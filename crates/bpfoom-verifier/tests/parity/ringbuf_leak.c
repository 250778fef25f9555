/* maps: rb. A reserved record submitted on one path only. */
struct { __uint(type, BPF_MAP_TYPE_RINGBUF); __uint(max_entries, 4096); } rb SEC(".maps");
TWIN
{
	u64 *e = bpf_ringbuf_reserve(&rb, 8, 0);
	if (!e)
		return 0;
	*e = 1;
	if (task->pid > 5)
		bpf_ringbuf_submit(e, 0);
	return 0;
}
