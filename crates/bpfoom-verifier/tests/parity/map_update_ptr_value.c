/* maps: arr. bpf_map_update_elem with a value holding a kernel pointer. */
struct { __uint(type, BPF_MAP_TYPE_ARRAY); __uint(max_entries, 4); __type(key, u32); __type(value, u64); } arr SEC(".maps");
TWIN
{
	u32 k = 1;
	u64 v = (u64)task->real_parent;
	bpf_map_update_elem(&arr, &k, &v, BPF_ANY);
	return 0;
}
