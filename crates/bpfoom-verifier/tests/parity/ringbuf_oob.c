/* maps: rb. A write past the reserved record. */
struct { __uint(type, BPF_MAP_TYPE_RINGBUF); __uint(max_entries, 4096); } rb SEC(".maps");
TWIN
{
	u64 *e = bpf_ringbuf_reserve(&rb, 8, 0);
	if (!e)
		return 0;
	e[1] = 1;
	bpf_ringbuf_discard(e, 0);
	return 0;
}
