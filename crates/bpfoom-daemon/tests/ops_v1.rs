//! Operations end to end on this machine's cgroup v1 memory controller:
//! the Prometheus endpoint and live reload, each around a real OOM in a
//! subtree below this process's own memcg (removed after, also on failure).

#![allow(clippy::unwrap_used)]

mod common;

use std::io::{Read, Write};
use std::time::Duration;

use common::*;

const S: Duration = Duration::from_secs(1);

/// Not a test: the allocating helper process (see `common::Alloc`).
#[test]
fn alloc_helper() {
    alloc_helper_main();
}

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
    let Some((root, own)) = v1_or_skip("metrics_show_a_real_oom_its_kill_and_the_reaction_time")
    else {
        return;
    };
    let Some(obj) = policy("largest_leaf.bpf.c") else {
        return;
    };
    let t = TestTree::new(&root, &own, "metrics", 60 << 20);
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
