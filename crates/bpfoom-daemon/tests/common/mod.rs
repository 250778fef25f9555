//! Real-cgroup test support: test cgroups below this process's own memory
//! cgroup (removed even when a test fails), allocating helper processes,
//! and a daemon under test. Nothing here touches any other cgroup or
//! process.

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{channel, Receiver};
use std::time::{Duration, Instant};

use bpfoom_host::sys;

/// The v1 memory hierarchy and this process's memcg in it, when the
/// real-cgroup tests can run (root, v1 memory controller); otherwise prints
/// why not and returns `None`.
pub fn v1_or_skip(test: &str) -> Option<(PathBuf, String)> {
    if !bpfoom_testutil::require(bpfoom_testutil::is_root(), &format!("{test}: not root")) {
        return None;
    }
    let root = PathBuf::from("/sys/fs/cgroup/memory");
    if !bpfoom_testutil::require(
        root.join("memory.usage_in_bytes").exists(),
        &format!(
            "{test}: no cgroup v1 memory controller at {}",
            root.display()
        ),
    ) {
        return None;
    }
    let own = bpfoom_host::cgroupfs::memory_cgroup_of(
        Path::new("/proc"),
        "self",
        bpfoom_host::CgroupVersion::V1,
    );
    let Some(own) = own else {
        bpfoom_testutil::require(
            false,
            &format!("{test}: /proc/self/cgroup has no memory line"),
        );
        return None;
    };
    Some((root, own))
}

/// A test cgroup subtree below our own memcg; dropping it kills the
/// processes inside (only those) and removes the directories bottom-up.
pub struct TestTree {
    /// The hierarchy root (mount point).
    pub root: PathBuf,
    /// Absolute path of the subtree's top.
    pub top: PathBuf,
    /// The top relative to the hierarchy root, "/"-prefixed.
    pub top_rel: String,
}

impl TestTree {
    /// Creates `<own memcg>/bpfoom-<name>-<pid>` with `limit` bytes.
    pub fn new(root: &Path, own: &str, name: &str, limit: u64) -> TestTree {
        let rel = format!(
            "{}/bpfoom-{name}-{}",
            own.trim_end_matches('/'),
            std::process::id()
        );
        let top = root.join(rel.trim_start_matches('/'));
        if top.exists() {
            // A leftover of a crashed earlier run of this very test process
            // id; it is ours by name.
            cleanup(&top);
        }
        std::fs::create_dir(&top).unwrap_or_else(|e| panic!("mkdir {}: {e}", top.display()));
        let t = TestTree {
            root: root.to_path_buf(),
            top,
            top_rel: rel,
        };
        t.write("", "memory.limit_in_bytes", &limit.to_string());
        t
    }

    /// Creates a child cgroup (path relative to the top).
    pub fn mkdir(&self, rel: &str) -> PathBuf {
        let p = self.top.join(rel);
        std::fs::create_dir(&p).unwrap_or_else(|e| panic!("mkdir {}: {e}", p.display()));
        p
    }

    /// A file of a cgroup in the tree.
    pub fn path(&self, rel: &str, file: &str) -> PathBuf {
        if rel.is_empty() {
            self.top.join(file)
        } else {
            self.top.join(rel).join(file)
        }
    }

    /// Writes a cgroup file.
    pub fn write(&self, rel: &str, file: &str, v: &str) {
        let p = self.path(rel, file);
        std::fs::write(&p, v).unwrap_or_else(|e| panic!("write {}: {e}", p.display()));
    }

    /// Reads a cgroup file.
    pub fn read(&self, rel: &str, file: &str) -> String {
        std::fs::read_to_string(self.path(rel, file)).unwrap_or_default()
    }

    /// A `key value` entry of `memory.oom_control`.
    pub fn oom_control(&self, rel: &str, key: &str) -> Option<u64> {
        bpfoom_host::parse::kv_get(&self.read(rel, "memory.oom_control"), key)
    }

    /// A cgroup path relative to the hierarchy root, for the daemon.
    pub fn cg(&self, rel: &str) -> String {
        if rel.is_empty() {
            self.top_rel.clone()
        } else {
            format!("{}/{rel}", self.top_rel)
        }
    }
}

impl Drop for TestTree {
    fn drop(&mut self) {
        cleanup(&self.top);
    }
}

