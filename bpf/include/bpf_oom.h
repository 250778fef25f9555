/* SPDX-License-Identifier: (MIT OR Apache-2.0) */
/*
 * bpf_oom.h - the one header a bpfoom policy includes.
 *
 * It stands in for "vmlinux.h": an upstream-style BPF OOM policy compiles
 * unchanged when its `#include "vmlinux.h"` line is replaced by
 * `#include <bpf_oom.h>`.
 *
 * Kernel structs are declared with preserve_access_index, so every field
 * access becomes a CO-RE relocation that bpfoom's loader resolves against the
 * host's own layout (crates/bpfoom-abi/src/types.rs). The field order and
 * sizes below therefore do not matter; the names do. Enum values DO matter
 * (they are compiled in), and a test keeps them equal to bpfoom-abi's tables.
 *
 * A policy may instead include a vmlinux.h made from bpfoom's host BTF
 * (`bpfoom btf -o host.btf && bpftool btf dump file host.btf format c >
 * vmlinux.h`) first, as people do for real kernels: this header then skips
 * its own type definitions (guarded by __VMLINUX_H__) and adds only the
 * macros, helper and kfunc declarations, which bpftool does not print.
 *
 * Compile a policy with:
 *   clang -O2 -g -target bpf -mcpu=v3 -I bpf/include -c POLICY.bpf.c -o POLICY.bpf.o
 */
#ifndef __BPF_OOM_H__
#define __BPF_OOM_H__

#ifndef __VMLINUX_H__ /* a bpftool-made vmlinux.h (`bpfoom btf`) has these */
/* ---- basic types (what vmlinux.h would give) ---------------------------- */
typedef unsigned char __u8;
typedef signed char __s8;
typedef unsigned short __u16;
typedef short __s16;
typedef unsigned int __u32;
typedef int __s32;
typedef unsigned long long __u64;
typedef long long __s64;
typedef __u8 u8;
typedef __s8 s8;
typedef __u16 u16;
typedef __s16 s16;
typedef __u32 u32;
typedef __s32 s32;
typedef __u64 u64;
typedef __s64 s64;
typedef __u16 __be16;
typedef __u32 __be32;
typedef __u64 __be64;
typedef __u32 __wsum;
typedef int pid_t;
typedef unsigned int gfp_t;
typedef _Bool bool;
enum { false = 0, true = 1 };
#endif /* __VMLINUX_H__ */
#ifndef NULL
#define NULL ((void *)0)
#endif

#ifndef __VMLINUX_H__ /* a bpftool-made vmlinux.h (`bpfoom btf`) has these */
/* ---- uapi constants policies use in map definitions --------------------- */
enum bpf_map_type {
	BPF_MAP_TYPE_UNSPEC = 0,
	BPF_MAP_TYPE_HASH = 1,
	BPF_MAP_TYPE_ARRAY = 2,
	BPF_MAP_TYPE_PERCPU_ARRAY = 6,
	BPF_MAP_TYPE_LRU_HASH = 9,
	BPF_MAP_TYPE_RINGBUF = 27,
};

enum {
	BPF_ANY = 0,
	BPF_NOEXIST = 1,
	BPF_EXIST = 2,
	BPF_F_LOCK = 4,
};

enum {
	BPF_RB_NO_WAKEUP = 1,
	BPF_RB_FORCE_WAKEUP = 2,
};

/* bpf_iter_task_new() flags (kernel enum bpf_iter_task_type). */
enum bpf_iter_task_type {
	BPF_TASK_ITER_ALL_PROCS = 0,
	BPF_TASK_ITER_ALL_THREADS = 1,
	BPF_TASK_ITER_PROC_THREADS = 2,
};

/* Open-coded cgroup iterator orders (uapi enum bpf_cgroup_iter_order). */
enum bpf_cgroup_iter_order {
	BPF_CGROUP_ITER_ORDER_UNSPEC = 0,
	BPF_CGROUP_ITER_SELF_ONLY = 1,
	BPF_CGROUP_ITER_DESCENDANTS_PRE = 2,
	BPF_CGROUP_ITER_DESCENDANTS_POST = 3,
	BPF_CGROUP_ITER_ANCESTORS_UP = 4,
};

