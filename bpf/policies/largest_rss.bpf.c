// SPDX-License-Identifier: (MIT OR Apache-2.0)
/*
 * largest_rss: kill the process with the largest resident set, never one
 * with a protected name.
 *
 * On an OOM, scan every process in scope (the OOM'ing memcg's subtree, or
 * every memcg for a global OOM), read its resident pages the kernel way,
 * task->mm->rss_stat[MM_ANONPAGES + MM_FILEPAGES + MM_SHMEMPAGES].count, and
 * kill the largest whose comm is not in `protected` (sshd, systemd and
 * bpfoom by default; tunable before load). Kernel threads and exiting tasks
 * have no mm and are skipped, as is oom_score_adj -1000.
 */
#include <bpf_oom.h>

char _license[] SEC("license") = "GPL";

#define NAME_LEN 16
#define NR_PROTECTED 4

/* Tunable before load (.rodata): comm names never to kill. */
const volatile char protected[NR_PROTECTED][NAME_LEN] = { "sshd", "systemd", "bpfoom", "bpfoomd" };

/* What the last run picked (.bss), for tests and `bpfoom maps`. */
s32 last_victim_pid;
u64 last_victim_rss_pages;

static bool same_name(const char *comm, int p)
{
	int i;

	/* A bounded byte compare: clang unrolls it, the verifier sees 16 steps. */
	for (i = 0; i < NAME_LEN; i++) {
		if (comm[i] != protected[p][i])
			return false;
		if (!comm[i])
			return true;
	}
	return true;
}

static bool is_protected(struct task_struct *task)
{
	char comm[NAME_LEN];
	int p;

	__builtin_memcpy(comm, task->comm, NAME_LEN);
	for (p = 0; p < NR_PROTECTED; p++)
		if (protected[p][0] && same_name(comm, p))
			return true;
	return false;
}

SEC("struct_ops.s/handle_out_of_memory")
int BPF_PROG(largest_rss_oom, struct oom_control *oc, struct cgroup *cgrp)
{
	struct mem_cgroup *memcg = oc->memcg, *scope;
	struct cgroup_subsys_state *css_pos;
	struct task_struct *task;
	struct mm_struct *mm;
	u64 rss, best_rss = 0;
	s32 best_pid = 0;
	int err;

	scope = memcg ? bpf_get_mem_cgroup(&memcg->css) : bpf_get_root_mem_cgroup();
	if (!scope)
		return BPF_OOM_FAILED;

	bpf_rcu_read_lock();
	bpf_for_each(css, css_pos, &scope->css, BPF_CGROUP_ITER_DESCENDANTS_PRE) {
		struct mem_cgroup *memcg_pos = bpf_get_mem_cgroup(css_pos);

		if (!memcg_pos)
			continue;
		bpf_for_each(css_task, task, &memcg_pos->css, CSS_TASK_ITER_PROCS) {
			mm = task->mm;
			if (!mm || task->signal->oom_score_adj == OOM_SCORE_ADJ_MIN)
				continue;
			rss = mm->rss_stat[MM_ANONPAGES].count +
			      mm->rss_stat[MM_FILEPAGES].count +
			      mm->rss_stat[MM_SHMEMPAGES].count;
			if (rss <= best_rss || is_protected(task))
				continue;
			best_rss = rss;
			best_pid = task->tgid;
		}
		bpf_put_mem_cgroup(memcg_pos);
	}
	bpf_rcu_read_unlock();
	bpf_put_mem_cgroup(scope);

	last_victim_pid = best_pid;
	last_victim_rss_pages = best_rss;
	if (!best_pid)
		return BPF_OOM_FAILED;
	task = bpf_task_from_pid(best_pid);
	if (!task)
		return BPF_OOM_FAILED;
	err = bpf_oom_kill_process(oc, task, "largest_rss: largest resident set");
	bpf_task_release(task);
	return err ? BPF_OOM_FAILED : BPF_OOM_PROCESSED;
}

SEC(".struct_ops.link")
struct bpf_oom_ops largest_rss = {
	.handle_out_of_memory = (void *)largest_rss_oom,
	.name = "largest_rss",
};
