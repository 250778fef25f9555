//! Benchmark group 1: memcg OOM reaction on this machine's cgroup v1, the
//! bpfoom daemon with `largest_leaf` against the kernel OOM killer alone.
//!
//! Layout, all below the benchmark's own memory cgroup:
//!
//! ```text
//! bpfoom-bench-<pid>/          (top: largest_leaf attaches here)
//!   bg/cg<i>                   N background cgroups, 64M limit, P sleepers each
//!   job/                       64M limit: the OOM'ing memcg
//!   job/hog                    the allocator that runs it out of memory
//!   job/svc                    a ticker touching fresh pages every 1 ms
//! ```
//!
//! Per repetition: the hog allocates 1 MiB at a time until something kills
//! it. The harness holds its own eventfd on `job`'s OOM notifications (the
//! kernel signals them whether it then kills or pauses), so every time is
//! measured from the same kernel event: to the hog's exit (`waitid`), and
//! to `job/hog`'s memory being uncharged. The ticker reports each page
//! touch that took over 1 ms; the longest one overlapping the event is the
//! stall a paused (or reclaiming) task saw.

use std::fs::File;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::fd::{AsRawFd, FromRawFd};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::channel;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bpfoom_testutil::alloc::Alloc;
use bpfoom_testutil::cgroup::{Cgroup, CgroupTree, Hierarchy};
use bpfoom_testutil::daemon::{DaemonProc, NonJson};

use crate::stats::Summary;

/// CLOCK_MONOTONIC in nanoseconds (comparable across processes).
pub fn mono_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes the timespec we own.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// Moves the calling process into `cg` (v1 or v2: "0" means the writer).
pub fn join(cg: &Path) -> Result<(), String> {
    std::fs::write(cg.join("cgroup.procs"), "0").map_err(|e| format!("join {}: {e}", cg.display()))
}

