//! End-to-end tests on this machine's cgroup v1 memory controller: the
//! daemon binary, real allocating processes, real OOMs. Each test builds its
//! own subtree below this process's memcg (80M limit) and removes it.

#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::*;

const S: Duration = Duration::from_secs(1);

fn attach_arg(obj: &std::path::Path, cg: &str) -> String {
    format!("--attach={}={cg}", obj.display())
}

fn ends_with(v: &serde_json::Value, key: &str, suffix: &str) -> bool {
    v[key].as_str().is_some_and(|s| s.ends_with(suffix))
}

/// (1) The upstream selftest tree, `largest_leaf` at the parent: exactly
/// cg4's process dies; the kernel would have chosen cg1.
#[test]
fn largest_leaf_kills_exactly_cg4() {
    let Some(h) = v1_or_skip("largest_leaf_kills_exactly_cg4") else {
        return;
    };
    let Some(obj) = policy("largest_leaf.bpf.c") else {
        return;
    };
    let t = TestTree::v1_memory(&h, "ll", 80 << 20);
    for d in ["cg1", "cg2", "cg3", "cg3/cg4", "cg3/cg5"] {
        t.mkdir(d);
    }
    let mut d = DaemonProc::start("ll", &[attach_arg(&obj, &t.cg(""))]);
    assert!(d.wait_ready(10 * S), "daemon not ready: {}", d.stderr());
    assert_eq!(t.oom_control("", "oom_kill_disable"), Some(1));

    let mut cg1 = Alloc::start(&t.top.join("cg1"), 10, 1000, 60);
    assert!(cg1.ready(10 * S));
    // Upstream protects cg2 with oom_score_adj -1000. Without
    // CAP_SYS_RESOURCE (as in some containers) it holds 40M of page cache
    // instead, which largest_leaf does not count (usage - NR_FILE_PAGES).
    let mut cg2 = if can_protect() {
        Alloc::start(&t.top.join("cg2"), 40, -1000, 60)
    } else {
        eprintln!("NOTE: no CAP_SYS_RESOURCE; cg2 holds page cache instead of adj -1000");
        Alloc::start_kind(&t.top.join("cg2"), 40, 0, 60, "shm")
    };
    assert!(cg2.ready(10 * S));
    // 10 + 40 + 30 MiB plus the helpers' own memory: over 80M while cg4
    // allocates, so cg4 is the largest leaf when the OOM hits.
    let mut cg4 = Alloc::start(&t.top.join("cg3/cg4"), 30, 0, 60);
    let st = cg4.wait(20 * S);
    assert!(st.is_some(), "cg4 was not killed: {}", d.stderr());
    let kill = d
        .wait_record(5 * S, |r| r["event"] == "kill")
        .expect("kill record");
    assert_eq!(kill["pid"], cg4.pid(), "{kill}");
    assert!(ends_with(&kill, "cgroup", "/cg3/cg4"), "{kill}");
    assert!(
        kill["by"].as_str().unwrap_or("").starts_with("policy:"),
        "{kill}"
    );
    assert!(kill["latency_us"].as_u64().is_some(), "{kill}");
    let mut cg5 = Alloc::start(&t.top.join("cg3/cg5"), 20, 0, 60);
    assert!(cg5.ready(10 * S), "cg5 could not allocate after cg4 died");
    d.drain(S / 2);
    for r in &d.seen {
        eprintln!("{r}");
    }
    assert_eq!(d.events("kill").len(), 1, "{:?}", d.seen);
    assert!(cg1.alive() && cg2.alive() && cg5.alive());
    // The kernel OOM killer never ran.
    assert_eq!(t.oom_control("", "oom_kill"), Some(0));
    assert!(d
        .wait_record(S, |r| r["event"] == "resolved"
            && r["by"].as_str().is_some_and(|b| b.starts_with("policy:")))
        .is_some());
}

fn dump(d: &DaemonProc) {
    for r in &d.seen {
        eprintln!("{r}");
    }
}

