/* maps: arr. A masked variable offset into an 8-byte map value. */
struct { __uint(type, BPF_MAP_TYPE_ARRAY); __uint(max_entries, 4); __type(key, u32); __type(value, u64); } arr SEC(".maps");
TWIN
{
	u32 k = 0;
	u8 *v = bpf_map_lookup_elem(&arr, &k);
	if (!v)
		return 0;
	return v[task->pid & 7];
}