/// The ticker: in `cg`, maps, touches and unmaps 64 KiB every millisecond;
/// prints `<end_ns> <took_us>` for every round that took over 1 ms.
pub fn ticker_main(cg: &Path) -> Result<(), String> {
    join(cg)?;
    let mut out = std::io::stdout();
    let _ = writeln!(out, "ready");
    let _ = out.flush();
    let len = 64 << 10;
    loop {
        let t0 = mono_ns();
        // SAFETY: a fresh private anonymous mapping, written within its
        // length and unmapped before the next round.
        unsafe {
            let p = libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            );
            if p == libc::MAP_FAILED {
                return Err("mmap failed".into());
            }
            let b = p as *mut u8;
            for off in (0..len).step_by(4096) {
                b.add(off).write_volatile(1);
            }
            libc::munmap(p, len);
        }
        let t1 = mono_ns();
        if t1 - t0 > 1_000_000 {
            let _ = writeln!(out, "{t1} {}", (t1 - t0) / 1000);
            let _ = out.flush();
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// A process that joins `cg` and forks `n - 1` children; all sleep.
pub fn sleepers_main(cg: &Path, n: usize) -> Result<(), String> {
    join(cg)?;
    for _ in 1..n {
        // SAFETY: single-threaded here; the child only calls pause(2).
        match unsafe { libc::fork() } {
            0 => loop {
                // SAFETY: pause has no preconditions.
                unsafe { libc::pause() };
            },
            -1 => return Err("fork failed".into()),
            _ => {}
        }
    }
    let mut out = std::io::stdout();
    let _ = writeln!(out, "ready");
    let _ = out.flush();
    loop {
        // SAFETY: pause has no preconditions.
        unsafe { libc::pause() };
    }
}

/// How the OOM is handled.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// The kernel OOM killer alone.
    Kernel,
    /// The bpfoom daemon with largest_leaf at the top.
    Bpfoom,
}

/// One repetition's times, milliseconds from the OOM notification.
#[derive(Clone, Copy, Debug)]
pub struct Rep {
    /// To the hog's exit.
    pub exit_ms: f64,
    /// To `job/hog` uncharged (below 1 MiB).
    pub uncharged_ms: f64,
    /// Longest ticker round overlapping the event (0 when none over 1 ms).
    pub stall_ms: f64,
    /// The daemon's own notification-to-kill latency, if it acted.
    pub daemon_latency_ms: Option<f64>,
}

/// The subtree and its background load.
pub struct V1Tree {
    /// Absolute path of the top.
    pub top: PathBuf,
    /// The top relative to the hierarchy root.
    pub top_rel: String,
    sleepers: Vec<Child>,
    // Last: removed once the sleepers are reaped.
    tree: CgroupTree,
}

pub(crate) fn wait_ready(
    child: &mut Child,
    timeout: Duration,
) -> Result<BufReader<std::process::ChildStdout>, String> {
    let out = child.stdout.take().ok_or("no stdout")?;
    let mut r = BufReader::new(out);
    let (tx, rx) = channel();
    let h = std::thread::spawn(move || {
        let mut l = String::new();
        let ok = r.read_line(&mut l).is_ok() && l.trim() == "ready";
        let _ = tx.send(ok);
        r
    });
    match rx.recv_timeout(timeout) {
        Ok(true) => h.join().map_err(|_| "reader panicked".to_string()),
        _ => Err("helper not ready".into()),
    }
}

/// Starts `exe alloc` (the allocator of [`bpfoom_testutil::alloc`]): joins
/// `cg`, charges `mb` MiB at full speed, holds it `hold_s` seconds.
pub(crate) fn alloc(exe: &Path, cg: &Path, mb: usize, hold_s: u64) -> Result<Alloc, String> {
    Alloc::spawn(
        Command::new(exe)
            .arg("alloc")
            .arg("--")
            .arg(cg)
            .arg(mb.to_string())
            .args(["0", &hold_s.to_string(), "0"]),
    )
    .map_err(|e| format!("spawn alloc: {e}"))
}

impl V1Tree {
    /// Creates the subtree with `n` background cgroups of `procs` processes.
    pub fn new(exe: &Path, n: usize, procs: usize) -> Result<V1Tree, String> {
        let tree = Hierarchy::v1_memory()
            .and_then(|h| CgroupTree::below_own(&h, "bench"))
            .map_err(|e| e.to_string())?;
        let mut t = V1Tree {
            top: tree.top.clone(),
            top_rel: tree.top_rel.clone(),
            sleepers: Vec::new(),
            tree,
        };
        for d in ["bg", "job", "job/hog", "job/svc"] {
            t.mkdir(d)?;
        }
        t.write("job", "memory.limit_in_bytes", &(64u64 << 20).to_string())?;
        for i in 0..n {
            let rel = format!("bg/cg{i}");
            let cg = t.mkdir(&rel)?;
            t.write(&rel, "memory.limit_in_bytes", &(64u64 << 20).to_string())?;
            let mut c = Command::new(exe)
                .arg("sleepers")
                .arg(&cg)
                .arg(procs.to_string())
                .stdout(Stdio::piped())
                .spawn()
                .map_err(|e| format!("spawn sleepers: {e}"))?;
            wait_ready(&mut c, Duration::from_secs(10))?;
            t.sleepers.push(c);
        }
        Ok(t)
    }

    /// Creates a cgroup of the tree (relative to its top).
    pub fn mkdir(&self, rel: &str) -> Result<PathBuf, String> {
        self.tree.try_mkdir(rel).map_err(|e| e.to_string())
    }

    /// Writes a control file of a cgroup of the tree.
    pub fn write(&self, rel: &str, file: &str, val: &str) -> Result<(), String> {
        self.tree
            .try_write(rel, file, val)
            .map_err(|e| e.to_string())
    }

    /// A cgroup of the tree, relative to its top.
    pub fn cgroup(&self, rel: &str) -> Cgroup {
        self.tree.cgroup(rel)
    }

    /// A directory of the tree, relative to its top.
    pub fn dir(&self, rel: &str) -> PathBuf {
        self.top.join(rel)
    }
}

impl Drop for V1Tree {
    fn drop(&mut self) {
        for c in &mut self.sleepers {
            let _ = c.kill();
            let _ = c.wait();
        }
        // The tree itself (hog, svc and the episode memcgs with it) goes
        // when its field is dropped.
    }
}

/// An eventfd registered for a memcg's OOM notifications.
struct OomEvents {
    efd: File,
    _ctl: File,
}

impl OomEvents {
    fn new(cg: &Path) -> Result<OomEvents, String> {
        let ctl = File::open(cg.join("memory.oom_control")).map_err(|e| e.to_string())?;
        // SAFETY: eventfd returns a new descriptor or -1.
        let fd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC) };
        if fd < 0 {
            return Err("eventfd failed".into());
        }
        // SAFETY: fd is a fresh descriptor we own.
        let efd = unsafe { File::from_raw_fd(fd) };
        let control = format!("{} {}", efd.as_raw_fd(), ctl.as_raw_fd());
        std::fs::write(cg.join("cgroup.event_control"), control)
            .map_err(|e| format!("{}/cgroup.event_control: {e}", cg.display()))?;
        Ok(OomEvents { efd, _ctl: ctl })
    }

    /// Blocks until the next notification; its CLOCK_MONOTONIC time.
    fn wait(&mut self) -> Option<u64> {
        let mut b = [0u8; 8];
        self.efd.read_exact(&mut b).ok()?;
        Some(mono_ns())
    }
}

