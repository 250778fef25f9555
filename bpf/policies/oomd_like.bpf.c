// SPDX-License-Identifier: (MIT OR Apache-2.0)
/*
 * oomd_like: systemd-oomd's choice, made at OOM time.
 *
 * Candidates are the leaf memory cgroups below the OOM'ing one (the whole
 * hierarchy for a global OOM) and the cgroups with memory.oom.group set.
 * The daemon fills `prefs` from its configuration (systemd's
 * ManagedOOMPreference): OMIT never kills a cgroup, AVOID only when nothing
 * else is left, PREFER before anything else. Within a preference class the
 * cgroup whose reclaim scanning grew most since the last OOM loses, ties
 * broken by usage; the whole cgroup is killed, as oomd does.
 */
#include <bpf_oom.h>

char _license[] SEC("license") = "GPL";

enum { PREF_NONE = 0, PREF_OMIT = 1, PREF_AVOID = 2, PREF_PREFER = 3 };

/* cgroup id -> PREF_*, filled by the daemon. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, u64);
	__type(value, u32);
} prefs SEC(".maps");

/* cgroup id -> pgscan seen at the previous OOM. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 4096);
	__type(key, u64);
	__type(value, u64);
} last_pgscan SEC(".maps");

struct candidate {
	u64 id;
	u64 delta;
	u64 usage;
	u32 class;
	bool found;
};

/*
 * The best candidate so far lives in global data rather than on the stack:
 * the verifier then sees each load as an unknown value, so the loop's
 * states converge instead of multiplying with every refined comparison.
 */
struct candidate best;

/* Ranks a preference: higher loses first. */
static u32 pref_class(u32 pref)
{
	if (pref == PREF_PREFER)
		return 2;
	if (pref == PREF_AVOID)
		return 0;
	return 1;
}

static bool worse(const struct candidate *c, u32 class, u64 delta, u64 usage)
{
	if (!c->found || class != c->class)
		return !c->found || class > c->class;
	if (delta != c->delta)
		return delta > c->delta;
	return usage > c->usage;
}

SEC("struct_ops.s/handle_out_of_memory")
int BPF_PROG(oomd_like_oom, struct oom_control *oc, struct cgroup *cgrp)
{
	struct mem_cgroup *root = oc->memcg, *memcg;
	struct cgroup_subsys_state *pos;
	struct cgroup *victim;
	u64 id, scan, delta, usage, *last;
	u32 *pref, class;
	int err;

	if (root)
		root = bpf_get_mem_cgroup(&root->css);
	else
		root = bpf_get_root_mem_cgroup();
	if (!root)
		return BPF_OOM_FAILED;

	best.id = 0;
	best.delta = 0;
	best.usage = 0;
	best.class = 0;
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
		pref = bpf_map_lookup_elem(&prefs, &id);
		if (pref && *pref == PREF_OMIT) {
			bpf_put_mem_cgroup(memcg);
			continue;
		}
		class = pref_class(pref ? *pref : PREF_NONE);
		/* pgscan counters are node stats in the newest upstream tree. */
		scan = bpf_mem_cgroup_page_state(memcg, PGSCAN_DIRECT) +
		       bpf_mem_cgroup_page_state(memcg, PGSCAN_KSWAPD) +
		       bpf_mem_cgroup_page_state(memcg, PGSCAN_KHUGEPAGED) +
		       bpf_mem_cgroup_page_state(memcg, PGSCAN_PROACTIVE);
		last = bpf_map_lookup_elem(&last_pgscan, &id);
		delta = last && scan > *last ? scan - *last : (last ? 0 : scan);
		bpf_map_update_elem(&last_pgscan, &id, &scan, BPF_ANY);
		usage = bpf_mem_cgroup_usage(memcg);
		bpf_put_mem_cgroup(memcg);
		if (!usage || !worse(&best, class, delta, usage))
			continue;
		best.id = id;
		best.class = class;
		best.delta = delta;
		best.usage = usage;
		best.found = true;
	}
	bpf_rcu_read_unlock();
	bpf_put_mem_cgroup(root);

	if (!best.found)
		return BPF_OOM_FAILED;
	victim = bpf_cgroup_from_id(best.id);
	if (!victim)
		return BPF_OOM_FAILED;
	err = bpf_oom_kill_cgroup(oc, victim, "oomd_like");
	bpf_cgroup_release(victim);
	return err ? BPF_OOM_FAILED : BPF_OOM_PROCESSED;
}

SEC(".struct_ops.link")
struct bpf_oom_ops oomd_like = {
	.handle_out_of_memory = (void *)oomd_like_oom,
	.name = "oomd_like",
};
