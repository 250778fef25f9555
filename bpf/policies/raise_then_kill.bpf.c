// SPDX-License-Identifier: (MIT OR Apache-2.0)
/*
 * raise_then_kill: buy time before killing.
 *
 * On a memcg OOM, raise the OOM'ing cgroup's limit by `raise_step` bytes from
 * the instance's configured reserve (bpfoom's bpf_mem_cgroup_raise_limit
 * extension). Once the reserve is spent, or for a global OOM, kill the task
 * with the highest kernel OOM badness in scope. Every decision is counted in
 * a map and reported as a ring buffer event for the daemon to log.
 */
#include <bpf_oom.h>

char _license[] SEC("license") = "GPL";

/* Tunable before load (.rodata). */
const volatile u64 raise_step = 64ULL << 20;

enum { EV_RAISED = 1, EV_KILLED = 2, EV_NOTHING = 3 };

struct event {
	u64 ts_ns;
	u64 cgroup_id;
	u64 bytes;
	u32 kind;
	s32 pid;
};

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 4096);
} events SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 4);
	__type(key, u32);
	__type(value, u64);
} counters SEC(".maps");

/* Which task the scan picked (.bss). */
s32 last_victim_pid;

static void report(u32 kind, u64 cgroup_id, s32 pid, u64 bytes)
{
	struct event *e;
	u64 *cnt;
	u32 key = kind;

	cnt = bpf_map_lookup_elem(&counters, &key);
	if (cnt)
		__sync_fetch_and_add(cnt, 1);

	e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);
	if (!e)
		return;
	e->ts_ns = bpf_ktime_get_ns();
	e->cgroup_id = cgroup_id;
	e->bytes = bytes;
	e->kind = kind;
	e->pid = pid;
	bpf_ringbuf_submit(e, 0);
}

SEC("struct_ops.s/handle_out_of_memory")
int BPF_PROG(raise_then_kill_oom, struct oom_control *oc, struct cgroup *cgrp)
{
	struct mem_cgroup *memcg = oc->memcg, *scope;
	struct cgroup_subsys_state *css_pos;
	struct task_struct *task;
	long points, best_points = 0;
	s32 best_pid = 0;
	u64 cgid = 0;
	int err;

	if (memcg) {
		cgid = memcg->css.cgroup->kn->id;
		if (!bpf_mem_cgroup_raise_limit(oc, memcg, raise_step)) {
			report(EV_RAISED, cgid, 0, raise_step);
			return BPF_OOM_PROCESSED;
		}
		scope = bpf_get_mem_cgroup(&memcg->css);
	} else {
		scope = bpf_get_root_mem_cgroup();
	}
	if (!scope)
		return BPF_OOM_FAILED;

	bpf_rcu_read_lock();
	bpf_for_each(css, css_pos, &scope->css, BPF_CGROUP_ITER_DESCENDANTS_PRE) {
		/* The css iterator's element is only RCU-protected; the task
		 * iterator wants a trusted css, so take a reference first. */
		struct mem_cgroup *memcg_pos = bpf_get_mem_cgroup(css_pos);

		if (!memcg_pos)
			continue;
		bpf_for_each(css_task, task, &memcg_pos->css, CSS_TASK_ITER_PROCS) {
			points = bpf_oom_badness(task, oc->totalpages);
			if (points > best_points) {
				best_points = points;
				best_pid = task->tgid;
			}
		}
		bpf_put_mem_cgroup(memcg_pos);
	}
	bpf_rcu_read_unlock();
	bpf_put_mem_cgroup(scope);

	last_victim_pid = best_pid;
	if (!best_pid) {
		report(EV_NOTHING, cgid, 0, 0);
		return BPF_OOM_FAILED;
	}
	task = bpf_task_from_pid(best_pid);
	if (!task)
		return BPF_OOM_FAILED;
	err = bpf_oom_kill_process(oc, task, "raise_then_kill: reserve spent");
	bpf_task_release(task);
	if (err)
		return BPF_OOM_FAILED;
	report(EV_KILLED, cgid, best_pid, 0);
	return BPF_OOM_PROCESSED;
}

SEC("struct_ops/handle_cgroup_offline")
void BPF_PROG(raise_then_kill_offline, struct cgroup *cgrp, u64 cgroup_id)
{
	report(EV_NOTHING, cgroup_id, 0, 0);
}

SEC(".struct_ops.link")
struct bpf_oom_ops raise_then_kill = {
	.handle_out_of_memory = (void *)raise_then_kill_oom,
	.handle_cgroup_offline = (void *)raise_then_kill_offline,
	.name = "raise_then_kill",
};
