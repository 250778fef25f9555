//! [`LinuxHost`]: the engine's [`Host`] over cgroupfs and /proc.
//!
//! An OOM reads in one direction through these files: `watch` (the watched
//! cgroups, their eventfds, PSI triggers and inotify) -> `detect` (which
//! memcgs are in OOM) -> [`monitor`] (which of those are due now, the
//! kernel's hold-off while a victim exits) -> the engine's chain over the
//! [`Host`] reads below -> `kill` in this file and `victims` (pidfds, exit
//! records, the kernel's own victims) or `fallback` (the kernel OOM
//! killer, until it has killed).

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fs::File;
use std::io::{self, Read};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use bpfoom_abi::stats::{by_name, StatIndex, MEMORY_EVENTS};
use bpfoom_engine::host::{subtree_pre, EINVAL, ENOENT, EPERM, ESRCH};
use bpfoom_engine::{CgroupId, Host, HostError, KernelOom, MemcgInfo, Pid, Record, TaskInfo};

use crate::cgroupfs::{CgroupVersion, Cgroupfs};
use crate::parse::{kv_get, parse_limit, parse_pids};
use crate::procfs::Procfs;
use crate::restore::RestoreList;
use crate::sys;

mod detect;
mod fallback;
pub mod monitor;
mod victims;
mod watch;

/// What a global OOM falls back to when no policy freed memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GlobalFallback {
    /// The kernel's OOM killer, through `/proc/sysrq-trigger` `f`.
    Sysrq,
    /// Nothing: the kernel acts by itself when it really runs out.
    None,
}

/// How a [`LinuxHost`] behaves.
#[derive(Clone, Debug)]
pub struct HostConfig {
    /// The memory cgroup hierarchy (v1 memory mount or v2 root).
    pub cgroup_root: PathBuf,
    /// The /proc tree.
    pub proc_root: PathBuf,
    /// Run policies but neither kill nor change limits, and never pause.
    pub dry_run: bool,
    /// cgroup v2: `memory.high` is kept this many bytes below `memory.max`.
    pub v2_headroom: u64,
    /// cgroup v2: stall time (µs of `some` memory pressure) between two
    /// samples that, with usage above `memory.high`, makes an OOM event.
    pub v2_min_stall_us: u64,
    /// What a global OOM falls back to.
    pub global_fallback: GlobalFallback,
    /// A global OOM is over once MemAvailable is back above this (KiB).
    pub global_min_available_kb: u64,
    /// v1: after falling back to the kernel, `oom_kill_disable` is set back
    /// to 1 once the kernel killed, or after this long without an OOM.
    pub fallback_hold: Duration,
    /// Where the restore list is persisted (read by the guardian and at
    /// start-up); `None` keeps it in memory only.
    pub state_file: Option<PathBuf>,
    /// The kernel log (`/dev/kmsg`) that names the kernel OOM killer's
    /// victims in fallbacks and dry runs; `None` reads none.
    pub kmsg: Option<PathBuf>,
}

impl HostConfig {
    /// Defaults for a hierarchy at `cgroup_root` and the real /proc.
    pub fn new(cgroup_root: impl Into<PathBuf>) -> Self {
        Self {
            cgroup_root: cgroup_root.into(),
            proc_root: "/proc".into(),
            dry_run: false,
            v2_headroom: 16 << 20,
            v2_min_stall_us: 10_000,
            global_fallback: GlobalFallback::None,
            global_min_available_kb: 0,
            fallback_hold: Duration::from_secs(5),
            state_file: None,
            kmsg: None,
        }
    }
}

/// A process bpfoom killed, held by pidfd until it has exited.
struct Victim {
    pidfd: OwnedFd,
    cgroup: CgroupId,
    /// The OOM it was chosen for (`None`: global, or declared by a PSI
    /// policy); its exit relieves that memcg and everything below it.
    scope: Option<CgroupId>,
    killed: Instant,
    /// Its cgroup's path when killed (for the `exit` record).
    path: String,
}

/// A watched memory cgroup.
struct Watch {
    /// v1: the eventfd registered for OOM notifications.
    efd: Option<File>,
    /// v2: a PSI trigger on `memory.pressure`, where the kernel took one,
    /// armed while the cgroup is at its `memory.high` (see [`PSI_IDLE`]).
    psi: Option<File>,
    /// v2: the last new `high`/`oom` event or stall seen.
    last_signal: Instant,
    /// v2: counters at the previous sample.
    last_high: u64,
    last_oom: u64,
    last_stall_us: u64,
    /// v2: when the counters above were taken.
    since: Instant,
    /// v2: a signal (a new event, or stall) was seen: the cgroup is sampled
    /// on every pass until then, so signals that arrive apart add up.
    active_until: Option<Instant>,
}

