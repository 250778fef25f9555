/* maps: arr. Arithmetic on a map value pointer before its NULL check. */
struct { __uint(type, BPF_MAP_TYPE_ARRAY); __uint(max_entries, 4); __type(key, u32); __type(value, u64); } arr SEC(".maps");
TWIN
{
	u32 k = 0;
	u64 *v = bpf_map_lookup_elem(&arr, &k);
	u32 *w = (u32 *)((char *)v + 4);
	if (!v)
		return 0;
	return *w;
}