/// The daemon (`bpfoom-bench daemon run`), its kill records' latencies
/// collected; dropping it stops it with SIGTERM (it restores
/// oom_kill_disable everywhere).
pub struct Daemon {
    proc: DaemonProc,
}

/// A kill record's notify->kill latency (ms).
fn kill_latency(v: &serde_json::Value) -> Option<f64> {
    (v["event"] == "kill")
        .then(|| v["latency_us"].as_f64())
        .flatten()
        .map(|us| us / 1000.0)
}

impl Daemon {
    /// The notify->kill latencies (ms) of the kill records printed so far
    /// and not yet taken, waiting up to `wait` for the first.
    pub fn take_latencies(&mut self, wait: Duration) -> Vec<f64> {
        let mut v: Vec<f64> = self.next_latency(wait).into_iter().collect();
        self.proc.poll();
        while let Some(ms) = self.next_latency(Duration::ZERO) {
            v.push(ms);
        }
        v
    }

    /// The next kill record's latency (ms), waiting up to `wait` for it.
    pub fn next_latency(&mut self, wait: Duration) -> Option<f64> {
        self.proc
            .take_record(wait, |v| kill_latency(v).is_some())
            .as_ref()
            .and_then(kill_latency)
    }

    /// Its pid.
    pub fn pid(&self) -> i32 {
        self.proc.pid()
    }

    /// Starts it with `policy` attached at the tree's top; waits for its
    /// control socket.
    pub fn start(exe: &Path, policy: &Path, tree: &V1Tree) -> Result<Daemon, String> {
        Daemon::start_with(exe, policy, tree, &[])
    }

    /// [`Daemon::start`] with more `bpfoom run` arguments (more `--attach`es).
    pub fn start_with(
        exe: &Path,
        policy: &Path,
        tree: &V1Tree,
        extra: &[String],
    ) -> Result<Daemon, String> {
        let dir = std::env::temp_dir().join(format!("bpfoom-bench-{}", std::process::id()));
        let _ = std::fs::create_dir_all(&dir);
        let socket = dir.join("d.sock");
        let state = dir.join("state");
        let mut cmd = Command::new(exe);
        cmd.args(["daemon", "run", "--log-format", "json"])
            .arg(format!("--attach={}={}", policy.display(), tree.top_rel))
            .args(extra)
            .arg("--socket")
            .arg(&socket)
            .arg("--state-file")
            .arg(&state);
        let mut proc = DaemonProc::spawn(&mut cmd, socket, state, NonJson::Keep)
            .map_err(|e| format!("spawn daemon: {e}"))?;
        if !proc.wait_ready(Duration::from_secs(60)) {
            return Err("daemon not ready".into());
        }
        Ok(Daemon { proc })
    }
}

/// Results of one configuration.
#[derive(Debug)]
pub struct Group {
    /// Handler.
    pub mode: Mode,
    /// Background cgroups.
    pub cgroups: usize,
    /// Repetitions that completed.
    pub reps: Vec<Rep>,
}

impl Group {
    /// Summary of one field over the repetitions.
    pub fn summary(&self, f: impl Fn(&Rep) -> Option<f64>) -> Option<Summary> {
        let xs: Vec<f64> = self.reps.iter().filter_map(f).collect();
        Summary::of(&xs)
    }
}

