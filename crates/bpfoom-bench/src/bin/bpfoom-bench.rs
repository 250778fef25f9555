//! `bpfoom-bench`: the benchmark groups of BENCHMARKS.md, one subcommand
//! each. Every group prints a Markdown table (medians, p99, ratio to the
//! baseline measured in the same run).

use std::process::ExitCode;

use clap::{Parser, Subcommand};

use std::path::PathBuf;

use bpfoom_bench::policy_cost::{self, Sizes};
use bpfoom_bench::reaction::{self, Mode};
use bpfoom_bench::stats::Summary;

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
    /// Group 1 (root, cgroup v1): OOM reaction, bpfoom largest_leaf vs the kernel.
    Reaction {
        /// Background cgroup counts, comma separated.
        #[arg(long, default_value = "10,100,1000", value_delimiter = ',')]
        cgroups: Vec<usize>,
        /// Processes per background cgroup.
        #[arg(long, default_value_t = 10)]
        procs: usize,
        /// OOMs per configuration.
        #[arg(long, default_value_t = 20)]
        reps: usize,
    },
    /// Group 8 (root, cgroup v1): back-to-back OOM episodes in one memcg,
    /// bpfoom with the badness policy vs the kernel OOM killer alone.
    BackToBack {
        /// Episodes per handler.
        #[arg(long, default_value_t = 20)]
        reps: usize,
        /// The daemon's `--mlock` mode (onfault, all, off; default: its own).
        #[arg(long)]
        mlock: Option<String>,
    },
    /// Group 9 (root, cgroup v1): N memcgs OOM'ing within 100 ms, bpfoom
    /// with the badness policy vs the kernel OOM killer alone.
    Concurrent {
        /// Memory cgroups.
        #[arg(long, default_value_t = 50)]
        memcgs: usize,
        /// Runs per handler.
        #[arg(long, default_value_t = 3)]
        reps: usize,
        /// Also attach the slow test policy (slow_kill: a third of a second
        /// of kfunc calls per run, stopped by the 250 ms handler time limit)
        /// at the first memcg, ahead of badness in its chain.
        #[arg(long)]
        slow: bool,
    },
    /// Group 3 (root, cgroup v1): idle CPU and RSS of the daemon, earlyoom and
    /// nohang over the same interval ($BPFOOM_BENCH_IDLE_SECS, default 60).
    Idle {
        /// Watched cgroups.
        #[arg(long, default_value_t = 1000)]
        cgroups: usize,
    },
    /// Group 5: the side-by-side comparison in the VM (bpfoom, oomd, earlyoom,
    /// nohang, bare kernel); writes the table and an SVG chart.
    Compare {
        /// Repetitions of the whole set.
        #[arg(long, default_value_t = 3)]
        reps: usize,
        /// Where to write the chart.
        #[arg(long, default_value = "bench/compare.svg")]
        svg: PathBuf,
        /// Where to write the raw results (JSON lines).
        #[arg(long, default_value = "bench/compare.jsonl")]
        raw: PathBuf,
        /// Only the tools whose name contains this (lowercase, `_` for space).
        #[arg(long, default_value = "")]
        only: String,
    },
    /// Group 3 on cgroup v2, in the VM: idle cost with CGROUPS watched
    /// leaves beside earlyoom, then OOMs among them against the kernel alone.
    IdleV2 {
        /// Watched leaf cgroups.
        #[arg(long, default_value_t = 1000)]
        cgroups: usize,
        /// Seconds of idle measured.
        #[arg(long, default_value_t = 30)]
        secs: u64,
        /// OOMs per handler.
        #[arg(long, default_value_t = 5)]
        reps: usize,
        /// Guest memory, MiB.
        #[arg(long, default_value_t = 1024)]
        mem_mb: u32,
    },
    /// Issue 13 (root, cgroup v1): the soak. OOMs every INTERVAL_MS across
    /// CGROUPS cgroups for MINUTES, attaches and detaches mixed in; writes
    /// soak.csv, soak.svg, records.jsonl and summary.md to OUT; exit 1 when
    /// an OOM stayed unresolved or RSS/descriptors grew.
    Soak {
        /// How long OOMs are started for.
        #[arg(long, default_value_t = 10.0)]
        minutes: f64,
        /// Output directory.
        #[arg(long, default_value = "bench/soak")]
        out: PathBuf,
        /// Leaf cgroups.
        #[arg(long, default_value_t = 20)]
        cgroups: usize,
        /// Milliseconds between two OOMs.
        #[arg(long, default_value_t = 200)]
        interval_ms: u64,
        /// Seconds between two samples of the daemon.
        #[arg(long, default_value_t = 10)]
        sample_s: u64,
        /// Milliseconds between two attach/detach operations.
        #[arg(long, default_value_t = 2000)]
        churn_ms: u64,
    },
    /// Helper: the bpfoom daemon verbs (the same code as `bpfoom run`).
    Daemon {
        #[command(subcommand)]
        cmd: bpfoom_daemon::DaemonCmd,
    },
    /// Helper: join CGROUP, allocate MB MiB, hold HOLD_S seconds.
    Alloc {
        cgroup: PathBuf,
        mb: usize,
        adj: i32,
        hold_s: u64,
        step_ms: u64,
    },
    /// Helper: touch fresh pages every millisecond in CGROUP, report slow rounds.
    Ticker { cgroup: PathBuf },
    /// Helper: N sleeping processes in CGROUP.
    Sleepers { cgroup: PathBuf, n: usize },
}

