//! The deterministic simulated machine.
//!
//! Memory model: a process holds `rss` (anonymous) and `file` (page cache
//! it keeps charged; never reclaimed in this model) bytes, charged to its
//! cgroup and every ancestor. A charge that would push a cgroup over its
//! `memory.max` (the lowest such cgroup on the path) is a memcg OOM there;
//! one that would push the machine over `[host] memory` is a global OOM.
//! Time moves only through `advance` steps and the waits of the OOM path
//! (a honoured BACKOFF, the kernel waiting for an exiting victim).

use std::collections::BTreeMap;
use std::time::Duration;

use bpfoom_abi::stats::StatIndex;
use bpfoom_engine::host::{
    ancestors, subtree_pre, CgroupId, Host, HostError, KernelOom, MemcgInfo, Pid, TaskInfo, EBUSY,
    ENOENT, PF_EXITING, PF_KTHREAD,
};
use bpfoom_engine::Record;
use serde::Serialize;

use crate::kernel::{self, Choice};

const PAGE: u64 = 4096;

/// Why the simulated machine refused a cgroup or process change.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SimHostError {
    /// [`SimHost::mkdir`]: the path is relative.
    #[error("cgroup path {path:?} must start with /")]
    RelativePath {
        /// As given.
        path: String,
    },
    /// [`SimHost::mkdir`]: the path has no parent.
    #[error("bad cgroup path {path:?}")]
    BadPath {
        /// As given.
        path: String,
    },
    /// [`SimHost::rmdir`] of the root.
    #[error("cannot remove the root cgroup")]
    RemoveRoot,
    /// [`SimHost::rmdir`] of an unknown or removed cgroup.
    #[error("no such cgroup")]
    NoSuchCgroup {
        /// The id given.
        id: CgroupId,
    },
    /// [`SimHost::rmdir`] of a cgroup with live children.
    #[error("{path} has child cgroups")]
    HasChildren {
        /// The cgroup.
        path: String,
    },
    /// [`SimHost::rmdir`] of a cgroup with processes.
    #[error("{path} still has processes")]
    HasProcesses {
        /// The cgroup.
        path: String,
    },
    /// [`SimHost::add_process`] with pid 0 or below.
    #[error("pid {pid} must be positive")]
    BadPid {
        /// The pid given.
        pid: Pid,
    },
    /// [`SimHost::add_process`] of a pid already running.
    #[error("pid {pid} already exists")]
    PidExists {
        /// The pid given.
        pid: Pid,
    },
    /// [`SimHost::add_process`] into a cgroup that does not exist.
    #[error("no cgroup #{cgroup}")]
    NoCgroupFor {
        /// The process.
        pid: Pid,
        /// The cgroup it names.
        cgroup: CgroupId,
    },
}

/// Simulator events that are not engine decisions.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum SimEvent {
    /// A process is gone and its memory uncharged.
    Exit {
        /// Pid.
        pid: Pid,
        /// `killed` (a victim finished exiting), `reaped` (the OOM reaper
        /// took its memory early) or `exited` (a normal exit).
        reason: String,
        /// Simulated time, milliseconds.
        t_ms: u64,
    },
    /// An allocation could not be satisfied.
    AllocFailed {
        /// Allocating process.
        pid: Pid,
        /// Bytes asked for.
        bytes: u64,
        /// Why.
        reason: String,
    },
    /// The result of one `[[expect]]`.
    Expect {
        /// 1-based index among the expects.
        index: usize,
        /// Line in the scenario file.
        line: usize,
        /// Whether it held.
        ok: bool,
        /// What was checked and found.
        message: String,
    },
}

/// One output line.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum Line {
    /// An engine decision record.
    Engine(Record),
    /// A simulator event.
    Sim(SimEvent),
}

#[derive(Clone, Debug)]
struct SimCgroup {
    path: String,
    parent: Option<CgroupId>,
    children: Vec<CgroupId>,
    limit: Option<u64>,
    oom_group: bool,
    alive: bool,
    /// `memory.events`, indexed like bpfoom-abi's MEMORY_EVENTS.
    events: [u64; 9],
    pgscan_direct: u64,
    /// Hierarchical charge, kept current on every change: (anon, file, swap).
    charged: [u64; 3],
    /// Processes directly in this cgroup.
    members: std::collections::BTreeSet<Pid>,
}