#endif /* __VMLINUX_H__ */
/* css_task iterator flags. */
#define CSS_TASK_ITER_PROCS (1U << 0)
#define CSS_TASK_ITER_THREADED (1U << 1)

/* task_struct->flags bits. */
#define PF_EXITING 0x00000004
#define PF_KTHREAD 0x00200000

/* oom_score_adj bounds. */
#define OOM_SCORE_ADJ_MIN (-1000)
#define OOM_SCORE_ADJ_MAX 1000

#ifndef __VMLINUX_H__ /* a bpftool-made vmlinux.h (`bpfoom btf`) has these */
/* ---- enums whose values are compiled into policies ---------------------- */
enum oom_constraint {
	CONSTRAINT_NONE = 0,
	CONSTRAINT_CPUSET = 1,
	CONSTRAINT_MEMORY_POLICY = 2,
	CONSTRAINT_MEMCG = 3,
};

/*
 * bpf_mem_cgroup_page_state() indexes: node_stat_item then memcg_stat_item,
 * as in the newest upstream tree (the pgscan/pgsteal/pgrefill counters are
 * node stats there). Values are bpfoom's host values; a policy built to run
 * on real kernels too reads them with bpf_core_enum_value(), which bpfoom
 * resolves against its host BTF. Items without a cgroupfs counter on the
 * running cgroup version read as 0 (see bpfoom-abi's stats.rs per index).
 */
enum node_stat_item {
	NR_INACTIVE_ANON = 0,
	NR_ACTIVE_ANON = 1,
	NR_INACTIVE_FILE = 2,
	NR_ACTIVE_FILE = 3,
	NR_UNEVICTABLE = 4,
	NR_SLAB_RECLAIMABLE_B = 5,
	NR_SLAB_UNRECLAIMABLE_B = 6,
	NR_ISOLATED_ANON = 7,
	NR_ISOLATED_FILE = 8,
	WORKINGSET_NODES = 9,
	WORKINGSET_REFAULT_ANON = 10,
	WORKINGSET_REFAULT_FILE = 11,
	WORKINGSET_ACTIVATE_ANON = 12,
	WORKINGSET_ACTIVATE_FILE = 13,
	WORKINGSET_RESTORE_ANON = 14,
	WORKINGSET_RESTORE_FILE = 15,
	WORKINGSET_NODERECLAIM = 16,
	NR_ANON_MAPPED = 17,
	NR_FILE_MAPPED = 18,
	NR_FILE_PAGES = 19,
	NR_FILE_DIRTY = 20,
	NR_WRITEBACK = 21,
	NR_SHMEM = 22,
	NR_SHMEM_THPS = 23,
	NR_SHMEM_PMDMAPPED = 24,
	NR_FILE_THPS = 25,
	NR_FILE_PMDMAPPED = 26,
	NR_ANON_THPS = 27,
	NR_VMSCAN_WRITE = 28,
	NR_VMSCAN_IMMEDIATE = 29,
	NR_DIRTIED = 30,
	NR_WRITTEN = 31,
	NR_THROTTLED_WRITTEN = 32,
	NR_KERNEL_MISC_RECLAIMABLE = 33,
	NR_FOLL_PIN_ACQUIRED = 34,
	NR_FOLL_PIN_RELEASED = 35,
	NR_KERNEL_STACK_KB = 36,
	NR_PAGETABLE = 37,
	NR_SECONDARY_PAGETABLE = 38,
	NR_IOMMU_PAGES = 39,
	NR_SWAPCACHE = 40,
	PGPROMOTE_SUCCESS = 41,
	PGPROMOTE_CANDIDATE = 42,
	PGPROMOTE_CANDIDATE_NRL = 43,
	PGDEMOTE_KSWAPD = 44,
	PGDEMOTE_DIRECT = 45,
	PGDEMOTE_KHUGEPAGED = 46,
	PGDEMOTE_PROACTIVE = 47,
	PGSTEAL_KSWAPD = 48,
	PGSTEAL_DIRECT = 49,
	PGSTEAL_KHUGEPAGED = 50,
	PGSTEAL_PROACTIVE = 51,
	PGSTEAL_ANON = 52,
	PGSTEAL_FILE = 53,
	PGSCAN_KSWAPD = 54,
	PGSCAN_DIRECT = 55,
	PGSCAN_KHUGEPAGED = 56,
	PGSCAN_PROACTIVE = 57,
	PGSCAN_ANON = 58,
	PGSCAN_FILE = 59,
	PGREFILL = 60,
	NR_HUGETLB = 61,
	NR_BALLOON_PAGES = 62,
	NR_KERNEL_FILE_PAGES = 63,
	NR_VM_NODE_STAT_ITEMS = 64,
};

