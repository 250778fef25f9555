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
                    n += 1;
                }
            }
            Err(e) => panic!("{}:\n{e}", src.display()),
        }
    }
    assert!(n > 0 || bpfoom_testutil::clang().is_none());
}