/// A simulated process.
#[derive(Clone, Debug)]
pub struct SimProc {
    /// Pid.
    pub pid: Pid,
    /// Command.
    pub comm: String,
    /// Cgroup.
    pub cgroup: CgroupId,
    /// Anonymous bytes.
    pub rss: u64,
    /// Resident file-backed bytes it maps (RSS, not charged by the model).
    pub rss_file: u64,
    /// Resident shared-memory bytes (RSS, not charged by the model).
    pub rss_shmem: u64,
    /// Page-cache bytes.
    pub file: u64,
    /// Swapped bytes.
    pub swap: u64,
    /// `oom_score_adj`.
    pub oom_score_adj: i16,
    /// Kernel thread.
    pub kthread: bool,
    /// Set once killed: when it will be gone.
    pub exiting_until: Option<Duration>,
}

/// The simulated host.
pub struct SimHost {
    memory: u64,
    cgroups: Vec<SimCgroup>,
    procs: BTreeMap<Pid, SimProc>,
    now: Duration,
    exit_delay: Duration,
    /// The charge being attempted: (cgroup, bytes).
    pending: Option<(CgroupId, u64)>,
    /// The process whose charge is being attempted.
    allocator: Option<Pid>,
    lines: Vec<Line>,
    self_pid: Option<Pid>,
}

const ROOT: CgroupId = 1;

impl SimHost {
    /// A machine with `memory` bytes of RAM and only the root cgroup.
    pub fn new(memory: u64, exit_delay: Duration) -> Self {
        Self {
            memory,
            cgroups: vec![SimCgroup {
                path: "/".into(),
                parent: None,
                children: Vec::new(),
                limit: None,
                oom_group: false,
                alive: true,
                events: [0; 9],
                pgscan_direct: 0,
                charged: [0; 3],
                members: Default::default(),
            }],
            procs: BTreeMap::new(),
            now: Duration::ZERO,
            exit_delay,
            pending: None,
            allocator: None,
            lines: Vec::new(),
            self_pid: None,
        }
    }

    /// Declares `pid` to be the daemon itself (policies may not kill it).
    pub fn set_self_pid(&mut self, pid: Option<Pid>) {
        self.self_pid = pid;
    }

    fn cg(&self, id: CgroupId) -> Option<&SimCgroup> {
        id.checked_sub(1)
            .and_then(|i| self.cgroups.get(i as usize))
            .filter(|c| c.alive)
    }

    fn cg_mut(&mut self, id: CgroupId) -> Option<&mut SimCgroup> {
        id.checked_sub(1)
            .and_then(|i| self.cgroups.get_mut(i as usize))
            .filter(|c| c.alive)
    }

    /// The live cgroup at `path`.
    pub fn lookup(&self, path: &str) -> Option<CgroupId> {
        let p = normalize(path);
        self.cgroups
            .iter()
            .position(|c| c.alive && c.path == p)
            .map(|i| i as CgroupId + 1)
    }

    /// Creates a cgroup (and missing ancestors, unlimited); returns its id.
    pub fn mkdir(
        &mut self,
        path: &str,
        limit: Option<u64>,
        oom_group: bool,
    ) -> Result<CgroupId, SimHostError> {
        let p = normalize(path);
        if !p.starts_with('/') {
            return Err(SimHostError::RelativePath { path: path.into() });
        }
        if let Some(id) = self.lookup(&p) {
            if let Some(c) = self.cg_mut(id) {
                c.limit = limit;
                c.oom_group = oom_group;
            }
            return Ok(id);
        }
        let parent_path = match p.rfind('/') {
            Some(0) => "/".to_string(),
            Some(i) => p[..i].to_string(),
            None => return Err(SimHostError::BadPath { path: path.into() }),
        };
        let parent = match self.lookup(&parent_path) {
            Some(id) => id,
            None => self.mkdir(&parent_path, None, false)?,
        };
        self.cgroups.push(SimCgroup {
            path: p,
            parent: Some(parent),
            children: Vec::new(),
            limit,
            oom_group,
            alive: true,
            events: [0; 9],
            pgscan_direct: 0,
            charged: [0; 3],
            members: Default::default(),
        });
        let id = self.cgroups.len() as CgroupId;
        if let Some(par) = self.cg_mut(parent) {
            par.children.push(id);
        }
        Ok(id)
    }

    /// Removes an empty cgroup.
    pub fn rmdir(&mut self, id: CgroupId) -> Result<(), SimHostError> {
        if id == ROOT {
            return Err(SimHostError::RemoveRoot);
        }
        let c = self.cg(id).ok_or(SimHostError::NoSuchCgroup { id })?;
        if c.children.iter().any(|&ch| self.cg(ch).is_some()) {
            return Err(SimHostError::HasChildren {
                path: c.path.clone(),
            });
        }
        if self.procs.values().any(|p| p.cgroup == id) {
            return Err(SimHostError::HasProcesses {
                path: c.path.clone(),
            });
        }
        let parent = c.parent;
        if let Some(c) = self.cg_mut(id) {
            c.alive = false;
        }
        if let Some(p) = parent.and_then(|p| self.cg_mut(p)) {
            p.children.retain(|&ch| ch != id);
        }
        Ok(())
    }

