/* maps: arr. A lookup result used without its NULL check. */
struct { __uint(type, BPF_MAP_TYPE_ARRAY); __uint(max_entries, 1); __type(key, u32); __type(value, u64); } arr SEC(".maps");
TWIN
{
	u32 k = 0;
	u64 *v = bpf_map_lookup_elem(&arr, &k);
	return *v > 1;
}