fn ms(s: Option<Summary>) -> (String, String) {
    s.map_or(("-".into(), "-".into()), |s| {
        (format!("{:.1} ms", s.median), format!("{:.1} ms", s.p99))
    })
}

fn badness_policy() -> Result<PathBuf, String> {
    let src = bpfoom_testutil::repo_root().join("bpf/policies/tests/badness.bpf.c");
    bpfoom_testutil::compile(&src, &[])
}

fn med(xs: &[f64]) -> f64 {
    bpfoom_bench::stats::median(xs).unwrap_or(f64::NAN)
}

fn max(xs: &[f64]) -> f64 {
    xs.iter().copied().fold(f64::NAN, f64::max)
}

fn episodes_table(reps: usize, mlock: Option<&str>) -> Result<(), String> {
    use bpfoom_bench::episodes::back_to_back;
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let policy = badness_policy()?;
    let extra: Vec<String> = mlock.map(|m| format!("--mlock={m}")).into_iter().collect();
    println!("Back-to-back OOM episodes on cgroup v1 (32 MiB memcg, 20 MiB resident, 40 MiB allocator), {reps} per handler, kernel and bpfoom alternating\n");
    let (mut k, mut b) = (Vec::new(), Vec::new());
    let mut daemon = Vec::new();
    // Each round starts a new daemon: its first kill is the first OOM
    // after start-up (what locking on fault could slow).
    let mut first = Vec::new();
    // Alternate in rounds of 5 so that machine noise hits both alike.
    for _ in 0..reps.div_ceil(5) {
        k.extend(back_to_back(&exe, &policy, Mode::Kernel, 5, &[])?.to_death_ms);
        let r = back_to_back(&exe, &policy, Mode::Bpfoom, 5, &extra)?;
        b.extend(r.to_death_ms);
        first.extend(r.daemon_ms.first().copied());
        daemon.extend(r.daemon_ms);
    }
    println!("| handler | episodes | start to first death (median / p99) | daemon notify->kill (median) | episode median / kernel |");
    println!("|---|---|---|---|---|");
    let base = med(&k);
    for (name, xs, d) in [
        ("kernel OOM killer", &k, None),
        ("bpfoom badness", &b, Some(&daemon)),
    ] {
        let s = Summary::of(xs);
        let (m, p) = ms(s);
        let dl = d.map_or("-".into(), |d| format!("{:.1} ms", med(d)));
        println!(
            "| {name} | {} | {m} / {p} | {dl} | {:.2}x |",
            xs.len(),
            med(xs) / base
        );
    }
    println!(
        "\nFirst kill after each daemon start (daemon notify->kill, median of {} rounds, mlock {}): {:.1} ms",
        first.len(),
        mlock.unwrap_or("default"),
        med(&first)
    );
    Ok(())
}

fn concurrent_table(memcgs: usize, reps: usize, slow: bool) -> Result<(), String> {
    use bpfoom_bench::episodes::concurrent;
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let policy = badness_policy()?;
    let slow = if slow {
        let src = bpfoom_testutil::repo_root().join("bpf/policies/tests/slow_kill.bpf.c");
        Some(bpfoom_testutil::compile(&src, &[])?)
    } else {
        None
    };
    if slow.is_some() {
        println!("(slow_kill attached at m0 ahead of badness: every m0 OOM runs it to its time limit first)\n");
    }
    println!("{memcgs} memcgs OOM'ing within 100 ms on cgroup v1 (16 MiB each, a 32 MiB allocator each), {reps} runs per handler\n");
    println!("| run | handler | resolved | kills by policy | start to death (median / max) | daemon notify->kill (median / max) |");
    println!("|---|---|---|---|---|---|");
    for run in 1..=reps {
        for mode in [Mode::Kernel, Mode::Bpfoom] {
            let r = concurrent(&exe, &policy, mode, memcgs, slow.as_deref())?;
            let (name, kills, dl) = match mode {
                Mode::Kernel => ("kernel OOM killer", "-".to_string(), "-".to_string()),
                Mode::Bpfoom => (
                    "bpfoom badness",
                    r.daemon_ms.len().to_string(),
                    format!("{:.1} / {:.1} ms", med(&r.daemon_ms), max(&r.daemon_ms)),
                ),
            };
            println!(
                "| {run} | {name} | {}/{memcgs} | {kills} | {:.1} / {:.1} ms | {dl} |",
                r.to_death_ms.len(),
                med(&r.to_death_ms),
                max(&r.to_death_ms)
            );
        }
    }
    Ok(())
}

