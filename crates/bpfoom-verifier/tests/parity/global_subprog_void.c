/* maps: arr. A void global subprogram writing a map value. */
struct { __uint(type, BPF_MAP_TYPE_ARRAY); __uint(max_entries, 1); __type(key, u32); __type(value, u64); } arr SEC(".maps");
__noinline void gstore(int v)
{
	u32 k = 0;
	u64 *p = bpf_map_lookup_elem(&arr, &k);
	if (p)
		*p = v;
}
TWIN
{
	gstore(task->pid);
	return 0;
}
