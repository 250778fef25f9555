// SPDX-License-Identifier: (MIT OR Apache-2.0)
/*
 * Test policy (fault suite, cgroups that vanish mid-OOM): chooses the task
 * with the highest kernel badness in the OOM's scope, says so
 * ("slow_kill: chose PID"; printk output reaches the daemon's log when the
 * run ends), then spends a while (25,000 kfunc calls, a third of a second
 * on an idle machine, seconds on a loaded one) before it kills the chosen task. The window lets a
 * test move the victim or remove its cgroup between the choice and the
 * kill, as can happen with a slow policy on a busy machine.
 */
#include <bpf_oom.h>

char _license[] SEC("license") = "GPL";

volatile __u64 spins;

SEC("struct_ops.s/handle_out_of_memory")
int BPF_PROG(slow_kill_oom, struct oom_control *oc, struct cgroup *cgrp)
{
	struct mem_cgroup *memcg = oc->memcg, *scope;
	struct cgroup_subsys_state *pos;
	struct task_struct *task;
	long points, best_points = 0;
	s32 best_pid = 0;
	int err;

	if (!memcg)
		return BPF_OOM_FAILED;
	scope = bpf_get_mem_cgroup(&memcg->css);
	if (!scope)
		return BPF_OOM_FAILED;

	bpf_rcu_read_lock();
	bpf_for_each(css, pos, &scope->css, BPF_CGROUP_ITER_DESCENDANTS_PRE) {
		struct mem_cgroup *m = bpf_get_mem_cgroup(pos);

		if (!m)
			continue;
		bpf_for_each(css_task, task, &m->css, CSS_TASK_ITER_PROCS) {
			points = bpf_oom_badness(task, oc->totalpages);
			if (points > best_points) {
				best_points = points;
				best_pid = task->tgid;
			}
		}
		bpf_put_mem_cgroup(m);
	}
	bpf_rcu_read_unlock();

	if (!best_pid) {
		bpf_put_mem_cgroup(scope);
		return BPF_OOM_FAILED;
	}
	bpf_printk("slow_kill: chose %d", best_pid);
	for (int i = 0; i < 25000; i++)
		spins += bpf_mem_cgroup_usage(scope);
	bpf_put_mem_cgroup(scope);

	task = bpf_task_from_pid(best_pid);
	if (!task) {
		bpf_printk("slow_kill: %d is gone", best_pid);
		return BPF_OOM_FAILED;
	}
	err = bpf_oom_kill_process(oc, task, "slow_kill");
	bpf_task_release(task);
	if (err)
		bpf_printk("slow_kill: kill %d failed: %d", best_pid, err);
	return err ? BPF_OOM_FAILED : BPF_OOM_PROCESSED;
}

SEC(".struct_ops.link")
struct bpf_oom_ops slow_kill = {
	.handle_out_of_memory = (void *)slow_kill_oom,
	.name = "slow_kill",
};
