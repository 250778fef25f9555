//! [`LinuxHost`]: the engine's [`Host`] over cgroupfs and /proc.

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
    /// v2: a PSI trigger on `memory.pressure`, where the kernel took one.
    psi: Option<File>,
    /// v2: counters at the previous sample.
    last_high: u64,
    last_oom: u64,
    last_stall_us: u64,
    /// v2: when the counters above were taken.
    since: Instant,
}

/// How long v2 OOM signals (events, stall) are added up.
const V2_WINDOW: Duration = Duration::from_secs(2);

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
    /// v1: cgroups found under_oom by the last [`LinuxHost::pending_ooms`].
    suspects: BTreeSet<CgroupId>,
    oom_start: Option<Instant>,
    /// The memcg whose OOM is being handled (`None`: global or PSI).
    oom_scope: Option<CgroupId>,
    /// When a victim's exit was last seen.
    last_exit: Cell<Option<Instant>>,
    /// Each task's cgroup as first seen in the current OOM run.
    run_cgroups: RefCell<HashMap<Pid, CgroupId>>,
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
            suspects: BTreeSet::new(),
            oom_start: None,
            oom_scope: None,
            last_exit: Cell::new(None),
            exited: RefCell::default(),
            run_cgroups: RefCell::default(),
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

    /// Starts watching the subtree under `cg` (an attach point).
    pub fn manage(&mut self, cg: CgroupId) -> Rescan {
        self.managed.insert(cg);
        self.rescan()
    }

    /// Stops watching under `cg` unless another attach point covers it;
    /// restores what watching changed.
    pub fn unmanage(&mut self, cg: CgroupId) {
        self.managed.remove(&cg);
        let keep: BTreeSet<CgroupId> = self
            .managed
            .iter()
            .flat_map(|&m| subtree_pre(self, m))
            .collect();
        let drop: Vec<CgroupId> = self
            .watches
            .keys()
            .copied()
            .filter(|c| !keep.contains(c))
            .collect();
        for c in drop {
            self.unwatch(c);
        }
    }

    /// Re-reads the managed subtrees: new cgroups are watched, vanished
    /// ones dropped.
    pub fn rescan(&mut self) -> Rescan {
        // A full pass re-lists every directory: it is what catches what
        // inotify missed.
        self.fs.forget_children();
        let mut out = Rescan::default();
        let mut live = BTreeSet::new();
        for m in self.managed.clone() {
            if self.fs.rel(m).is_none() {
                continue;
            }
            for c in subtree_pre(self, m) {
                live.insert(c);
                if !self.watches.contains_key(&c) && self.watch(c) {
                    out.added.push(c);
                }
            }
        }
        let gone: Vec<CgroupId> = self
            .watches
            .keys()
            .copied()
            .filter(|c| !live.contains(c) && self.fs.rel(*c).is_none())
            .collect();
        for c in gone {
            self.watches.remove(&c);
            self.fs.unwatch_children(c);
            self.wd_dirs.retain(|_, v| *v != c);
            self.gone.insert(c);
            out.removed.push(c);
        }
        // Restore entries of vanished cgroups are moot.
        let _ = self.restore.retain(|p| p.exists());
        out
    }

    /// Forgets the paths of cgroups reported removed.
    pub fn forget_gone(&mut self) {
        self.gone.clear();
    }

    fn watch(&mut self, cg: CgroupId) -> bool {
        let Some(dir) = self.fs.file(cg, "") else {
            return false;
        };
        if let Ok(wd) = sys::inotify_add_watch(
            &self.inotify,
            &dir,
            libc::IN_CREATE | libc::IN_DELETE | libc::IN_ONLYDIR,
        ) {
            self.wd_dirs.insert(wd, cg);
            self.fs.watch_children(cg);
        }
        let mut w = Watch {
            efd: None,
            psi: None,
            last_high: 0,
            last_oom: 0,
            last_stall_us: 0,
            since: Instant::now(),
        };
        match self.fs.version() {
            CgroupVersion::V1 => {
                // The root memcg cannot be paused; global OOMs are handled
                // by the pressure monitor instead.
                if cg != self.fs.root_id() {
                    match self.watch_v1(cg) {
                        Ok(efd) => w.efd = Some(efd),
                        Err(e) => {
                            self.log_error(format!("cannot watch {}: {e}", self.path_or_id(cg)));
                        }
                    }
                }
            }
            CgroupVersion::V2 => {
                if let Some(ev) = self.fs.file(cg, "memory.events") {
                    if let Ok(wd) = sys::inotify_add_watch(&self.inotify, &ev, libc::IN_MODIFY) {
                        self.wd_dirs.insert(wd, cg);
                    }
                }
                self.apply_headroom(cg);
                // A trigger wakes the daemon as soon as the stall builds up;
                // fixture trees (not cgroup2) and refusals leave sampling.
                if let Some(p) = self.fs.file(cg, "memory.pressure") {
                    if sys::fs_magic(&p).is_ok_and(|m| m == sys::CGROUP2_MAGIC) {
                        w.psi = crate::pressure::psi_trigger(
                            &p,
                            "some",
                            self.cfg.v2_min_stall_us,
                            crate::pressure::PSI_WINDOW_US,
                        )
                        .ok();
                    }
                }
                let (high, oom, stall) = self.v2_counters(cg);
                (w.last_high, w.last_oom, w.last_stall_us) = (high, oom, stall);
            }
        }
        self.watches.insert(cg, w);
        true
    }

    /// Pauses OOMs in `cg` (`oom_kill_disable` 1, unless dry-running) and
    /// registers an eventfd for its OOM notifications.
    fn watch_v1(&mut self, cg: CgroupId) -> io::Result<File> {
        let ctl = self
            .fs
            .file(cg, "memory.oom_control")
            .ok_or_else(|| io::Error::from_raw_os_error(libc::ENOENT))?;
        std::fs::read_to_string(&ctl)?;
        if !self.cfg.dry_run {
            // Write-ahead: the guardian must know before the kernel pauses.
            // The value to put back is always the kernel's default, 0, not
            // what the file says now: a cgroup paused by a daemon that died
            // with its state file lost reads 1 here, and keeping that would
            // make the pause permanent after this daemon exits (fault 6).
            // bpfoom owns OOM handling below its attach points.
            self.restore.add(ctl.clone(), "0".into())?;
            std::fs::write(&ctl, "1")?;
        }
        let efd = sys::eventfd()?;
        let ctl_file = File::open(&ctl)?;
        self.fs.write(
            cg,
            "cgroup.event_control",
            &format!("{} {}", efd.as_raw_fd(), ctl_file.as_raw_fd()),
        )?;
        Ok(efd)
    }

    fn unwatch(&mut self, cg: CgroupId) {
        self.watches.remove(&cg);
        self.fs.unwatch_children(cg);
        let wds: Vec<i32> = self
            .wd_dirs
            .iter()
            .filter(|(_, &v)| v == cg)
            .map(|(&w, _)| w)
            .collect();
        for wd in wds {
            sys::inotify_rm_watch(&self.inotify, wd);
            self.wd_dirs.remove(&wd);
        }
        let file = match self.fs.version() {
            CgroupVersion::V1 => "memory.oom_control",
            CgroupVersion::V2 => "memory.high",
        };
        if let Some(p) = self.fs.file(cg, file) {
            if let Err(e) = self.restore.restore_one(&p) {
                self.log_error(format!("restoring {}: {e}", p.display()));
            }
        }
    }

    /// v2: keeps `memory.high` the configured headroom below `memory.max`.
    fn apply_headroom(&mut self, cg: CgroupId) {
        let Some(Some(max)) = self.fs.read(cg, "memory.max").and_then(|t| parse_limit(&t)) else {
            return;
        };
        let Some(path) = self.fs.file(cg, "memory.high") else {
            return;
        };
        let target = max.saturating_sub(self.cfg.v2_headroom).max(max / 2);
        if self.cfg.dry_run {
            return;
        }
        if !self.restore.contains(&path) {
            let prior = std::fs::read_to_string(&path).unwrap_or_else(|_| "max".into());
            let prior = prior.trim();
            // Exactly the value bpfoom sets: the leftover of a daemon that
            // died with its state file lost (fault 6). Putting it back would
            // keep the throttle after this daemon exits, for good; the
            // kernel's default goes back instead, as v1's oom_kill_disable
            // always goes back to 0.
            let prior = if prior == target.to_string() {
                "max"
            } else {
                prior
            };
            if let Err(e) = self.restore.add(path.clone(), prior.to_string()) {
                self.log_error(format!("state file: {e}"));
                return;
            }
        }
        if let Err(e) = std::fs::write(&path, target.to_string()) {
            self.log_error(format!("{}: {e}", path.display()));
        }
    }

    fn v2_counters(&self, cg: CgroupId) -> (u64, u64, u64) {
        let ev = self.fs.read(cg, "memory.events").unwrap_or_default();
        let stall = self
            .fs
            .read(cg, "memory.pressure")
            .and_then(|t| crate::parse::parse_pressure(&t))
            .map_or(0, |p| p.some.total_us);
        (
            kv_get(&ev, "high").unwrap_or(0),
            kv_get(&ev, "oom").unwrap_or(0),
            stall,
        )
    }

    /// The inotify descriptor to poll (new/removed cgroups, v2 events).
    pub fn inotify(&self) -> &File {
        &self.inotify
    }

    /// Drains inotify and updates the watches from what it reported: only
    /// the subtrees under directories that gained entries are walked, and
    /// only watched cgroups whose directory is gone are dropped; a queue
    /// overflow falls back to a full [`LinuxHost::rescan`]. `memory.events`
    /// modifications (v2) change no watch.
    pub fn rescan_changed(&mut self) -> Rescan {
        const HDR: usize = std::mem::size_of::<libc::inotify_event>();
        let mut buf = [0u8; 8192];
        let (mut created, mut deleted, mut overflow) = (BTreeSet::new(), false, false);
        let mut changed = BTreeSet::new();
        while let Ok(n) = (&self.inotify).read(&mut buf) {
            if n == 0 {
                break;
            }
            let mut off = 0;
            while off + HDR <= n {
                // SAFETY: `off + HDR <= n` bytes were written by the kernel,
                // which lays out whole events; read_unaligned copes with any
                // alignment of `buf`.
                let ev: libc::inotify_event =
                    unsafe { std::ptr::read_unaligned(buf.as_ptr().add(off).cast()) };
                if ev.mask & libc::IN_Q_OVERFLOW != 0 {
                    overflow = true;
                }
                if ev.mask & (libc::IN_CREATE | libc::IN_DELETE) != 0 {
                    if let Some(&cg) = self.wd_dirs.get(&ev.wd) {
                        changed.insert(cg);
                        if ev.mask & libc::IN_CREATE != 0 {
                            created.insert(cg);
                        }
                    }
                }
                deleted |= ev.mask & (libc::IN_DELETE | libc::IN_IGNORED) != 0;
                off += HDR + ev.len as usize;
            }
        }
        if overflow {
            self.fs.forget_children();
            return self.rescan();
        }
        for &c in &changed {
            self.fs.children_changed(c);
        }
        let mut out = Rescan::default();
        for d in created {
            if self.fs.rel(d).is_none() {
                continue;
            }
            for c in subtree_pre(self, d) {
                if !self.watches.contains_key(&c) && self.watch(c) {
                    out.added.push(c);
                }
            }
        }
        if deleted {
            // One stat per watch to find the gone ones (only on deletions).
            let gone: Vec<CgroupId> = self
                .watches
                .keys()
                .copied()
                .filter(|&c| {
                    let same = self.fs.last_rel(c).is_some_and(|r| {
                        std::fs::metadata(self.fs.dir_of(&r)).is_ok_and(|m| {
                            use std::os::unix::fs::MetadataExt;
                            m.ino() == c
                        })
                    });
                    !same && self.fs.rel(c).is_none()
                })
                .collect();
            for c in gone {
                self.watches.remove(&c);
                self.fs.unwatch_children(c);
                self.wd_dirs.retain(|_, v| *v != c);
                self.suspects.remove(&c);
                self.gone.insert(c);
                out.removed.push(c);
            }
            let _ = self.restore.retain(|p| p.exists());
        }
        out
    }

    /// The v1 eventfds to poll, with their cgroups.
    pub fn notify_fds(&self) -> Vec<(CgroupId, std::os::fd::BorrowedFd<'_>)> {
        self.watches
            .iter()
            .filter_map(|(&c, w)| w.efd.as_ref().map(|f| (c, f.as_fd())))
            .collect()
    }

    /// v2 PSI trigger descriptors to poll for [`sys::Wait::Priority`].
    pub fn psi_fds(&self) -> Vec<std::os::fd::BorrowedFd<'_>> {
        self.watches
            .values()
            .filter_map(|w| w.psi.as_ref().map(|f| f.as_fd()))
            .collect()
    }

    /// Kills every process of a cgroup v2 cgroup at once (`cgroup.kill`),
    /// as `memory.oom.group` kills do; v1 has no such file (`EINVAL`).
    pub fn kill_cgroup(&mut self, cg: CgroupId) -> Result<(), HostError> {
        if self.fs.version() != CgroupVersion::V2 {
            return Err(HostError::new(EINVAL, "cgroup.kill needs cgroup v2"));
        }
        let path = self.scope_dir_file(cg, "cgroup.kill")?;
        if self.cfg.dry_run {
            return Ok(());
        }
        std::fs::write(&path, "1").map_err(|e| herr(&e, path.display()))
    }

    fn under_oom(&self, cg: CgroupId) -> bool {
        self.fs
            .read(cg, "memory.oom_control")
            .and_then(|t| kv_get(&t, "under_oom"))
            .is_some_and(|v| v == 1)
    }

    /// Memory cgroups in OOM now. v1: `fired` are the cgroups whose
    /// eventfds poll found readable; only those eventfds are read, and only
    /// they and the cgroups still in OOM from earlier calls have their
    /// `under_oom` read (the topmost under_oom memcgs are the OOM'ing ones:
    /// the kernel marks and notifies the whole subtree), so the cost follows
    /// the OOM'ing subtree, not the number of watched cgroups. v2 samples
    /// `memory.events` and PSI of every watched cgroup.
    pub fn pending_ooms(&mut self, fired: &[CgroupId]) -> Vec<CgroupId> {
        match self.fs.version() {
            CgroupVersion::V1 => {
                let mut buf = [0u8; 8];
                // Poll said readable: drain, so the next poll blocks.
                let fired: BTreeSet<CgroupId> = fired
                    .iter()
                    .copied()
                    .filter(|c| {
                        self.watches
                            .get(c)
                            .and_then(|w| w.efd.as_ref())
                            .is_some_and(|mut f| {
                                let _ = f.read(&mut buf);
                                true
                            })
                    })
                    .collect();
                // Paused memcgs stay under_oom until resolved. Unpaused ones
                // (dry run) are under_oom only for an instant: there the
                // notification itself says which memcgs were in OOM.
                let candidates: BTreeSet<CgroupId> = self.suspects.union(&fired).copied().collect();
                let hit: BTreeSet<CgroupId> = candidates
                    .into_iter()
                    .filter(|&c| {
                        self.watches.contains_key(&c)
                            && ((self.cfg.dry_run
                                && fired.contains(&c)
                                && self.fs.rel(c).is_some())
                                || self.under_oom(c))
                    })
                    .collect();
                self.suspects.clone_from(&hit);
                hit.iter()
                    .copied()
                    .filter(|&c| self.fs.parent(c).is_none_or(|p| !hit.contains(&p)))
                    .collect()
            }
            CgroupVersion::V2 => {
                let ids: Vec<CgroupId> = self.watches.keys().copied().collect();
                ids.into_iter().filter(|&c| self.sample_v2(c)).collect()
            }
        }
    }

    /// v1: whether cgroups seen in OOM are still to be re-checked.
    pub fn has_suspects(&self) -> bool {
        !self.suspects.is_empty()
    }

    /// v2: an OOM event is usage above `memory.high` in a cgroup limited by
    /// `memory.max`, with new `high` (or
    /// `oom`) events and enough memory stall since the baseline. The
    /// baseline moves on when an event fires or after [`V2_WINDOW`], so
    /// signals that arrive in different samples still add up, and old ones
    /// expire.
    fn sample_v2(&mut self, cg: CgroupId) -> bool {
        let (high, oom, stall) = self.v2_counters(cg);
        let current = self
            .fs
            .read(cg, "memory.current")
            .and_then(|t| crate::parse::parse_u64(&t));
        let high_limit = self
            .fs
            .read(cg, "memory.high")
            .and_then(|t| parse_limit(&t))
            .flatten();
        // Only a cgroup with a memory.max can be near an OOM: a memory.high
        // on an unlimited cgroup is a throttle its owner chose (stall then
        // is for PSI policies to judge), not an OOM.
        let limited = self
            .fs
            .read(cg, "memory.max")
            .and_then(|t| parse_limit(&t))
            .flatten()
            .is_some();
        let above = limited && matches!((current, high_limit), (Some(c), Some(h)) if c >= h);
        let min_stall = self.cfg.v2_min_stall_us;
        let Some(w) = self.watches.get_mut(&cg) else {
            return false;
        };
        let new_events = high > w.last_high || oom > w.last_oom;
        let stalled = stall.saturating_sub(w.last_stall_us) >= min_stall;
        let fire = new_events && stalled && above;
        if fire || w.since.elapsed() >= V2_WINDOW {
            (w.last_high, w.last_oom, w.last_stall_us) = (high, oom, stall);
            w.since = Instant::now();
        }
        fire
    }

    /// Housekeeping: ends fallbacks whose OOM the kernel resolved (v1:
    /// `oom_kill_disable` back to 1; v2: headroom re-applied) and forgets
    /// exited victims.
    pub fn tick(&mut self) {
        self.prune_victims();
        let holds = std::mem::take(&mut self.holds);
        for h in holds {
            if self.fs.rel(h.cg).is_none() {
                continue;
            }
            let over = match self.fs.version() {
                CgroupVersion::V1 => {
                    let killed = self.oom_kills_in(h.cg) > h.oom_kill_before;
                    let under = self.under_oom(h.cg);
                    !under && (killed || h.since.elapsed() >= self.cfg.fallback_hold)
                }
                CgroupVersion::V2 => h.since.elapsed() >= self.cfg.fallback_hold,
            };
            if !over {
                self.holds.push(h);
                continue;
            }
            match self.fs.version() {
                CgroupVersion::V1 => {
                    if let Err(e) = self.fs.write(h.cg, "memory.oom_control", "1") {
                        self.log_error(format!("re-pausing {}: {e}", self.path_or_id(h.cg)));
                    }
                }
                CgroupVersion::V2 => self.apply_headroom(h.cg),
            }
        }
    }

    /// How many cgroups are watched.
    pub fn watched(&self) -> usize {
        self.watches.len()
    }

    /// True while any fallback to the kernel is in progress.
    pub fn has_holds(&self) -> bool {
        !self.holds.is_empty()
    }

    /// True while a fallback to the kernel is in progress in `cg`.
    pub fn holding(&self, cg: CgroupId) -> bool {
        self.holds.iter().any(|h| h.cg == cg)
    }

    fn prune_victims(&self) {
        let mut v = self.victims.borrow_mut();
        let before = v.len();
        let mut exited = self.exited.borrow_mut();
        v.retain(|&pid, vic| {
            let gone = sys::poll_readable(&[vic.pidfd.as_fd()], Some(Duration::ZERO))
                .map(|r| r[0])
                .unwrap_or(true);
            if gone {
                exited.push((pid, std::mem::take(&mut vic.path), vic.killed.elapsed()));
            }
            !gone
        });
        if v.len() < before {
            self.last_exit.set(Some(Instant::now()));
        }
    }

    /// Records the victims seen exiting and the kills the kernel reported.
    fn record_exits_and_kernel_kills(&mut self) {
        self.prune_victims();
        let exits = std::mem::take(&mut *self.exited.borrow_mut());
        for (pid, cgroup, after) in exits {
            self.push(TimedRecord {
                record: Record::Exit {
                    pid,
                    cgroup,
                    after_ms: after.as_millis().min(u128::from(u64::MAX)) as u64,
                },
                latency_us: None,
            });
        }
        if self.kmsg_until.is_some_and(|t| Instant::now() >= t) {
            self.kmsg_until = None;
        }
        if self.kmsg_until.is_none() {
            return;
        }
        let kills = self
            .kmsg
            .as_mut()
            .map(|k| k.oom_kills())
            .unwrap_or_default();
        for k in kills {
            // Only the subtrees bpfoom manages: other OOMs are not ours.
            let Ok(cg) = self.fs.resolve(&k.task_memcg) else {
                continue;
            };
            if !self
                .managed
                .iter()
                .any(|&m| bpfoom_engine::host::is_within(self, cg, m))
            {
                continue;
            }
            let message = match &k.oom_memcg {
                Some(m) => format!("the kernel OOM killer (oom_memcg={m})"),
                None => "the kernel OOM killer (global OOM)".to_string(),
            };
            self.push(TimedRecord {
                record: Record::Kill {
                    pid: k.pid,
                    comm: k.comm,
                    cgroup: k.task_memcg,
                    by: "kernel".into(),
                    message,
                },
                latency_us: None,
            });
        }
    }

    /// Whether the kernel log is being read (a fallback or dry-run OOM in
    /// progress): the loop should come back soon to record the kernel's kill.
    pub fn watching_kernel(&self) -> bool {
        self.kmsg.is_some() && self.kmsg_until.is_some()
    }

    /// Live victims of bpfoom's kills inside `scope` (everywhere for `None`).
    pub fn live_victims(&self, scope: Option<CgroupId>) -> usize {
        self.prune_victims();
        self.victims
            .borrow()
            .values()
            .filter(|v| scope.is_none_or(|s| bpfoom_engine::host::is_within(self, v.cgroup, s)))
            .count()
    }

    /// Calls `f` with the pidfds of the victims not yet seen exiting: each
    /// turns readable when its process exits, so the daemon's poll wakes
    /// at the exit instead of polling for it.
    pub fn with_victim_fds<R>(&self, f: impl FnOnce(&[std::os::fd::BorrowedFd<'_>]) -> R) -> R {
        let v = self.victims.borrow();
        let fds: Vec<_> = v.values().map(|x| x.pidfd.as_fd()).collect();
        f(&fds)
    }

    /// When a victim's exit was last noticed.
    pub fn last_victim_exit(&self) -> Option<Instant> {
        self.last_exit.get()
    }

    /// The kernel's "an OOM victim is already exiting" abort, for a new OOM
    /// in `scope` (`None`: global): until when live victims hold it off.
    /// A victim holds off an OOM its exit relieves (it lives below `scope`,
    /// or was chosen for the OOM of `scope` or of an ancestor): for `grace`
    /// after its kill while it still has memory mapped, for only `reaped`
    /// once its memory is unmapped (by `process_mrelease` while it cannot
    /// exit, or its exit far enough along): the pages are on their way back
    /// to the memcg then, and the kernel's reaper likewise marks such a task
    /// MMF_OOM_SKIP once they are, so the next OOM does not wait for it
    /// (issue 13, fault 1). `None` when no victim holds this OOM off.
    pub fn holding_off(
        &self,
        scope: Option<CgroupId>,
        grace: Duration,
        reaped: Duration,
    ) -> Option<Instant> {
        self.prune_victims();
        let v2 = self.fs.version() == CgroupVersion::V2;
        let within = |a: CgroupId, b: CgroupId| bpfoom_engine::host::is_within(self, a, b);
        self.victims
            .borrow()
            .iter()
            .filter(|(_, v)| match scope {
                None => true,
                Some(s) => within(v.cgroup, s) || v.scope.is_some_and(|vs| within(s, vs)),
            })
            .map(|(&pid, v)| {
                let mapped = self
                    .proc
                    .entry(pid, v2, self.page_size)
                    .is_some_and(|e| e.info.rss_pages + e.info.swap_pages > 0);
                v.killed + if mapped { grace } else { reaped }
            })
            .max()
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
        if self.cfg.dry_run && self.oom_start.is_some() {
            // Nothing was paused: the kernel kills; name whom.
            self.kmsg_until = Some(Instant::now() + Duration::from_secs(2));
        }
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

    /// OOM kills the kernel counted in `cg`'s subtree (v1 counts them in
    /// the victim's memcg only; v2's memory.events is hierarchical).
    fn oom_kills_in(&self, cg: CgroupId) -> u64 {
        let Some(k) = by_name(MEMORY_EVENTS, "MEMCG_OOM_KILL") else {
            return 0;
        };
        match self.fs.version() {
            CgroupVersion::V1 => subtree_pre(self, cg)
                .into_iter()
                .filter_map(|c| self.memory_event(c, k))
                .sum(),
            CgroupVersion::V2 => self.memory_event(cg, k).unwrap_or(0),
        }
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
        self.fs
            .read(cg, "cgroup.procs")
            .map(|t| parse_pids(&t))
            .unwrap_or_default()
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
        let victim = Victim {
            pidfd,
            cgroup,
            scope: self.oom_scope,
            killed: Instant::now(),
            path: self.path_or_id(cgroup),
        };
        self.victims.borrow_mut().insert(pid, victim);
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
            let victim = Victim {
                pidfd,
                cgroup,
                scope: self.oom_scope,
                killed: Instant::now(),
                path: self.path_or_id(cgroup),
            };
            self.victims.borrow_mut().insert(pid, victim);
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
