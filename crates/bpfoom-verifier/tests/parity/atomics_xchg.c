/* maps: arr. Atomic exchange and bitwise atomics on a map value. */
struct { __uint(type, BPF_MAP_TYPE_ARRAY); __uint(max_entries, 1); __type(key, u32); __type(value, u64); } arr SEC(".maps");
TWIN
{
	u32 k = 0;
	u64 *v = bpf_map_lookup_elem(&arr, &k);
	if (!v)
		return 0;
	__sync_fetch_and_or(v, 4);
	__sync_fetch_and_and(v, 7);
	return __sync_lock_test_and_set(v, task->pid) > 2;
}
