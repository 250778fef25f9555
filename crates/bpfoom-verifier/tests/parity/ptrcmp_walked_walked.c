/* Two walked pointers compared (task->real_parent == task->group_leader). */
TWIN
{
	return task->real_parent == task->group_leader;
}
