//! Upstream's selftests (fixtures in `bpf/policies/tests/upstream/`) and the
//! `task->mm` example through the real daemon on this machine's cgroup v1
//! memory controller: real allocating processes, real OOMs, each test in its
//! own subtree below this process's memcg (removed at the end, also on
//! failure).

#![allow(clippy::unwrap_used)]

mod common;

use std::path::Path;
use std::time::Duration;

use common::*;

const S: Duration = Duration::from_secs(1);

fn write_config(name: &str, body: &str) -> std::path::PathBuf {
    let cfg = scratch(name).join("bpfoom.toml");
    std::fs::write(
        &cfg,
        format!("[daemon]\nhandler_time_limit_ms = 2000\n\n{body}"),
    )
    .unwrap();
    cfg
}

/// One run of the oomd-style fixture on a fresh tree T (80M) with leaves
/// a (45M), b (25M) and c, whose allocation hits the limit: returns
/// (pid killed, [a, b, c] pids). `maps` is the `[[attach]]`'s maps line,
/// `{a}` replaced by a's cgroup path.
fn oomd_run(name: &str, obj: &Path, maps: &str) -> Option<(i64, [i32; 3])> {
    let h = v1_or_skip(name)?;
    let t = TestTree::v1_memory(&h, name, 80 << 20);
    for d in ["a", "b", "c"] {
        t.mkdir(d);
    }
    let maps = maps.replace("{a}", &t.cg("a"));
    let cfg = write_config(
        &format!("{name}-cfg"),
        &format!(
            "[[attach]]\npolicy = \"{}\"\ncgroup = \"{}\"\n{maps}\n",
            obj.display(),
            t.cg("")
        ),
    );
    let mut d = DaemonProc::start(name, &[format!("--config={}", cfg.display())]);
    assert!(d.wait_ready(10 * S), "daemon not ready: {}", d.stderr());
    let a = Alloc::start(&t.top.join("a"), 45, 0, 60);
    assert!(a.ready(10 * S));
    let b = Alloc::start(&t.top.join("b"), 25, 0, 60);
    assert!(b.ready(10 * S));
    // c's 20M do not fit next to a, b and the helpers' own memory.
    let c = Alloc::start(&t.top.join("c"), 20, 0, 60);
    let kill = d
        .wait_record(20 * S, |r| r["event"] == "kill")
        .unwrap_or_else(|| panic!("no kill: {}", d.stderr()));
    d.drain(S / 2);
    for r in &d.seen {
        eprintln!("{r}");
    }
    assert!(
        kill["by"].as_str().unwrap_or("").starts_with("policy:"),
        "{kill}"
    );
    // The kernel OOM killer never ran; exactly one process was killed.
    assert_eq!(d.events("kill").len(), 1, "{:?}", d.seen);
    assert_eq!(t.oom_control("", "oom_kill"), Some(0));
    Some((kill["pid"].as_i64().unwrap(), [a.pid(), b.pid(), c.pid()]))
}

/// Issue 14's "done when": a struct-valued preference map filled from the
/// daemon config changes the oomd-style policy's choice. Without an entry
/// the largest memcg (a) dies; with `{ preference = 1 }` (AVOID) for a, it
/// ranks last and b dies.
#[test]
fn oomd_preference_map_from_config_changes_the_victim() {
    let Some(obj) = policy("tests/upstream/test_oomd.bpf.c") else {
        return;
    };
    let Some((killed, [a, _, _])) = oomd_run("oomd-noprefs", &obj, "") else {
        return;
    };
    assert_eq!(
        killed,
        i64::from(a),
        "without preferences a, the largest, dies"
    );
    let maps = "maps = [{ map = \"oomd_policies\", key = \"{a}\", value = { preference = 1 } }]";
    let Some((killed, [_, b, _])) = oomd_run("oomd-prefs", &obj, maps) else {
        return;
    };
    assert_eq!(killed, i64::from(b), "with a AVOIDed, b dies");
}