/// Runs `reps` OOMs in `mode` with `n` background cgroups of `procs`
/// processes. `exe` is the bpfoom-bench binary (daemon, alloc, ticker,
/// sleepers), `policy` the compiled largest_leaf.
pub fn run_group(
    exe: &Path,
    policy: &Path,
    mode: Mode,
    n: usize,
    procs: usize,
    reps: usize,
) -> Result<Group, String> {
    let tree = V1Tree::new(exe, n, procs)?;
    let mut daemon = match mode {
        Mode::Bpfoom => Some(Daemon::start(exe, policy, &tree)?),
        Mode::Kernel => None,
    };
    let mut ticker = Command::new(exe)
        .arg("ticker")
        .arg(tree.dir("job/svc"))
        .stdout(Stdio::piped())
        .spawn()
        .map_err(|e| format!("spawn ticker: {e}"))?;
    let tout = wait_ready(&mut ticker, Duration::from_secs(10))?;
    let gaps: Arc<Mutex<Vec<(u64, u64)>>> = Arc::default();
    let g2 = gaps.clone();
    std::thread::spawn(move || {
        for l in tout.lines().map_while(Result::ok) {
            let mut f = l.split_whitespace().map(|x| x.parse::<u64>());
            if let (Some(Ok(end)), Some(Ok(us))) = (f.next(), f.next()) {
                if let Ok(mut g) = g2.lock() {
                    g.push((end, us));
                }
            }
        }
    });
    let mut events = OomEvents::new(&tree.dir("job"))?;
    let mut out = Group {
        mode,
        cgroups: n,
        reps: Vec::new(),
    };
    let hog_dir = tree.cgroup("job/hog");
    for _ in 0..reps {
        let mut hog = alloc(exe, &hog_dir.dir, 256, 30)?;
        let t_oom = events.wait().ok_or("eventfd read failed")?;
        let mut t_exit = None;
        let mut t_unch = None;
        let deadline = Instant::now() + Duration::from_secs(30);
        while (t_exit.is_none() || t_unch.is_none()) && Instant::now() < deadline {
            if t_exit.is_none() && !hog.alive() {
                t_exit = Some(mono_ns());
            }
            if t_unch.is_none()
                && hog_dir
                    .value("memory.usage_in_bytes")
                    .is_some_and(|u| u < 1 << 20)
            {
                t_unch = Some(mono_ns());
            }
            std::thread::sleep(Duration::from_micros(100));
        }
        drop(hog);
        let (Some(te), Some(tu)) = (t_exit, t_unch) else {
            return Err(format!("{mode:?}/{n}: the hog was not killed within 30 s"));
        };
        // Let the ticker report rounds that ended after the event.
        std::thread::sleep(Duration::from_millis(50));
        let stall_us = gaps
            .lock()
            .map(|g| {
                g.iter()
                    .filter(|&&(end, us)| end >= t_oom && end - us * 1000 <= tu)
                    .map(|&(_, us)| us)
                    .max()
                    .unwrap_or(0)
            })
            .unwrap_or(0);
        let daemon_latency_ms = daemon
            .as_mut()
            .and_then(|d| d.next_latency(Duration::from_secs(2)));
        let ms = |t: u64| t.saturating_sub(t_oom) as f64 / 1e6;
        out.reps.push(Rep {
            exit_ms: ms(te),
            uncharged_ms: ms(tu),
            stall_ms: stall_us as f64 / 1000.0,
            daemon_latency_ms,
        });
        // Drain notifications of this event (several tasks may have hit it).
        std::thread::sleep(Duration::from_millis(200));
        let mut b = [0u8; 8];
        // SAFETY: fcntl on our own descriptor.
        unsafe {
            let fl = libc::fcntl(events.efd.as_raw_fd(), libc::F_GETFL);
            libc::fcntl(events.efd.as_raw_fd(), libc::F_SETFL, fl | libc::O_NONBLOCK);
        }
        let _ = events.efd.read(&mut b);
        // SAFETY: as above.
        unsafe {
            let fl = libc::fcntl(events.efd.as_raw_fd(), libc::F_GETFL);
            libc::fcntl(
                events.efd.as_raw_fd(),
                libc::F_SETFL,
                fl & !libc::O_NONBLOCK,
            );
        }
    }
    let _ = ticker.kill();
    let _ = ticker.wait();
    drop(daemon);
    drop(tree);
    Ok(out)
}
