/* maps: h. bpf_map_delete_elem with an uninitialised key. */
struct { __uint(type, BPF_MAP_TYPE_HASH); __uint(max_entries, 16); __type(key, u64); __type(value, u64); } h SEC(".maps");
TWIN
{
	u64 k;
	return bpf_map_delete_elem(&h, &k) == 0;
}
