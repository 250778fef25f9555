//! When a memcg's OOM is handled: the kernel's own deduplication, as a pure
//! rule the daemon loop applies and these tests pin down.
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

/// How long a memcg left `under_oom` without a fresh notification waits
/// after the last action or victim exit before it is handled again.
pub(crate) const SETTLE: Duration = Duration::from_millis(150);

/// A victim that has not exited after this long no longer holds off a new
/// OOM; one whose memory is already unmapped (reaped while it cannot exit)
/// holds it off only for [`SETTLE`] (`LinuxHost::holding_off`).
pub(crate) const VICTIM_GRACE: Duration = Duration::from_secs(3);

/// What the loop does with a memcg in OOM now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Decision {
    /// Run the handler chain now.
    Run,
    /// Not yet; look again at this instant (or when a descriptor wakes
    /// the loop first).
    WaitUntil(Instant),
}

/// The rule of the module docs. `fresh`: the kernel notified this memcg in
/// this pass; `held_until`: until when live victims hold its OOM off
/// (`LinuxHost::holding_off`); `last`: the later of its last action and the
/// last victim exit.
pub(crate) fn decide(
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
