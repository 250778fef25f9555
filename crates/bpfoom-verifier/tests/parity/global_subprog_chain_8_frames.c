/* A chain of 7 global functions under the program: 8 frames, Linux's
 * MAX_CALL_FRAMES (global functions are verified one by one, so only the
 * stack-depth walk of the call graph counts the frames). */
__noinline int g7(int x)
{
	return x + 7;
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
