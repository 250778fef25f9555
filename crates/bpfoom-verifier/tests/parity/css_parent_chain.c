/* A bounded walk up css->parent. */
TWIN
{
	struct cgroup_subsys_state *css = &cgrp->self;
	int depth = 0;
	for (int i = 0; i < 8 && css; i++) {
		css = css->parent;
		depth++;
	}
	return depth;
}
