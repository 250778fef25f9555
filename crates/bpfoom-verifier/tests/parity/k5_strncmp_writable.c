/* helpers: bpf_strncmp. A writable global is not a constant string: rejected. */
char name[16] = "systemd";
TWIN
{
	char c[16] = {};
	return bpf_strncmp(c, sizeof(c), name) == 0;
}
