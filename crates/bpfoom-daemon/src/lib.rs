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

pub mod attach_arg;
mod clients;
pub mod config;
pub mod control;
mod daemon;
mod error;
pub mod hooks;
mod logging;
pub mod maps;
pub mod metrics;
pub mod notify;
mod psi;
pub mod records;
pub mod reload;
pub mod show;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::{Args, Subcommand};

pub use config::{Config, ConfigError, LogFormat};
pub use control::{AttachOpts, Request, Response};
pub use daemon::run_daemon;
pub use error::{
    ControlError, DaemonError, InputError, MapPart, Rejection, SetupError, ValueArgError,
};

/// The git commit this binary was built from (`unknown` outside a checkout).
pub const GIT_COMMIT: &str = env!("BPFOOM_GIT_COMMIT");

/// The version line of `bpfoom --version`: the crate version and the commit.
pub const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (",
    env!("BPFOOM_GIT_COMMIT"),
    ")"
);

/// The default control socket.
pub const DEFAULT_SOCKET: &str = "/run/bpfoom/bpfoom.sock";
/// The default state file.
pub const DEFAULT_STATE_FILE: &str = "/run/bpfoom/state";
/// How long a client waits for the daemon.
pub const CLIENT_TIMEOUT: Duration = Duration::from_secs(10);

/// `bpfoom run`.
#[derive(Args, Debug, Clone, Default)]
pub struct RunArgs {
    /// TOML configuration file.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Attach a policy: POLICY.bpf.o=CGROUP (repeatable), optionally with
    /// the per-instance options of a config `[[attach]]` entry as a TOML
    /// inline table: 'POLICY=CGROUP { backoff_budget = 2, limit_reserve =
    /// "64M", globals = { .. }, maps = [..] }'.
    #[arg(long, value_name = "POLICY=CGROUP [{ OPTIONS }]")]
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
    /// Skip mlockall (for unprivileged experiments); `--mlock off`.
    #[arg(long)]
    pub no_mlock: bool,
    /// How memory is kept resident: onfault (default), all or off;
    /// overrides `[daemon] mlock`.
    #[arg(long, value_enum, value_name = "MODE")]
    pub mlock: Option<config::MlockKind>,
    /// Serve Prometheus metrics at http://ADDR/metrics (ADDR as HOST:PORT,
    /// or a bare PORT on 127.0.0.1).
    #[arg(long, value_name = "ADDR")]
    pub metrics: Option<String>,
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
    #[arg(long, value_parser = config::parse_size)]
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
    /// Print one JSON object (records as objects, not strings).
    #[arg(long)]
    pub json: bool,
    /// Control socket path.
    #[arg(long, default_value = DEFAULT_SOCKET)]
    pub socket: PathBuf,
}

/// `bpfoom events`.
#[derive(Args, Debug, Clone)]
pub struct EventsArgs {
    /// Keep streaming new records until interrupted.
    #[arg(long, short)]
    pub follow: bool,
    /// One JSON object per line (as on the daemon's stdout).
    #[arg(long)]
    pub json: bool,
    /// Control socket path.
    #[arg(long, default_value = DEFAULT_SOCKET)]
    pub socket: PathBuf,
}

/// `bpfoom maps`.
#[derive(Args, Debug, Clone)]
pub struct MapsArgs {
    /// The cgroup whose instance's maps to dump.
    #[arg(long)]
    pub cgroup: String,
    /// Only this instance (by name), when a `bpf_oom_ops` and a
    /// `bpf_psi_ops` instance share the cgroup.
    #[arg(long)]
    pub instance: Option<String>,
    /// Print one JSON array (instances with their maps and entries).
    #[arg(long)]
    pub json: bool,
    /// Control socket path.
    #[arg(long, default_value = DEFAULT_SOCKET)]
    pub socket: PathBuf,
}

/// `bpfoom reload`.
#[derive(Args, Debug, Clone)]
pub struct ReloadArgs {
    /// Print the changes as a JSON array.
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
    /// Re-read the daemon's config file: verify new and changed instances,
    /// swap them in, detach removed ones (also on SIGHUP).
    Reload(ReloadArgs),
    /// Print the daemon's last decision records; `--follow` streams new ones.
    Events(EventsArgs),
    /// Dump an attached instance's maps, keys and values decoded by the
    /// policy's BTF (like `bpftool map dump`).
    Maps(MapsArgs),
}

