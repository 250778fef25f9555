//! The side of the VM tests that runs inside the guest (as `bpfoom-vmguest`,
//! started by the initramfs's `/init`): cgroup helpers, an allocating
//! process, a daemon wrapper, and the cgroup v2 end-to-end suite.
//!
//! Every test prints one line `BPFOOM-VM {json}` on stdout (the serial
//! console) with at least `test` and `ok`; the host side
//! ([`crate::vm::parse_results`]) reads them back.

use std::io::Write;
use std::ops::{Deref, DerefMut};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use bpfoom_testutil::alloc::{Growth, Kind, Spec};
use bpfoom_testutil::cgroup::{Cgroup, CgroupError, Hierarchy, Version};
use bpfoom_testutil::daemon::{DaemonProc, NonJson};
use serde_json::{json, Value};

/// The prefix of result lines on the serial console.
pub const RESULT_PREFIX: &str = "BPFOOM-VM ";

/// Where the guest mounts cgroup2.
pub const CGROUP_ROOT: &str = "/sys/fs/cgroup";

/// Where `/init` puts the compiled policies.
pub const POLICY_DIR: &str = "/policies";

const S: Duration = Duration::from_secs(1);

/// A failed check inside a guest test.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Fail(pub String);

type R<T> = Result<T, Fail>;

fn fail<T>(msg: impl Into<String>) -> R<T> {
    Err(Fail(msg.into()))
}

fn check(cond: bool, msg: impl FnOnce() -> String) -> R<()> {
    if cond {
        Ok(())
    } else {
        Err(Fail(msg()))
    }
}

impl From<CgroupError> for Fail {
    fn from(e: CgroupError) -> Fail {
        Fail(e.to_string())
    }
}

/// A cgroup v2 directory of the guest (bpfoom-testutil's [`Cgroup`], with
/// the guest tests' error type).
#[derive(Clone, Debug)]
pub struct Cg(Cgroup);

impl Deref for Cg {
    type Target = Cgroup;
    fn deref(&self) -> &Cgroup {
        &self.0
    }
}

impl Cg {
    /// Creates (if needed) `rel` below the cgroup2 root: the guest owns the
    /// whole machine, so its tests work below the root, not below a
    /// cgroup of their own.
    pub fn make(rel: &str) -> R<Cg> {
        let cg = Hierarchy::fixed(Path::new(CGROUP_ROOT), Version::V2, "memory", "/").cgroup(rel);
        cg.create()?;
        Ok(Cg(cg))
    }

    /// A child cgroup; enables the memory controller for this one's children.
    pub fn child(&self, name: &str) -> R<Cg> {
        Ok(Cg(self.0.child(name)?))
    }

    /// Writes a control file.
    pub fn write(&self, file: &str, val: &str) -> R<()> {
        Ok(self.0.write(file, val)?)
    }

    /// Kills everything below and removes the subtree (best effort).
    pub fn destroy(&self) {
        self.0.remove();
    }
}

/// The allocating helper: joins `cg`, sets `oom_score_adj`, touches `mb`
/// MiB one MiB at a time (`step_ms` apart), prints READY, then holds the
/// memory for `hold_s` seconds.
pub fn alloc_main(cg: &Path, mb: usize, adj: i32, hold_s: u64, step_ms: u64) -> R<()> {
    bpfoom_testutil::alloc::run(&Spec {
        cgroup: cg.to_path_buf(),
        mib: mb,
        adj,
        hold: Duration::from_secs(hold_s),
        kind: Kind::Anon,
        growth: Growth::Chunks,
        step: Duration::from_millis(step_ms),
    })
    .map_err(|e| Fail(e.to_string()))
}

/// A running allocating helper (`bpfoom-vmguest alloc`).
pub struct Alloc(bpfoom_testutil::alloc::Alloc);

impl Deref for Alloc {
    type Target = bpfoom_testutil::alloc::Alloc;
    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

impl DerefMut for Alloc {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.0
    }
}

impl Alloc {
    /// Starts `bpfoom-vmguest alloc` in `cg`.
    pub fn start(cg: &Cg, mb: usize, adj: i32, step_ms: u64) -> R<Alloc> {
        let exe = std::env::current_exe().map_err(|e| Fail(format!("current_exe: {e}")))?;
        Alloc::start_named(cg, &exe, mb, adj, step_ms)
    }

