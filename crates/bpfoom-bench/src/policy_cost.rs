//! Benchmark groups 2 (policy cost per invocation) and the verification
//! half of it: every example policy run by the engine over a simulated
//! host with `pods` leaf cgroups of `procs` processes each, laid out the
//! way kubelet does so that every policy (k8s_qos included) has real work.
//!
//! The baseline, measured in the same run over the same host, is the
//! kernel's own OOM killer heuristic as the engine models it (no policy
//! attached: `oom_badness` over every task of the OOM'ing memcg).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use bpfoom_engine::{
    AttachOptions, CgroupId, Engine, EngineConfig, OomOutcome, Policy, PolicyCheck, Record,
    Verifier,
};
use bpfoom_obj::Object;
use bpfoom_sim::{SimHost, SimProc};

use crate::stats::{median, Summary};

/// One measured row.
#[derive(Clone, Debug)]
pub struct Row {
    /// What was measured.
    pub name: String,
    /// Wall-clock time per invocation, µs; the error when it could not run
    /// (e.g. the verifier rejected the policy).
    pub time_us: Result<Summary, String>,
    /// Instructions the policy executed per invocation (median), if known.
    pub insns: Option<u64>,
}

/// Benchmark sizes.
#[derive(Clone, Copy, Debug)]
pub struct Sizes {
    /// Leaf (pod) cgroups.
    pub pods: usize,
    /// Processes per pod.
    pub procs: usize,
    /// Invocations measured per policy.
    pub iters: usize,
}

/// The host: `/kubepods` (the attach point) with `besteffort`, `burstable`
/// and guaranteed pods in equal thirds.
pub struct Tree {
    /// The engine over the simulated host.
    pub engine: Engine<SimHost>,
    /// `/kubepods`.
    pub root: CgroupId,
    /// `/kubepods/besteffort`, `/kubepods/burstable`.
    pub qos: [CgroupId; 2],
    pods: Vec<CgroupId>,
    procs: usize,
    next_pid: i32,
}

fn proc_in(pid: i32, cg: CgroupId, salt: u64) -> SimProc {
    SimProc {
        pid,
        comm: "w".into(),
        cgroup: cg,
        // 1..64 MiB, spread so that every policy has a unique choice.
        rss: (1 + (pid as u64).wrapping_mul(7919).wrapping_add(salt) % 64) << 20,
        rss_file: 0,
        rss_shmem: 0,
        file: (pid as u64 % 4) << 20,
        swap: 0,
        oom_score_adj: 0,
        kthread: false,
        exiting_until: None,
    }
}

impl Tree {
    /// Builds the tree.
    pub fn new(s: Sizes) -> Result<Tree, String> {
        let mut host = SimHost::new(1 << 50, Duration::ZERO);
        let root = host
            .mkdir("/kubepods", Some(1 << 48), false)
            .map_err(|e| e.to_string())?;
        let be = host
            .mkdir("/kubepods/besteffort", None, false)
            .map_err(|e| e.to_string())?;
        let bu = host
            .mkdir("/kubepods/burstable", None, false)
            .map_err(|e| e.to_string())?;
        let mut pods = Vec::new();
        for i in 0..s.pods {
            let path = match i % 3 {
                0 => format!("/kubepods/besteffort/pod{i}"),
                1 => format!("/kubepods/burstable/pod{i}"),
                _ => format!("/kubepods/pod{i}"),
            };
            pods.push(host.mkdir(&path, None, false).map_err(|e| e.to_string())?);
        }
        let mut t = Tree {
            engine: Engine::new(host, EngineConfig::default()),
            root,
            qos: [be, bu],
            pods,
            procs: s.procs,
            next_pid: 1000,
        };
        t.refill()?;
        Ok(t)
    }

    /// Reaps the killed processes and puts new ones in their place, so
    /// every invocation sees the same number of tasks.
    pub fn refill(&mut self) -> Result<(), String> {
        self.engine.host_mut().advance(Duration::from_millis(1));
        for i in 0..self.pods.len() {
            let cg = self.pods[i];
            while self.engine.host().process_count(cg) < self.procs {
                self.next_pid += 1;
                let p = proc_in(self.next_pid, cg, i as u64);
                self.engine
                    .host_mut()
                    .add_process(p)
                    .map_err(|e| e.to_string())?;
            }
        }
        Ok(())
    }
}

