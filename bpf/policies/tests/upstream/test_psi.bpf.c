// SPDX-License-Identifier: (MIT OR Apache-2.0)
/*
 * Fixture: the behaviour of upstream's PSI selftest (test_psi.c of the
 * "mm: BPF OOM" series), written for bpfoom from its documented behaviour,
 * not copied.
 *
 * `init` creates a "full" memory trigger (100 ms per 1 s) on one cgroup and
 * an IO trigger on another (ids set before attach); `handle_psi_event`
 * turns the firing trigger's cgroup into its memcg and declares an OOM
 * there with bpf_out_of_memory(), passing a writable global char array as
 * the constraint text. The OOM then runs the bpf_oom_ops chain.
 * online/offline remember the last cgroup ids they saw.
 */
#include <bpf_oom.h>

char _license[] SEC("license") = "GPL";

u64 mem_cgroup_id;	/* the cgroup with the memory trigger (set before attach) */
u64 io_cgroup_id;	/* the cgroup with the IO trigger (set before attach) */
u64 online_cgroup_id;
u64 offline_cgroup_id;
u32 events;
s32 oom_ret;
/* Writable on purpose: upstream passes a global char[] as the nullable
 * constraint text, not a constant string. */
char constraint_name[32] = "bpfoom psi test";

SEC("struct_ops.s/init")
int BPF_PROG(test_psi_init, struct bpf_psi *psi)
{
	int err;

	err = bpf_psi_create_trigger(psi, mem_cgroup_id, PSI_MEM | BPF_PSI_FULL, 100000, 1000000);
	if (err)
		return err;
	return bpf_psi_create_trigger(psi, io_cgroup_id, PSI_IO, 100000, 1000000);
}

SEC("struct_ops.s/handle_psi_event")
void BPF_PROG(test_psi_event, struct bpf_psi *psi, struct psi_trigger *t)
{
	struct mem_cgroup *memcg;
	struct cgroup *cgroup;

	events++;
	cgroup = bpf_cgroup_from_id(t->cgroup_id);
	if (!cgroup)
		return;
	memcg = bpf_get_mem_cgroup(&cgroup->self);
	bpf_cgroup_release(cgroup);
	if (!memcg)
		return;
	oom_ret = bpf_out_of_memory(memcg, 0, BPF_OOM_FLAGS_WAIT_ON_OOM_LOCK, constraint_name);
	bpf_put_mem_cgroup(memcg);
}

SEC("struct_ops.s/handle_cgroup_online")
void BPF_PROG(test_psi_online, struct bpf_psi *psi, u64 cgroup_id)
{
	online_cgroup_id = cgroup_id;
}

SEC("struct_ops.s/handle_cgroup_offline")
void BPF_PROG(test_psi_offline, struct bpf_psi *psi, u64 cgroup_id)
{
	offline_cgroup_id = cgroup_id;
}

SEC(".struct_ops.link")
struct bpf_psi_ops test_psi = {
	.init = (void *)test_psi_init,
	.handle_psi_event = (void *)test_psi_event,
	.handle_cgroup_online = (void *)test_psi_online,
	.handle_cgroup_offline = (void *)test_psi_offline,
	.name = "test_psi",
};