    /// [`Alloc::start`] through `exe`, a link to `bpfoom-vmguest` whose
    /// name becomes the process name (what earlyoom and nohang match).
    pub fn start_named(
        cg: &Cg,
        exe: impl AsRef<std::ffi::OsStr>,
        mb: usize,
        adj: i32,
        step_ms: u64,
    ) -> R<Alloc> {
        bpfoom_testutil::alloc::Alloc::spawn(
            Command::new(exe)
                // "--": the oom_score_adj may be negative.
                .args(["alloc", "--"])
                .arg(&cg.dir)
                .args([
                    mb.to_string(),
                    adj.to_string(),
                    "600".into(),
                    step_ms.to_string(),
                ]),
        )
        .map(Alloc)
        .map_err(|e| Fail(format!("spawn alloc: {e}")))
    }
}

/// A running daemon (`bpfoom-vmguest daemon run`), its records collected
/// (bpfoom-testutil's [`DaemonProc`]).
pub struct Daemon(DaemonProc);

impl Deref for Daemon {
    type Target = DaemonProc;
    fn deref(&self) -> &DaemonProc {
        &self.0
    }
}

impl DerefMut for Daemon {
    fn deref_mut(&mut self) -> &mut DaemonProc {
        &mut self.0
    }
}

impl Daemon {
    /// Writes `config` (the `[[attach]]` and other sections) after a
    /// `[daemon]` section naming this test's socket and state file, and
    /// starts the daemon; waits for its control socket.
    pub fn start(name: &str, config: &str) -> R<Daemon> {
        Daemon::start_within(name, config, 30 * S)
    }

    /// [`Daemon::start`], waiting up to `ready` for the control socket (a
    /// tree of thousands of cgroups takes longer to watch in the TCG guest).
    pub fn start_within(name: &str, config: &str, ready: Duration) -> R<Daemon> {
        let run = Path::new("/run/bpfoom");
        let _ = std::fs::create_dir_all(run);
        let socket = run.join(format!("{name}.sock"));
        let state = run.join(format!("{name}.state"));
        let cfg = run.join(format!("{name}.toml"));
        let text = format!(
            "[daemon]\nsocket = \"{}\"\nstate_file = \"{}\"\nlog_format = \"json\"\nhandler_time_limit_ms = 5000\n\n{config}",
            socket.display(),
            state.display()
        );
        std::fs::write(&cfg, text).map_err(|e| Fail(format!("config: {e}")))?;
        let exe = std::env::current_exe().map_err(|e| Fail(format!("current_exe: {e}")))?;
        let mut cmd = Command::new(exe);
        cmd.args(["daemon", "run", "--config"]).arg(&cfg);
        let mut d = DaemonProc::spawn(&mut cmd, socket, state, NonJson::Keep)
            .map_err(|e| Fail(format!("spawn daemon: {e}")))?;
        if !d.wait_ready(ready) {
            return fail(format!("daemon not ready: {}", d.stderr_tail(2048)));
        }
        Ok(Daemon(d))
    }

    /// The daemon's stderr so far (last 2 KiB).
    pub fn stderr(&self) -> String {
        self.0.stderr_tail(2048)
    }

    /// Stops the daemon with SIGTERM (it restores what it changed).
    pub fn stop(&mut self) {
        self.0.stop(5 * S);
        self.0.poll();
    }
}

fn policy(name: &str) -> String {
    format!("{POLICY_DIR}/{name}.bpf.o")
}

fn attach(policy_name: &str, cg: &Cg, extra: &str) -> String {
    format!(
        "[[attach]]\npolicy = \"{}\"\ncgroup = \"{}\"\n{extra}\n",
        policy(policy_name),
        cg.rel
    )
}

fn str_ends(v: &Value, key: &str, suffix: &str) -> bool {
    v[key].as_str().is_some_and(|s| s.ends_with(suffix))
}

const V2_SECTION: &str = "[v2]\nheadroom = \"16M\"\nmin_stall_us = 1000\n\n";

/// Upstream's trigger on its selftest tree: cg1 + cg2 + cg4 (10M + 40M +
/// 30M) bring the tree to about memory.high (80M), close enough that
/// whether the helpers' own pages cross it, and stall long enough to make
/// an OOM, is chance; cg5's 20M then crosses it by a quarter, as
/// upstream's cg5 crosses its 80M memory.max. Starts cg5 once cg4 holds
/// its 30M (or after 20 s of throttling); `None` when cg4 was killed
/// first (the OOM came while it allocated), so cg5 is not needed yet.
fn trigger_with_cg5(a4: &mut Alloc, cg5: &Cg) -> R<Option<Alloc>> {
    let _ = a4.ready(20 * S);
    if a4.alive() {
        Alloc::start(cg5, 20, 0, 0).map(Some)
    } else {
        Ok(None)
    }
}