/// The example policies measured, with the setup each needs.
pub const POLICIES: &[&str] = &[
    "largest_leaf",
    "raise_then_kill",
    "oomd_like",
    "k8s_qos",
    "psi_early",
];

/// Compiles `bpf/policies/NAME.bpf.c` (cached under `target/`).
pub fn compile(name: &str) -> Result<PathBuf, String> {
    let src = bpfoom_testutil::repo_root().join(format!("bpf/policies/{name}.bpf.c"));
    bpfoom_testutil::compile(&src, &[])
}

fn open(obj: &Path, tree: &Tree, name: &str) -> Result<Policy, String> {
    let o = Object::from_path(obj).map_err(|e| e.to_string())?;
    let mut p = Policy::open(o, None).map_err(|e| e.to_string())?;
    match name {
        "k8s_qos" => {
            p.map_entry("qos", tree.qos[0], 1)
                .map_err(|e| e.to_string())?;
            p.map_entry("qos", tree.qos[1], 2)
                .map_err(|e| e.to_string())?;
            p.map_entry("qos", tree.root, 3)
                .map_err(|e| e.to_string())?;
        }
        "psi_early" => {
            p.set_global("watch_cgroup_id", tree.root)
                .map_err(|e| e.to_string())?;
        }
        _ => {}
    }
    // The verifier gate, as the daemon runs it.
    p.check(&Verifier::default()).map_err(|e| e.to_string())?;
    Ok(p)
}

fn insns_of(records: &[Record]) -> Option<u64> {
    records.iter().find_map(|r| match r {
        Record::Handler { insns, .. } => *insns,
        _ => None,
    })
}

/// A tree with the example policy `name` verified and attached at its root
/// (psi_early together with largest_leaf, which handles the OOM it declares).
pub fn attached(name: &str, s: Sizes) -> Result<Tree, String> {
    let mut tree = Tree::new(s)?;
    let root = tree.root;
    if name == "psi_early" {
        let ll = open(&compile("largest_leaf")?, &tree, "largest_leaf")?;
        tree.engine
            .attach(ll, root, AttachOptions::default())
            .map_err(|e| e.to_string())?;
    }
    let p = open(&compile(name)?, &tree, name)?;
    tree.engine
        .attach(p, root, AttachOptions::default())
        .map_err(|e| e.to_string())?;
    tree.engine.take_records();
    Ok(tree)
}

impl Tree {
    /// One OOM at the root, timed; the victims are replaced afterwards.
    pub fn timed_oom(&mut self) -> Result<Duration, String> {
        let t = Instant::now();
        let out = self.engine.out_of_memory(Some(self.root));
        let d = t.elapsed();
        if matches!(out, OomOutcome::Nothing) {
            return Err("the OOM found nothing to do".into());
        }
        self.engine.take_records();
        self.refill()?;
        Ok(d)
    }
}

/// Times `iters` OOM invocations at the tree's root.
fn time_ooms(tree: &mut Tree, iters: usize, name: &str) -> Result<Row, String> {
    let mut times = Vec::with_capacity(iters);
    let mut insns = Vec::new();
    for _ in 0..iters {
        let t = Instant::now();
        let out = tree.engine.out_of_memory(Some(tree.root));
        times.push(t.elapsed().as_secs_f64() * 1e6);
        if matches!(out, OomOutcome::Nothing) {
            return Err(format!("{name}: the OOM found nothing to do"));
        }
        insns.extend(insns_of(&tree.engine.take_records()));
        tree.refill()?;
    }
    // Instruction counts are far below 2^53: exact as f64.
    let insns: Vec<f64> = insns.iter().map(|&n| n as f64).collect();
    Ok(Row {
        name: name.into(),
        time_us: Summary::of(&times).ok_or_else(|| "no samples".to_string()),
        insns: median(&insns).map(|m| m as u64),
    })
}

