// SPDX-License-Identifier: (MIT OR Apache-2.0)
/*
 * Test policy (fault suite, buggy policies): kills a task that is already
 * an OOM victim whenever there is one in scope (it asks
 * bpf_task_is_oom_victim, then picks exactly those), else the task with
 * the highest kernel badness. With a victim that cannot exit, every later
 * OOM chooses that victim again.
 */
#include <bpf_oom.h>

char _license[] SEC("license") = "GPL";

SEC("struct_ops.s/handle_out_of_memory")
int BPF_PROG(kill_victim_again_oom, struct oom_control *oc, struct cgroup *cgrp)
{
	struct mem_cgroup *memcg = oc->memcg, *scope;
	struct cgroup_subsys_state *pos;
	struct task_struct *task;
	long points, best_points = 0;
	s32 best_pid = 0, victim_pid = 0;
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
			if (bpf_task_is_oom_victim(task))
				victim_pid = task->tgid;
			points = bpf_oom_badness(task, oc->totalpages);
			if (points > best_points) {
				best_points = points;
				best_pid = task->tgid;
			}
		}
		bpf_put_mem_cgroup(m);
	}
	bpf_rcu_read_unlock();
	bpf_put_mem_cgroup(scope);

	if (victim_pid)
		best_pid = victim_pid;
	if (!best_pid)
		return BPF_OOM_FAILED;
	task = bpf_task_from_pid(best_pid);
	if (!task)
		return BPF_OOM_FAILED;
	err = bpf_oom_kill_process(oc, task, "kill_victim_again");
	bpf_task_release(task);
	if (err)
		bpf_printk("kill_victim_again: kill %d failed: %d", best_pid, err);
	return err ? BPF_OOM_FAILED : BPF_OOM_PROCESSED;
}

SEC(".struct_ops.link")
struct bpf_oom_ops kill_victim_again = {
	.handle_out_of_memory = (void *)kill_victim_again_oom,
	.name = "kill_victim_again",
};
