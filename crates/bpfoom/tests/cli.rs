//! End-to-end tests of the `bpfoom` binary: output contents and exit codes.

// Test helpers may panic: a panic is a test failure with its message.
#![allow(clippy::unwrap_used)]

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

/// The BTF types behind a policy's maps and globals: what `--map`, `--set`,
/// config `maps`/`globals` and scenario `entries` write, field by field.
#[test]
fn inspect_shows_the_types_configuration_fills() {
    let Some(obj) = bpfoom_testutil::compile_or_skip(
        &bpfoom_testutil::repo_root().join("bpf/policies/tests/upstream/test_oomd.bpf.c"),
        &[],
    ) else {
        return;
    };
    let o = bpfoom(&["inspect", obj.to_str().unwrap()]);
    let out = stdout(&o);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        out.contains(
            "    key u64, value struct oomd_policy { u8 preference; u8 recursive_kill; u64 last_pgscan; }"
        ),
        "{out}"
    );
    assert!(out.contains("    best: struct best { u64 id;"), "{out}");
    let Some(obj) = example("largest_rss") else {
        return;
    };
    let out = stdout(&bpfoom(&["inspect", obj.to_str().unwrap()]));
    assert!(out.contains("    protected: char[4][16]"), "{out}");
    assert!(out.contains("    last_victim_pid: s32"), "{out}");
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
    assert!(out.contains("memcg_has_oom_protected_tasks:"), "{out}");
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
    if !bpfoom_testutil::require_clang() {
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
    if !bpfoom_testutil::require_clang() {
        return;
    }
    let dir = std::env::temp_dir().join(format!("bpfoom-demo-test-{}", std::process::id()));
    let o = bpfoom(&["demo", "--out-dir", dir.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    for name in [
        "largest_leaf",
        "raise_then_kill",
        "psi_early",
        "oomd_like",
        "k8s_qos",
    ] {
        assert!(
            out.contains(&format!("{name}_oom")) || name == "psi_early",
            "{out}"
        );
        assert!(dir.join(format!("{name}.bpf.o")).is_file());
    }
    // The selftest outcome: cg4's process (pid 103) dies, by the policy.
    assert!(out.contains(r#""event":"kill","pid":103"#), "{out}");
    assert!(out.contains(r#""by":"policy:largest_leaf""#), "{out}");
    assert!(
        out.contains(r#""ok":true"#) && !out.contains(r#""ok":false"#),
        "{out}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

fn scenario(name: &str) -> String {
    let p = bpfoom_testutil::repo_root()
        .join("bpf/policies/tests")
        .join(name);
    p.to_str().unwrap().to_string()
}

#[test]
fn sim_builds_missing_objects_and_reports_expectations() {
    if !bpfoom_testutil::require_clang() {
        return;
    }
    let dir = std::env::temp_dir().join(format!("bpfoom-sim-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    // A copy whose policy path points at the source tree: the object does
    // not exist, so `sim` compiles the .bpf.c beside it.
    let policy = bpfoom_testutil::repo_root().join("bpf/policies/largest_leaf.bpf.o");
    let text = std::fs::read_to_string(scenario("largest_leaf.toml"))
        .unwrap()
        .replace(
            "\"bpf/policies/largest_leaf.bpf.o\"",
            &format!("{:?}", policy.to_str().unwrap()),
        );
    let good = dir.join("good.toml");
    std::fs::write(&good, &text).unwrap();
    let o = bpfoom(&["sim", good.to_str().unwrap()]);
    assert!(o.status.success(), "{}{}", stdout(&o), stderr(&o));
    assert!(
        stdout(&o).contains(r#""event":"kill","pid":103"#),
        "{}",
        stdout(&o)
    );

    // The same run with a wrong expectation: exit 1, naming it.
    let wrong = dir.join("wrong.toml");
    std::fs::write(&wrong, text.replace("killed = [103]", "killed = [101]")).unwrap();
    let o = bpfoom(&["sim", wrong.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(stderr(&o).contains("expectations failed"), "{}", stderr(&o));

    // A malformed scenario: exit 2 with file and line.
    let bad = dir.join("bad.toml");
    std::fs::write(&bad, "[host]\nmemory = \"8G\"\n[[cgroup]]\npath = 7\n").unwrap();
    let o = bpfoom(&["sim", bad.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("bad.toml:"), "{}", stderr(&o));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn verify_accepts_every_example_policy() {
    for src in bpfoom_testutil::policy_sources() {
        let Some(obj) = bpfoom_testutil::compile_or_skip(&src, &[]) else {
            return;
        };
        let o = bpfoom(&["verify", obj.to_str().unwrap()]);
        let out = stdout(&o);
        assert!(o.status.success(), "{}: {out}{}", src.display(), stderr(&o));
        assert!(out.contains(": verified: "), "{out}");
        assert!(
            out.contains("insns processed") && out.contains("peak"),
            "{out}"
        );
    }
}

/// Compiles a one-callback OOM policy whose handler body is `body`.
fn oom_policy(name: &str, body: &str) -> Option<std::path::PathBuf> {
    if !bpfoom_testutil::require_clang() {
        return None;
    }
    let code = format!(
        "#include <bpf_oom.h>\nchar _license[] SEC(\"license\") = \"GPL\";\n\
         SEC(\"struct_ops.s/handle_out_of_memory\")\n\
         int BPF_PROG(h, struct oom_control *oc, struct cgroup *cgrp)\n{{\n{body}\n}}\n\
         SEC(\".struct_ops.link\") struct bpf_oom_ops p = {{ .handle_out_of_memory = (void *)h }};\n"
    );
    Some(bpfoom_testutil::compile_str(name, &code, &[]).expect("compile"))
}

#[test]
fn verify_rejects_with_a_kernel_style_log_and_exit_1() {
    let cases = [
        ("null_memcg", "return oc->memcg->oom_group;", "may be NULL"),
        // clang 14 reloads `oc->memcg` after the check; each load is a new
        // maybe-NULL pointer, as in the kernel, so this is rejected too.
        (
            "reloaded",
            "return oc->memcg ? oc->memcg->oom_group : 0;",
            "may be NULL",
        ),
        // An int field can hold anything: not a valid return code.
        (
            "ret_range",
            "return cgrp->level;",
            "should have been in [0, 2]",
        ),
        (
            "past_oc",
            "return (oc + 1)->bpf_memory_freed;",
            "beyond struct oom_control",
        ),
        (
            "leak",
            "struct mem_cgroup *m = bpf_get_root_mem_cgroup(); if (!m) return 0; return 1;",
            "Unreleased reference",
        ),
    ];
    for (name, body, reason) in cases {
        let Some(obj) = oom_policy(name, body) else {
            return;
        };
        let o = bpfoom(&["verify", obj.to_str().unwrap()]);
        assert_eq!(o.status.code(), Some(1), "{name}: {}", stderr(&o));
        let out = stdout(&o);
        assert!(out.contains("verification failed"), "{name}: {out}");
        assert!(out.contains(reason), "{name}: {out}");
        assert!(
            out.contains(".bpf.c:"),
            "{name}: C source line missing: {out}"
        );
        assert!(
            stderr(&o).contains("rejected at insn"),
            "{name}: {}",
            stderr(&o)
        );
    }
    // The accepted neighbour of the NULL case.
    let Some(obj) = oom_policy(
        "null_checked",
        "struct mem_cgroup *m = oc->memcg; if (m && m->oom_group) return 1; return 0;",
    ) else {
        return;
    };
    let o = bpfoom(&["verify", "-v", obj.to_str().unwrap()]);
    assert!(o.status.success(), "{}{}", stdout(&o), stderr(&o));
    assert!(
        stdout(&o).lines().count() > 3,
        "-v prints the log: {}",
        stdout(&o)
    );
}

#[test]
fn verify_bad_object_exits_2() {
    let o = bpfoom(&["verify", "/nonexistent.bpf.o"]);
    assert_eq!(o.status.code(), Some(2));
}

#[test]
fn daemon_verbs_are_wired_with_their_exit_codes() {
    let dir = std::env::temp_dir().join(format!("bpfoom-daemon-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    // No daemon behind this socket: a clear error, exit 2.
    let sock = dir.join("none.sock");
    let o = bpfoom(&["status", "--socket", sock.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("none.sock"), "{}", stderr(&o));
    // A bad config: exit 2 naming the file and line.
    let cfg = dir.join("bad.toml");
    std::fs::write(&cfg, "[daemon]\nsokcet = 1\n").unwrap();
    let o = bpfoom(&["run", "--config", cfg.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("bad.toml:"), "{}", stderr(&o));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn verify_prints_warnings_of_a_program_that_verifies() {
    if !bpfoom_testutil::require_clang() {
        return;
    }
    // The first argument is really a struct oom_control: the CO-RE access
    // of a mem_cgroup field verifies (offset 0 is a pointer there too) but
    // is not what the program meant.
    let code = "#include <bpf_oom.h>\nchar _license[] SEC(\"license\") = \"GPL\";\n\
         SEC(\"struct_ops.s/handle_out_of_memory\")\n\
         int BPF_PROG(h, struct mem_cgroup *memcg, struct cgroup *cgrp)\n\
         { return memcg->css.cgroup != 0; }\n\
         SEC(\".struct_ops.link\") struct bpf_oom_ops p = { .handle_out_of_memory = (void *)h };\n";
    let obj = bpfoom_testutil::compile_str("cli_core_warning", code, &[]).unwrap();
    let o = bpfoom(&["verify", obj.to_str().unwrap()]);
    let out = stdout(&o);
    assert!(o.status.success(), "{out}{}", stderr(&o));
    assert!(
        out.contains("h: warning: ") && out.contains("points to struct oom_control"),
        "{out}"
    );
}
