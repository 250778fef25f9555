//! The systemd watchdog (`WatchdogSec=` in the unit): `WATCHDOG=1` from
//! the main loop, so a hung loop (not just a dead process) gets the daemon
//! restarted. The guardian process keeps every paused cgroup safe in
//! between: when the hung daemon is killed it un-pauses them.
//!
//! The keep-alive is sent at half the interval systemd asks for
//! (`$WATCHDOG_USEC`), as sd_watchdog_enabled(3) recommends, and only when
//! `$WATCHDOG_PID` is unset or this process.

use std::time::{Duration, Instant};

/// The watchdog, when systemd enabled one for this process.
#[derive(Debug)]
pub struct Watchdog {
    every: Duration,
    last: Option<Instant>,
}

impl Watchdog {
    /// From `$WATCHDOG_USEC` / `$WATCHDOG_PID`; `None` without a watchdog.
    pub fn from_env() -> Option<Watchdog> {
        let usec: u64 = std::env::var("WATCHDOG_USEC").ok()?.parse().ok()?;
        if let Ok(pid) = std::env::var("WATCHDOG_PID") {
            if pid.parse::<u32>().ok()? != std::process::id() {
                return None;
            }
        }
        Self::with_interval(Duration::from_micros(usec))
    }

    /// A watchdog with systemd's interval (`None` for zero).
    pub fn with_interval(interval: Duration) -> Option<Watchdog> {
        (!interval.is_zero()).then_some(Watchdog {
            every: interval / 2,
            last: None,
        })
    }

    /// How long the loop may sleep before the next keep-alive is due.
    pub fn due_in(&self, now: Instant) -> Duration {
        match self.last {
            None => Duration::ZERO,
            Some(t) => (t + self.every).saturating_duration_since(now),
        }
    }

    /// Whether a keep-alive is due now (and counts it as sent).
    pub fn tick(&mut self, now: Instant) -> bool {
        if self.due_in(now).is_zero() {
            self.last = Some(now);
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keepalive_at_half_the_interval() {
        assert!(Watchdog::with_interval(Duration::ZERO).is_none());
        let Some(mut w) = Watchdog::with_interval(Duration::from_secs(10)) else {
            panic!("a watchdog");
        };
        let t = Instant::now();
        assert!(w.tick(t), "the first pass sends at once");
        assert!(!w.tick(t + Duration::from_secs(4)));
        assert_eq!(w.due_in(t + Duration::from_secs(4)), Duration::from_secs(1));
        assert!(w.tick(t + Duration::from_secs(5)));
    }
}
