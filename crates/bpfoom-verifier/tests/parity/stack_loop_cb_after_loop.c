/* helpers: bpf_loop. The caller's 280 bytes are touched only after
 * bpf_loop returns; its 240-byte callback still counts (288 + 240 > 512). */
static long big_cb(u64 i, void *c)
{
	volatile char b[240];
	for (int k = 0; k < 240; k += 8)
		b[k] = i;
	return b[i & 127] & 1;
}
TWIN
{
	long n = bpf_loop(2, big_cb, 0, 0);
	volatile char a[280];
	for (int i = 0; i < 280; i += 8)
		a[i] = n;
	return a[task->pid & 255];
}
