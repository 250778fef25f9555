//! Upstream's selftests of the "mm: BPF OOM" series as simulator tests: the
//! fixture policies in `bpf/policies/tests/upstream/` (written in this
//! repository from each selftest's documented behaviour) on the selftest
//! tree, with the selftests' assertions (cg4 dies; the preference map steers
//! the oomd-style choice; the PSI trigger declares the OOM).
//!
//! Every run goes through bpfoom's verifier, as the daemon's do: `test_oom`
//! compares a walked `css.cgroup` with the trusted `cgrp` argument (the
//! attach-point check) and `test_psi` passes a writable `char[]` as the
//! nullable constraint text, both accepted by Linux's privileged verifier.

#![allow(clippy::unwrap_used)] // test helpers

use std::path::Path;

use bpfoom_engine::{PolicyCheck, Verifier};
use bpfoom_sim::{run_scenario, SimOptions};
use bpfoom_testutil::{compile_or_skip, repo_root};

fn load(policy: &str, base: &Path) -> Result<Vec<u8>, String> {
    let src = base.join(
        policy
            .strip_suffix(".o")
            .ok_or("expected .bpf.o")?
            .to_string()
            + ".c",
    );
    let obj = compile_or_skip(&src, &[]).ok_or("clang missing")?;
    std::fs::read(&obj).map_err(|e| e.to_string())
}

/// Runs `upstream/NAME.toml`; returns the pids killed and the records.
fn run(name: &str, check: &dyn PolicyCheck) -> Option<(Vec<i32>, String)> {
    if !bpfoom_testutil::require_clang() {
        return None;
    }
    let dir = repo_root().join("bpf/policies/tests/upstream");
    let path = dir.join(format!("{name}.toml"));
    let text = std::fs::read_to_string(&path).unwrap();
    // The JIT and the interpreter must write the same records.
    let [(r, out), (_, interp)] = bpfoom_engine::VmBackend::ALL.map(|vm| {
        let opts = SimOptions {
            base_dir: dir.clone(),
            loader: &load,
            check,
            engine: bpfoom_engine::EngineConfig {
                vm,
                ..Default::default()
            },
        };
        let mut out = Vec::new();
        let r = run_scenario(&text, &path.display().to_string(), &opts, &mut out);
        (r, String::from_utf8(out).unwrap())
    });
    assert_eq!(out, interp, "{name}: the JIT and the interpreter differ");
    let o = r.unwrap_or_else(|e| panic!("{name}: {e}\n{out}"));
    assert!(o.expects > 0);
    assert!(o.failures.is_empty(), "{name}: {:?}\n{out}", o.failures);
    assert_eq!(o.leaked_refs, 0, "{name}\n{out}");
    Some((o.killed, out))
}

fn records(out: &str) -> Vec<serde_json::Value> {
    out.lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn test_oomd_without_preferences_kills_the_scanning_allocator() {
    let Some((killed, _)) = run("test_oomd", &Verifier::default()) else {
        return;
    };
    assert_eq!(killed, [104]);
}

#[test]
fn test_oomd_struct_preference_map_steers_the_choice_to_cg4() {
    let Some((killed, out)) = run("test_oomd_prefs", &Verifier::default()) else {
        return;
    };
    // cg5, the victim without the map, is AVOID: cg4 dies instead.
    assert_eq!(killed, [103]);
    let kill = records(&out)
        .into_iter()
        .find(|r| r["event"] == "kill")
        .unwrap();
    assert_eq!(kill["cgroup"], "/oom_test/cg3/cg4", "{kill}");
}

fn test_oom_kills_cg4(name: &str, check: &dyn PolicyCheck) -> Option<String> {
    let (killed, out) = run(name, check)?;
    assert_eq!(killed, [103]);
    // The chain: the /oom_test instance declined its own cgroup's OOM,
    // then the system-wide one processed it.
    let handlers: Vec<(String, String)> = records(&out)
        .into_iter()
        .filter(|r| r["event"] == "handler")
        .map(|r| {
            (
                r["cgroup"].as_str().unwrap().to_string(),
                r["ret"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(
        handlers,
        [
            ("/oom_test".to_string(), "failed".to_string()),
            ("/".to_string(), "processed".to_string())
        ],
        "{out}"
    );
    Some(out)
}

#[test]
fn test_oom_attach_point_check_and_cg4_dies() {
    test_oom_kills_cg4("test_oom", &Verifier::default());
}

#[test]
fn test_oom_v3_reads_its_attach_point_from_the_link_and_cg4_dies() {
    // The v3 form, handle_out_of_memory(oc, struct bpf_struct_ops_link
    // *link), runs as written: the attach-point check compares with
    // link->cgroup.
    let Some(out) = test_oom_kills_cg4("test_oom_v3", &Verifier::default()) else {
        return;
    };
    // Each instance's link->cgroup is its own attach cgroup: /oom_test
    // (level 1), then the root (level 0) for the system-wide one.
    let levels: Vec<String> = records(&out)
        .into_iter()
        .filter(|r| r["event"] == "printk")
        .map(|r| r["message"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        levels,
        [
            "test_oom_v3: attached at level 1",
            "test_oom_v3: attached at level 0"
        ],
        "{out}"
    );
}

fn test_psi_declares_the_oom(check: &dyn PolicyCheck) {
    let Some((killed, out)) = run("test_psi", check) else {
        return;
    };
    assert_eq!(killed, [103]);
    let recs = records(&out);
    let triggers: Vec<_> = recs
        .iter()
        .filter(|r| r["event"] == "psi_trigger")
        .collect();
    assert_eq!(triggers.len(), 2, "{out}");
    assert_eq!(triggers[0]["cgroup"], "/oom_test/cg3/cg4");
    assert_eq!(triggers[0]["kind"], "full");
    assert_eq!(triggers[1]["cgroup"], "/oom_test/cg1");
    // The OOM is the one the PSI handler declared, with its constraint text.
    let oom = recs.iter().find(|r| r["event"] == "oom").unwrap();
    assert_eq!(oom["memcg"], "/oom_test/cg3/cg4", "{oom}");
    assert_eq!(oom["constraint"], "psi", "{oom}");
    assert_eq!(oom["text"], "bpfoom psi test", "{oom}");
}

#[test]
fn test_psi_trigger_declares_the_oom() {
    test_psi_declares_the_oom(&Verifier::default());
}
