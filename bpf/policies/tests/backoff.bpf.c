// SPDX-License-Identifier: (MIT OR Apache-2.0)
/*
 * Test policy: always promises "memory will be freed soon" and never frees
 * anything. The engine may honour that only while its backoff budget lasts.
 */
#include <bpf_oom.h>

char _license[] SEC("license") = "GPL";

SEC("struct_ops.s/handle_out_of_memory")
int BPF_PROG(backoff_oom, struct oom_control *oc, struct cgroup *cgrp)
{
	return BPF_OOM_BACKOFF;
}

SEC(".struct_ops.link")
struct bpf_oom_ops backoff = {
	.handle_out_of_memory = (void *)backoff_oom,
	.name = "backoff",
};