enum memcg_stat_item {
	MEMCG_SWAP = 64,
	MEMCG_SOCK = 65,
	MEMCG_PERCPU_B = 66,
	MEMCG_VMALLOC = 67,
	MEMCG_KMEM = 68,
	MEMCG_ZSWAP_B = 69,
	MEMCG_ZSWAPPED = 70,
	MEMCG_NR_STAT = 71,
};

/* bpf_mem_cgroup_vm_events() indexes: the events a memcg counts. */
enum vm_event_item {
	PGPGIN = 0,
	PGPGOUT = 1,
	PSWPIN = 2,
	PSWPOUT = 3,
	PGACTIVATE = 4,
	PGDEACTIVATE = 5,
	PGLAZYFREE = 6,
	PGFAULT = 7,
	PGMAJFAULT = 8,
	PGLAZYFREED = 9,
	ZSWPIN = 10,
	ZSWPOUT = 11,
	ZSWPWB = 12,
	THP_FAULT_ALLOC = 13,
	THP_COLLAPSE_ALLOC = 14,
	THP_SWPOUT = 15,
	THP_SWPOUT_FALLBACK = 16,
	NR_VM_EVENT_ITEMS = 17,
};

/* bpf_mem_cgroup_memory_events() indexes (memory.events). */
enum memcg_memory_event {
	MEMCG_LOW = 0,
	MEMCG_HIGH = 1,
	MEMCG_MAX = 2,
	MEMCG_OOM = 3,
	MEMCG_OOM_KILL = 4,
	MEMCG_OOM_GROUP_KILL = 5,
	MEMCG_SWAP_HIGH = 6,
	MEMCG_SWAP_MAX = 7,
	MEMCG_SWAP_FAIL = 8,
	MEMCG_NR_MEMORY_EVENTS = 9,
};

/* PSI resources for bpf_psi_create_trigger(); OR in BPF_PSI_FULL for "full". */
enum psi_res {
	PSI_IO = 0,
	PSI_MEM = 1,
	PSI_CPU = 2,
	NR_PSI_RESOURCES = 3,
};
#endif /* __VMLINUX_H__ */
#define BPF_PSI_FULL 0x80000000U

/* bpf_out_of_memory() flags. */
#define BPF_OOM_FLAGS_WAIT_ON_OOM_LOCK (1ULL << 0)

/*
 * handle_out_of_memory() return codes. FAILED and PROCESSED keep upstream's
 * 0/1 meaning; BACKOFF is bpfoom's bounded "memory will be freed soon".
 */
#define BPF_OOM_FAILED 0
#define BPF_OOM_PROCESSED 1
#define BPF_OOM_BACKOFF 2

#ifndef __VMLINUX_H__ /* a bpftool-made vmlinux.h (`bpfoom btf`) has these */
/* ---- kernel objects (read-only to programs; layout resolved by CO-RE) --- */
#pragma clang attribute push(__attribute__((preserve_access_index)), apply_to = record)

