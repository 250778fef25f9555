// SPDX-License-Identifier: (MIT OR Apache-2.0)
/*
 * largest_leaf: the policy of the upstream "mm: BPF OOM" selftest.
 *
 * Among the leaf memory cgroups below the OOM'ing one (the whole hierarchy
 * for a global OOM), pick the one using the most non-page-cache memory,
 * skipping cgroups that hold a task with oom_score_adj -1000, and kill every
 * process in it. Killing a task that is already an OOM victim still counts:
 * the kill kfunc then only waits for it to exit and reports memory freed.
 */
#include <bpf_oom.h>

char _license[] SEC("license") = "GPL";

/*
 * Kept out of line so the policy also exercises bpf-to-bpf calls. Takes the
 * acquired memcg (a trusted pointer), as the css_task iterator requires: the
 * css iterator's own element is only RCU-protected.
 */
static __attribute__((noinline)) bool memcg_has_oom_protected_tasks(struct mem_cgroup *memcg)
{
	struct task_struct *task;
	bool found = false;

	bpf_for_each(css_task, task, &memcg->css, CSS_TASK_ITER_PROCS) {
		if (task->signal->oom_score_adj == OOM_SCORE_ADJ_MIN) {
			found = true;
			break;
		}
	}
	return found;
}

SEC("struct_ops.s/handle_out_of_memory")
int BPF_PROG(largest_leaf_oom, struct oom_control *oc, struct cgroup *cgrp)
{
	struct mem_cgroup *root_memcg = oc->memcg;
	struct mem_cgroup *memcg, *victim = NULL;
	struct cgroup_subsys_state *css_pos;
	struct task_struct *task;
	unsigned long usage, pagecache, max_usage = 0;
	int ret = BPF_OOM_FAILED;

	if (root_memcg)
		root_memcg = bpf_get_mem_cgroup(&root_memcg->css);
	else
		root_memcg = bpf_get_root_mem_cgroup();
	if (!root_memcg)
		return BPF_OOM_FAILED;

	bpf_rcu_read_lock();
	bpf_for_each(css, css_pos, &root_memcg->css, BPF_CGROUP_ITER_DESCENDANTS_POST) {
		if (css_pos->cgroup->nr_descendants + css_pos->cgroup->nr_dying_descendants)
			continue;

		memcg = bpf_get_mem_cgroup(css_pos);
		if (!memcg)
			continue;

		usage = bpf_mem_cgroup_usage(memcg);
		pagecache = bpf_mem_cgroup_page_state(memcg, NR_FILE_PAGES);
		usage = usage > pagecache ? usage - pagecache : 0;

		if (usage > max_usage && !memcg_has_oom_protected_tasks(memcg)) {
			if (victim)
				bpf_put_mem_cgroup(victim);
			victim = memcg;
			max_usage = usage;
		} else {
			bpf_put_mem_cgroup(memcg);
		}
	}
	bpf_rcu_read_unlock();
	bpf_put_mem_cgroup(root_memcg);

	if (!victim)
		return BPF_OOM_FAILED;

	bpf_for_each(css_task, task, &victim->css, CSS_TASK_ITER_PROCS) {
		struct task_struct *t = bpf_task_acquire(task);

		if (!t)
			continue;
		if (!bpf_oom_kill_process(oc, t, "bpf oom largest_leaf"))
			ret = BPF_OOM_PROCESSED;
		bpf_task_release(t);
	}
	bpf_put_mem_cgroup(victim);
	return ret;
}

SEC(".struct_ops.link")
struct bpf_oom_ops largest_leaf = {
	.handle_out_of_memory = (void *)largest_leaf_oom,
	.name = "largest_leaf",
};
