/* Nested bounded loops over a 2-D stack array. */
TWIN
{
	u8 g[4][8];
	u32 s = 0;
	for (int i = 0; i < 4; i++)
		for (int j = 0; j < 8; j++)
			g[i][j] = (task->pid + i + j) & 0xff;
	for (int i = 0; i < 4; i++)
		for (int j = 0; j < 8; j++)
			s += g[i][j];
	return s > 300;
}
