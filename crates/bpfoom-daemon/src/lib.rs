//! `bpfoom run`: the BPF OOM daemon, and the `attach`/`detach`/`status`
//! clients of its control socket.
//!
//! The daemon runs BPF OOM policies (through [`bpfoom_engine`]) on the
//! memory cgroups of a real machine ([`bpfoom_host::LinuxHost`]):
//!
//! - policies come from `--attach POLICY=CGROUP`, the TOML config
//!   ([`config`]) or the control socket; each is verified (ContractCheck and
//!   [`bpfoom_verifier::verify_object`]) before it attaches, and a rejected
//!   one changes nothing;
//! - every decision record goes to stdout as one JSON line (with
//!   `latency_us` from the OOM notification) or a text line; `bpf_printk`
//!   output and errors go to stderr, rate limited since guests trigger them;
//! - crash safety: a guardian process ([`bpfoom_host::sys::spawn_guardian`])
//!   restores every paused cgroup within a poll wake-up of the daemon's
//!   death, a state file lets the next daemon reconcile, SIGTERM restores
//!   everything;
//! - `bpf_psi_ops` triggers get real PSI: every 100 ms while a trigger
//!   exists, the `some`/`full` `total=` microsecond counters of the
//!   trigger's cgroup (`memory.pressure`, `io.pressure`, `cpu.pressure` on
//!   cgroup v2) or of /proc/pressure/* (cgroup id 0) are sampled and their
//!   growth fed to the trigger. cgroup v1 has no per-cgroup pressure files:
//!   there every trigger uses the system-wide /proc/pressure file, which
//!   the log says once per trigger;
//! - systemd `Type=notify`: `READY=1` is sent to `$NOTIFY_SOCKET` once the
//!   initial attachments are in place (see `dist/bpfoom.service`).
//!
//! Exit codes: 0 ok, 1 rejected (a policy failed verification or a request
//! was refused), 2 bad input (config, object, cgroup, usage).

mod clients;
pub mod config;
pub mod control;
mod daemon;
mod logging;
mod psi;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::{Args, Subcommand};

pub use config::{Config, ConfigError, LogFormat};
pub use control::{AttachOpts, Request, Response};
pub use daemon::run_daemon;

/// The default control socket.
pub const DEFAULT_SOCKET: &str = "/run/bpfoom/bpfoom.sock";
/// The default state file.
pub const DEFAULT_STATE_FILE: &str = "/run/bpfoom/state";
/// How long a client waits for the daemon.
pub const CLIENT_TIMEOUT: Duration = Duration::from_secs(10);

