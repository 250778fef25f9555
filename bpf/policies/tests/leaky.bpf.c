// SPDX-License-Identifier: (MIT OR Apache-2.0)
/*
 * Test policy the verifier must reject: it acquires the root memcg and
 * never releases it. A scenario attaching it fails before anything runs.
 */
#include <bpf_oom.h>

char _license[] SEC("license") = "GPL";

SEC("struct_ops.s/handle_out_of_memory")
int BPF_PROG(leaky_oom, struct oom_control *oc, struct cgroup *cgrp)
{
	struct mem_cgroup *root = bpf_get_root_mem_cgroup();

	return root ? BPF_OOM_FAILED : BPF_OOM_BACKOFF;
}

SEC(".struct_ops.link")
struct bpf_oom_ops leaky = {
	.handle_out_of_memory = (void *)leaky_oom,
	.name = "leaky",
};
