//! Fallbacks to the kernel OOM killer in progress (v1: `oom_kill_disable`
//! 0 until the kernel killed; v2: `memory.high` lifted), ended by
//! [`LinuxHost::tick`].

use super::*;

impl LinuxHost {
    /// Housekeeping: ends fallbacks whose OOM the kernel resolved (v1:
    /// `oom_kill_disable` back to 1; v2: headroom re-applied) and forgets
    /// exited victims.
    pub fn tick(&mut self) {
        self.prune_victims();
        self.expire_actions(Instant::now());
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

    /// True while any fallback to the kernel is in progress.
    pub fn has_holds(&self) -> bool {
        !self.holds.is_empty()
    }

    /// True while a fallback to the kernel is in progress in `cg`.
    pub fn holding(&self, cg: CgroupId) -> bool {
        self.holds.iter().any(|h| h.cg == cg)
    }

    /// OOM kills the kernel counted in `cg`'s subtree (v1 counts them in
    /// the victim's memcg only; v2's memory.events is hierarchical).
    pub(super) fn oom_kills_in(&self, cg: CgroupId) -> u64 {
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
}
