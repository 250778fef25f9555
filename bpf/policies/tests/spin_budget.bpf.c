// SPDX-License-Identifier: (MIT OR Apache-2.0)
/*
 * Test policy (fault suite): a runaway handler. A bounded loop the verifier
 * accepts, but long enough (20,000 kfunc calls, about 200,000 instructions
 * a run) to hit a small instruction budget or a short time limit on every
 * run; it never frees memory.
 */
#include <bpf_oom.h>

char _license[] SEC("license") = "GPL";

volatile __u64 spins;

SEC("struct_ops.s/handle_out_of_memory")
int BPF_PROG(spin_budget_oom, struct oom_control *oc, struct cgroup *cgrp)
{
	struct mem_cgroup *memcg = oc->memcg, *m;

	if (!memcg)
		return BPF_OOM_FAILED;
	m = bpf_get_mem_cgroup(&memcg->css);
	if (!m)
		return BPF_OOM_FAILED;
	for (int i = 0; i < 20000; i++)
		spins += bpf_mem_cgroup_usage(m);
	bpf_put_mem_cgroup(m);
	return BPF_OOM_PROCESSED;
}

SEC(".struct_ops.link")
struct bpf_oom_ops spin_budget = {
	.handle_out_of_memory = (void *)spin_budget_oom,
	.name = "spin_budget",
};
