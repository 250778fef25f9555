//! `bpfoom-vmguest`: the one binary the VM initramfs carries besides
//! busybox. `daemon ...` is the bpfoom daemon itself (the same code as
//! `bpfoom run`), `alloc` the allocating test process, `suite` the test
//! driver that `/init` runs.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "bpfoom-vmguest",
    about = "bpfoom VM guest: daemon, allocator, test suites"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// The bpfoom daemon verbs (run, attach, detach, status).
    Daemon {
        #[command(subcommand)]
        cmd: bpfoom_daemon::DaemonCmd,
    },
    /// Join CGROUP, allocate MB MiB, print "ready", hold for HOLD_S seconds.
    Alloc {
        cgroup: PathBuf,
        mb: usize,
        adj: i32,
        hold_s: u64,
        step_ms: u64,
    },
    /// Run the side-by-side comparison (every tool, every workload) REPS times.
    Compare {
        #[arg(default_value_t = 1)]
        reps: usize,
        /// Only the tools whose name contains this.
        #[arg(default_value = "")]
        only: String,
    },
    /// Idle cost and OOM reaction with CGROUPS watched cgroup v2 leaves.
    IdleV2 {
        cgroups: usize,
        secs: u64,
        reps: usize,
    },
    /// Run the cgroup v2 suite (tests whose name contains FILTER).
    Suite {
        #[arg(default_value = "")]
        filter: String,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.cmd {
        Cmd::Daemon { cmd } => match bpfoom_daemon::run_cmd(&cmd, &mut std::io::stdout()) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("bpfoom: {e}");
                ExitCode::from(e.exit_code())
            }
        },
        Cmd::Alloc {
            cgroup,
            mb,
            adj,
            hold_s,
            step_ms,
        } => match bpfoom_vmtest::guest::alloc_main(&cgroup, mb, adj, hold_s, step_ms) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("alloc: {e}");
                ExitCode::from(2)
            }
        },
        Cmd::Compare { reps, only } => {
            bpfoom_vmtest::compare::guest_main(reps, &only);
            ExitCode::SUCCESS
        }
        Cmd::IdleV2 {
            cgroups,
            secs,
            reps,
        } => {
            bpfoom_vmtest::idle_v2::guest_main(cgroups, secs, reps);
            ExitCode::SUCCESS
        }
        Cmd::Suite { filter } => {
            let failed = bpfoom_vmtest::guest::run_suite(bpfoom_vmtest::guest::V2_SUITE, &filter);
            println!("BPFOOM-VM-DONE failed={failed}");
            ExitCode::from(u8::from(failed > 0))
        }
    }
}
