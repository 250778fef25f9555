/* The difference of two pointers of different kinds. */
TWIN
{
	long d = (char *)task - (char *)cgrp;
	return d > 0;
}
