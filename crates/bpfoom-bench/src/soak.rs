//! The soak (issue 13): the bpfoom daemon on this machine's cgroup v1 for
//! minutes, with an OOM every ~200 ms across 20 cgroups and attaches and
//! detaches mixed in. Every OOM must be resolved by a kill, the daemon's RSS
//! and open descriptors must not grow, and every decision record is kept.
//!
//! Layout, below this process's own memory cgroup:
//!
//! ```text
//! bpfoom-soak-<pid>/       largest_leaf attaches here (the whole run)
//!   s0 .. s19              32 MiB each: one allocator of 64 MiB at a time
//! ```
//!
//! Every `interval` the next cgroup in turn gets an allocator that wants
//! twice its limit, so it runs the cgroup out of memory at once; the OOM is
//! resolved when the allocator is killed (its exit status is SIGKILL). An
//! allocator that exits by itself would mean no OOM was enforced, one that
//! is still alive after [`RESOLVE_BOUND`] an OOM that stayed paused: both
//! fail the run. Every `churn` interval one leaf alternately gets an
//! instance attached (`always_fail`, so its OOMs fall through to the top's
//! largest_leaf: the chain is exercised, not bypassed) or detached again,
//! through the control socket.
//!
//! Every `sample` interval the daemon's VmRSS, VmHWM and open descriptors
//! are read from /proc, with the running counts; they go to `soak.csv`,
//! `soak.svg` plots them, `records.jsonl` holds every decision record the
//! daemon printed, `summary.md` the totals and checks.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bpfoom_daemon::control::{request, Request};
use bpfoom_daemon::AttachOpts;
use bpfoom_testutil::cgroup::{Cgroup, CgroupTree, Hierarchy};
use bpfoom_testutil::daemon::{DaemonProc, NonJson, Output};

use crate::stats::Summary;

/// An OOM whose allocator is not killed within this long counts as
/// unresolved. A correctness bound, far above the ~0.1 s an OOM takes: the
/// slowest legitimate path is a fallback to the kernel after a failing
/// handler (well under 3 s, see RELIABILITY.md).
pub const RESOLVE_BOUND: Duration = Duration::from_secs(10);

/// RSS growth between the first and the last sample above this is a leak
/// (a 1 KiB leak per OOM would be ~3 MiB over the 10-minute run).
pub const RSS_GROWTH_LIMIT_KB: u64 = 2048;

/// Each soak cgroup's limit.
const LIMIT: u64 = 32 << 20;
/// What each allocator wants (MiB): twice the limit.
const ALLOC_MB: usize = 64;