fn reaction_table(cgroups: &[usize], procs: usize, reps: usize) -> Result<(), String> {
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let policy = policy_cost::compile("largest_leaf")?;
    println!(
        "memcg OOM reaction on cgroup v1, {reps} OOMs per row, background cgroups x {procs} processes\n"
    );
    println!("| bg cgroups | handler | to victim exit (median / p99) | to uncharged (median / p99) | paused-task stall (median / p99) | daemon notify->kill (median) | exit median / kernel |");
    println!("|---|---|---|---|---|---|---|");
    for &n in cgroups {
        let k = reaction::run_group(&exe, &policy, Mode::Kernel, n, procs, reps)?;
        let b = reaction::run_group(&exe, &policy, Mode::Bpfoom, n, procs, reps)?;
        let base = k
            .summary(|r| Some(r.exit_ms))
            .map_or(f64::NAN, |s| s.median);
        for g in [&k, &b] {
            let exit = g.summary(|r| Some(r.exit_ms));
            let (e50, e99) = ms(exit);
            let (u50, u99) = ms(g.summary(|r| Some(r.uncharged_ms)));
            let (s50, s99) = ms(g.summary(|r| Some(r.stall_ms)));
            let (d50, _) = ms(g.summary(|r| r.daemon_latency_ms));
            println!(
                "| {n} | {} | {e50} / {e99} | {u50} / {u99} | {s50} / {s99} | {d50} | {:.2} |",
                match g.mode {
                    Mode::Kernel => "kernel OOM killer",
                    Mode::Bpfoom => "bpfoom largest_leaf",
                },
                exit.map_or(f64::NAN, |s| s.median) / base
            );
        }
    }
    Ok(())
}

fn us(x: f64) -> String {
    if x >= 1000.0 {
        format!("{:.2} ms", x / 1000.0)
    } else {
        format!("{x:.1} µs")
    }
}

fn compare(
    reps: usize,
    svg: &std::path::Path,
    raw: &std::path::Path,
    only: &str,
) -> Result<(), String> {
    use bpfoom_bench::compare;
    let (results, elapsed) = compare::boot(
        "compare",
        compare::COMPARE_COMMAND,
        format!("bpfoom.reps={reps} bpfoom.only={only}"),
        1024,
        std::time::Duration::from_secs(600 + 300 * reps as u64),
        "cmp",
    )?;
    if let Some(d) = raw.parent() {
        let _ = std::fs::create_dir_all(d);
    }
    let lines: Vec<String> = results.iter().map(|r| r.to_string()).collect();
    std::fs::write(raw, lines.join("\n") + "\n").map_err(|e| e.to_string())?;
    compare::chart(&results, svg)?;
    println!(
        "Side by side in the VM ({} MiB, TCG, {:.0} s), {reps} repetition(s)\n",
        1024,
        elapsed.as_secs_f64()
    );
    print!("{}", compare::table(&results));
    Ok(())
}

