//! VM features the engine wires through: executed-instruction counts in
//! handler records, and fault-safe (`PROBE_MEM`) loads from a check report.

#![allow(clippy::unwrap_used)] // test helpers

use bpfoom_engine::{
    AttachOptions, CheckReport, ContractCheck, Engine, EngineConfig, PolicyCheck, Record, Verdict,
};
use bpfoom_obj::{Object, StructOpsInstance};

mod common;

/// Compiles a one-handler policy; `None` (skip) without clang outside CI.
fn object(name: &str, globals: &str, body: &str) -> Option<Object> {
    if !bpfoom_testutil::require_clang() {
        return None;
    }
    let src = format!(
        "#include <bpf_oom.h>\nchar _license[] SEC(\"license\") = \"GPL\";\n{globals}\n\
         SEC(\"struct_ops.s/handle_out_of_memory\")\n\
         int BPF_PROG({name}_oom, struct oom_control *oc, struct cgroup *cgrp)\n{{\n{body}\n}}\n\
         SEC(\".struct_ops.link\")\nstruct bpf_oom_ops {name} = {{\n\
         .handle_out_of_memory = (void *){name}_oom,\n.name = \"{name}\",\n}};\n"
    );
    let path = bpfoom_testutil::compile_str(name, &src, &[]).unwrap_or_else(|e| panic!("{e}"));
    Some(Object::from_path(path).unwrap())
}

/// Runs one global OOM through the policy; returns its handler record.
fn handle(
    obj: Object,
    check: &dyn PolicyCheck,
    globals: &[(&str, u64)],
) -> (Verdict, Option<String>, Option<u64>) {
    let mut p = bpfoom_engine::Policy::open(obj, None).unwrap();
    for (var, v) in globals {
        p.set_global(var, *v).unwrap();
    }
    p.check(check).unwrap();
    // Same verdict, reason and instruction count on both backends.
    let [jit, interp] = bpfoom_engine::VmBackend::ALL.map(|vm| handle_once(p.clone(), vm));
    assert_eq!(jit, interp, "the JIT and the interpreter differ");
    jit
}

fn handle_once(
    p: bpfoom_engine::Policy,
    vm: bpfoom_engine::VmBackend,
) -> (Verdict, Option<String>, Option<u64>) {
    let cfg = EngineConfig {
        vm,
        ..EngineConfig::default()
    };
    let mut e = Engine::new(common::TestHost::default(), cfg);
    e.attach(p, 1, AttachOptions::default()).unwrap();
    e.out_of_memory(None);
    let handlers: Vec<_> = e
        .take_records()
        .into_iter()
        .filter_map(|r| match r {
            Record::Handler {
                ret, reason, insns, ..
            } => Some((ret, reason, insns)),
            _ => None,
        })
        .collect();
    assert_eq!(handlers.len(), 1, "{handlers:?}");
    handlers.into_iter().next().unwrap()
}

/// Instructions of a program, `ld_imm64` counted once.
fn instructions(obj: &Object, prog: usize) -> u64 {
    let insns = &obj.programs[prog].insns;
    let wide = insns
        .iter()
        .filter(|i| i.code == bpfoom_insn::opcode::LD_IMM64)
        .count();
    (insns.len() - wide) as u64
}

#[test]
fn handler_records_carry_the_executed_instruction_count() {
    let Some(obj) = object("straight", "", "return BPF_OOM_FAILED;") else {
        return;
    };
    let want = instructions(&obj, 0);
    assert!(obj.programs[0]
        .insns
        .iter()
        .all(
            |i| bpfoom_insn::opcode::class(i.code) != bpfoom_insn::opcode::BPF_JMP
                || i.code == bpfoom_insn::opcode::EXIT
        ));
    assert_eq!(
        handle(obj, &ContractCheck, &[]),
        (Verdict::Failed, None, Some(want))
    );

    // A loop run N times: the count grows by the same amount per iteration.
    let Some(obj) = object(
        "looping",
        "const volatile int n = 0;\nint acc;",
        "for (int i = 0; i < n; i++) acc += i * 3;\nreturn BPF_OOM_FAILED;",
    ) else {
        return;
    };
    let count = |n: u64| handle(obj.clone(), &ContractCheck, &[("n", n)]).2.unwrap();
    // (The first iteration also pays for the loop's set-up.)
    let (c0, c10, c20, c30) = (count(0), count(10), count(20), count(30));
    assert!(
        c10 > c0 && c20 - c10 == c30 - c20 && (c20 - c10) % 10 == 0,
        "{c0} {c10} {c20} {c30}"
    );
}

/// A check that reports every load of program 0 as fault-safe.
struct AllLoadsProbe;

impl PolicyCheck for AllLoadsProbe {
    fn check(
        &self,
        object: &Object,
        instance: &StructOpsInstance,
    ) -> Result<(), bpfoom_engine::CheckError> {
        ContractCheck.check(object, instance)
    }
    fn check_report(
        &self,
        object: &Object,
        instance: &StructOpsInstance,
    ) -> Result<CheckReport, bpfoom_engine::CheckError> {
        self.check(object, instance)?;
        let loads = object.programs[0]
            .insns
            .iter()
            .enumerate()
            .filter(|(_, i)| bpfoom_insn::opcode::class(i.code) == bpfoom_insn::opcode::BPF_LDX)
            .map(|(pc, _)| pc)
            .collect();
        let mut r = CheckReport::default();
        r.probe_mem.insert(0, loads);
        Ok(r)
    }
}

#[test]
fn probe_mem_loads_from_the_check_report_read_zero() {
    // The root cgroup's css has no parent: the kernel reads 0 through it.
    let Some(obj) = object("walker", "", "return cgrp->self.parent->id + 5;") else {
        return;
    };
    let (verdict, reason, _) = handle(obj.clone(), &ContractCheck, &[]);
    assert_eq!(verdict, Verdict::Failed);
    assert!(
        reason
            .as_deref()
            .is_some_and(|r| r.contains("memory fault")),
        "{reason:?}"
    );
    let (verdict, reason, _) = handle(obj, &AllLoadsProbe, &[]);
    assert_eq!(verdict, Verdict::Failed);
    assert_eq!(reason.as_deref(), Some("return value 5 out of range"));
}

#[test]
fn the_jit_is_built_in_so_both_backends_are_tested() {
    // Without the `jit` feature VmBackend::Jit runs the interpreter and the
    // two-backend tests compare the interpreter with itself; the workspace
    // build (the bpfoom binary's default feature) has it.
    bpfoom_testutil::require(
        bpfoom_engine::VmBackend::jit_built(),
        "bpfoom-engine built without the jit feature (run the workspace tests)",
    );
}
