/* helpers: bpf_strncmp, bpf_probe_read_kernel_str. Compare the comm with a constant. */
TWIN
{
	char c[16];
	bpf_probe_read_kernel_str(c, sizeof(c), task->comm);
	return bpf_strncmp(c, sizeof(c), "systemd") == 0;
}
