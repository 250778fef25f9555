//! Real-cgroup test support for the daemon's tests: bpfoom-testutil's
//! harness (cgroup trees below this process's own memory cgroup, the
//! allocator, the daemon process, fixture copies) with what is particular
//! to `bpfoomd`: its command line, its fixture config.

// Each test binary uses its own part of this module.
#![allow(dead_code, unused_imports)]

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

pub use bpfoom_testutil::alloc::{alloc_exe, Alloc, ALLOC_STAT_ENV};
pub use bpfoom_testutil::cgroup::{CgroupTree as TestTree, Hierarchy};
pub use bpfoom_testutil::daemon::{DaemonProc, NonJson};
pub use bpfoom_testutil::fixture::scratch;
pub use bpfoom_testutil::policy_or_skip as policy;
pub use bpfoom_testutil::wait_until;

/// The v1 memory hierarchy and this process's memcg in it, when the
/// real-cgroup tests can run (root, v1 memory controller); otherwise prints
/// why not (fails under CI) and returns `None`.
pub fn v1_or_skip(test: &str) -> Option<Hierarchy> {
    Hierarchy::v1_memory_or_skip(test)
}

/// Starting `bpfoomd run` with a private socket and state file.
pub trait Bpfoomd: Sized {
    /// Starts `bpfoomd run` with `args` plus a private socket and state file.
    fn start(name: &str, args: &[String]) -> Self {
        Self::start_env(name, args, &[])
    }

    /// Like [`Bpfoomd::start`] with extra environment variables.
    fn start_env(name: &str, args: &[String], env: &[(&str, &Path)]) -> Self;

    /// Like [`Bpfoomd::start`], with a given state file (a restart that
    /// must find what a previous daemon left).
    fn start_with_state(name: &str, state: &Path, args: &[String]) -> Self;
}

impl Bpfoomd for DaemonProc {
    fn start_env(name: &str, args: &[String], env: &[(&str, &Path)]) -> DaemonProc {
        let dir = scratch(name);
        launch(&dir, &dir.join("state"), args, env)
    }

    fn start_with_state(name: &str, state: &Path, args: &[String]) -> DaemonProc {
        launch(&scratch(name), state, args, &[])
    }
}

fn launch(dir: &Path, state: &Path, args: &[String], env: &[(&str, &Path)]) -> DaemonProc {
    let socket = dir.join("sock");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_bpfoomd"));
    cmd.arg("run")
        .arg("--socket")
        .arg(&socket)
        .arg("--state-file")
        .arg(state)
        .args(args)
        .envs(env.iter().map(|(k, v)| (k, v)));
    DaemonProc::spawn(&mut cmd, socket, state.to_path_buf(), NonJson::Panic).expect("spawn bpfoomd")
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

/// A private copy of the host crate's fixture trees (cgroup v2 and /proc) and
/// a daemon config using them, with `extra` appended to the config.
pub fn fixture(name: &str, extra: &str) -> (PathBuf, PathBuf) {
    let base = bpfoom_testutil::fixture::fixture_copy(&format!("fx-{name}"));
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
