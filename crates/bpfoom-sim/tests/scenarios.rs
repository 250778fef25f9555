//! Runs every scenario in `bpf/policies/tests/` against the policies built
//! from source, and checks that expectations can fail.

#![allow(clippy::unwrap_used)] // test helpers

use std::path::{Path, PathBuf};

use bpfoom_engine::Verifier;
use bpfoom_sim::{run_scenario, Outcome, SimOptions};
use bpfoom_testutil::{compile_or_skip, repo_root};

/// Resolves `dir/NAME.bpf.o` by compiling `dir/NAME.bpf.c` (relative to the
/// repository root or the scenario's directory).
fn load(policy: &str, base: &Path) -> Result<Vec<u8>, String> {
    let src = policy
        .strip_suffix(".o")
        .map(|s| format!("{s}.c"))
        .ok_or_else(|| format!("{policy}: expected a .bpf.o path"))?;
    let candidates = [repo_root().join(&src), base.join(&src)];
    let src = candidates
        .iter()
        .find(|p| p.is_file())
        .ok_or_else(|| format!("no source for {policy}"))?;
    let obj = compile_or_skip(src, &[]).ok_or("clang missing")?;
    std::fs::read(&obj).map_err(|e| e.to_string())
}

fn scenarios() -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(repo_root().join("bpf/policies/tests"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    v.sort();
    v
}

/// Runs a scenario on the JIT and on the interpreter: the records must be
/// the same, byte for byte; returns the JIT's run.
fn run_text(text: &str, path: &Path) -> (Result<Outcome, bpfoom_sim::SimError>, String) {
    let [jit, interp] = bpfoom_engine::VmBackend::ALL.map(|vm| {
        let opts = SimOptions {
            base_dir: path.parent().unwrap().to_path_buf(),
            loader: &load,
            check: &Verifier::default(),
            engine: bpfoom_engine::EngineConfig {
                vm,
                ..Default::default()
            },
        };
        let mut out = Vec::new();
        let r = run_scenario(text, &path.display().to_string(), &opts, &mut out);
        (r, String::from_utf8(out).unwrap())
    });
    assert_eq!(
        jit.1,
        interp.1,
        "{}: the JIT and the interpreter differ",
        path.display()
    );
    jit
}

#[test]
fn every_scenario_holds() {
    if !bpfoom_testutil::require_clang() {
        return;
    }
    let all = scenarios();
    assert!(all.len() >= 8, "{all:?}");
    for path in all {
        let text = std::fs::read_to_string(&path).unwrap();
        let (r, out) = run_text(&text, &path);
        let outcome = r.unwrap_or_else(|e| panic!("{}: {e}\n{out}", path.display()));
        assert!(
            outcome.failures.is_empty(),
            "{}: {:?}\n{out}",
            path.display(),
            outcome.failures
        );
        assert!(outcome.expects > 0, "{}", path.display());
        assert_eq!(outcome.leaked_refs, 0, "{}\n{out}", path.display());
        for line in out.lines() {
            let v: serde_json::Value = serde_json::from_str(line).unwrap();
            assert!(v["event"].is_string(), "{line}");
            assert_ne!(v["event"], "error", "{}: {line}", path.display());
        }
    }
}

#[test]
fn a_wrong_expectation_fails_with_its_line() {
    if !bpfoom_testutil::require_clang() {
        return;
    }
    for path in scenarios() {
        let text = std::fs::read_to_string(&path).unwrap();
        let n = text.lines().count();
        let wrong = format!("{text}\n[[expect]]\nkilled = [424242]\n");
        let (r, _) = run_text(&wrong, &path);
        let o = r.unwrap();
        assert_eq!(o.exit_code(), 1, "{}", path.display());
        assert_eq!(o.failures.len(), 1, "{}: {:?}", path.display(), o.failures);
        assert!(
            o.failures[0].contains(&format!("line {}", n + 2)),
            "{:?}",
            o.failures
        );
    }
}

#[test]
fn bad_scenarios_name_the_line_and_reason() {
    if !bpfoom_testutil::require_clang() {
        return;
    }
    let path = repo_root().join("bpf/policies/tests/bad.toml");
    let base = "[host]\nmemory = \"8G\"\n[[cgroup]]\npath = \"/job\"\nlimit = \"80M\"\n";
    let attach =
        |p: &str| format!("[[attach]]\npolicy = \"bpf/policies/{p}.bpf.o\"\ncgroup = \"/job\"\n");
    let cases = [
        // A second instance on the same cgroup: the error names the holder.
        (
            format!(
                "{base}{}{}",
                attach("largest_leaf"),
                attach("tests/always_fail")
            ),
            9,
            "largest_leaf is already attached",
        ),
        (
            format!("{base}[[process]]\npid = 5\ncgroup = \"/nope\"\n"),
            6,
            "no cgroup /nope",
        ),
        (
            format!("{base}[[process]]\npid = 5\ncgroup = \"/job\"\nrss = \"81M\"\n"),
            6,
            "initial usage exceeds",
        ),
        (
            format!("{base}[[step]]\nexit = {{ pid = 77 }}\n"),
            6,
            "no process 77",
        ),
        (
            format!("{base}[[step]]\nalloc = {{ pid = 1, bytes = \"1X\" }}\n"),
            7,
            "unknown suffix",
        ),
        (
            format!("{base}[[attach]]\npolicy = \"missing.bpf.o\"\ncgroup = \"/job\"\n"),
            6,
            "no source for missing.bpf.o",
        ),
        // Globals and map entries name the line of the value itself.
        (
            format!("{base}{}globals = {{ nope = 1 }}\n", attach("largest_leaf")),
            9,
            "no global variable nope",
        ),
        (
            format!(
                "{base}{}entries = [{{ map = \"prefs\", key = \"/job\", value = 4294967296 }}]\n",
                attach("oomd_like")
            ),
            9,
            "map prefs value: 4294967296 is out of range for u32 (0..=4294967295)",
        ),
        (
            format!(
                "{base}{}entries = [\n  {{ map = \"prefs\", key = 1, value = 1 }},\n  {{ map = \"prefs\", key = \"/nope\", value = 1 }},\n]\n",
                attach("oomd_like")
            ),
            11,
            "map prefs key: cgroup /nope: no such cgroup",
        ),
        (
            format!(
                "{base}{}entries = [{{ map = \"prefs\", key = 1, value = {{ preference = 1 }} }}]\n",
                attach("oomd_like")
            ),
            9,
            "u32 takes an integer or a cgroup path, not a table",
        ),
        (
            format!(
                "{base}{}entries = [{{ map = \"nomap\", key = 1, value = 1 }}]\n",
                attach("oomd_like")
            ),
            9,
            "no map nomap",
        ),
        (format!("{base}[[expect]]\n"), 6, "at least one of"),
        // The verifier is the gate: a reference leak never attaches.
        (
            format!("{base}{}", attach("tests/leaky")),
            6,
            "policy leaky rejected",
        ),
    ];
    for (text, line, reason) in cases {
        let (r, _) = run_text(&text, &path);
        match r {
            Err(bpfoom_sim::SimError::Scenario {
                line: l, source, ..
            }) => {
                let why = source.to_string();
                assert_eq!(l, line, "{why}\n{text}");
                assert!(why.contains(reason), "{why}\n{text}");
            }
            other => panic!("{other:?}\n{text}"),
        }
    }
}

/// Every kind of expectation in the scenarios is live: flipping it fails.
#[test]
fn mutated_expectations_fail() {
    if !bpfoom_testutil::require_clang() {
        return;
    }
    let mutations: [(&str, &str); 5] = [
        ("fallback = true", "fallback = false"),
        ("fallback = false", "fallback = true"),
        ("result = \"processed\"", "result = \"failed\""),
        ("survivors = [", "survivors = [424242, "),
        ("bytes = \"228M\"", "bytes = \"164M\""),
    ];
    let mut tried = 0;
    for path in scenarios() {
        let text = std::fs::read_to_string(&path).unwrap();
        for (from, to) in mutations {
            if !text.contains(from) {
                continue;
            }
            tried += 1;
            let (r, _) = run_text(&text.replacen(from, to, 1), &path);
            let o = r.unwrap();
            assert_eq!(
                o.exit_code(),
                1,
                "{} with {from:?} -> {to:?}",
                path.display()
            );
        }
    }
    assert!(tried >= 20, "{tried}");
}