/// Everything the daemon and its clients can fail with.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    /// The configuration is invalid (names file, line and key).
    #[error("{0}")]
    Config(#[from] ConfigError),
    /// Bad input: unreadable or corrupt object, unknown cgroup, bad option.
    #[error("{0}")]
    BadInput(String),
    /// The policy was rejected (verifier log) or the request refused.
    #[error("{0}")]
    Rejected(String),
    /// The control socket could not be used.
    #[error("{0}")]
    Control(String),
    /// The machine could not be set up (cgroupfs, socket, guardian).
    #[error("{0}")]
    Setup(String),
    /// Writing output failed.
    #[error("output: {0}")]
    Output(#[from] std::io::Error),
}

impl DaemonError {
    /// 1 for a rejection, 2 for everything else.
    pub fn exit_code(&self) -> u8 {
        match self {
            DaemonError::Rejected(_) => 1,
            _ => 2,
        }
    }
}

/// `bpfoom run`.
#[derive(Args, Debug, Clone, Default)]
pub struct RunArgs {
    /// TOML configuration file.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Attach a policy: POLICY.bpf.o=CGROUP (repeatable).
    #[arg(long, value_name = "POLICY=CGROUP")]
    pub attach: Vec<String>,
    /// Run the policies and log what they would do, without acting.
    #[arg(long)]
    pub dry_run: bool,
    /// Decision record format on stdout.
    #[arg(long, value_enum)]
    pub log_format: Option<LogFormat>,
    /// Control socket path.
    #[arg(long)]
    pub socket: Option<PathBuf>,
    /// State file path (restore list for crash recovery).
    #[arg(long)]
    pub state_file: Option<PathBuf>,
    /// Memory cgroup hierarchy (default: from /proc/self/mountinfo).
    #[arg(long)]
    pub cgroup_root: Option<PathBuf>,
    /// Skip mlockall (for unprivileged experiments).
    #[arg(long)]
    pub no_mlock: bool,
}

/// `bpfoom attach`.
#[derive(Args, Debug, Clone)]
pub struct AttachArgs {
    /// The compiled policy.
    pub policy: PathBuf,
    /// The cgroup to attach to.
    #[arg(long)]
    pub cgroup: String,
    /// The struct_ops instance, when the object has several.
    #[arg(long)]
    pub instance: Option<String>,
    /// BACKOFF budget.
    #[arg(long)]
    pub backoff_budget: Option<u32>,
    /// How long a honoured BACKOFF waits, milliseconds.
    #[arg(long)]
    pub backoff_timeout_ms: Option<u64>,
    /// Limit reserve (bytes, or with K/M/G/T).
    #[arg(long, value_parser = parse_size_arg)]
    pub limit_reserve: Option<u64>,
    /// Set a global variable before verification: NAME=VALUE (repeatable);
    /// VALUE an integer, a cgroup path (its id), or a TOML inline table or
    /// list laid out from the variable's BTF type (`{ preference = 2 }`).
    #[arg(long = "set", value_name = "NAME=VALUE")]
    pub globals: Vec<String>,
    /// Add a map entry: MAP:KEY=VALUE (repeatable); KEY and VALUE an
    /// integer, a cgroup path (its id), or a TOML inline table laid out
    /// from the map's BTF key/value type (`prefs:/job/a={ preference = 2 }`).
    #[arg(long = "map", value_name = "MAP:KEY=VALUE")]
    pub maps: Vec<String>,
    /// Control socket path.
    #[arg(long, default_value = DEFAULT_SOCKET)]
    pub socket: PathBuf,
}

/// `bpfoom detach`.
#[derive(Args, Debug, Clone)]
pub struct DetachArgs {
    /// The cgroup whose instance to detach.
    #[arg(long)]
    pub cgroup: String,
    /// Control socket path.
    #[arg(long, default_value = DEFAULT_SOCKET)]
    pub socket: PathBuf,
}

/// `bpfoom status`.
#[derive(Args, Debug, Clone)]
pub struct StatusArgs {
    /// Print the raw JSON.
    #[arg(long)]
    pub json: bool,
    /// Control socket path.
    #[arg(long, default_value = DEFAULT_SOCKET)]
    pub socket: PathBuf,
}

/// The daemon verbs, ready to be added to a clap CLI.
#[derive(Subcommand, Debug, Clone)]
pub enum DaemonCmd {
    /// Run the daemon in the foreground.
    Run(RunArgs),
    /// Verify a policy and attach it in the running daemon.
    Attach(AttachArgs),
    /// Detach the policy at a cgroup in the running daemon.
    Detach(DetachArgs),
    /// Show the running daemon's instances, counters and last decisions.
    Status(StatusArgs),
}

/// Runs one daemon verb, writing client output to `out`.
pub fn run_cmd(cmd: &DaemonCmd, out: &mut dyn Write) -> Result<(), DaemonError> {
    match cmd {
        DaemonCmd::Run(a) => run_daemon(a),
        DaemonCmd::Attach(a) => attach(a, out),
        DaemonCmd::Detach(a) => detach(a, out),
        DaemonCmd::Status(a) => status(a, out),
    }
}

fn parse_size_arg(s: &str) -> Result<u64, String> {
    config::parse_size(s).ok_or_else(|| format!("bad size {s:?}"))
}

/// Parses `--map MAP:KEY=VALUE`. KEY and VALUE are what
/// [`config::parse_value_arg`] takes; the `=` between them is the first one
/// outside braces, brackets and quotes, so a table key `{ a = 1 }=2` works.
pub fn parse_map_arg(arg: &str) -> Result<control::MapEntry, DaemonError> {
    let usage = || DaemonError::BadInput(format!("--map: expected MAP:KEY=VALUE, got {arg:?}"));
    let (map, rest) = arg.split_once(':').ok_or_else(usage)?;
    let (mut depth, mut quote) = (0i32, None);
    let mut split = None;
    for (i, c) in rest.char_indices() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), _) => {}
            (None, '"' | '\'') => quote = Some(c),
            (None, '{' | '[') => depth += 1,
            (None, '}' | ']') => depth -= 1,
            (None, '=') if depth == 0 => {
                split = Some(i);
                break;
            }
            _ => {}
        }
    }
    let i = split.ok_or_else(usage)?;
    let (key, value) = (&rest[..i], &rest[i + 1..]);
    if map.is_empty() || key.trim().is_empty() || value.trim().is_empty() {
        return Err(usage());
    }
    let parse = |s: &str, what: &str| {
        config::parse_value_arg(s)
            .map_err(|e| DaemonError::BadInput(format!("--map {arg}: {what}: {e}")))
    };
    Ok(control::MapEntry {
        map: map.into(),
        key: parse(key, "key")?,
        value: parse(value, "value")?,
        arg: Some(format!("--map {arg}")),
    })
}

fn split_kv<'a>(s: &'a str, what: &str) -> Result<(&'a str, &'a str), DaemonError> {
    s.split_once('=')
        .filter(|(k, v)| !k.is_empty() && !v.is_empty())
        .ok_or_else(|| DaemonError::BadInput(format!("{what}: expected KEY=VALUE, got {s:?}")))
}

