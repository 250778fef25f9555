//! What the engine needs from the machine it runs on.
//!
//! A [`Host`] is a view of one cgroup hierarchy with its memory cgroups and
//! processes, plus the few actions an OOM policy may take. The simulator
//! implements it deterministically; the daemon implements it over cgroupfs
//! and /proc. Everything here is plain data: no VM, no BPF.

use std::time::Duration;

use bpfoom_abi::stats::StatIndex;

/// A cgroup id: the cgroup's kernfs node id (`cgrp->kn->id`). The root is
/// whatever [`Host::root`] says (1 on Linux).
pub type CgroupId = u64;
/// A process id.
pub type Pid = i32;

/// `task_struct->flags` bit: the task is exiting.
pub const PF_EXITING: u32 = 0x0000_0004;
/// The page size the engine assumes when a program reads a byte count that
/// the host gives in pages (`mm->pgtables_bytes`): 4 KiB, as on x86-64.
pub const PAGE_SIZE: u64 = 4096;
/// `task_struct->flags` bit: a kernel thread.
pub const PF_KTHREAD: u32 = 0x0020_0000;
/// `oom_score_adj` value that exempts a task from OOM killing.
pub const OOM_SCORE_ADJ_MIN: i16 = -1000;

/// One process as the OOM killer sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TaskInfo {
    /// Process id.
    pub pid: Pid,
    /// Thread group id (equal to `pid` for the processes bpfoom lists).
    pub tgid: Pid,
    /// Command name (at most 15 bytes are visible to programs).
    pub comm: String,
    /// The cgroup the process is in.
    pub cgroup: CgroupId,
    /// `/proc/PID/oom_score_adj`, -1000..=1000.
    pub oom_score_adj: i16,
    /// `PF_*` flags.
    pub flags: u32,
    /// Resident pages (anon + file + shmem mapped by the process).
    pub rss_pages: u64,
    /// The file-backed part of `rss_pages` (`RssFile`, `MM_FILEPAGES`).
    pub rss_file_pages: u64,
    /// The shared-memory part of `rss_pages` (`RssShmem`, `MM_SHMEMPAGES`).
    pub rss_shmem_pages: u64,
    /// Mapped virtual memory in pages (`VmSize`, `mm->total_vm`).
    pub total_vm_pages: u64,
    /// Swap entries.
    pub swap_pages: u64,
    /// Page-table pages.
    pub pgtables_pages: u64,
}

/// A memory cgroup's accounting.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MemcgInfo {
    /// `memory.current` in bytes.
    pub usage: u64,
    /// `memory.max` in bytes; `None` is "max" (unlimited).
    pub limit: Option<u64>,
    /// `memory.oom.group`.
    pub oom_group: bool,
}

/// What the kernel's own OOM killer did when the engine fell back to it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KernelOom {
    /// It killed these processes (more than one for `memory.oom.group`),
    /// as they were just before the kill.
    Killed(Vec<TaskInfo>),
    /// It found an OOM victim of an earlier kill still exiting in scope and
    /// waited for it instead of choosing another.
    WaitedForVictim,
    /// Nothing in scope was eligible.
    NoVictim,
    /// The host acted but cannot say on whom (a real kernel).
    Delegated,
}

/// A host action that failed; `errno` is what the kfunc returns (negated).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{reason} (errno {errno})")]
pub struct HostError {
    /// Positive errno value.
    pub errno: i32,
    /// Human-readable cause.
    pub reason: String,
}

impl HostError {
    /// A new error.
    pub fn new(errno: i32, reason: impl Into<String>) -> Self {
        Self {
            errno,
            reason: reason.into(),
        }
    }
}

