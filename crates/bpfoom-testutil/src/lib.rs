//! Test support shared by the bpfoom crates: a dev-dependency, and the
//! harness of the VM guest and the benchmarks.
//!
//! Tests never rely on prebuilt BPF objects: they compile C sources with the
//! documented clang line on demand, into a content-addressed cache under the
//! cargo target directory, so a stale object can never be picked up.
//!
//! The real-cgroup harness: [`cgroup`] (a tree below the test's own cgroup,
//! v1 or v2, removed on drop), [`alloc`] (the allocating process),
//! [`daemon`] (a daemon process and its records) and [`fixture`] (scratch
//! directories and copies of the cgroupfs/procfs fixture trees).

pub mod alloc;
pub mod cgroup;
pub mod daemon;
pub mod fixture;
pub mod kernel;
pub mod rng;

pub use fixture::{copy_dir, scratch};
pub use rng::Rng;

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::process::Command;

/// The repository root (two levels above this crate).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap_or_else(|_| Path::new(env!("CARGO_MANIFEST_DIR")).join("../.."))
}

/// The directory holding `bpf_oom.h`.
pub fn include_dir() -> PathBuf {
    repo_root().join("bpf/include")
}

/// The example policy sources, `bpf/policies/*.bpf.c`, sorted.
pub fn policy_sources() -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(repo_root().join("bpf/policies"))
        .map(|d| {
            d.filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.to_string_lossy().ends_with(".bpf.c"))
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// The shared data folder (`../shared` beside the repository), or `$BPFOOM_SHARED`.
pub fn shared_dir() -> Option<PathBuf> {
    let p = std::env::var_os("BPFOOM_SHARED")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("../shared"));
    p.is_dir().then_some(p)
}

/// The bpf_conformance vectors (`conformance/` in the [`shared_dir`]), if present.
pub fn conformance_dir() -> Option<PathBuf> {
    shared_dir()
        .map(|d| d.join("conformance"))
        .filter(|d| d.is_dir())
}

/// [`conformance_dir`], or `None` after a [`require`] that fails the test in
/// strict mode and prints the skip otherwise.
#[track_caller]
pub fn require_conformance_dir() -> Option<PathBuf> {
    let dir = conformance_dir();
    require(
        dir.is_some(),
        "conformance vectors not found (../shared/conformance or $BPFOOM_SHARED/conformance)",
    );
    dir
}

/// The path of one of this crate's helper binaries (`src/bin/NAME.rs`, e.g.
/// `bpfoom-test-alloc`), built on first use.
///
/// Cargo builds a dependency's binaries for nobody, so the helper is built
/// here with `cargo build`, into a target directory of its own
/// (`target/testutil-helpers`): the `cargo test` that runs the caller holds
/// the lock of the main one. Once built, the call is a quick no-op build
/// (cargo's own freshness check, so an edited helper is never stale).
pub fn helper_exe(name: &str) -> Result<PathBuf, String> {
    static BUILT: std::sync::Mutex<Vec<(String, PathBuf)>> = std::sync::Mutex::new(Vec::new());
    let mut built = BUILT.lock().unwrap_or_else(|e| e.into_inner());
    if let Some((_, p)) = built.iter().find(|(n, _)| n == name) {
        return Ok(p.clone());
    }
    // target/<profile>/deps/<test> -> target
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .or_else(|| {
            let exe = std::env::current_exe().ok()?;
            Some(exe.parent()?.parent()?.parent()?.to_path_buf())
        })
        .unwrap_or_else(|| repo_root().join("target"));
    let dir = target.join("testutil-helpers");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let out = Command::new(cargo)
        .args([
            "build",
            "--release",
            "--offline",
            "--quiet",
            "-p",
            "bpfoom-testutil",
            "--bin",
            name,
        ])
        .arg("--target-dir")
        .arg(&dir)
        .current_dir(repo_root())
        .output()
        .map_err(|e| format!("cargo build of {name}: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "cargo build of {name} failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    let exe = dir.join("release").join(name);
    if !exe.is_file() {
        return Err(format!(
            "cargo built {name}, but {} is missing",
            exe.display()
        ));
    }
    built.push((name.to_string(), exe.clone()));
    Ok(exe)
}

/// The clang to use: `$CLANG` or `clang` on PATH, if it runs.
pub fn clang() -> Option<PathBuf> {
    let c = std::env::var_os("CLANG")
        .map(PathBuf::from)
        .unwrap_or_else(|| "clang".into());
    Command::new(&c)
        .arg("--version")
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|_| c)
}

/// Where compiled fixtures are cached.
fn cache_dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("target"));
    target.join("bpf-fixtures")
}

