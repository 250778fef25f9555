/* A clang-unrolled 16-byte scan of task->comm with a counter (the kernel is
 * known to need many states here). */
TWIN
{
	int n = 0;
	for (int i = 0; i < 16; i++) {
		char c = task->comm[i];
		if (c >= 'a' && c <= 'z')
			n++;
		else if (c >= '0' && c <= '9')
			n += 2;
	}
	return n > 5;
}
