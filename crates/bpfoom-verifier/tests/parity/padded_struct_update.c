/* maps: h. A struct with padding filled field by field and passed to
 * bpf_map_update_elem: the padding bytes are never written. */
struct val { u8 a; u64 b; u16 c; };
struct { __uint(type, BPF_MAP_TYPE_HASH); __uint(max_entries, 16); __type(key, u32); __type(value, struct val); } h SEC(".maps");
TWIN
{
	struct val v;
	u32 k = task->pid;
	v.a = 1;
	v.b = task->tgid;
	v.c = 3;
	bpf_map_update_elem(&h, &k, &v, BPF_ANY);
	return 0;
}
