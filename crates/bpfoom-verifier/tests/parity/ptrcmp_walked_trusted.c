/* Pointer comparison: a walked pointer (css->cgroup) against a trusted one,
 * the shape of upstream test_oom.c (`if (css && css->cgroup == cgrp)`). */
TWIN
{
	struct cgroup_subsys_state *css = &cgrp->self;
	if (css && css->cgroup == cgrp)
		return 1;
	return 0;
}
