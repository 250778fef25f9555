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
    /// A file or directory could not be read, written or created.
    #[error("{}: {source}", path.display())]
    File {
        /// The file or directory.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The source to compile does not exist.
    #[error("{}: no such file", .0.display())]
    NoSource(PathBuf),
    /// clang could not be started.
    #[error(
        "cannot run {}: {source} (install clang, e.g. `apt-get install clang libbpf-dev`)",
        clang.display()
    )]
    NoClang {
        /// The clang binary tried.
        clang: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// clang ran and failed; its diagnostics follow.
    #[error("clang failed on {}:\n{stderr}", src.display())]
    Clang {
        /// The source.
        src: PathBuf,
        /// clang's stderr, trimmed.
        stderr: String,
    },
    /// The file is not a BPF object bpfoom can load.
    #[error("{}: {source}", path.display())]
    Object {
        /// The object file.
        path: PathBuf,
        /// The loader's error.
        #[source]
        source: Box<bpfoom_obj::ObjError>,
    },
    /// The verifier could not check the object (not a rejection).
    #[error("{}: {source}", path.display())]
    Verify {
        /// The object file.
        path: PathBuf,
        /// The verifier's error.
        #[source]
        source: bpfoom_verifier::VerifyError,
    },
    /// The verifier rejected a program (exit 1).
    #[error(
        "{}: program {} rejected at insn {}: {}",
        path.display(),
        rejection.program,
        rejection.insn,
        rejection.reason
    )]
    Rejected {
        /// The object file.
        path: PathBuf,
        /// Where and why (its full report was printed already).
        rejection: Box<bpfoom_verifier::Rejection>,
    },
    /// A scenario ran, and some of its expectations failed (exit 1).
    #[error(
        "{origin}: {} of {expects} expectations failed: {}",
        failures.len(),
        failures.join("; ")
    )]
    Expectations {
        /// The scenario file (or name).
        origin: String,
        /// How many `[[expect]]` tables it has.
        expects: usize,
        /// One message per failed expectation.
        failures: Vec<String>,
    },
    /// A scenario could not be run (file, line and reason).
    #[error(transparent)]
    Scenario(bpfoom_sim::SimError),
    /// A scenario names its policy by a path without a file name.
    #[error("bad policy path {policy:?}")]
    PolicyPath {
        /// The path as written.
        policy: String,
    },
    /// A scenario's policy object is missing and has no source beside it.
    #[error(transparent)]
    PolicyFile(#[from] bpfoom_sim::PolicyFileError),
    /// A daemon verb failed (exit 1 for a rejection, 2 otherwise).
    #[error(transparent)]
    Daemon(bpfoom_daemon::DaemonError),
    /// Writing the output failed (e.g. a closed pipe).
    #[error("output: {0}")]
    Output(#[from] std::io::Error),
}

impl CliError {
    /// The process exit code for this error.
    pub fn exit_code(&self) -> u8 {
        match self {
            CliError::Rejected { .. } | CliError::Expectations { .. } => 1,
            CliError::Daemon(e) => e.exit_code(),
            _ => 2,
        }
    }

    /// A [`CliError::File`] for `path`.
    pub(crate) fn file(path: &std::path::Path) -> impl FnOnce(std::io::Error) -> CliError + '_ {
        move |source| CliError::File {
            path: path.to_path_buf(),
            source,
        }
    }
}

/// Its own output error stays [`CliError::Output`], so a closed pipe is
/// still recognised.
impl From<bpfoom_daemon::DaemonError> for CliError {
    fn from(e: bpfoom_daemon::DaemonError) -> Self {
        match e {
            bpfoom_daemon::DaemonError::Output(io) => CliError::Output(io),
            e => CliError::Daemon(e),
        }
    }
}

/// As for daemon errors, an output error stays [`CliError::Output`].
impl From<bpfoom_sim::SimError> for CliError {
    fn from(e: bpfoom_sim::SimError) -> Self {
        match e {
            bpfoom_sim::SimError::Output(io) => CliError::Output(io),
            e => CliError::Scenario(e),
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
            let r = bpfoom_daemon::run_cmd(&c, out).map_err(CliError::from);
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
    std::fs::create_dir_all(dir).map_err(CliError::file(dir))?;
    writeln!(
        out,
        "# building and verifying the example policies in {}",
        dir.display()
    )?;
    for (name, source) in EXAMPLES {
        let src = dir.join(format!("{name}.bpf.c"));
        std::fs::write(&src, source).map_err(CliError::file(&src))?;
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
    let loader = move |policy: &str, _base: &std::path::Path| -> Result<Vec<u8>, CliError> {
        let file =
            std::path::Path::new(policy)
                .file_name()
                .ok_or_else(|| CliError::PolicyPath {
                    policy: policy.into(),
                })?;
        let p = objects.join(file);
        std::fs::read(&p).map_err(CliError::file(&p))
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
        let expectations = CliError::Expectations {
            origin: "t.toml".into(),
            expects: 2,
            failures: vec![
                "expect #1 (line 3): a".into(),
                "expect #2 (line 5): b".into(),
            ],
        };
        assert_eq!(expectations.exit_code(), 1);
        assert_eq!(
            expectations.to_string(),
            "t.toml: 2 of 2 expectations failed: expect #1 (line 3): a; expect #2 (line 5): b"
        );
        assert_eq!(CliError::NoSource("x.bpf.c".into()).exit_code(), 2);
        let refused = bpfoom_daemon::Rejection::ReloadEntry;
        assert_eq!(
            CliError::from(bpfoom_daemon::DaemonError::from(refused)).exit_code(),
            1
        );
        let bad = bpfoom_daemon::InputError::NoConfig;
        assert_eq!(
            CliError::from(bpfoom_daemon::DaemonError::from(bad)).exit_code(),
            2
        );
        let pipe = std::io::Error::from(std::io::ErrorKind::BrokenPipe);
        assert!(matches!(
            CliError::from(bpfoom_daemon::DaemonError::Output(pipe)),
            CliError::Output(_)
        ));
    }
}