/// What went wrong.
#[derive(Debug, thiserror::Error)]
pub enum SoakError {
    /// The machine cannot run the soak (not root, no cgroup v1 memory).
    #[error("cannot run the soak: {0}")]
    Unsupported(String),
    /// A file or process operation failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// The daemon did not start or a request failed.
    #[error("daemon: {0}")]
    Daemon(String),
    /// Setting up the cgroups failed.
    #[error(transparent)]
    Cgroup(bpfoom_testutil::cgroup::CgroupError),
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> SoakError {
    let what = what.into();
    move |source| SoakError::Io { what, source }
}

/// How the soak runs.
#[derive(Clone, Debug)]
pub struct SoakConfig {
    /// Total time OOMs are started for.
    pub duration: Duration,
    /// Number of leaf cgroups.
    pub cgroups: usize,
    /// Time between two OOMs.
    pub interval: Duration,
    /// Time between two samples of the daemon.
    pub sample: Duration,
    /// Time between two attach/detach operations.
    pub churn: Duration,
    /// The `bpfoom-bench` binary (runs the daemon and the allocators).
    pub exe: PathBuf,
    /// The compiled largest_leaf (attached at the top).
    pub policy: PathBuf,
    /// The compiled always_fail (attached and detached at leaves).
    pub churn_policy: PathBuf,
    /// Output directory.
    pub out: PathBuf,
}

/// One sample of the daemon.
#[derive(Clone, Debug, Default)]
pub struct Sample {
    /// Seconds since the start.
    pub t_s: f64,
    /// VmRSS (KiB).
    pub rss_kb: u64,
    /// VmHWM (KiB).
    pub hwm_kb: u64,
    /// Open file descriptors.
    pub fds: u64,
    /// OOMs started so far.
    pub ooms: u64,
    /// OOMs resolved (allocator killed) so far.
    pub resolved: u64,
    /// Kill records so far.
    pub kills: u64,
    /// Attach + detach requests served so far.
    pub churn_ops: u64,
    /// Decision records so far.
    pub records: u64,
}

/// The result of a soak.
#[derive(Debug, Default)]
pub struct SoakReport {
    /// Every sample, in order.
    pub samples: Vec<Sample>,
    /// OOMs started.
    pub ooms: u64,
    /// OOMs whose allocator was killed within the bound.
    pub resolved: u64,
    /// Allocators alive past the bound, or that exited without being
    /// killed (no OOM enforced).
    pub unresolved: Vec<String>,
    /// Start-to-kill times (ms) of the resolved OOMs.
    pub resolve_ms: Vec<f64>,
    /// Attach requests served / detach requests served.
    pub attaches: u64,
    /// Detach requests served.
    pub detaches: u64,
    /// Failed control requests.
    pub request_errors: Vec<String>,
    /// Decision records by `event`.
    pub events: BTreeMap<String, u64>,
    /// `resolved` records by `by`.
    pub resolved_by: BTreeMap<String, u64>,
    /// Cgroups still under OOM when the run ended.
    pub under_oom_at_end: Vec<String>,
    /// Cgroups still paused (`oom_kill_disable 1`) after the daemon exited.
    pub paused_after_exit: Vec<String>,
    /// How the daemon exited on SIGTERM.
    pub daemon_exit: Option<i32>,
    /// Load average (1 min) at the start and the end.
    pub loadavg: (f64, f64),
}

impl SoakReport {
    /// Every check the soak makes; empty when the run is clean.
    pub fn problems(&self) -> Vec<String> {
        let mut p = Vec::new();
        if self.ooms == 0 {
            p.push("no OOM was started".into());
        }
        if self.resolved != self.ooms {
            p.push(format!("{} of {} OOMs resolved", self.resolved, self.ooms));
        }
        p.extend(self.unresolved.iter().map(|u| format!("unresolved: {u}")));
        p.extend(
            self.request_errors
                .iter()
                .map(|e| format!("control request failed: {e}")),
        );
        let kills = self.events.get("kill").copied().unwrap_or(0);
        if kills < self.resolved {
            p.push(format!(
                "{kills} kill records for {} resolved OOMs",
                self.resolved
            ));
        }
        if let Some(e) = self.events.get("error") {
            p.push(format!("{e} error records"));
        }
        if !self.under_oom_at_end.is_empty() {
            p.push(format!("still under OOM: {:?}", self.under_oom_at_end));
        }
        if !self.paused_after_exit.is_empty() {
            p.push(format!(
                "paused after the daemon exited: {:?}",
                self.paused_after_exit
            ));
        }
        if self.daemon_exit != Some(0) {
            p.push(format!("daemon exit on SIGTERM: {:?}", self.daemon_exit));
        }
        // Growth is judged from the first sample on (taken one interval
        // in, when start-up allocations are done) to the last.
        if let (Some(first), Some(last)) = (self.samples.first(), self.samples.last()) {
            if last.fds != first.fds {
                p.push(format!("open descriptors {} -> {}", first.fds, last.fds));
            }
            if last.rss_kb > first.rss_kb + RSS_GROWTH_LIMIT_KB {
                p.push(format!(
                    "RSS grew {} -> {} KiB (limit +{RSS_GROWTH_LIMIT_KB})",
                    first.rss_kb, last.rss_kb
                ));
            }
        } else {
            p.push("no samples".into());
        }
        p
    }
}

/// `(VmRSS, VmHWM)` in KiB and the open descriptor count of `pid`.
pub fn proc_sample(pid: u32) -> (u64, u64, u64) {
    let kb = |k: &str| bpfoom_testutil::status_kb(pid, k).unwrap_or(0);
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count() as u64);
    (kb("VmRSS:"), kb("VmHWM:"), fds)
}