fn dirs_post_order(dir: &Path, out: &mut Vec<PathBuf>) {
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                dirs_post_order(&e.path(), out);
            }
        }
    }
    out.push(dir.to_path_buf());
}

fn cleanup(top: &Path) {
    let mut dirs = Vec::new();
    dirs_post_order(top, &mut dirs);
    // Un-pause first so nothing stays stuck in an OOM wait.
    for d in &dirs {
        let _ = std::fs::write(d.join("memory.oom_control"), "0");
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let mut any = false;
        for d in &dirs {
            let procs = std::fs::read_to_string(d.join("cgroup.procs")).unwrap_or_default();
            for pid in bpfoom_host::parse::parse_pids(&procs) {
                any = true;
                if let Ok(fd) = sys::pidfd_open(pid) {
                    let _ = sys::pidfd_send_signal(fd.as_fd(), libc::SIGKILL);
                }
            }
        }
        if !any || Instant::now() > deadline {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    for d in &dirs {
        for _ in 0..100 {
            match std::fs::remove_dir(d) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    std::thread::sleep(Duration::from_millis(20))
                }
                _ => break,
            }
        }
    }
}

/// An allocating helper process (bpfoom-testutil's `bpfoom-test-alloc`).
pub struct Alloc {
    /// The process.
    pub child: Child,
    lines: Receiver<String>,
}

/// With this env var set, the allocator `stat`s the path it names once it
/// is READY (then sleeps as usual).
pub const ALLOC_STAT_ENV: &str = "BPFOOM_TEST_ALLOC_STAT";

impl Alloc {
    /// Starts a helper that joins `cgroup_dir`, sets its oom_score_adj,
    /// touches `mib` MiB, prints READY and sleeps `secs` (then exits 0).
    pub fn start(cgroup_dir: &Path, mib: u64, adj: i32, secs: u64) -> Alloc {
        Self::start_kind(cgroup_dir, mib, adj, secs, "anon")
    }

    /// Like [`Alloc::start`] with the memory kind (`anon` or `shm`).
    pub fn start_kind(cgroup_dir: &Path, mib: u64, adj: i32, secs: u64, kind: &str) -> Alloc {
        Self::start_env(cgroup_dir, mib, adj, secs, kind, &[])
    }

    /// Like [`Alloc::start_kind`] with extra environment variables.
    pub fn start_env(
        cgroup_dir: &Path,
        mib: u64,
        adj: i32,
        secs: u64,
        kind: &str,
        env: &[(&str, &Path)],
    ) -> Alloc {
        Self::spawn(&alloc_exe(), cgroup_dir, mib, adj, secs, kind, env)
    }

    fn spawn(
        exe: &Path,
        cgroup_dir: &Path,
        mib: u64,
        adj: i32,
        secs: u64,
        kind: &str,
        env: &[(&str, &Path)],
    ) -> Alloc {
        let mut child = Command::new(exe)
            .arg(cgroup_dir)
            .args([
                mib.to_string(),
                adj.to_string(),
                secs.to_string(),
                kind.to_string(),
            ])
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn allocator");
        let out = child.stdout.take().expect("stdout");
        let (tx, rx) = channel();
        std::thread::spawn(move || {
            for l in BufReader::new(out).lines().map_while(Result::ok) {
                if tx.send(l).is_err() {
                    break;
                }
            }
        });
        Alloc { child, lines: rx }
    }

    /// Waits for READY; false on timeout or exit.
    pub fn ready(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            match self.lines.recv_timeout(left) {
                Ok(l) if l.starts_with("BPFOOM-READY") => return true,
                Ok(_) => {}
                Err(_) => return false,
            }
        }
        false
    }

    /// Waits for the process to exit; its status, or `None` on timeout.
    pub fn wait(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(Some(s)) = self.child.try_wait() {
                return Some(s);
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Whether it is still running.
    pub fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Its pid.
    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }
}

impl Drop for Alloc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A daemon under test (`bpfoomd run`), SIGKILLed on drop if still running.
pub struct DaemonProc {
    /// The process.
    pub child: Child,
    /// Its control socket.
    pub socket: PathBuf,
    /// Its state file.
    pub state: PathBuf,
    records: Receiver<String>,
    /// Records received so far.
    pub seen: Vec<serde_json::Value>,
    errs: std::sync::Arc<std::sync::Mutex<String>>,
}

