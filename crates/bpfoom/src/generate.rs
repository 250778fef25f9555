//! `bpfoom generate`: man pages (clap_mangen) and shell completions
//! (clap_complete) from the same clap definitions the binary parses, so
//! they cannot drift from the real options. The Debian package build
//! (`dist/build-deb`) runs it.

use std::io::Write;
use std::path::{Path, PathBuf};

use clap::{Args, Subcommand};
use clap_complete::Shell;

use crate::CliError;

/// `bpfoom generate`.
#[derive(Args, Debug)]
pub struct GenerateArgs {
    #[command(subcommand)]
    what: What,
}

#[derive(Subcommand, Debug)]
enum What {
    /// Man pages: bpfoom.1 and one bpfoom-VERB.1 per verb.
    Man {
        /// Where to write them (created if missing).
        out_dir: PathBuf,
    },
    /// Completions for bash (`bpfoom`), zsh (`_bpfoom`) and fish
    /// (`bpfoom.fish`).
    Completions {
        /// Where to write them (created if missing).
        out_dir: PathBuf,
    },
}

fn io_err(dir: &Path) -> impl Fn(std::io::Error) -> CliError + '_ {
    move |source| CliError::File {
        path: dir.to_path_buf(),
        source,
    }
}

/// Writes what was asked for and lists the files.
pub fn run(a: &GenerateArgs, mut cmd: clap::Command, out: &mut dyn Write) -> Result<(), CliError> {
    match &a.what {
        What::Man { out_dir } => {
            std::fs::create_dir_all(out_dir).map_err(io_err(out_dir))?;
            clap_mangen::generate_to(cmd, out_dir).map_err(io_err(out_dir))?;
            let mut names: Vec<String> = std::fs::read_dir(out_dir)
                .map_err(io_err(out_dir))?
                .filter_map(|e| e.ok()?.file_name().into_string().ok())
                .filter(|n| n.ends_with(".1"))
                .collect();
            names.sort();
            for n in names {
                writeln!(out, "{}", out_dir.join(n).display())?;
            }
        }
        What::Completions { out_dir } => {
            std::fs::create_dir_all(out_dir).map_err(io_err(out_dir))?;
            for shell in [Shell::Bash, Shell::Zsh, Shell::Fish] {
                let p = clap_complete::generate_to(shell, &mut cmd, "bpfoom", out_dir)
                    .map_err(io_err(out_dir))?;
                writeln!(out, "{}", p.display())?;
            }
        }
    }
    Ok(())
}
