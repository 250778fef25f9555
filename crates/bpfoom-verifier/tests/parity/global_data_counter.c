/* Global .bss and .data counters. */
u64 hits;
u32 limit = 10;
TWIN
{
	hits++;
	return hits > limit;
}
