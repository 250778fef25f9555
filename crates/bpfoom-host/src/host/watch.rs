//! Which cgroups are watched, and how: the managed subtrees, followed by
//! inotify (created and removed cgroups), v1 OOM eventfds, v2 PSI triggers
//! and `memory.high` headroom.

use super::*;

impl LinuxHost {
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
            self.drop_removed(c, &mut out);
        }
        // Restore entries of vanished cgroups are moot.
        let _ = self.restore.retain(|p| p.exists());
        out
    }

    /// Drops everything kept for `c`, a watched cgroup that was removed,
    /// and reports it in `out`.
    fn drop_removed(&mut self, c: CgroupId, out: &mut Rescan) {
        self.watches.remove(&c);
        self.fs.unwatch_children(c);
        self.wd_dirs.retain(|_, v| *v != c);
        self.wd_events.retain(|_, v| *v != c);
        self.suspects.remove(&c);
        self.gone.insert(c);
        out.removed.push(c);
    }

    /// Forgets the paths of cgroups reported removed.
    pub fn forget_gone(&mut self) {
        self.gone.clear();
    }

    pub(super) fn watch(&mut self, cg: CgroupId) -> bool {
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
            active_until: None,
            last_signal: Instant::now(),
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
                // The kernel notifies memory.events on every event
                // (cgroup_file_notify): this cgroup is sampled then, and
                // not on a timer.
                if let Some(ev) = self.fs.file(cg, "memory.events") {
                    if let Ok(wd) = sys::inotify_add_watch(&self.inotify, &ev, libc::IN_MODIFY) {
                        self.wd_events.insert(wd, cg);
                    }
                }
                self.apply_headroom(cg);
                // The PSI trigger is armed by the first new high event
                // (arm_psi, PSI_IDLE), not here.
                let (high, oom, stall) = self.v2_counters(cg);
                (w.last_high, w.last_oom, w.last_stall_us) = (high, oom, stall);
            }
        }
        self.watches.insert(cg, w);
        true
    }

    /// Pauses OOMs in `cg` (`oom_kill_disable` 1, unless dry-running) and
    /// registers an eventfd for its OOM notifications.
    pub(super) fn watch_v1(&mut self, cg: CgroupId) -> io::Result<File> {
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

    pub(super) fn unwatch(&mut self, cg: CgroupId) {
        self.watches.remove(&cg);
        self.fs.unwatch_children(cg);
        let wds: Vec<i32> = self
            .wd_dirs
            .iter()
            .chain(&self.wd_events)
            .filter(|(_, &v)| v == cg)
            .map(|(&w, _)| w)
            .collect();
        for wd in wds {
            sys::inotify_rm_watch(&self.inotify, wd);
            self.wd_dirs.remove(&wd);
            self.wd_events.remove(&wd);
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
    pub(super) fn apply_headroom(&mut self, cg: CgroupId) {
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
                if ev.mask & libc::IN_MODIFY != 0 {
                    if let Some(&cg) = self.wd_events.get(&ev.wd) {
                        self.v2_dirty.insert(cg);
                    }
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
                self.drop_removed(c, &mut out);
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

    /// v2: a PSI trigger on `cg`'s `memory.pressure`, so that the daemon
    /// wakes as soon as its stall builds up; fixture trees (not cgroup2)
    /// and refusals leave it to the memory.events wake-ups.
    pub(super) fn psi_trigger(&self, cg: CgroupId) -> Option<File> {
        let p = self.fs.file(cg, "memory.pressure")?;
        if !sys::fs_magic(&p).is_ok_and(|m| m == sys::CGROUP2_MAGIC) {
            return None;
        }
        crate::pressure::psi_trigger(
            &p,
            "some",
            self.cfg.v2_min_stall_us,
            crate::pressure::PSI_WINDOW_US,
        )
        .ok()
    }

    /// v2: closes the PSI triggers of cgroups quiet for [`PSI_IDLE`]; a
    /// no-op until the next look-over is due, so wake-ups do not each walk
    /// every watch.
    pub(super) fn disarm_idle_psi(&mut self) {
        let now = Instant::now();
        if now < self.next_psi_disarm {
            return;
        }
        self.next_psi_disarm = now + PSI_IDLE / 6;
        for w in self.watches.values_mut() {
            if w.psi.is_some() && w.last_signal.elapsed() >= PSI_IDLE {
                w.psi = None;
            }
        }
    }

    /// v2 PSI trigger descriptors to poll for [`sys::Wait::Priority`].
    pub fn psi_fds(&self) -> Vec<(CgroupId, std::os::fd::BorrowedFd<'_>)> {
        self.watches
            .iter()
            .filter_map(|(&c, w)| w.psi.as_ref().map(|f| (c, f.as_fd())))
            .collect()
    }

    /// v2: whether a cgroup has a signal in its window (sampled on every
    /// pass until the window ends): the loop should come back soon.
    pub fn v2_active(&self) -> bool {
        let now = Instant::now();
        self.watches
            .values()
            .any(|w| w.active_until.is_some_and(|t| now < t))
    }

    /// How many cgroups are watched.
    pub fn watched(&self) -> usize {
        self.watches.len()
    }
}