/// Compiles a BPF C source with the README's compile line (plus `extra` flags)
/// and returns the object path. The cache key covers the source, the ABI
/// header, the flags and the clang binary, so edits always recompile.
pub fn compile(src: &Path, extra: &[&str]) -> Result<PathBuf, String> {
    let clang = clang().ok_or("clang not found (install clang, or set CLANG)")?;
    let source = std::fs::read(src).map_err(|e| format!("{}: {e}", src.display()))?;
    let header = std::fs::read(include_dir().join("bpf_oom.h")).unwrap_or_default();
    let mut h = DefaultHasher::new();
    (&source, &header, extra, &clang).hash(&mut h);
    let stem = src
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("prog")
        .trim_end_matches(".c");
    let dir = cache_dir();
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let out = dir.join(format!("{stem}-{:016x}.o", h.finish()));
    if out.exists() {
        return Ok(out);
    }
    // Compile to a unique temporary name, then rename: parallel tests may race.
    let tmp = dir.join(format!(
        "{stem}-{}-{:?}.tmp",
        std::process::id(),
        std::thread::current().id()
    ));
    let o = Command::new(&clang)
        .args(["-O2", "-g", "-target", "bpf", "-mcpu=v3", "-I"])
        .arg(include_dir())
        .args(extra)
        .arg("-c")
        .arg(src)
        .arg("-o")
        .arg(&tmp)
        .output()
        .map_err(|e| format!("running {}: {e}", clang.display()))?;
    if !o.status.success() {
        return Err(format!(
            "clang failed on {}:\n{}",
            src.display(),
            String::from_utf8_lossy(&o.stderr)
        ));
    }
    std::fs::rename(&tmp, &out).map_err(|e| format!("{}: {e}", out.display()))?;
    Ok(out)
}

/// Compiles C source text (written to the cache directory first).
pub fn compile_str(name: &str, code: &str, extra: &[&str]) -> Result<PathBuf, String> {
    let dir = cache_dir().join("src");
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let mut h = DefaultHasher::new();
    code.hash(&mut h);
    let src = dir.join(format!("{name}-{:016x}.bpf.c", h.finish()));
    if !src.exists() {
        std::fs::write(&src, code).map_err(|e| format!("{}: {e}", src.display()))?;
    }
    compile(&src, extra)
}

/// Compiles the policy `rel` under `bpf/policies` (e.g.
/// `"tests/always_fail.bpf.c"`) with [`compile_or_skip`].
#[track_caller]
pub fn policy_or_skip(rel: &str) -> Option<PathBuf> {
    compile_or_skip(&repo_root().join("bpf/policies").join(rel), &[])
}

/// Whether clang is there, after a [`require`]: `false` (the caller
/// returns early) prints the skip, or fails the test in strict mode.
#[track_caller]
pub fn require_clang() -> bool {
    require(clang().is_some(), "clang not found")
}

/// Waits until `f` holds, checking every 10 ms; false when `timeout`
/// passed first.
pub fn wait_until(timeout: std::time::Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = std::time::Instant::now() + timeout;
    loop {
        if f() {
            return true;
        }
        if std::time::Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}

/// A `kB` field of `/proc/PID/status` (`"VmRSS:"`, `"VmHWM:"`, ...);
/// `None` when the process or the field is gone.
pub fn status_kb(pid: u32, key: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
}

/// The lines of a child's output as they come, read by a thread of their
/// own (a child blocked on a full pipe would stall the test); nothing when
/// there is no pipe.
pub fn read_lines<R: std::io::Read + Send + 'static>(
    out: Option<R>,
) -> std::sync::mpsc::Receiver<String> {
    read_lines_tee(out, None)
}

