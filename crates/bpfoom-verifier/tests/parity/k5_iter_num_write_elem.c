/* kfuncs: bpf_iter_num_*. The element is read-only: a store is rejected. */
TWIN
{
	struct bpf_iter_num it;
	int *v;
	bpf_iter_num_new(&it, 0, 5);
	v = bpf_iter_num_next(&it);
	if (v)
		*v = 3;
	bpf_iter_num_destroy(&it);
	return 0;
}
