//! `bpf_oom_kill_cgroup` uses the host's atomic whole-cgroup kill
//! (`cgroup.kill` on v2) only when nobody in the subtree must be spared;
//! otherwise it kills process by process, sparing oom_score_adj -1000 tasks
//! as `memory.oom.group` does.

#![allow(clippy::unwrap_used)] // test helpers

use bpfoom_engine::{
    AttachOptions, CgroupId, ContractCheck, Engine, EngineConfig, Pid, Policy, Record,
};
use bpfoom_obj::Object;

mod common;

fn policy() -> Option<Object> {
    if !bpfoom_testutil::require_clang() {
        return None;
    }
    let src = "#include <bpf_oom.h>\nchar _license[] SEC(\"license\") = \"GPL\";\n\
        SEC(\"struct_ops.s/handle_out_of_memory\")\n\
        int BPF_PROG(kc_oom, struct oom_control *oc, struct cgroup *cgrp)\n{\n\
        struct cgroup *c = bpf_cgroup_from_id(2); int r;\n\
        if (!c) return BPF_OOM_FAILED;\n\
        r = bpf_oom_kill_cgroup(oc, c, \"kc\");\n\
        bpf_cgroup_release(c);\n\
        return r ? BPF_OOM_FAILED : BPF_OOM_PROCESSED;\n}\n\
        SEC(\".struct_ops.link\") struct bpf_oom_ops kc = { .handle_out_of_memory = (void *)kc_oom };\n";
    let path = bpfoom_testutil::compile_str("kill_cgroup", src, &[]).unwrap();
    Some(Object::from_path(path).unwrap())
}

/// Runs one global OOM; returns the host's kill calls and the kill records.
fn run(tasks: Vec<(Pid, i16)>) -> Option<(Kills, Vec<Pid>)> {
    let mut p = Policy::open(policy()?, None).unwrap();
    p.check(&ContractCheck).unwrap();
    // Both backends must make the same calls.
    let [jit, interp] = bpfoom_engine::VmBackend::ALL.map(|vm| run_once(p.clone(), &tasks, vm));
    assert_eq!(jit, interp, "the JIT and the interpreter differ");
    Some(jit)
}

fn run_once(p: Policy, tasks: &[(Pid, i16)], vm: bpfoom_engine::VmBackend) -> (Kills, Vec<Pid>) {
    let host = common::TestHost {
        tasks: tasks.to_vec(),
        resolved: true,
        ..Default::default()
    };
    let cfg = EngineConfig {
        vm,
        ..EngineConfig::default()
    };
    let mut e = Engine::new(host, cfg);
    e.attach(p, 1, AttachOptions::default()).unwrap();
    e.out_of_memory(None);
    let killed = e
        .take_records()
        .into_iter()
        .filter_map(|r| match r {
            Record::Kill { pid, .. } => Some(pid),
            _ => None,
        })
        .collect();
    let h = e.host();
    ((h.cgroup_kills.clone(), h.task_kills.clone()), killed)
}

type Kills = (Vec<(CgroupId, Vec<Pid>)>, Vec<Pid>);

#[test]
fn whole_cgroup_kill_when_nobody_is_spared() {
    let Some(((cgroup_kills, task_kills), killed)) = run(vec![(10, 0), (11, 500)]) else {
        return;
    };
    assert_eq!(cgroup_kills, vec![(2, vec![10, 11])]);
    assert!(task_kills.is_empty(), "{task_kills:?}");
    assert_eq!(killed, vec![10, 11], "one kill record per victim");
}

#[test]
fn process_by_process_when_a_task_is_oom_protected() {
    let Some(((cgroup_kills, task_kills), killed)) = run(vec![(10, 0), (11, -1000), (12, 0)])
    else {
        return;
    };
    assert!(cgroup_kills.is_empty(), "{cgroup_kills:?}");
    assert_eq!(task_kills, vec![10, 12]);
    assert_eq!(killed, vec![10, 12]);
}
