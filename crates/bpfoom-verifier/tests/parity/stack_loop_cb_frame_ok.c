/* helpers: bpf_loop. A 128-byte callback frame on a 280-byte caller fits. */
static long small_cb(u64 i, void *c)
{
	volatile char b[128];
	for (int k = 0; k < 128; k += 8)
		b[k] = i;
	return b[i & 127] & 1;
}
TWIN
{
	volatile char a[280];
	for (int i = 0; i < 280; i += 8)
		a[i] = 1;
	bpf_loop(2, small_cb, 0, 0);
	return a[task->pid & 255];
}
