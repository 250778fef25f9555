//! OOM detection: v1 `under_oom` of the memcgs whose eventfds fired (and
//! of those still in OOM), v2 `memory.events` and stall against
//! `memory.high`.

use super::*;

impl LinuxHost {
    pub(super) fn v2_counters(&self, cg: CgroupId) -> (u64, u64, u64) {
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

    pub(super) fn under_oom(&self, cg: CgroupId) -> bool {
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
                // Only cgroups the kernel told about (memory.events by
                // inotify, a PSI trigger in `fired`) or with a signal in
                // their window are sampled; an idle tree costs nothing.
                let now = Instant::now();
                self.disarm_idle_psi();
                let mut ids: BTreeSet<CgroupId> = std::mem::take(&mut self.v2_dirty);
                ids.extend(fired.iter().copied());
                ids.extend(
                    self.watches
                        .iter()
                        .filter(|(_, w)| w.active_until.is_some_and(|t| now < t))
                        .map(|(&c, _)| c),
                );
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
    pub(super) fn sample_v2(&mut self, cg: CgroupId) -> bool {
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
        if new_events || stalled {
            w.last_signal = Instant::now();
        }
        let arm = new_events && w.psi.is_none();
        if (new_events || stalled) && !fire {
            // Half a signal: the other half may come in a later sample.
            w.active_until = Some(Instant::now() + V2_WINDOW);
        } else if fire {
            w.active_until = None;
        }
        if fire || w.since.elapsed() >= V2_WINDOW {
            (w.last_high, w.last_oom, w.last_stall_us) = (high, oom, stall);
            w.since = Instant::now();
        }
        if arm {
            let psi = self.psi_trigger(cg);
            if let Some(w) = self.watches.get_mut(&cg) {
                w.psi = psi;
            }
        }
        fire
    }
}
