//! The half of `bpfoom-bench compare` (BENCHMARKS.md section 6) that runs
//! inside the VM, as `bpfoom-vmguest compare`: bpfoom (`oomd_like`,
//! `psi_early`), oomd, earlyoom, nohang and the bare kernel, one at a time,
//! on one workload set. The machine is the VM (1 GiB, no swap):
//!
//! - `/svc`: the protected service, 64 MiB (process name `svc`);
//! - `/batch`: the leak (process name `leak`), to 2 GiB: `slow_leak` one
//!   MiB every 5 ms, `fast_spike` as fast as it can; in both nothing has a
//!   cgroup limit, so every tool faces the same system-wide shortage;
//! - `batch_limit`: the slow leak with a 256 MiB `memory.max` on `/batch`
//!   (a per-cgroup limit, what oomd- and systemd-oomd-style tools act on):
//!   each tool is given that limit as far as it can express it. bpfoom
//!   keeps `memory.high` 16 MiB below it and runs its policy when the
//!   cgroup stalls there; oomd gets a `memory_above` detector at the same
//!   240 MiB on `/batch`; earlyoom and nohang only watch the system's
//!   available memory and cannot express a cgroup limit (nohang's cgroup
//!   options only adjust victim badness), so the kernel's memcg OOM killer
//!   acts for them, as for the bare kernel.
//!
//! Per run: pressure onset (the first 10 ms sample where the system's
//! memory PSI `some` total grew), the kill (the leak's exit), who died,
//! whether `svc` survived, the PSI `full` stall accumulated before the
//! kill, and the tool's own CPU time (its processes, from /proc). Each run
//! is one result line (see [`crate::guest::report`]); the host side
//! (`bpfoom_bench::compare`) builds the initramfs, boots it and tables the
//! results.

use std::io::Write;
use std::path::Path;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::guest::{report, Alloc, Cg};
use crate::proc::cpu_ns;

/// A tool as the guest starts it.
pub struct Tool {
    /// Row name.
    pub name: &'static str,
    /// argv (empty: the bare kernel).
    pub argv: &'static [&'static str],
    /// Files to write first: (path, contents).
    pub files: &'static [(&'static str, &'static str)],
    /// Files replacing `files` on a workload with a cgroup limit (empty:
    /// the same files; the tool cannot express the limit or needs nothing
    /// more).
    pub limited_files: &'static [(&'static str, &'static str)],
    /// A control socket to wait for (the bpfoom daemon).
    pub socket: Option<&'static str>,
}

const OOMD_JSON: &str = r#"{"rulesets":[{"name":"vm","detectors":[
 ["batch or svc above 600M anon",{"name":"memory_above","args":{"cgroup":"batch,svc","threshold_anon":"600M","duration":"0"}}],
 ["pressure above 10",{"name":"pressure_above","args":{"cgroup":"/","resource":"memory","threshold":"10","duration":"0"}}]],
 "actions":[{"name":"kill_by_memory_size_or_growth","args":{"cgroup":"batch,svc","post_action_delay":"1"}}]}]}"#;

const OOMD_LIMIT_JSON: &str = r#"{"rulesets":[{"name":"vm","detectors":[
 ["batch above 240M anon",{"name":"memory_above","args":{"cgroup":"batch","threshold_anon":"240M","duration":"0"}}],
 ["pressure above 10",{"name":"pressure_above","args":{"cgroup":"batch","resource":"memory","threshold":"10","duration":"0"}}]],
 "actions":[{"name":"kill_by_memory_size_or_growth","args":{"cgroup":"batch","post_action_delay":"1"}}]}]}"#;

const OOMD_LIKE_TOML: &str = "[daemon]\nsocket = \"/run/cmp.sock\"\nstate_file = \"/run/cmp.state\"\nhandler_time_limit_ms = 5000\n\n[global]\nmin_available_percent = 10.0\nfallback = \"sysrq\"\n\n[[attach]]\npolicy = \"/policies/oomd_like.bpf.o\"\ncgroup = \"/\"\nmaps = [{ map = \"prefs\", key = \"/svc\", value = 2 }]\n";

const PSI_EARLY_TOML: &str = "[daemon]\nsocket = \"/run/cmp.sock\"\nstate_file = \"/run/cmp.state\"\nhandler_time_limit_ms = 5000\n\n[[attach]]\npolicy = \"/policies/largest_leaf.bpf.o\"\ncgroup = \"/\"\n\n[[attach]]\npolicy = \"/policies/psi_early.bpf.o\"\ncgroup = \"/\"\nglobals = { threshold_us = 100000, window_us = 1000000 }\n";

