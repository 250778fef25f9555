//! Benchmark groups 8 and 9 (cgroup v1, this machine): OOM episodes the way
//! production meets them, bpfoom with the `badness` policy (the kernel's own
//! `oom_badness()` score, so both pick the same victim) against the kernel
//! OOM killer alone, measured in the same run.
//!
//! - [`back_to_back`]: one memcg (32 MiB) with a 20 MiB resident process;
//!   a 40 MiB allocator starts, the first death ends the episode, the next
//!   starts 0.1 s after both are gone. What is timed is the allocator's
//!   start to the first death, the whole episode as a user sees it.
//! - [`concurrent`]: `n` memcgs of 16 MiB, each with a 32 MiB allocator, all
//!   started within 100 ms; every memcg's time from its allocator's start to
//!   its death, the longest of them, and whether bpfoom's policy resolved
//!   every one (a kill record each) or some fell back to the kernel.

use std::path::Path;
use std::time::{Duration, Instant};

use bpfoom_testutil::alloc::Alloc;
use bpfoom_testutil::cgroup::Cgroup;

use crate::reaction::{alloc, Daemon, Mode, V1Tree};

/// One configuration's results, milliseconds.
#[derive(Debug, Default)]
pub struct Episodes {
    /// Per episode (or per memcg): allocator start to the first death.
    pub to_death_ms: Vec<f64>,
    /// The daemon's own notify->kill latencies, from its kill records.
    pub daemon_ms: Vec<f64>,
}

fn exited(c: &mut Alloc) -> bool {
    !c.alive()
}

/// Waits until `cg` has no process and (almost) no charge left.
fn drained(cg: &Cgroup) {
    cg.kill_tasks(Duration::from_secs(1));
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if cg
            .value("memory.usage_in_bytes")
            .is_some_and(|u| u < 1 << 20)
        {
            return;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// Back-to-back OOM episodes in one memcg (see the module docs).
/// `extra` are more `bpfoom run` arguments for the daemon (`--mlock=all`).
pub fn back_to_back(
    exe: &Path,
    policy: &Path,
    mode: Mode,
    reps: usize,
    extra: &[String],
) -> Result<Episodes, String> {
    let tree = V1Tree::new(exe, 0, 0)?;
    tree.write("job", "memory.limit_in_bytes", &(32u64 << 20).to_string())?;
    let mut daemon = match mode {
        Mode::Bpfoom => Some(Daemon::start_with(exe, policy, &tree, extra)?),
        Mode::Kernel => None,
    };
    let (svc, hog) = (tree.cgroup("job/svc"), tree.cgroup("job/hog"));
    let mut out = Episodes::default();
    for rep in 0..reps {
        let mut resident = alloc(exe, &svc.dir, 20, 600)?;
        if !resident.ready(Duration::from_secs(10)) {
            return Err("helper not ready".into());
        }
        let t0 = Instant::now();
        let mut allocator = alloc(exe, &hog.dir, 40, 600)?;
        let deadline = t0 + Duration::from_secs(30);
        let first = loop {
            if exited(&mut resident) || exited(&mut allocator) {
                break Instant::now();
            }
            if Instant::now() > deadline {
                return Err(format!("{mode:?}: episode {rep}: nothing died within 30 s"));
            }
            std::thread::sleep(Duration::from_micros(100));
        };
        out.to_death_ms
            .push(first.duration_since(t0).as_secs_f64() * 1e3);
        // The allocator does not fit even alone: the same memcg OOMs again
        // at once, and is handled again, before the episode ends.
        let until = Instant::now() + Duration::from_secs(10);
        while !(exited(&mut resident) && exited(&mut allocator)) && Instant::now() < until {
            std::thread::sleep(Duration::from_millis(1));
        }
        drop(resident);
        drop(allocator);
        drained(&svc);
        drained(&hog);
        std::thread::sleep(Duration::from_millis(100));
    }
    if let Some(d) = &mut daemon {
        out.daemon_ms = d.take_latencies(Duration::from_secs(2));
    }
    drop(daemon);
    drop(tree);
    Ok(out)
}

/// `n` memcgs running out of memory within 100 ms (see the module docs).
/// `slow`: a policy attached at the first memcg only, ahead of `policy` in
/// its chain (a slow or looping one: the others must not wait for it beyond
/// its time limit).
pub fn concurrent(
    exe: &Path,
    policy: &Path,
    mode: Mode,
    n: usize,
    slow: Option<&Path>,
) -> Result<Episodes, String> {
    let tree = V1Tree::new(exe, 0, 0)?;
    let mut cgs = Vec::with_capacity(n);
    for i in 0..n {
        let rel = format!("job/m{i}");
        tree.mkdir(&rel)?;
        tree.write(&rel, "memory.limit_in_bytes", &(16u64 << 20).to_string())?;
        cgs.push(tree.cgroup(&rel));
    }
    // The job memcg's own 64 MiB limit must not be the one hit.
    tree.write("job", "memory.limit_in_bytes", "-1")?;
    let extra: Vec<String> = slow
        .map(|s| format!("--attach={}={}/job/m0", s.display(), tree.top_rel))
        .into_iter()
        .collect();
    let mut daemon = match mode {
        Mode::Bpfoom => Some(Daemon::start_with(exe, policy, &tree, &extra)?),
        Mode::Kernel => None,
    };
    let mut kids = Vec::with_capacity(n);
    // Spread the starts over 100 ms.
    let gap = Duration::from_micros(100_000 / n.max(1) as u64);
    for cg in &cgs {
        kids.push((Instant::now(), alloc(exe, &cg.dir, 32, 600)?));
        std::thread::sleep(gap);
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut died = vec![None; n];
    while died.iter().any(Option::is_none) && Instant::now() < deadline {
        for (i, (_, c)) in kids.iter_mut().enumerate() {
            if died[i].is_none() && exited(c) {
                died[i] = Some(Instant::now());
            }
        }
        std::thread::sleep(Duration::from_micros(200));
    }
    let mut out = Episodes::default();
    for ((t0, _), d) in kids.iter().zip(&died) {
        if let Some(d) = d {
            out.to_death_ms
                .push(d.duration_since(*t0).as_secs_f64() * 1e3);
        }
    }
    if let Some(d) = &mut daemon {
        out.daemon_ms = d.take_latencies(Duration::from_secs(2));
    }
    for cg in &cgs {
        drained(cg);
    }
    drop(daemon);
    drop(tree);
    if out.to_death_ms.len() < n {
        return Err(format!(
            "{mode:?}: {} of {n} memcgs not resolved within 60 s",
            n - out.to_death_ms.len()
        ));
    }
    Ok(out)
}
