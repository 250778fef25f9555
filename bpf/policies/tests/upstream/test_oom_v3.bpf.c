// SPDX-License-Identifier: (MIT OR Apache-2.0)
/*
 * Fixture: upstream's OOM selftest in its kernel-patches v3 form (Jan 2026,
 * tools/testing/selftests/bpf/progs/test_oom.c), written for bpfoom from its
 * documented behaviour, not copied.
 *
 * v3's handle_out_of_memory gets the struct_ops link instead of the attach
 * cgroup: `(struct oom_control *oc, struct bpf_struct_ops_link *link)`, the
 * attach point in `link->cgroup`. The object declares that form itself, as
 * one built against a v3 kernel's vmlinux.h would: bpf_oom.h's own
 * `struct bpf_oom_ops` and `struct bpf_struct_ops_link` are renamed away
 * below and the v3 ones declared instead.
 *
 * The behaviour is test_oom.bpf.c's (largest leaf with the attach-point
 * check): an instance declines an OOM of its own attach point, found
 * through `link->cgroup`, so the chain passes it to the ancestor's
 * instance, which kills every process of the leaf memcg using the most
 * non-page-cache memory, skipping memcgs that hold an oom_score_adj -1000
 * task. On the selftest tree cg4 dies.
 */
#define bpf_oom_ops bpf_oom_ops___bpfoom
#define bpf_struct_ops_link bpf_struct_ops_link___bpfoom
#include <bpf_oom.h>
#undef bpf_oom_ops
#undef bpf_struct_ops_link

/* The kernel's link, as a v3 vmlinux.h declares it (the members before
 * `cgroup` opaque here): CO-RE moves the access to the host's offset. */
struct bpf_struct_ops_link {
	__u64 link[8];
	void *map;
	__u64 wait_hup[3];
	struct cgroup *cgroup; /* the attach point */
} __attribute__((preserve_access_index));

struct bpf_oom_ops {
	int (*handle_out_of_memory)(struct oom_control *oc,
				    struct bpf_struct_ops_link *link);
	char name[64];
};

char _license[] SEC("license") = "GPL";

/* Read by the tests (.bss). */
u32 declined;	     /* OOMs of the instance's own attach point, passed on */
u32 killed;	     /* processes killed */
u64 last_victim_id;  /* cgroup id of the last victim memcg */

static __attribute__((noinline)) bool has_unkillable_task(struct mem_cgroup *memcg)
{
	struct task_struct *task;
	bool found = false;

	bpf_for_each(css_task, task, &memcg->css, CSS_TASK_ITER_PROCS) {
		if (task->signal->oom_score_adj == OOM_SCORE_ADJ_MIN) {
			found = true;
			break;
		}
	}
	return found;
}

SEC("struct_ops.s/handle_out_of_memory")
int BPF_PROG(test_oom_handler, struct oom_control *oc, struct bpf_struct_ops_link *link)
{
	struct mem_cgroup *root = oc->memcg, *memcg, *victim = NULL;
	/* Kept in a local: clang may otherwise reload the field after the
	 * NULL check. */
	struct cgroup *attach = link->cgroup;
	struct cgroup_subsys_state *pos;
	struct task_struct *task;
	unsigned long usage, pagecache, max_usage = 0;
	int ret = BPF_OOM_FAILED;

	/* A link need not be attached to a cgroup: check before reading it. */
	if (!attach)
		return BPF_OOM_FAILED;
	bpf_printk("test_oom_v3: attached at level %d", attach->level);

	if (root)
		root = bpf_get_mem_cgroup(&root->css);
	else
		root = bpf_get_root_mem_cgroup();
	if (!root)
		return BPF_OOM_FAILED;

	/* The attach-point check: leave our own cgroup's OOM to an ancestor. */
	if (root->css.cgroup == attach) {
		declined++;
		bpf_put_mem_cgroup(root);
		return BPF_OOM_FAILED;
	}

	bpf_rcu_read_lock();
	bpf_for_each(css, pos, &root->css, BPF_CGROUP_ITER_DESCENDANTS_POST) {
		if (pos->cgroup->nr_descendants + pos->cgroup->nr_dying_descendants)
			continue;
		memcg = bpf_get_mem_cgroup(pos);
		if (!memcg)
			continue;
		usage = bpf_mem_cgroup_usage(memcg);
		pagecache = bpf_mem_cgroup_page_state(memcg, NR_FILE_PAGES);
		usage = usage > pagecache ? usage - pagecache : 0;
		if (usage > max_usage && !has_unkillable_task(memcg)) {
			if (victim)
				bpf_put_mem_cgroup(victim);
			victim = memcg;
			max_usage = usage;
		} else {
			bpf_put_mem_cgroup(memcg);
		}
	}
	bpf_rcu_read_unlock();
	bpf_put_mem_cgroup(root);
	if (!victim)
		return BPF_OOM_FAILED;

	last_victim_id = victim->css.cgroup->kn->id;
	bpf_for_each(css_task, task, &victim->css, CSS_TASK_ITER_PROCS) {
		struct task_struct *t = bpf_task_acquire(task);

		if (!t)
			continue;
		/* A task already dying of an OOM counts as done: the kfunc only
		 * waits for it (and reports memory freed). */
		if (!bpf_oom_kill_process(oc, t, "bpf oom test")) {
			killed++;
			ret = BPF_OOM_PROCESSED;
		}
		bpf_task_release(t);
	}
	bpf_put_mem_cgroup(victim);
	return ret;
}

SEC(".struct_ops.link")
struct bpf_oom_ops test_oom = {
	.handle_out_of_memory = (void *)test_oom_handler,
	.name = "test_oom_v3",
};