/// (1) The upstream selftest tree with `largest_leaf` at the parent: cg4 dies.
fn largest_leaf_tree(m: &mut Value) -> R<()> {
    let top = Cg::make("ll")?;
    // Upstream's 80M limit plus the 16M headroom: memory.high sits at 80M;
    // cg5's 20M takes cg1 + cg2 + cg4 well past it (see trigger_with_cg5),
    // and cg1 + cg2 + cg5 (70M) fit once cg4 is gone.
    top.write("memory.max", &(96u64 << 20).to_string())?;
    let cg1 = top.child("cg1")?;
    let cg2 = top.child("cg2")?;
    let cg3 = top.child("cg3")?;
    let cg4 = cg3.child("cg4")?;
    let cg5 = cg3.child("cg5")?;
    let mut d = Daemon::start(
        "ll",
        &format!("{V2_SECTION}{}", attach("largest_leaf", &top, "")),
    )?;
    let mut a1 = Alloc::start(&cg1, 10, 0, 0)?;
    check(a1.ready(20 * S), || "cg1 could not allocate".into())?;
    let mut a2 = Alloc::start(&cg2, 40, -1000, 0)?;
    check(a2.ready(20 * S), || "cg2 could not allocate".into())?;
    let mut a4 = Alloc::start(&cg4, 30, 0, 0)?;
    let t0 = a4.started;
    let a5 = trigger_with_cg5(&mut a4, &cg5)?;
    let st = a4.wait(60 * S);
    check(st.is_some(), || {
        format!("cg4 was not killed: {:?} {}", d.seen, d.stderr())
    })?;
    m["victim_exit_ms"] = json!(t0.elapsed().as_millis() as u64);
    let kill = d
        .wait_record(10 * S, |r| r["event"] == "kill")
        .ok_or_else(|| Fail(format!("no kill record: {:?}", d.seen)))?;
    m["latency_us"] = kill["latency_us"].clone();
    check(kill["pid"] == a4.pid(), || format!("wrong victim: {kill}"))?;
    check(str_ends(&kill, "cgroup", "/cg3/cg4"), || format!("{kill}"))?;
    check(
        kill["by"]
            .as_str()
            .is_some_and(|b| b.starts_with("policy:")),
        || format!("{kill}"),
    )?;
    let mut a5 = match a5 {
        Some(a5) => a5,
        None => Alloc::start(&cg5, 20, 0, 0)?,
    };
    check(a5.ready(20 * S), || {
        "cg5 could not allocate after cg4 died".into()
    })?;
    d.drain(S / 2);
    check(d.events("kill").len() == 1, || {
        format!("{:?}", d.events("kill"))
    })?;
    check(a1.alive() && a2.alive() && a5.alive(), || {
        "a survivor died".into()
    })?;
    check(top.key("memory.events", "oom_kill") == Some(0), || {
        format!("kernel OOM killer ran: {}", top.read("memory.events"))
    })?;
    d.stop();
    top.destroy();
    Ok(())
}

