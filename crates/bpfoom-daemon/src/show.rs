//! What the clients print: `status` as aligned tables, decision records as
//! one text line each, and the `events` stream.
//!
//! Every name coming from the daemon (cgroup paths, file and policy names,
//! messages) goes through [`printable`] before it reaches a terminal.

use std::io::{BufRead, BufReader, Write};
use std::path::Path;

use serde_json::Value;

use crate::control::{Request, Response};
use crate::{ControlError, DaemonError};

/// A name as the text output shows it: control characters and backslashes
/// escaped (`\t`, `\u{1b}`, `\\`), so a cgroup or file name can neither
/// break a line nor send escape sequences to the terminal (fault 8).
pub fn printable(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if c.is_control() || c == '\\' {
            out.extend(c.escape_debug());
        } else {
            out.push(c);
        }
    }
    out
}

/// Bytes as `512`, `64K`, `1.5M`, `2G` (powers of 1024).
pub fn size(b: u64) -> String {
    const UNITS: [(u64, &str); 4] = [
        (1 << 40, "T"),
        (1 << 30, "G"),
        (1 << 20, "M"),
        (1 << 10, "K"),
    ];
    for (u, n) in UNITS {
        if b >= u {
            let v = b as f64 / u as f64;
            // `u` is a power of two: no remainder when the low bits are clear.
            return if b & (u - 1) == 0 {
                format!("{}{n}", b / u)
            } else {
                format!("{v:.1}{n}")
            };
        }
    }
    b.to_string()
}

/// Seconds as `45s`, `12m03s`, `3h07m`, `2d04h`.
pub fn duration(s: u64) -> String {
    match s {
        0..=59 => format!("{s}s"),
        60..=3599 => format!("{}m{:02}s", s / 60, s % 60),
        3600..=86_399 => format!("{}h{:02}m", s / 3600, s % 3600 / 60),
        _ => format!("{}d{:02}h", s / 86_400, s % 86_400 / 3600),
    }
}

/// Columns padded to their widest cell (the last one is not padded).
pub fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut w: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            w[i] = w[i].max(c.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let mut s = String::new();
        for (i, c) in cells.iter().enumerate() {
            if i + 1 == cells.len() {
                s.push_str(c);
            } else {
                s.push_str(&format!("{c:<width$}  ", width = w[i]));
            }
        }
        s.trim_end().to_string() + "\n"
    };
    let mut out = line(header.to_vec());
    for r in rows {
        out.push_str(&line(r.iter().map(String::as_str).collect()));
    }
    out
}

/// Every line two spaces in (instance rows start with `  bpf_oom_ops`).
fn indent(t: &str) -> String {
    t.lines().map(|l| format!("  {l}\n")).collect()
}

fn text_of(v: &Value) -> String {
    match v {
        Value::String(s) => printable(s),
        Value::Null => "-".into(),
        other => other.to_string(),
    }
}

/// A decision record as one line: `DATE TIME EVENT key=value ...` (UTC,
/// milliseconds; the other fields in name order).
pub fn record_line(r: &Value) -> String {
    let ts = r["ts"].as_str().unwrap_or("");
    // 2026-12-03T05:57:34.123456Z -> 2026-12-03 05:57:34.123
    let short = match (ts.get(..10), ts.get(11..23)) {
        (Some(d), Some(t)) => format!("{d} {t}"),
        _ => ts.to_string(),
    };
    let mut s = format!("{short}  {}", text_of(&r["event"]));
    if let Some(obj) = r.as_object() {
        for (k, v) in obj {
            if k == "ts" || k == "event" {
                continue;
            }
            match v {
                // Debug quoting escapes quotes and control characters.
                Value::String(x) => s.push_str(&format!(" {k}={x:?}")),
                other => s.push_str(&format!(" {k}={other}")),
            }
        }
    }
    s
}

