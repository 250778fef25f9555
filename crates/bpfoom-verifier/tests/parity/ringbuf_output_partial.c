/* maps: rb. bpf_ringbuf_output of a partly initialised stack buffer. */
struct { __uint(type, BPF_MAP_TYPE_RINGBUF); __uint(max_entries, 4096); } rb SEC(".maps");
TWIN
{
	u64 buf[4];
	buf[0] = task->pid;
	buf[2] = 7;
	return bpf_ringbuf_output(&rb, buf, sizeof(buf), 0) == 0;
}
