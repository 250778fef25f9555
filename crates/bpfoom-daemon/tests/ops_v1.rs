//! Operations end to end on this machine's cgroup v1 memory controller:
//! the Prometheus endpoint and live reload, each around a real OOM in a
//! subtree below this process's own memcg (removed after, also on failure).

#![allow(clippy::unwrap_used)]

mod common;

use std::io::{Read, Write};
use std::time::Duration;

use common::*;

const S: Duration = Duration::from_secs(1);

/// The `http://ADDR/metrics` address the daemon logged.
fn metrics_addr(d: &DaemonProc) -> String {
    assert!(
        d.wait_stderr("/metrics", 10 * S),
        "no metrics line: {}",
        d.stderr()
    );
    let err = d.stderr();
    let line = err
        .lines()
        .find(|l| l.contains("metrics at http://"))
        .unwrap();
    let rest = &line[line.find("http://").unwrap() + 7..];
    rest.split('/').next().unwrap().to_string()
}

/// `GET /metrics` with a plain TCP stream: status line and body.
fn scrape(addr: &str) -> (String, String) {
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(5 * S)).unwrap();
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: test\r\n\r\n")
        .unwrap();
    let mut r = String::new();
    s.read_to_string(&mut r).unwrap();
    let (head, body) = r.split_once("\r\n\r\n").unwrap();
    (head.lines().next().unwrap().to_string(), body.to_string())
}

/// The value of the sample `name{labels}` whose label set contains every
/// `k="v"` in `labels`.
fn sample(body: &str, name: &str, labels: &[&str]) -> Option<f64> {
    body.lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| l.split(['{', ' ']).next().is_some_and(|n| n == name))
        .filter(|l| labels.iter().all(|want| l.contains(want)))
        .find_map(|l| l.rsplit(' ').next()?.parse().ok())
}

