/* maps: buf. helpers: bpf_probe_read_kernel. Past the end of a map value: rejected. */
struct { __uint(type, BPF_MAP_TYPE_ARRAY); __uint(max_entries, 1); __type(key, u32); __type(value, char[16]); } buf SEC(".maps");
TWIN
{
	u32 k = 0;
	char *b = bpf_map_lookup_elem(&buf, &k);
	if (!b)
		return 0;
	return bpf_probe_read_kernel(b + 8, 16, task->comm) == 0;
}
