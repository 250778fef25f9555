/* helpers: bpf_probe_read_kernel_str. The comm into a stack buffer. */
TWIN
{
	char c[16];
	long r = bpf_probe_read_kernel_str(c, sizeof(c), task->comm);
	return r > 0 && c[0] != 0;
}
