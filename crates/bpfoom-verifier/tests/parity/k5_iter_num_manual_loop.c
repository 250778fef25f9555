/* kfuncs: bpf_iter_num_*. An explicit new/next/destroy loop with a bounds check on the element. */
TWIN
{
	struct bpf_iter_num it;
	u64 a[4] = {};
	int *v;
	bpf_iter_num_new(&it, 0, 4);
	while ((v = bpf_iter_num_next(&it))) {
		if (*v >= 0 && *v < 4)
			a[*v] = 1;
	}
	bpf_iter_num_destroy(&it);
	return a[1] == 1;
}
