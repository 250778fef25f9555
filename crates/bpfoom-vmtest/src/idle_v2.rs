//! The half of `bpfoom-bench idle-v2` (BENCHMARKS.md section 3, cgroup v2)
//! that runs inside the VM, as `bpfoom-vmguest idle-v2`: what the daemon
//! costs while nothing happens with `n` watched cgroup v2 leaves, and how
//! fast it then resolves an OOM among them, against the kernel alone.
//!
//! The tree is `/wide` with `n` leaves `l00000...`, each with a
//! `memory.max` (so the daemon watches each: `memory.high` below it, an
//! inotify watch on `memory.events`, a PSI trigger on `memory.pressure`),
//! and `largest_leaf` attached at `/wide`, as the v1 idle benchmark has it.
//!
//! 1. Idle: the daemon and earlyoom (the baseline, `--dryrun`, when in the
//!    initramfs) run side by side for `secs` seconds, from 5 s after the
//!    daemon's control socket is up; CPU time is every thread's
//!    `schedstat` run time of the tool and its children, RSS the largest
//!    `VmRSS` sum seen once a second. The kernel's own cost of the PSI
//!    triggers (one `psimon` thread per cgroup with a trigger) is counted
//!    and its CPU time reported beside, and the kernel memory they cost.
//! 2. Reaction: a further leaf `oom` (32 MiB `memory.max`) gets a 64 MiB
//!    allocator, `reps` times with the daemon running and `reps` times
//!    without it (the kernel's memcg OOM killer alone), alternating; the
//!    time from the allocator's start to its death, and the daemon's own
//!    notify->kill latency from its kill records.
//!
//! Each measurement is one result line ([`crate::guest::report`]) with
//! `"idle_v2": true`.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::guest::{report, Alloc, Cg, Daemon, POLICY_DIR};
use crate::proc::{cpu_ns, rss_kb};

const S: Duration = Duration::from_secs(1);

/// CPU time (ns) and count of the kernel's `psimon` threads (PSI trigger
/// pollers; they sleep unless their cgroup is under pressure).
fn psimon() -> (u64, usize) {
    let Ok(rd) = std::fs::read_dir("/proc") else {
        return (0, 0);
    };
    let mut ns = 0;
    let mut count = 0;
    for e in rd.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else {
            continue;
        };
        let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
        if comm.trim_end() == "psimon" {
            count += 1;
            ns += cpu_ns(pid);
        }
    }
    (ns, count)
}

/// `/proc/meminfo` entries (KiB) that the daemon's watches cost the
/// kernel: `KernelStack` (one per psimon thread) and `SUnreclaim`.
fn kernel_kb() -> (u64, u64) {
    let m = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let get = |k: &str| {
        m.lines()
            .find_map(|l| l.strip_prefix(k))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .unwrap_or(0)
    };
    (get("KernelStack:"), get("SUnreclaim:"))
}

fn open_fds(pid: i32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count())
}

fn start_earlyoom() -> Option<Child> {
    let exe = "/usr/bin/earlyoom";
    if !std::path::Path::new(exe).exists() {
        return None;
    }
    // --dryrun: it measures and decides as usual but kills nothing.
    Command::new(exe)
        .arg("--dryrun")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .ok()
}

struct Sampled {
    pid: i32,
    cpu0: u64,
    max_rss: u64,
}

impl Sampled {
    fn new(pid: i32) -> Sampled {
        Sampled {
            pid,
            cpu0: cpu_ns(pid),
            max_rss: rss_kb(pid),
        }
    }

    fn row(&self, tool: &str, n: usize, secs: u64) -> Value {
        let ms = cpu_ns(self.pid).saturating_sub(self.cpu0) as f64 / 1e6;
        json!({
            "idle_v2": true,
            "kind": "idle",
            "tool": tool,
            "cgroups": n,
            "secs": secs,
            "cpu_ms": ms,
            "cpu_percent": ms / (secs as f64 * 1000.0) * 100.0,
            "max_rss_kb": self.max_rss,
        })
    }
}

fn idle(n: usize, secs: u64, pid: i32) -> Result<(), String> {
    let mut early = start_earlyoom();
    // Start-up (verification, the first scan, registering every watch) is
    // not idle time; in the TCG guest it is slow, so wait for it to settle.
    std::thread::sleep(5 * S);
    let mut tools = vec![("bpfoom daemon", Sampled::new(pid))];
    if let Some(e) = &early {
        tools.push(("earlyoom (defaults, --dryrun)", Sampled::new(e.id() as i32)));
    }
    let (psi0, threads) = psimon();
    let fds = open_fds(pid);
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(secs) {
        std::thread::sleep(S);
        for (_, t) in &mut tools {
            t.max_rss = t.max_rss.max(rss_kb(t.pid));
        }
    }
    let (psi1, _) = psimon();
    for (name, t) in &tools {
        let mut row = t.row(name, n, secs);
        if t.pid == pid {
            row["open_fds"] = json!(fds);
        }
        report(&row);
    }
    let ms = psi1.saturating_sub(psi0) as f64 / 1e6;
    report(&json!({
        "idle_v2": true,
        "kind": "idle",
        "tool": "kernel psimon threads (PSI triggers)",
        "cgroups": n,
        "secs": secs,
        "threads": threads,
        "cpu_ms": ms,
        "cpu_percent": ms / (secs as f64 * 1000.0) * 100.0,
    }));
    if let Some(e) = early.as_mut() {
        let _ = e.kill();
        let _ = e.wait();
    }
    Ok(())
}