/// How long v2 OOM signals (events, stall) are added up.
const V2_WINDOW: Duration = Duration::from_secs(2);

/// v2: a cgroup's PSI trigger is armed when it reports a new `high` or
/// `oom` event (it reached `memory.high`, where an OOM builds up) and
/// closed once it has gone this long without one or a stall (at a wake-up
/// of the daemon; the watches are looked over every 10 s at most). The kernel runs one
/// `psimon` thread per cgroup with a trigger (16 KiB of stack and about as
/// much slab each): armed on every watched cgroup, 1,000 idle cgroups cost
/// about 29 MiB of kernel memory (BENCHMARKS.md group 3, v2); armed only
/// where memory is short, an idle tree costs nothing. The trigger matters
/// while the cgroup is throttled: a task sleeping off its `memory.high`
/// penalty (up to 2 s) raises no event, and the trigger is what wakes the
/// daemon when the stall builds up meanwhile.
const PSI_IDLE: Duration = Duration::from_secs(60);

/// A fallback in progress: the kernel OOM killer is enabled on `cg` until
/// it has killed (or `since + hold` passed without an OOM).
struct Hold {
    cg: CgroupId,
    oom_kill_before: u64,
    since: Instant,
}

/// A decision record with the time since the OOM notification.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TimedRecord {
    /// The record.
    pub record: Record,
    /// Microseconds from the OOM notification, when one is in progress.
    pub latency_us: Option<u64>,
}

/// Changes to cgroups discovered by [`LinuxHost::rescan`].
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Rescan {
    /// Newly watched cgroups.
    pub added: Vec<CgroupId>,
    /// Watched cgroups that disappeared (their paths stay known until
    /// [`LinuxHost::forget_gone`]).
    pub removed: Vec<CgroupId>,
}

/// The engine's host on a real (or fixture) Linux machine.
pub struct LinuxHost {
    fs: Cgroupfs,
    proc: Procfs,
    cfg: HostConfig,
    start: Instant,
    page_size: u64,
    /// Attach points whose subtrees are watched.
    managed: BTreeSet<CgroupId>,
    watches: BTreeMap<CgroupId, Watch>,
    gone: BTreeSet<CgroupId>,
    victims: RefCell<BTreeMap<Pid, Victim>>,
    /// pid -> start time when the engine last looked at it.
    seen: RefCell<HashMap<Pid, u64>>,
    restore: RestoreList,
    holds: Vec<Hold>,
    inotify: File,
    wd_dirs: BTreeMap<i32, CgroupId>,
    /// v2: inotify watches on `memory.events`, by cgroup.
    wd_events: BTreeMap<i32, CgroupId>,
    /// v2: cgroups whose `memory.events` changed (inotify) since the last
    /// [`LinuxHost::pending_ooms`].
    v2_dirty: BTreeSet<CgroupId>,
    /// v1: cgroups found under_oom by the last [`LinuxHost::pending_ooms`].
    suspects: BTreeSet<CgroupId>,
    oom_start: Option<Instant>,
    /// The memcg whose OOM is being handled (`None`: global or PSI).
    oom_scope: Option<CgroupId>,
    /// When a victim's exit was last seen.
    last_exit: Cell<Option<Instant>>,
    /// When the OOM of a memcg (`None`: global) was last handled.
    last_action: HashMap<Option<CgroupId>, Instant>,
    /// Each task's cgroup as first seen in the current OOM run.
    run_cgroups: RefCell<HashMap<Pid, CgroupId>>,
    /// v2: when the watches are next looked over for idle PSI triggers
    /// (at most every [`PSI_IDLE`] / 6: the scan covers every watch).
    next_psi_disarm: Instant,
    /// Victims seen exiting, not yet recorded: (pid, cgroup, time to exit).
    exited: RefCell<Vec<(Pid, String, Duration)>>,
    /// The kernel's own kill reports, read until this instant (a fallback
    /// or a dry-run OOM in progress).
    kmsg: Option<crate::kmsg::KernelLog>,
    kmsg_until: Option<Instant>,
    records: Vec<TimedRecord>,
    sink: Option<RecordSink>,
}