/// `ESRCH`.
pub const ESRCH: i32 = 3;
/// `EPERM`.
pub const EPERM: i32 = 1;
/// `EINVAL`.
pub const EINVAL: i32 = 22;
/// `ENOSPC`.
pub const ENOSPC: i32 = 28;
/// `EBUSY`.
pub const EBUSY: i32 = 16;
/// `ENOENT`.
pub const ENOENT: i32 = 2;
/// `EOPNOTSUPP`.
pub const EOPNOTSUPP: i32 = 95;

/// The machine under the engine.
pub trait Host {
    /// The root cgroup.
    fn root(&self) -> CgroupId;
    /// Parent of a cgroup (`None` for the root or an unknown id).
    fn parent(&self, cg: CgroupId) -> Option<CgroupId>;
    /// Live children of a cgroup, in creation order.
    fn children(&self, cg: CgroupId) -> Vec<CgroupId>;
    /// How many live cgroups are below `cg` (`cgroup->nr_descendants`).
    /// Hosts that can count without listing every child override it: it is
    /// asked for every ancestor of a cgroup a policy sees.
    fn nr_descendants(&self, cg: CgroupId) -> u64 {
        subtree_pre(self, cg).len().saturating_sub(1) as u64
    }
    /// The cgroup's path relative to the hierarchy root ("/" for the root);
    /// `None` when the cgroup does not exist (any more).
    fn path(&self, cg: CgroupId) -> Option<String>;
    /// Children that were removed but are still dying.
    fn dying_descendants(&self, _cg: CgroupId) -> u32 {
        0
    }
    /// Memory accounting of a cgroup.
    fn memcg(&self, cg: CgroupId) -> Option<MemcgInfo>;
    /// A `memory.stat` item in bytes (pages converted), hierarchical.
    fn page_state(&self, cg: CgroupId, item: &StatIndex) -> Option<u64>;
    /// A `memory.stat` event counter.
    fn vm_event(&self, cg: CgroupId, item: &StatIndex) -> Option<u64>;
    /// A `memory.events` counter.
    fn memory_event(&self, cg: CgroupId, item: &StatIndex) -> Option<u64>;
    /// Makes the stats current (a no-op where they always are).
    fn flush_stats(&mut self, _cg: CgroupId) {}
    /// Processes directly in `cg` (not in its descendants), in pid order.
    fn tasks(&self, cg: CgroupId) -> Vec<Pid>;
    /// One process; `None` once it has exited.
    fn task(&self, pid: Pid) -> Option<TaskInfo>;
    /// Sends the OOM kill to a process. The engine has already refused init,
    /// kernel threads and the daemon itself.
    fn kill(&mut self, pid: Pid) -> Result<(), HostError>;
    /// Kills a process that is already exiting as an OOM victim: the kernel's
    /// OOM reaper frees its memory now instead of waiting for its exit.
    fn reap(&mut self, _pid: Pid) {}
    /// Kills every process of the subtree under `cg` at once (cgroup v2's
    /// `cgroup.kill`: no process can fork its way out). The engine calls it
    /// only when every process there may be killed (no oom_score_adj -1000
    /// task, no init, kernel thread or daemon), so the result is the same as
    /// its process-by-process kill; `pids` are those processes, for the host
    /// to track as victims until they exit. `Err` (the default: unsupported)
    /// makes the engine fall back to killing process by process.
    fn kill_cgroup(&mut self, _cg: CgroupId, _pids: &[Pid]) -> Result<(), HostError> {
        Err(HostError::new(
            EOPNOTSUPP,
            "no whole-cgroup kill on this host",
        ))
    }
    /// Sets `memory.max`.
    fn set_limit(&mut self, cg: CgroupId, bytes: u64) -> Result<(), HostError>;
    /// Total RAM (plus swap) in pages: `oc->totalpages` of a global OOM.
    fn total_pages(&self) -> u64;
    /// Page size in bytes.
    fn page_size(&self) -> u64 {
        4096
    }
    /// Monotonic time.
    fn now(&self) -> Duration;
    /// What `bpf_ktime_get_ns` returns: the kernel's monotonic clock on a
    /// real host (comparable with task start times), the simulated clock in
    /// the simulator, so that a simulated run is reproducible.
    fn ktime_ns(&self) -> u64 {
        self.now().as_nanos().min(u128::from(u64::MAX)) as u64
    }
    /// Waits up to `timeout` for memory in the OOM's scope (`None` = global)
    /// to be released; true when it was.
    fn wait_for_release(&mut self, scope: Option<CgroupId>, timeout: Duration) -> bool;
    /// True when the OOM in `scope` no longer holds (usage fits the limit,
    /// e.g. after a wait); the engine then stops without the fallback.
    fn oom_resolved(&self, scope: Option<CgroupId>) -> bool;
    /// Runs the kernel's own OOM killer for this scope.
    fn kernel_oom(&mut self, scope: Option<CgroupId>, totalpages: u64) -> KernelOom;
    /// Receives every decision record as it is made (the simulator prints
    /// them, the daemon logs them).
    fn record(&mut self, _r: &crate::Record) {}
    /// The daemon's own pid, which policies may never kill.
    fn self_pid(&self) -> Option<Pid> {
        None
    }
    /// The task whose allocation caused the OOM being handled, when the
    /// host knows it (Linux runs `handle_out_of_memory` in that task:
    /// `bpf_get_current_task_btf()` returns it). The simulator knows it;
    /// a host that learns of OOMs from cgroup files does not.
    fn allocating_task(&self) -> Option<Pid> {
        None
    }
}

