/* maps: h. A 4-byte stack key for an 8-byte-key map at the top of the frame. */
struct { __uint(type, BPF_MAP_TYPE_HASH); __uint(max_entries, 16); __type(key, u64); __type(value, u64); } h SEC(".maps");
TWIN
{
	u32 k = task->pid;
	u64 *v = bpf_map_lookup_elem(&h, (u64 *)&k);
	return v ? 1 : 0;
}
