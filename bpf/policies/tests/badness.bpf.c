// SPDX-License-Identifier: (MIT OR Apache-2.0)
/*
 * badness: the kernel OOM killer's choice, as a policy. Scores every
 * process of the OOM'ing memcg's subtree with bpf_oom_badness() (the
 * kernel's oom_badness(): rss + swap + page tables, scaled by
 * oom_score_adj; LONG_MIN for the ineligible) and kills the highest. The
 * back-to-back benchmark runs it, so bpfoom's and the kernel's victims are
 * the same and only the time to act differs.
 */
#include <bpf_oom.h>

char _license[] SEC("license") = "GPL";

SEC("struct_ops.s/handle_out_of_memory")
int BPF_PROG(badness_oom, struct oom_control *oc, struct cgroup *cgrp)
{
	struct mem_cgroup *memcg = oc->memcg, *scope;
	struct cgroup_subsys_state *css_pos;
	struct task_struct *task;
	long score, best = 0;
	s32 best_pid = 0;
	int err;

	scope = memcg ? bpf_get_mem_cgroup(&memcg->css) : bpf_get_root_mem_cgroup();
	if (!scope)
		return BPF_OOM_FAILED;

	bpf_rcu_read_lock();
	bpf_for_each(css, css_pos, &scope->css, BPF_CGROUP_ITER_DESCENDANTS_PRE) {
		/* A css walked under RCU is not trusted: the task iterator
		 * needs a reference, as in Linux. */
		struct mem_cgroup *memcg_pos = bpf_get_mem_cgroup(css_pos);

		if (!memcg_pos)
			continue;
		bpf_for_each(css_task, task, &memcg_pos->css, CSS_TASK_ITER_PROCS) {
			score = bpf_oom_badness(task, oc->totalpages);
			if (score <= best)
				continue;
			best = score;
			best_pid = task->tgid;
		}
		bpf_put_mem_cgroup(memcg_pos);
	}
	bpf_rcu_read_unlock();
	bpf_put_mem_cgroup(scope);

	if (!best_pid)
		return BPF_OOM_FAILED;
	task = bpf_task_from_pid(best_pid);
	if (!task)
		return BPF_OOM_FAILED;
	err = bpf_oom_kill_process(oc, task, "badness: highest oom_badness");
	bpf_task_release(task);
	return err ? BPF_OOM_FAILED : BPF_OOM_PROCESSED;
}

SEC(".struct_ops.link")
struct bpf_oom_ops badness = {
	.handle_out_of_memory = (void *)badness_oom,
	.name = "badness",
};