/// Walks from `cg` up to the root, `cg` first.
pub fn ancestors(host: &(impl Host + ?Sized), cg: CgroupId) -> Vec<CgroupId> {
    let mut v = vec![cg];
    let mut cur = cg;
    // Bounded by the depth limit of cgroup hierarchies; a host returning a
    // cycle must not hang the engine.
    while let Some(p) = host.parent(cur) {
        if v.len() > 4096 {
            break;
        }
        v.push(p);
        cur = p;
    }
    v
}

/// True when `cg` is `scope` or below it.
pub fn is_within(host: &(impl Host + ?Sized), cg: CgroupId, scope: CgroupId) -> bool {
    ancestors(host, cg).contains(&scope)
}

/// The subtree under `cg`, pre-order (parent before children).
pub fn subtree_pre(host: &(impl Host + ?Sized), cg: CgroupId) -> Vec<CgroupId> {
    let mut out = Vec::new();
    let mut stack = vec![cg];
    while let Some(c) = stack.pop() {
        out.push(c);
        let mut ch = host.children(c);
        ch.reverse();
        stack.extend(ch);
    }
    out
}

/// The subtree under `cg`, post-order (children before their parent).
pub fn subtree_post(host: &(impl Host + ?Sized), cg: CgroupId) -> Vec<CgroupId> {
    fn walk(host: &(impl Host + ?Sized), cg: CgroupId, out: &mut Vec<CgroupId>) {
        for c in host.children(cg) {
            walk(host, c, out);
        }
        out.push(cg);
    }
    let mut out = Vec::new();
    walk(host, cg, &mut out);
    out
}

/// The kernel's `oom_badness()` score of a task, or `None` when the task is
/// never chosen (oom_score_adj -1000, a kernel thread, init, or exiting).
///
/// `points = rss + swap entries + page-table pages` (all in pages), then
/// `points += oom_score_adj * totalpages / 1000` with C integer division
/// (truncating toward zero). The sum may be negative; it is still a score.
/// Exiting tasks are skipped because their memory is already on its way out
/// (the kernel marks reaped ones `MMF_OOM_SKIP`).
pub fn oom_badness(task: &TaskInfo, totalpages: u64) -> Option<i64> {
    if task.oom_score_adj == OOM_SCORE_ADJ_MIN
        || task.flags & PF_KTHREAD != 0
        || task.pid == 1
        || task.flags & PF_EXITING != 0
    {
        return None;
    }
    let pages = task.rss_pages + task.swap_pages + task.pgtables_pages;
    let adj = i64::from(task.oom_score_adj) * (totalpages as i64) / 1000;
    Some(pages as i64 + adj)
}

