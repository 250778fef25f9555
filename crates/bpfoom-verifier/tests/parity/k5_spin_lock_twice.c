/* maps: locked. helpers: bpf_spin_lock. Two locks at once: rejected. */
struct lval { u64 n; struct bpf_spin_lock lock; u64 m; };
struct { __uint(type, BPF_MAP_TYPE_ARRAY); __uint(max_entries, 2); __type(key, u32); __type(value, struct lval); } locked SEC(".maps");
TWIN
{
	u32 k = 0, j = 1;
	struct lval *v = bpf_map_lookup_elem(&locked, &k);
	struct lval *w = bpf_map_lookup_elem(&locked, &j);
	if (!v || !w)
		return 0;
	bpf_spin_lock(&v->lock);
	bpf_spin_lock(&w->lock);
	bpf_spin_unlock(&w->lock);
	bpf_spin_unlock(&v->lock);
	return 0;
}