/// (2) Chain fall-through: the child's instance fails, the parent's kills.
fn chain_fallthrough(m: &mut Value) -> R<()> {
    let top = Cg::make("chain")?;
    top.write("memory.max", &(80u64 << 20).to_string())?;
    let job = top.child("job")?;
    job.write("memory.max", &(40u64 << 20).to_string())?;
    let a = job.child("a")?;
    let b = job.child("b")?;
    let other = top.child("other")?;
    let cfg = format!(
        "{V2_SECTION}{}{}",
        attach("largest_leaf", &top, ""),
        attach("always_fail", &job, "")
    );
    let mut d = Daemon::start("chain", &cfg)?;
    let mut ao = Alloc::start(&other, 10, 0, 0)?;
    check(ao.ready(20 * S), || "other could not allocate".into())?;
    let mut aa = Alloc::start(&a, 8, 0, 0)?;
    check(aa.ready(20 * S), || "a could not allocate".into())?;
    let mut ab = Alloc::start(&b, 35, 0, 0)?;
    let t0 = ab.started;
    check(ab.wait(60 * S).is_some(), || {
        format!("b was not killed: {}", d.stderr())
    })?;
    m["victim_exit_ms"] = json!(t0.elapsed().as_millis() as u64);
    let kill = d
        .wait_record(10 * S, |r| r["event"] == "kill")
        .ok_or_else(|| Fail(format!("no kill record: {:?}", d.seen)))?;
    d.drain(S / 2);
    m["latency_us"] = kill["latency_us"].clone();
    check(kill["pid"] == ab.pid(), || format!("wrong victim: {kill}"))?;
    check(kill["by"] == "policy:largest_leaf", || format!("{kill}"))?;
    let h = d.events("handler");
    check(h.len() >= 2, || format!("handlers: {h:?}"))?;
    check(
        h[0]["policy"] == "always_fail" && h[0]["ret"] == "failed",
        || format!("first handler: {}", h[0]),
    )?;
    check(
        h[1]["policy"] == "largest_leaf" && h[1]["ret"] == "processed",
        || format!("second handler: {}", h[1]),
    )?;
    check(aa.alive() && ao.alive(), || "a survivor died".into())?;
    check(top.key("memory.events", "oom_kill") == Some(0), || {
        format!("kernel OOM killer ran: {}", top.read("memory.events"))
    })?;
    d.stop();
    top.destroy();
    Ok(())
}

/// (3) No instance frees memory: the kernel OOM killer acts at memory.max.
fn kernel_fallback(m: &mut Value) -> R<()> {
    let top = Cg::make("fb")?;
    top.write("memory.max", &(80u64 << 20).to_string())?;
    let job = top.child("job")?;
    let mut d = Daemon::start(
        "fb",
        &format!("{V2_SECTION}{}", attach("always_fail", &top, "")),
    )?;
    let mut hog = Alloc::start(&job, 120, 0, 0)?;
    let t0 = hog.started;
    let st = hog
        .wait(90 * S)
        .ok_or_else(|| Fail(format!("the kernel did not kill the hog: {}", d.stderr())))?;
    m["victim_exit_ms"] = json!(t0.elapsed().as_millis() as u64);
    check(!st.success(), || format!("hog exited normally: {st}"))?;
    let fb = d.wait_record(10 * S, |r| r["event"] == "fallback");
    check(fb.is_some(), || format!("no fallback record: {:?}", d.seen))?;
    d.drain(S / 2);
    // Only the kernel killed; its own report (/dev/kmsg) names the hog.
    let kills = d.events("kill");
    let (by_kernel, by_policy): (Vec<Value>, Vec<Value>) =
        kills.into_iter().partition(|k| k["by"] == "kernel");
    m["kernel_kill_records"] = json!(by_kernel.len());
    check(by_policy.is_empty(), || {
        format!("the policy killed: {by_policy:?}")
    })?;
    check(by_kernel.iter().any(|k| k["pid"] == hog.pid()), || {
        format!("no kill record names the kernel's victim: {by_kernel:?}")
    })?;
    let kills = top.key("memory.events", "oom_kill").unwrap_or(0);
    m["kernel_oom_kills"] = json!(kills);
    check(kills >= 1, || {
        format!("no kernel OOM kill: {}", top.read("memory.events"))
    })?;
    d.stop();
    top.destroy();
    Ok(())
}

/// (4) `psi_early` declares an OOM on sustained full pressure, before the
/// limit: a slow leak under a `memory.high` throttle (no kernel OOM).
fn psi_early(m: &mut Value) -> R<()> {
    let top = Cg::make("psi")?;
    // The daemon's own memory.high path stays out of the way: the limit is
    // far above what the leak reaches; pressure comes from a memory.high
    // the test sets on the leaking child itself.
    top.write("memory.max", &(400u64 << 20).to_string())?;
    let leak = top.child("leak")?;
    leak.write("memory.high", &(24u64 << 20).to_string())?;
    let svc = top.child("svc")?;
    let globals = format!(
        "globals = {{ watch_cgroup_id = {}, threshold_us = 50000, window_us = 1000000 }}",
        top.id()
    );
    let cfg = format!(
        "[v2]\nheadroom = \"16M\"\n\n{}{}",
        attach("largest_leaf", &top, ""),
        attach("psi_early", &top, &globals)
    );
    let mut d = Daemon::start("psi", &cfg)?;
    let mut s = Alloc::start(&svc, 8, 0, 0)?;
    check(s.ready(20 * S), || "svc could not allocate".into())?;
    let mut l = Alloc::start(&leak, 64, 0, 5)?;
    let t0 = l.started;
    let st = l.wait(90 * S);
    check(st.is_some(), || {
        format!(
            "the leak was not killed; records {:?}; stderr {}",
            d.seen,
            d.stderr()
        )
    })?;
    m["victim_exit_ms"] = json!(t0.elapsed().as_millis() as u64);
    d.drain(S / 2);
    let psi = d.events("psi_event");
    check(!psi.is_empty(), || format!("no psi_event: {:?}", d.seen))?;
    let kill = d
        .wait_record(S, |r| r["event"] == "kill")
        .ok_or_else(|| Fail(format!("no kill record: {:?}", d.seen)))?;
    check(kill["pid"] == l.pid(), || format!("wrong victim: {kill}"))?;
    check(s.alive(), || "the service died".into())?;
    check(top.key("memory.events", "oom_kill") == Some(0), || {
        format!("kernel OOM killer ran: {}", top.read("memory.events"))
    })?;
    d.stop();
    top.destroy();
    Ok(())
}

