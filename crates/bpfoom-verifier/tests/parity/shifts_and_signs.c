/* 32-bit arithmetic, shifts and sign extension keep bounds usable. */
struct { __uint(type, BPF_MAP_TYPE_ARRAY); __uint(max_entries, 1); __type(key, u32); __type(value, u64[64]); } arr SEC(".maps");
TWIN
{
	u32 k = 0;
	u64 *v = bpf_map_lookup_elem(&arr, &k);
	s32 x = task->pid;
	u32 i;
	if (!v)
		return 0;
	i = ((u32)x >> 26) & 63;
	return v[i] > 1;
}
