/* maps: plain. helpers: bpf_spin_lock. A map value without a bpf_spin_lock: rejected. */
struct { __uint(type, BPF_MAP_TYPE_ARRAY); __uint(max_entries, 1); __type(key, u32); __type(value, u64); } plain SEC(".maps");
TWIN
{
	u32 k = 0;
	u64 *v = bpf_map_lookup_elem(&plain, &k);
	if (!v)
		return 0;
	bpf_spin_lock((void *)v);
	bpf_spin_unlock((void *)v);
	return 0;
}
