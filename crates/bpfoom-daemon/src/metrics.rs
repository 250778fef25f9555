//! Prometheus metrics: a registry fed from the decision records, served as
//! `/metrics` by a small HTTP server on its own thread.
//!
//! Why the `prometheus` crate and not `prometheus-client`: the latter only
//! writes OpenMetrics (a counter's `# TYPE` without `_total`, an `info`
//! type), which `promtool check metrics` and the Prometheus text parser of
//! the distributions' Prometheus reject; the `prometheus` crate writes the
//! Prometheus text format (0.0.4) that every Prometheus scrapes and that
//! promtool checks clean.
//!
//! Why a hand-written HTTP server: the endpoint answers one thing (`GET
//! /metrics`, plus `GET /` pointing at it), one connection at a time, with
//! short timeouts and `Connection: close`; a general HTTP stack would add
//! far more code than it saves to a daemon that must stay small and locked
//! in memory. The OOM loop never waits for it: the thread only reads the
//! registry, whose metrics are atomics.
//!
//! Labels are the policy (instance name) and its attach cgroup, never a
//! pid or a victim's cgroup, so the number of series is bounded by the
//! number of attached instances.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::time::Duration;

use bpfoom_engine::{Record, Verdict};
use bpfoom_host::TimedRecord;
use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry, TextEncoder,
};

use crate::{DaemonError, InputError};

/// The default metrics port (the one the issue and the shipped config use).
pub const DEFAULT_PORT: u16 = 9464;

/// How long one scrape may take to send its request or read the answer.
const IO_TIMEOUT: Duration = Duration::from_secs(2);
/// Longest request head read.
const MAX_HEAD: usize = 8 * 1024;

/// The daemon's metrics and the state needed to attribute records to an
/// instance (kills and raises happen inside a handler run and are
/// recorded before that run's `handler` record, which names the instance).
pub struct Metrics {
    registry: Registry,
    instances: IntGauge,
    watched: IntGauge,
    ooms: IntCounter,
    handler_runs: IntCounterVec,
    kills: IntCounterVec,
    kernel_fallbacks: IntCounter,
    backoffs: IntCounter,
    limit_raises: IntCounter,
    verifier_rejections: IntCounter,
    reaction: HistogramVec,
    handler_duration: HistogramVec,
    /// Limit raises per instance, for `status` only (not exported: the
    /// issue's `bpfoom_limit_raises_total` is the machine-wide count).
    raises: IntCounterVec,
    /// The OOM in progress: its memcg (the kernel's kills are labelled
    /// with it) and the latency at which the current handler run began.
    oom_memcg: String,
    run_started_us: Option<u64>,
    /// Actions of the current run, waiting for its `handler` record:
    /// (is a kill, latency in µs).
    pending: Vec<(bool, Option<u64>)>,
}

