/* maps: lru. An LRU hash keyed by pid. */
struct { __uint(type, BPF_MAP_TYPE_LRU_HASH); __uint(max_entries, 64); __type(key, u32); __type(value, u64); } lru SEC(".maps");
TWIN
{
	u32 k = task->pid;
	u64 v = bpf_ktime_get_ns();
	u64 *o = bpf_map_lookup_elem(&lru, &k);
	if (o && *o > v)
		return 1;
	bpf_map_update_elem(&lru, &k, &v, BPF_ANY);
	return 0;
}