    /// Adds a process (no charge, no OOM check).
    pub fn add_process(&mut self, p: SimProc) -> Result<(), SimHostError> {
        if p.pid <= 0 {
            return Err(SimHostError::BadPid { pid: p.pid });
        }
        if self.procs.contains_key(&p.pid) {
            return Err(SimHostError::PidExists { pid: p.pid });
        }
        if self.cg(p.cgroup).is_none() {
            return Err(SimHostError::NoCgroupFor {
                pid: p.pid,
                cgroup: p.cgroup,
            });
        }
        self.account(p.cgroup, [p.rss, p.file, p.swap], true);
        if let Some(c) = self.cg_mut(p.cgroup) {
            c.members.insert(p.pid);
        }
        self.procs.insert(p.pid, p);
        Ok(())
    }

    /// Adds (or removes) a process's memory to its cgroup and every ancestor.
    fn account(&mut self, cg: CgroupId, amounts: [u64; 3], add: bool) {
        for c in ancestors(self, cg) {
            if let Some(c) = c
                .checked_sub(1)
                .and_then(|i| self.cgroups.get_mut(i as usize))
            {
                for (have, delta) in c.charged.iter_mut().zip(amounts) {
                    *have = if add {
                        *have + delta
                    } else {
                        have.saturating_sub(delta)
                    };
                }
            }
        }
    }

    /// A process, if alive (exiting ones included).
    pub fn process(&self, pid: Pid) -> Option<&SimProc> {
        self.procs.get(&pid)
    }

    /// Whether `cg` is `top` or below it (no allocation: this is the
    /// simulator's hot path).
    fn within(&self, mut cg: CgroupId, top: CgroupId) -> bool {
        loop {
            if cg == top {
                return true;
            }
            match cg
                .checked_sub(1)
                .and_then(|i| self.cgroups.get(i as usize))
                .and_then(|c| c.parent)
            {
                Some(p) => cg = p,
                None => return false,
            }
        }
    }

    /// Number of processes directly in `cg`.
    pub fn process_count(&self, cg: CgroupId) -> usize {
        self.cg(cg).map_or(0, |c| c.members.len())
    }

    /// Bytes charged to `cg` and its descendants.
    pub fn usage(&self, cg: CgroupId) -> u64 {
        self.cg(cg).map_or(0, |c| c.charged[0] + c.charged[1])
    }

    fn total_usage(&self) -> u64 {
        self.usage(ROOT)
    }

    /// Where charging `bytes` to `cg` would fail: `Some(Some(memcg))` for the
    /// lowest cgroup over its limit, `Some(None)` for the machine, `None`
    /// when it fits.
    pub fn over_limit(&self, cg: CgroupId, bytes: u64) -> Option<Option<CgroupId>> {
        for c in ancestors(self, cg) {
            if let Some(limit) = self.cg(c).and_then(|c| c.limit) {
                if self.usage(c).saturating_add(bytes) > limit {
                    return Some(Some(c));
                }
            }
        }
        (self.total_usage().saturating_add(bytes) > self.memory).then_some(None)
    }

    /// Counts an event in `memory.events` of `cg` and its ancestors.
    pub fn count_event(&mut self, cg: CgroupId, idx: usize, n: u64) {
        for c in ancestors(self, cg) {
            if let Some(c) = self.cg_mut(c) {
                c.events[idx] += n;
            }
        }
    }

    /// Records direct reclaim scanning before an OOM.
    pub fn count_scan(&mut self, cg: CgroupId, pages: u64) {
        for c in ancestors(self, cg) {
            if let Some(c) = self.cg_mut(c) {
                c.pgscan_direct += pages;
            }
        }
    }

    /// Sets the charge being attempted (for [`Host::oom_resolved`]).
    pub fn set_pending(&mut self, pending: Option<(CgroupId, u64)>) {
        self.pending = pending;
    }

    /// Sets the process whose charge is being attempted (for
    /// [`Host::allocating_task`]: `bpf_get_current_task_btf()` in an OOM
    /// handler).
    pub fn set_allocator(&mut self, pid: Option<Pid>) {
        self.allocator = pid;
    }

