//! Record stamping and the record journal.
//!
//! - Every decision record gets an RFC 3339 UTC wall-clock `ts` (first
//!   field, microseconds), taken when the record is emitted, so the JSON
//!   lines on stdout, `bpfoom status` and `bpfoom events` agree.
//! - stderr lines carry an sd-daemon(3) severity prefix (`<3>` error,
//!   `<4>` warning, `<6>` info, `<7>` debug for `bpf_printk`) when stderr
//!   goes to the journal (`$JOURNAL_STREAM` set, as systemd does), so
//!   `journalctl -p warning -u bpfoom` works; on a terminal the lines stay
//!   plain.
//! - The journal keeps the last records for `status` and serves `events
//!   --follow` subscribers: each gets every new record as it is emitted,
//!   written without blocking; a subscriber whose socket buffer is full
//!   (it does not read) is dropped rather than slowing the OOM path.

use std::collections::VecDeque;
use std::io::Write;
use std::os::unix::net::UnixStream;
use std::time::{SystemTime, UNIX_EPOCH};

/// How many records `status` and `events` (without `--follow`) show.
pub const KEEP: usize = 50;
/// At most this many `events --follow` clients at once (the oldest is
/// dropped for a new one).
pub const MAX_FOLLOWERS: usize = 16;

/// A syslog severity, as sd-daemon(3) prefixes encode it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Severity {
    /// `<3>`: a failure the operator must look at.
    Err,
    /// `<4>`: something degraded (a fallback, suppressed messages).
    Warning,
    /// `<6>`: daemon events.
    Info,
    /// `<7>`: policy trace output (`bpf_printk`).
    Debug,
}

impl Severity {
    /// The `<N>` prefix.
    pub fn prefix(self) -> &'static str {
        match self {
            Severity::Err => "<3>",
            Severity::Warning => "<4>",
            Severity::Info => "<6>",
            Severity::Debug => "<7>",
        }
    }
}

/// Whether stderr lines get severity prefixes: when systemd connected the
/// output to the journal (it sets `$JOURNAL_STREAM`).
pub fn prefixes_wanted() -> bool {
    std::env::var_os("JOURNAL_STREAM").is_some_and(|v| !v.is_empty())
}

/// `2026-12-03T05:57:34.123456Z`.
pub fn rfc3339(t: SystemTime) -> String {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs();
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (y, m, dd) = civil_from_days(days as i64);
    format!(
        "{y:04}-{m:02}-{dd:02}T{:02}:{:02}:{:02}.{:06}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        d.subsec_micros()
    )
}

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian
/// (H. Hinnant's `civil_from_days`).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// One record as a JSON line built with serde: `ts` (RFC 3339) first, the
/// engine's record (`event` and its fields, in their order), then
/// `latency_us` during an OOM and `"dry_run":true` in a dry run.
pub fn json_line(r: &bpfoom_host::TimedRecord, dry_run: bool, t: SystemTime) -> String {
    #[derive(serde::Serialize)]
    struct Line<'a> {
        ts: String,
        #[serde(flatten)]
        record: &'a bpfoom_engine::Record,
        #[serde(skip_serializing_if = "Option::is_none")]
        latency_us: Option<u64>,
        #[serde(skip_serializing_if = "std::ops::Not::not")]
        dry_run: bool,
    }
    let line = Line {
        ts: rfc3339(t),
        record: &r.record,
        latency_us: r.latency_us,
        dry_run,
    };
    // Strings, numbers and bools only: serializing cannot fail.
    serde_json::to_string(&line)
        .unwrap_or_else(|e| format!("{{\"event\":\"error\",\"message\":\"{e}\"}}"))
}

/// The last records and the `events --follow` subscribers.
#[derive(Default)]
pub struct Journal {
    recent: VecDeque<String>,
    followers: Vec<UnixStream>,
}

impl Journal {
    /// Keeps a stamped JSON line and sends it to every follower.
    pub fn push(&mut self, line: &str) {
        if self.recent.len() >= KEEP {
            self.recent.pop_front();
        }
        self.recent.push_back(line.to_string());
        if self.followers.is_empty() {
            return;
        }
        let mut msg = line.as_bytes().to_vec();
        msg.push(b'\n');
        // A follower that cannot take the whole line now is dropped: a
        // partial line would corrupt its stream, waiting would block OOMs.
        self.followers
            .retain(|s| matches!((&*s).write(&msg), Ok(n) if n == msg.len()));
    }

    /// The last records, oldest first.
    pub fn recent(&self) -> impl Iterator<Item = &str> {
        self.recent.iter().map(String::as_str)
    }

    /// Adds a follower (its socket must be non-blocking).
    pub fn follow(&mut self, s: UnixStream) {
        if self.followers.len() >= MAX_FOLLOWERS {
            self.followers.remove(0);
        }
        self.followers.push(s);
    }

    /// How many followers are connected.
    pub fn followers(&self) -> usize {
        self.followers.len()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use std::time::Duration;

    #[test]
    fn rfc3339_utc() {
        assert_eq!(rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00.000000Z");
        let t = UNIX_EPOCH + Duration::from_micros(1_796_277_454_123_456);
        assert_eq!(rfc3339(t), "2026-12-03T05:57:34.123456Z");
        // A leap day.
        let t = UNIX_EPOCH + Duration::from_secs(951_782_400);
        assert_eq!(rfc3339(t), "2000-02-29T00:00:00.000000Z");
    }

    #[test]
    fn ts_is_the_first_field_then_the_record() {
        let r = bpfoom_host::TimedRecord {
            record: bpfoom_engine::Record::Exit {
                pid: 7,
                cgroup: "/a \"b\"".into(),
                after_ms: 3,
            },
            latency_us: Some(12),
        };
        let s = json_line(&r, true, UNIX_EPOCH);
        assert_eq!(
            s,
            "{\"ts\":\"1970-01-01T00:00:00.000000Z\",\"event\":\"exit\",\"pid\":7,\
             \"cgroup\":\"/a \\\"b\\\"\",\"after_ms\":3,\"latency_us\":12,\"dry_run\":true}"
        );
        let plain = json_line(
            &bpfoom_host::TimedRecord {
                latency_us: None,
                ..r
            },
            false,
            UNIX_EPOCH,
        );
        assert!(
            !plain.contains("latency_us") && !plain.contains("dry_run"),
            "{plain}"
        );
    }

    #[test]
    fn journal_keeps_the_last_and_drops_stuck_followers() {
        let mut j = Journal::default();
        for i in 0..KEEP + 5 {
            j.push(&format!("{{\"n\":{i}}}"));
        }
        assert_eq!(j.recent().count(), KEEP);
        assert_eq!(j.recent().next(), Some("{\"n\":5}"));
        let (a, b) = UnixStream::pair().unwrap();
        a.set_nonblocking(true).unwrap();
        j.follow(a);
        j.push("{\"hello\":1}");
        let mut buf = [0u8; 64];
        let n = std::io::Read::read(&mut &b, &mut buf).unwrap();
        assert_eq!(&buf[..n], b"{\"hello\":1}\n");
        // Nobody reads `b`: once its buffer is full the follower goes.
        let big = "x".repeat(64 * 1024);
        for _ in 0..1000 {
            j.push(&big);
            if j.followers() == 0 {
                break;
            }
        }
        assert_eq!(j.followers(), 0);
    }
}