/// The tools, in table order; the bare kernel (first) is the baseline.
pub const TOOLS: &[Tool] = &[
    Tool {
        name: "bare kernel",
        argv: &[],
        files: &[],
        limited_files: &[],
        socket: None,
    },
    Tool {
        name: "bpfoom oomd_like",
        argv: &[
            "/bin/bpfoom-vmguest",
            "daemon",
            "run",
            "--config",
            "/run/cmp.toml",
        ],
        files: &[("/run/cmp.toml", OOMD_LIKE_TOML)],
        limited_files: &[],
        socket: Some("/run/cmp.sock"),
    },
    Tool {
        name: "bpfoom psi_early",
        argv: &[
            "/bin/bpfoom-vmguest",
            "daemon",
            "run",
            "--config",
            "/run/cmp.toml",
        ],
        files: &[("/run/cmp.toml", PSI_EARLY_TOML)],
        limited_files: &[],
        socket: Some("/run/cmp.sock"),
    },
    Tool {
        name: "oomd",
        argv: &[
            "/usr/bin/oomd",
            "--config",
            "/run/oomd.json",
            "--interval",
            "1",
            "--runtime-dir",
            "/run/oomd",
            "--kmsg-override",
            "/run/oomd.kmsg",
        ],
        files: &[("/run/oomd.json", OOMD_JSON)],
        limited_files: &[("/run/oomd.json", OOMD_LIMIT_JSON)],
        socket: None,
    },
    Tool {
        name: "earlyoom",
        argv: &["/usr/bin/earlyoom", "-r", "0", "--avoid", "^svc$"],
        files: &[],
        limited_files: &[],
        socket: None,
    },
    Tool {
        name: "nohang",
        argv: &[
            "/usr/bin/python3",
            "/usr/sbin/nohang",
            "--monitor",
            "--config",
            "/etc/nohang/nohang.conf",
        ],
        files: &[],
        limited_files: &[],
        socket: None,
    },
];

/// A workload: the leak's pace and `/batch`'s limit.
pub struct Workload {
    /// Row name.
    pub name: &'static str,
    /// Milliseconds between MiB (0: as fast as it can).
    pub step_ms: u64,
    /// `memory.max` of `/batch`, MiB (None: no limit).
    pub limit_mb: Option<u64>,
}

/// The workloads, in table order.
pub const WORKLOADS: &[Workload] = &[
    Workload {
        name: "slow_leak",
        step_ms: 5,
        limit_mb: None,
    },
    Workload {
        name: "fast_spike",
        step_ms: 0,
        limit_mb: None,
    },
    Workload {
        name: "batch_limit",
        step_ms: 5,
        limit_mb: Some(256),
    },
];