struct cgroup;

struct kernfs_node {
	struct kernfs_node *parent;
	u64 id;
};

struct cgroup_subsys_state {
	struct cgroup *cgroup;
	struct cgroup_subsys_state *parent;
	int id;
	unsigned int flags;
	u64 serial_nr;
};

struct cgroup {
	struct cgroup_subsys_state self;
	unsigned long flags;
	int level;
	int max_depth;
	int nr_descendants;
	int nr_dying_descendants;
	int max_descendants;
	struct kernfs_node *kn;
};

struct mem_cgroup {
	struct cgroup_subsys_state css;
	bool oom_group;
	int oom_kill_disable;
	int under_oom;
};

struct signal_struct {
	short oom_score_adj;
	short oom_score_adj_min;
};

/* mm->rss_stat[] indexes, in pages. */
enum {
	MM_FILEPAGES = 0,
	MM_ANONPAGES = 1,
	MM_SWAPENTS = 2,
	MM_SHMEMPAGES = 3,
	NR_MM_COUNTERS = 4,
};

/* Since Linux 6.2 rss_stat is an array of percpu_counter; `count` is the
 * folded value BPF programs read. */
struct percpu_counter {
	s64 count;
};

typedef struct {
	s64 counter;
} atomic64_t;
typedef atomic64_t atomic_long_t;

struct mm_struct {
	struct percpu_counter rss_stat[NR_MM_COUNTERS];
	unsigned long total_vm; /* pages */
	atomic_long_t pgtables_bytes;
};

struct task_struct {
	unsigned int __state;
	unsigned int flags;
	pid_t pid;
	pid_t tgid;
	struct task_struct *real_parent;
	struct task_struct *group_leader;
	struct signal_struct *signal;
	char comm[16];
	struct mm_struct *mm; /* NULL for kernel threads and exiting tasks */
};

struct oom_control {
	struct mem_cgroup *memcg; /* NULL for a global OOM */
	const gfp_t gfp_mask;
	const int order; /* -1 for a sysrq-forced OOM */
	unsigned long totalpages;
	struct task_struct *chosen;
	long chosen_points;
	enum oom_constraint constraint;
	bool bpf_memory_freed; /* set only by memory-releasing kfuncs */
	const char *bpf_handler_name;
};

struct bpf_psi {
	void *ops;
	u64 cgroup_id;
};

struct psi_trigger {
	unsigned int state;
	u64 threshold;
	u64 win;
	u64 cgroup_id; /* 0 for a system-wide trigger */
};

struct bpf_struct_ops_link {
	void *map;
};

#pragma clang attribute pop

/* ---- struct_ops types ---------------------------------------------------- */
struct bpf_oom_ops {
	/* Mandatory. cgrp is the attach point (the root cgroup for a system-wide
	 * instance). Return BPF_OOM_PROCESSED after freeing memory through a
	 * memory-releasing kfunc, BPF_OOM_BACKOFF to wait for an exiting victim,
	 * BPF_OOM_FAILED to pass to the next handler. */
	int (*handle_out_of_memory)(struct oom_control *oc, struct cgroup *cgrp);
	/* A cgroup below the attach point went away. */
	void (*handle_cgroup_offline)(struct cgroup *cgrp, u64 cgroup_id);
	char name[64];
};

struct bpf_psi_ops {
	int (*init)(struct bpf_psi *psi);
	void (*handle_psi_event)(struct bpf_psi *psi, struct psi_trigger *t);
	void (*handle_cgroup_online)(struct bpf_psi *psi, u64 cgroup_id);
	void (*handle_cgroup_offline)(struct bpf_psi *psi, u64 cgroup_id);
	char name[64];
};

/* Opaque open-coded iterator state, lives on the BPF stack. */
struct bpf_iter_css {
	__u64 __opaque[3];
} __attribute__((aligned(8)));

struct bpf_iter_css_task {
	__u64 __opaque[1];
} __attribute__((aligned(8)));

