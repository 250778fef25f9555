//! Records the git commit the binary is built from (`--version`,
//! `bpfoom_build_info`). A build outside a git checkout (a source tarball,
//! a package build) gets `BPFOOM_GIT_COMMIT` from the environment, or
//! "unknown".

use std::process::Command;

fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).output().ok()?;
    if !out.status.success() {
        return None;
    }
    let s = String::from_utf8(out.stdout).ok()?.trim().to_string();
    (!s.is_empty()).then_some(s)
}

fn main() {
    println!("cargo:rerun-if-env-changed=BPFOOM_GIT_COMMIT");
    let commit = std::env::var("BPFOOM_GIT_COMMIT")
        .ok()
        .filter(|s| !s.is_empty())
        .or_else(|| {
            // Rebuild when HEAD moves (a commit, a checkout, a merge).
            if let Some(dir) = git(&["rev-parse", "--absolute-git-dir"]) {
                println!("cargo:rerun-if-changed={dir}/HEAD");
                println!("cargo:rerun-if-changed={dir}/logs/HEAD");
            }
            // No "-dirty" mark: edits do not re-run this script, so the
            // mark could be stale either way.
            git(&["rev-parse", "--short=12", "HEAD"])
        })
        .unwrap_or_else(|| "unknown".into());
    println!("cargo:rustc-env=BPFOOM_GIT_COMMIT={commit}");
}
