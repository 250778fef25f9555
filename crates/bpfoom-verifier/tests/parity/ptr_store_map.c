/* maps: arr. A kernel pointer value stored into a map value. */
struct { __uint(type, BPF_MAP_TYPE_ARRAY); __uint(max_entries, 1); __type(key, u32); __type(value, u64); } arr SEC(".maps");
TWIN
{
	u32 k = 0;
	u64 *v = bpf_map_lookup_elem(&arr, &k);
	if (!v)
		return 0;
	*v = (u64)task->real_parent;
	return 0;
}
