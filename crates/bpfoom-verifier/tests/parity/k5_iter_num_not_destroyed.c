/* kfuncs: bpf_iter_num_*. An iterator not destroyed before exit: rejected. */
TWIN
{
	struct bpf_iter_num it;
	int *v;
	bpf_iter_num_new(&it, 0, 5);
	v = bpf_iter_num_next(&it);
	return v ? *v : 0;
}
