/* maps: arr. Atomic add, fetch-add and cmpxchg on a map value. */
struct { __uint(type, BPF_MAP_TYPE_ARRAY); __uint(max_entries, 1); __type(key, u32); __type(value, u64); } arr SEC(".maps");
TWIN
{
	u32 k = 0;
	u64 *v = bpf_map_lookup_elem(&arr, &k);
	if (!v)
		return 0;
	__sync_fetch_and_add(v, 1);
	u64 o = __sync_fetch_and_add(v, 2);
	u64 c = __sync_val_compare_and_swap(v, o, 7);
	return c > 3;
}