/// One OOM in `/wide/oom`: the allocator's start to its death (ms).
fn one_oom(oom: &Cg) -> Result<f64, String> {
    let mut a = Alloc::start(oom, 64, 0, 0).map_err(|e| e.0)?;
    let t0 = a.started;
    if a.wait(60 * S).is_none() {
        return Err("the allocator was not killed within 60 s".into());
    }
    let ms = t0.elapsed().as_secs_f64() * 1000.0;
    // Let the cgroup settle (the victim uncharged) before the next episode.
    let deadline = Instant::now() + 5 * S;
    while !oom.procs().is_empty() && Instant::now() < deadline {
        std::thread::sleep(S / 50);
    }
    std::thread::sleep(S / 5);
    Ok(ms)
}

fn oom_row(n: usize, rep: usize, handler: &str, r: Result<f64, String>) -> Value {
    let mut row = json!({
        "idle_v2": true, "kind": "oom", "cgroups": n, "rep": rep, "handler": handler,
    });
    match r {
        Ok(ms) => row["to_death_ms"] = json!(ms),
        Err(e) => row["error"] = json!(e),
    }
    row
}

fn config(top: &Cg) -> String {
    format!(
        "[v2]\nheadroom = \"16M\"\nmin_stall_us = 1000\n\n[[attach]]\npolicy = \"{POLICY_DIR}/largest_leaf.bpf.o\"\ncgroup = \"{}\"\n",
        top.rel
    )
}

fn run(n: usize, secs: u64, reps: usize) -> Result<(), String> {
    let f = |e: crate::guest::Fail| e.0;
    let root = Cg::make("").map_err(f)?;
    root.write("cgroup.subtree_control", "+memory").map_err(f)?;
    let top = Cg::make("wide").map_err(f)?;
    let t0 = Instant::now();
    let mut leaves = Vec::with_capacity(n);
    for i in 0..n {
        let leaf = top.child(&format!("l{i:05}")).map_err(f)?;
        leaf.write("memory.max", &(64u64 << 20).to_string())
            .map_err(f)?;
        leaves.push(leaf);
    }
    let oom = top.child("oom").map_err(f)?;
    oom.write("memory.max", &(32u64 << 20).to_string())
        .map_err(f)?;
    let setup_ms = t0.elapsed().as_millis() as u64;
    let (stack0, slab0) = kernel_kb();
    let mut d = Daemon::start_within("idle_v2", &config(&top), 600 * S).map_err(f)?;
    let start_ms = t0.elapsed().as_millis() as u64 - setup_ms;
    idle(n, secs, d.pid())?;
    let (stack1, slab1) = kernel_kb();
    report(&json!({
        "idle_v2": true, "kind": "setup", "cgroups": n,
        "mkdir_ms": setup_ms, "daemon_ready_ms": start_ms,
        "kernel_stack_kb": stack1 as i64 - stack0 as i64,
        "sunreclaim_kb": slab1 as i64 - slab0 as i64,
    }));
    // The same daemon, idle until now, then meets `reps` OOMs; the kernel
    // alone after it is stopped (it restores every memory.high it set).
    for rep in 0..reps {
        let mut row = oom_row(n, rep, "bpfoom largest_leaf", one_oom(&oom));
        // This episode's kill record: the (rep + 1)-th.
        let deadline = Instant::now() + 5 * S;
        while d.events("kill").len() <= rep && Instant::now() < deadline {
            d.drain(S / 10);
        }
        let kill = d.events("kill").get(rep).cloned();
        row["latency_us"] = kill
            .as_ref()
            .map_or(Value::Null, |k| k["latency_us"].clone());
        row["by"] = kill.as_ref().map_or(Value::Null, |k| k["by"].clone());
        report(&row);
    }
    // Triggers are armed only where memory ran short: the OOM'ing leaf.
    report(&json!({
        "idle_v2": true, "kind": "armed", "cgroups": n, "psimon_after_ooms": psimon().1,
    }));
    d.stop();
    for rep in 0..reps {
        report(&oom_row(n, rep, "kernel OOM killer", one_oom(&oom)));
    }
    top.destroy();
    Ok(())
}

/// The guest's `idle-v2` command (see the module docs).
pub fn guest_main(n: usize, secs: u64, reps: usize) {
    // The harness must outlive the OOMs; the tools inherit this.
    let _ = std::fs::write("/proc/self/oom_score_adj", "-1000");
    if let Err(e) = run(n, secs, reps) {
        report(&json!({ "idle_v2": true, "kind": "error", "error": e }));
    }
}
