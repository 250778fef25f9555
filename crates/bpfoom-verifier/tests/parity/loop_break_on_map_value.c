/* maps: arr. A bounded loop that breaks on a map value. */
struct { __uint(type, BPF_MAP_TYPE_ARRAY); __uint(max_entries, 32); __type(key, u32); __type(value, u64); } arr SEC(".maps");
TWIN
{
	u64 s = 0;
	for (u32 i = 0; i < 32; i++) {
		u32 k = i;
		u64 *v = bpf_map_lookup_elem(&arr, &k);
		if (!v)
			break;
		if (*v == 0)
			break;
		s += *v;
	}
	return s > 10;
}
