/* Walk task->mm (may be NULL: loads through it read 0) and read rss counters. */
TWIN
{
	struct mm_struct *mm = task->mm;
	if (!mm)
		return 0;
	return (mm->rss_stat[MM_ANONPAGES].count + mm->rss_stat[MM_FILEPAGES].count) > 1000;
}
