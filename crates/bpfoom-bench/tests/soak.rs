//! The soak's short variant (issue 13): 30 s of the same run as
//! `bpfoom-bench soak --minutes 10` (an OOM every 200 ms across 20
//! cgroups, an attach or detach every 2 s, samples every 5 s here), so the
//! soak code cannot rot. Needs root and the cgroup v1 memory controller.

#![allow(clippy::unwrap_used)]

use std::path::PathBuf;
use std::time::Duration;

use bpfoom_bench::soak::{self, SoakConfig};

#[test]
fn soak_30_seconds_runs_clean() {
    if !bpfoom_testutil::require(
        bpfoom_testutil::is_root()
            && std::path::Path::new("/sys/fs/cgroup/memory/memory.oom_control").exists(),
        "soak_30_seconds_runs_clean: needs root and cgroup v1 memory",
    ) {
        return;
    }
    let root = bpfoom_testutil::repo_root().join("bpf/policies");
    let (Some(policy), Some(churn_policy)) = (
        bpfoom_testutil::compile_or_skip(&root.join("largest_leaf.bpf.c"), &[]),
        bpfoom_testutil::compile_or_skip(&root.join("tests/always_fail.bpf.c"), &[]),
    ) else {
        return;
    };
    let out =
        PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("soak-{}", std::process::id()));
    let cfg = SoakConfig {
        duration: Duration::from_secs(30),
        cgroups: 20,
        interval: Duration::from_millis(200),
        sample: Duration::from_secs(5),
        churn: Duration::from_secs(2),
        exe: PathBuf::from(env!("CARGO_BIN_EXE_bpfoom-bench")),
        policy,
        churn_policy,
        out: out.clone(),
    };
    let rep = soak::run(&cfg).unwrap();
    let summary = soak::summary(&cfg, &rep);
    eprintln!("{summary}");
    assert_eq!(rep.problems(), Vec::<String>::new(), "{summary}");
    // ~150 OOMs in 30 s at one per 200 ms; far fewer means the generator
    // stalled on something (every cgroup busy = OOMs not resolving).
    assert!(rep.ooms >= 100, "only {} OOMs started", rep.ooms);
    assert!(rep.attaches >= 5 && rep.detaches >= 5, "{rep:?}");
    assert!(rep.samples.len() >= 5, "{:?}", rep.samples);
    let csv = std::fs::read_to_string(out.join("soak.csv")).unwrap();
    assert_eq!(csv.lines().count(), rep.samples.len() + 1);
    let records = std::fs::read_to_string(out.join("records.jsonl")).unwrap();
    let kills = records
        .lines()
        .filter(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["event"] == "kill")
        .count() as u64;
    assert_eq!(Some(&kills), rep.events.get("kill"));
    assert!(std::fs::read_to_string(out.join("soak.svg"))
        .unwrap()
        .contains("</svg>"));
}
