/* helpers: bpf_probe_read_kernel. Reading into .rodata: rejected. */
const volatile char ro[16] = "x";
TWIN
{
	bpf_probe_read_kernel((void *)ro, sizeof(ro), task->comm);
	return 0;
}
