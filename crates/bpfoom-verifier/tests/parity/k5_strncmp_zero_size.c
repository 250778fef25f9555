/* helpers: bpf_strncmp. A zero size: rejected (ARG_CONST_SIZE). */
TWIN
{
	char c[16] = {};
	return bpf_strncmp(c, 0, "abc") == 0;
}
