//! The daemon over a cgroup v2 fixture tree (no root needed): systemd
//! readiness, the control socket, v2 OOM events with the kernel fallback,
//! status, dry run, SIGTERM restoring everything, bad start-up input.

#![allow(clippy::unwrap_used)]

mod common;

use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::time::Duration;

use common::*;

const S: Duration = Duration::from_secs(1);
const M: u64 = 1 << 20;

fn read(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap_or_default()
}

#[test]
fn v2_fixture_daemon_end_to_end() {
    let Some(fail) = policy("tests/always_fail.bpf.c") else {
        return;
    };
    let (base, cfg) = fixture("v2", "");
    let notify_path = base.join("notify");
    let notify = UnixDatagram::bind(&notify_path).unwrap();
    notify.set_read_timeout(Some(10 * S)).unwrap();
    let mut d = DaemonProc::start_env(
        "d-v2",
        &[format!("--config={}", cfg.display()), "--no-mlock".into()],
        &[("NOTIFY_SOCKET", &notify_path)],
    );
    let mut buf = [0u8; 64];
    let n = notify.recv(&mut buf).expect("READY=1 from the daemon");
    assert_eq!(&buf[..n], b"READY=1");
    assert!(d.wait_ready(10 * S), "{}", d.stderr());
    let sock = d.socket.display().to_string();
    let job = base.join("v2/job");

    let (code, out, err) = client(&[
        "attach",
        &fail.display().to_string(),
        "--cgroup",
        "/job",
        "--socket",
        &sock,
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("attached always_fail to /job"), "{out}");
    assert_eq!(read(&job.join("memory.high")).trim(), (84 * M).to_string());
    assert!(
        read(&d.state).contains("memory.high max"),
        "{}",
        read(&d.state)
    );

    // usage above memory.high, new high events, stall: an OOM event.
    fixture_v2_oom(&job);
    let oom = d
        .wait_record(5 * S, |r| r["event"] == "oom")
        .unwrap_or_else(|| panic!("no OOM event: {}", d.stderr()));
    assert_eq!(oom["memcg"], "/job");
    assert!(oom["latency_us"].as_u64().is_some());
    let done = d
        .wait_record(5 * S, |r| r["event"] == "resolved")
        .expect("resolved");
    assert_eq!(done["by"], "kernel");
    assert_eq!(d.events("handler")[0]["ret"], "failed");
    // The fallback lifts memory.high so the kernel acts at memory.max.
    assert_eq!(read(&job.join("memory.high")).trim(), "max");

    let (code, out, err) = client(&["status", "--json", "--socket", &sock]);
    assert_eq!(code, 0, "{err}");
    let st: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(st["version"], "V2");
    assert_eq!(st["instances"][0]["name"], "always_fail");
    assert_eq!(st["instances"][0]["cgroup"], "/job");
    assert_eq!(st["counters"]["ooms"], 1);
    assert_eq!(st["counters"]["kernel_fallbacks"], 1);
    assert!(!st["last_decisions"].as_array().unwrap().is_empty());

    // Removing an attach point detaches its instance.
    let (code, _, err) = client(&[
        "attach",
        &fail.display().to_string(),
        "--cgroup",
        "/job/a",
        "--socket",
        &sock,
    ]);
    assert_eq!(code, 0, "{err}");
    std::fs::remove_dir_all(job.join("a")).unwrap();
    let det = d
        .wait_record(5 * S, |r| r["event"] == "detach")
        .unwrap_or_else(|| panic!("no detach: {}", d.stderr()));
    assert_eq!(det["cgroup"], "/job/a");
    assert_eq!(det["reason"], "cgroup removed");
    let (_, out, _) = client(&["status", "--json", "--socket", &sock]);
    let st: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(st["instances"].as_array().unwrap().len(), 1, "{st}");

    d.signal(libc::SIGTERM);
    let st = d.wait_exit(5 * S).expect("exits on SIGTERM");
    assert!(st.success(), "{}", d.stderr());
    assert_eq!(read(&job.join("memory.high")).trim(), "max");
    assert_eq!(read(&d.state), "");
    assert!(!d.socket.exists());
}

#[test]
fn v2_fixture_dry_run_changes_nothing() {
    let Some(fail) = policy("tests/always_fail.bpf.c") else {
        return;
    };
    let (base, cfg) = fixture("dry", "");
    let mut d = DaemonProc::start(
        "d-dry",
        &[
            format!("--config={}", cfg.display()),
            "--no-mlock".into(),
            "--dry-run".into(),
            format!("--attach={}=/job", fail.display()),
        ],
    );
    assert!(d.wait_ready(10 * S), "{}", d.stderr());
    assert_eq!(read(&base.join("v2/job/memory.high")).trim(), "max");
    let a = d.wait_record(2 * S, |r| r["event"] == "attach").unwrap();
    assert_eq!(a["dry_run"], true);
}

#[test]
fn bad_start_up_input_exits_2_with_a_reason() {
    let (base, cfg) = fixture("badstart", "");
    let run = |args: &[&str]| {
        let mut v = vec!["run", "--no-mlock", "--socket"];
        let sock = base.join("sock").display().to_string();
        let state = base.join("state").display().to_string();
        let cfgs = format!("--config={}", cfg.display());
        let mut all: Vec<String> = v.drain(..).map(String::from).collect();
        all.extend([sock, "--state-file".into(), state, cfgs]);
        all.extend(args.iter().map(|s| s.to_string()));
        let refs: Vec<&str> = all.iter().map(String::as_str).collect();
        client(&refs)
    };
    let (code, _, err) = run(&["--attach=nonsense"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("POLICY=CGROUP"), "{err}");
    let (code, _, err) = run(&["--attach=/nonexistent.bpf.o=/job"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("/nonexistent.bpf.o"), "{err}");
    if let Some(fail) = policy("tests/always_fail.bpf.c") {
        let (code, _, err) = run(&[&format!("--attach={}=/no/such/cgroup", fail.display())]);
        assert_eq!(code, 2, "{err}");
        assert!(err.contains("no cgroup /no/such/cgroup"), "{err}");
    }
    // Nothing was left changed by the failed starts.
    assert_eq!(read(&base.join("v2/job/memory.high")).trim(), "max");
    let (code, _, err) = client(&["run", "--config", "/nonexistent/bpfoom.toml"]);
    assert_eq!(code, 2, "{err}");
    let (code, _, err) = client(&[
        "status",
        "--socket",
        &base.join("none.sock").display().to_string(),
    ]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("none.sock"), "{err}");
}

/// A global OOM (MemAvailable below the threshold) runs the chain from the
/// root; with no system-wide instance and fallback "none" nothing is done,
/// and the event is not repeated while the condition merely persists.
#[test]
fn global_pressure_raises_a_global_oom() {
    // The fixture's MemAvailable is 92% of MemTotal.
    let (base, cfg) = fixture(
        "global",
        "\n[global]\nmin_available_percent = 95.0\nfallback = \"none\"\n",
    );
    let mut d = DaemonProc::start(
        "d-global",
        &[format!("--config={}", cfg.display()), "--no-mlock".into()],
    );
    assert!(d.wait_ready(10 * S), "{}", d.stderr());
    let oom = d
        .wait_record(5 * S, |r| r["event"] == "oom")
        .unwrap_or_else(|| panic!("no global OOM: {}", d.stderr()));
    assert_eq!(oom["memcg"], serde_json::Value::Null);
    assert_eq!(oom["constraint"], "none");
    let fb = d.wait_record(S, |r| r["event"] == "fallback").unwrap();
    assert_eq!(fb["reason"], "no bpf_oom_ops instance in the chain");
    assert!(d
        .wait_record(S, |r| r["event"] == "resolved" && r["by"] == "none")
        .is_some());
    assert!(d.wait_stderr("MemAvailable", 2 * S), "{}", d.stderr());
    // Edge-triggered with a cooldown: at most one more within ~1 s.
    d.drain(S);
    assert!(d.events("oom").len() <= 2, "{:?}", d.events("oom"));
    let _ = base;
}

/// oomd_like gets its preferences from the config (cgroup paths become
/// ids); a bad map entry is a start-up error naming it.
#[test]
fn config_preference_maps_for_oomd_like() {
    let Some(oomd) = policy("oomd_like.bpf.c") else {
        return;
    };
    let attach = |maps: &str| {
        format!(
            "\n[[attach]]\npolicy = \"{}\"\ncgroup = \"/job\"\nbackoff_budget = 1\nmaps = [{maps}]\n",
            oomd.display()
        )
    };
    let (_b, cfg) = fixture(
        "oomd",
        &attach(
            r#"{ map = "prefs", key = "/job/a", value = 3 }, { map = "prefs", key = "/job/b", value = 1 }"#,
        ),
    );
    let mut d = DaemonProc::start(
        "d-oomd",
        &[format!("--config={}", cfg.display()), "--no-mlock".into()],
    );
    assert!(d.wait_ready(10 * S), "{}", d.stderr());
    let (code, out, err) = client(&[
        "status",
        "--json",
        "--socket",
        &d.socket.display().to_string(),
    ]);
    assert_eq!(code, 0, "{err}");
    let st: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(st["instances"][0]["name"], "oomd_like");
    assert_eq!(st["instances"][0]["backoff_budget_left"], 1);
    drop(d);
    for (maps, want) in [
        (r#"{ map = "nope", key = 1, value = 1 }"#, "no map nope"),
        (
            r#"{ map = "prefs", key = "/job/zz", value = 1 }"#,
            "no cgroup /job/zz",
        ),
    ] {
        let (base, cfg) = fixture("oomd-bad", &attach(maps));
        let (code, _, err) = client(&[
            "run",
            "--no-mlock",
            &format!("--config={}", cfg.display()),
            &format!("--socket={}", base.join("s").display()),
            &format!("--state-file={}", base.join("state").display()),
        ]);
        assert_eq!(code, 2, "{err}");
        assert!(err.contains(want), "{err}");
    }
}

/// The control socket serves root only (SO_PEERCRED), even when its file
/// permissions would let others connect.
#[test]
fn non_root_clients_are_refused() {
    if !bpfoom_testutil::require(
        bpfoom_testutil::is_root(),
        "non_root_clients_are_refused: not root",
    ) {
        return;
    }
    let (_base, cfg) = fixture("peercred", "");
    let mut d = DaemonProc::start(
        "d-peercred",
        &[format!("--config={}", cfg.display()), "--no-mlock".into()],
    );
    assert!(d.wait_ready(10 * S), "{}", d.stderr());
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&d.socket, std::fs::Permissions::from_mode(0o666)).unwrap();
    let o = std::process::Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(env!("CARGO_BIN_EXE_bpfoomd"))
        .args(["status", "--socket"])
        .arg(&d.socket)
        .output();
    let Ok(o) = o else {
        bpfoom_testutil::require(false, "non_root_clients_are_refused: no setpriv");
        return;
    };
    let err = String::from_utf8_lossy(&o.stderr);
    if matches!(o.status.code(), Some(126 | 127)) || err.contains("setpriv:") {
        bpfoom_testutil::require(
            false,
            &format!("non_root_clients_are_refused: nobody cannot run the binary: {err}"),
        );
        return;
    }
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains("permission denied: uid 65534"), "{err}");
    // Root still gets served.
    let (code, _, err) = client(&["status", "--socket", &d.socket.display().to_string()]);
    assert_eq!(code, 0, "{err}");
}

fn children(pid: u32) -> Vec<i32> {
    read(Path::new(&format!("/proc/{pid}/task/{pid}/children")))
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .collect()
}

/// A guardian that dies is replaced, and the new one does the job: the
/// daemon's SIGKILL is repaired within a second.
#[test]
fn a_dead_guardian_is_replaced() {
    let Some(fail) = policy("tests/always_fail.bpf.c") else {
        return;
    };
    let (base, cfg) = fixture("guard", "");
    let mut d = DaemonProc::start(
        "d-guard",
        &[
            format!("--config={}", cfg.display()),
            "--no-mlock".into(),
            format!("--attach={}=/job", fail.display()),
        ],
    );
    assert!(d.wait_ready(10 * S), "{}", d.stderr());
    let high = base.join("v2/job/memory.high");
    assert_eq!(read(&high).trim(), (84 * M).to_string());
    let first = children(d.child.id());
    assert_eq!(first.len(), 1, "one guardian: {first:?}");
    use std::os::fd::AsFd;
    let fd = bpfoom_host::sys::pidfd_open(first[0]).unwrap();
    bpfoom_host::sys::pidfd_send_signal(fd.as_fd(), libc::SIGKILL).unwrap();
    let deadline = std::time::Instant::now() + 5 * S;
    let second = loop {
        let c = children(d.child.id());
        if c.len() == 1 && c[0] != first[0] {
            break c[0];
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no new guardian: {}",
            d.stderr()
        );
        std::thread::sleep(S / 50);
    };
    assert!(d.wait_stderr("starting a new one", 2 * S), "{}", d.stderr());
    assert_eq!(
        read(&high).trim(),
        (84 * M).to_string(),
        "nothing restored yet"
    );
    let t = std::time::Instant::now();
    d.signal(libc::SIGKILL);
    while read(&high).trim() != "max" {
        assert!(
            t.elapsed() < S,
            "guardian {second} did not restore within 1 s"
        );
        std::thread::sleep(S / 200);
    }
}

/// A system-wide instance runs for a global OOM; a handler over its
/// instruction budget counts as FAILED and the fallback follows.
#[test]
fn handler_over_budget_fails_and_the_chain_goes_on() {
    let Some(ll) = policy("largest_leaf.bpf.c") else {
        return;
    };
    let (_base, cfg) = fixture(
        "budget",
        &format!(
            "\n[global]\nmin_available_percent = 95.0\nfallback = \"none\"\n\n[[attach]]\npolicy = \"{}\"\ncgroup = \"/\"\n",
            ll.display()
        ),
    );
    let text = std::fs::read_to_string(&cfg).unwrap();
    std::fs::write(
        &cfg,
        text.replace("[daemon]\n", "[daemon]\ninsn_budget = 1\n"),
    )
    .unwrap();
    let mut d = DaemonProc::start(
        "d-budget",
        &[format!("--config={}", cfg.display()), "--no-mlock".into()],
    );
    assert!(d.wait_ready(10 * S), "{}", d.stderr());
    let h = d
        .wait_record(5 * S, |r| r["event"] == "handler")
        .unwrap_or_else(|| panic!("no handler run: {}", d.stderr()));
    assert_eq!(h["policy"], "largest_leaf");
    assert_eq!(h["cgroup"], "/");
    assert_eq!(h["ret"], "failed");
    assert!(
        h["reason"]
            .as_str()
            .unwrap_or("")
            .contains("instruction budget"),
        "{h}"
    );
    assert!(d.wait_record(S, |r| r["event"] == "fallback").is_some());
    assert!(d.events("kill").is_empty());
}

/// Replaces a fixture file the way the kernel serves it: a reader sees the old
/// or the new content, never the empty file `fs::write` leaves between its
/// truncate and its write (a daemon sampling then would lose its baseline).
fn write_atomically(path: &std::path::Path, text: &str) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

/// `psi_early` on real PSI counters: its trigger watches /job; the stall
/// `total` of /job's `memory.pressure` grows past the threshold, the
/// trigger fires and the policy's OOM runs the chain in /job.
#[test]
fn psi_early_fires_on_growing_pressure_counters() {
    use std::os::unix::fs::MetadataExt;
    let (Some(psi), Some(fail)) = (policy("psi_early.bpf.c"), policy("tests/always_fail.bpf.c"))
    else {
        return;
    };
    let (base, cfg) = fixture("psi", "");
    let job = base.join("v2/job");
    let id = std::fs::metadata(&job).unwrap().ino();
    let attach = format!(
        "\n[[attach]]\npolicy = \"{}\"\ncgroup = \"/job\"\n\n[[attach]]\npolicy = \"{}\"\ncgroup = \"/job\"\nglobals = {{ watch_cgroup_id = {id}, threshold_us = 50000, window_us = 1000000 }}\n",
        fail.display(),
        psi.display()
    );
    std::fs::write(&cfg, read(&cfg) + &attach).unwrap();
    let mut d = DaemonProc::start(
        "d-psi",
        &[format!("--config={}", cfg.display()), "--no-mlock".into()],
    );
    assert!(d.wait_ready(10 * S), "{}", d.stderr());
    let t = d
        .wait_record(2 * S, |r| r["event"] == "psi_trigger")
        .unwrap_or_else(|| panic!("no trigger: {}", d.stderr()));
    assert_eq!(t["cgroup"], "/job");
    // Counters that stay put, then grow below the threshold: nothing.
    let line = |full: u64| {
        format!(
            "some avg10=0.00 avg60=0.00 avg300=0.00 total={full}\nfull avg10=0.00 avg60=0.00 avg300=0.00 total={full}\n"
        )
    };
    write_atomically(&job.join("memory.pressure"), &line(10_000));
    d.drain(S / 2);
    assert!(
        d.events("psi_event").is_empty(),
        "{:?}",
        d.events("psi_event")
    );
    write_atomically(&job.join("memory.pressure"), &line(10_000 + 80_000));
    let ev = d
        .wait_record(2 * S, |r| r["event"] == "psi_event")
        .unwrap_or_else(|| panic!("no psi_event: {}", d.stderr()));
    assert_eq!(ev["cgroup"], "/job");
    let oom = d
        .wait_record(S, |r| r["event"] == "oom")
        .unwrap_or_else(|| panic!("no oom: {}", d.stderr()));
    assert_eq!(oom["memcg"], "/job", "{oom}");
    assert!(d
        .wait_record(S, |r| r["event"] == "handler"
            && r["policy"] == "always_fail")
        .is_some());
}
