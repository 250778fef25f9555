/* helpers: bpf_get_current_task_btf, bpf_loop, bpf_probe_read_kernel_str. In a bpf_psi_ops handler on bpfoom's side. */
struct cctx { char comm[16]; u32 n; };
static long count_cb(u64 i, void *c)
{
	struct cctx *x = c;
	if (i >= sizeof(x->comm) || !x->comm[i])
		return 1;
	x->n++;
	return 0;
}
TWIN_PSI
{
	struct cctx c = {};
	bpf_probe_read_kernel_str(c.comm, sizeof(c.comm), bpf_get_current_task_btf()->comm);
	bpf_loop(16, count_cb, &c, 0);
	return c.n > 0;
}