/// (5) `oomd_like` kills a whole cgroup (three processes) via `cgroup.kill`.
fn cgroup_kill(m: &mut Value) -> R<()> {
    let top = Cg::make("ok")?;
    top.write("memory.max", &(100u64 << 20).to_string())?;
    let cache = top.child("cache")?;
    let web = top.child("web")?;
    let batch = top.child("batch")?;
    let maps = format!(
        "maps = [{{ map = \"prefs\", key = \"{}\", value = 3 }}, {{ map = \"prefs\", key = \"{}\", value = 2 }}]",
        cache.rel, web.rel
    );
    let cfg = format!("{V2_SECTION}{}", attach("oomd_like", &top, &maps));
    let mut d = Daemon::start("ok", &cfg)?;
    let mut w = Alloc::start(&web, 15, 0, 0)?;
    check(w.ready(20 * S), || "web could not allocate".into())?;
    let mut c: Vec<Alloc> = Vec::new();
    for _ in 0..3 {
        let a = Alloc::start(&cache, 10, 0, 0)?;
        check(a.ready(20 * S), || "cache could not allocate".into())?;
        c.push(a);
    }
    let mut b = Alloc::start(&batch, 40, 0, 0)?;
    let t0 = b.started;
    for a in c.iter_mut() {
        check(a.wait(60 * S).is_some(), || {
            format!("a cache process survived: {}", d.stderr())
        })?;
    }
    m["victim_exit_ms"] = json!(t0.elapsed().as_millis() as u64);
    check(b.ready(30 * S), || {
        "batch did not finish after the kill".into()
    })?;
    d.drain(S / 2);
    check(w.alive() && b.alive(), || "web or batch died".into())?;
    check(cache.procs().is_empty(), || {
        format!("cache not empty: {:?}", cache.procs())
    })?;
    let kills = d.events("kill");
    m["kill_records"] = json!(kills.len());
    check(
        !kills.is_empty() && kills.iter().all(|k| str_ends(k, "cgroup", "/ok/cache")),
        || format!("kill records: {kills:?}"),
    )?;
    m["latency_us"] = kills[0]["latency_us"].clone();
    check(top.key("memory.events", "oom_kill") == Some(0), || {
        format!("kernel OOM killer ran: {}", top.read("memory.events"))
    })?;
    d.stop();
    top.destroy();
    Ok(())
}

/// One run of upstream's oomd-style selftest fixture (`test_oomd`) on a
/// fresh tree with leaves a (45M), b (25M) and c (allocating 20M past
/// memory.high); `maps` fills its `struct oomd_policy` preference map
/// (`{a}`, `{b}`, `{c}` stand for the leaves' paths). Returns the victim's
/// leaf name.
fn oomd_run(name: &str, maps: &str) -> R<String> {
    let top = Cg::make(name)?;
    top.write("memory.max", &(96u64 << 20).to_string())?;
    let leaves = [top.child("a")?, top.child("b")?, top.child("c")?];
    let maps = maps
        .replace("{a}", &leaves[0].rel)
        .replace("{b}", &leaves[1].rel)
        .replace("{c}", &leaves[2].rel);
    let cfg = format!("{V2_SECTION}{}", attach("test_oomd", &top, &maps));
    let mut d = Daemon::start(name, &cfg)?;
    let a = Alloc::start(&leaves[0], 45, 0, 0)?;
    check(a.ready(20 * S), || "a could not allocate".into())?;
    let b = Alloc::start(&leaves[1], 25, 0, 0)?;
    check(b.ready(20 * S), || "b could not allocate".into())?;
    let _c = Alloc::start(&leaves[2], 20, 0, 0)?;
    let kill = d
        .wait_record(60 * S, |r| r["event"] == "kill")
        .ok_or_else(|| Fail(format!("no kill record: {}", d.stderr())))?;
    check(
        kill["by"].as_str().is_some_and(|b| b == "policy:test_oomd"),
        || format!("{kill}"),
    )?;
    let victim = ["a", "b", "c"]
        .into_iter()
        .find(|l| str_ends(&kill, "cgroup", &format!("/{name}/{l}")))
        .ok_or_else(|| Fail(format!("victim outside the tree: {kill}")))?;
    d.drain(S / 2);
    check(d.events("kill").len() == 1, || {
        format!("{:?}", d.events("kill"))
    })?;
    check(top.key("memory.events", "oom_kill") == Some(0), || {
        format!("kernel OOM killer ran: {}", top.read("memory.events"))
    })?;
    d.stop();
    top.destroy();
    Ok(victim.to_string())
}

