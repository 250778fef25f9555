//! The allocating process of the real-cgroup tests and benchmarks: the
//! process side ([`run`], behind the `bpfoom-test-alloc` helper binary and
//! the VM guest's and the benchmark's `alloc` verbs) and the handle that
//! starts and observes one ([`Alloc`]).
//!
//! The process joins a cgroup, sets its `oom_score_adj`, charges its
//! memory one MiB at a time, prints `BPFOOM-READY <pid>` and holds the
//! memory for a while; a kill before READY means the OOM came while it
//! allocated.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::Receiver;
use std::time::{Duration, Instant};

/// With this environment variable set, the allocator `stat`s the path it
/// names once it is READY (a FUSE server that never answers keeps it in
/// uninterruptible sleep), then holds as usual.
pub const ALLOC_STAT_ENV: &str = "BPFOOM_TEST_ALLOC_STAT";

/// The line the allocator prints once its memory is charged (then its pid).
pub const READY: &str = "BPFOOM-READY";

/// The memory the allocator charges.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Touched heap pages.
    Anon,
    /// An unlinked tmpfs file in `/dev/shm`: page cache (NR_FILE_PAGES),
    /// freed at exit.
    Shm,
}

impl std::str::FromStr for Kind {
    type Err = AllocError;
    fn from_str(s: &str) -> Result<Kind, AllocError> {
        match s {
            "anon" => Ok(Kind::Anon),
            "shm" => Ok(Kind::Shm),
            other => Err(AllocError::Usage(format!(
                "KIND must be anon or shm, not {other:?}"
            ))),
        }
    }
}

impl Kind {
    /// The command-line word.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Anon => "anon",
            Kind::Shm => "shm",
        }
    }
}

/// How anonymous memory is laid out as it grows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Growth {
    /// One allocation of the whole amount, reserved up front and touched a
    /// page at a time (the real-cgroup tests' victims, whose timings were
    /// measured with this shape).
    Reserved,
    /// A separate MiB at a time: a leak may outgrow what one reservation
    /// could get past the kernel's overcommit check (the VM's 2 GiB leak).
    Chunks,
}

/// What one allocator does.
#[derive(Clone, Debug)]
pub struct Spec {
    /// The cgroup directory it joins.
    pub cgroup: PathBuf,
    /// MiB to charge.
    pub mib: usize,
    /// Its `oom_score_adj`.
    pub adj: i32,
    /// How long it holds the memory once READY.
    pub hold: Duration,
    /// Anonymous or page-cache memory.
    pub kind: Kind,
    /// How anonymous memory grows.
    pub growth: Growth,
    /// Pause after each MiB (a slow leak; zero: as fast as it can).
    pub step: Duration,
}

