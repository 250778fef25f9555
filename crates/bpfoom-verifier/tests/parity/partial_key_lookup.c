/* maps: h. A key of which only half is written, passed to a lookup. */
struct { __uint(type, BPF_MAP_TYPE_HASH); __uint(max_entries, 16); __type(key, u64); __type(value, u64); } h SEC(".maps");
TWIN
{
	u64 key;
	*(u32 *)&key = task->pid;
	u64 *v = bpf_map_lookup_elem(&h, &key);
	return v ? 1 : 0;
}
