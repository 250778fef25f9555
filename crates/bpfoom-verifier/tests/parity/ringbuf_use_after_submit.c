/* maps: rb. A write after submit. */
struct { __uint(type, BPF_MAP_TYPE_RINGBUF); __uint(max_entries, 4096); } rb SEC(".maps");
TWIN
{
	u64 *e = bpf_ringbuf_reserve(&rb, 8, 0);
	if (!e)
		return 0;
	bpf_ringbuf_submit(e, 0);
	*e = 2;
	return 0;
}