/* The numbers iterator behind bpf_for() and bpf_repeat(). */
struct bpf_iter_num {
	__u64 __opaque[1];
} __attribute__((aligned(8)));

/* The task iterator (every process or thread of the host). */
struct bpf_iter_task {
	__u64 __opaque[3];
} __attribute__((aligned(8)));

/*
 * A lock inside a map value (uapi). bpf_spin_lock(&v->lock) and
 * bpf_spin_unlock(&v->lock) follow Linux's rules: the map value's BTF must
 * contain exactly one struct bpf_spin_lock, the program holds at most one
 * lock at a time, calls nothing but bpf_spin_unlock while it is held (static
 * subprograms are fine), never loads or stores the lock field directly, and
 * unlocks before the program exits.
 */
struct bpf_spin_lock {
	__u32 val;
};

#endif /* __VMLINUX_H__ */
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

/* ---- kfuncs (upstream names and signatures) ------------------------------ */
extern int bpf_oom_kill_process(struct oom_control *oc, struct task_struct *task,
				const char *message__str) __ksym;
extern bool bpf_task_is_oom_victim(struct task_struct *task) __ksym;
/* PSI programs only. */
extern int bpf_out_of_memory(struct mem_cgroup *memcg__nullable, int order, u64 flags,
			     const char *constraint_text__nullable) __ksym;
/* PSI programs only. */
extern int bpf_psi_create_trigger(struct bpf_psi *psi, u64 cgroup_id, u32 resource,
				  u32 threshold_us, u32 window_us) __ksym;

extern struct mem_cgroup *bpf_get_root_mem_cgroup(void) __ksym;
extern struct mem_cgroup *bpf_get_mem_cgroup(struct cgroup_subsys_state *css) __ksym;
extern void bpf_put_mem_cgroup(struct mem_cgroup *memcg) __ksym;
extern unsigned long bpf_mem_cgroup_usage(struct mem_cgroup *memcg) __ksym;
extern unsigned long bpf_mem_cgroup_page_state(struct mem_cgroup *memcg, int idx) __ksym;
extern unsigned long bpf_mem_cgroup_vm_events(struct mem_cgroup *memcg,
					      enum vm_event_item event) __ksym;
extern unsigned long bpf_mem_cgroup_memory_events(struct mem_cgroup *memcg,
						  enum memcg_memory_event event) __ksym;
extern void bpf_mem_cgroup_flush_stats(struct mem_cgroup *memcg) __ksym;

extern struct cgroup *bpf_cgroup_from_id(u64 cgid) __ksym;
extern void bpf_cgroup_release(struct cgroup *cgrp) __ksym;
extern struct task_struct *bpf_task_acquire(struct task_struct *p) __ksym;
extern void bpf_task_release(struct task_struct *p) __ksym;
extern struct task_struct *bpf_task_from_pid(s32 pid) __ksym;
extern void bpf_rcu_read_lock(void) __ksym;
extern void bpf_rcu_read_unlock(void) __ksym;

extern int bpf_iter_css_new(struct bpf_iter_css *it, struct cgroup_subsys_state *start,
			    unsigned int flags) __ksym;
extern struct cgroup_subsys_state *bpf_iter_css_next(struct bpf_iter_css *it) __ksym;
extern void bpf_iter_css_destroy(struct bpf_iter_css *it) __ksym;
extern int bpf_iter_css_task_new(struct bpf_iter_css_task *it, struct cgroup_subsys_state *css,
				 unsigned int flags) __ksym;
extern struct task_struct *bpf_iter_css_task_next(struct bpf_iter_css_task *it) __ksym;
extern void bpf_iter_css_task_destroy(struct bpf_iter_css_task *it) __ksym;

