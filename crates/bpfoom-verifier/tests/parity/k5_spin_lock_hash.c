/* maps: hlocked. helpers: bpf_spin_lock. A lock in a hash map value. */
struct hval { struct bpf_spin_lock lock; u32 n; };
struct { __uint(type, BPF_MAP_TYPE_HASH); __uint(max_entries, 4); __type(key, u32); __type(value, struct hval); } hlocked SEC(".maps");
TWIN
{
	u32 k = 7;
	struct hval *v = bpf_map_lookup_elem(&hlocked, &k);
	if (!v)
		return 0;
	bpf_spin_lock(&v->lock);
	v->n++;
	bpf_spin_unlock(&v->lock);
	return 1;
}
