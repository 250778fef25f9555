// SPDX-License-Identifier: (MIT OR Apache-2.0)
/*
 * null_walk: walks a kernel pointer that may be NULL without checking it,
 * which the kernel allows (BPF_PROBE_MEM: the load reads 0 instead of
 * faulting). The simulator's tasks have no real_parent, so for every task
 * `task->real_parent->pid` must read 0; the policy then kills the task with
 * the lowest pid. Were the walk to fault, the handler would fail and the
 * kernel model would kill the largest task instead.
 */
#include <bpf_oom.h>

char _license[] SEC("license") = "GPL";

SEC("struct_ops.s/handle_out_of_memory")
int BPF_PROG(null_walk_oom, struct oom_control *oc, struct cgroup *cgrp)
{
	struct mem_cgroup *memcg = oc->memcg;
	struct task_struct *task, *victim = NULL;
	int ret = BPF_OOM_FAILED;

	if (!memcg)
		return BPF_OOM_FAILED;
	memcg = bpf_get_mem_cgroup(&memcg->css);
	if (!memcg)
		return BPF_OOM_FAILED;
	bpf_for_each(css_task, task, &memcg->css, CSS_TASK_ITER_PROCS) {
		if (task->real_parent->pid == 0 && !victim)
			victim = bpf_task_acquire(task);
	}
	bpf_put_mem_cgroup(memcg);
	if (!victim)
		return BPF_OOM_FAILED;
	if (!bpf_oom_kill_process(oc, victim, "null_walk"))
		ret = BPF_OOM_PROCESSED;
	bpf_task_release(victim);
	return ret;
}

SEC(".struct_ops.link")
struct bpf_oom_ops null_walk = {
	.handle_out_of_memory = (void *)null_walk_oom,
	.name = "null_walk",
};
