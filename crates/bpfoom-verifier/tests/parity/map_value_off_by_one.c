/* maps: arr. The same index check, one element too far. */
struct big { u64 v[16]; u32 n; };
struct { __uint(type, BPF_MAP_TYPE_ARRAY); __uint(max_entries, 1); __type(key, u32); __type(value, struct big); } arr SEC(".maps");
TWIN
{
	u32 k = 0, i;
	struct big *b = bpf_map_lookup_elem(&arr, &k);
	if (!b)
		return 0;
	i = b->n;
	if (i <= 17)
		return b->v[i] > 5;
	return 0;
}