    /// Charges or uncharges anonymous memory.
    pub fn set_rss(&mut self, pid: Pid, rss: u64) {
        let Some(p) = self.procs.get_mut(&pid) else {
            return;
        };
        let (old, cg) = (p.rss, p.cgroup);
        p.rss = rss;
        if rss >= old {
            self.account(cg, [rss - old, 0, 0], true);
        } else {
            self.account(cg, [old - rss, 0, 0], false);
        }
    }

    /// A normal exit.
    pub fn exit(&mut self, pid: Pid) -> bool {
        self.remove(pid, "exited")
    }

    fn remove(&mut self, pid: Pid, reason: &str) -> bool {
        let gone = self.procs.remove(&pid);
        if let Some(p) = &gone {
            self.account(p.cgroup, [p.rss, p.file, p.swap], false);
            if let Some(c) = p
                .cgroup
                .checked_sub(1)
                .and_then(|i| self.cgroups.get_mut(i as usize))
            {
                c.members.remove(&pid);
            }
            self.log(Line::Sim(SimEvent::Exit {
                pid,
                reason: reason.into(),
                t_ms: self.now.as_millis() as u64,
            }));
        }
        gone.is_some()
    }

    /// Moves the clock forward, finishing the exits that fall due.
    pub fn advance(&mut self, d: Duration) {
        let until = self.now + d;
        loop {
            let next = self
                .procs
                .values()
                .filter_map(|p| p.exiting_until.map(|t| (t, p.pid)))
                .filter(|&(t, _)| t <= until)
                .min();
            let Some((t, pid)) = next else { break };
            self.now = self.now.max(t);
            self.remove(pid, "killed");
        }
        self.now = until;
    }

    /// The earliest exit among dying processes in `scope`.
    fn next_exit(&self, scope: Option<CgroupId>) -> Option<Duration> {
        self.procs
            .values()
            .filter(|p| scope.is_none_or(|s| self.within(p.cgroup, s)))
            .filter_map(|p| p.exiting_until)
            .min()
    }

    /// Appends an output line.
    pub fn log(&mut self, l: Line) {
        self.lines.push(l);
    }

    /// Output lines so far.
    pub fn lines(&self) -> &[Line] {
        &self.lines
    }

    /// Current `memory.max` of a cgroup.
    pub fn limit(&self, cg: CgroupId) -> Option<u64> {
        self.cg(cg).and_then(|c| c.limit)
    }
}

fn normalize(path: &str) -> String {
    let t = path.trim().trim_end_matches('/');
    if t.is_empty() {
        "/".into()
    } else {
        t.into()
    }
}

impl Host for SimHost {
    fn root(&self) -> CgroupId {
        ROOT
    }

    fn parent(&self, cg: CgroupId) -> Option<CgroupId> {
        // Dead cgroups keep their parent so offline handlers can still walk.
        cg.checked_sub(1)
            .and_then(|i| self.cgroups.get(i as usize))
            .and_then(|c| c.parent)
    }

    fn children(&self, cg: CgroupId) -> Vec<CgroupId> {
        self.cg(cg).map(|c| c.children.clone()).unwrap_or_default()
    }

    fn path(&self, cg: CgroupId) -> Option<String> {
        self.cg(cg).map(|c| c.path.clone())
    }

    fn memcg(&self, cg: CgroupId) -> Option<MemcgInfo> {
        let c = self.cg(cg)?;
        Some(MemcgInfo {
            usage: self.usage(cg),
            limit: c.limit,
            oom_group: c.oom_group,
        })
    }

    fn page_state(&self, cg: CgroupId, item: &StatIndex) -> Option<u64> {
        let [anon, file, swap] = self.cg(cg)?.charged;
        Some(match item.name {
            "NR_FILE_PAGES" | "NR_FILE_MAPPED" | "NR_ACTIVE_FILE" => file,
            "NR_ANON_MAPPED" | "NR_ACTIVE_ANON" => anon,
            "MEMCG_SWAP" => swap,
            // pgscan is a node stat in the newest upstream tree.
            "PGSCAN_DIRECT" => self.cg(cg)?.pgscan_direct,
            _ => 0,
        })
    }

    fn vm_event(&self, cg: CgroupId, _item: &StatIndex) -> Option<u64> {
        // The scenario models no per-memcg VM events.
        self.cg(cg).map(|_| 0)
    }

    fn memory_event(&self, cg: CgroupId, item: &StatIndex) -> Option<u64> {
        self.cg(cg)?.events.get(item.value as usize).copied()
    }

    fn tasks(&self, cg: CgroupId) -> Vec<Pid> {
        self.cg(cg)
            .map(|c| c.members.iter().copied().collect())
            .unwrap_or_default()
    }