/// Why the allocator could not do its job.
#[derive(Debug, thiserror::Error)]
pub enum AllocError {
    /// Bad arguments.
    #[error("{0}")]
    Usage(String),
    /// A system call failed.
    #[error("{what}: {source}")]
    Io {
        /// What it was doing.
        what: String,
        /// Why it failed.
        #[source]
        source: std::io::Error,
    },
    /// The thread that holds the memory panicked.
    #[error("the waiting thread panicked")]
    Waiter,
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> AllocError {
    let what = what.into();
    move |source| AllocError::Io { what, source }
}

/// The allocator itself (runs in the allocating process).
pub fn run(spec: &Spec) -> Result<(), AllocError> {
    let me = std::process::id();
    std::fs::write(spec.cgroup.join("cgroup.procs"), me.to_string())
        .map_err(io(format!("join {}", spec.cgroup.display())))?;
    std::fs::write("/proc/self/oom_score_adj", spec.adj.to_string())
        .map_err(io(format!("oom_score_adj {}", spec.adj)))?;
    let mut chunks: Vec<Vec<u8>> = Vec::new();
    let mut shm = None;
    match spec.kind {
        Kind::Shm => {
            let p = PathBuf::from(format!("/dev/shm/bpfoom-test-{me}"));
            let mut f = std::fs::File::options()
                .create_new(true)
                .read(true)
                .write(true)
                .open(&p)
                .map_err(io(p.display().to_string()))?;
            let _ = std::fs::remove_file(&p);
            for _ in 0..spec.mib {
                f.write_all(&[1u8; 1 << 20]).map_err(io("shm write"))?;
                std::thread::sleep(spec.step);
            }
            shm = Some(f);
        }
        Kind::Anon => match spec.growth {
            Growth::Reserved => {
                let mut heap: Vec<u8> = Vec::new();
                heap.reserve_exact(spec.mib << 20);
                for _ in 0..spec.mib {
                    // Touch every page: the memory is charged as it is written.
                    for _ in 0..(1 << 20) / 4096 {
                        heap.extend(std::iter::repeat_n(1u8, 4096));
                    }
                    std::thread::sleep(spec.step);
                }
                chunks.push(heap);
            }
            Growth::Chunks => {
                chunks.reserve_exact(spec.mib);
                for i in 0..spec.mib {
                    // Non-zero bytes on every page: no page may stay unbacked.
                    chunks.push(vec![(i % 251 + 1) as u8; 1 << 20]);
                    std::thread::sleep(spec.step);
                }
            }
        },
    }
    std::hint::black_box((&chunks, &shm));
    println!("{READY} {me}");
    let _ = std::io::stdout().flush();
    // The wait runs on a second thread, the main one joining it: the fault
    // tests' victims are that shape, a process whose leader is killable
    // while a thread is stuck.
    let stat = std::env::var_os(ALLOC_STAT_ENV);
    let hold = spec.hold;
    std::thread::spawn(move || {
        if let Some(p) = stat {
            // Blocks for as long as the file system does not answer.
            let _ = std::fs::metadata(p);
        }
        std::thread::sleep(hold);
    })
    .join()
    .map_err(|_| AllocError::Waiter)
}

/// A running allocator; killed and reaped on drop.
pub struct Alloc {
    /// The process.
    pub child: Child,
    lines: Receiver<String>,
    /// When it was started.
    pub started: Instant,
}

impl Alloc {
    /// Starts `cmd` (an allocator, whatever its command line) with its
    /// stdout read for the READY line.
    pub fn spawn(cmd: &mut Command) -> std::io::Result<Alloc> {
        let mut child = cmd.stdin(Stdio::null()).stdout(Stdio::piped()).spawn()?;
        let started = Instant::now();
        let lines = crate::read_lines(child.stdout.take());
        Ok(Alloc {
            child,
            lines,
            started,
        })
    }

    /// Starts the `bpfoom-test-alloc` helper: joins `cgroup_dir`, sets its
    /// oom_score_adj, touches `mib` MiB, prints READY and sleeps `secs`
    /// (then exits 0). Panics when it cannot start (test set-up).
    pub fn start(cgroup_dir: &Path, mib: u64, adj: i32, secs: u64) -> Alloc {
        Self::start_kind(cgroup_dir, mib, adj, secs, "anon")
    }

    /// Like [`Alloc::start`] with the memory kind (`anon` or `shm`).
    pub fn start_kind(cgroup_dir: &Path, mib: u64, adj: i32, secs: u64, kind: &str) -> Alloc {
        Self::start_with(&alloc_exe(), cgroup_dir, mib, adj, secs, kind, &[])
    }

    /// Like [`Alloc::start`], executing the allocator through `exe` (a
    /// link to [`alloc_exe`]), so the process name (`comm`) is `exe`'s file name.
    pub fn start_exe(exe: &Path, cgroup_dir: &Path, mib: u64, adj: i32, secs: u64) -> Alloc {
        Self::start_with(exe, cgroup_dir, mib, adj, secs, "anon", &[])
    }

    /// Like [`Alloc::start_kind`] through `exe` (see [`Alloc::start_exe`])
    /// with extra environment variables (e.g. [`ALLOC_STAT_ENV`]).
    pub fn start_with(
        exe: &Path,
        cgroup_dir: &Path,
        mib: u64,
        adj: i32,
        secs: u64,
        kind: &str,
        env: &[(&str, &Path)],
    ) -> Alloc {
        Alloc::spawn(
            Command::new(exe)
                .arg(cgroup_dir)
                .args([
                    mib.to_string(),
                    adj.to_string(),
                    secs.to_string(),
                    kind.to_string(),
                ])
                .envs(env.iter().map(|(k, v)| (k, v)))
                .stderr(Stdio::null()),
        )
        .expect("spawn allocator")
    }

    /// Waits for READY; false on timeout or exit.
    pub fn ready(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            match self.lines.recv_timeout(left) {
                Ok(l) if l.starts_with(READY) => return true,
                Ok(_) => {}
                Err(_) => return false,
            }
        }
        false
    }

    /// Waits for the process to exit; its status, or `None` on timeout.
    pub fn wait(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(Some(s)) = self.child.try_wait() {
                return Some(s);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(5));
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

/// The `bpfoom-test-alloc` helper binary (built on first use).
pub fn alloc_exe() -> PathBuf {
    crate::helper_exe("bpfoom-test-alloc").expect("the allocator helper builds")
}
