//! The bpf_conformance suite: every `.data` file in the shared folder goes
//! through the assembler and the VM; `r0` (or the expected failure) must match.
//!
//! Conventions of the suite's runner: `r1` = address of the `-- mem` bytes
//! (read-write), `r2` = their length; helper 5 is the uBPF test helper that
//! returns its first argument (`call_unwind_fail`, `callx`).

use std::path::PathBuf;

use bpfoom_insn::conformance::TestCase;
use bpfoom_vm::{CallError, CallHandler, Env, ExecBackend, Perm, Vm};

struct ConformanceHost;

impl CallHandler for ConformanceHost {
    fn helper(&mut self, id: u32, args: [u64; 5], _env: &mut Env) -> Result<u64, CallError> {
        match id {
            5 => Ok(args[0]),
            _ => Err(CallError::Unsupported),
        }
    }
}

/// Every engine this build has.
fn engines() -> Vec<ExecBackend> {
    vec![
        ExecBackend::Interpreter,
        #[cfg(feature = "jit")]
        ExecBackend::Jit,
    ]
}

fn run_case(tc: &TestCase, engine: ExecBackend) -> Result<u64, String> {
    let prog = tc.program().map_err(|e| format!("assemble: {e}"))?;
    let mut vm = Vm::new(Vec::new()).map_err(|e| e.to_string())?;
    vm.set_backend(engine);
    let id = vm.load(&prog).map_err(|e| format!("load: {e}"))?;
    let (addr, len) = if tc.mem.is_empty() {
        (0, 0)
    } else {
        let (_, addr) = vm.add_object(&tc.mem, Perm::ReadWrite);
        (addr, tc.mem.len() as u64)
    };
    vm.run_with_args(id, [addr, len, 0, 0, 0], &mut ConformanceHost)
        .map_err(|e| format!("run: {e}"))
}

#[test]
fn bpf_conformance_suite() {
    for engine in engines() {
        println!("engine {engine:?}");
        conformance_suite(engine);
    }
}

fn conformance_suite(engine: ExecBackend) {
    let Some(dir) = bpfoom_testutil::require_conformance_dir() else {
        return;
    };
    let entries = std::fs::read_dir(&dir).expect("conformance folder readable");
    let mut files: Vec<PathBuf> = entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "data"))
        .collect();
    files.sort();
    let (mut passed, mut failed, mut skipped): (usize, Vec<String>, Vec<String>) =
        (0, Vec::new(), Vec::new());
    for path in &files {
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let text = std::fs::read_to_string(path).expect("readable");
        let tc = match TestCase::parse(&text) {
            Ok(tc) => tc,
            Err(e) => {
                failed.push(format!("{name}: parse: {e}"));
                continue;
            }
        };
        if tc.result.is_none() && tc.error.is_none() {
            // A vector that states neither an r0 nor an error has nothing to check.
            skipped.push(format!("{name}: no `-- result` or `-- error` section"));
            continue;
        }
        let got = run_case(&tc, engine);
        let ok = match (&tc.error, tc.result, &got) {
            (Some(_), _, Err(_)) => true,
            (None, Some(want), Ok(v)) => *v == want,
            _ => false,
        };
        if ok {
            passed += 1;
        } else {
            failed.push(format!(
                "{name}: expected {:?}/{:?}, got {got:?}",
                tc.result.map(|v| format!("{v:#x}")),
                tc.error
            ));
        }
    }
    println!(
        "conformance: {passed} passed, {} failed, {} skipped",
        failed.len(),
        skipped.len()
    );
    for s in &skipped {
        println!("  skipped: {s}");
    }
    for f in &failed {
        println!("  FAILED: {f}");
    }
    assert!(
        files.len() > 300,
        "expected the full suite, found {} files",
        files.len()
    );
    assert!(failed.is_empty(), "{} conformance failures", failed.len());
}
