/* maps: arr. A map value passed to a global subprogram's memory parameter. */
struct { __uint(type, BPF_MAP_TYPE_ARRAY); __uint(max_entries, 1); __type(key, u32); __type(value, u64); } arr SEC(".maps");
__noinline int gbump(u64 *v)
{
	if (!v)
		return 0;
	*v += 1;
	return *v > 3;
}
TWIN
{
	u32 k = 0;
	u64 *v = bpf_map_lookup_elem(&arr, &k);
	if (!v)
		return 0;
	return gbump(v);
}
