// SPDX-License-Identifier: (MIT OR Apache-2.0)
/*
 * Test policy (fault suite): kills the task with the highest kernel badness
 * in the OOM's scope without asking bpf_task_is_oom_victim first, so it
 * may pick a victim that is already exiting (or cannot exit). It counts
 * how often it saw a victim in `victims_seen`, so a test can check that
 * bpf_task_is_oom_victim stays truthful.
 */
#include <bpf_oom.h>

char _license[] SEC("license") = "GPL";

__u64 victims_seen;

SEC("struct_ops.s/handle_out_of_memory")
int BPF_PROG(kill_exiting_oom, struct oom_control *oc, struct cgroup *cgrp)
{
	struct mem_cgroup *memcg = oc->memcg, *scope;
	struct cgroup_subsys_state *pos;
	struct task_struct *task;
	long points, best_points = 0;
	s32 best_pid = 0;
	int err;

	if (memcg)
		scope = bpf_get_mem_cgroup(&memcg->css);
	else
		scope = bpf_get_root_mem_cgroup();
	if (!scope)
		return BPF_OOM_FAILED;

	bpf_rcu_read_lock();
	bpf_for_each(css, pos, &scope->css, BPF_CGROUP_ITER_DESCENDANTS_PRE) {
		struct mem_cgroup *m = bpf_get_mem_cgroup(pos);

		if (!m)
			continue;
		bpf_for_each(css_task, task, &m->css, CSS_TASK_ITER_PROCS) {
			if (bpf_task_is_oom_victim(task)) {
				victims_seen++;
				bpf_printk("kill_exiting: oom victim %d", task->tgid);
			}
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

	if (!best_pid)
		return BPF_OOM_FAILED;
	task = bpf_task_from_pid(best_pid);
	if (!task)
		return BPF_OOM_FAILED;
	err = bpf_oom_kill_process(oc, task, "kill_exiting");
	bpf_task_release(task);
	return err ? BPF_OOM_FAILED : BPF_OOM_PROCESSED;
}

SEC(".struct_ops.link")
struct bpf_oom_ops kill_exiting = {
	.handle_out_of_memory = (void *)kill_exiting_oom,
	.name = "kill_exiting",
};
