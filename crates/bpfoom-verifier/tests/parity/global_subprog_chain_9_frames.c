/* A chain of 8 global functions under the program: 9 frames, one more than
 * Linux's MAX_CALL_FRAMES ("the call stack of 8 frames is too deep !"). */
__noinline int g8(int x)
{
	return x + 8;
}
__noinline int g7(int x)
{
	return g8(x) + 1;
}
__noinline int g6(int x)
{
	return g7(x) + 1;
}
__noinline int g5(int x)
{
	return g6(x) + 1;
}
__noinline int g4(int x)
{
	return g5(x) + 1;
}
__noinline int g3(int x)
{
	return g4(x) + 1;
}
__noinline int g2(int x)
{
	return g3(x) + 1;
}
__noinline int g1(int x)
{
	return g2(x) + 1;
}
TWIN
{
	return g1(task->pid);
}
