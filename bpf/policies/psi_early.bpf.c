// SPDX-License-Identifier: (MIT OR Apache-2.0)
/*
 * psi_early: declare an OOM before the limit is hit.
 *
 * A bpf_psi_ops policy, modelled on the upstream PSI selftest: at attach it
 * creates a "full" memory pressure trigger for `watch_cgroup_id` (0 = the
 * whole system); when the trigger fires it declares an OOM in that cgroup,
 * which runs the bpf_oom_ops chain (or the kernel killer) while the workload
 * is still only stalled, not yet at its limit.
 */
#include <bpf_oom.h>

char _license[] SEC("license") = "GPL";

const volatile u64 watch_cgroup_id = 0;
const volatile u32 threshold_us = 100000; /* 100 ms of full stall ... */
const volatile u32 window_us = 1000000;   /* ... per 1 s window */

/* Cgroups that came online below the watched one, and how often each fired. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1024);
	__type(key, u64);
	__type(value, u64);
} fired SEC(".maps");

SEC("struct_ops.s/init")
int BPF_PROG(psi_early_init, struct bpf_psi *psi)
{
	return bpf_psi_create_trigger(psi, watch_cgroup_id, PSI_MEM | BPF_PSI_FULL, threshold_us,
				      window_us);
}

SEC("struct_ops.s/handle_psi_event")
void BPF_PROG(psi_early_event, struct bpf_psi *psi, struct psi_trigger *t)
{
	u64 cgroup_id = t->cgroup_id, one = 1, *n;
	struct mem_cgroup *memcg = NULL;
	struct cgroup *cgrp;

	n = bpf_map_lookup_elem(&fired, &cgroup_id);
	if (n)
		__sync_fetch_and_add(n, 1);
	else
		bpf_map_update_elem(&fired, &cgroup_id, &one, BPF_NOEXIST);

	if (cgroup_id) {
		cgrp = bpf_cgroup_from_id(cgroup_id);
		if (!cgrp)
			return;
		memcg = bpf_get_mem_cgroup(&cgrp->self);
		bpf_cgroup_release(cgrp);
		if (!memcg)
			return;
	}
	bpf_printk("psi_early: full memory pressure in cgroup %llu", cgroup_id);
	bpf_out_of_memory(memcg, 0, BPF_OOM_FLAGS_WAIT_ON_OOM_LOCK, "psi_early");
	if (memcg)
		bpf_put_mem_cgroup(memcg);
}

SEC("struct_ops.s/handle_cgroup_offline")
void BPF_PROG(psi_early_offline, struct bpf_psi *psi, u64 cgroup_id)
{
	bpf_map_delete_elem(&fired, &cgroup_id);
}

SEC(".struct_ops.link")
struct bpf_psi_ops psi_early = {
	.init = (void *)psi_early_init,
	.handle_psi_event = (void *)psi_early_event,
	.handle_cgroup_offline = (void *)psi_early_offline,
	.name = "psi_early",
};
