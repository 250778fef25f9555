//! The OOM monitor: which memory cgroups' OOMs are due now. Detection (v1
//! eventfds and `under_oom`, v2 events and stall) and the hold-off live
//! here, so the daemon's loop is poll -> [`LinuxHost::due_ooms`] -> engine ->
//! [`LinuxHost::oom_handled`].
//!
//! The hold-off is the kernel's own deduplication, as a pure rule
//! ([`decide`]) these tests pin down:
//!
//! A fresh notification (v1: the memcg's eventfd fired) is handled at once,
//! however soon after the previous OOM, unless a victim whose exit relieves
//! the memcg is still on its way out: then it waits for that victim's exit
//! (its pidfd wakes the loop) or the end of its grace, like the kernel's "an
//! OOM victim is already exiting" abort. A memcg still `under_oom` without a
//! fresh notification is handled only [`SETTLE`] after the last action or
//! victim exit: v1 notifies only the task that takes the memcg's OOM lock,
//! so a waiter that fails its retry while the previous holder still has the
//! lock sleeps without a notification, and `under_oom` alone cannot tell it
//! from waiters that the victim's exit woke and that have not run yet.

use std::time::{Duration, Instant};

use bpfoom_engine::CgroupId;

use super::LinuxHost;

/// How long a memcg left `under_oom` without a fresh notification waits
/// after the last action or victim exit before it is handled again.
pub const SETTLE: Duration = Duration::from_millis(150);

/// A victim that has not exited after this long no longer holds off a new
/// OOM; one whose memory is already unmapped (reaped while it cannot exit)
/// holds it off only for [`SETTLE`] ([`LinuxHost::holding_off`]).
pub const VICTIM_GRACE: Duration = Duration::from_secs(3);

/// What the loop does with a memcg in OOM now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Run the handler chain now.
    Run,
    /// Not yet; look again at this instant (or when a descriptor wakes
    /// the loop first).
    WaitUntil(Instant),
}

/// The rule of the module docs. `fresh`: the kernel notified this memcg in
/// this pass; `held_until`: until when live victims hold its OOM off
/// ([`LinuxHost::holding_off`]); `last`: the later of its last action and the
/// last victim exit.
pub fn decide(
    now: Instant,
    fresh: bool,
    held_until: Option<Instant>,
    last: Option<Instant>,
) -> Decision {
    if let Some(until) = held_until.filter(|&u| now < u) {
        return Decision::WaitUntil(until);
    }
    if !fresh {
        if let Some(ready) = last.map(|t| t + SETTLE).filter(|&r| now < r) {
            return Decision::WaitUntil(ready);
        }
    }
    Decision::Run
}

/// How soon a memcg left in OOM with no eligible victim is looked at again
/// without a fresh notification.
pub const NOTHING_RETRY: Duration = Duration::from_secs(1);

impl LinuxHost {
    /// The memcgs whose OOM the engine should handle now. `fired`: the
    /// cgroups whose v1 eventfds poll found readable (see
    /// [`LinuxHost::notify_fds`]); v2 samples its counters. An OOM held off
    /// by [`decide`] stays pending; [`LinuxHost::next_oom_deadline`] says
    /// when to look again.
    pub fn due_ooms(&mut self, now: Instant, fired: &[CgroupId]) -> Vec<CgroupId> {
        let pending = self.pending_ooms(fired);
        pending
            .into_iter()
            .filter(|&cg| {
                if self.holding(cg) {
                    // A fallback to the kernel is in progress there.
                    return false;
                }
                let held = self.holding_off(Some(cg), VICTIM_GRACE, SETTLE);
                let last = self.last_action(Some(cg));
                decide(now, fired.contains(&cg), held, last) == Decision::Run
            })
            .collect()
    }

    /// The engine handled the OOM of `scope` (`None`: global);
    /// `made_progress` is false when nothing could be done (no eligible
    /// victim): then the memcg, still in OOM, is looked at again only
    /// after [`NOTHING_RETRY`] unless the kernel notifies it afresh.
    pub fn oom_handled(&mut self, scope: Option<CgroupId>, made_progress: bool) {
        let mut done = Instant::now();
        if !made_progress {
            done += NOTHING_RETRY - SETTLE;
        }
        self.last_action.insert(scope, done);
    }

    /// The later of the last action on `scope` and the last victim exit.
    pub(super) fn last_action(&self, scope: Option<CgroupId>) -> Option<Instant> {
        self.last_action
            .get(&scope)
            .copied()
            .into_iter()
            .chain(self.last_victim_exit())
            .max()
    }

    /// When the OOM path next needs a look without a descriptor waking the
    /// loop: the end of a [`SETTLE`] for a memcg still in OOM, or the end of
    /// a victim's [`VICTIM_GRACE`]. No ticks otherwise.
    pub fn next_oom_deadline(&self, now: Instant) -> Option<Instant> {
        let mut at = Vec::new();
        if self.has_suspects() {
            let last = self
                .last_action
                .values()
                .copied()
                .chain(self.last_victim_exit())
                .max();
            at.extend(last.map(|t| t + SETTLE));
        }
        at.extend(self.holding_off(None, VICTIM_GRACE, SETTLE));
        at.into_iter().filter(|&t| t > now).min()
    }

    /// Forgets actions older than a victim's grace (they hold nothing off).
    pub(super) fn expire_actions(&mut self, now: Instant) {
        self.last_action
            .retain(|_, t| now.saturating_duration_since(*t) < VICTIM_GRACE);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn a_fresh_oom_right_after_the_last_one_runs_at_once() {
        let t = Instant::now();
        // Back-to-back: the previous victim is gone, 1 ms later a new OOM.
        assert_eq!(decide(t + MS, true, None, Some(t)), Decision::Run);
    }

    #[test]
    fn a_victim_still_exiting_holds_the_new_oom_off() {
        let t = Instant::now();
        let until = t + VICTIM_GRACE;
        assert_eq!(
            decide(t + 10 * MS, true, Some(until), Some(t)),
            Decision::WaitUntil(until)
        );
        // After its grace the OOM runs even though the victim lives on.
        assert_eq!(decide(until, true, Some(until), Some(t)), Decision::Run);
    }

    #[test]
    fn under_oom_without_a_notification_waits_for_the_settle() {
        let t = Instant::now();
        assert_eq!(
            decide(t + 10 * MS, false, None, Some(t)),
            Decision::WaitUntil(t + SETTLE)
        );
        assert_eq!(decide(t + SETTLE, false, None, Some(t)), Decision::Run);
        // Never acted on (the daemon started into a paused memcg): at once.
        assert_eq!(decide(t, false, None, None), Decision::Run);
    }
}