fn soak(
    minutes: f64,
    out: PathBuf,
    cgroups: usize,
    interval_ms: u64,
    sample_s: u64,
    churn_ms: u64,
) -> Result<(), String> {
    use bpfoom_bench::soak;
    if !(minutes > 0.0 && cgroups > 0 && interval_ms > 0 && sample_s > 0 && churn_ms > 0) {
        return Err("soak: --minutes, --cgroups and the intervals must be positive".into());
    }
    let cfg = soak::SoakConfig {
        duration: std::time::Duration::from_secs_f64(minutes * 60.0),
        cgroups,
        interval: std::time::Duration::from_millis(interval_ms),
        sample: std::time::Duration::from_secs(sample_s),
        churn: std::time::Duration::from_millis(churn_ms),
        exe: std::env::current_exe().map_err(|e| e.to_string())?,
        policy: policy_cost::compile("largest_leaf")?,
        churn_policy: policy_cost::compile("tests/always_fail")?,
        out,
    };
    let rep = soak::run(&cfg).map_err(|e| e.to_string())?;
    print!("{}", soak::summary(&cfg, &rep));
    let problems = rep.problems();
    if problems.is_empty() {
        Ok(())
    } else {
        eprintln!("bpfoom-bench: soak not clean: {}", problems.join("; "));
        std::process::exit(1)
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
            let base = rows[0].time_us.as_ref().map_or(f64::NAN, |t| t.median);
            println!(
                "Policy cost per OOM invocation, {cgroups} leaf cgroups x {procs} processes, {iters} invocations each\n"
            );
            println!("| handler | median | p99 | max | insns (median) | median / baseline |");
            println!("|---|---|---|---|---|---|");
            for r in &rows {
                match &r.time_us {
                    Ok(t) => println!(
                        "| {} | {} | {} | {} | {} | {:.2} |",
                        r.name,
                        us(t.median),
                        us(t.p99),
                        us(t.max),
                        r.insns.map_or("-".into(), |n| n.to_string()),
                        t.median / base
                    ),
                    Err(e) => println!(
                        "| {} | not run: {} | | | | |",
                        r.name,
                        e.lines().next().unwrap_or("")
                    ),
                }
            }
        }
        Cmd::VerifyCost { iters } => {
            let rows = policy_cost::verification_costs(iters)?;
            println!("Verification time per policy, {iters} repetitions each\n");
            println!("| policy | load (ELF+BTF+CO-RE) median | verify median | verify p99 | verify / load |");
            println!("|---|---|---|---|---|");
            for (name, load, verify) in &rows {
                match verify {
                    Ok(v) => println!(
                        "| {name} | {} | {} | {} | {:.1} |",
                        us(load.median),
                        us(v.median),
                        us(v.p99),
                        v.median / load.median
                    ),
                    Err(e) => println!("| {name} | {} | {e} | | |", us(load.median)),
                }
            }
        }
        Cmd::Reaction {
            cgroups,
            procs,
            reps,
        } => reaction_table(&cgroups, procs, reps)?,
        Cmd::BackToBack { reps, mlock } => episodes_table(reps, mlock.as_deref())?,
        Cmd::Concurrent { memcgs, reps, slow } => concurrent_table(memcgs, reps, slow)?,
        Cmd::Idle { cgroups } => {
            let secs = std::env::var("BPFOOM_BENCH_IDLE_SECS")
                .ok()
                .and_then(|s| s.parse().ok())
                .unwrap_or(60);
            let exe = std::env::current_exe().map_err(|e| e.to_string())?;
            let policy = policy_cost::compile("largest_leaf")?;
            let rows = bpfoom_bench::idle::run(&exe, &policy, cgroups, secs)?;
            let base = rows
                .iter()
                .find(|r| r.name.starts_with("earlyoom"))
                .map(|r| (r.cpu_ms, r.max_rss_kb));
            println!("Idle cost over the same {secs} s, no OOM\n");
            println!("| tool | CPU time | CPU % of one core | max RSS | CPU / earlyoom | RSS / earlyoom |");
            println!("|---|---|---|---|---|---|");
            for r in &rows {
                let (rc, rr) = base.map_or(("-".into(), "-".into()), |(c, m)| {
                    (
                        format!("{:.2}", r.cpu_ms / c.max(1e-9)),
                        format!("{:.2}", r.max_rss_kb as f64 / m.max(1) as f64),
                    )
                });
                println!(
                    "| {} | {:.1} ms | {:.3} % | {:.1} MiB | {rc} | {rr} |",
                    r.name,
                    r.cpu_ms,
                    r.cpu_ms / (secs as f64 * 10.0),
                    r.max_rss_kb as f64 / 1024.0
                );
            }
        }
        Cmd::Compare {
            reps,
            svg,
            raw,
            only,
        } => compare(reps, &svg, &raw, &only)?,
        Cmd::IdleV2 {
            cgroups,
            secs,
            reps,
            mem_mb,
        } => print!(
            "{}",
            bpfoom_bench::idle_v2::run(cgroups, secs, reps, mem_mb)?
        ),
        Cmd::Soak {
            minutes,
            out,
            cgroups,
            interval_ms,
            sample_s,
            churn_ms,
        } => return soak(minutes, out, cgroups, interval_ms, sample_s, churn_ms),
        Cmd::Daemon { cmd } => {
            bpfoom_daemon::run_cmd(&cmd, &mut std::io::stdout()).map_err(|e| e.to_string())?
        }
        Cmd::Alloc {
            cgroup,
            mb,
            adj,
            hold_s,
            step_ms,
        } => bpfoom_testutil::alloc::run(&bpfoom_testutil::alloc::Spec {
            cgroup,
            mib: mb,
            adj,
            hold: std::time::Duration::from_secs(hold_s),
            kind: bpfoom_testutil::alloc::Kind::Anon,
            growth: bpfoom_testutil::alloc::Growth::Chunks,
            step: std::time::Duration::from_millis(step_ms),
        })
        .map_err(|e| e.to_string())?,
        Cmd::Ticker { cgroup } => reaction::ticker_main(&cgroup)?,
        Cmd::Sleepers { cgroup, n } => reaction::sleepers_main(&cgroup, n)?,
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