/*
 * Generic kfuncs (kernel/bpf/helpers.c, kernel/bpf/task_iter.c), with
 * Linux's flags and rules:
 * - bpf_iter_num_new(it, start, end): the numbers start..end-1; an empty
 *   iterator and -EINVAL when start > end, -E2BIG when the range exceeds 8M.
 *   bpf_iter_num_next() returns a read-only int * or NULL when drained. Use
 *   bpf_for(i, start, end) and bpf_repeat(n) below.
 * - bpf_iter_task_new(it, task__nullable, flags): every process of the host
 *   (BPF_TASK_ITER_ALL_PROCS, task NULL), every thread
 *   (BPF_TASK_ITER_ALL_THREADS, task NULL) or the threads of task's process
 *   (BPF_TASK_ITER_PROC_THREADS); -EINVAL (empty) for other combinations.
 *   RCU-protected: in a sleepable (struct_ops.s) program, create and step it
 *   inside bpf_rcu_read_lock()/unlock(); its tasks are RCU pointers (pass them
 *   to bpf_task_acquire() to keep one). bpfoom lists one thread per process.
 * - bpf_task_under_cgroup(task, ancestor): 1 when task's cgroup is ancestor
 *   or below it (KF_RCU: trusted or RCU pointers).
 * - bpf_cgroup_ancestor(cgrp, level): the ancestor of cgrp at that level
 *   (0 = root; cgrp itself at its own level), acquired, NULL above cgrp's
 *   level; release it with bpf_cgroup_release().
 */
extern int bpf_iter_num_new(struct bpf_iter_num *it, int start, int end) __ksym;
extern int *bpf_iter_num_next(struct bpf_iter_num *it) __ksym;
extern void bpf_iter_num_destroy(struct bpf_iter_num *it) __ksym;
extern int bpf_iter_task_new(struct bpf_iter_task *it, struct task_struct *task__nullable,
			     unsigned int flags) __ksym;
extern struct task_struct *bpf_iter_task_next(struct bpf_iter_task *it) __ksym;
extern void bpf_iter_task_destroy(struct bpf_iter_task *it) __ksym;
extern long bpf_task_under_cgroup(struct task_struct *task, struct cgroup *ancestor) __ksym;
extern struct cgroup *bpf_cgroup_ancestor(struct cgroup *cgrp, int level) __ksym;

/*
 * Helpers beyond maps, time and ring buffers (declared by
 * <bpf/bpf_helper_defs.h> with Linux's ids; bpfoom implements them as Linux
 * does):
 * - bpf_loop(nr_loops, callback_fn, ctx, flags): calls the static function
 *   `static long callback_fn(u64 index, void *ctx)` with index 0, 1, ...
 *   until it returns 1 or nr_loops calls are made; returns the number of
 *   calls. flags must be 0 (-EINVAL), nr_loops at most 1 << 23 (-E2BIG). ctx
 *   is a pointer to the caller's stack or NULL. The verifier checks the
 *   callback as Linux does: r1 an unknown scalar, r2 the ctx pointer, a
 *   return value of 0 or 1, explored as if called any number of times.
 * - bpf_probe_read_kernel(dst, size, ptr): copies size bytes from a kernel
 *   object (any object a policy can reach: task, cgroup, memcg, ...). The
 *   read is bounded by the object itself: a read past its end, or from an
 *   address that is no object, zeroes dst and returns -EFAULT (-14), as a
 *   faulting read does in Linux; near NULL (a NULL pointer walked, which on
 *   x86-64 Linux is a user address) it returns -ERANGE (-34). size must be a
 *   bounded scalar.
 * - bpf_probe_read_kernel_str(dst, size, ptr): the NUL-terminated string at
 *   ptr (e.g. task->comm), at most size - 1 bytes and a NUL; returns the bytes
 *   copied including the NUL, or -EFAULT (-ERANGE near NULL) with dst zeroed.
 * - bpf_strncmp(s1, s1_sz, s2): strncmp(s1, s2, s1_sz), where s2 is a
 *   constant string in read-only data; returns -1, 0 or 1.
 * - bpf_spin_lock(lock), bpf_spin_unlock(lock): see struct bpf_spin_lock.
 * - bpf_get_current_task_btf(): a trusted task_struct *, never NULL. In
 *   handle_out_of_memory it is the task whose allocation hit the limit when
 *   the host knows it (the simulator always does: the scenario step's
 *   `alloc` pid). Otherwise (the cgroup v1/v2 daemon, which learns of an OOM
 *   from the cgroup, not from the allocating task, and every PSI callback,
 *   which Linux runs from a kworker) it is the stand-in: the task running the
 *   handler, i.e. bpfoomd itself (the simulator: pid 0, a zeroed task). It is
 *   never a task the policy should kill: bpf_oom_kill_process() refuses it.
 */