/// A private scratch directory under the target dir.
pub fn scratch(name: &str) -> PathBuf {
    let base = std::env::var_os("CARGO_TARGET_TMPDIR")
        .map(PathBuf::from)
        .unwrap_or_else(std::env::temp_dir);
    let d = base.join(format!("bpfoom-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("scratch dir");
    d
}

impl DaemonProc {
    /// Starts `bpfoomd run` with `args` plus a private socket and state file.
    pub fn start(name: &str, args: &[String]) -> DaemonProc {
        Self::start_env(name, args, &[])
    }

    /// Like [`DaemonProc::start`] with extra environment variables.
    pub fn start_env(name: &str, args: &[String], env: &[(&str, &Path)]) -> DaemonProc {
        let dir = scratch(name);
        let socket = dir.join("sock");
        let state = dir.join("state");
        let mut child = Command::new(env!("CARGO_BIN_EXE_bpfoomd"))
            .arg("run")
            .arg("--socket")
            .arg(&socket)
            .arg("--state-file")
            .arg(&state)
            .args(args)
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn bpfoomd");
        let out = child.stdout.take().expect("stdout");
        let err = child.stderr.take().expect("stderr");
        let (tx, rx) = channel();
        std::thread::spawn(move || {
            for l in BufReader::new(out).lines().map_while(Result::ok) {
                if tx.send(l).is_err() {
                    break;
                }
            }
        });
        let errs = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        let e2 = errs.clone();
        std::thread::spawn(move || {
            for l in BufReader::new(err).lines().map_while(Result::ok) {
                if let Ok(mut s) = e2.lock() {
                    s.push_str(&l);
                    s.push('\n');
                }
            }
        });
        DaemonProc {
            child,
            socket,
            state,
            records: rx,
            seen: Vec::new(),
            errs,
        }
    }

    /// Waits until the control socket answers (the daemon is ready).
    pub fn wait_ready(&mut self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return false;
            }
            if std::os::unix::net::UnixStream::connect(&self.socket).is_ok() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }

    /// Waits until stderr contains `what`.
    pub fn wait_stderr(&self, what: &str, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while !self.stderr().contains(what) {
            if Instant::now() > deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        true
    }

    /// stderr so far.
    pub fn stderr(&self) -> String {
        self.errs.lock().map(|s| s.clone()).unwrap_or_default()
    }

    fn pump(&mut self, wait: Duration) -> bool {
        match self.records.recv_timeout(wait) {
            Ok(l) => {
                let v = serde_json::from_str(&l)
                    .unwrap_or_else(|e| panic!("stdout line is not JSON ({e}): {l}"));
                self.seen.push(v);
                true
            }
            Err(_) => false,
        }
    }

    /// Waits for a record matching `f`; returns it.
    pub fn wait_record(
        &mut self,
        timeout: Duration,
        f: impl Fn(&serde_json::Value) -> bool,
    ) -> Option<serde_json::Value> {
        let deadline = Instant::now() + timeout;
        let mut i = 0;
        loop {
            while i < self.seen.len() {
                if f(&self.seen[i]) {
                    return Some(self.seen[i].clone());
                }
                i += 1;
            }
            let left = deadline.checked_duration_since(Instant::now())?;
            self.pump(left.min(Duration::from_millis(50)));
        }
    }

    /// Collects records for `d`.
    pub fn drain(&mut self, d: Duration) {
        let deadline = Instant::now() + d;
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            self.pump(left.min(Duration::from_millis(50)));
        }
    }

    /// Records whose `event` is `ev`.
    pub fn events(&self, ev: &str) -> Vec<serde_json::Value> {
        self.seen
            .iter()
            .filter(|r| r["event"] == ev)
            .cloned()
            .collect()
    }

    /// Sends a signal through a pidfd.
    pub fn signal(&self, sig: i32) {
        let fd = sys::pidfd_open(self.child.id() as i32).expect("pidfd");
        sys::pidfd_send_signal(fd.as_fd(), sig).expect("signal");
    }

    /// Waits for exit.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(Some(s)) = self.child.try_wait() {
                return Some(s);
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for DaemonProc {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            self.signal(libc::SIGTERM);
            if self.wait_exit(Duration::from_secs(5)).is_none() {
                let _ = self.child.kill();
                let _ = self.child.wait();
            }
        }
    }
}

