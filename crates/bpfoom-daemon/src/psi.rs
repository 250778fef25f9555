//! Real PSI for `bpf_psi_ops` triggers: the `total=` stall counters
//! (microseconds) of the pressure files are sampled and their growth fed
//! to [`Engine::psi_pressure`], whose triggers decide (threshold within a
//! window, as the kernel's do).
//!
//! A trigger on cgroup id 0 (the root) reads /proc/pressure/*. cgroup v1
//! has no per-cgroup pressure files, so there every trigger reads the
//! system-wide file (logged once per trigger).

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::time::Duration;

use bpfoom_engine::{CgroupId, Engine, Host};
use bpfoom_host::{CgroupVersion, LinuxHost};

/// How often the counters are sampled while any trigger exists: well
/// inside the kernel's smallest trigger window (500 ms).
pub(crate) const PSI_INTERVAL: Duration = Duration::from_millis(100);

/// Pressure file names in Linux's `psi_res` order (io, memory, cpu).
const RESOURCES: [&str; 3] = ["io", "memory", "cpu"];

/// Previous counter values per `(cgroup, resource)`.
#[derive(Default)]
pub(crate) struct PsiFeeder {
    last: HashMap<(CgroupId, u32), (u64, u64)>,
    /// Sources whose file could not be read (logged once until it can).
    failed: HashSet<(CgroupId, u32)>,
}

/// The file holding `resource`'s pressure for `cg`, and whether it is the
/// system-wide one standing in for a cgroup (cgroup v1).
fn source(host: &LinuxHost, cg: CgroupId, resource: u32) -> Option<(PathBuf, bool)> {
    let name = RESOURCES.get(resource as usize)?;
    let system = host.config().proc_root.join("pressure").join(name);
    if cg == host.root() {
        return Some((system, false));
    }
    match host.cgroupfs().version() {
        CgroupVersion::V2 => host
            .cgroupfs()
            .file(cg, &format!("{name}.pressure"))
            .map(|p| (p, false)),
        CgroupVersion::V1 => Some((system, true)),
    }
}

impl PsiFeeder {
    /// Whether any trigger needs sampling.
    pub(crate) fn active(engine: &Engine<LinuxHost>) -> bool {
        !engine.psi_sources().is_empty()
    }

    /// Samples every trigger's pressure file once and feeds the growth
    /// since the previous sample (the first sample is the baseline). Returns
    /// log lines (new v1 stand-ins, unreadable files).
    pub(crate) fn sample(&mut self, engine: &mut Engine<LinuxHost>) -> Vec<String> {
        let sources = engine.psi_sources();
        let mut logs = Vec::new();
        self.last.retain(|k, _| sources.contains(k));
        self.failed.retain(|k| sources.contains(k));
        for (cg, res) in sources {
            let host = engine.host();
            let Some((path, stand_in)) = source(host, cg, res) else {
                continue;
            };
            let counters = std::fs::read_to_string(&path)
                .ok()
                .and_then(|t| bpfoom_host::parse::parse_pressure(&t))
                .map(|p| (p.some.total_us, p.full.map_or(0, |f| f.total_us)));
            let Some(now) = counters else {
                self.last.remove(&(cg, res));
                if self.failed.insert((cg, res)) {
                    logs.push(format!("PSI: cannot read {}", path.display()));
                }
                continue;
            };
            self.failed.remove(&(cg, res));
            let Some(prev) = self.last.insert((cg, res), now) else {
                if stand_in {
                    logs.push(format!(
                        "PSI: cgroup v1 has no per-cgroup pressure; the trigger on {} uses {}",
                        host.path(cg).unwrap_or_else(|| format!("#{cg}")),
                        path.display()
                    ));
                }
                continue;
            };
            // A counter that went back belongs to a re-created cgroup: the
            // new value is a baseline.
            let some = now.0.saturating_sub(prev.0);
            let full = now.1.saturating_sub(prev.1);
            if some > 0 || full > 0 {
                engine.psi_pressure(
                    cg,
                    res,
                    Duration::from_micros(some),
                    Duration::from_micros(full),
                );
            }
        }
        logs
    }
}
