//! Shared test helpers: compiling C fixtures with clang.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Repository root (two levels above this crate).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Directory of this crate's C fixtures.
pub fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

fn clang() -> Option<String> {
    let cand = std::env::var("BPFOOM_CLANG").unwrap_or_else(|_| "clang".into());
    let ok = Command::new(&cand).arg("--version").output().is_ok_and(|o| o.status.success());
    if ok {
        Some(cand)
    } else if std::env::var_os("CI").is_some() {
        panic!("clang not found (`{cand}`) and CI is set: install clang");
    } else {
        eprintln!("SKIP: clang not found (`{cand}`); install clang to run this test");
        None
    }
}

/// Compiles a C file with the policy compile line; `None` (after printing why) when clang is
/// missing outside CI. Panics with clang's diagnostics when compilation fails.
pub fn compile_file(src: &Path) -> Option<Vec<u8>> {
    static N: AtomicUsize = AtomicUsize::new(0);
    let clang = clang()?;
    let out_dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("bpfoom-obj-fixtures");
    std::fs::create_dir_all(&out_dir).unwrap();
    let stem = src.file_stem().unwrap().to_string_lossy().into_owned();
    let out = out_dir.join(format!(
        "{stem}-{}-{}.o",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    let multiarch = format!("/usr/include/{}-linux-gnu", std::env::consts::ARCH);
    let o = Command::new(clang)
        .args(["-O2", "-g", "-target", "bpf", "-mcpu=v3", "-I"])
        .arg(repo_root().join("bpf/include"))
        .arg("-I")
        .arg(&multiarch)
        .arg("-c")
        .arg(src)
        .arg("-o")
        .arg(&out)
        .output()
        .expect("run clang");
    assert!(
        o.status.success(),
        "clang failed on {}:\n{}",
        src.display(),
        String::from_utf8_lossy(&o.stderr)
    );
    let bytes = std::fs::read(&out).unwrap();
    let _ = std::fs::remove_file(&out);
    Some(bytes)
}

/// Compiles a fixture from `tests/fixtures/NAME`.
pub fn compile_fixture(name: &str) -> Option<Vec<u8>> {
    compile_file(&fixtures().join(name))
}

/// Compiles C source text (written to a temporary file first).
pub fn compile_source(name: &str, source: &str) -> Option<Vec<u8>> {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("bpfoom-obj-src");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(format!("{name}-{}.bpf.c", std::process::id()));
    std::fs::write(&path, source).unwrap();
    let r = compile_file(&path);
    let _ = std::fs::remove_file(&path);
    r
}