fn build<T>(r: prometheus::Result<T>) -> T {
    // The names, labels and buckets below are constants: an error here is
    // a programming error caught by the unit tests, not an input error.
    #[allow(clippy::expect_used)]
    r.expect("metric definition")
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// A registry with every bpfoom metric at zero.
    pub fn new() -> Self {
        let registry = Registry::new();
        let reg = |c: Box<dyn prometheus::core::Collector>| build(registry.register(c));
        let build_info = build(IntGaugeVec::new(
            Opts::new(
                "bpfoom_build_info",
                "The running bpfoom's version and git commit (always 1).",
            ),
            &["version", "commit"],
        ));
        build_info
            .with_label_values(&[env!("CARGO_PKG_VERSION"), crate::GIT_COMMIT])
            .set(1);
        reg(Box::new(build_info));
        let instances = build(IntGauge::new(
            "bpfoom_instances",
            "Attached policy instances (bpf_oom_ops and bpf_psi_ops).",
        ));
        reg(Box::new(instances.clone()));
        let watched = build(IntGauge::new(
            "bpfoom_watched_cgroups",
            "Memory cgroups whose OOMs the daemon handles.",
        ));
        reg(Box::new(watched.clone()));
        let counter = |name: &str, help: &str| {
            let c = build(IntCounter::new(name, help));
            reg(Box::new(c.clone()));
            c
        };
        let ooms = counter(
            "bpfoom_ooms_total",
            "OOM events handled (memcg and global).",
        );
        let kernel_fallbacks = counter(
            "bpfoom_kernel_fallbacks_total",
            "OOM events no handler resolved, left to the kernel's OOM killer.",
        );
        let backoffs = counter(
            "bpfoom_backoffs_total",
            "BACKOFF verdicts returned by handlers (honoured or not).",
        );
        let limit_raises = counter(
            "bpfoom_limit_raises_total",
            "Memory limits raised from an instance's limit reserve.",
        );
        let verifier_rejections = counter(
            "bpfoom_verifier_rejections_total",
            "Policies refused by the contract check or the verifier.",
        );
        let handler_runs = build(IntCounterVec::new(
            Opts::new(
                "bpfoom_handler_runs_total",
                "handle_out_of_memory runs by instance, attach cgroup and verdict.",
            ),
            &["policy", "cgroup", "verdict"],
        ));
        reg(Box::new(handler_runs.clone()));
        let kills = build(IntCounterVec::new(
            Opts::new(
                "bpfoom_kills_total",
                "Processes killed, by the instance that killed (or the kernel) and its \
                 attach cgroup (the OOM'ing memcg for the kernel).",
            ),
            &["policy", "cgroup", "by"],
        ));
        reg(Box::new(kills.clone()));
        // 100 µs to ~13 s: a policy's reaction is well under a millisecond
        // on an idle machine, the kernel's own wait for a victim seconds.
        let buckets = build(prometheus::exponential_buckets(0.0001, 2.0, 18));
        let reaction = build(HistogramVec::new(
            HistogramOpts::new(
                "bpfoom_reaction_seconds",
                "Time from the kernel's OOM notification to a kill or a limit raise.",
            )
            .buckets(buckets.clone()),
            &["policy", "cgroup"],
        ));
        reg(Box::new(reaction.clone()));
        let handler_duration = build(HistogramVec::new(
            HistogramOpts::new(
                "bpfoom_handler_duration_seconds",
                "Wall-clock time of one handler run, kfunc calls included.",
            )
            .buckets(buckets),
            &["policy", "cgroup"],
        ));
        reg(Box::new(handler_duration.clone()));
        let raises = build(IntCounterVec::new(
            Opts::new("bpfoom_instance_limit_raises", "not exported"),
            &["policy", "cgroup"],
        ));
        Metrics {
            registry,
            instances,
            watched,
            ooms,
            handler_runs,
            kills,
            kernel_fallbacks,
            backoffs,
            limit_raises,
            verifier_rejections,
            reaction,
            handler_duration,
            raises,
            oom_memcg: String::new(),
            run_started_us: None,
            pending: Vec::new(),
        }
    }

    /// The registry, for the HTTP thread.
    pub fn registry(&self) -> Registry {
        self.registry.clone()
    }

    /// Sets the gauges of the daemon's state.
    pub fn set_state(&self, instances: usize, watched: usize) {
        self.instances.set(instances as i64);
        self.watched.set(watched as i64);
    }

    /// Counts a policy refused at attach (contract check or verifier).
    pub fn verifier_rejection(&self) {
        self.verifier_rejections.inc();
    }

    /// Feeds one decision record, in the order the daemon emits them.
    pub fn observe(&mut self, r: &TimedRecord) {
        match &r.record {
            Record::Oom { memcg, .. } => {
                self.ooms.inc();
                self.oom_memcg = memcg.clone().unwrap_or_else(|| "/".into());
                self.run_started_us = r.latency_us;
                self.pending.clear();
            }
            Record::Kill { by, .. } if by == "kernel" => {
                self.kills
                    .with_label_values(&["", &self.oom_memcg, "kernel"])
                    .inc();
            }
            Record::Kill { .. } => self.pending.push((true, r.latency_us)),
            Record::LimitRaised { .. } => {
                self.limit_raises.inc();
                self.pending.push((false, r.latency_us));
            }
            Record::Handler {
                policy,
                cgroup,
                ret,
                ..
            } => {
                let verdict = match ret {
                    Verdict::Processed => "processed",
                    Verdict::Failed => "failed",
                    Verdict::Backoff => "backoff",
                };
                let labels = [policy.as_str(), cgroup.as_str()];
                self.handler_runs
                    .with_label_values(&[policy, cgroup, verdict])
                    .inc();
                if let (Some(start), Some(end)) = (self.run_started_us, r.latency_us) {
                    self.handler_duration
                        .with_label_values(&labels)
                        .observe(end.saturating_sub(start) as f64 / 1e6);
                }
                self.run_started_us = r.latency_us;
                for (kill, lat) in self.pending.drain(..) {
                    if kill {
                        self.kills
                            .with_label_values(&[policy, cgroup, "policy"])
                            .inc();
                    } else {
                        self.raises.with_label_values(&labels).inc();
                    }
                    if let Some(l) = lat {
                        self.reaction
                            .with_label_values(&labels)
                            .observe(l as f64 / 1e6);
                    }
                }
            }
            Record::Backoff { .. } => self.backoffs.inc(),
            Record::Resolved { by } => {
                if *by == bpfoom_engine::ResolvedBy::Kernel {
                    self.kernel_fallbacks.inc();
                }
                // Actions outside any handler run (none today) still count.
                for (kill, _) in self.pending.drain(..) {
                    if kill {
                        self.kills.with_label_values(&["", "", "policy"]).inc();
                    }
                }
                self.run_started_us = None;
            }
            _ => {}
        }
    }

    /// One instance's counters for `bpfoom status`: handler runs by
    /// verdict, kills and limit raises (as in the metrics).
    pub fn instance_counters(&self, policy: &str, cgroup: &str) -> serde_json::Value {
        let runs = |v: &str| {
            self.handler_runs
                .with_label_values(&[policy, cgroup, v])
                .get()
        };
        let kills = self
            .kills
            .with_label_values(&[policy, cgroup, "policy"])
            .get();
        serde_json::json!({
            "runs": runs("processed") + runs("failed") + runs("backoff"),
            "processed": runs("processed"),
            "failed": runs("failed"),
            "backoff": runs("backoff"),
            "kills": kills,
            "limit_raises": self.raises.with_label_values(&[policy, cgroup]).get(),
        })
    }

    /// The registry in the Prometheus text format.
    pub fn render(&self) -> Vec<u8> {
        render(&self.registry)
    }
}

