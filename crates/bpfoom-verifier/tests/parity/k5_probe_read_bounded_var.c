/* helpers: bpf_probe_read_kernel. A variable size bounded by a mask. */
TWIN
{
	char c[16];
	u32 n = task->pid & 15;
	bpf_probe_read_kernel(c, n, task->comm);
	return c[0] == 1;
}
