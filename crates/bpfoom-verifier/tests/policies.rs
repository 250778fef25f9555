//! Every example policy in bpf/policies verifies, through the loader.

use bpfoom_obj::Object;
use bpfoom_verifier::{verify_object, Options};

#[test]
fn all_example_policies_verify() {
    let mut n = 0;
    for src in bpfoom_testutil::policy_sources() {
        let Some(obj_path) = bpfoom_testutil::compile_or_skip(&src, &[]) else {
            return;
        };
        let bytes = std::fs::read(&obj_path).expect("read object");
        let obj = Object::parse(&bytes).unwrap_or_else(|e| panic!("{}: {e}", src.display()));
        match verify_object(&obj, &Options::default()) {
            Ok(reps) => {
                assert!(
                    !reps.is_empty(),
                    "{}: no struct_ops programs",
                    src.display()
                );
                for r in reps {
                    eprintln!(
                        "{}: {}.{} ({}) insns={} states={} peak={} time={:?}",
                        src.file_name().unwrap().to_string_lossy(),
                        r.ops,
                        r.member,
                        r.program,
                        r.report.insns_processed,
                        r.report.states,
                        r.report.peak_states,
                        r.report.time
                    );
                    // Their CO-RE accesses all go through pointers to the
                    // structs they name.
                    assert!(
                        r.report.warnings.is_empty(),
                        "{}: {}: {:?}",
                        src.display(),
                        r.program,
                        r.report.warnings
                    );
                    n += 1;
                }
            }
            Err(e) => panic!("{}:\n{e}", src.display()),
        }
    }
    assert!(n > 0 || bpfoom_testutil::clang().is_none());
}

/// The loads the VM must make fault-safe are exactly the loads through
/// kernel-object pointers: in largest_leaf, `css_pos->cgroup`, the two
/// descendant counters and `task->signal->oom_score_adj`, never a stack or
/// context load.
#[test]
fn probe_mem_lists_kernel_object_loads() {
    use bpfoom_insn::opcode::{class, BPF_LDX};
    let src = bpfoom_testutil::repo_root().join("bpf/policies/largest_leaf.bpf.c");
    let Some(obj_path) = bpfoom_testutil::compile_or_skip(&src, &[]) else {
        return;
    };
    let obj = Object::parse(&std::fs::read(&obj_path).expect("read")).expect("parse");
    let reps = verify_object(&obj, &Options::default()).expect("verifies");
    let prog = obj.program("largest_leaf_oom").expect("program");
    let probe = &reps[0].report.probe_mem;
    assert!(probe.len() >= 5, "{probe:?}");
    for &pc in probe {
        let i = prog.insns[pc];
        assert_eq!(class(i.code), BPF_LDX, "insn {pc} is not a load");
        assert_ne!(i.src, 10, "insn {pc} loads from the stack");
    }
    // The first instruction loads `oc` from the context: not a PROBE_MEM load;
    // the second loads `oc->memcg`: one.
    assert!(!probe.contains(&0) && probe.contains(&1), "{probe:?}");
}
