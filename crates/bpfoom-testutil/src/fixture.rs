//! Scratch directories and the cgroupfs/procfs fixture trees (the host
//! crate's `tests/fixtures`: a cgroup v1 and a v2 tree and a `/proc`) that
//! the host and daemon tests run on, each test on a private copy.

use std::path::{Path, PathBuf};

/// A fresh private directory `bpfoom-<name>-<pid>` under
/// `$CARGO_TARGET_TMPDIR` (or the system's temporary directory); whatever
/// an earlier run of this process id left there is removed first.
pub fn scratch(name: &str) -> PathBuf {
    let base = std::env::var_os("CARGO_TARGET_TMPDIR")
        .map(PathBuf::from)
        .unwrap_or_else(std::env::temp_dir);
    let d = base.join(format!("bpfoom-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap_or_else(|e| panic!("scratch dir {}: {e}", d.display()));
    d
}

/// The fixture trees (`crates/bpfoom-host/tests/fixtures`).
pub fn fixtures_dir() -> PathBuf {
    crate::repo_root().join("crates/bpfoom-host/tests/fixtures")
}

/// A private copy of the [`fixtures_dir`] trees in [`scratch`]`(name)`:
/// `v1/`, `v2/` and `proc/` below the returned directory, free to change.
pub fn fixture_copy(name: &str) -> PathBuf {
    let base = scratch(name);
    copy_dir(&fixtures_dir(), &base);
    base
}

/// Copies a fixture tree (directories and regular files) to `to`, creating it.
///
/// Panics on any I/O error: it is test set-up, and a half-copied fixture must
/// not pass for a test's input.
pub fn copy_dir(from: &Path, to: &Path) {
    let fail = |what: &str, p: &Path, e: std::io::Error| -> ! {
        panic!("copying fixture: {what} {}: {e}", p.display())
    };
    std::fs::create_dir_all(to).unwrap_or_else(|e| fail("create", to, e));
    let entries = std::fs::read_dir(from).unwrap_or_else(|e| fail("read", from, e));
    for e in entries.flatten() {
        let dst = to.join(e.file_name());
        let is_dir = e
            .file_type()
            .unwrap_or_else(|err| fail("stat", &e.path(), err))
            .is_dir();
        if is_dir {
            copy_dir(&e.path(), &dst);
        } else {
            std::fs::copy(e.path(), &dst).unwrap_or_else(|err| fail("copy", &e.path(), err));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fixture_copy_is_private_and_complete() {
        let a = fixture_copy("fixture-test-a");
        let b = fixture_copy("fixture-test-b");
        for d in ["v1", "v2", "proc"] {
            assert!(a.join(d).is_dir(), "{d} missing in {}", a.display());
        }
        let probe = a.join("v2/probe-file");
        std::fs::write(&probe, "x").unwrap();
        assert!(!b.join("v2/probe-file").exists());
        // A second scratch of the same name starts empty.
        let again = scratch("fixture-test-a");
        assert!(!again.join("v2").exists());
        let _ = std::fs::remove_dir_all(&again);
        let _ = std::fs::remove_dir_all(&b);
    }
}
