//! The allocating process of the real-cgroup tests.
//!
//! `bpfoom-test-alloc CGROUP_DIR MIB OOM_SCORE_ADJ SECONDS KIND` joins the
//! cgroup (writes its pid to `CGROUP_DIR/cgroup.procs`), sets its
//! `oom_score_adj`, charges MIB MiB, prints `BPFOOM-READY PID`, then sleeps
//! SECONDS and exits 0. KIND is `anon` (touched heap pages) or `shm` (an
//! unlinked tmpfs file: page cache, NR_FILE_PAGES, freed at exit). With
//! `BPFOOM_TEST_ALLOC_STAT=PATH` it `stat`s PATH once it is ready (a FUSE
//! server that never answers keeps it in uninterruptible sleep).
//!
//! A binary of its own rather than the test executable re-run with a
//! filter, so no `#[test]` exists that does nothing; tests find it with
//! [`bpfoom_testutil::helper_exe`].

use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

/// Names the file that the allocator `stat`s once it is ready.
const STAT_ENV: &str = "BPFOOM_TEST_ALLOC_STAT";

fn main() {
    if let Err(e) = run() {
        eprintln!("bpfoom-test-alloc: {e}");
        std::process::exit(2);
    }
}

fn run() -> Result<(), String> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [dir, mib, adj, secs, kind] = args.as_slice() else {
        return Err(
            "usage: bpfoom-test-alloc CGROUP_DIR MIB OOM_SCORE_ADJ SECONDS anon|shm".into(),
        );
    };
    let num = |what: &str, s: &str| -> Result<i64, String> {
        s.parse()
            .map_err(|_| format!("{what}: not a number: {s:?}"))
    };
    let (mib, adj, secs) = (
        num("MIB", mib)? as usize,
        num("OOM_SCORE_ADJ", adj)?,
        num("SECONDS", secs)? as u64,
    );
    let dir = PathBuf::from(dir);
    let me = std::process::id();
    std::fs::write(dir.join("cgroup.procs"), me.to_string())
        .map_err(|e| format!("join {}: {e}", dir.display()))?;
    std::fs::write("/proc/self/oom_score_adj", adj.to_string())
        .map_err(|e| format!("oom_score_adj: {e}"))?;
    let mut heap: Vec<u8> = Vec::new();
    let mut shm = None;
    match kind.as_str() {
        "shm" => {
            let p = PathBuf::from(format!("/dev/shm/bpfoom-test-{me}"));
            let mut f = std::fs::File::options()
                .create_new(true)
                .read(true)
                .write(true)
                .open(&p)
                .map_err(|e| format!("{}: {e}", p.display()))?;
            let _ = std::fs::remove_file(&p);
            for _ in 0..mib {
                f.write_all(&[1u8; 1 << 20])
                    .map_err(|e| format!("shm write: {e}"))?;
            }
            shm = Some(f);
        }
        "anon" => {
            // Touch every page: the memory is charged as it is written.
            heap.reserve_exact(mib << 20);
            for _ in 0..(mib << 20) / 4096 {
                heap.extend(std::iter::repeat_n(1u8, 4096));
            }
        }
        other => return Err(format!("KIND must be anon or shm, not {other:?}")),
    }
    std::hint::black_box((&heap, &shm));
    println!("BPFOOM-READY {me}");
    let _ = std::io::stdout().flush();
    // The wait runs on a second thread, the main one joining it, as in the
    // test-harness process this helper replaced (libtest runs a test on a
    // thread of its own): the fault tests' victims are that shape, a
    // process whose leader is killable while a thread is stuck.
    let stat = std::env::var_os(STAT_ENV);
    std::thread::spawn(move || {
        if let Some(p) = stat {
            // Blocks for as long as the file system does not answer.
            let _ = std::fs::metadata(p);
        }
        std::thread::sleep(Duration::from_secs(secs));
    })
    .join()
    .map_err(|_| "the waiting thread panicked".to_string())?;
    Ok(())
}