/// Receives records the moment they are made (the daemon prints them even
/// while a handler waits in BACKOFF).
pub type RecordSink = Box<dyn FnMut(&TimedRecord)>;

fn herr(e: &io::Error, what: impl std::fmt::Display) -> HostError {
    HostError::new(e.raw_os_error().unwrap_or(EINVAL), format!("{what}: {e}"))
}

impl LinuxHost {
    /// Opens the hierarchy and /proc named in `cfg`.
    pub fn new(cfg: HostConfig) -> Result<Self, crate::Error> {
        let fs = Cgroupfs::open(&cfg.cgroup_root)?;
        let proc = Procfs::new(&cfg.proc_root);
        let restore = RestoreList::new(cfg.state_file.clone());
        Ok(Self {
            fs,
            proc,
            start: Instant::now(),
            page_size: 4096,
            managed: BTreeSet::new(),
            watches: BTreeMap::new(),
            gone: BTreeSet::new(),
            victims: RefCell::default(),
            seen: RefCell::default(),
            restore,
            holds: Vec::new(),
            inotify: sys::inotify_init().map_err(crate::Error::Sys)?,
            wd_dirs: BTreeMap::new(),
            wd_events: BTreeMap::new(),
            suspects: BTreeSet::new(),
            oom_start: None,
            oom_scope: None,
            last_exit: Cell::new(None),
            exited: RefCell::default(),
            run_cgroups: RefCell::default(),
            next_psi_disarm: Instant::now() + PSI_IDLE,
            last_action: HashMap::new(),
            v2_dirty: BTreeSet::new(),
            kmsg: cfg
                .kmsg
                .as_deref()
                .and_then(|p| crate::kmsg::KernelLog::open(p).ok()),
            kmsg_until: None,
            records: Vec::new(),
            sink: None,
            cfg,
        })
    }

    /// The hierarchy.
    pub fn cgroupfs(&self) -> &Cgroupfs {
        &self.fs
    }

    /// The configuration.
    pub fn config(&self) -> &HostConfig {
        &self.cfg
    }

    /// Marks the start of the OOM event of `scope` (`None`: global, or a
    /// PSI run that may declare one), notified at `at` (for `latency_us`).
    pub fn begin_oom(&mut self, at: Instant, scope: Option<CgroupId>) {
        self.fs.begin_run();
        self.run_cgroups.borrow_mut().clear();
        self.oom_start = Some(at);
        self.oom_scope = scope;
    }

    /// Ends the OOM event.
    pub fn end_oom(&mut self) {
        self.fs.end_run();
        self.run_cgroups.borrow_mut().clear();
        self.oom_start = None;
        self.oom_scope = None;
    }

    /// Sends every record to `sink` as it is made, besides queueing it.
    pub fn set_sink(&mut self, sink: RecordSink) {
        self.sink = Some(sink);
    }

    fn push(&mut self, r: TimedRecord) {
        if let Some(s) = self.sink.as_mut() {
            s(&r);
        }
        self.records.push(r);
    }

    /// Records made since the last call.
    pub fn take_records(&mut self) -> Vec<TimedRecord> {
        self.record_exits_and_kernel_kills();
        std::mem::take(&mut self.records)
    }

    fn log_error(&mut self, message: String) {
        self.push(TimedRecord {
            record: Record::Error {
                policy: "bpfoom".into(),
                message,
            },
            latency_us: None,
        });
    }

    fn path_or_id(&self, cg: CgroupId) -> String {
        self.path(cg).unwrap_or_else(|| format!("#{cg}"))
    }

    /// Restores everything bpfoom changed (clean shutdown).
    pub fn restore_all(&mut self) -> Vec<String> {
        self.watches.clear();
        self.holds.clear();
        self.restore.restore_all()
    }

    /// The restore list, as `(file, value)` pairs.
    pub fn restore_entries(&self) -> Vec<(PathBuf, String)> {
        self.restore.entries()
    }

    fn scope_dir_file(&self, cg: CgroupId, name: &str) -> Result<PathBuf, HostError> {
        self.fs
            .file(cg, name)
            .ok_or_else(|| HostError::new(ENOENT, format!("cgroup #{cg} is gone")))
    }
}

impl Host for LinuxHost {
    fn root(&self) -> CgroupId {
        self.fs.root_id()
    }

