/* helpers: bpf_probe_read_kernel. A constant size larger than the buffer: rejected. */
TWIN
{
	char c[16];
	bpf_probe_read_kernel(c, 32, task->comm);
	return c[0] != 0;
}