/// [`read_lines`], every line also appended to `tee` as it is read (a log
/// that stays complete even when nobody takes the lines).
pub fn read_lines_tee<R: std::io::Read + Send + 'static>(
    out: Option<R>,
    mut tee: Option<std::fs::File>,
) -> std::sync::mpsc::Receiver<String> {
    use std::io::{BufRead, Write};
    let (tx, rx) = std::sync::mpsc::channel();
    if let Some(out) = out {
        std::thread::spawn(move || {
            for l in std::io::BufReader::new(out).lines().map_while(Result::ok) {
                if let Some(f) = tee.as_mut() {
                    let _ = writeln!(f, "{l}");
                }
                // A receiver gone only means nobody takes the lines now;
                // the tee goes on to the end.
                if tx.send(l).is_err() && tee.is_none() {
                    break;
                }
            }
        });
    }
    rx
}

/// Sends `sig` to `pid` through a pidfd, so that a pid recycled since it
/// was read is never signalled by mistake once the pidfd is open.
pub fn signal(pid: i32, sig: i32) -> std::io::Result<()> {
    let bad = || std::io::Error::from_raw_os_error(libc::EINVAL);
    let p = rustix::process::Pid::from_raw(pid)
        .filter(|_| pid > 0)
        .ok_or_else(bad)?;
    let sig = rustix::process::Signal::from_named_raw(sig).ok_or_else(bad)?;
    let fd = rustix::process::pidfd_open(p, rustix::process::PidfdFlags::empty())?;
    Ok(rustix::process::pidfd_send_signal(&fd, sig)?)
}

/// Like [`compile`], but when clang is missing: fails under CI (`$CI` set),
/// otherwise prints why the test is skipped and returns `None`.
#[track_caller]
pub fn compile_or_skip(src: &Path, extra: &[&str]) -> Option<PathBuf> {
    if !require(
        clang().is_some(),
        &format!("clang not found; cannot build {}", src.display()),
    ) {
        return None;
    }
    match compile(src, extra) {
        Ok(p) => Some(p),
        Err(e) => panic!("{e}"),
    }
}

/// True when missing prerequisites must fail the test instead of skipping it:
/// under CI (`$CI` set) or with `BPFOOM_REQUIRE=1`. CI installs everything the
/// tests need, so a skip there would only hide a broken set-up.
pub fn strict() -> bool {
    std::env::var_os("CI").is_some_and(|v| !v.is_empty() && v != "0" && v != "false")
        || std::env::var_os("BPFOOM_REQUIRE").is_some_and(|v| v == "1")
}

/// Checks a test prerequisite. Returns `true` when `ok`; otherwise prints
/// `SKIP: <what>` and returns `false` (the caller returns early), or panics
/// under [`strict`] so that a skip can never turn a CI run green.
///
/// ```no_run
/// if !bpfoom_testutil::require(bpfoom_testutil::is_root(), "needs root") {
///     return;
/// }
/// ```
#[track_caller]
pub fn require(ok: bool, what: &str) -> bool {
    if ok {
        return true;
    }
    if strict() {
        panic!("prerequisite missing under CI/BPFOOM_REQUIRE=1: {what}");
    }
    // Straight to the process's stderr, not through eprintln!: the test
    // harness captures eprintln! of a passing test, and a skip must show in
    // a plain `cargo test` run.
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "SKIP: {what}");
    false
}

/// True when running as root (real-kernel tests need it).
pub fn is_root() -> bool {
    // Reading /proc avoids an unsafe geteuid() call.
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(2).map(|e| e == "0"))
        })
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_repo_layout() {
        assert!(include_dir().join("bpf_oom.h").is_file());
        assert!(policy_sources().len() >= 3);
    }

    #[test]
    fn every_policy_compiles() {
        for p in policy_sources() {
            let Some(o) = compile_or_skip(&p, &[]) else {
                return;
            };
            let bytes = std::fs::read(&o).unwrap();
            assert_eq!(&bytes[..4], b"\x7fELF", "{}", o.display());
        }
    }

    #[test]
    fn compile_errors_are_reported() {
        if !require_clang() {
            return;
        }
        let e = compile_str("broken", "int f( {", &[]).unwrap_err();
        assert!(e.contains("clang failed"), "{e}");
    }
}
