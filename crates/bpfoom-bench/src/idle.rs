//! Benchmark group 3: idle cost. The bpfoom daemon (largest_leaf attached
//! over `n` limited cgroups, every one of them watched), earlyoom and
//! nohang run side by side over the same interval with no OOM; their CPU
//! time and RSS are read from /proc once a second.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bpfoom_vmtest::proc::{cpu_ns, rss_kb};

use crate::reaction::{Daemon, V1Tree};

/// One tool's idle cost.
#[derive(Clone, Debug)]
pub struct Idle {
    /// The tool.
    pub name: String,
    /// CPU time (user + system, its processes together) over the interval, ms.
    pub cpu_ms: f64,
    /// Largest resident set seen (its processes together), KiB.
    pub max_rss_kb: u64,
    /// RSS at the end, KiB.
    pub end_rss_kb: u64,
}

struct Tool {
    name: String,
    pid: i32,
    /// Ours to stop (the daemon is stopped by its own handle).
    child: Option<Child>,
    start_ns: u64,
    max_rss: u64,
}

fn spawn(cmd: &mut Command) -> Result<Child, String> {
    cmd.stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("{cmd:?}: {e}"))
}

/// Runs the daemon over `n` watched cgroups, earlyoom and nohang (each
/// when installed) for `secs` seconds; `exe` is bpfoom-bench, `policy`
/// the compiled largest_leaf.
pub fn run(exe: &Path, policy: &Path, n: usize, secs: u64) -> Result<Vec<Idle>, String> {
    let tree = V1Tree::new(exe, n, 1)?;
    let daemon = Daemon::start(exe, policy, &tree)?;
    let mut tools = vec![Tool {
        name: format!("bpfoom daemon ({n} watched cgroups, largest_leaf)"),
        pid: daemon.pid(),
        child: None,
        start_ns: 0,
        max_rss: 0,
    }];
    let mut own = Vec::new();
    if let Some(e) = bpfoom_vmtest::vm::which("earlyoom") {
        // --dryrun: it measures and decides as usual but kills nothing on
        // a shared machine.
        own.push((
            "earlyoom 1.7 (defaults, --dryrun)",
            spawn(Command::new(e).arg("--dryrun"))?,
        ));
    }
    if let Some(nh) = bpfoom_vmtest::vm::which("nohang") {
        own.push((
            "nohang 0.2 (packaged nohang.conf)",
            spawn(Command::new(nh).args(["--monitor", "--config", "/etc/nohang/nohang.conf"]))?,
        ));
    }
    for (name, child) in own {
        tools.push(Tool {
            name: name.into(),
            pid: child.id() as i32,
            child: Some(child),
            start_ns: 0,
            max_rss: 0,
        });
    }
    // Start-up (parsing, verification, the first scan) is not idle time.
    std::thread::sleep(Duration::from_secs(3));
    for t in &mut tools {
        t.start_ns = cpu_ns(t.pid);
    }
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(secs) {
        std::thread::sleep(Duration::from_secs(1));
        for t in &mut tools {
            t.max_rss = t.max_rss.max(rss_kb(t.pid));
        }
    }
    let mut out = Vec::new();
    for t in &mut tools {
        let (ns, rss) = (cpu_ns(t.pid), rss_kb(t.pid));
        if !Path::new(&format!("/proc/{}", t.pid)).exists() {
            return Err(format!("{} exited during the measurement", t.name));
        }
        out.push(Idle {
            name: t.name.clone(),
            cpu_ms: ns.saturating_sub(t.start_ns) as f64 / 1e6,
            max_rss_kb: t.max_rss,
            end_rss_kb: rss,
        });
    }
    for c in tools.iter_mut().filter_map(|t| t.child.as_mut()) {
        let _ = c.kill();
        let _ = c.wait();
    }
    drop(daemon);
    drop(tree);
    Ok(out)
}
