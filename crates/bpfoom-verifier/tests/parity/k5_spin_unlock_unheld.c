/* maps: locked. helpers: bpf_spin_unlock. Unlocking a lock never taken: rejected. */
struct lval { u64 n; struct bpf_spin_lock lock; u64 m; };
struct { __uint(type, BPF_MAP_TYPE_ARRAY); __uint(max_entries, 2); __type(key, u32); __type(value, struct lval); } locked SEC(".maps");
TWIN
{
	u32 k = 0;
	struct lval *v = bpf_map_lookup_elem(&locked, &k);
	if (!v)
		return 0;
	bpf_spin_unlock(&v->lock);
	return 0;
}
