/* Division by a register that may be zero (BPF defines it as 0). */
TWIN
{
	u32 a = task->pid, b = task->tgid;
	return (a / b) + (a % b) > 3;
}
