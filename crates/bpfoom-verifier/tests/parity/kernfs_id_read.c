/* cgrp->kn->id (the cgroup id). */
TWIN
{
	return cgrp->kn->id > 1;
}
