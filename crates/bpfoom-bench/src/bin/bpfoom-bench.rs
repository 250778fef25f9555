//! `bpfoom-bench`: the benchmark groups of BENCHMARKS.md, one subcommand
//! each. Every group prints a Markdown table (medians, p99, ratio to the
//! baseline measured in the same run).

use std::process::ExitCode;

use clap::{Parser, Subcommand};

use bpfoom_bench::policy_cost::{self, Sizes};

#[derive(Parser)]
#[command(name = "bpfoom-bench", about = "bpfoom benchmarks (see BENCHMARKS.md)")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Group 2: per-invocation cost of each example policy (engine + sim host).
    PolicyCost {
        /// Leaf (pod) cgroups.
        #[arg(long, default_value_t = 1000)]
        cgroups: usize,
        /// Processes per cgroup.
        #[arg(long, default_value_t = 10)]
        procs: usize,
        /// Invocations per policy.
        #[arg(long, default_value_t = 200)]
        iters: usize,
    },
    /// Group 2: verification time of each example policy.
    VerifyCost {
        /// Repetitions per policy.
        #[arg(long, default_value_t = 50)]
        iters: usize,
    },
}

fn us(x: f64) -> String {
    if x >= 1000.0 {
        format!("{:.2} ms", x / 1000.0)
    } else {
        format!("{x:.1} µs")
    }
}

fn run(cmd: Cmd) -> Result<(), String> {
    match cmd {
        Cmd::PolicyCost {
            cgroups,
            procs,
            iters,
        } => {
            let rows = policy_cost::invocation_costs(Sizes {
                pods: cgroups,
                procs,
                iters,
            })?;
            let base = rows[0].time_us.median;
            println!(
                "Policy cost per OOM invocation, {cgroups} leaf cgroups x {procs} processes, {iters} invocations each\n"
            );
            println!("| handler | median | p99 | max | insns (median) | median / baseline |");
            println!("|---|---|---|---|---|---|");
            for r in &rows {
                println!(
                    "| {} | {} | {} | {} | {} | {:.2} |",
                    r.name,
                    us(r.time_us.median),
                    us(r.time_us.p99),
                    us(r.time_us.max),
                    r.insns.map_or("-".into(), |n| n.to_string()),
                    r.time_us.median / base
                );
            }
        }
        Cmd::VerifyCost { iters } => {
            let rows = policy_cost::verification_costs(iters)?;
            println!("Verification time per policy, {iters} repetitions each\n");
            println!("| policy | load (ELF+BTF+CO-RE) median | verify median | verify p99 | verify / load |");
            println!("|---|---|---|---|---|");
            for (name, load, verify) in &rows {
                println!(
                    "| {name} | {} | {} | {} | {:.1} |",
                    us(load.median),
                    us(verify.median),
                    us(verify.p99),
                    verify.median / load.median
                );
            }
        }
    }
    Ok(())
}

fn main() -> ExitCode {
    match run(Cli::parse().cmd) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("bpfoom-bench: {e}");
            ExitCode::from(2)
        }
    }
}