/// (6) Upstream's oomd-style selftest on real v2 counters: pgscan exists on
/// v2 (it reads 0 on v1), so the victim without preferences is whatever
/// the pgscan delta and then usage pick; marking that victim OMIT in the
/// struct-valued preference map from the config must move the kill to
/// another leaf.
fn upstream_oomd_prefs(m: &mut Value) -> R<()> {
    let first = oomd_run("oomd1", "")?;
    m["victim_without_prefs"] = json!(first);
    let maps = format!(
        "maps = [{{ map = \"oomd_policies\", key = \"{{{first}}}\", value = {{ preference = 2 }} }}]"
    );
    let second = oomd_run("oomd2", &maps)?;
    m["victim_with_omit"] = json!(second);
    check(second != first, || {
        format!("{first} was OMIT but died again")
    })
}

/// (7) Upstream's OOM selftest (test_oom, newest form) on its tree below
/// `toom`: the instance at `toom/oom_test` declines its own attach point's
/// OOM (the attach-point check), the one at `toom` kills cg4.
fn upstream_test_oom(m: &mut Value) -> R<()> {
    let top = Cg::make("toom")?;
    let oom = top.child("oom_test")?;
    // 80M of memory.high below the 16M headroom, as in largest_leaf_tree.
    oom.write("memory.max", &(96u64 << 20).to_string())?;
    let cg1 = oom.child("cg1")?;
    let cg2 = oom.child("cg2")?;
    let cg3 = oom.child("cg3")?;
    let cg4 = cg3.child("cg4")?;
    let cg5 = cg3.child("cg5")?;
    let cfg = format!(
        "{V2_SECTION}{}{}",
        attach("test_oom", &oom, ""),
        attach("test_oom", &top, "")
    );
    let mut d = Daemon::start("toom", &cfg)?;
    let mut a1 = Alloc::start(&cg1, 10, 1000, 0)?;
    check(a1.ready(20 * S), || "cg1 could not allocate".into())?;
    let mut a2 = Alloc::start(&cg2, 40, -1000, 0)?;
    check(a2.ready(20 * S), || "cg2 could not allocate".into())?;
    let mut a4 = Alloc::start(&cg4, 30, 0, 0)?;
    let _a5 = trigger_with_cg5(&mut a4, &cg5)?;
    check(a4.wait(60 * S).is_some(), || {
        format!("cg4 was not killed: {:?} {}", d.seen, d.stderr())
    })?;
    let kill = d
        .wait_record(10 * S, |r| r["event"] == "kill")
        .ok_or_else(|| Fail(format!("no kill record: {:?}", d.seen)))?;
    check(kill["pid"] == a4.pid(), || format!("wrong victim: {kill}"))?;
    d.drain(S / 2);
    let rets: Vec<Value> = d
        .events("handler")
        .iter()
        .map(|h| h["ret"].clone())
        .collect();
    m["handlers"] = json!(rets);
    check(rets == [json!("failed"), json!("processed")], || {
        format!("handler chain: {:?}", d.events("handler"))
    })?;
    check(a1.alive() && a2.alive(), || "a survivor died".into())?;
    d.stop();
    top.destroy();
    Ok(())
}

