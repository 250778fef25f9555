/* helpers: bpf_strncmp. A string on the stack is not a constant string: rejected. */
TWIN
{
	char c[16] = {}, d[8] = "abc";
	return bpf_strncmp(c, sizeof(c), d) == 0;
}
