/* maps: big. A signed index checked only from above. */
struct big { u64 v[16]; };
struct { __uint(type, BPF_MAP_TYPE_ARRAY); __uint(max_entries, 1); __type(key, u32); __type(value, struct big); } big SEC(".maps");
TWIN
{
	u32 k = 0;
	int i = task->pid;
	struct big *b = bpf_map_lookup_elem(&big, &k);
	if (!b)
		return 0;
	if (i < 16)
		return b->v[i] > 1;
	return 0;
}