/// The cgroup whose whole membership dies with a victim in `victim_cg`:
/// the highest cgroup with `memory.oom.group` set on the path from the
/// victim's cgroup up to (and including) the OOM's scope (`None` = up to the
/// root). This is the kernel's `mem_cgroup_get_oom_group()`.
pub fn oom_group_of(
    host: &(impl Host + ?Sized),
    victim_cg: CgroupId,
    scope: Option<CgroupId>,
) -> Option<CgroupId> {
    let mut group = None;
    for cg in ancestors(host, victim_cg) {
        if host.memcg(cg).is_some_and(|m| m.oom_group) {
            group = Some(cg);
        }
        if Some(cg) == scope {
            break;
        }
    }
    group
}

/// Whether the engine may kill this process at all.
pub fn killable(task: &TaskInfo, self_pid: Option<Pid>) -> Result<(), HostError> {
    if task.pid == 1 || task.tgid == 1 {
        return Err(HostError::new(EPERM, "refusing to kill init"));
    }
    if task.flags & PF_KTHREAD != 0 {
        return Err(HostError::new(EPERM, "refusing to kill a kernel thread"));
    }
    if Some(task.tgid) == self_pid {
        return Err(HostError::new(EPERM, "refusing to kill the bpfoom daemon"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn task(pid: Pid, rss: u64, adj: i16) -> TaskInfo {
        TaskInfo {
            pid,
            tgid: pid,
            comm: "t".into(),
            cgroup: 1,
            oom_score_adj: adj,
            flags: 0,
            rss_pages: rss,
            rss_file_pages: 0,
            rss_shmem_pages: 0,
            total_vm_pages: rss,
            swap_pages: 0,
            pgtables_pages: 0,
        }
    }

    #[test]
    fn badness_matches_hand_computed_numbers() {
        // 8 GiB of RAM = 2097152 pages.
        let total = 2_097_152;
        // 10 MiB rss = 2560 pages, adj 0: 2560.
        assert_eq!(oom_badness(&task(10, 2560, 0), total), Some(2560));
        // adj +1000 adds all of totalpages: 2560 + 2097152 = 2099712.
        assert_eq!(oom_badness(&task(10, 2560, 1000), total), Some(2_099_712));
        // adj -500: 2560 - 1048576 = -1046016 (negative, still a candidate).
        assert_eq!(oom_badness(&task(10, 2560, -500), total), Some(-1_046_016));
        // rss + swap + page tables: 100 + 50 + 3 = 153; adj 1 on 80M (20480
        // pages) adds 20480/1000 = 20 (truncated) -> 173.
        let mut t = task(10, 100, 1);
        t.swap_pages = 50;
        t.pgtables_pages = 3;
        assert_eq!(oom_badness(&t, 20_480), Some(173));
        // -7 * 20480 / 1000 = -143.36, truncated toward zero = -143.
        t.oom_score_adj = -7;
        assert_eq!(oom_badness(&t, 20_480), Some(153 - 143));
    }

    #[test]
    fn exempt_tasks_have_no_badness() {
        assert_eq!(oom_badness(&task(10, 1 << 20, -1000), 1 << 21), None);
        assert_eq!(oom_badness(&task(1, 1 << 20, 0), 1 << 21), None);
        let mut k = task(2, 1 << 20, 0);
        k.flags = PF_KTHREAD;
        assert_eq!(oom_badness(&k, 1 << 21), None);
        assert!(killable(&k, None).is_err());
        assert!(killable(&task(1, 0, 0), None).is_err());
        assert!(killable(&task(77, 0, 0), Some(77)).is_err());
        assert!(killable(&task(78, 0, 0), Some(77)).is_ok());
    }
}