fn render(registry: &Registry) -> Vec<u8> {
    let mut buf = Vec::new();
    // Encoding into a Vec cannot fail for the metric types used here.
    let _ = TextEncoder::new().encode(&registry.gather(), &mut buf);
    buf
}

/// Parses a metrics address: `HOST:PORT`, `[V6]:PORT`, or a bare `PORT` /
/// `:PORT`, which listens on the loopback address only (the default must
/// not expose the daemon's state to the network).
pub fn parse_addr(s: &str) -> Result<SocketAddr, DaemonError> {
    let t = s.trim();
    let port_only = t.strip_prefix(':').unwrap_or(t);
    if let Ok(port) = port_only.parse::<u16>() {
        return Ok(SocketAddr::from(([127, 0, 0, 1], port)));
    }
    if let Ok(a) = t.parse::<SocketAddr>() {
        return Ok(a);
    }
    t.to_socket_addrs()
        .ok()
        .and_then(|mut it| it.next())
        .ok_or_else(|| InputError::MetricsAddr { given: s.into() }.into())
}

/// Binds `addr` and serves `/metrics` from `registry` on a thread; returns
/// the bound address (with the real port when `addr` asked for port 0).
pub fn serve(addr: SocketAddr, registry: Registry) -> Result<SocketAddr, DaemonError> {
    let listener = bind(addr)?;
    let local = listener.local_addr().map_err(|source| DaemonError::Io {
        what: format!("metrics endpoint {addr}"),
        source,
    })?;
    spawn(listener, registry)?;
    Ok(local)
}

/// Binds the endpoint (at start-up, so a bad address stops the start).
pub fn bind(addr: SocketAddr) -> Result<TcpListener, DaemonError> {
    TcpListener::bind(addr).map_err(|source| DaemonError::Io {
        what: format!("metrics endpoint {addr}"),
        source,
    })
}