    fn parent(&self, cg: CgroupId) -> Option<CgroupId> {
        self.fs.parent(cg)
    }

    fn children(&self, cg: CgroupId) -> Vec<CgroupId> {
        self.fs.children(cg)
    }

    fn nr_descendants(&self, cg: CgroupId) -> u64 {
        let n = self.fs.nr_descendants(cg).unwrap_or(0);
        // Counts are kept only within one OOM event (the tree may change
        // in between).
        if self.oom_start.is_none() {
            self.fs.forget_counts();
        }
        n
    }

    fn path(&self, cg: CgroupId) -> Option<String> {
        self.fs.display(cg).or_else(|| {
            self.gone
                .contains(&cg)
                .then(|| self.fs.last_rel(cg).map(|r| format!("/{r}")))
                .flatten()
        })
    }

    fn memcg(&self, cg: CgroupId) -> Option<MemcgInfo> {
        let (usage_f, limit_f) = match self.fs.version() {
            CgroupVersion::V1 => ("memory.usage_in_bytes", "memory.limit_in_bytes"),
            CgroupVersion::V2 => ("memory.current", "memory.max"),
        };
        let usage = match self.fs.read(cg, usage_f) {
            Some(t) => crate::parse::parse_u64(&t)?,
            // The v2 root has no memory.current: the machine's usage.
            None if cg == self.fs.root_id() => self.proc.meminfo().map(|m| {
                m.total_kb
                    .saturating_sub(m.available_kb)
                    .saturating_mul(1024)
            })?,
            None => return None,
        };
        // The v2 root has no memory.max: unlimited.
        let limit = self
            .fs
            .read(cg, limit_f)
            .and_then(|t| parse_limit(&t))
            .flatten();
        let oom_group = self.fs.version() == CgroupVersion::V2
            && self
                .fs
                .read(cg, "memory.oom.group")
                .is_some_and(|t| t.trim() == "1");
        Some(MemcgInfo {
            usage,
            limit,
            oom_group,
        })
    }

    fn page_state(&self, cg: CgroupId, item: &StatIndex) -> Option<u64> {
        let stat = self.fs.memory_stat(cg)?;
        match self.fs.version() {
            // v1's total_* keys are hierarchical, like v2's memory.stat.
            CgroupVersion::V1 => {
                let k = item.v1?;
                kv_get(&stat, &format!("total_{k}")).or_else(|| kv_get(&stat, k))
            }
            CgroupVersion::V2 => kv_get(&stat, item.v2?),
        }
    }

    fn vm_event(&self, cg: CgroupId, item: &StatIndex) -> Option<u64> {
        self.page_state(cg, item)
    }

    fn memory_event(&self, cg: CgroupId, item: &StatIndex) -> Option<u64> {
        match self.fs.version() {
            CgroupVersion::V1 => match item.v1? {
                "failcnt" => crate::parse::parse_u64(&self.fs.read(cg, "memory.failcnt")?),
                k => kv_get(&self.fs.read(cg, "memory.oom_control")?, k),
            },
            CgroupVersion::V2 => kv_get(&self.fs.read(cg, "memory.events")?, item.v2?),
        }
    }

    fn tasks(&self, cg: CgroupId) -> Vec<Pid> {
        let pids = self
            .fs
            .read(cg, "cgroup.procs")
            .map(|t| parse_pids(&t))
            .unwrap_or_default();
        // cgroup.procs lists the tasks directly in `cg`: where this OOM run
        // saw them, for a task the kernel kills before the policy reads it
        // (a dry run; its /proc cgroup then shows the root, see task()).
        if self.oom_start.is_some() {
            let mut seen = self.run_cgroups.borrow_mut();
            for &pid in &pids {
                seen.entry(pid).or_insert(cg);
            }
        }
        pids
    }

    fn task(&self, pid: Pid) -> Option<TaskInfo> {
        if let Some(v) = self.victims.borrow().get(&pid) {
            if sys::poll_readable(&[v.pidfd.as_fd()], Some(Duration::ZERO)).map_or(true, |r| r[0]) {
                return None;
            }
        }
        let v2 = self.fs.version() == CgroupVersion::V2;
        let e = self.proc.entry(pid, v2, self.page_size)?;
        self.seen.borrow_mut().insert(pid, e.starttime);
        let mut info = e.info;
        // Where the task is now (a task moved mid-chain is killed where it
        // is, as the kernel reports it), except that an exiting task (one
        // the kernel killed meanwhile, in a dry run) shows the root: then
        // where this OOM run saw it last.
        let root = self.fs.root_id();
        let now = match e.cgroup_path {
            Some(p) => self.fs.resolve(&p).ok(),
            None => Some(root),
        };
        let earlier = self.run_cgroups.borrow().get(&pid).copied();
        info.cgroup = match (now, earlier) {
            (Some(cg), Some(seen)) if cg == root => seen,
            (Some(cg), _) => cg,
            (None, seen) => seen?,
        };
        if self.oom_start.is_some() {
            self.run_cgroups.borrow_mut().insert(pid, info.cgroup);
        }
        Some(info)
    }

