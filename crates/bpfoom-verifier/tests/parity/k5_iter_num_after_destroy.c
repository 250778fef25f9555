/* kfuncs: bpf_iter_num_*. next() after destroy: rejected. */
TWIN
{
	struct bpf_iter_num it;
	int *v;
	bpf_iter_num_new(&it, 0, 5);
	bpf_iter_num_destroy(&it);
	v = bpf_iter_num_next(&it);
	return v ? 1 : 0;
}