/// Serves `/metrics` on `listener` from a new thread. Call it after the
/// daemon blocked its signals (the signalfd): the thread inherits the
/// mask, so a SIGTERM is never delivered to it (which would kill the
/// process without restoring the cgroups).
pub fn spawn(listener: TcpListener, registry: Registry) -> Result<(), DaemonError> {
    std::thread::Builder::new()
        .name("bpfoom-metrics".into())
        .spawn(move || {
            loop {
                match listener.accept() {
                    // A failed scrape only concerns that scraper.
                    Ok((s, _)) => {
                        let _ = answer(s, &registry);
                    }
                    // E.g. out of descriptors: wait instead of spinning.
                    Err(_) => std::thread::sleep(Duration::from_millis(100)),
                }
            }
        })
        .map_err(|source| DaemonError::Io {
            what: "metrics thread".into(),
            source,
        })?;
    Ok(())
}

/// Reads one request head and answers it; the connection is closed after.
fn answer(mut s: TcpStream, registry: &Registry) -> std::io::Result<()> {
    s.set_read_timeout(Some(IO_TIMEOUT))?;
    s.set_write_timeout(Some(IO_TIMEOUT))?;
    let mut head = Vec::with_capacity(512);
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && !head.windows(2).any(|w| w == b"\n\n") {
        let n = s.read(&mut buf)?;
        if n == 0 {
            break;
        }
        head.extend_from_slice(&buf[..n]);
        if head.len() > MAX_HEAD {
            return respond(
                &mut s,
                "431 Request Header Fields Too Large",
                "text/plain",
                b"",
            );
        }
    }
    let line = head.split(|&b| b == b'\n').next().unwrap_or_default();
    let line = String::from_utf8_lossy(line);
    let mut parts = line.split_whitespace();
    let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let path = target.split('?').next().unwrap_or("");
    match (method, path) {
        ("GET" | "HEAD", "/metrics") => {
            let body = if method == "GET" {
                render(registry)
            } else {
                Vec::new()
            };
            respond(&mut s, "200 OK", TextEncoder::new().format_type(), &body)
        }
        ("GET" | "HEAD", "/") => respond(
            &mut s,
            "200 OK",
            "text/plain; charset=utf-8",
            b"bpfoom: metrics at /metrics\n",
        ),
        ("GET" | "HEAD", _) => respond(&mut s, "404 Not Found", "text/plain", b"not found\n"),
        _ => respond(
            &mut s,
            "405 Method Not Allowed",
            "text/plain",
            b"only GET\n",
        ),
    }
}

