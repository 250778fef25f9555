/* maps: pc. A per-CPU array value updated in place. */
struct { __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY); __uint(max_entries, 1); __type(key, u32); __type(value, u64); } pc SEC(".maps");
TWIN
{
	u32 k = 0;
	u64 *v = bpf_map_lookup_elem(&pc, &k);
	if (!v)
		return 0;
	*v += task->pid;
	return *v > 10;
}
