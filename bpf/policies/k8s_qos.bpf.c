// SPDX-License-Identifier: (MIT OR Apache-2.0)
/*
 * k8s_qos: kill pods in Kubernetes QoS order.
 *
 * Kubelet lays pods out by QoS class: BestEffort pods below
 * kubepods/besteffort, Burstable below kubepods/burstable, Guaranteed pods
 * directly below kubepods (cgroupfs driver: /kubepods/besteffort/pod<uid>;
 * systemd driver: /kubepods.slice/kubepods-besteffort.slice/...). A BPF
 * program cannot read cgroup names, so the daemon recognises those
 * conventions and fills `qos` with the class of the QoS-level cgroups:
 * kubepods/besteffort = 1, kubepods/burstable = 2, kubepods = 3. A pod is
 * a cgroup whose parent has a class and which has none itself. The victim
 * is the pod with the lowest class, the largest first within a class; the
 * whole pod is killed.
 */
#include <bpf_oom.h>

char _license[] SEC("license") = "GPL";

/* cgroup id -> QoS class of the pods directly below it. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 64);
	__type(key, u64);
	__type(value, u32);
} qos SEC(".maps");

SEC("struct_ops.s/handle_out_of_memory")
int BPF_PROG(k8s_qos_oom, struct oom_control *oc, struct cgroup *cgrp)
{
	struct mem_cgroup *root = oc->memcg, *memcg;
	struct cgroup_subsys_state *pos, *parent;
	u64 id, parent_id, usage, best_id = 0, best_usage = 0;
	u32 *class, best_class = 0;
	struct cgroup *victim;
	int err;

	if (root)
		root = bpf_get_mem_cgroup(&root->css);
	else
		root = bpf_get_root_mem_cgroup();
	if (!root)
		return BPF_OOM_FAILED;

	bpf_rcu_read_lock();
	bpf_for_each(css, pos, &root->css, BPF_CGROUP_ITER_DESCENDANTS_PRE) {
		id = pos->cgroup->kn->id;
		if (bpf_map_lookup_elem(&qos, &id))
			continue; /* a QoS-level cgroup, not a pod */
		parent = pos->parent;
		if (!parent)
			continue;
		parent_id = parent->cgroup->kn->id;
		class = bpf_map_lookup_elem(&qos, &parent_id);
		if (!class)
			continue;
		memcg = bpf_get_mem_cgroup(pos);
		if (!memcg)
			continue;
		usage = bpf_mem_cgroup_usage(memcg);
		bpf_put_mem_cgroup(memcg);
		if (!usage)
			continue;
		if (!best_id || *class < best_class ||
		    (*class == best_class && usage > best_usage)) {
			best_id = id;
			best_class = *class;
			best_usage = usage;
		}
	}
	bpf_rcu_read_unlock();
	bpf_put_mem_cgroup(root);

	if (!best_id)
		return BPF_OOM_FAILED;
	victim = bpf_cgroup_from_id(best_id);
	if (!victim)
		return BPF_OOM_FAILED;
	err = bpf_oom_kill_cgroup(oc, victim, "k8s_qos");
	bpf_cgroup_release(victim);
	return err ? BPF_OOM_FAILED : BPF_OOM_PROCESSED;
}

SEC(".struct_ops.link")
struct bpf_oom_ops k8s_qos = {
	.handle_out_of_memory = (void *)k8s_qos_oom,
	.name = "k8s_qos",
};
