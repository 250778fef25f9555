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
//! [`bpfoom_testutil::helper_exe`]. The work is
//! [`bpfoom_testutil::alloc::run`].

use std::path::PathBuf;
use std::time::Duration;

use bpfoom_testutil::alloc::{AllocError, Growth, Spec};

fn main() {
    if let Err(e) = parse().and_then(|s| bpfoom_testutil::alloc::run(&s)) {
        eprintln!("bpfoom-test-alloc: {e}");
        std::process::exit(2);
    }
}

fn parse() -> Result<Spec, AllocError> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [dir, mib, adj, secs, kind] = args.as_slice() else {
        return Err(AllocError::Usage(
            "usage: bpfoom-test-alloc CGROUP_DIR MIB OOM_SCORE_ADJ SECONDS anon|shm".into(),
        ));
    };
    let num = |what: &str, s: &str| -> Result<i64, AllocError> {
        s.parse()
            .map_err(|_| AllocError::Usage(format!("{what}: not a number: {s:?}")))
    };
    Ok(Spec {
        cgroup: PathBuf::from(dir),
        mib: num("MIB", mib)? as usize,
        adj: num("OOM_SCORE_ADJ", adj)? as i32,
        hold: Duration::from_secs(num("SECONDS", secs)? as u64),
        kind: kind.parse()?,
        growth: Growth::Reserved,
        step: Duration::ZERO,
    })
}
