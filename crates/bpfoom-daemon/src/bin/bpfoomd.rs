//! `bpfoomd`: the daemon verbs as a standalone binary (the `bpfoom` CLI
//! offers the same verbs).

use std::process::ExitCode;

use clap::Parser;

#[derive(Parser)]
#[command(
    name = "bpfoomd",
    version = bpfoom_daemon::VERSION,
    about = "The bpfoom daemon and its control client"
)]
struct Cli {
    #[command(subcommand)]
    cmd: bpfoom_daemon::DaemonCmd,
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let code = if e.use_stderr() { 2 } else { 0 };
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    let mut out = std::io::stdout();
    match bpfoom_daemon::run_cmd(&cli.cmd, &mut out) {
        Ok(()) => ExitCode::SUCCESS,
        // A reader that went away (`bpfoomd status | head`) is not an error.
        Err(bpfoom_daemon::DaemonError::Output(e))
            if e.kind() == std::io::ErrorKind::BrokenPipe =>
        {
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("bpfoom: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}