/// (2) Chain fall-through: the child's instance fails, the parent's kills.
#[test]
fn failed_child_instance_falls_through_to_parent() {
    let Some(h) = v1_or_skip("failed_child_instance_falls_through_to_parent") else {
        return;
    };
    let (Some(fail), Some(ll)) = (
        policy("tests/always_fail.bpf.c"),
        policy("largest_leaf.bpf.c"),
    ) else {
        return;
    };
    let t = TestTree::v1_memory(&h, "chain", 80 << 20);
    t.mkdir("job");
    let mut d = DaemonProc::start(
        "chain",
        &[attach_arg(&ll, &t.cg("")), attach_arg(&fail, &t.cg("job"))],
    );
    assert!(d.wait_ready(10 * S), "daemon not ready: {}", d.stderr());
    // Cgroups created while the daemon runs are picked up (inotify).
    for d in ["job/a", "job/b", "other"] {
        t.mkdir(d);
    }
    t.write("job", "memory.limit_in_bytes", &(40u64 << 20).to_string());
    let deadline = std::time::Instant::now() + 2 * S;
    while t.oom_control("job/b", "oom_kill_disable") != Some(1) {
        assert!(std::time::Instant::now() < deadline, "job/b not watched");
        std::thread::sleep(S / 100);
    }
    let mut other = Alloc::start(&t.top.join("other"), 10, 0, 60);
    assert!(other.ready(10 * S));
    let mut a = Alloc::start(&t.top.join("job/a"), 10, 0, 60);
    assert!(a.ready(10 * S));
    let mut b = Alloc::start(&t.top.join("job/b"), 35, 0, 60);
    assert!(b.wait(20 * S).is_some(), "b was not killed: {}", d.stderr());
    let kill = d
        .wait_record(5 * S, |r| r["event"] == "kill")
        .expect("kill record");
    d.drain(S / 2);
    dump(&d);
    assert_eq!(kill["pid"], b.pid());
    assert_eq!(kill["by"], "policy:largest_leaf");
    // The victim's exit is recorded when its pidfd reports it.
    let exits = d.events("exit");
    assert!(
        exits.iter().any(|e| e["pid"] == b.pid()
            && ends_with(e, "cgroup", "/job/b")
            && e["after_ms"].is_u64()),
        "{exits:?}"
    );
    let handlers = d.events("handler");
    assert_eq!(handlers.len(), 2, "{handlers:?}");
    assert_eq!(handlers[0]["policy"], "always_fail");
    assert_eq!(handlers[0]["ret"], "failed");
    assert_eq!(handlers[1]["policy"], "largest_leaf");
    assert_eq!(handlers[1]["ret"], "processed");
    assert!(ends_with(&d.events("oom")[0], "memcg", "/job"));
    assert!(a.alive() && other.alive());
    assert_eq!(t.oom_control("job", "oom_kill"), Some(0));
}

/// (3) No instance frees memory: the kernel OOM killer kills, its oom_kill
/// counter rises, nothing hangs, and the cgroup is paused again after.
#[test]
fn kernel_fallback_when_no_policy_frees() {
    let Some(h) = v1_or_skip("kernel_fallback_when_no_policy_frees") else {
        return;
    };
    let Some(fail) = policy("tests/always_fail.bpf.c") else {
        return;
    };
    let t = TestTree::v1_memory(&h, "fallback", 80 << 20);
    t.mkdir("job");
    let mut d = DaemonProc::start("fallback", &[attach_arg(&fail, &t.cg(""))]);
    assert!(d.wait_ready(10 * S), "daemon not ready: {}", d.stderr());
    let mut hog = Alloc::start(&t.top.join("job"), 120, 0, 60);
    let st = hog.wait(20 * S).expect("the kernel did not kill the hog");
    assert!(!st.success());
    assert!(d
        .wait_record(5 * S, |r| r["event"] == "resolved" && r["by"] == "kernel")
        .is_some());
    // v1 counts the kill in the victim's memcg.
    assert_eq!(t.oom_control("job", "oom_kill"), Some(1));
    // The fallback ends: oom_kill_disable goes back to 1.
    let deadline = std::time::Instant::now() + 10 * S;
    while t.oom_control("", "oom_kill_disable") != Some(1) {
        assert!(std::time::Instant::now() < deadline, "not re-paused");
        std::thread::sleep(S / 20);
    }
    // The kernel's own report names its victim.
    let kill = d
        .wait_record(5 * S, |r| r["event"] == "kill")
        .expect("a kill record naming the kernel's victim");
    dump(&d);
    assert_eq!(d.events("fallback").len(), 1);
    assert_eq!(kill["by"], "kernel", "the policy killed nothing: {kill}");
    assert_eq!(kill["pid"], hog.pid(), "{kill}");
    assert!(ends_with(&kill, "cgroup", "/job"), "{kill}");
    assert!(
        d.events("kill").iter().all(|k| k["by"] == "kernel"),
        "the policy killed nothing"
    );
}

