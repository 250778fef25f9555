/* Pointer comparison between objects of two different types. */
TWIN
{
	if ((void *)task == (void *)cgrp)
		return 1;
	return 0;
}
