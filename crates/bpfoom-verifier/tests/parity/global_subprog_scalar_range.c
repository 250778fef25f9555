/* maps: big. A global subprogram's return value is an unknown scalar to the caller. */
struct big { u64 v[16]; };
struct { __uint(type, BPF_MAP_TYPE_ARRAY); __uint(max_entries, 1); __type(key, u32); __type(value, struct big); } big SEC(".maps");
__noinline int gidx(int a)
{
	return a & 7;
}
TWIN
{
	u32 k = 0;
	struct big *b = bpf_map_lookup_elem(&big, &k);
	if (!b)
		return 0;
	return b->v[gidx(task->pid)] > 1;
}