    fn task(&self, pid: Pid) -> Option<TaskInfo> {
        let p = self.procs.get(&pid)?;
        let mut flags = 0;
        if p.exiting_until.is_some() {
            flags |= PF_EXITING;
        }
        if p.kthread {
            flags |= PF_KTHREAD;
        }
        Some(TaskInfo {
            pid,
            tgid: pid,
            comm: p.comm.clone(),
            cgroup: p.cgroup,
            oom_score_adj: p.oom_score_adj,
            flags,
            rss_pages: (p.rss + p.rss_file + p.rss_shmem) / PAGE,
            rss_file_pages: p.rss_file / PAGE,
            rss_shmem_pages: p.rss_shmem / PAGE,
            // Everything it has mapped: resident and swapped out.
            total_vm_pages: (p.rss + p.rss_file + p.rss_shmem + p.swap) / PAGE,
            swap_pages: p.swap / PAGE,
            pgtables_pages: 0,
        })
    }

    fn kill(&mut self, pid: Pid) -> Result<(), HostError> {
        let p = self
            .procs
            .get_mut(&pid)
            .ok_or_else(|| HostError::new(ENOENT, format!("no process {pid}")))?;
        if p.exiting_until.is_some() {
            return Err(HostError::new(
                EBUSY,
                format!("process {pid} is already exiting"),
            ));
        }
        p.exiting_until = Some(self.now + self.exit_delay);
        let cg = p.cgroup;
        // memory.events oom_kill (index 4) counts in the victim's memcg and above.
        self.count_event(cg, 4, 1);
        // Even an instant exit happens after the kill is on record: the
        // runner settles exits due "now" once the OOM event is over.
        Ok(())
    }

    fn reap(&mut self, pid: Pid) {
        if self
            .procs
            .get(&pid)
            .is_some_and(|p| p.exiting_until.is_some())
        {
            self.remove(pid, "reaped");
        }
    }

    fn set_limit(&mut self, cg: CgroupId, bytes: u64) -> Result<(), HostError> {
        let c = self
            .cg_mut(cg)
            .ok_or_else(|| HostError::new(ENOENT, format!("no cgroup #{cg}")))?;
        c.limit = Some(bytes);
        Ok(())
    }

    fn total_pages(&self) -> u64 {
        self.memory / PAGE
    }

    fn now(&self) -> Duration {
        self.now
    }

    fn wait_for_release(&mut self, scope: Option<CgroupId>, timeout: Duration) -> bool {
        match self.next_exit(scope) {
            Some(t) if t <= self.now + timeout => {
                let d = t.saturating_sub(self.now);
                self.advance(d);
                true
            }
            _ => {
                self.advance(timeout);
                false
            }
        }
    }

    fn oom_resolved(&self, scope: Option<CgroupId>) -> bool {
        match self.pending {
            Some((cg, bytes)) => self.over_limit(cg, bytes).is_none(),
            None => match scope {
                Some(s) => self
                    .memcg(s)
                    .is_none_or(|m| m.limit.is_none_or(|l| m.usage <= l)),
                None => self.total_usage() <= self.memory,
            },
        }
    }

    fn kernel_oom(&mut self, scope: Option<CgroupId>, totalpages: u64) -> KernelOom {
        match kernel::choose(self, scope, totalpages) {
            Choice::Wait => {
                if let Some(t) = self.next_exit(scope) {
                    let d = t.saturating_sub(self.now);
                    self.advance(d);
                }
                KernelOom::WaitedForVictim
            }
            Choice::None => KernelOom::NoVictim,
            Choice::Kill { victim, group, .. } => {
                let mut pids = vec![victim];
                if let Some(g) = group {
                    for c in subtree_pre(self, g) {
                        for pid in self.tasks(c) {
                            let spare = self.task(pid).is_none_or(|t| {
                                t.oom_score_adj == -1000 || t.flags & PF_KTHREAD != 0 || pid == 1
                            });
                            if pid != victim && !spare {
                                pids.push(pid);
                            }
                        }
                    }
                }
                let mut killed = Vec::new();
                for pid in pids {
                    let Some(info) = self.task(pid) else { continue };
                    if self.kill(pid).is_ok() {
                        killed.push(info);
                    }
                }
                KernelOom::Killed(killed)
            }
        }
    }

    fn self_pid(&self) -> Option<Pid> {
        self.self_pid
    }

    fn allocating_task(&self) -> Option<Pid> {
        self.allocator
    }

    fn record(&mut self, r: &Record) {
        self.lines.push(Line::Engine(r.clone()));
    }
}
