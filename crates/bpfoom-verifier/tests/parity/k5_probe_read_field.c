/* helpers: bpf_probe_read_kernel. A field through a walked pointer. */
TWIN
{
	int pid = 0;
	bpf_probe_read_kernel(&pid, sizeof(pid), &task->real_parent->pid);
	return pid >= 0;
}