/// (4) raise_then_kill: the limit is raised twice from a 32M reserve and
/// the allocator finishes; the next OOM, with the reserve spent, kills.
#[test]
fn raise_then_kill_raises_then_kills() {
    let Some(h) = v1_or_skip("raise_then_kill_raises_then_kills") else {
        return;
    };
    let Some(rtk) = policy("raise_then_kill.bpf.c") else {
        return;
    };
    let t = TestTree::v1_memory(&h, "rtk", 120 << 20);
    t.mkdir("job");
    t.write("job", "memory.limit_in_bytes", &(40u64 << 20).to_string());
    let dir = scratch("rtk-config");
    let cfg = dir.join("bpfoom.toml");
    std::fs::write(
        &cfg,
        format!(
            "[daemon]\nhandler_time_limit_ms = 2000\n\n[[attach]]\npolicy = \"{}\"\ncgroup = \"{}\"\nlimit_reserve = \"32M\"\nglobals = {{ raise_step = {} }}\n",
            rtk.display(),
            t.cg("job"),
            16u64 << 20
        ),
    )
    .unwrap();
    let mut d = DaemonProc::start("rtk", &[format!("--config={}", cfg.display())]);
    assert!(d.wait_ready(10 * S), "daemon not ready: {}", d.stderr());
    let mut big = Alloc::start(&t.top.join("job"), 60, 0, 60);
    assert!(
        big.ready(20 * S),
        "allocator did not finish: {}",
        d.stderr()
    );
    d.wait_record(5 * S, |r| r["event"] == "limit_raised");
    d.drain(S / 2);
    let raised = d.events("limit_raised");
    assert_eq!(raised.len(), 2, "{raised:?}");
    assert_eq!(raised[1]["limit"], 72u64 << 20);
    assert_eq!(
        t.read("job", "memory.limit_in_bytes").trim(),
        (72u64 << 20).to_string()
    );
    assert!(d.events("kill").is_empty());
    // The reserve is spent: the next OOM kills the largest task.
    let more = Alloc::start(&t.top.join("job"), 30, 0, 60);
    let kill = d
        .wait_record(20 * S, |r| r["event"] == "kill")
        .unwrap_or_else(|| panic!("no kill: {}", d.stderr()));
    assert_eq!(kill["pid"], big.pid(), "{kill}");
    assert!(big.wait(10 * S).is_some());
    assert!(more.ready(20 * S), "the second allocator could not finish");
    d.drain(S / 2);
    dump(&d);
    assert_eq!(d.events("limit_raised").len(), 2);
    assert_eq!(t.oom_control("job", "oom_kill"), Some(0));
}