fn loadavg() -> f64 {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(f64::NAN)
}

/// The soak's cgroups; dropping it un-pauses, kills what is inside and
/// removes them.
struct Tree {
    top_rel: String,
    leaves: Vec<Cgroup>,
    tree: CgroupTree,
}

impl Tree {
    fn new(n: usize) -> Result<Tree, SoakError> {
        let h = Hierarchy::v1_memory().map_err(|e| SoakError::Unsupported(e.to_string()))?;
        let tree = CgroupTree::below_own(&h, "soak").map_err(SoakError::Cgroup)?;
        let mut leaves = Vec::with_capacity(n);
        for i in 0..n {
            let rel = format!("s{i}");
            tree.try_mkdir(&rel).map_err(SoakError::Cgroup)?;
            tree.try_write(&rel, "memory.limit_in_bytes", &LIMIT.to_string())
                .map_err(SoakError::Cgroup)?;
            leaves.push(tree.cgroup(&rel));
        }
        Ok(Tree {
            top_rel: tree.top_rel.clone(),
            leaves,
            tree,
        })
    }

    fn rel(&self, i: usize) -> String {
        self.leaves[i].rel.clone()
    }

    /// The cgroups whose `memory.oom_control` has `key` set.
    fn with_oom_control(&self, key: &str) -> Vec<String> {
        std::iter::once(self.tree.top())
            .chain(self.leaves.iter())
            .filter(|c| c.key("memory.oom_control", key) == Some(1))
            .map(|c| c.dir.display().to_string())
            .collect()
    }
}

/// Decision records by `event`, and `resolved` records by `by`.
type Counts = (BTreeMap<String, u64>, BTreeMap<String, u64>);

/// One plotted line: name, colour, `(t, value)` points.
type Series<'a> = (&'a str, &'a str, Vec<(f64, f64)>);

/// The daemon under soak, every record it prints kept (and written to
/// `records.jsonl` as printed), its stderr in `daemon.stderr`.
struct Daemon(DaemonProc);

impl Daemon {
    fn start(cfg: &SoakConfig, tree: &Tree) -> Result<Daemon, SoakError> {
        let socket = cfg.out.join("daemon.sock");
        let _ = std::fs::remove_file(&socket);
        let state = cfg.out.join("daemon.state");
        let mut cmd = Command::new(&cfg.exe);
        cmd.args(["daemon", "run", "--log-format", "json"])
            .arg(format!(
                "--attach={}={}",
                cfg.policy.display(),
                tree.top_rel
            ))
            .arg("--socket")
            .arg(&socket)
            .arg("--state-file")
            .arg(&state);
        let output = Output {
            records: Some(cfg.out.join("records.jsonl")),
            stderr: Some(cfg.out.join("daemon.stderr")),
        };
        let mut d = DaemonProc::spawn_with(&mut cmd, socket, state, NonJson::Keep, output)
            .map_err(io(format!("spawn {} daemon run", cfg.exe.display())))?;
        if !d.wait_ready(Duration::from_secs(60)) {
            return Err(SoakError::Daemon(format!(
                "not ready (see {})",
                cfg.out.join("daemon.stderr").display()
            )));
        }
        Ok(Daemon(d))
    }

    /// Decision records by `event` (`(not JSON)` for other lines), and
    /// `resolved` records by `by`, of the records printed so far.
    fn counts(&mut self) -> Counts {
        self.0.poll();
        let mut c = Counts::default();
        for v in &self.0.seen {
            let name = v["event"].as_str().unwrap_or("(not JSON)").to_string();
            if name == "resolved" {
                let by = v["by"].as_str().unwrap_or("?").to_string();
                *c.1.entry(by).or_default() += 1;
            }
            *c.0.entry(name).or_default() += 1;
        }
        c
    }

    /// SIGTERM, bounded wait; the exit code (None: had to be killed).
    /// Every record printed until then is collected.
    fn stop(&mut self) -> Option<i32> {
        let code = self.0.stop(Duration::from_secs(10)).and_then(|s| s.code());
        self.0.collect_to_end(Duration::from_secs(10));
        code
    }
}

