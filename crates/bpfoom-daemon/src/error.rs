//! The daemon's and its clients' errors, one type per exit-code class so the
//! code follows from the type: [`InputError`] (2), [`Rejection`] (1),
//! [`ControlError`] and [`SetupError`] (2).
//!
//! Every message is part of the interface: clients and tests match them,
//! and the control protocol carries them as the `error` text. Engine errors
//! are boxed: they are large, and every `Result` of the daemon carries the
//! error type.

use std::path::PathBuf;

use bpfoom_engine::EngineError;

use crate::config::ConfigError;

/// Everything the daemon and its clients can fail with.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    /// The configuration is invalid (names file, line and key).
    #[error("{0}")]
    Config(#[from] ConfigError),
    /// Bad input: unreadable or corrupt object, unknown cgroup, bad option.
    #[error(transparent)]
    BadInput(#[from] InputError),
    /// The policy was rejected (verifier log) or the request refused.
    #[error(transparent)]
    Rejected(#[from] Rejection),
    /// The control socket could not be used.
    #[error(transparent)]
    Control(#[from] ControlError),
    /// The machine could not be set up (cgroupfs, socket, guardian).
    #[error(transparent)]
    Setup(#[from] SetupError),
    /// A system call of the set-up or the main loop failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done (`poll`, `metrics endpoint 127.0.0.1:9464`).
        what: String,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// The host (cgroup hierarchy, inotify, state file) could not be opened.
    #[error(transparent)]
    Host(#[from] bpfoom_host::Error),
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

/// Which half of a `--map MAP:KEY=VALUE` argument is wrong.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MapPart {
    /// KEY.
    Key,
    /// VALUE.
    Value,
}

impl std::fmt::Display for MapPart {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            MapPart::Key => "key",
            MapPart::Value => "value",
        })
    }
}

/// Why a command-line value (`--set NAME=VALUE`, `--map MAP:KEY=VALUE`)
/// does not parse ([`crate::config::parse_value_arg`]).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ValueArgError {
    /// Nothing but blanks.
    #[error("empty value")]
    Empty,
    /// `0x` followed by something that is not a `u64` in hex.
    #[error("{text:?} is not a hex number")]
    Hex {
        /// The value, trimmed.
        text: String,
    },
    /// Digits (or a `-`) outside `i64::MIN..=u64::MAX`, or not a number.
    #[error("{text:?} is not a 64-bit integer")]
    Int {
        /// The value, trimmed.
        text: String,
    },
    /// A TOML table, list, string or boolean that TOML refuses.
    #[error("{text}: {message}")]
    Toml {
        /// The value, trimmed.
        text: String,
        /// The TOML parser's explanation.
        message: String,
    },
}

/// Bad input: exit code 2.
#[derive(Debug, thiserror::Error)]
pub enum InputError {
    /// `--map` without the `MAP:KEY=VALUE` shape.
    #[error("--map: expected MAP:KEY=VALUE, got {arg:?}")]
    MapArgSyntax {
        /// The argument.
        arg: String,
    },
    /// `--map` whose key or value does not parse.
    #[error("--map {arg}: {part}: {source}")]
    MapArgValue {
        /// The argument.
        arg: String,
        /// Which half.
        part: MapPart,
        /// Why.
        #[source]
        source: ValueArgError,
    },
    /// `--set` without the `KEY=VALUE` shape.
    #[error("--set: expected KEY=VALUE, got {arg:?}")]
    SetArgSyntax {
        /// The argument.
        arg: String,
    },
    /// `--set` whose value does not parse.
    #[error("--set {arg}: {source}")]
    SetArgValue {
        /// The argument.
        arg: String,
        /// Why.
        #[source]
        source: ValueArgError,
    },
    /// The daemon answered with a failure other than a rejection (its text
    /// as it sent it).
    #[error("{message}")]
    Remote {
        /// The response's `error`.
        message: String,
    },
    /// An initial attachment (config entry or `--attach`) failed.
    #[error("attach entry for {cgroup}: {source}")]
    AttachEntry {
        /// The entry's cgroup, as written.
        cgroup: String,
        /// Why.
        #[source]
        source: Box<DaemonError>,
    },
    /// A control request longer than the daemon reads.
    #[error("bad request: longer than {max} bytes")]
    RequestTooLong {
        /// The limit, bytes.
        max: u64,
    },
    /// A control request that is not a JSON request line.
    #[error("bad request: {0}")]
    BadRequest(#[source] serde_json::Error),
    /// A global or map entry of a request that does not fit the policy;
    /// `arg` names it as the client gave it (`--set limit`, `--map ...`,
    /// `map entry 2`).
    #[error("{arg}: {source}")]
    AttachOption {
        /// The option.
        arg: String,
        /// Why.
        #[source]
        source: Box<EngineError>,
    },
    /// A cgroup path the hierarchy does not have.
    #[error(transparent)]
    Cgroup(#[from] bpfoom_host::CgroupError),
    /// The policy file cannot be read.
    #[error("{}: {source}", file.display())]
    ReadPolicy {
        /// The file.
        file: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The policy file is not a BPF object bpfoom can load.
    #[error("{}: {source}", file.display())]
    Object {
        /// The file.
        file: PathBuf,
        /// The loader's error.
        #[source]
        source: Box<bpfoom_obj::ObjError>,
    },
    /// The object has no usable struct_ops instance (none, or the one named
    /// is missing).
    #[error("{}: {source}", file.display())]
    Policy {
        /// The file.
        file: PathBuf,
        /// The engine's error.
        #[source]
        source: Box<EngineError>,
    },
    /// `reload` of a daemon that has no config file.
    #[error("started without --config: there is no config file to reload")]
    NoConfig,
    /// `detach` of a cgroup the daemon has nothing attached to.
    #[error("nothing attached to {cgroup}")]
    NotAttached {
        /// The cgroup, as given.
        cgroup: String,
    },
    /// The engine refused to detach.
    #[error(transparent)]
    Detach(Box<EngineError>),
    /// `maps` of a cgroup without an instance.
    #[error("no policy is attached to {path} (`bpfoom status` lists the attach points)")]
    NoPolicyAt {
        /// The cgroup's path.
        path: String,
    },
    /// The engine could not dump the maps (no instance of the name asked for).
    #[error(transparent)]
    Maps(Box<EngineError>),
    /// `--metrics` that is neither `HOST:PORT` nor `PORT`.
    #[error(
        "metrics address {given:?}: expected HOST:PORT or PORT (e.g. 127.0.0.1:{})",
        crate::metrics::DEFAULT_PORT
    )]
    MetricsAddr {
        /// As given.
        given: String,
    },
}

/// A rejected policy or refused request: exit code 1.
#[derive(Debug, thiserror::Error)]
pub enum Rejection {
    /// The daemon answered with a rejection (its text as it sent it).
    #[error("{message}")]
    Remote {
        /// The response's `error`.
        message: String,
    },
    /// `reload` applied the rest but rejected an entry.
    #[error("reload: an entry was rejected and keeps its previous instance")]
    ReloadEntry,
    /// A client that is neither root nor the daemon's user.
    #[error("permission denied: uid {uid} (pid {pid}) is not root")]
    PermissionDenied {
        /// The client's uid.
        uid: u32,
        /// The client's pid.
        pid: i32,
    },
    /// The contract check or the verifier rejected the policy.
    #[error("{}: {source}", file.display())]
    Verifier {
        /// The policy file.
        file: PathBuf,
        /// The engine's rejection (with the verifier log).
        #[source]
        source: Box<EngineError>,
    },
    /// The engine refused the attachment (the cgroup is taken, ...).
    #[error(transparent)]
    Attach(Box<EngineError>),
}

/// The control socket could not be used (client side): exit code 2.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    /// No daemon listens at the socket.
    #[error(
        "cannot connect to {}: {source}: is bpfoom running? (start it with `bpfoom run` \
         or `systemctl start bpfoom`; --socket names another daemon's socket)",
        socket.display()
    )]
    NotRunning {
        /// The socket.
        socket: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// Connecting failed for another reason (permissions, ...).
    #[error("connecting to {}: {source}", socket.display())]
    Connect {
        /// The socket.
        socket: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// Configuring, writing to or reading from the connection failed.
    #[error("{what} {}: {source}", socket.display())]
    Io {
        /// `configuring`, `writing to`, `reading from`.
        what: &'static str,
        /// The socket.
        socket: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// A socket option of an established connection could not be set.
    #[error(transparent)]
    Socket(std::io::Error),
    /// The daemon's answer is not a response.
    #[error("bad response from {}: {source}", socket.display())]
    BadResponse {
        /// The socket.
        socket: PathBuf,
        /// The JSON error.
        #[source]
        source: serde_json::Error,
    },
    /// A request or an answer could not be turned into JSON.
    #[error(transparent)]
    Json(#[from] serde_json::Error),
    /// `events` failed on the daemon's side (its text as it sent it).
    #[error("{message}")]
    Remote {
        /// The response's `error`.
        message: String,
    },
    /// `events` got a response without records or an error.
    #[error("events: no answer")]
    NoEvents,
}

/// The machine could not be set up: exit code 2.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    /// No memory cgroup hierarchy was given or found in the mount table.
    #[error("no memory cgroup hierarchy is mounted")]
    NoHierarchy,
    /// A daemon answers at the socket before this one attached anything.
    #[error(
        "{}: another bpfoom daemon is running (bpfoom status --socket {})",
        socket.display(),
        socket.display()
    )]
    AlreadyRunning {
        /// The socket.
        socket: PathBuf,
    },
    /// A daemon started listening at the socket while this one attached.
    #[error("{}: another bpfoom daemon is running", socket.display())]
    SocketTaken {
        /// The socket.
        socket: PathBuf,
    },
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::ErrorKind;

    fn io(kind: ErrorKind) -> std::io::Error {
        std::io::Error::new(kind, "boom")
    }

    /// The texts of the variants, as the strings the daemon built before it
    /// had typed errors: clients, tests and scripts match them.
    #[test]
    fn messages_are_the_interface() {
        let sock = PathBuf::from("/run/b.sock");
        let cases: Vec<(DaemonError, &str, u8)> = vec![
            (
                SetupError::AlreadyRunning {
                    socket: sock.clone(),
                }
                .into(),
                "/run/b.sock: another bpfoom daemon is running (bpfoom status --socket /run/b.sock)",
                2,
            ),
            (
                SetupError::SocketTaken {
                    socket: sock.clone(),
                }
                .into(),
                "/run/b.sock: another bpfoom daemon is running",
                2,
            ),
            (
                ControlError::NotRunning {
                    socket: sock.clone(),
                    source: io(ErrorKind::NotFound),
                }
                .into(),
                "cannot connect to /run/b.sock: boom: is bpfoom running? (start it with `bpfoom \
                 run` or `systemctl start bpfoom`; --socket names another daemon's socket)",
                2,
            ),
            (
                ControlError::Io {
                    what: "reading from",
                    socket: sock.clone(),
                    source: io(ErrorKind::TimedOut),
                }
                .into(),
                "reading from /run/b.sock: boom",
                2,
            ),
            (
                InputError::RequestTooLong { max: 65536 }.into(),
                "bad request: longer than 65536 bytes",
                2,
            ),
            (
                InputError::MetricsAddr { given: "x:y".into() }.into(),
                "metrics address \"x:y\": expected HOST:PORT or PORT (e.g. 127.0.0.1:9464)",
                2,
            ),
            (
                InputError::SetArgSyntax { arg: "n".into() }.into(),
                "--set: expected KEY=VALUE, got \"n\"",
                2,
            ),
            (
                InputError::AttachEntry {
                    cgroup: "/job".into(),
                    source: Box::new(InputError::NotAttached { cgroup: "/a".into() }.into()),
                }
                .into(),
                "attach entry for /job: nothing attached to /a",
                2,
            ),
            (
                Rejection::PermissionDenied { uid: 7, pid: 42 }.into(),
                "permission denied: uid 7 (pid 42) is not root",
                1,
            ),
            (
                Rejection::Remote {
                    message: "x: rejected".into(),
                }
                .into(),
                "x: rejected",
                1,
            ),
        ];
        for (e, text, code) in cases {
            assert_eq!(e.to_string(), text);
            assert_eq!(e.exit_code(), code, "{text}");
        }
    }

    #[test]
    fn sources_are_chained() {
        use std::error::Error as _;
        let e = DaemonError::from(ControlError::Io {
            what: "writing to",
            socket: "/s".into(),
            source: io(ErrorKind::BrokenPipe),
        });
        let io = e.source().and_then(|s| s.downcast_ref::<std::io::Error>());
        assert_eq!(io.map(std::io::Error::kind), Some(ErrorKind::BrokenPipe));
        let e = DaemonError::from(InputError::MapArgValue {
            arg: "m:k=v".into(),
            part: MapPart::Key,
            source: ValueArgError::Empty,
        });
        let inner = e.source().and_then(|s| s.downcast_ref::<ValueArgError>());
        assert_eq!(inner, Some(&ValueArgError::Empty));
        assert_eq!(e.to_string(), "--map m:k=v: key: empty value");
    }
}
