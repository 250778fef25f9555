//! Output: decision records on stdout, diagnostics on stderr. Anything a
//! guest (a policy's printk, a fault it triggers) can produce at will is
//! rate limited per source.

use std::collections::HashMap;
use std::io::Write;
use std::time::{Duration, Instant};

use bpfoom_engine::Record;
use bpfoom_host::TimedRecord;

use crate::config::LogFormat;
use crate::records::{Journal, Severity};

/// A fixed-window limiter: `burst` lines per `window` per key, then one
/// summary of what was dropped when the window ends.
#[derive(Debug)]
pub struct RateLimiter {
    burst: u32,
    window: Duration,
    keys: HashMap<String, (Instant, u32, u64)>,
}

impl RateLimiter {
    /// A limiter allowing `burst` lines per `window`.
    pub fn new(burst: u32, window: Duration) -> Self {
        Self {
            burst,
            window,
            keys: HashMap::new(),
        }
    }

    /// Whether a line for `key` may go out now; the second value is how
    /// many were suppressed in the window that just ended (report it).
    pub fn allow(&mut self, key: &str, now: Instant) -> (bool, u64) {
        // Bound memory: keys are policy names, but be safe.
        if self.keys.len() > 1024 {
            self.keys.clear();
        }
        let e = self.keys.entry(key.to_string()).or_insert((now, 0, 0));
        let mut dropped = 0;
        if now.saturating_duration_since(e.0) >= self.window {
            dropped = e.2;
            *e = (now, 0, 0);
        }
        if e.1 < self.burst {
            e.1 += 1;
            (true, dropped)
        } else {
            e.2 += 1;
            (false, dropped)
        }
    }
}

/// Where records and diagnostics go.
pub struct Output {
    format: LogFormat,
    dry_run: bool,
    limiter: RateLimiter,
    out: Box<dyn Write>,
    err: Box<dyn Write>,
    /// sd-daemon severity prefixes on stderr (see [`crate::records`]).
    prefix: bool,
    /// The last records and the `events --follow` subscribers.
    pub journal: Journal,
}

impl Output {
    /// Output to the process's stdout and stderr.
    pub fn stdio(format: LogFormat, dry_run: bool) -> Self {
        Self {
            format,
            dry_run,
            limiter: RateLimiter::new(20, Duration::from_secs(1)),
            out: Box::new(std::io::stdout()),
            err: Box::new(std::io::stderr()),
            prefix: crate::records::prefixes_wanted(),
            journal: Journal::default(),
        }
    }

    /// A diagnostic line on stderr (not rate limited: daemon events).
    pub fn info(&mut self, msg: &str) {
        self.log(Severity::Info, msg);
    }

    /// A stderr line with a severity.
    pub fn log(&mut self, sev: Severity, msg: &str) {
        let p = if self.prefix { sev.prefix() } else { "" };
        let _ = writeln!(self.err, "{p}bpfoom: {msg}");
    }

    /// Whether the rate limit lets one more of `policy`'s lines through
    /// (reporting suppressed ones once the window reopens).
    fn allow(&mut self, policy: &str) -> bool {
        let (ok, dropped) = self.limiter.allow(policy, Instant::now());
        if dropped > 0 {
            self.log(
                Severity::Warning,
                &format!("{policy}: {dropped} messages suppressed (rate limit)"),
            );
        }
        ok
    }

    /// One record: printk and errors go to stderr, rate limited per policy;
    /// decisions go to stdout.
    pub fn record(&mut self, r: &TimedRecord) {
        match &r.record {
            Record::Printk { policy, message } | Record::Error { policy, message } => {
                let kind = if matches!(r.record, Record::Printk { .. }) {
                    "printk"
                } else {
                    "error"
                };
                let (ok, dropped) = self.limiter.allow(policy, Instant::now());
                if ok {
                    // In order with the decisions, for `status` and `events`.
                    let now = std::time::SystemTime::now();
                    let json = crate::records::json_line(r, self.dry_run, now);
                    self.journal.push(&json);
                }
                if dropped > 0 {
                    self.log(
                        Severity::Warning,
                        &format!("{policy}: {dropped} messages suppressed (rate limit)"),
                    );
                }
                if ok {
                    let sev = if kind == "printk" {
                        Severity::Debug
                    } else {
                        Severity::Err
                    };
                    self.log(sev, &format!("{policy}: {kind}: {}", message.trim_end()));
                }
            }
            // Ring-buffer records are the policy's own decision events:
            // on stdout with the others, but rate limited like printk since
            // a guest can submit them at will.
            Record::Ringbuf { policy, .. } if !self.allow(policy) => {}
            _ => {
                let now = std::time::SystemTime::now();
                let json = crate::records::json_line(r, self.dry_run, now);
                self.journal.push(&json);
                let line = match self.format {
                    LogFormat::Json => json,
                    LogFormat::Text => {
                        // `[TS +LATENCY] event ...`: the time joins the bracket.
                        let ts = crate::records::rfc3339(now);
                        let t = text(r, self.dry_run);
                        match t.strip_prefix('[') {
                            Some(rest) => format!("[{ts} {rest}"),
                            None => format!("[{ts}] {t}"),
                        }
                    }
                };
                let _ = writeln!(self.out, "{line}");
                let _ = self.out.flush();
            }
        }
    }
}

/// A record as a human line: `event key=value ...`.
pub fn text(r: &TimedRecord, dry_run: bool) -> String {
    let v = serde_json::to_value(&r.record).unwrap_or_default();
    let mut s = String::new();
    if let Some(l) = r.latency_us {
        s.push_str(&format!("[+{:.3}ms] ", l as f64 / 1000.0));
    }
    if dry_run {
        s.push_str("(dry run) ");
    }
    if let Some(obj) = v.as_object() {
        s.push_str(obj.get("event").and_then(|e| e.as_str()).unwrap_or("?"));
        for (k, val) in obj.iter().filter(|(k, _)| *k != "event") {
            match val {
                serde_json::Value::String(x) => s.push_str(&format!(" {k}={x:?}")),
                other => s.push_str(&format!(" {k}={other}")),
            }
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limiter_bounds_lines_and_reports_drops() {
        let mut l = RateLimiter::new(2, Duration::from_secs(1));
        let t = Instant::now();
        assert_eq!(l.allow("p", t), (true, 0));
        assert_eq!(l.allow("p", t), (true, 0));
        assert_eq!(l.allow("p", t), (false, 0));
        assert_eq!(l.allow("p", t), (false, 0));
        assert_eq!(l.allow("q", t), (true, 0), "keys are separate");
        assert_eq!(l.allow("p", t + Duration::from_secs(1)), (true, 2));
    }

    #[test]
    fn text_lines() {
        let r = TimedRecord {
            record: Record::Resolved {
                by: bpfoom_engine::ResolvedBy::Kernel,
            },
            latency_us: Some(1500),
        };
        assert_eq!(text(&r, false), "[+1.500ms] resolved by=\"kernel\"");
        let json = crate::records::json_line(&r, true, std::time::UNIX_EPOCH);
        assert!(json.contains("\"latency_us\":1500"), "{json}");
        assert!(json.contains("\"dry_run\":true"), "{json}");
    }
}