fn psi_totals() -> (u64, u64) {
    let t = std::fs::read_to_string("/proc/pressure/memory").unwrap_or_default();
    let get = |kind: &str| {
        t.lines()
            .find(|l| l.starts_with(kind))
            .and_then(|l| l.split_whitespace().find_map(|f| f.strip_prefix("total=")))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    (get("some"), get("full"))
}

/// The kernel's OOM kill counter (`oom_kill` in /proc/vmstat).
fn kernel_oom_kills() -> u64 {
    std::fs::read_to_string("/proc/vmstat")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("oom_kill "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

fn start_tool(t: &Tool, limited: bool) -> Result<Option<Child>, String> {
    let _ = std::fs::remove_file("/run/tool.log");
    let files = if limited && !t.limited_files.is_empty() {
        t.limited_files
    } else {
        t.files
    };
    for (path, text) in files {
        std::fs::write(path, text).map_err(|e| format!("{path}: {e}"))?;
    }
    let Some((exe, args)) = t.argv.split_first() else {
        return Ok(None);
    };
    if !Path::new(exe).exists() {
        return Err(format!("{exe} is not in the initramfs"));
    }
    let _ = std::fs::create_dir_all("/run/oomd");
    let log = std::fs::File::create("/run/tool.log").map_err(|e| e.to_string())?;
    let err = log.try_clone().map_err(|e| e.to_string())?;
    let mut c = Command::new(exe)
        .args(args)
        .stdout(log)
        .stderr(err)
        .spawn()
        .map_err(|e| format!("{exe}: {e}"))?;
    let deadline = Instant::now() + Duration::from_secs(30);
    match t.socket {
        Some(s) => {
            while std::os::unix::net::UnixStream::connect(s).is_err() {
                if Instant::now() > deadline || !matches!(c.try_wait(), Ok(None)) {
                    return Err(format!("{} not ready: {}", t.name, tool_log()));
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        None => std::thread::sleep(Duration::from_secs(2)),
    }
    if !matches!(c.try_wait(), Ok(None)) {
        return Err(format!("{} exited at start: {}", t.name, tool_log()));
    }
    Ok(Some(c))
}

fn tool_log() -> String {
    let s = std::fs::read_to_string("/run/tool.log").unwrap_or_default();
    s.chars()
        .rev()
        .take(600)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect()
}

fn stop(c: &mut Child) {
    // SAFETY: kill(2) on our own child.
    unsafe { libc::kill(c.id() as i32, libc::SIGTERM) };
    let deadline = Instant::now() + Duration::from_secs(5);
    while matches!(c.try_wait(), Ok(None)) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = c.kill();
    let _ = c.wait();
}

/// One run of `tool` on a workload; the result as JSON.
pub fn run_one(tool: &Tool, w: &Workload) -> Result<Value, String> {
    let (workload, step_ms) = (w.name, w.step_ms);
    let f = |e: crate::guest::Fail| e.0;
    let svc_cg = Cg::make("svc").map_err(f)?;
    let batch_cg = Cg::make("batch").map_err(f)?;
    if let Some(mb) = w.limit_mb {
        batch_cg
            .write("memory.max", &(mb << 20).to_string())
            .map_err(f)?;
    }
    let mut tool_child = start_tool(tool, w.limit_mb.is_some())?;
    let mut svc = Alloc::start_named(&svc_cg, "/bin/svc", 64, 0, 0).map_err(f)?;
    if !svc.ready(Duration::from_secs(20)) {
        return Err("svc could not allocate".into());
    }
    let cpu0 = tool_child.as_ref().map_or(0, |c| cpu_ns(c.id() as i32));
    let (some0, full0) = psi_totals();
    let kernel0 = kernel_oom_kills();
    let t0 = Instant::now();
    let mut leak = Alloc::start_named(&batch_cg, "/bin/leak", 2048, 0, step_ms).map_err(f)?;
    let mut onset = None;
    let mut full_at_kill = full0;
    let mut kill = None;
    let mut status = None;
    while t0.elapsed() < Duration::from_secs(120) {
        let (some, full) = psi_totals();
        if onset.is_none() && some > some0 {
            onset = Some(t0.elapsed());
        }
        if let Some(st) = leak.wait(Duration::ZERO) {
            kill = Some(t0.elapsed());
            status = Some(st);
            break;
        }
        full_at_kill = full;
        if !svc.alive() {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    std::thread::sleep(Duration::from_secs(1));
    let svc_alive = svc.alive();
    let leak_alive = leak.alive();
    let tool_alive = tool_child
        .as_mut()
        .is_none_or(|c| matches!(c.try_wait(), Ok(None)));
    let kernel_kills = kernel_oom_kills().saturating_sub(kernel0);
    let cpu1 = tool_child.as_ref().map_or(0, |c| cpu_ns(c.id() as i32));
    let died: Vec<&str> = [
        (!leak_alive, "leak"),
        (!svc_alive, "svc"),
        (!tool_alive, "the tool"),
    ]
    .iter()
    .filter(|(d, _)| *d)
    .map(|&(_, n)| n)
    .collect();
    drop(leak);
    drop(svc);
    if let Some(c) = tool_child.as_mut() {
        stop(c);
    }
    let log = tool_log();
    svc_cg.destroy();
    batch_cg.destroy();
    std::thread::sleep(Duration::from_secs(1));
    let ms = |d: Option<Duration>| d.map(|d| d.as_secs_f64() * 1000.0);
    Ok(json!({
        "cmp": true,
        "tool": tool.name,
        "workload": workload,
        "onset_ms": ms(onset),
        "kill_ms": ms(kill),
        "onset_to_kill_ms": match (onset, kill) {
            (Some(o), Some(k)) => Some(k.saturating_sub(o).as_secs_f64() * 1000.0),
            _ => None,
        },
        "leak_status": status.map(|s| s.to_string()),
        "died": died,
        "kernel_oom_kills": kernel_kills,
        "svc_survived": svc_alive,
        "psi_full_before_kill_ms": full_at_kill.saturating_sub(full0) as f64 / 1000.0,
        "tool_cpu_ms": cpu1.saturating_sub(cpu0) as f64 / 1e6,
        "tool_log_tail": log,
    }))
}

/// The guest's `compare` command: every tool whose name contains `only`
/// on every workload, `reps` times, one result line each.
pub fn guest_main(reps: usize, only: &str) {
    // The harness must outlive any OOM; tools inherit this, as OOM daemons
    // usually protect themselves.
    let _ = std::fs::write("/proc/self/oom_score_adj", "-1000");
    let _ = Cg::make("").and_then(|r| r.write("cgroup.subtree_control", "+memory"));
    for _ in 0..reps {
        for w in WORKLOADS {
            for t in TOOLS.iter().filter(|t| t.name.contains(only)) {
                let v = run_one(t, w).unwrap_or_else(
                    |e| json!({ "cmp": true, "tool": t.name, "workload": w.name, "error": e }),
                );
                report(&v);
            }
        }
    }
    let _ = std::io::stdout().flush();
}
