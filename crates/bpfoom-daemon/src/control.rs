//! The control socket protocol: one JSON request line, one JSON response
//! line, then the daemon closes the connection.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use bpfoom_engine::MapValue;
use serde::{Deserialize, Serialize};

use crate::{ControlError, DaemonError};

/// Longest request line accepted.
pub const MAX_REQUEST: u64 = 64 * 1024;

/// Per-instance options of an attach request.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct AttachOpts {
    /// BACKOFF budget.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backoff_budget: Option<u32>,
    /// Backoff wait, milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backoff_timeout_ms: Option<u64>,
    /// Limit reserve, bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit_reserve: Option<u64>,
    /// Global variables to set, typed by their BTF types (JSON integers,
    /// strings for cgroup paths, objects for structs, arrays).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub globals: BTreeMap<String, MapValue>,
    /// Map entries, typed by the map's BTF key and value types.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub maps: Vec<MapEntry>,
}

/// One map entry of an attach request:
/// `{"map": "prefs", "key": "/a", "value": {"preference": 2}}`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct MapEntry {
    /// Map name.
    pub map: String,
    /// Key: an integer, a cgroup path (its id is stored), a struct's fields.
    pub key: MapValue,
    /// Value, as the key.
    pub value: MapValue,
    /// Where the entry was written (the client's `--map` argument), named
    /// in errors.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub arg: Option<String>,
}

/// A request.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(tag = "op", rename_all = "snake_case", deny_unknown_fields)]
pub enum Request {
    /// Verify and attach a policy object.
    Attach {
        /// Absolute path of the object (read by the daemon).
        policy: PathBuf,
        /// The cgroup.
        cgroup: String,
        /// Instance name, when the object has several.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        instance: Option<String>,
        /// Options.
        #[serde(default)]
        options: AttachOpts,
    },
    /// Detach the instance at a cgroup.
    Detach {
        /// The cgroup.
        cgroup: String,
    },
    /// Report the daemon's state.
    Status,
    /// Re-read the config file and apply its `[[attach]]` entries.
    Reload,
    /// The last decision records; with `follow`, the connection stays open
    /// and every new record follows as one JSON line.
    Events {
        /// Keep streaming.
        #[serde(default)]
        follow: bool,
    },
    /// The maps of the instances at a cgroup, decoded by their BTF.
    Maps {
        /// The cgroup.
        cgroup: String,
        /// Only this instance (by name), when both kinds are attached there.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        instance: Option<String>,
    },
}

/// A response.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct Response {
    /// Whether the request succeeded.
    pub ok: bool,
    /// The exit code a client should use (0, 1 rejected, 2 bad input).
    pub code: u8,
    /// The error (for a rejected policy: the verifier log).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// A human summary of what was done.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// `status` output.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<serde_json::Value>,
    /// What a `reload` changed, one entry per instance.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub changes: Option<Vec<crate::reload::Change>>,
    /// `events` output: the last records, oldest first.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub events: Option<Vec<serde_json::Value>>,
    /// `maps` output: one entry per instance ([`bpfoom_engine::InstanceMaps`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub maps: Option<serde_json::Value>,
}

impl Response {
    /// Success with a message.
    pub fn ok(message: impl Into<String>) -> Self {
        Response {
            ok: true,
            message: Some(message.into()),
            ..Default::default()
        }
    }

    /// A failure from an error.
    pub fn err(e: &DaemonError) -> Self {
        Response {
            ok: false,
            code: e.exit_code(),
            error: Some(e.to_string()),
            ..Default::default()
        }
    }
}

/// Sends one request and returns the response (bounded by `timeout`).
pub fn request(socket: &Path, req: &Request, timeout: Duration) -> Result<Response, DaemonError> {
    let io = |what: &'static str, source: std::io::Error| ControlError::Io {
        what,
        socket: socket.to_path_buf(),
        source,
    };
    let mut s = connect(socket)?;
    s.set_read_timeout(Some(timeout))
        .and_then(|()| s.set_write_timeout(Some(timeout)))
        .map_err(|e| io("configuring", e))?;
    let mut line = serde_json::to_string(req).map_err(ControlError::Json)?;
    line.push('\n');
    s.write_all(line.as_bytes())
        .map_err(|e| io("writing to", e))?;
    let mut resp = String::new();
    BufReader::new(&s)
        .take(16 << 20)
        .read_line(&mut resp)
        .map_err(|e| io("reading from", e))?;
    serde_json::from_str(&resp).map_err(|source| {
        ControlError::BadResponse {
            socket: socket.to_path_buf(),
            source,
        }
        .into()
    })
}

/// Connects to the daemon's socket; a missing or dead daemon is named.
pub fn connect(socket: &Path) -> Result<UnixStream, DaemonError> {
    let socket = socket.to_path_buf();
    UnixStream::connect(&socket).map_err(|source| {
        match source.kind() {
            std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused => {
                ControlError::NotRunning { socket, source }
            }
            _ => ControlError::Connect { socket, source },
        }
        .into()
    })
}

use std::io::Read as _;
