//! The `bpfoom` command line: build, inspect, verify, simulate and run BPF
//! OOM policies, and control the running daemon.
//!
//! Exit codes are a contract shared by every verb: 0 success, 1 the policy
//! was examined and found wanting (e.g. rejected by the verifier), 2 bad
//! input or usage (with a one-line reason on stderr).

use clap::{CommandFactory, Parser, Subcommand};
use std::ffi::OsString;
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

pub mod btf;
pub mod build;
pub mod generate;
pub mod inspect;
pub mod sim;
pub mod verify;

/// Everything a verb can fail with; each maps to an exit code.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// The input could not be used (unreadable, not a policy, compile error).
    #[error("{0}")]
    BadInput(String),
    /// The policy was examined and rejected (exit 1).
    #[error("{0}")]
    Rejected(String),
    /// Writing the output failed (e.g. a closed pipe).
    #[error("output: {0}")]
    Output(#[from] std::io::Error),
}

impl CliError {
    /// The process exit code for this error.
    pub fn exit_code(&self) -> u8 {
        match self {
            CliError::Rejected(_) => 1,
            CliError::BadInput(_) | CliError::Output(_) => 2,
        }
    }
}

#[derive(Parser, Debug)]
#[command(
    name = "bpfoom",
    version = bpfoom_daemon::VERSION,
    about = "BPF OOM policies for today's kernels"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Compile a policy with clang, using the bundled bpf_oom.h.
    Build(build::BuildArgs),
    /// Show a compiled policy: struct_ops instances, programs, maps, kfuncs, relocations.
    Inspect(inspect::InspectArgs),
    /// Check every struct_ops callback of a policy with the verifier (exit 1 when rejected).
    Verify(verify::VerifyArgs),
    /// Run a simulator scenario (TOML); JSON lines out; exit 1 when an expectation fails.
    Sim(sim::SimArgs),
    /// Write bpfoom's host BTF (for `bpftool btf dump file FILE format c > vmlinux.h`).
    Btf(btf::BtfArgs),
    /// The daemon (`run`) and its control verbs (`attach`, `detach`, `status`).
    #[command(flatten)]
    Daemon(bpfoom_daemon::DaemonCmd),
    /// Build and verify the bundled example policies, then simulate the
    /// upstream largest-leaf selftest tree with them.
    Demo {
        /// Directory for the compiled objects (default: a fresh temporary directory).
        #[arg(long)]
        out_dir: Option<PathBuf>,
    },
    /// Write man pages or shell completions (bash, zsh, fish).
    Generate(generate::GenerateArgs),
}