/// The same preference given to a running daemon with `bpfoom attach --map`
/// (a TOML inline table on the command line); a field the struct does not
/// have is refused naming the argument and the field.
#[test]
fn oomd_preference_map_from_attach_command_line() {
    let Some(h) = v1_or_skip("oomd_preference_map_from_attach_command_line") else {
        return;
    };
    let Some(obj) = policy("tests/upstream/test_oomd.bpf.c") else {
        return;
    };
    let t = TestTree::v1_memory(&h, "oomd-cli", 80 << 20);
    for d in ["a", "b", "c"] {
        t.mkdir(d);
    }
    let mut d = DaemonProc::start("oomd-cli", &[]);
    assert!(d.wait_ready(10 * S), "daemon not ready: {}", d.stderr());
    let sock = d.socket.display().to_string();
    let obj = obj.display().to_string();
    let attach = |map: &str| {
        client(&[
            "attach",
            &obj,
            "--cgroup",
            &t.cg(""),
            "--map",
            map,
            "--socket",
            &sock,
        ])
    };
    let bad = format!("oomd_policies:{}={{ prefrence = 1 }}", t.cg("a"));
    let (code, _, err) = attach(&bad);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains(&format!("--map {bad}")), "{err}");
    assert!(
        err.contains("struct oomd_policy has no field prefrence"),
        "{err}"
    );
    let (code, _, err) = attach(&format!(
        "oomd_policies:{}={{ preference = 300 }}",
        t.cg("a")
    ));
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("value.preference: 300 is out of range for u8"),
        "{err}"
    );
    // --set takes the same typed values (test_oomd's .bss `struct best`).
    let (code, _, err) = client(&[
        "attach",
        &obj,
        "--cgroup",
        &t.cg(""),
        "--set",
        "best={ id = 1, bogus = 2 }",
        "--socket",
        &sock,
    ]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("--set best"), "{err}");
    assert!(err.contains("struct best has no field bogus"), "{err}");
    let (code, out, err) = attach(&format!("oomd_policies:{}={{ preference = 1 }}", t.cg("a")));
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("attached test_oomd"), "{out}");
    let a = Alloc::start(&t.top.join("a"), 45, 0, 60);
    assert!(a.ready(10 * S));
    let b = Alloc::start(&t.top.join("b"), 25, 0, 60);
    assert!(b.ready(10 * S));
    let _c = Alloc::start(&t.top.join("c"), 20, 0, 60);
    let kill = d
        .wait_record(20 * S, |r| r["event"] == "kill")
        .unwrap_or_else(|| panic!("no kill: {}", d.stderr()));
    assert_eq!(kill["pid"], b.pid(), "{kill}");
}

/// A value that does not fit its BTF type stops the daemon at start-up with
/// exit code 2 and the config file's line of that value.
#[test]
fn bad_typed_config_value_names_file_and_line() {
    let Some(h) = v1_or_skip("bad_typed_config_value_names_file_and_line") else {
        return;
    };
    let Some(obj) = policy("tests/upstream/test_oomd.bpf.c") else {
        return;
    };
    let t = TestTree::v1_memory(&h, "oomd-badcfg", 80 << 20);
    t.mkdir("a");
    let cfg = write_config(
        "oomd-badcfg-cfg",
        &format!(
            "[[attach]]\npolicy = \"{}\"\ncgroup = \"{}\"\nmaps = [\n  {{ map = \"oomd_policies\", key = \"{}\", value = {{ preference = 1 }} }},\n  {{ map = \"oomd_policies\", key = \"{}\", value = {{ preference = 256 }} }},\n]\n",
            obj.display(),
            t.cg(""),
            t.cg("a"),
            t.cg("a"),
        ),
    );
    let mut d = DaemonProc::start("oomd-badcfg", &[format!("--config={}", cfg.display())]);
    let st = d.wait_exit(10 * S).expect("daemon exits");
    assert_eq!(st.code(), Some(2), "{}", d.stderr());
    let err = d.stderr();
    // [daemon] (1), limit (2), blank (3), [[attach]] (4), policy, cgroup,
    // maps = [ (7), first entry (8), second entry (9).
    assert!(err.contains(&format!("{}:9:", cfg.display())), "{err}");
    assert!(
        err.contains("map oomd_policies value.preference: 256 is out of range for u8 (0..=255)"),
        "{err}"
    );
    // Nothing was left paused.
    assert_eq!(t.oom_control("", "oom_kill_disable"), Some(0));
}