/// Group 2: per-invocation cost of each policy and of the kernel-model
/// baseline (first row), each on a fresh tree of the same shape.
pub fn invocation_costs(s: Sizes) -> Result<Vec<Row>, String> {
    let mut rows = Vec::new();
    let mut tree = Tree::new(s)?;
    rows.push(time_ooms(
        &mut tree,
        s.iters,
        "kernel OOM killer model (baseline)",
    )?);
    for &name in POLICIES {
        let mut tree = match attached(name, s) {
            Ok(t) => t,
            Err(e) => {
                rows.push(Row {
                    name: name.into(),
                    time_us: Err(e),
                    insns: None,
                });
                continue;
            }
        };
        rows.push(if name == "psi_early" {
            // The PSI event declares an OOM, which largest_leaf handles:
            // the row is the whole path, psi_early's handler included.
            time_psi(&mut tree, s)?
        } else {
            time_ooms(&mut tree, s.iters, name)?
        });
    }
    Ok(rows)
}

fn time_psi(tree: &mut Tree, s: Sizes) -> Result<Row, String> {
    tree.engine.take_records();
    let pod = tree.pods[0];
    let mut times = Vec::with_capacity(s.iters);
    for _ in 0..s.iters {
        // Triggers fire at most once per window: let one pass first.
        tree.engine.host_mut().advance(Duration::from_secs(2));
        let t = Instant::now();
        let stall = Duration::from_millis(200);
        tree.engine.psi_stall(pod, stall, stall);
        times.push(t.elapsed().as_secs_f64() * 1e6);
        let recs = tree.engine.take_records();
        if !recs.iter().any(|r| matches!(r, Record::PsiEvent { .. })) {
            return Err("psi_early: the trigger did not fire".into());
        }
        tree.refill()?;
    }
    Ok(Row {
        name: "psi_early (PSI event -> OOM -> largest_leaf)".into(),
        time_us: Summary::of(&times).ok_or_else(|| "no samples".to_string()),
        insns: None,
    })
}

/// Verification time of each policy ([`Verifier`]: ContractCheck, then
/// bpfoom-verifier over every program), with
/// loading the object (ELF, BTF, CO-RE) as the same-run baseline; a
/// rejected policy's row holds the verifier's message.
#[allow(clippy::type_complexity)]
pub fn verification_costs(
    iters: usize,
) -> Result<Vec<(String, Summary, Result<Summary, String>)>, String> {
    let mut out = Vec::new();
    for &name in POLICIES {
        let path = compile(name)?;
        let bytes = std::fs::read(&path).map_err(|e| e.to_string())?;
        let (mut load, mut verify) = (Vec::new(), Vec::new());
        let mut rejected = None;
        for _ in 0..iters {
            let t = Instant::now();
            let o = Object::parse(&bytes).map_err(|e| e.to_string())?;
            load.push(t.elapsed().as_secs_f64() * 1e6);
            let inst = o.struct_ops.first().ok_or("no struct_ops")?.clone();
            let t = Instant::now();
            let r = Verifier::default().check(&o, &inst);
            verify.push(t.elapsed().as_secs_f64() * 1e6);
            if let Err(e) = r {
                rejected = Some(e.to_string().lines().next().unwrap_or("").to_string());
            }
        }
        out.push((
            name.to_string(),
            Summary::of(&load).ok_or("no samples")?,
            match rejected {
                Some(e) => Err(format!("rejected: {e}")),
                None => Summary::of(&verify).ok_or_else(|| "no samples".to_string()),
            },
        ));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A small run of both groups: every policy acts on the tree, and a
    /// policy that never frees would show up as an error here.
    #[test]
    fn small_run_measures_every_policy() {
        if !bpfoom_testutil::require_clang() {
            return;
        }
        let rows = invocation_costs(Sizes {
            pods: 30,
            procs: 3,
            iters: 3,
        })
        .unwrap();
        assert_eq!(rows.len(), POLICIES.len() + 1);
        for r in &rows {
            let t = r
                .time_us
                .as_ref()
                .unwrap_or_else(|e| panic!("{}: {e}", r.name));
            assert!(t.n == 3 && t.min > 0.0, "{r:?}");
        }
        assert!(rows[1].insns.is_some_and(|n| n > 30), "{:?}", rows[1]);
        let v = verification_costs(2).unwrap();
        assert_eq!(v.len(), POLICIES.len());
        for (name, _, verify) in &v {
            assert!(verify.is_ok(), "{name}: {verify:?}");
        }
    }
}
