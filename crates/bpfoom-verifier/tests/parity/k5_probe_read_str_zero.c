/* helpers: bpf_probe_read_kernel_str. A zero size is allowed (ARG_CONST_SIZE_OR_ZERO). */
TWIN
{
	char c[16];
	return bpf_probe_read_kernel_str(c, 0, task->comm) == 0;
}