/// Runs the CLI with the given arguments and returns the exit code.
pub fn main_with_args<I, T>(args: I) -> ExitCode
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    let cli = match Cli::try_parse_from(args) {
        Ok(c) => c,
        Err(e) => {
            // clap prints help/version to stdout with exit 0, usage errors with 2.
            let code = if e.use_stderr() { 2 } else { 0 };
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    match run(cli.cmd, &mut out) {
        Ok(()) => ExitCode::SUCCESS,
        // A reader that went away (`bpfoom status | head`) is not an error.
        Err(CliError::Output(e)) if e.kind() == std::io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
        Err(e) => {
            let _ = out.flush();
            eprintln!("bpfoom: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}

fn run(cmd: Cmd, out: &mut dyn Write) -> Result<(), CliError> {
    match cmd {
        Cmd::Build(a) => build::run(&a, out),
        Cmd::Inspect(a) => inspect::run(&a, out),
        Cmd::Verify(a) => verify::run(&a, out),
        Cmd::Sim(a) => sim::run(&a, out),
        Cmd::Btf(a) => btf::run(&a, out),
        Cmd::Daemon(mut c) => {
            let built = build_sources(&mut c)?;
            let r = bpfoom_daemon::run_cmd(&c, out).map_err(|e| match e {
                bpfoom_daemon::DaemonError::Output(io) => CliError::Output(io),
                e if e.exit_code() == 1 => CliError::Rejected(e.to_string()),
                e => CliError::BadInput(e.to_string()),
            });
            if let Some(dir) = built {
                let _ = std::fs::remove_dir_all(dir);
            }
            r
        }
        Cmd::Demo { out_dir } => demo(out_dir, out),
        Cmd::Generate(a) => generate::run(&a, Cli::command(), out),
    }
}

/// `attach SRC.bpf.c` and `run --attach SRC.bpf.c=CG` build the source
/// first, like `sim` does (with the bundled header and the documented clang
/// line), and hand the daemon the object; returns the scratch directory to
/// remove once the daemon has read it. (A `.bpf.c` in the config file is
/// read by the daemon itself and must be compiled beforehand.)
fn build_sources(c: &mut bpfoom_daemon::DaemonCmd) -> Result<Option<PathBuf>, CliError> {
    let mut dir: Option<PathBuf> = None;
    let mut build = |src: &std::path::Path| -> Result<PathBuf, CliError> {
        let d = match &dir {
            Some(d) => d.clone(),
            None => dir.insert(build::scratch_dir("attach")?).clone(),
        };
        let stem = src
            .file_name()
            .map_or("policy.bpf.c".into(), |n| n.to_string_lossy());
        let obj = d.join(stem.replace(".bpf.c", ".bpf.o"));
        build::compile(src, &obj, None)?;
        Ok(obj)
    };
    match c {
        bpfoom_daemon::DaemonCmd::Attach(a) if a.policy.to_string_lossy().ends_with(".bpf.c") => {
            a.policy = build(&a.policy)?;
        }
        bpfoom_daemon::DaemonCmd::Run(r) => {
            for spec in &mut r.attach {
                // A malformed argument is left for the daemon to report.
                let Ok(a) = bpfoom_daemon::attach_arg::split(spec) else {
                    continue;
                };
                if a.policy.ends_with(".bpf.c") {
                    let obj = build(std::path::Path::new(a.policy))?;
                    let rest = &spec[a.policy.len()..];
                    *spec = format!("{}{rest}", obj.display());
                }
            }
        }
        _ => {}
    }
    Ok(dir)
}

macro_rules! examples {
    ($($name:literal),* $(,)?) => {
        &[$(($name, include_str!(concat!("../../../bpf/policies/", $name, ".bpf.c")))),*]
    };
}

/// The bundled examples: the same sources as `bpf/policies/`, compiled in.
pub const EXAMPLES: &[(&str, &str)] = examples![
    "largest_leaf",
    "raise_then_kill",
    "psi_early",
    "oomd_like",
    "largest_rss",
    "k8s_qos"
];

fn demo(out_dir: Option<PathBuf>, out: &mut dyn Write) -> Result<(), CliError> {
    let (dir, scratch) = match out_dir {
        Some(d) => (d, false),
        None => (build::scratch_dir("demo")?, true),
    };
    let result = demo_in(&dir, out);
    if scratch {
        let _ = std::fs::remove_dir_all(&dir);
    }
    result
}

fn demo_in(dir: &std::path::Path, out: &mut dyn Write) -> Result<(), CliError> {
    std::fs::create_dir_all(dir)
        .map_err(|e| CliError::BadInput(format!("{}: {e}", dir.display())))?;
    writeln!(
        out,
        "# building and verifying the example policies in {}",
        dir.display()
    )?;
    for (name, source) in EXAMPLES {
        let src = dir.join(format!("{name}.bpf.c"));
        std::fs::write(&src, source)
            .map_err(|e| CliError::BadInput(format!("{}: {e}", src.display())))?;
        let obj = dir.join(format!("{name}.bpf.o"));
        build::compile(&src, &obj, None)?;
        verify::run(
            &verify::VerifyArgs {
                object: obj,
                verbose: 0,
            },
            out,
        )?;
    }
    writeln!(
        out,
        "# simulating the upstream selftest tree with largest_leaf (JSON lines)"
    )?;
    // The scenario names `bpf/policies/NAME.bpf.o`; serve it from the demo dir.
    let objects = dir.to_path_buf();
    let loader = move |policy: &str, _base: &std::path::Path| -> Result<Vec<u8>, String> {
        let file = std::path::Path::new(policy)
            .file_name()
            .ok_or_else(|| format!("bad policy path {policy:?}"))?;
        let p = objects.join(file);
        std::fs::read(&p).map_err(|e| format!("{}: {e}", p.display()))
    };
    sim::run_text(
        bpfoom_sim::DEMO_SCENARIO,
        "demo:largest_leaf.toml",
        dir,
        &loader,
        out,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn demo_bundles_every_example_policy() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../bpf/policies");
        let mut on_disk: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .filter_map(|n| n.strip_suffix(".bpf.c").map(str::to_string))
            .collect();
        on_disk.sort();
        let mut bundled: Vec<String> = EXAMPLES.iter().map(|(n, _)| n.to_string()).collect();
        bundled.sort();
        assert_eq!(bundled, on_disk);
    }

    #[test]
    fn exit_codes() {
        assert_eq!(CliError::Rejected("x".into()).exit_code(), 1);
        assert_eq!(CliError::BadInput("x".into()).exit_code(), 2);
    }
}