    fn kill(&mut self, pid: Pid) -> Result<(), HostError> {
        let gone = |why: &str| HostError::new(ESRCH, format!("pid {pid}: {why}"));
        if pid <= 1 {
            return Err(HostError::new(EPERM, format!("refusing to kill pid {pid}")));
        }
        let pidfd = sys::pidfd_open(pid).map_err(|e| herr(&e, format!("pidfd_open({pid})")))?;
        // The pidfd pins one process; make sure it is the one the policy saw
        // (a pid recycled since then has another start time).
        // The kernel's /proc is the truth about the pidfd's process; a
        // fixture /proc (tests) must agree with it too.
        let seen = self.seen.borrow().get(&pid).copied();
        let real = Procfs::new("/proc").starttime(pid);
        let mine = self.proc.starttime(pid);
        match (real, mine, seen) {
            (Some(r), Some(m), Some(s)) if r == s && m == s => {}
            (Some(r), Some(m), None) if r == m => {}
            (None, _, _) | (_, None, _) => return Err(gone("exited")),
            _ => return Err(gone("recycled since the policy looked at it")),
        }
        let cgroup = self.task(pid).map_or(self.fs.root_id(), |t| t.cgroup);
        if self.cfg.dry_run {
            return Ok(());
        }
        sys::pidfd_send_signal(pidfd.as_fd(), libc::SIGKILL)
            .map_err(|e| herr(&e, format!("pidfd_send_signal({pid})")))?;
        // A victim frozen by the v1 freezer cannot act on SIGKILL: thaw it,
        // as the kernel's mark_oom_victim() does (fault 1).
        if let Err(e) = crate::freezer::thaw_victim(&Procfs::new("/proc"), pid) {
            self.log_error(format!("thawing victim {pid}: {e}"));
        }
        // Older kernels lack it (ENOSYS); the exit frees the memory anyway.
        let _ = sys::process_mrelease(pidfd.as_fd());
        self.track_victim(pid, pidfd, cgroup);
        Ok(())
    }

    /// cgroup v2 only (`cgroup.kill`: atomic, no fork escapes); v1 makes the
    /// engine kill process by process. The victims are pinned by pidfd first
    /// so that their exit is tracked like any other kill.
    fn kill_cgroup(&mut self, cg: CgroupId, pids: &[Pid]) -> Result<(), HostError> {
        if self.fs.version() != CgroupVersion::V2 {
            return Err(HostError::new(EINVAL, "cgroup.kill needs cgroup v2"));
        }
        let pinned: Vec<_> = pids
            .iter()
            .filter(|&&p| p > 1)
            .filter_map(|&p| Some((p, sys::pidfd_open(p).ok()?)))
            .collect();
        LinuxHost::kill_cgroup(self, cg)?;
        if self.cfg.dry_run {
            return Ok(());
        }
        for (pid, pidfd) in pinned {
            let _ = sys::process_mrelease(pidfd.as_fd());
            let cgroup = self.task(pid).map_or(cg, |t| t.cgroup);
            self.track_victim(pid, pidfd, cgroup);
        }
        Ok(())
    }

    fn reap(&mut self, pid: Pid) {
        if self.cfg.dry_run {
            return;
        }
        if let Some(v) = self.victims.borrow().get(&pid) {
            let _ = sys::process_mrelease(v.pidfd.as_fd());
        }
    }

    fn set_limit(&mut self, cg: CgroupId, bytes: u64) -> Result<(), HostError> {
        let file = match self.fs.version() {
            CgroupVersion::V1 => "memory.limit_in_bytes",
            CgroupVersion::V2 => "memory.max",
        };
        let path = self.scope_dir_file(cg, file)?;
        if self.cfg.dry_run {
            return Ok(());
        }
        std::fs::write(&path, bytes.to_string()).map_err(|e| herr(&e, path.display()))?;
        if self.fs.version() == CgroupVersion::V2 {
            self.apply_headroom(cg);
        }
        Ok(())
    }