/// Whether this process may set oom_score_adj -1000 (CAP_SYS_RESOURCE).
pub fn can_protect() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            let l = s.lines().find(|l| l.starts_with("CapEff:"))?;
            u64::from_str_radix(l.split_whitespace().nth(1)?, 16).ok()
        })
        .is_some_and(|caps| caps & (1 << 24) != 0)
}

/// Compiles a policy under `bpf/policies` (relative path), or skips.
pub fn policy(rel: &str) -> Option<PathBuf> {
    bpfoom_testutil::compile_or_skip(
        &bpfoom_testutil::repo_root().join("bpf/policies").join(rel),
        &[],
    )
}

/// Runs `bpfoomd ARGS` to completion (a client command), bounded.
pub fn client(args: &[&str]) -> (i32, String, String) {
    let o = Command::new(env!("CARGO_BIN_EXE_bpfoomd"))
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run bpfoomd");
    (
        o.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

impl Alloc {
    /// Like [`Alloc::start`], executing the allocator through `exe` (a
    /// link to [`alloc_exe`]), so the process name (`comm`) is `exe`'s file name.
    pub fn start_exe(exe: &Path, cgroup_dir: &Path, mib: u64, adj: i32, secs: u64) -> Alloc {
        Self::spawn(exe, cgroup_dir, mib, adj, secs, "anon", &[])
    }
}

/// The allocator binary (built on first use).
pub fn alloc_exe() -> PathBuf {
    bpfoom_testutil::helper_exe("bpfoom-test-alloc").expect("the allocator helper builds")
}

impl DaemonProc {
    /// Like [`DaemonProc::start`], with a given state file (a restart that
    /// must find what a previous daemon left).
    pub fn start_with_state(name: &str, state: &Path, args: &[String]) -> DaemonProc {
        let dir = scratch(name);
        let socket = dir.join("sock");
        let mut child = Command::new(env!("CARGO_BIN_EXE_bpfoomd"))
            .arg("run")
            .arg("--socket")
            .arg(&socket)
            .arg("--state-file")
            .arg(state)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn bpfoomd");
        let out = child.stdout.take().expect("stdout");
        let err = child.stderr.take().expect("stderr");
        let (tx, rx) = channel();
        std::thread::spawn(move || {
            for l in BufReader::new(out).lines().map_while(Result::ok) {
                if tx.send(l).is_err() {
                    break;
                }
            }
        });
        let errs = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        let e2 = errs.clone();
        std::thread::spawn(move || {
            for l in BufReader::new(err).lines().map_while(Result::ok) {
                if let Ok(mut s) = e2.lock() {
                    s.push_str(&l);
                    s.push('\n');
                }
            }
        });
        DaemonProc {
            child,
            socket,
            state: state.to_path_buf(),
            records: rx,
            seen: Vec::new(),
            errs,
        }
    }
}

/// A private copy of the host crate's fixture trees (cgroup v2 and /proc) and
/// a daemon config using them, with `extra` appended to the config.
pub fn fixture(name: &str, extra: &str) -> (PathBuf, PathBuf) {
    let base = scratch(&format!("fx-{name}"));
    bpfoom_testutil::copy_dir(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("../bpfoom-host/tests/fixtures"),
        &base,
    );
    let cfg = base.join("bpfoom.toml");
    std::fs::write(
        &cfg,
        format!(
            "[daemon]\ncgroup_root = \"{}\"\nproc_root = \"{}\"\n\n[v2]\nheadroom = \"16M\"\nmin_stall_us = 1000\n{extra}",
            base.join("v2").display(),
            base.join("proc").display()
        ),
    )
    .unwrap();
    (base, cfg)
}

/// Makes the fixture v2 cgroup `job` look as the daemon's v2 monitor sees
/// an OOM: usage 90 MiB (its memory.max is 100 MiB, so the 16M headroom
/// puts memory.high at 84 MiB), new `high` events, 90 ms of stall.
pub fn fixture_v2_oom(job: &Path) {
    std::fs::write(job.join("memory.current"), (90u64 << 20).to_string()).unwrap();
    std::fs::write(
        job.join("memory.pressure"),
        "some avg10=9.00 avg60=1.00 avg300=0.10 total=90000\nfull avg10=0.00 avg60=0.00 avg300=0.00 total=0\n",
    )
    .unwrap();
    std::fs::write(
        job.join("memory.events"),
        "low 0\nhigh 7\nmax 0\noom 0\noom_kill 0\noom_group_kill 0\n",
    )
    .unwrap();
}