fn respond(s: &mut TcpStream, status: &str, ctype: &str, body: &[u8]) -> std::io::Result<()> {
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes())?;
    s.write_all(body)?;
    s.flush()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use bpfoom_engine::Constraint;

    fn rec(record: Record, latency_us: Option<u64>) -> TimedRecord {
        TimedRecord { record, latency_us }
    }

    fn text(m: &Metrics) -> String {
        String::from_utf8(m.render()).unwrap()
    }

    #[test]
    fn records_become_labelled_series() {
        let mut m = Metrics::new();
        m.set_state(2, 7);
        let seq = [
            rec(
                Record::Oom {
                    memcg: Some("/job/a".into()),
                    constraint: Constraint::Memcg,
                    text: None,
                    totalpages: 1,
                },
                Some(100),
            ),
            rec(
                Record::Handler {
                    policy: "always_fail".into(),
                    cgroup: "/job".into(),
                    ret: Verdict::Failed,
                    memory_freed: false,
                    insns: Some(3),
                    reason: None,
                },
                Some(300),
            ),
            rec(
                Record::Kill {
                    pid: 42,
                    comm: "hog".into(),
                    cgroup: "/job/a".into(),
                    by: "policy:largest_leaf".into(),
                    message: "x".into(),
                },
                Some(900),
            ),
            rec(
                Record::Handler {
                    policy: "largest_leaf".into(),
                    cgroup: "/".into(),
                    ret: Verdict::Processed,
                    memory_freed: true,
                    insns: Some(9),
                    reason: None,
                },
                Some(1300),
            ),
            rec(
                Record::Resolved {
                    by: bpfoom_engine::ResolvedBy::Policy("largest_leaf".into()),
                },
                Some(1400),
            ),
        ];
        for r in &seq {
            m.observe(r);
        }
        let t = text(&m);
        for want in [
            "bpfoom_instances 2",
            "bpfoom_watched_cgroups 7",
            "bpfoom_ooms_total 1",
            "bpfoom_handler_runs_total{cgroup=\"/job\",policy=\"always_fail\",verdict=\"failed\"} 1",
            "bpfoom_handler_runs_total{cgroup=\"/\",policy=\"largest_leaf\",verdict=\"processed\"} 1",
            "bpfoom_kills_total{by=\"policy\",cgroup=\"/\",policy=\"largest_leaf\"} 1",
            "bpfoom_reaction_seconds_count{cgroup=\"/\",policy=\"largest_leaf\"} 1",
            "bpfoom_reaction_seconds_sum{cgroup=\"/\",policy=\"largest_leaf\"} 0.0009",
            // 300-100 µs and 1300-300 µs.
            "bpfoom_handler_duration_seconds_sum{cgroup=\"/job\",policy=\"always_fail\"} 0.0002",
            "bpfoom_handler_duration_seconds_sum{cgroup=\"/\",policy=\"largest_leaf\"} 0.001",
            "bpfoom_kernel_fallbacks_total 0",
            "bpfoom_build_info{commit=",
        ] {
            assert!(t.contains(want), "missing {want:?} in\n{t}");
        }
        assert!(!t.contains("pid"), "no pid label: {t}");
    }

    #[test]
    fn kernel_kills_carry_the_ooming_memcg() {
        let mut m = Metrics::new();
        m.observe(&rec(
            Record::Oom {
                memcg: Some("/job".into()),
                constraint: Constraint::Memcg,
                text: None,
                totalpages: 1,
            },
            Some(1),
        ));
        m.observe(&rec(
            Record::Resolved {
                by: bpfoom_engine::ResolvedBy::Kernel,
            },
            Some(2),
        ));
        m.observe(&rec(
            Record::Kill {
                pid: 1,
                comm: "x".into(),
                cgroup: "/job/a".into(),
                by: "kernel".into(),
                message: String::new(),
            },
            None,
        ));
        let t = text(&m);
        assert!(t.contains("bpfoom_kernel_fallbacks_total 1"), "{t}");
        assert!(
            t.contains("bpfoom_kills_total{by=\"kernel\",cgroup=\"/job\",policy=\"\"} 1"),
            "{t}"
        );
    }

    #[test]
    fn addresses_default_to_loopback() {
        assert_eq!(
            parse_addr("9464").unwrap(),
            "127.0.0.1:9464".parse().unwrap()
        );
        assert_eq!(
            parse_addr(":9464").unwrap(),
            "127.0.0.1:9464".parse().unwrap()
        );
        assert_eq!(parse_addr("[::1]:1").unwrap(), "[::1]:1".parse().unwrap());
        let e = parse_addr("nonsense").unwrap_err().to_string();
        assert!(e.contains("HOST:PORT"), "{e}");
    }

    #[test]
    fn http_endpoint_serves_metrics_and_404s() {
        let m = Metrics::new();
        m.set_state(3, 1);
        let addr = serve("127.0.0.1:0".parse().unwrap(), m.registry()).unwrap();
        let get = |req: &str| {
            let mut s = TcpStream::connect(addr).unwrap();
            s.write_all(req.as_bytes()).unwrap();
            let mut out = String::new();
            s.read_to_string(&mut out).unwrap();
            out
        };
        let r = get("GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n");
        assert!(r.starts_with("HTTP/1.1 200 OK\r\n"), "{r}");
        assert!(r.contains("Content-Type: text/plain; version=0.0.4"), "{r}");
        assert!(r.contains("\r\n\r\n# HELP "), "{r}");
        assert!(r.contains("bpfoom_instances 3"), "{r}");
        assert!(get("GET /nope HTTP/1.0\r\n\r\n").starts_with("HTTP/1.1 404"));
        assert!(get("POST /metrics HTTP/1.0\r\n\r\n").starts_with("HTTP/1.1 405"));
    }
}
