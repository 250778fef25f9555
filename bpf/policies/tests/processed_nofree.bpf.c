// SPDX-License-Identifier: (MIT OR Apache-2.0)
/*
 * Test policy: a buggy handler that claims PROCESSED without calling any
 * memory-releasing kfunc. oc->bpf_memory_freed stays clear, so the engine
 * must treat it as FAILED and go on.
 */
#include <bpf_oom.h>

char _license[] SEC("license") = "GPL";

SEC("struct_ops.s/handle_out_of_memory")
int BPF_PROG(processed_nofree_oom, struct oom_control *oc, struct cgroup *cgrp)
{
	return BPF_OOM_PROCESSED;
}

SEC(".struct_ops.link")
struct bpf_oom_ops processed_nofree = {
	.handle_out_of_memory = (void *)processed_nofree_oom,
	.name = "processed_nofree",
};