/// (8) Upstream's PSI selftest (test_psi): its memory "full" trigger on the
/// leaking cgroup (ids given as cgroup paths in the config's globals)
/// fires, the handler declares an OOM there with its writable constraint
/// text, and test_oom at the top kills the leak.
fn upstream_test_psi(m: &mut Value) -> R<()> {
    let top = Cg::make("tpsi")?;
    top.write("memory.max", &(400u64 << 20).to_string())?;
    let leak = top.child("leak")?;
    leak.write("memory.high", &(24u64 << 20).to_string())?;
    let svc = top.child("svc")?;
    let globals = format!(
        "globals = {{ mem_cgroup_id = \"{}\", io_cgroup_id = \"{}\" }}",
        leak.rel, svc.rel
    );
    let cfg = format!(
        "[v2]\nheadroom = \"16M\"\n\n{}{}",
        attach("test_oom", &top, ""),
        attach("test_psi", &top, &globals)
    );
    let mut d = Daemon::start("tpsi", &cfg)?;
    let mut s = Alloc::start(&svc, 8, 0, 0)?;
    check(s.ready(20 * S), || "svc could not allocate".into())?;
    let mut l = Alloc::start(&leak, 64, 0, 5)?;
    let t0 = l.started;
    check(l.wait(90 * S).is_some(), || {
        format!("the leak was not killed: {:?} {}", d.seen, d.stderr())
    })?;
    m["victim_exit_ms"] = json!(t0.elapsed().as_millis() as u64);
    d.drain(S / 2);
    let oom = d
        .events("oom")
        .into_iter()
        .find(|o| o["constraint"] == "psi")
        .ok_or_else(|| Fail(format!("no PSI-declared oom: {:?}", d.seen)))?;
    check(oom["text"] == "bpfoom psi test", || format!("{oom}"))?;
    check(str_ends(&oom, "memcg", "/tpsi/leak"), || format!("{oom}"))?;
    check(s.alive(), || "the service died".into())?;
    d.stop();
    top.destroy();
    Ok(())
}

/// One guest test.
pub type GuestTest = fn(&mut Value) -> R<()>;

/// Issue 13, fault 1 on cgroup v2: a victim frozen by the v2 freezer
/// (`cgroup.freeze`). Unlike the v1 freezer, a fatal signal reaches a
/// v2-frozen task, so bpfoom's kill ends it without a thaw; the allocator
/// finishes and the kernel killed nobody.
fn fault1_frozen_victim_v2(m: &mut Value) -> R<()> {
    let top = Cg::make("f1v2")?;
    // memory.high sits at 48M: victim 20M + allocator 40M cross it.
    top.write("memory.max", &(64u64 << 20).to_string())?;
    let a = top.child("a")?;
    let b = top.child("b")?;
    let mut d = Daemon::start(
        "f1v2",
        &format!("{V2_SECTION}{}", attach("kill_exiting", &top, "")),
    )?;
    let mut victim = Alloc::start(&a, 20, 1000, 0)?;
    check(victim.ready(30 * S), || {
        "the victim could not allocate".into()
    })?;
    a.write("cgroup.freeze", "1")?;
    check(
        bpfoom_testutil::wait_until(10 * S, || a.key("cgroup.events", "frozen") == Some(1)),
        || format!("not frozen: {}", a.read("cgroup.events")),
    )?;
    let alloc = Alloc::start(&b, 40, 0, 0)?;
    let t0 = alloc.started;
    let died = victim.wait(90 * S);
    let _ = a.write("cgroup.freeze", "0");
    check(died.is_some(), || {
        format!("the frozen victim survived: {}", d.stderr())
    })?;
    m["victim_exit_ms"] = json!(t0.elapsed().as_millis() as u64);
    check(alloc.ready(60 * S), || {
        format!("the allocator did not finish: {}", d.stderr())
    })?;
    let kill = d.wait_record(5 * S, |r| r["event"] == "kill");
    check(
        kill.as_ref().is_some_and(|k| k["pid"] == victim.pid()),
        || format!("kill record: {kill:?}"),
    )?;
    m["latency_us"] = kill.map_or(Value::Null, |k| k["latency_us"].clone());
    check(top.key("memory.events", "oom_kill") == Some(0), || {
        format!("kernel OOM killer ran: {}", top.read("memory.events"))
    })?;
    d.stop();
    top.destroy();
    Ok(())
}

