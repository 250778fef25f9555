// SPDX-License-Identifier: (MIT OR Apache-2.0)
/*
 * task_tour: a test policy that uses every generic helper and kfunc bpfoom
 * offers beside the OOM ones, so a scenario can prove each does its job.
 *
 * It walks every task of the host (bpf_iter_task, as a global policy
 * would), keeps those under its attach cgroup (bpf_task_under_cgroup),
 * never picks the task that is allocating (bpf_get_current_task_btf) nor a
 * protected name (bpf_probe_read_kernel_str, then bpf_strncmp against
 * constant names from a bpf_loop callback), sums the resident pages with
 * bpf_for and bpf_probe_read_kernel, and kills the largest. Run statistics
 * are kept under a bpf_spin_lock; the attach cgroup's depth is found with
 * bpf_cgroup_ancestor.
 */
#include <bpf_oom.h>

char _license[] SEC("license") = "GPL";

struct stats {
	struct bpf_spin_lock lock;
	u64 runs;
	u64 scanned;
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, u32);
	__type(value, struct stats);
} stats SEC(".maps");

/* What the last run saw (.bss), for tests and `bpfoom maps`. */
s32 last_allocator;
s32 last_victim;
u32 attach_level;

struct name_ctx {
	char comm[16];
	u32 hits;
};

/* bpf_loop callback: stops (returns 1) when comm is protected name i. */
static long protected_name(u64 i, void *data)
{
	struct name_ctx *c = data;
	long d;

	switch (i) {
	case 0:
		d = bpf_strncmp(c->comm, sizeof(c->comm), "sshd");
		break;
	case 1:
		d = bpf_strncmp(c->comm, sizeof(c->comm), "systemd");
		break;
	default:
		d = bpf_strncmp(c->comm, sizeof(c->comm), "bpfoomd");
		break;
	}
	if (d)
		return 0;
	c->hits++;
	return 1;
}

static bool is_protected(struct task_struct *t)
{
	struct name_ctx c = {};

	if (bpf_probe_read_kernel_str(c.comm, sizeof(c.comm), t->comm) <= 0)
		return true;
	bpf_loop(3, protected_name, &c, 0);
	return c.hits > 0;
}

static u64 resident_pages(struct mm_struct *mm)
{
	u64 sum = 0, v;
	int i;

	bpf_for(i, 0, NR_MM_COUNTERS) {
		if (i == MM_SWAPENTS)
			continue;
		v = 0;
		bpf_probe_read_kernel(&v, sizeof(v), &mm->rss_stat[i].count);
		sum += v;
	}
	return sum;
}

SEC("struct_ops.s/handle_out_of_memory")
int BPF_PROG(task_tour_oom, struct oom_control *oc, struct cgroup *cgrp)
{
	struct task_struct *cur = bpf_get_current_task_btf(), *t, *victim = NULL;
	struct cgroup *anc;
	struct stats *st;
	u64 best = 0, scanned = 0, rss;
	u32 key = 0;
	s32 cur_pid = cur->pid;
	int level, err;

	last_allocator = cur_pid;
	/* The attach cgroup's depth: the deepest level with an ancestor. */
	bpf_for(level, 0, 32) {
		anc = bpf_cgroup_ancestor(cgrp, level);
		if (!anc)
			break;
		attach_level = anc->level;
		bpf_cgroup_release(anc);
	}

	bpf_rcu_read_lock();
	bpf_for_each(task, t, NULL, BPF_TASK_ITER_ALL_PROCS) {
		struct mm_struct *mm = t->mm;

		if (!bpf_task_under_cgroup(t, cgrp) || t->pid == cur_pid || !mm)
			continue;
		scanned++;
		if (is_protected(t))
			continue;
		rss = resident_pages(mm);
		if (rss <= best)
			continue;
		if (victim)
			bpf_task_release(victim);
		victim = bpf_task_acquire(t);
		best = victim ? rss : 0;
	}
	bpf_rcu_read_unlock();

	st = bpf_map_lookup_elem(&stats, &key);
	if (st) {
		bpf_spin_lock(&st->lock);
		st->runs++;
		st->scanned += scanned;
		bpf_spin_unlock(&st->lock);
	}
	if (!victim)
		return BPF_OOM_FAILED;
	last_victim = victim->pid;
	err = bpf_oom_kill_process(oc, victim, "task_tour: largest unprotected task");
	bpf_task_release(victim);
	return err ? BPF_OOM_FAILED : BPF_OOM_PROCESSED;
}

SEC(".struct_ops.link")
struct bpf_oom_ops task_tour = {
	.handle_out_of_memory = (void *)task_tour_oom,
	.name = "task_tour",
};
