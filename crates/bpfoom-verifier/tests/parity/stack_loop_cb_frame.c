/* helpers: bpf_loop. A callback with a 240-byte frame runs on top of a
 * 280-byte caller: Linux counts it as a call (288 + 240 > 512). */
static long big_cb(u64 i, void *c)
{
	volatile char b[240];
	for (int k = 0; k < 240; k += 8)
		b[k] = i;
	return b[i & 127] & 1;
}
TWIN
{
	volatile char a[280];
	for (int i = 0; i < 280; i += 8)
		a[i] = 1;
	bpf_loop(2, big_cb, 0, 0);
	return a[task->pid & 255];
}