/*
 * bpf_for(i, start, end): `for (i = start; i < end; i++)` over the numbers
 * iterator; bpf_repeat(n): run the body n times. The same macros as newer
 * libbpf's bpf_helpers.h (which 1.1 lacks); the verifier needs no loop
 * bound for them.
 */
#ifndef bpf_for
#define bpf_for(i, start, end)                                                        \
	for (struct bpf_iter_num ___it                                                \
		     __attribute__((aligned(8), cleanup(bpf_iter_num_destroy))),      \
	     *___p __attribute__((unused)) =                                          \
		     (bpf_iter_num_new(&___it, (start), (end)),                       \
		      (void)bpf_iter_num_destroy, (void *)0);                         \
	     ({                                                                       \
		     int *___t = bpf_iter_num_next(&___it);                           \
		     /* the program, not the iterator, bounds i for the verifier */   \
		     (___t && ((i) = *___t, (i) >= (start) && (i) < (end)));          \
	     });)
#endif
#ifndef bpf_repeat
#define bpf_repeat(N)                                                                 \
	for (struct bpf_iter_num ___it                                                \
		     __attribute__((aligned(8), cleanup(bpf_iter_num_destroy))),      \
	     *___p __attribute__((unused)) =                                          \
		     (bpf_iter_num_new(&___it, 0, (N)),                               \
		      (void)bpf_iter_num_destroy, (void *)0);                         \
	     bpf_iter_num_next(&___it);)
#endif

/*
 * bpfoom extensions (not upstream):
 * - bpf_oom_kill_cgroup: kill every process of a cgroup subtree, like
 *   memory.oom.group; sets oc->bpf_memory_freed on success.
 * - bpf_mem_cgroup_raise_limit: raise memcg's limit by `bytes` from the
 *   instance's configured reserve instead of killing; fails (-ENOSPC) when
 *   the reserve is spent; sets oc->bpf_memory_freed on success.
 * - bpf_oom_badness: the kernel OOM killer's own score for a task
 *   (LONG_MIN when the task is not eligible).
 */
extern int bpf_oom_kill_cgroup(struct oom_control *oc, struct cgroup *cgrp,
			       const char *message__str) __ksym;
extern int bpf_mem_cgroup_raise_limit(struct oom_control *oc, struct mem_cgroup *memcg,
				      u64 bytes) __ksym;
extern long bpf_oom_badness(struct task_struct *task, unsigned long totalpages) __ksym;

/*
 * bpf_for_each(type, cur, args...): loop over an open-coded iterator, as in
 * the kernel selftests. The iterator lives in a loop-scoped stack slot whose
 * cleanup attribute calls the destructor on every way out of the loop.
 */
#ifndef bpf_for_each
#define bpf_for_each(type, cur, args...)                                              \
	for (struct bpf_iter_##type ___it                                             \
		     __attribute__((aligned(8), cleanup(bpf_iter_##type##_destroy))), \
	     *___p __attribute__((unused)) =                                          \
		     (bpf_iter_##type##_new(&___it, ##args),                          \
		      /* keep the destructor's BTF: clang 14 drops it otherwise */    \
		      (void)bpf_iter_##type##_destroy, (void *)0);                    \
	     ((cur) = bpf_iter_##type##_next(&___it));)
#endif

#endif /* __BPF_OOM_H__ */