/// An allocator in flight.
struct Pending {
    child: Child,
    cg: usize,
    started: Instant,
}

/// Runs the soak; writes `soak.csv`, `soak.svg`, `records.jsonl` and
/// `summary.md` into `cfg.out`. The report says whether it ran clean
/// ([`SoakReport::problems`]).
pub fn run(cfg: &SoakConfig) -> Result<SoakReport, SoakError> {
    std::fs::create_dir_all(&cfg.out).map_err(io(format!("mkdir {}", cfg.out.display())))?;
    let tree = Tree::new(cfg.cgroups)?;
    let mut daemon = Daemon::start(cfg, &tree)?;
    let pid = daemon.0.child.id();
    let mut rep = SoakReport {
        loadavg: (loadavg(), f64::NAN),
        ..Default::default()
    };
    let start = Instant::now();
    let end = start + cfg.duration;
    let mut next_oom = start;
    let mut next_sample = start + cfg.sample;
    let mut next_churn = start + cfg.churn;
    let mut pending: Vec<Pending> = Vec::new();
    let mut seq = 0usize;
    let mut churn_seq = 0usize;
    let mut attached: Option<usize> = None;

    let reap = |pending: &mut Vec<Pending>, rep: &mut SoakReport, now: Instant| {
        pending.retain_mut(|p| match p.child.try_wait() {
            Ok(Some(st)) => {
                if st.signal() == Some(libc::SIGKILL) {
                    rep.resolved += 1;
                    rep.resolve_ms
                        .push(now.duration_since(p.started).as_secs_f64() * 1e3);
                } else {
                    rep.unresolved
                        .push(format!("allocator in s{} exited with {st}", p.cg));
                }
                false
            }
            Ok(None) if now.duration_since(p.started) > RESOLVE_BOUND => {
                rep.unresolved.push(format!(
                    "allocator in s{} alive after {RESOLVE_BOUND:?}",
                    p.cg
                ));
                let _ = p.child.kill();
                let _ = p.child.wait();
                false
            }
            Ok(None) => true,
            Err(e) => {
                rep.unresolved.push(format!("wait for s{}: {e}", p.cg));
                false
            }
        });
    };

    while Instant::now() < end {
        let now = Instant::now();
        reap(&mut pending, &mut rep, now);
        if now >= next_oom {
            // The next cgroup without an allocator in flight.
            let busy: Vec<usize> = pending.iter().map(|p| p.cg).collect();
            if let Some(cg) = (0..cfg.cgroups)
                .map(|k| (seq + k) % cfg.cgroups)
                .find(|c| !busy.contains(c))
            {
                let child = Command::new(&cfg.exe)
                    .args(["alloc", "--"])
                    .arg(&tree.leaves[cg].dir)
                    .args([ALLOC_MB.to_string(), "0".into(), "30".into(), "0".into()])
                    .stdin(Stdio::null())
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .spawn()
                    .map_err(io("spawn allocator"))?;
                pending.push(Pending {
                    child,
                    cg,
                    started: now,
                });
                rep.ooms += 1;
                seq = cg + 1;
            }
            next_oom += cfg.interval;
        }
        if now >= next_churn {
            let req = match attached.take() {
                Some(i) => {
                    rep.detaches += 1;
                    Request::Detach {
                        cgroup: tree.rel(i),
                    }
                }
                None => {
                    let i = (churn_seq * 7) % cfg.cgroups;
                    churn_seq += 1;
                    attached = Some(i);
                    rep.attaches += 1;
                    Request::Attach {
                        policy: cfg.churn_policy.clone(),
                        cgroup: tree.rel(i),
                        instance: None,
                        options: AttachOpts::default(),
                    }
                }
            };
            match request(&daemon.0.socket, &req, Duration::from_secs(10)) {
                Ok(r) if r.ok => {}
                Ok(r) => rep
                    .request_errors
                    .push(format!("{req:?}: {}", r.error.unwrap_or_default())),
                Err(e) => rep.request_errors.push(format!("{req:?}: {e}")),
            }
            next_churn += cfg.churn;
        }
        if now >= next_sample {
            rep.samples.push(sample(&mut daemon, pid, start, &rep));
            next_sample += cfg.sample;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    // Let the last OOMs resolve (bounded by RESOLVE_BOUND each).
    while !pending.is_empty() {
        reap(&mut pending, &mut rep, Instant::now());
        std::thread::sleep(Duration::from_millis(5));
    }
    if let Some(i) = attached.take() {
        rep.detaches += 1;
        if let Err(e) = request(
            &daemon.0.socket,
            &Request::Detach {
                cgroup: tree.rel(i),
            },
            Duration::from_secs(10),
        ) {
            rep.request_errors.push(format!("final detach: {e}"));
        }
    }
    std::thread::sleep(Duration::from_millis(500));
    rep.samples.push(sample(&mut daemon, pid, start, &rep));
    rep.under_oom_at_end = tree.with_oom_control("under_oom");
    rep.daemon_exit = daemon.stop();
    let (events, by) = daemon.counts();
    rep.events = events;
    rep.resolved_by = by;
    rep.paused_after_exit = tree.with_oom_control("oom_kill_disable");
    rep.loadavg.1 = loadavg();
    drop(tree);
    write_outputs(cfg, &rep)?;
    Ok(rep)
}

fn sample(d: &mut Daemon, pid: u32, start: Instant, rep: &SoakReport) -> Sample {
    let (rss_kb, hwm_kb, fds) = proc_sample(pid);
    let (events, _) = d.counts();
    Sample {
        t_s: start.elapsed().as_secs_f64(),
        rss_kb,
        hwm_kb,
        fds,
        ooms: rep.ooms,
        resolved: rep.resolved,
        kills: events.get("kill").copied().unwrap_or(0),
        churn_ops: rep.attaches + rep.detaches,
        records: events.values().sum(),
    }
}

/// The CSV of the samples.
pub fn csv(samples: &[Sample]) -> String {
    let mut s = String::from("t_s,rss_kb,hwm_kb,fds,ooms,resolved,kills,churn_ops,records\n");
    for x in samples {
        let _ = writeln!(
            s,
            "{:.1},{},{},{},{},{},{},{},{}",
            x.t_s, x.rss_kb, x.hwm_kb, x.fds, x.ooms, x.resolved, x.kills, x.churn_ops, x.records
        );
    }
    s
}

/// The Markdown summary of a run.
pub fn summary(cfg: &SoakConfig, rep: &SoakReport) -> String {
    let mut s = String::new();
    let problems = rep.problems();
    let _ = writeln!(
        s,
        "Soak: {:.0} s, {} cgroups, an OOM every {} ms, an attach or detach every {} ms; \
         load average {:.2} at the start, {:.2} at the end (2 shared cores)\n",
        cfg.duration.as_secs_f64(),
        cfg.cgroups,
        cfg.interval.as_millis(),
        cfg.churn.as_millis(),
        rep.loadavg.0,
        rep.loadavg.1
    );
    let _ = writeln!(s, "| measure | value |\n|---|---|");
    let _ = writeln!(s, "| OOMs started | {} |", rep.ooms);
    let _ = writeln!(s, "| OOMs resolved by a kill | {} |", rep.resolved);
    let _ = writeln!(s, "| unresolved | {} |", rep.unresolved.len());
    if let Some(t) = Summary::of(&rep.resolve_ms) {
        let _ = writeln!(
            s,
            "| allocator start to kill (median / p99 / max) | {:.0} / {:.0} / {:.0} ms |",
            t.median, t.p99, t.max
        );
    }
    let _ = writeln!(
        s,
        "| attaches / detaches served | {} / {} |",
        rep.attaches, rep.detaches
    );
    let rec: Vec<String> = rep.events.iter().map(|(k, v)| format!("{k} {v}")).collect();
    let _ = writeln!(s, "| decision records | {} |", rec.join(", "));
    let by: Vec<String> = rep
        .resolved_by
        .iter()
        .map(|(k, v)| format!("{k} {v}"))
        .collect();
    let _ = writeln!(s, "| resolved records by | {} |", by.join(", "));
    if let (Some(f), Some(l)) = (rep.samples.first(), rep.samples.last()) {
        let max_rss = rep.samples.iter().map(|x| x.rss_kb).max().unwrap_or(0);
        let max_fds = rep.samples.iter().map(|x| x.fds).max().unwrap_or(0);
        let _ = writeln!(
            s,
            "| daemon RSS first / last / max sample | {} / {} / {} KiB |",
            f.rss_kb, l.rss_kb, max_rss
        );
        let _ = writeln!(
            s,
            "| daemon open fds first / last / max sample | {} / {} / {} |",
            f.fds, l.fds, max_fds
        );
    }
    let _ = writeln!(
        s,
        "| cgroups under OOM at the end / paused after exit | {} / {} |",
        rep.under_oom_at_end.len(),
        rep.paused_after_exit.len()
    );
    let _ = writeln!(
        s,
        "| verdict | {} |",
        if problems.is_empty() {
            "clean".to_string()
        } else {
            problems.join("; ")
        }
    );
    s
}

fn write_outputs(cfg: &SoakConfig, rep: &SoakReport) -> Result<(), SoakError> {
    let w = |name: &str, body: String| {
        std::fs::write(cfg.out.join(name), body).map_err(io(format!("write {name}")))
    };
    w("soak.csv", csv(&rep.samples))?;
    w("soak.svg", svg(&rep.samples))?;
    w("summary.md", summary(cfg, rep))
}

/// Escapes text for SVG.
fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// A "nice" axis maximum at or above `v`.
fn nice_max(v: f64) -> f64 {
    if v <= 0.0 {
        return 1.0;
    }
    let mag = 10f64.powf(v.log10().floor());
    for m in [1.0, 2.0, 2.5, 5.0, 10.0] {
        if m * mag >= v {
            return m * mag;
        }
    }
    10.0 * mag
}

/// One panel: a line per series over time.
fn panel(out: &mut String, y0: f64, title: &str, unit: &str, t_max: f64, series: &[Series<'_>]) {
    const X0: f64 = 70.0;
    const W: f64 = 600.0;
    const H: f64 = 160.0;
    let v_max = nice_max(
        series
            .iter()
            .flat_map(|s| s.2.iter().map(|p| p.1))
            .fold(0.0, f64::max)
            * 1.1,
    );
    let x = |t: f64| X0 + t / t_max.max(1e-9) * W;
    let y = |v: f64| y0 + H - v / v_max * H;
    let _ = writeln!(
        out,
        r##"<text x="{X0}" y="{}" font-size="13" font-weight="bold">{}</text>"##,
        y0 - 8.0,
        esc(title)
    );
    let _ = writeln!(
        out,
        r##"<rect x="{X0}" y="{y0}" width="{W}" height="{H}" fill="none" stroke="#888"/>"##
    );
    for k in 0..=4 {
        let v = v_max * k as f64 / 4.0;
        let yy = y(v);
        let _ = writeln!(
            out,
            r##"<line x1="{X0}" y1="{yy:.1}" x2="{}" y2="{yy:.1}" stroke="#ddd"/><text x="{}" y="{:.1}" font-size="11" text-anchor="end">{} {}</text>"##,
            X0 + W,
            X0 - 4.0,
            yy + 4.0,
            if v.fract() == 0.0 {
                format!("{v:.0}")
            } else if v_max >= 10.0 {
                format!("{v:.1}")
            } else {
                format!("{v:.2}")
            },
            esc(unit)
        );
    }
    for k in 0..=5 {
        let t = t_max * k as f64 / 5.0;
        let _ = writeln!(
            out,
            r##"<text x="{:.1}" y="{}" font-size="11" text-anchor="middle">{t:.0} s</text>"##,
            x(t),
            y0 + H + 14.0
        );
    }
    for (i, (name, color, pts)) in series.iter().enumerate() {
        let d: Vec<String> = pts
            .iter()
            .map(|&(t, v)| format!("{:.1},{:.1}", x(t), y(v)))
            .collect();
        let _ = writeln!(
            out,
            r##"<polyline fill="none" stroke="{color}" stroke-width="2" points="{}"/>"##,
            d.join(" ")
        );
        for &(t, v) in pts {
            let _ = writeln!(
                out,
                r##"<circle cx="{:.1}" cy="{:.1}" r="2.5" fill="{color}"/>"##,
                x(t),
                y(v)
            );
        }
        let _ = writeln!(
            out,
            r##"<text x="{}" y="{}" font-size="11" fill="{color}">{}</text>"##,
            X0 + W + 8.0,
            y0 + 14.0 + 14.0 * i as f64,
            esc(name)
        );
    }
}

/// The plot: the daemon's RSS, its open descriptors and the OOM count over
/// time, one panel each.
pub fn svg(samples: &[Sample]) -> String {
    let t_max = samples.iter().map(|s| s.t_s).fold(0.0, f64::max);
    let mut out = String::new();
    let _ = writeln!(
        out,
        r##"<svg xmlns="http://www.w3.org/2000/svg" width="780" height="660" font-family="sans-serif">"##
    );
    let _ = writeln!(out, r##"<rect width="100%" height="100%" fill="white"/>"##);
    let pts = |f: &dyn Fn(&Sample) -> f64| -> Vec<(f64, f64)> {
        samples.iter().map(|s| (s.t_s, f(s))).collect()
    };
    panel(
        &mut out,
        30.0,
        "bpfoom daemon memory (sampled every 10 s)",
        "MiB",
        t_max,
        &[
            ("VmRSS", "#1f77b4", pts(&|s| s.rss_kb as f64 / 1024.0)),
            ("VmHWM", "#aec7e8", pts(&|s| s.hwm_kb as f64 / 1024.0)),
        ],
    );
    panel(
        &mut out,
        250.0,
        "bpfoom daemon open file descriptors",
        "",
        t_max,
        &[("fds", "#d62728", pts(&|s| s.fds as f64))],
    );
    panel(
        &mut out,
        470.0,
        "OOMs started / resolved, kill records (cumulative)",
        "",
        t_max,
        &[
            ("started", "#7f7f7f", pts(&|s| s.ooms as f64)),
            ("resolved", "#2ca02c", pts(&|s| s.resolved as f64)),
            ("kills", "#ff7f0e", pts(&|s| s.kills as f64)),
        ],
    );
    out.push_str("</svg>\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(t: f64, rss: u64, fds: u64) -> Sample {
        Sample {
            t_s: t,
            rss_kb: rss,
            fds,
            ..Default::default()
        }
    }

    fn clean() -> SoakReport {
        SoakReport {
            samples: vec![s(10.0, 9000, 12), s(20.0, 9100, 12)],
            ooms: 5,
            resolved: 5,
            events: [("kill".to_string(), 5)].into_iter().collect(),
            daemon_exit: Some(0),
            ..Default::default()
        }
    }

    #[test]
    fn a_clean_report_has_no_problems() {
        assert_eq!(clean().problems(), Vec::<String>::new());
    }

    #[test]
    fn leaks_and_unresolved_ooms_are_problems() {
        let mut r = clean();
        r.samples.push(s(30.0, 9000 + RSS_GROWTH_LIMIT_KB + 1, 13));
        r.resolved = 4;
        let p = r.problems().join("\n");
        assert!(p.contains("RSS grew"), "{p}");
        assert!(p.contains("open descriptors 12 -> 13"), "{p}");
        assert!(p.contains("4 of 5 OOMs resolved"), "{p}");
        let mut r = clean();
        r.paused_after_exit.push("/x".into());
        r.daemon_exit = None;
        assert_eq!(r.problems().len(), 2, "{:?}", r.problems());
    }

    #[test]
    fn csv_and_svg_hold_every_sample() {
        let r = clean();
        let c = csv(&r.samples);
        assert_eq!(c.lines().count(), 3);
        assert!(c.lines().nth(2).unwrap().starts_with("20.0,9100,"));
        let g = svg(&r.samples);
        assert!(g.starts_with("<svg") && g.trim_end().ends_with("</svg>"));
        // Three panels: one polyline per series (2 + 1 + 3).
        assert_eq!(g.matches("<polyline").count(), 6);
        assert_eq!(nice_max(9.1), 10.0);
        assert_eq!(nice_max(11.0), 20.0);
    }
}