    fn total_pages(&self) -> u64 {
        self.proc.meminfo().map_or(0, |m| {
            (m.total_kb.saturating_add(m.swap_total_kb)).saturating_mul(1024) / self.page_size
        })
    }

    fn page_size(&self) -> u64 {
        self.page_size
    }

    fn now(&self) -> Duration {
        self.start.elapsed()
    }

    fn ktime_ns(&self) -> u64 {
        sys::monotonic_ns()
    }

    fn wait_for_release(&mut self, scope: Option<CgroupId>, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            let before = self.live_victims(scope);
            let left = deadline.saturating_duration_since(Instant::now());
            if self.oom_resolved(scope) {
                return true;
            }
            if left.is_zero() {
                return false;
            }
            let step = left.min(Duration::from_millis(20));
            {
                let v = self.victims.borrow();
                let fds: Vec<_> = v.values().map(|x| x.pidfd.as_fd()).collect();
                if fds.is_empty() {
                    std::thread::sleep(step);
                } else {
                    let _ = sys::poll_readable(&fds, Some(step));
                }
            }
            if self.live_victims(scope) < before {
                return true;
            }
        }
    }

    fn oom_resolved(&self, scope: Option<CgroupId>) -> bool {
        match scope {
            Some(cg) => match self.fs.version() {
                CgroupVersion::V1 => self.fs.rel(cg).is_none() || !self.under_oom(cg),
                CgroupVersion::V2 => {
                    let cur = self
                        .fs
                        .read(cg, "memory.current")
                        .and_then(|t| crate::parse::parse_u64(&t));
                    let high = self
                        .fs
                        .read(cg, "memory.high")
                        .and_then(|t| parse_limit(&t))
                        .flatten();
                    matches!((cur, high), (Some(c), Some(h)) if c < h) || cur.is_none()
                }
            },
            None => self
                .proc
                .meminfo()
                .is_some_and(|m| m.available_kb > self.cfg.global_min_available_kb),
        }
    }

    fn kernel_oom(&mut self, scope: Option<CgroupId>, _totalpages: u64) -> KernelOom {
        let Some(cg) = scope else {
            return match self.cfg.global_fallback {
                GlobalFallback::None => KernelOom::NoVictim,
                GlobalFallback::Sysrq => {
                    match std::fs::write(self.proc.root().join("sysrq-trigger"), "f") {
                        Ok(()) => KernelOom::Delegated,
                        Err(e) => {
                            self.log_error(format!("sysrq-trigger: {e}"));
                            KernelOom::NoVictim
                        }
                    }
                }
            };
        };
        if self.cfg.dry_run {
            // Nothing was paused: the kernel does its normal job.
            return KernelOom::Delegated;
        }
        let r = match self.fs.version() {
            // Waiters retry their charge and the kernel kills.
            CgroupVersion::V1 => self.fs.write(cg, "memory.oom_control", "0"),
            // Let usage reach memory.max, where the kernel kills.
            CgroupVersion::V2 => self.fs.write(cg, "memory.high", "max"),
        };
        if let Err(e) = r {
            self.log_error(format!("fallback in {}: {e}", self.path_or_id(cg)));
            return KernelOom::NoVictim;
        }
        let oom_kill_before = self.oom_kills_in(cg);
        self.kmsg_until = Some(Instant::now() + self.cfg.fallback_hold + Duration::from_secs(1));
        self.holds.push(Hold {
            cg,
            oom_kill_before,
            since: Instant::now(),
        });
        KernelOom::Delegated
    }

    fn record(&mut self, r: &Record) {
        if self.cfg.dry_run && matches!(r, Record::Oom { .. }) {
            // Nothing was paused: the kernel kills; name whom. (Only for an
            // OOM: PSI samples begin and end runs too, without one.)
            self.kmsg_until = Some(Instant::now() + Duration::from_secs(2));
        }
        let latency_us = self
            .oom_start
            .map(|s| s.elapsed().as_micros().min(u128::from(u64::MAX)) as u64);
        self.push(TimedRecord {
            record: r.clone(),
            latency_us,
        });
    }

    fn self_pid(&self) -> Option<Pid> {
        Some(std::process::id() as Pid)
    }
}
