/* helpers: bpf_probe_read_kernel. An unbounded size: rejected. */
TWIN
{
	char c[16];
	u32 n = task->pid;
	bpf_probe_read_kernel(c, n, &task->pid);
	return c[0];
}
