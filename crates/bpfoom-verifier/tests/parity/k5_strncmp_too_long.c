/* helpers: bpf_strncmp. A size larger than the buffer: rejected. */
TWIN
{
	char c[16] = {};
	return bpf_strncmp(c, 32, "abc") == 0;
}
