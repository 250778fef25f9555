/* kfuncs: bpf_iter_num_*. Creating an iterator twice in the same slot: rejected. */
TWIN
{
	struct bpf_iter_num it;
	bpf_iter_num_new(&it, 0, 5);
	bpf_iter_num_new(&it, 0, 5);
	bpf_iter_num_destroy(&it);
	return 0;
}
