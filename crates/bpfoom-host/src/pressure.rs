//! Global memory pressure: when to raise a system-wide OOM (memcg NULL).

use std::fs::File;
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::time::{Duration, Instant};

use crate::parse::{MemInfo, Pressure};

/// Registers a PSI trigger (`Documentation/accounting/psi.rst`): the
/// returned file becomes ready for [`crate::sys::Wait::Priority`] whenever
/// `kind` ("some" or "full") stall reaches `stall_us` within a `window_us`
/// window. The kernel refuses windows outside 0.5 s..10 s, and without
/// CAP_SYS_RESOURCE windows that are not a multiple of 2 s ([`PSI_WINDOW_US`]
/// always works); the caller then samples instead.
pub fn psi_trigger(path: &Path, kind: &str, stall_us: u64, window_us: u64) -> io::Result<File> {
    if kind != "some" && kind != "full" {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "kind is some or full",
        ));
    }
    let stall = stall_us.clamp(1, window_us.max(1));
    let mut f = File::options()
        .read(true)
        .write(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(path)?;
    // One write, NUL-terminated, as the kernel's parser expects.
    f.write_all(format!("{kind} {stall} {window_us}\0").as_bytes())?;
    Ok(f)
}

/// A trigger window every kernel accepts, privileged or not.
pub const PSI_WINDOW_US: u64 = 2_000_000;

/// Thresholds of the global monitor; either may be off.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct GlobalThresholds {
    /// Fire when MemAvailable falls below this percentage of MemTotal.
    pub min_available_pct: Option<f64>,
    /// Fire when the `full` memory PSI avg10 rises above this percentage.
    pub max_full_avg10: Option<f64>,
    /// Minimum time between two events while the condition persists.
    pub cooldown: Duration,
}

impl Default for GlobalThresholds {
    fn default() -> Self {
        Self {
            min_available_pct: None,
            max_full_avg10: None,
            cooldown: Duration::from_secs(2),
        }
    }
}

/// Edge-triggered global OOM detection: one event when a threshold is
/// crossed, then at most one per cooldown while it stays crossed.
#[derive(Debug)]
pub struct GlobalMonitor {
    t: GlobalThresholds,
    last_fire: Option<Instant>,
    was_low: bool,
}

impl GlobalMonitor {
    /// A monitor with these thresholds.
    pub fn new(t: GlobalThresholds) -> Self {
        Self {
            t,
            last_fire: None,
            was_low: false,
        }
    }

    /// Whether any threshold is set.
    pub fn enabled(&self) -> bool {
        self.t.min_available_pct.is_some() || self.t.max_full_avg10.is_some()
    }

    /// The MemAvailable threshold in KiB for this machine.
    pub fn min_available_kb(&self, m: &MemInfo) -> u64 {
        self.t
            .min_available_pct
            .map_or(0, |p| (m.total_kb as f64 * p / 100.0) as u64)
    }

    /// Why the condition holds now, if it does.
    pub fn condition(&self, mem: Option<&MemInfo>, psi: Option<&Pressure>) -> Option<String> {
        if let (Some(pct), Some(m)) = (self.t.min_available_pct, mem) {
            if m.total_kb > 0 && m.available_kb < self.min_available_kb(m) {
                return Some(format!(
                    "MemAvailable {} kB is below {pct}% of MemTotal {} kB",
                    m.available_kb, m.total_kb
                ));
            }
        }
        if let (Some(max), Some(full)) = (self.t.max_full_avg10, psi.and_then(|p| p.full)) {
            if full.avg10 > max {
                return Some(format!(
                    "memory PSI full avg10 {:.2} is above {max}",
                    full.avg10
                ));
            }
        }
        None
    }

    /// Feeds one sample taken at `now`; returns the reason when a global
    /// OOM should be raised.
    pub fn sample(
        &mut self,
        now: Instant,
        mem: Option<&MemInfo>,
        psi: Option<&Pressure>,
    ) -> Option<String> {
        let why = self.condition(mem, psi);
        let low = why.is_some();
        let fire = low
            && (!self.was_low
                || self
                    .last_fire
                    .is_none_or(|l| now.saturating_duration_since(l) >= self.t.cooldown));
        self.was_low = low;
        if fire {
            self.last_fire = Some(now);
            why
        } else {
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse::PsiLine;

    fn mem(avail: u64) -> MemInfo {
        MemInfo {
            total_kb: 1000,
            available_kb: avail,
            swap_total_kb: 0,
            swap_free_kb: 0,
        }
    }

    #[test]
    fn edge_triggered_with_cooldown() {
        let mut m = GlobalMonitor::new(GlobalThresholds {
            min_available_pct: Some(10.0),
            max_full_avg10: None,
            cooldown: Duration::from_secs(1),
        });
        let t0 = Instant::now();
        assert!(m.sample(t0, Some(&mem(500)), None).is_none());
        assert!(m.sample(t0, Some(&mem(50)), None).is_some());
        assert!(m
            .sample(t0 + Duration::from_millis(10), Some(&mem(50)), None)
            .is_none());
        assert!(m
            .sample(t0 + Duration::from_secs(1), Some(&mem(50)), None)
            .is_some());
        // Cleared, then low again: fires at once.
        assert!(m
            .sample(t0 + Duration::from_millis(1100), Some(&mem(500)), None)
            .is_none());
        assert!(m
            .sample(t0 + Duration::from_millis(1200), Some(&mem(99)), None)
            .is_some());
        // Exactly at the threshold is not below it.
        assert!(m.condition(Some(&mem(100)), None).is_none());
    }

    #[test]
    fn psi_full_threshold() {
        let m = GlobalMonitor::new(GlobalThresholds {
            min_available_pct: None,
            max_full_avg10: Some(20.0),
            ..Default::default()
        });
        let p = |avg10| Pressure {
            some: PsiLine::default(),
            full: Some(PsiLine {
                avg10,
                ..Default::default()
            }),
        };
        assert!(m.condition(None, Some(&p(25.0))).is_some());
        assert!(m.condition(None, Some(&p(5.0))).is_none());
        let no_full = Pressure::default();
        assert!(m.condition(None, Some(&no_full)).is_none());
        assert!(m.condition(Some(&mem(0)), None).is_none(), "meminfo off");
    }
}
