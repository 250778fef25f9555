//! `bpfoom build`: the documented clang line, with the ABI header bundled in
//! the binary so an installed bpfoom needs no source tree.

use crate::CliError;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};

/// The policy ABI header, as shipped in `bpf/include/bpf_oom.h`.
pub const BPF_OOM_H: &str = include_str!("../../../bpf/include/bpf_oom.h");

/// Arguments of `bpfoom build`.
#[derive(clap::Args, Debug)]
pub struct BuildArgs {
    /// Policy source, e.g. my_policy.bpf.c.
    pub source: PathBuf,
    /// Output object (default: the source name with `.o` instead of `.c`).
    #[arg(short, long)]
    pub output: Option<PathBuf>,
    /// clang binary to use (default: $CLANG, then `clang`).
    #[arg(long)]
    pub clang: Option<PathBuf>,
}

/// Runs `bpfoom build`.
pub fn run(a: &BuildArgs, out: &mut dyn Write) -> Result<(), CliError> {
    let output = a
        .output
        .clone()
        .unwrap_or_else(|| default_output(&a.source));
    compile(&a.source, &output, a.clang.as_deref())?;
    writeln!(out, "{}", output.display())?;
    Ok(())
}

fn default_output(src: &Path) -> PathBuf {
    let s = src.to_string_lossy();
    match s.strip_suffix(".c") {
        Some(stem) => PathBuf::from(format!("{stem}.o")),
        None => PathBuf::from(format!("{s}.o")),
    }
}

/// A fresh private directory under the system temp dir.
pub fn scratch_dir(what: &str) -> Result<PathBuf, CliError> {
    // pid + counter: unique across processes and across calls in one process.
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let d = std::env::temp_dir().join(format!("bpfoom-{what}-{}-{n}", std::process::id()));
    std::fs::create_dir_all(&d).map_err(CliError::file(&d))?;
    Ok(d)
}

/// Compiles `src` into `out` with
/// `clang -O2 -g -target bpf -mcpu=v3 -I <bundled include> -c`.
pub fn compile(src: &Path, out: &Path, clang: Option<&Path>) -> Result<(), CliError> {
    let clang = clang
        .map(Path::to_path_buf)
        .or_else(|| std::env::var_os("CLANG").map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from("clang"));
    if !src.is_file() {
        return Err(CliError::NoSource(src.to_path_buf()));
    }
    let inc = scratch_dir("include")?;
    std::fs::write(inc.join("bpf_oom.h"), BPF_OOM_H).map_err(CliError::file(&inc))?;
    let result = Command::new(&clang)
        .args(["-O2", "-g", "-target", "bpf", "-mcpu=v3", "-I"])
        .arg(&inc)
        .arg("-c")
        .arg(src)
        .arg("-o")
        .arg(out)
        .output();
    let _ = std::fs::remove_dir_all(&inc);
    let o = result.map_err(|source| CliError::NoClang { clang, source })?;
    if !o.status.success() {
        let err = String::from_utf8_lossy(&o.stderr);
        return Err(CliError::Clang {
            src: src.to_path_buf(),
            stderr: err.trim_end().into(),
        });
    }
    Ok(())
}