#[test]
fn metrics_show_a_real_oom_its_kill_and_the_reaction_time() {
    let Some(h) = v1_or_skip("metrics_show_a_real_oom_its_kill_and_the_reaction_time") else {
        return;
    };
    let Some(obj) = policy("largest_leaf.bpf.c") else {
        return;
    };
    let t = TestTree::v1_memory(&h, "metrics", 60 << 20);
    t.mkdir("job");
    let mut d = DaemonProc::start(
        "metrics",
        &[
            format!("--attach={}={}", obj.display(), t.cg("")),
            "--metrics=127.0.0.1:0".into(),
        ],
    );
    assert!(d.wait_ready(10 * S), "daemon not ready: {}", d.stderr());
    let addr = metrics_addr(&d);
    assert!(addr.starts_with("127.0.0.1:"), "{addr}");
    let (status, before) = scrape(&addr);
    assert_eq!(status, "HTTP/1.1 200 OK");
    assert_eq!(
        sample(&before, "bpfoom_instances", &[]),
        Some(1.0),
        "{before}"
    );
    assert_eq!(
        sample(&before, "bpfoom_ooms_total", &[]),
        Some(0.0),
        "{before}"
    );
    assert!(sample(&before, "bpfoom_watched_cgroups", &[]).unwrap() >= 2.0);

    let mut hog = Alloc::start(&t.top.join("job"), 100, 0, 60);
    assert!(hog.wait(20 * S).is_some(), "hog not killed: {}", d.stderr());
    let kill = d
        .wait_record(5 * S, |r| r["event"] == "kill")
        .expect("kill record");
    assert_eq!(kill["pid"], hog.pid());
    d.wait_record(5 * S, |r| r["event"] == "resolved")
        .expect("resolved");

    let (_, body) = scrape(&addr);
    let top = format!("cgroup=\"{}\"", t.cg(""));
    assert!(
        sample(&body, "bpfoom_ooms_total", &[]).unwrap() >= 1.0,
        "{body}"
    );
    assert_eq!(
        sample(
            &body,
            "bpfoom_kills_total",
            &["policy=\"largest_leaf\"", &top, "by=\"policy\""]
        ),
        Some(1.0),
        "{body}"
    );
    assert_eq!(
        sample(
            &body,
            "bpfoom_handler_runs_total",
            &["policy=\"largest_leaf\"", &top, "verdict=\"processed\""]
        ),
        Some(1.0),
        "{body}"
    );
    let n = sample(
        &body,
        "bpfoom_reaction_seconds_count",
        &["policy=\"largest_leaf\""],
    );
    assert_eq!(n, Some(1.0), "{body}");
    let sum = sample(
        &body,
        "bpfoom_reaction_seconds_sum",
        &["policy=\"largest_leaf\""],
    );
    let lat = kill["latency_us"].as_u64().unwrap() as f64 / 1e6;
    assert!(
        (sum.unwrap() - lat).abs() < 1e-6,
        "histogram sum {sum:?} != kill latency {lat}"
    );
    assert_eq!(
        sample(&body, "bpfoom_kernel_fallbacks_total", &[]),
        Some(0.0)
    );
    assert!(body.contains("bpfoom_build_info{commit="), "{body}");
    assert!(!body.contains("pid="), "no pid labels: {body}");

    // promtool (Debian package `prometheus`) lints the exposition.
    let have = std::process::Command::new("promtool")
        .arg("--version")
        .output()
        .is_ok();
    if bpfoom_testutil::require(have, "promtool not installed (apt-get install prometheus)") {
        let mut p = std::process::Command::new("promtool")
            .args(["check", "metrics"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        p.stdin.take().unwrap().write_all(body.as_bytes()).unwrap();
        let o = p.wait_with_output().unwrap();
        assert!(
            o.status.success() && o.stdout.is_empty() && o.stderr.is_empty(),
            "promtool check metrics: {}{}\n{body}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
    }
}

fn write_config(path: &std::path::Path, entries: &[(&std::path::Path, &str)]) {
    let mut s = String::from("[daemon]\nhandler_time_limit_ms = 2000\n");
    for (obj, cg) in entries {
        s.push_str(&format!(
            "\n[[attach]]\npolicy = \"{}\"\ncgroup = \"{cg}\"\n",
            obj.display()
        ));
    }
    std::fs::write(path, s).unwrap();
}

/// SIGHUP while a real OOM is pending: the daemon is stopped (SIGSTOP)
/// while a hog runs into the limit, so the OOM waits paused; the config is
/// changed, SIGHUP and SIGCONT are sent, and the reload runs before the
/// OOM is handled. The new instance handles that very OOM (the kernel
/// never kills), the daemon keeps running. Then `bpfoom reload` with an
/// unverifiable policy keeps the old instance (exit 1, the reason shown),
/// and an entry removed from the file is detached.
#[test]
fn sighup_reloads_during_an_oom_and_a_rejected_entry_keeps_the_old_instance() {
    let Some(h) = v1_or_skip("sighup_reloads_during_an_oom") else {
        return;
    };
    let (Some(ll), Some(rss)) = (policy("largest_leaf.bpf.c"), policy("largest_rss.bpf.c")) else {
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
    let bad = bpfoom_testutil::compile_str("ops_null_deref", bad_src, &[])
        .unwrap_or_else(|e| panic!("the unverifiable policy must compile: {e}"));
    let t = TestTree::v1_memory(&h, "reload", 60 << 20);
    t.mkdir("job");
    let dir = scratch("reload-config");
    let cfg = dir.join("bpfoom.toml");
    let top = t.cg("");
    write_config(&cfg, &[(&ll, &top)]);
    let mut d = DaemonProc::start("reload", &[format!("--config={}", cfg.display())]);
    assert!(d.wait_ready(10 * S), "daemon not ready: {}", d.stderr());
    let sock = d.socket.display().to_string();

    // Hold the daemon, let a hog hit the limit: the OOM stays pending.
    d.signal(libc::SIGSTOP);
    let mut hog = Alloc::start(&t.top.join("job"), 100, 0, 60);
    let deadline = std::time::Instant::now() + 10 * S;
    while t.oom_control("", "under_oom") != Some(1) {
        assert!(std::time::Instant::now() < deadline, "no OOM pending");
        std::thread::sleep(S / 50);
    }
    write_config(&cfg, &[(&rss, &top)]);
    d.signal(libc::SIGHUP);
    d.signal(libc::SIGCONT);
    assert!(hog.wait(20 * S).is_some(), "hog not killed: {}", d.stderr());
    let kill = d
        .wait_record(5 * S, |r| r["event"] == "kill")
        .expect("kill record");
    assert_eq!(kill["pid"], hog.pid(), "{kill}");
    assert_eq!(kill["by"], "policy:largest_rss", "{kill}\n{}", d.stderr());
    assert!(
        d.stderr().contains(&format!(
            "reload: replaced largest_rss at {top} (policy file)"
        )),
        "{}",
        d.stderr()
    );
    let detach = d.wait_record(S, |r| r["event"] == "detach").unwrap();
    assert_eq!(detach["policy"], "largest_leaf");
    assert_eq!(detach["reason"], "replaced by reload");
    assert_eq!(
        t.oom_control("", "oom_kill"),
        Some(0),
        "the kernel never killed"
    );
    assert_eq!(
        t.oom_control("job", "oom_kill_disable"),
        Some(1),
        "still watched"
    );
    assert!(
        d.child.try_wait().unwrap().is_none(),
        "SIGHUP stopped the daemon"
    );

    // A rejected entry keeps the old instance and says why.
    write_config(&cfg, &[(&bad, &top)]);
    let (code, out, err) = client(&["reload", "--socket", &sock]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(
        out.contains(&format!("rejected the entry for {top}")),
        "{out}"
    );
    assert!(
        out.contains(&bad.display().to_string()),
        "names the object: {out}"
    );
    assert!(
        out.contains("verification failed"),
        "the verifier log: {out}"
    );
    let (_, st, _) = client(&["status", "--json", "--socket", &sock]);
    let st: serde_json::Value = serde_json::from_str(st.trim()).unwrap();
    assert_eq!(st["instances"][0]["name"], "largest_rss", "{st}");
    let mut hog2 = Alloc::start(&t.top.join("job"), 100, 0, 60);
    assert!(hog2.wait(20 * S).is_some(), "hog2 not killed");
    let k2 = d
        .wait_record(5 * S, |r| r["event"] == "kill" && r["pid"] == hog2.pid())
        .expect("second kill");
    assert_eq!(k2["by"], "policy:largest_rss");

    // Unchanged, then removed.
    write_config(&cfg, &[(&rss, &top)]);
    let (code, out, err) = client(&["reload", "--socket", &sock]);
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(out.trim(), format!("unchanged largest_rss at {top}"));
    write_config(&cfg, &[]);
    let (code, out, err) = client(&["reload", "--json", "--socket", &sock]);
    assert_eq!(code, 0, "{out}{err}");
    let ch: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(ch[0]["action"], "detached", "{ch}");
    assert_eq!(ch[0]["policy"], "largest_rss", "{ch}");
    assert_eq!(t.oom_control("", "oom_kill_disable"), Some(0), "unwatched");

    d.signal(libc::SIGTERM);
    assert!(d.wait_exit(5 * S).expect("exits on SIGTERM").success());
}

/// `status` (tables, JSON objects, status calls not counted), `events`
/// (once, `--json`, `--follow` across a second OOM), RFC 3339 `ts` on
/// every record, journald severities on stderr, no error on a closed pipe.
#[test]
fn status_events_and_records_around_real_ooms() {
    let Some(h) = v1_or_skip("status_events_and_records_around_real_ooms") else {
        return;
    };
    let Some(obj) = policy("largest_leaf.bpf.c") else {
        return;
    };
    let t = TestTree::v1_memory(&h, "status", 60 << 20);
    t.mkdir("job");
    let mut d = DaemonProc::start_env(
        "status",
        &[format!("--attach={}={}", obj.display(), t.cg(""))],
        &[("JOURNAL_STREAM", std::path::Path::new("8:12345"))],
    );
    assert!(d.wait_ready(10 * S), "daemon not ready: {}", d.stderr());
    let sock = d.socket.display().to_string();
    assert!(d.wait_stderr("<6>bpfoom: running", 5 * S), "{}", d.stderr());
    assert!(
        d.stderr()
            .lines()
            .all(|l| l.starts_with('<') && l.as_bytes()[2] == b'>'),
        "severity prefixes: {}",
        d.stderr()
    );

    let mut hog = Alloc::start(&t.top.join("job"), 100, 0, 60);
    assert!(hog.wait(20 * S).is_some(), "hog not killed: {}", d.stderr());
    d.wait_record(5 * S, |r| r["event"] == "resolved")
        .expect("resolved");
    for r in &d.seen {
        let ts = r["ts"].as_str().unwrap_or_else(|| panic!("no ts: {r}"));
        assert!(
            ts.len() == 27 && ts.ends_with('Z') && ts.as_bytes()[10] == b'T',
            "{ts}"
        );
    }

    for _ in 0..3 {
        assert_eq!(client(&["status", "--socket", &sock]).0, 0);
    }
    let (code, out, err) = client(&["status", "--json", "--socket", &sock]);
    assert_eq!(code, 0, "{err}");
    let st: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(
        st["counters"]["requests"], 0,
        "status is not a request: {st}"
    );
    let last = st["last_decisions"].as_array().unwrap();
    assert!(
        last.iter().all(|r| r.is_object() && r["ts"].is_string()),
        "{st}"
    );
    assert!(last.iter().any(|r| r["event"] == "kill"), "{st}");
    assert_eq!(st["instances"][0]["counters"]["kills"], 1, "{st}");
    assert!(st["uptime_s"].is_u64() && st["started"].is_string(), "{st}");

    let (code, out, _) = client(&["status", "--socket", &sock]);
    assert_eq!(code, 0);
    eprintln!("{out}");
    let row = out
        .lines()
        .find(|l| l.starts_with("  bpf_oom_ops"))
        .unwrap_or_else(|| panic!("{out}"));
    let header = out.lines().find(|l| l.starts_with("  KIND")).unwrap();
    // Aligned: each header column starts where its cell starts.
    for col in ["INSTANCE", "CGROUP", "RUNS", "KILLS"] {
        let at = header.find(col).unwrap();
        assert_ne!(
            row.as_bytes()[at],
            b' ',
            "{col} misaligned:\n{header}\n{row}"
        );
        assert_eq!(
            row.as_bytes()[at - 1],
            b' ',
            "{col} misaligned:\n{header}\n{row}"
        );
    }
    assert!(row.contains("largest_leaf"), "{row}");
    assert!(out.contains("last decisions (UTC):"), "{out}");
    assert!(
        out.lines()
            .any(|l| l.contains(" kill ") && l.contains("by=\"policy:largest_leaf\"")),
        "{out}"
    );

    // `status | true`: the reader is gone before the first write (EPIPE):
    // no broken-pipe error, exit 0.
    let o = std::process::Command::new("bash")
        .args([
            "-c",
            &format!(
                "set -o pipefail; {} status --socket {sock} | true",
                env!("CARGO_BIN_EXE_bpfoomd")
            ),
        ])
        .output()
        .unwrap();
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success() && e.is_empty(), "{e}");

    let (code, out, _) = client(&["events", "--json", "--socket", &sock]);
    assert_eq!(code, 0);
    let evs: Vec<serde_json::Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(evs.iter().any(|r| r["event"] == "kill"), "{out}");
    let (code, out, _) = client(&["events", "--socket", &sock]);
    assert_eq!(code, 0);
    assert!(out.lines().any(|l| l.contains("  kill ")), "{out}");

    // --follow sees a second OOM as it happens.
    let mut f = std::process::Command::new(env!("CARGO_BIN_EXE_bpfoomd"))
        .args(["events", "--follow", "--json", "--socket", &sock])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let fout = f.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for l in std::io::BufReader::new(fout).lines().map_while(Result::ok) {
            if tx.send(l).is_err() {
                break;
            }
        }
    });
    std::thread::sleep(S / 2);
    let mut hog2 = Alloc::start(&t.top.join("job"), 100, 0, 60);
    assert!(hog2.wait(20 * S).is_some());
    let deadline = std::time::Instant::now() + 10 * S;
    let mut got = None;
    while let Some(left) = deadline.checked_duration_since(std::time::Instant::now()) {
        let Ok(l) = rx.recv_timeout(left) else { break };
        let v: serde_json::Value = serde_json::from_str(&l).unwrap();
        if v["event"] == "kill" && v["pid"] == hog2.pid() {
            got = Some(v);
            break;
        }
    }
    let _ = f.kill();
    let _ = f.wait();
    assert!(
        got.is_some(),
        "events --follow did not show the second kill"
    );
}

/// systemd: READY=1, then WATCHDOG=1 at half of `$WATCHDOG_USEC` from the
/// loop; SIGHUP is RELOADING=1 then READY=1 (and the daemon stays up).
#[test]
fn systemd_watchdog_keepalives_and_reload_notifications() {
    let Some(h) = v1_or_skip("systemd_watchdog_keepalives") else {
        return;
    };
    let Some(obj) = policy("largest_leaf.bpf.c") else {
        return;
    };
    let t = TestTree::v1_memory(&h, "watchdog", 60 << 20);
    let dir = scratch("watchdog-notify");
    let path = dir.join("notify");
    let notify = std::os::unix::net::UnixDatagram::bind(&path).unwrap();
    notify.set_read_timeout(Some(5 * S)).unwrap();
    let mut d = DaemonProc::start_env(
        "watchdog",
        &[format!("--attach={}={}", obj.display(), t.cg(""))],
        &[
            ("NOTIFY_SOCKET", &path),
            ("WATCHDOG_USEC", std::path::Path::new("200000")),
        ],
    );
    let mut buf = [0u8; 64];
    let mut next = || {
        let n = notify.recv(&mut buf).expect("a notification");
        String::from_utf8_lossy(&buf[..n]).into_owned()
    };
    assert_eq!(next(), "READY=1");
    let start = std::time::Instant::now();
    for _ in 0..5 {
        assert_eq!(next(), "WATCHDOG=1");
    }
    // Five keep-alives at 100 ms: about 400 ms after the first.
    let took = start.elapsed();
    assert!(took < 2 * S, "keep-alives too slow: {took:?}");
    d.signal(libc::SIGHUP);
    let mut seen = Vec::new();
    while seen.len() < 10 && !seen.contains(&"READY=1".to_string()) {
        let m = next();
        if m != "WATCHDOG=1" {
            seen.push(m);
        }
    }
    assert_eq!(seen, ["RELOADING=1", "READY=1"], "{}", d.stderr());
    assert!(d.child.try_wait().unwrap().is_none(), "SIGHUP stopped it");
    assert!(
        d.wait_stderr("nothing changed: started without --config", 5 * S),
        "{}",
        d.stderr()
    );
}

/// `[[hook]] on = "kill"`: after a real OOM kill, the hook gets the kill
/// record (with its ts) as JSON on stdin; a hook past its timeout is
/// killed and logged; the OOM was resolved before either ran.
#[test]
fn kill_hooks_get_the_record_after_the_oom() {
    let Some(h) = v1_or_skip("kill_hooks_get_the_record_after_the_oom") else {
        return;
    };
    let Some(obj) = policy("largest_leaf.bpf.c") else {
        return;
    };
    let t = TestTree::v1_memory(&h, "hooks", 60 << 20);
    t.mkdir("job");
    let dir = scratch("hooks-config");
    let got = dir.join("got.json");
    let cfg = dir.join("bpfoom.toml");
    std::fs::write(
        &cfg,
        format!(
            "[[attach]]\npolicy = \"{}\"\ncgroup = \"{}\"\n\n[[hook]]\non = \"kill\"\nexec = [\"sh\", \"-c\", \"cat > {}\"]\n\n[[hook]]\non = \"kill\"\nexec = [\"sleep\", \"30\"]\ntimeout_ms = 200\n",
            obj.display(),
            t.cg(""),
            got.display()
        ),
    )
    .unwrap();
    let mut d = DaemonProc::start("hooks", &[format!("--config={}", cfg.display())]);
    assert!(d.wait_ready(10 * S), "daemon not ready: {}", d.stderr());
    let mut hog = Alloc::start(&t.top.join("job"), 100, 0, 60);
    assert!(hog.wait(20 * S).is_some(), "hog not killed: {}", d.stderr());
    let kill = d
        .wait_record(5 * S, |r| r["event"] == "kill")
        .expect("kill record");
    let deadline = std::time::Instant::now() + 5 * S;
    let mut text = String::new();
    while !text.ends_with('\n') && std::time::Instant::now() < deadline {
        text = std::fs::read_to_string(&got).unwrap_or_default();
        std::thread::sleep(S / 50);
    }
    let v: serde_json::Value = serde_json::from_str(text.trim()).unwrap();
    assert_eq!(v["event"], "kill");
    assert_eq!(v["pid"], kill["pid"]);
    assert!(v["ts"].is_string(), "{v}");
    assert!(
        d.wait_stderr("hook sleep: timed out, killed", 5 * S),
        "{}",
        d.stderr()
    );
}
