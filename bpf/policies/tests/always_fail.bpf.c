// SPDX-License-Identifier: (MIT OR Apache-2.0)
/* Test policy: never frees anything, so the chain must go on. Counts its calls. */
#include <bpf_oom.h>

char _license[] SEC("license") = "GPL";

u64 calls;

SEC("struct_ops.s/handle_out_of_memory")
int BPF_PROG(always_fail_oom, struct oom_control *oc, struct cgroup *cgrp)
{
	__sync_fetch_and_add(&calls, 1);
	return BPF_OOM_FAILED;
}

SEC(".struct_ops.link")
struct bpf_oom_ops always_fail = {
	.handle_out_of_memory = (void *)always_fail_oom,
	.name = "always_fail",
};
