/* maps: locked. helpers: bpf_loop, bpf_spin_lock. bpf_loop while a lock is held: rejected. */
struct lval { u64 n; struct bpf_spin_lock lock; u64 m; };
struct { __uint(type, BPF_MAP_TYPE_ARRAY); __uint(max_entries, 2); __type(key, u32); __type(value, struct lval); } locked SEC(".maps");
static long nop_cb(u64 i, void *c) { return 0; }
TWIN
{
	u32 k = 0;
	struct lval *v = bpf_map_lookup_elem(&locked, &k);
	if (!v)
		return 0;
	bpf_spin_lock(&v->lock);
	bpf_loop(2, nop_cb, NULL, 0);
	bpf_spin_unlock(&v->lock);
	return 0;
}