/// The text `status`: a summary line, the instance table, the counters,
/// then the last decisions one per line.
pub fn status_text(st: &Value) -> String {
    let mut out = String::new();
    let version = st["version"].as_str().unwrap_or("?");
    out.push_str(&format!(
        "bpfoom {} pid {}, up {} (since {}), cgroup {} at {}, {} watched cgroups{}\n",
        printable(st["bpfoom"].as_str().unwrap_or("?")),
        st["pid"],
        duration(st["uptime_s"].as_u64().unwrap_or(0)),
        st["started"].as_str().unwrap_or("?"),
        version.to_lowercase(),
        printable(st["hierarchy"].as_str().unwrap_or("?")),
        st["watched"],
        if st["dry_run"] == true {
            ", DRY RUN (nothing is killed or raised)"
        } else {
            ""
        }
    ));
    let rows: Vec<Vec<String>> = st["instances"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|i| {
            let c = &i["counters"];
            vec![
                text_of(&i["kind"]),
                text_of(&i["name"]),
                text_of(&i["cgroup"]),
                text_of(&i["backoff_budget_left"]),
                i["limit_reserve_left"].as_u64().map_or("-".into(), size),
                text_of(&c["runs"]),
                text_of(&c["processed"]),
                text_of(&c["failed"]),
                text_of(&c["kills"]),
                text_of(&c["limit_raises"]),
                text_of(&i["policy_file"]),
            ]
        })
        .collect();
    out.push('\n');
    if rows.is_empty() {
        out.push_str("no instances attached\n");
    } else {
        out.push_str(&indent(&table(
            &[
                "KIND",
                "INSTANCE",
                "CGROUP",
                "BACKOFF",
                "RESERVE",
                "RUNS",
                "OK",
                "FAILED",
                "KILLS",
                "RAISES",
                "POLICY FILE",
            ],
            &rows,
        )));
    }
    let c = &st["counters"];
    let n = |k: &str| c[k].as_u64().unwrap_or(0).to_string();
    out.push('\n');
    out.push_str(&indent(&table(
        &[
            "OOMS",
            "BY POLICY",
            "BY BACKOFF",
            "BY KERNEL",
            "UNRESOLVED",
            "KILLS",
            "RAISES",
            "REQUESTS",
            "REFUSED",
        ],
        &[vec![
            n("ooms"),
            n("resolved_by_policy"),
            n("resolved_by_backoff"),
            n("kernel_fallbacks"),
            n("unresolved"),
            n("kills"),
            n("limit_raises"),
            n("requests"),
            n("rejected_requests"),
        ]],
    )));
    let recent = st["last_decisions"].as_array().cloned().unwrap_or_default();
    out.push('\n');
    if recent.is_empty() {
        out.push_str("no decisions yet\n");
    } else {
        out.push_str("last decisions (UTC):\n");
        for r in &recent {
            out.push_str("  ");
            out.push_str(&record_line(r));
            out.push('\n');
        }
    }
    out
}

/// `bpfoom events`: the last records, then (with `follow`) every new one
/// until the daemon goes away or the output is closed.
pub fn events(
    socket: &Path,
    follow: bool,
    json: bool,
    out: &mut dyn Write,
) -> Result<(), DaemonError> {
    let print = |out: &mut dyn Write, r: &Value| -> std::io::Result<()> {
        if json {
            writeln!(out, "{r}")?;
        } else {
            writeln!(out, "{}", record_line(r))?;
        }
        out.flush()
    };
    if !follow {
        let resp =
            crate::control::request(socket, &Request::Events { follow }, crate::CLIENT_TIMEOUT)?;
        return match resp.events {
            Some(v) if resp.ok => {
                for r in &v {
                    print(out, r)?;
                }
                Ok(())
            }
            _ => Err(match resp.error {
                Some(message) => ControlError::Remote { message },
                None => ControlError::NoEvents,
            }
            .into()),
        };
    }
    let s = crate::control::connect(socket)?;
    let mut line =
        serde_json::to_string(&Request::Events { follow }).map_err(ControlError::Json)?;
    line.push('\n');
    let io = |what: &'static str| {
        move |source| ControlError::Io {
            what,
            socket: socket.to_path_buf(),
            source,
        }
    };
    (&s).write_all(line.as_bytes()).map_err(io("writing to"))?;
    let mut rd = BufReader::new(&s);
    let mut first = String::new();
    rd.read_line(&mut first).map_err(io("reading from"))?;
    let resp: Response =
        serde_json::from_str(&first).map_err(|source| ControlError::BadResponse {
            socket: socket.to_path_buf(),
            source,
        })?;
    for r in resp.events.iter().flatten() {
        print(out, r)?;
    }
    // Then one record per line, for as long as the daemon runs.
    s.set_read_timeout(None).map_err(ControlError::Socket)?;
    for l in rd.lines() {
        let l = l.map_err(io("reading from"))?;
        match serde_json::from_str::<Value>(&l) {
            Ok(r) => print(out, &r)?,
            Err(_) => continue,
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn sizes_and_durations() {
        assert_eq!(size(512), "512");
        assert_eq!(size(64 << 10), "64K");
        assert_eq!(size(3 << 29), "1.5G");
        assert_eq!(size(512 << 20), "512M");
        assert_eq!(duration(59), "59s");
        assert_eq!(duration(3 * 60 + 4), "3m04s");
        assert_eq!(duration(7 * 3600 + 5 * 60), "7h05m");
        assert_eq!(duration(2 * 86_400 + 3600), "2d01h");
    }

    #[test]
    fn tables_align() {
        let t = table(
            &["A", "BB", "C"],
            &[vec!["xxx".into(), "y".into(), "z".into()]],
        );
        assert_eq!(t, "A    BB  C\nxxx  y   z\n");
    }

    #[test]
    fn record_lines_are_text_with_the_time() {
        let r: Value = serde_json::from_str(
            r#"{"ts":"2026-12-03T05:57:34.123456Z","event":"kill","pid":7,"comm":"a\u001bb","by":"policy:x"}"#,
        )
        .unwrap();
        assert_eq!(
            record_line(&r),
            "2026-12-03 05:57:34.123  kill by=\"policy:x\" comm=\"a\\u{1b}b\" pid=7"
        );
    }
}
