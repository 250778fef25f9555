/* A byte scan of task->comm (clang unrolls it) with early exit. */
TWIN
{
	for (int i = 0; i < 16; i++) {
		char c = task->comm[i];
		if (c == 0)
			return i > 3;
		if (c == '/')
			return 1;
	}
	return 0;
}
