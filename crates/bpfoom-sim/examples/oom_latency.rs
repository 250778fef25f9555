//! Measures the engine's cost per OOM event: largest_leaf over a tree of
//! `N` leaf cgroups with 4 processes each, one OOM per iteration.
//! `cargo run --release -p bpfoom-sim --example oom_latency -- [N] [ITERS]`

use std::time::{Duration, Instant};

use bpfoom_engine::{AttachOptions, ContractCheck, Engine, EngineConfig, OomOutcome, Policy};
use bpfoom_sim::{SimHost, SimProc};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1).map(|a| a.parse::<usize>());
    let leaves = args.next().unwrap_or(Ok(100)).map_err(|e| e.to_string())?;
    let iters = args.next().unwrap_or(Ok(200)).map_err(|e| e.to_string())?;
    let src = bpfoom_testutil::repo_root().join("bpf/policies/largest_leaf.bpf.c");
    let obj = bpfoom_obj::Object::from_path(bpfoom_testutil::compile(&src, &[])?)
        .map_err(|e| e.to_string())?;
    let policy = Policy::load(obj, None, &ContractCheck).map_err(|e| e.to_string())?;

    let mut host = SimHost::new(64 << 30, Duration::ZERO);
    let job = host.mkdir("/job", Some(1 << 40), false)?;
    let mut pid = 100;
    let mut cgs = Vec::new();
    for i in 0..leaves {
        let cg = host.mkdir(&format!("/job/g{}/l{i}", i % 10), None, false)?;
        cgs.push(cg);
        for _ in 0..4 {
            pid += 1;
            host.add_process(SimProc {
                pid,
                comm: "w".into(),
                cgroup: cg,
                rss: (1 + (pid as u64 * 7919) % 50) << 20,
                rss_file: 0,
                rss_shmem: 0,
                file: 0,
                swap: 0,
                oom_score_adj: 0,
                kthread: false,
                exiting_until: None,
            })?;
        }
    }
    let mut e = Engine::new(host, EngineConfig::default());
    e.attach(policy, job, AttachOptions::default())
        .map_err(|e| e.to_string())?;
    let mut total = Duration::ZERO;
    let mut worst = Duration::ZERO;
    for _ in 0..iters {
        let t = Instant::now();
        let out = e.out_of_memory(Some(job));
        let d = t.elapsed();
        total += d;
        worst = worst.max(d);
        let OomOutcome::Policy(_) = out else {
            return Err(format!("unexpected outcome {out:?}").into());
        };
        // Replace the victims so every iteration sees the same tree size.
        e.host_mut().advance(Duration::ZERO);
        for (i, &cg) in cgs.iter().enumerate() {
            while e.host().process_count(cg) < 4 {
                pid += 1;
                e.host_mut().add_process(SimProc {
                    pid,
                    comm: "w".into(),
                    cgroup: cg,
                    rss: (1 + (i as u64 * 31 + pid as u64) % 50) << 20,
                    rss_file: 0,
                    rss_shmem: 0,
                    file: 0,
                    swap: 0,
                    oom_score_adj: 0,
                    kthread: false,
                    exiting_until: None,
                })?;
            }
        }
    }
    println!(
        "largest_leaf, {leaves} leaf memcgs x 4 tasks: mean {:?} per OOM event, worst {:?} ({iters} events)",
        total / iters as u32,
        worst
    );
    Ok(())
}
