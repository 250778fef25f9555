/* kfuncs: bpf_iter_css_*. The css iterator outside an RCU section (sleepable program). */
TWIN
{
	struct cgroup_subsys_state *p;
	int n = 0;
	bpf_for_each(css, p, &cgrp->self, BPF_CGROUP_ITER_DESCENDANTS_PRE) {
		n++;
	}
	return n > 1;
}