/// Runs one daemon verb, writing client output to `out`.
pub fn run_cmd(cmd: &DaemonCmd, out: &mut dyn Write) -> Result<(), DaemonError> {
    match cmd {
        DaemonCmd::Run(a) => run_daemon(a),
        DaemonCmd::Attach(a) => attach(a, out),
        DaemonCmd::Detach(a) => detach(a, out),
        DaemonCmd::Status(a) => status(a, out),
        DaemonCmd::Reload(a) => reload(a, out),
        DaemonCmd::Events(a) => events(a, out),
        DaemonCmd::Maps(a) => maps::maps(a, out),
    }
}

/// Parses `--map MAP:KEY=VALUE`. KEY and VALUE are what
/// [`config::parse_value_arg`] takes; the `=` between them is the first one
/// outside braces, brackets and quotes, so a table key `{ a = 1 }=2` works.
pub fn parse_map_arg(arg: &str) -> Result<control::MapEntry, DaemonError> {
    let usage = || InputError::MapArgSyntax { arg: arg.into() };
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
        return Err(usage().into());
    }
    let parse = |s: &str, part: MapPart| {
        config::parse_value_arg(s).map_err(|source| InputError::MapArgValue {
            arg: arg.into(),
            part,
            source,
        })
    };
    Ok(control::MapEntry {
        map: map.into(),
        key: parse(key, MapPart::Key)?,
        value: parse(value, MapPart::Value)?,
        arg: Some(format!("--map {arg}")),
    })
}

/// Splits `--set NAME=VALUE`.
fn split_set(s: &str) -> Result<(&str, &str), InputError> {
    s.split_once('=')
        .filter(|(k, v)| !k.is_empty() && !v.is_empty())
        .ok_or_else(|| InputError::SetArgSyntax { arg: s.into() })
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
        1 => Rejection::Remote { message: msg }.into(),
        _ => InputError::Remote { message: msg }.into(),
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
        let (k, v) = split_set(g)?;
        let value = config::parse_value_arg(v).map_err(|source| InputError::SetArgValue {
            arg: g.clone(),
            source,
        })?;
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

/// `bpfoom reload`: one line per instance (or a JSON array); exit 1 when
/// an entry was rejected (the others are applied, the rejected one keeps
/// what was attached).
pub fn reload(a: &ReloadArgs, out: &mut dyn Write) -> Result<(), DaemonError> {
    let resp = control::request(&a.socket, &Request::Reload, CLIENT_TIMEOUT)?;
    let Some(changes) = &resp.changes else {
        return finish(resp, out);
    };
    if a.json {
        let text = serde_json::to_string(changes).map_err(ControlError::Json)?;
        writeln!(out, "{text}")?;
    } else {
        for c in changes {
            writeln!(out, "{}", c.line())?;
        }
    }
    if resp.ok {
        Ok(())
    } else {
        Err(Rejection::ReloadEntry.into())
    }
}

/// `bpfoom detach`.
pub fn detach(a: &DetachArgs, out: &mut dyn Write) -> Result<(), DaemonError> {
    let req = Request::Detach {
        cgroup: a.cgroup.clone(),
    };
    finish(control::request(&a.socket, &req, CLIENT_TIMEOUT)?, out)
}

/// `bpfoom status`: tables (or, with `--json`, the daemon's JSON object
/// with records as objects).
pub fn status(a: &StatusArgs, out: &mut dyn Write) -> Result<(), DaemonError> {
    let resp = control::request(&a.socket, &Request::Status, CLIENT_TIMEOUT)?;
    if !resp.ok {
        return finish(resp, out);
    }
    let st = resp.status.unwrap_or_default();
    if a.json {
        writeln!(out, "{st}")?;
    } else {
        write!(out, "{}", show::status_text(&st))?;
    }
    Ok(())
}

/// `bpfoom events`.
pub fn events(a: &EventsArgs, out: &mut dyn Write) -> Result<(), DaemonError> {
    show::events(&a.socket, a.follow, a.json, out)
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
            assert!(
                matches!(e, DaemonError::BadInput(InputError::MapArgSyntax { .. })),
                "{bad}: {e}"
            );
        }
        let e = parse_map_arg("prefs:/a={ x = }").unwrap_err();
        assert!(
            matches!(
                &e,
                DaemonError::BadInput(InputError::MapArgValue {
                    part: MapPart::Value,
                    source: ValueArgError::Toml { .. },
                    ..
                })
            ),
            "{e}"
        );
        assert!(
            e.to_string().contains("--map prefs:/a={ x = }: value"),
            "{e}"
        );
        assert_eq!(
            parse_map_arg("p").unwrap_err().to_string(),
            "--map: expected MAP:KEY=VALUE, got \"p\""
        );
    }
}
