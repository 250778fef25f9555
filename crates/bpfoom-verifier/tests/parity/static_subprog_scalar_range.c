/* maps: big. A static subprogram's return value keeps its bounds in the caller. */
struct big { u64 v[16]; };
struct { __uint(type, BPF_MAP_TYPE_ARRAY); __uint(max_entries, 1); __type(key, u32); __type(value, struct big); } big SEC(".maps");
static __noinline int sidx(int a)
{
	return a & 7;
}
TWIN
{
	u32 k = 0;
	struct big *b = bpf_map_lookup_elem(&big, &k);
	if (!b)
		return 0;
	return b->v[sidx(task->pid)] > 1;
}