/// (5) The daemon is SIGKILLed while a cgroup is paused in OOM: the
/// guardian un-pauses it and the kernel resolves the OOM within 1 s.
#[test]
fn daemon_sigkill_while_paused_is_resolved_within_a_second() {
    let Some(h) = v1_or_skip("daemon_sigkill_while_paused") else {
        return;
    };
    let Some(backoff) = policy("tests/backoff.bpf.c") else {
        return;
    };
    let t = TestTree::v1_memory(&h, "crash", 80 << 20);
    t.mkdir("job");
    let dir = scratch("crash-config");
    let cfg = dir.join("bpfoom.toml");
    // BACKOFF with a 30 s wait: the daemon sits in the OOM with the cgroup paused.
    std::fs::write(
        &cfg,
        format!(
            "[[attach]]\npolicy = \"{}\"\ncgroup = \"{}\"\nbackoff_budget = 5\nbackoff_timeout_ms = 30000\n",
            backoff.display(),
            t.cg("")
        ),
    )
    .unwrap();
    let mut d = DaemonProc::start("crash", &[format!("--config={}", cfg.display())]);
    assert!(d.wait_ready(10 * S), "daemon not ready: {}", d.stderr());
    let mut hog = Alloc::start(&t.top.join("job"), 120, 0, 60);
    d.wait_record(10 * S, |r| r["event"] == "backoff")
        .unwrap_or_else(|| panic!("no backoff: {}", d.stderr()));
    std::thread::sleep(S / 5);
    assert_eq!(t.oom_control("", "under_oom"), Some(1), "not paused");
    assert!(hog.alive());
    let state = std::fs::read_to_string(&d.state).unwrap_or_default();
    assert!(
        state.contains("memory.oom_control 0"),
        "state file: {state:?}"
    );
    let killed_at = std::time::Instant::now();
    d.signal(libc::SIGKILL);
    let st = hog.wait(S).unwrap_or_else(|| {
        panic!(
            "OOM still paused 1 s after the daemon died: {}",
            t.read("", "memory.oom_control")
        )
    });
    let took = killed_at.elapsed();
    eprintln!("resolved {took:?} after SIGKILL");
    assert!(!st.success());
    assert_eq!(t.oom_control("", "oom_kill_disable"), Some(0));
    assert_eq!(t.oom_control("job", "oom_kill"), Some(1));
    // A new daemon reconciles the (already restored) state and starts clean.
    let mut d2 = DaemonProc::start("crash2", &[attach_arg(&backoff, &t.cg(""))]);
    assert!(d2.wait_ready(10 * S), "{}", d2.stderr());
    assert_eq!(t.oom_control("", "oom_kill_disable"), Some(1));
    d2.signal(libc::SIGTERM);
    assert!(d2.wait_exit(5 * S).is_some_and(|s| s.success()));
    // SIGTERM restores everything.
    assert_eq!(t.oom_control("", "oom_kill_disable"), Some(0));
    assert_eq!(t.oom_control("job", "oom_kill_disable"), Some(0));
}

/// (6) Bad inputs give clear errors and change nothing; the daemon keeps
/// serving.
#[test]
fn bad_inputs_are_refused_and_the_daemon_keeps_serving() {
    let Some(h) = v1_or_skip("bad_inputs") else {
        return;
    };
    let Some(ll) = policy("largest_leaf.bpf.c") else {
        return;
    };
    let bad_src = r#"
#include <bpf_oom.h>
char _license[] SEC("license") = "GPL";
SEC("struct_ops.s/handle_out_of_memory")
int BPF_PROG(null_deref, struct oom_control *oc, struct cgroup *cgrp)
{
	/* oc->memcg is NULL for a global OOM: the verifier must refuse this. */
	return oc->memcg->css.id;
}
SEC(".struct_ops.link")
struct bpf_oom_ops null_deref_ops = { .handle_out_of_memory = (void *)null_deref, .name = "null_deref" };
"#;
    let bad = match bpfoom_testutil::compile_str("e2e_null_deref", bad_src, &[]) {
        Ok(bad) => bad,
        // `policy()` above already required clang: a compile error here is
        // a broken fixture, not a missing tool.
        Err(e) => panic!("the unverifiable policy must compile: {e}"),
    };
    let t = TestTree::v1_memory(&h, "bad", 80 << 20);
    t.mkdir("a");
    let mut d = DaemonProc::start("bad", &[attach_arg(&ll, &t.cg(""))]);
    assert!(d.wait_ready(10 * S), "daemon not ready: {}", d.stderr());
    let sock = d.socket.display().to_string();
    let before = t.read("a", "memory.oom_control");

    let (code, _, err) = client(&[
        "attach",
        &bad.display().to_string(),
        "--cgroup",
        &t.cg("a"),
        "--socket",
        &sock,
    ]);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("verification failed") || err.contains("rejected"),
        "{err}"
    );
    assert_eq!(
        t.read("a", "memory.oom_control"),
        before,
        "a rejected policy changed nothing"
    );

    let dir = scratch("bad-files");
    let corrupt = dir.join("corrupt.bpf.o");
    std::fs::write(&corrupt, b"\x7fELF\x02\x01\x01garbage").unwrap();
    let (code, _, err) = client(&[
        "attach",
        &corrupt.display().to_string(),
        "--cgroup",
        &t.cg("a"),
        "--socket",
        &sock,
    ]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("corrupt.bpf.o"), "{err}");

    let (code, _, err) = client(&[
        "attach",
        &ll.display().to_string(),
        "--cgroup",
        &t.cg("nope"),
        "--socket",
        &sock,
    ]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("no cgroup") && err.contains("nope"), "{err}");

    let (code, _, err) = client(&[
        "attach",
        &ll.display().to_string(),
        "--cgroup",
        &t.cg(""),
        "--socket",
        &sock,
    ]);
    assert_eq!(code, 1, "second instance at the same cgroup: {err}");
    assert!(err.contains("already attached"), "{err}");

    let cfg = dir.join("bad.toml");
    std::fs::write(&cfg, "[daemon]\nsocket = \"/tmp/x\"\nsokcet = 1\n").unwrap();
    let (code, _, err) = client(&["run", "--config", &cfg.display().to_string()]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("bad.toml:3") && err.contains("sokcet"),
        "{err}"
    );

    let (code, _, err) = client(&["detach", "--cgroup", &t.cg("a"), "--socket", &sock]);
    assert_eq!(code, 2, "{err}");

    // Still serving: status lists the one good instance.
    let (code, out, err) = client(&["status", "--json", "--socket", &sock]);
    assert_eq!(code, 0, "{err}");
    let st: serde_json::Value = serde_json::from_str(out.trim()).expect("status JSON");
    let inst = st["instances"].as_array().expect("instances");
    assert_eq!(inst.len(), 1, "{st}");
    assert_eq!(inst[0]["name"], "largest_leaf");
    assert!(
        st["counters"]["rejected_requests"].as_u64() >= Some(4),
        "{st}"
    );
    let (code, out, _) = client(&["status", "--socket", &sock]);
    assert_eq!(code, 0);
    assert!(out.contains("largest_leaf"), "{out}");
    // And it still handles OOMs.
    let mut hog = Alloc::start(&t.top.join("a"), 120, 0, 60);
    assert!(hog.wait(20 * S).is_some());
    assert!(
        d.wait_record(5 * S, |r| r["event"] == "kill").is_some(),
        "{}",
        d.stderr()
    );
    // A good attach and detach work.
    let (code, out, err) = client(&["detach", "--cgroup", &t.cg(""), "--socket", &sock]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("detached largest_leaf"), "{out}");
    assert_eq!(
        t.oom_control("", "oom_kill_disable"),
        Some(0),
        "detach un-pauses"
    );
}