fn finish(resp: Response, out: &mut dyn Write) -> Result<(), DaemonError> {
    if resp.ok {
        if let Some(m) = &resp.message {
            writeln!(out, "{m}")?;
        }
        return Ok(());
    }
    let msg = resp.error.unwrap_or_else(|| "request failed".into());
    Err(match resp.code {
        1 => DaemonError::Rejected(msg),
        _ => DaemonError::BadInput(msg),
    })
}

fn absolute(p: &Path) -> PathBuf {
    std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf())
}

/// `bpfoom attach`: asks the daemon to verify and attach a policy.
pub fn attach(a: &AttachArgs, out: &mut dyn Write) -> Result<(), DaemonError> {
    let mut options = AttachOpts {
        backoff_budget: a.backoff_budget,
        backoff_timeout_ms: a.backoff_timeout_ms,
        limit_reserve: a.limit_reserve,
        ..Default::default()
    };
    for g in &a.globals {
        let (k, v) = split_kv(g, "--set")?;
        let value = config::parse_value_arg(v)
            .map_err(|e| DaemonError::BadInput(format!("--set {g}: {e}")))?;
        options.globals.insert(k.into(), value);
    }
    for m in &a.maps {
        options.maps.push(parse_map_arg(m)?);
    }
    let req = Request::Attach {
        policy: absolute(&a.policy),
        cgroup: a.cgroup.clone(),
        instance: a.instance.clone(),
        options,
    };
    finish(control::request(&a.socket, &req, CLIENT_TIMEOUT)?, out)
}

/// `bpfoom detach`.
pub fn detach(a: &DetachArgs, out: &mut dyn Write) -> Result<(), DaemonError> {
    let req = Request::Detach {
        cgroup: a.cgroup.clone(),
    };
    finish(control::request(&a.socket, &req, CLIENT_TIMEOUT)?, out)
}

/// A name as the text status shows it: control characters and backslashes
/// escaped (`\t`, `\u{1b}`, `\\`), so a cgroup or file name can neither
/// break a line nor send escape sequences to the terminal (fault 8).
fn printable(s: &str) -> String {
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

/// `bpfoom status`.
pub fn status(a: &StatusArgs, out: &mut dyn Write) -> Result<(), DaemonError> {
    let resp = control::request(&a.socket, &Request::Status, CLIENT_TIMEOUT)?;
    if !resp.ok {
        return finish(resp, out);
    }
    let st = resp.status.unwrap_or_default();
    if a.json {
        writeln!(out, "{st}")?;
        return Ok(());
    }
    writeln!(
        out,
        "bpfoom daemon pid {} ({}), {} watched cgroups{}",
        st["pid"],
        st["hierarchy"].as_str().unwrap_or("?"),
        st["watched"],
        if st["dry_run"] == true {
            ", dry run"
        } else {
            ""
        }
    )?;
    for i in st["instances"].as_array().into_iter().flatten() {
        let field = |k: &str| printable(i[k].as_str().unwrap_or("?"));
        writeln!(
            out,
            "  {} {} at {}: backoff budget {}, limit reserve {} bytes ({})",
            field("kind"),
            field("name"),
            field("cgroup"),
            i["backoff_budget_left"],
            i["limit_reserve_left"],
            field("policy_file"),
        )?;
    }
    writeln!(out, "counters: {}", st["counters"])?;
    for d in st["last_decisions"].as_array().into_iter().flatten() {
        writeln!(out, "  {d}")?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use bpfoom_engine::MapValue;

    #[test]
    fn map_arguments() {
        let e = parse_map_arg("prefs:/job/a={ preference = 2 }").unwrap();
        assert_eq!(e.map, "prefs");
        assert_eq!(e.key, MapValue::from("/job/a"));
        assert_eq!(e.value.to_string(), "{ preference = 2 }");
        assert_eq!(
            e.arg.as_deref(),
            Some("--map prefs:/job/a={ preference = 2 }")
        );
        // The split is at the first `=` outside braces and quotes.
        let e = parse_map_arg("k:{ id = 1, pad = 0 }=0x10").unwrap();
        assert_eq!(e.key.to_string(), "{ id = 1, pad = 0 }");
        assert_eq!(e.value, MapValue::Int(16));
        let e = parse_map_arg("names:\"a=b\"=3").unwrap();
        assert_eq!(e.key, MapValue::from("a=b"));
        for bad in [
            "prefs",
            "prefs:/a",
            ":/a=1",
            "prefs:=1",
            "prefs:/a=",
            "p:{ a = 1 }",
        ] {
            let e = parse_map_arg(bad).unwrap_err();
            assert!(matches!(e, DaemonError::BadInput(_)), "{bad}: {e}");
        }
        let e = parse_map_arg("prefs:/a={ x = }").unwrap_err();
        assert!(
            e.to_string().contains("--map prefs:/a={ x = }: value"),
            "{e}"
        );
    }
}
