/* A bounded loop clang must not unroll: the verifier walks every iteration. */
TWIN
{
	u32 s = 0;
#pragma clang loop unroll(disable)
	for (int i = 0; i < 64; i++)
		s += (task->pid >> (i & 31)) & 1;
	return s > 4;
}
