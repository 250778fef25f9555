//! End-to-end tests of the `bpfoom` binary: output contents and exit codes.

use std::path::Path;
use std::process::{Command, Output};

fn bpfoom(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_bpfoom"))
        .args(args)
        .output()
        .expect("run bpfoom")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn example(name: &str) -> Option<std::path::PathBuf> {
    let src = bpfoom_testutil::repo_root().join(format!("bpf/policies/{name}.bpf.c"));
    bpfoom_testutil::compile_or_skip(&src, &[])
}

#[test]
fn inspect_largest_leaf() {
    let Some(obj) = example("largest_leaf") else {
        return;
    };
    let o = bpfoom(&["inspect", obj.to_str().unwrap()]);
    let out = stdout(&o);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(out.contains("license: GPL"), "{out}");
    assert!(
        out.contains("struct bpf_oom_ops name=\"largest_leaf\""),
        "{out}"
    );
    assert!(out.contains(".handle_out_of_memory"), "{out}");
    assert!(out.contains("-> largest_leaf_oom"), "{out}");
    assert!(out.contains("sleepable"), "{out}");
    for k in [
        "bpf_oom_kill_process",
        "bpf_get_mem_cgroup",
        "bpf_mem_cgroup_usage",
        "bpf_mem_cgroup_page_state",
        "bpf_iter_css_new",
        "bpf_iter_css_task_next",
        "bpf_task_acquire",
    ] {
        assert!(out.contains(k), "kfunc {k} missing:\n{out}");
    }
    assert!(
        out.contains("oom_control.memcg"),
        "CO-RE relocation not listed:\n{out}"
    );
    assert!(out.contains("signal_struct.oom_score_adj"), "{out}");
}

#[test]
fn inspect_maps_and_psi() {
    let Some(obj) = example("raise_then_kill") else {
        return;
    };
    let o = bpfoom(&["inspect", obj.to_str().unwrap()]);
    let out = stdout(&o);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(out.contains("events") && out.contains("ringbuf"), "{out}");
    assert!(out.contains("counters") && out.contains("array"), "{out}");
    assert!(
        out.contains("read-only"),
        ".rodata must be listed read-only:\n{out}"
    );
    assert!(out.contains("bpf_ringbuf_reserve"), "{out}");
    assert!(out.contains(".handle_cgroup_offline"), "{out}");

    let Some(obj) = example("psi_early") else {
        return;
    };
    let o = bpfoom(&["inspect", obj.to_str().unwrap()]);
    let out = stdout(&o);
    assert!(out.contains("struct bpf_psi_ops"), "{out}");
    assert!(
        out.contains("bpf_out_of_memory") && out.contains("bpf_psi_create_trigger"),
        "{out}"
    );
    assert!(out.contains("bpf_trace_printk"), "{out}");
}

#[test]
fn inspect_disasm_names_calls() {
    let Some(obj) = example("largest_leaf") else {
        return;
    };
    let o = bpfoom(&["inspect", "--disasm", obj.to_str().unwrap()]);
    let out = stdout(&o);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(out.contains("bpf_oom_kill_process"), "{out}");
    assert!(out.contains("exit"), "{out}");
    // The static subprogram is appended and labelled.
    assert!(out.contains("cgroup_has_oom_protected_tasks:"), "{out}");
}

#[test]
fn bad_input_exits_2_with_one_line() {
    let dir = std::env::temp_dir().join(format!("bpfoom-cli-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let junk = dir.join("junk.o");
    std::fs::write(&junk, b"this is not an ELF file").unwrap();
    for args in [
        vec!["inspect", junk.to_str().unwrap()],
        vec!["inspect", "/nonexistent/policy.bpf.o"],
        vec!["build", "/nonexistent/policy.bpf.c"],
        vec!["frobnicate"],
    ] {
        let o = bpfoom(&args);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", stderr(&o));
        assert!(!stderr(&o).is_empty(), "{args:?}");
    }
    let o = bpfoom(&["inspect", junk.to_str().unwrap()]);
    assert_eq!(stderr(&o).trim_end().lines().count(), 1, "{}", stderr(&o));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn build_reports_compile_errors_and_writes_objects() {
    if bpfoom_testutil::clang().is_none() {
        eprintln!("SKIP: clang not found");
        return;
    }
    let dir = std::env::temp_dir().join(format!("bpfoom-build-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let bad = dir.join("bad.bpf.c");
    std::fs::write(&bad, "#include <bpf_oom.h>\nint broken( {\n").unwrap();
    let o = bpfoom(&["build", bad.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("clang failed"), "{}", stderr(&o));

    let src = bpfoom_testutil::repo_root().join("bpf/policies/psi_early.bpf.c");
    let out = dir.join("psi.o");
    let o = bpfoom(&["build", src.to_str().unwrap(), "-o", out.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(Path::new(&out).is_file());
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn demo_runs_on_the_bundled_examples() {
    if bpfoom_testutil::clang().is_none() {
        eprintln!("SKIP: clang not found");
        return;
    }
    let dir = std::env::temp_dir().join(format!("bpfoom-demo-test-{}", std::process::id()));
    let o = bpfoom(&["demo", "--out-dir", dir.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    for name in ["largest_leaf", "raise_then_kill", "psi_early"] {
        assert!(out.contains(&format!("name=\"{name}\"")), "{out}");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}
