// SPDX-License-Identifier: (MIT OR Apache-2.0)
/*
 * Fixture: the behaviour of upstream's systemd-oomd-style selftest
 * (test_oomd.c of the newest "mm: BPF OOM" branch), written for bpfoom from
 * its documented behaviour, not copied.
 *
 * Candidates are the leaf memcgs below the OOM'ing one and the memcgs with
 * memory.oom.group. `oomd_policies` (cgroup id -> struct oomd_policy, filled
 * from the configuration) steers the choice: OMIT is never a candidate,
 * AVOID ranks after every other candidate; memcgs holding an oom_score_adj
 * -1000 task are skipped. The score is the pgscan delta since the last OOM
 * (kswapd + direct + khugepaged + proactive, node stats in the newest
 * tree), then usage; a memcg with neither is ignored. The first killable
 * task of the winner is killed (the kernel then honours memory.oom.group);
 * a task already an OOM victim counts as done. Every run leaves its
 * reasoning in the one-entry `decision` array.
 */
#include <bpf_oom.h>
#include <bpf/bpf_core_read.h>

char _license[] SEC("license") = "GPL";

enum oomd_preference {
	OOMD_PREF_NONE = 0,
	OOMD_PREF_AVOID = 1,
	OOMD_PREF_OMIT = 2,
};

/* Per-cgroup preference; the policy keeps last_pgscan up to date. The hole
 * after recursive_kill is implicit padding (zero when the daemon fills it). */
struct oomd_policy {
	u8 preference;
	u8 recursive_kill;
	u64 last_pgscan;
};

struct oomd_decision {
	u64 root_id;
	u64 victim_id;
	u64 usage;
	u64 pgscan;
	u64 pgscan_delta;
	u64 swap;
	s32 killed_pid;
	u32 nr_candidates;
	u32 nr_skipped;
	s32 kill_ret;
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1024);
	__type(key, u64);
	__type(value, struct oomd_policy);
} oomd_policies SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, u32);
	__type(value, struct oomd_decision);
} decision SEC(".maps");

struct best {
	u64 id;
	u64 delta;
	u64 usage;
	u64 scan;
	u32 avoid;
	bool found;
};

/* In global data so the loop's verifier states converge (see oomd_like). */
struct best best;

static __attribute__((noinline)) bool has_unkillable_task(struct mem_cgroup *memcg)
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

static u64 pgscan(struct mem_cgroup *memcg)
{
	return bpf_mem_cgroup_page_state(memcg, bpf_core_enum_value(enum node_stat_item, PGSCAN_KSWAPD)) +
	       bpf_mem_cgroup_page_state(memcg, bpf_core_enum_value(enum node_stat_item, PGSCAN_DIRECT)) +
	       bpf_mem_cgroup_page_state(memcg, bpf_core_enum_value(enum node_stat_item, PGSCAN_KHUGEPAGED)) +
	       bpf_mem_cgroup_page_state(memcg, bpf_core_enum_value(enum node_stat_item, PGSCAN_PROACTIVE));
}

static bool better(u32 avoid, u64 delta, u64 usage)
{
	if (!best.found)
		return true;
	if (avoid != best.avoid)
		return avoid < best.avoid;
	if (delta != best.delta)
		return delta > best.delta;
	return usage > best.usage;
}

SEC("struct_ops.s/handle_out_of_memory")
int BPF_PROG(test_oomd_handler, struct oom_control *oc, struct cgroup *cgrp)
{
	struct mem_cgroup *root = oc->memcg, *memcg;
	struct cgroup_subsys_state *pos;
	struct oomd_decision *dec;
	struct oomd_policy *pol, fresh = {};
	struct task_struct *task;
	struct cgroup *victim;
	u64 id, scan, delta, usage;
	u32 zero = 0, avoid;
	int ret = BPF_OOM_FAILED;

	dec = bpf_map_lookup_elem(&decision, &zero);
	if (!dec)
		return BPF_OOM_FAILED;
	__builtin_memset(dec, 0, sizeof(*dec));

	if (root)
		root = bpf_get_mem_cgroup(&root->css);
	else
		root = bpf_get_root_mem_cgroup();
	if (!root)
		return BPF_OOM_FAILED;
	dec->root_id = root->css.cgroup->kn->id;

	best.id = 0;
	best.delta = 0;
	best.usage = 0;
	best.scan = 0;
	best.avoid = 0;
	best.found = false;
	bpf_rcu_read_lock();
	bpf_for_each(css, pos, &root->css, BPF_CGROUP_ITER_DESCENDANTS_PRE) {
		memcg = bpf_get_mem_cgroup(pos);
		if (!memcg)
			continue;
		if (pos->cgroup->nr_descendants && !memcg->oom_group) {
			bpf_put_mem_cgroup(memcg);
			continue;
		}
		id = pos->cgroup->kn->id;
		pol = bpf_map_lookup_elem(&oomd_policies, &id);
		if ((pol && pol->preference == OOMD_PREF_OMIT) || has_unkillable_task(memcg)) {
			dec->nr_skipped++;
			bpf_put_mem_cgroup(memcg);
			continue;
		}
		scan = pgscan(memcg);
		usage = bpf_mem_cgroup_usage(memcg);
		bpf_put_mem_cgroup(memcg);
		if (pol) {
			delta = scan > pol->last_pgscan ? scan - pol->last_pgscan : 0;
			avoid = pol->preference == OOMD_PREF_AVOID;
			pol->last_pgscan = scan;
		} else {
			delta = scan;
			avoid = 0;
			fresh.last_pgscan = scan;
			bpf_map_update_elem(&oomd_policies, &id, &fresh, BPF_NOEXIST);
		}
		if (!delta && !usage)
			continue;
		dec->nr_candidates++;
		if (!better(avoid, delta, usage))
			continue;
		best.id = id;
		best.delta = delta;
		best.usage = usage;
		best.scan = scan;
		best.avoid = avoid;
		best.found = true;
	}
	bpf_rcu_read_unlock();
	bpf_put_mem_cgroup(root);
	if (!best.found)
		return BPF_OOM_FAILED;

	dec->victim_id = best.id;
	dec->usage = best.usage;
	dec->pgscan = best.scan;
	dec->pgscan_delta = best.delta;
	victim = bpf_cgroup_from_id(best.id);
	if (!victim)
		return BPF_OOM_FAILED;
	memcg = bpf_get_mem_cgroup(&victim->self);
	bpf_cgroup_release(victim);
	if (!memcg)
		return BPF_OOM_FAILED;
	dec->swap = bpf_mem_cgroup_page_state(memcg, bpf_core_enum_value(enum memcg_stat_item, MEMCG_SWAP));

	bpf_for_each(css_task, task, &memcg->css, CSS_TASK_ITER_PROCS) {
		struct task_struct *t;

		if (task->signal->oom_score_adj == OOM_SCORE_ADJ_MIN)
			continue;
		t = bpf_task_acquire(task);
		if (!t)
			continue;
		/* An OOM victim still exiting: the kfunc waits for it. */
		dec->kill_ret = bpf_oom_kill_process(oc, t, "bpf oomd test");
		if (!dec->kill_ret) {
			dec->killed_pid = t->pid;
			ret = BPF_OOM_PROCESSED;
		}
		bpf_task_release(t);
		break;
	}
	bpf_put_mem_cgroup(memcg);
	return ret;
}

SEC(".struct_ops.link")
struct bpf_oom_ops test_oomd = {
	.handle_out_of_memory = (void *)test_oomd_handler,
	.name = "test_oomd",
};