/// Upstream's OOM selftest (newest form) on its tree below a test cgroup T:
/// the fixture at T/oom_test declines its own attach point's OOM, the one at
/// T kills cg4.
#[test]
fn test_oom_kills_cg4_through_the_chain() {
    let Some(h) = v1_or_skip("test_oom_kills_cg4_through_the_chain") else {
        return;
    };
    let Some(obj) = policy("tests/upstream/test_oom.bpf.c") else {
        return;
    };
    let t = TestTree::v1_memory(&h, "toom", 200 << 20);
    t.mkdir("oom_test");
    t.write(
        "oom_test",
        "memory.limit_in_bytes",
        &(80u64 << 20).to_string(),
    );
    for d in ["cg1", "cg2", "cg3", "cg3/cg4", "cg3/cg5"] {
        t.mkdir(&format!("oom_test/{d}"));
    }
    let attach = |cg: &str| format!("--attach={}={cg}", obj.display());
    let mut d = DaemonProc::start("toom", &[attach(&t.cg("oom_test")), attach(&t.cg(""))]);
    assert!(d.wait_ready(10 * S), "daemon not ready: {}", d.stderr());
    let top = t.top.join("oom_test");
    let cg1 = Alloc::start(&top.join("cg1"), 10, 1000, 60);
    assert!(cg1.ready(10 * S));
    let cg2 = if can_protect() {
        Alloc::start(&top.join("cg2"), 40, -1000, 60)
    } else {
        Alloc::start_kind(&top.join("cg2"), 40, 0, 60, "shm")
    };
    assert!(cg2.ready(10 * S));
    let mut cg4 = Alloc::start(&top.join("cg3/cg4"), 30, 0, 60);
    assert!(cg4.wait(20 * S).is_some(), "cg4 not killed: {}", d.stderr());
    let kill = d
        .wait_record(5 * S, |r| r["event"] == "kill")
        .expect("kill record");
    assert_eq!(kill["pid"], cg4.pid(), "{kill}");
    d.drain(S / 2);
    let handlers: Vec<_> = d
        .events("handler")
        .iter()
        .map(|h| (h["cgroup"].clone(), h["ret"].clone()))
        .collect();
    assert_eq!(handlers.len(), 2, "{handlers:?}");
    assert_eq!(handlers[0].1, "failed", "{handlers:?}");
    assert_eq!(handlers[1].1, "processed", "{handlers:?}");
}

/// Issue 14 item 6: `largest_rss` reads task->mm->rss_stat (filled from
/// /proc on this host) and kills the process with the largest resident set
/// that is not protected by name: "sshd" holds the most and survives.
#[test]
fn largest_rss_kills_the_largest_unprotected_process() {
    let Some(h) = v1_or_skip("largest_rss_kills_the_largest_unprotected_process") else {
        return;
    };
    let Some(obj) = policy("largest_rss.bpf.c") else {
        return;
    };
    let t = TestTree::v1_memory(&h, "lrss", 100 << 20);
    t.mkdir("job");
    let mut d = DaemonProc::start(
        "lrss",
        &[format!("--attach={}={}", obj.display(), t.cg(""))],
    );
    assert!(d.wait_ready(10 * S), "daemon not ready: {}", d.stderr());
    let dir = scratch("lrss-exe");
    let sshd = dir.join("sshd");
    std::os::unix::fs::symlink(alloc_exe(), &sshd).unwrap();
    let mut protected = Alloc::start_exe(&sshd, &t.top.join("job"), 40, 0, 60);
    assert!(protected.ready(10 * S));
    let mut big = Alloc::start(&t.top.join("job"), 30, 0, 60);
    assert!(big.ready(10 * S));
    let mut small = Alloc::start(&t.top, 10, 0, 60);
    assert!(small.ready(10 * S));
    // 40 + 30 + 10 MiB and the helpers' own memory: the next 25M do not fit.
    let mut last = Alloc::start(&t.top, 25, 0, 60);
    assert!(big.wait(20 * S).is_some(), "big not killed: {}", d.stderr());
    let kill = d
        .wait_record(5 * S, |r| r["event"] == "kill")
        .expect("kill record");
    assert_eq!(kill["pid"], big.pid(), "{kill}");
    assert!(
        last.ready(20 * S),
        "the allocation did not fit after the kill"
    );
    d.drain(S / 2);
    for r in &d.seen {
        eprintln!("{r}");
    }
    assert_eq!(d.events("kill").len(), 1, "{:?}", d.seen);
    assert!(protected.alive() && small.alive() && last.alive());
    assert_eq!(t.oom_control("", "oom_kill"), Some(0));
}
