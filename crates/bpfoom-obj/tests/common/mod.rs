//! Shared test helpers: compiling C fixtures with the policy compile line (via bpfoom-testutil).
#![allow(dead_code)]

use std::path::{Path, PathBuf};

/// Directory of this crate's C fixtures.
pub fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

/// The multiarch include directory, so fixtures may use `<linux/bpf.h>`-style headers too.
fn extra_flags() -> [String; 2] {
    [
        "-I".into(),
        format!("/usr/include/{}-linux-gnu", std::env::consts::ARCH),
    ]
}

/// Compiles a C file; `None` (after printing why) when clang is missing outside CI.
pub fn compile_file(src: &Path) -> Option<Vec<u8>> {
    let flags = extra_flags();
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let obj = bpfoom_testutil::compile_or_skip(src, &flags)?;
    Some(std::fs::read(obj).expect("read compiled object"))
}

/// Compiles a fixture from `tests/fixtures/NAME`.
pub fn compile_fixture(name: &str) -> Option<Vec<u8>> {
    compile_file(&fixtures().join(name))
}

/// Compiles C source text.
pub fn compile_source(name: &str, source: &str) -> Option<Vec<u8>> {
    if !bpfoom_testutil::require(
        bpfoom_testutil::clang().is_some(),
        &format!("clang not found; cannot build {name}"),
    ) {
        return None;
    }
    let flags = extra_flags();
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let obj = bpfoom_testutil::compile_str(name, source, &flags).unwrap_or_else(|e| panic!("{e}"));
    Some(std::fs::read(obj).expect("read compiled object"))
}
