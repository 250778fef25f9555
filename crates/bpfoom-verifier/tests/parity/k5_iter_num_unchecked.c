/* kfuncs: bpf_iter_num_*. The element is dereferenced without a NULL check: rejected. */
TWIN
{
	struct bpf_iter_num it;
	int *v, r;
	bpf_iter_num_new(&it, 0, 5);
	v = bpf_iter_num_next(&it);
	r = *v;
	bpf_iter_num_destroy(&it);
	return r > 1;
}
