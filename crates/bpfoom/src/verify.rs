//! `bpfoom verify`: run the verifier over every struct_ops callback of a policy.

use crate::CliError;
use bpfoom_verifier::{verify_object, Options, VerifyError};
use std::io::Write;
use std::path::PathBuf;

/// Arguments of `bpfoom verify`.
#[derive(clap::Args, Debug)]
pub struct VerifyArgs {
    /// Compiled policy object.
    pub object: PathBuf,
    /// Print the full verifier log (`-vv` adds the register state after each instruction).
    #[arg(short, long, action = clap::ArgAction::Count)]
    pub verbose: u8,
}

/// Runs `bpfoom verify`: 0 when every program passes, 1 when one is rejected,
/// 2 when the object cannot be loaded.
pub fn run(a: &VerifyArgs, out: &mut dyn Write) -> Result<(), CliError> {
    let obj = crate::inspect::load(&a.object)?;
    let opts = Options {
        log_level: u32::from(a.verbose.min(2)),
        ..Options::default()
    };
    match verify_object(&obj, &opts) {
        Ok(reports) => {
            for r in &reports {
                if !r.report.log.is_empty() {
                    writeln!(out, "{}", r.report.log.trim_end())?;
                }
                writeln!(
                    out,
                    "{} ({}.{}): verified: {} insns processed, {} states, peak {}, {:.3} ms",
                    r.program,
                    r.ops,
                    r.member,
                    r.report.insns_processed,
                    r.report.states,
                    r.report.peak_states,
                    r.report.time.as_secs_f64() * 1e3
                )?;
                // Verified, but probably not what the program meant.
                for w in &r.report.warnings {
                    writeln!(out, "{}: warning: {w}", r.program)?;
                }
            }
            Ok(())
        }
        Err(VerifyError::Rejected(rej)) => {
            writeln!(out, "{rej}")?;
            Err(CliError::Rejected {
                path: a.object.clone(),
                rejection: rej,
            })
        }
        Err(source) => Err(CliError::Verify {
            path: a.object.clone(),
            source,
        }),
    }
}