/// SIGKILLs a daemon and its guardian (stopped first, so it cannot
/// restore): only the state file knows what was changed.
fn crash(d: &mut Daemon) -> R<()> {
    let pid = d.child.id();
    let children =
        std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).unwrap_or_default();
    let guardian: i32 = children
        .split_whitespace()
        .next()
        .and_then(|p| p.parse().ok())
        .ok_or_else(|| Fail("the daemon has no guardian".into()))?;
    let _ = bpfoom_testutil::signal(guardian, libc::SIGSTOP);
    let _ = bpfoom_testutil::signal(pid as i32, libc::SIGKILL);
    let _ = d.child.wait();
    let _ = bpfoom_testutil::signal(guardian, libc::SIGKILL);
    std::thread::sleep(S / 5);
    Ok(())
}

/// Issue 13, fault 6 on cgroup v2: what bpfoom leaves behind there is a
/// lowered `memory.high` (a throttle, not a pause). After daemon and
/// guardian are SIGKILLed: (1) the state file cut inside its last value
/// still lifts the throttle on restart (`max`, not a few bytes); (2) with
/// the state file lost, a new daemon managing the cgroup does not take the
/// leftover for the owner's value, so after it exits nothing is throttled.
fn fault6_restart_damaged_v2(m: &mut Value) -> R<()> {
    let top = Cg::make("f6v2")?;
    top.write("memory.max", &(64u64 << 20).to_string())?;
    let cfg = format!("{V2_SECTION}{}", attach("always_fail", &top, ""));
    let state = Path::new("/run/bpfoom/f6v2.state");
    let mut d = Daemon::start("f6v2", &cfg)?;
    let lowered = top.read("memory.high").trim().to_string();
    check(lowered == (48u64 << 20).to_string(), || {
        format!("memory.high {lowered}")
    })?;
    crash(&mut d)?;
    check(top.read("memory.high").trim() == lowered, || {
        "the guardian restored (it was stopped)".into()
    })?;
    let text = std::fs::read(state).map_err(|e| Fail(format!("state file: {e}")))?;
    check(text.len() > 3, || "empty state file".into())?;
    std::fs::write(state, &text[..text.len() - 3]).map_err(|e| Fail(e.to_string()))?;
    let mut d2 = Daemon::start("f6v2", V2_SECTION)?;
    let after_cut = top.read("memory.high").trim().to_string();
    m["after_cut"] = json!(after_cut);
    d2.stop();
    check(after_cut == "max", || format!("after the cut: {after_cut}"))?;
    // (2) Lost state file.
    let mut d3 = Daemon::start("f6v2", &cfg)?;
    crash(&mut d3)?;
    std::fs::write(state, b"").map_err(|e| Fail(e.to_string()))?;
    let mut d4 = Daemon::start("f6v2", &cfg)?;
    d4.stop();
    let after_lost = top.read("memory.high").trim().to_string();
    m["after_lost"] = json!(after_lost);
    check(after_lost == "max", || {
        format!("the leftover throttle stayed: {after_lost}")
    })?;
    top.destroy();
    Ok(())
}

/// The cgroup v2 end-to-end suite, by name.
pub const V2_SUITE: &[(&str, GuestTest)] = &[
    ("largest_leaf_tree", largest_leaf_tree),
    ("chain_fallthrough", chain_fallthrough),
    ("kernel_fallback", kernel_fallback),
    ("psi_early_before_limit", psi_early),
    ("cgroup_kill", cgroup_kill),
    ("upstream_oomd_prefs", upstream_oomd_prefs),
    ("upstream_test_oom", upstream_test_oom),
    ("upstream_test_psi", upstream_test_psi),
    ("fault1_frozen_victim_v2", fault1_frozen_victim_v2),
    ("fault6_restart_damaged_v2", fault6_restart_damaged_v2),
];

/// Prints one result line.
pub fn report(v: &Value) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{RESULT_PREFIX}{v}");
    let _ = out.flush();
}

/// Runs the tests of `suite` whose names contain `filter`, printing one
/// result line each; returns how many failed.
pub fn run_suite(suite: &[(&str, GuestTest)], filter: &str) -> usize {
    let _ = Cg::make("").and_then(|r| r.write("cgroup.subtree_control", "+memory"));
    let mut failed = 0;
    for (name, t) in suite.iter().filter(|(n, _)| n.contains(filter)) {
        let start = Instant::now();
        let mut m = json!({ "test": name });
        let r = t(&mut m);
        m["ok"] = json!(r.is_ok());
        m["ms"] = json!(start.elapsed().as_millis() as u64);
        if let Err(e) = r {
            failed += 1;
            m["error"] = json!(e.0);
        }
        report(&m);
    }
    failed
}