/// --dry-run: policies run and say what they would do; nothing is paused,
/// the kernel OOM killer does its normal job.
#[test]
fn dry_run_observes_and_the_kernel_acts() {
    let Some(h) = v1_or_skip("dry_run_observes_and_the_kernel_acts") else {
        return;
    };
    let Some(ll) = policy("largest_leaf.bpf.c") else {
        return;
    };
    let t = TestTree::v1_memory(&h, "dry", 80 << 20);
    t.mkdir("job");
    let mut d = DaemonProc::start("dry", &[attach_arg(&ll, &t.cg("")), "--dry-run".into()]);
    assert!(d.wait_ready(10 * S), "daemon not ready: {}", d.stderr());
    assert_eq!(t.oom_control("", "oom_kill_disable"), Some(0));
    let mut hog = Alloc::start(&t.top.join("job"), 120, 0, 60);
    assert!(
        hog.wait(20 * S).is_some(),
        "the kernel did not kill the hog"
    );
    let oom = d
        .wait_record(5 * S, |r| r["event"] == "oom")
        .unwrap_or_else(|| panic!("the OOM was not observed: {}", d.stderr()));
    assert_eq!(oom["dry_run"], true);
    assert!(ends_with(&oom, "memcg", &t.top_rel));
    d.drain(S / 2);
    dump(&d);
    assert_eq!(
        t.oom_control("job", "oom_kill"),
        Some(1),
        "the kernel killed"
    );
    assert_eq!(
        t.oom_control("", "oom_kill_disable"),
        Some(0),
        "never paused"
    );
    assert!(d.seen.iter().all(|r| r["dry_run"] == true));
    // The kernel's kill is recorded from its own report, and what the
    // policy would have killed names the victim's real cgroup.
    let kills = d.events("kill");
    assert!(
        kills.iter().any(|k| k["by"] == "kernel"
            && k["pid"] == hog.pid()
            && ends_with(k, "cgroup", "/job")),
        "{kills:?}"
    );
    for k in kills.iter().filter(|k| k["by"] != "kernel") {
        assert!(ends_with(k, "cgroup", "/job"), "{k}");
    }
}
