/* maps: rb. bpf_ringbuf_output of a buffer holding a spilled pointer. */
struct { __uint(type, BPF_MAP_TYPE_RINGBUF); __uint(max_entries, 4096); } rb SEC(".maps");
TWIN
{
	u64 buf[2];
	buf[0] = (u64)task;
	buf[1] = 1;
	return bpf_ringbuf_output(&rb, buf, sizeof(buf), 0) == 0;
}
