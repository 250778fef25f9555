//! The victims of bpfoom's kills, held by pidfd until they exit (their
//! `exit` records, the hold-off they impose on new OOMs), `cgroup.kill`, and
//! the kernel OOM killer's victims named from its own report.

use super::*;

impl LinuxHost {
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

    /// Holds a victim just signalled (by `pidfd`, so that its exit is
    /// seen) for the OOM in progress.
    pub(super) fn track_victim(&self, pid: Pid, pidfd: OwnedFd, cgroup: CgroupId) {
        let victim = Victim {
            pidfd,
            cgroup,
            scope: self.oom_scope,
            killed: Instant::now(),
            path: self.path_or_id(cgroup),
        };
        self.victims.borrow_mut().insert(pid, victim);
    }

    pub(super) fn prune_victims(&self) {
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
    pub(super) fn record_exits_and_kernel_kills(&mut self) {
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
}
