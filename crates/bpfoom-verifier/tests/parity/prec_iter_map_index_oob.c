/* kfuncs: bpf_iter_num_*. maps: arr. As prec_iter_map_index_ok with
 * (n + 3) & 15: some round indexes past the 8-element value. */
#ifndef bpf_for /* libbpf 1.1 lacks it; bpf_oom.h has the same */
#define bpf_for(i, start, end) for (struct bpf_iter_num ___it __attribute__((aligned(8), cleanup(bpf_iter_num_destroy))), *___p __attribute__((unused)) = (bpf_iter_num_new(&___it, (start), (end)), (void)bpf_iter_num_destroy, (void *)0); ({ int *___t = bpf_iter_num_next(&___it); (___t && ((i) = *___t, (i) >= (start) && (i) < (end))); });)
#define bpf_repeat(N) for (struct bpf_iter_num ___it __attribute__((aligned(8), cleanup(bpf_iter_num_destroy))), *___p __attribute__((unused)) = (bpf_iter_num_new(&___it, 0, (N)), (void)bpf_iter_num_destroy, (void *)0); bpf_iter_num_next(&___it);)
#endif
struct { __uint(type, BPF_MAP_TYPE_ARRAY); __uint(max_entries, 1); __type(key, u32); __type(value, u64[8]); } arr SEC(".maps");
TWIN
{
	u32 k = 0, n = 0;
	u64 *v = bpf_map_lookup_elem(&arr, &k);
	if (!v)
		return 0;
	bpf_repeat(20) {
		n = (n + 3) & 15;
	}
	return v[n] > 1;
}
