//! The daemon's TOML configuration.
//!
//! ```toml
//! [daemon]
//! socket = "/run/bpfoom/bpfoom.sock"   # control socket
//! state_file = "/run/bpfoom/state"     # restore list for crash recovery
//! log_format = "json"                  # or "text"
//! handler_time_limit_ms = 250
//! insn_budget = 1000000
//! engine = "jit"                       # or "interpreter" (same results, slower)
//! mlock = "onfault"                    # or "all" (lock the whole binary now), "off"
//!
//! [v2]
//! headroom = "16M"                     # memory.high below memory.max
//!
//! [global]
//! min_available_percent = 5.0          # global OOM below this MemAvailable
//! max_psi_full_avg10 = 40.0            # ... or above this PSI full avg10
//! fallback = "sysrq"                   # or "none"
//!
//! [[attach]]
//! policy = "/usr/lib/bpfoom/oomd_like.bpf.o"
//! cgroup = "/system.slice"
//! backoff_budget = 3
//! backoff_timeout_ms = 100
//! limit_reserve = "256M"
//! globals = { raise_step = 16777216 }
//! maps = [{ map = "prefs", key = "/system.slice/cache.service", value = 3 }]
//! ```
//!
//! Map keys and values and globals follow the policy's BTF types
//! ([`bpfoom_engine::mapvalue`]): integers, cgroup paths (a string for an
//! integer field; the cgroup's id is stored), inline tables of struct fields
//! by name (`value = { preference = 2 }`), lists for arrays, text for
//! `char[N]`, enumerator names for enums.
//!
//! Unknown keys and bad values are errors naming the file, line and key;
//! a value that does not fit its BTF type (checked when the policy is
//! loaded) names the file, line and field.

use std::path::{Path, PathBuf};

use bpfoom_engine::MapValue;
use serde::Deserialize;
use toml::Spanned;

/// Sizes are [`bpfoom_engine::Size`]: the one parser the simulator's
/// scenarios use too.
pub use bpfoom_engine::size::{parse_size, Size};

/// `[daemon]`.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct DaemonSection {
    /// Control socket path.
    pub socket: Option<PathBuf>,
    /// State file path.
    pub state_file: Option<PathBuf>,
    /// Output format of decision records.
    pub log_format: Option<LogFormat>,
    /// Wall-clock limit of one handler run, milliseconds.
    pub handler_time_limit_ms: Option<u64>,
    /// Instruction budget of one handler run.
    pub insn_budget: Option<u64>,
    /// Run policies without acting.
    pub dry_run: Option<bool>,
    /// The memory cgroup hierarchy (default: found in /proc/self/mountinfo).
    pub cgroup_root: Option<PathBuf>,
    /// The /proc tree (default `/proc`).
    pub proc_root: Option<PathBuf>,
    /// Prometheus metrics endpoint, `HOST:PORT` or a bare port (loopback).
    pub metrics: Option<String>,
    /// What runs the policies (default: the JIT where built in).
    pub engine: Option<EngineKind>,
    /// How the daemon's memory is kept resident (default `onfault`).
    pub mlock: Option<MlockKind>,
}

/// `[daemon] mlock` and `--mlock`: see [`bpfoom_host::MemoryLock`] for what
/// each costs.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum MlockKind {
    /// Lock pages as they are first touched (earlyoom's choice).
    Onfault,
    /// Populate and lock every mapping at start.
    All,
    /// No locking.
    Off,
}

impl From<MlockKind> for bpfoom_host::MemoryLock {
    fn from(k: MlockKind) -> Self {
        match k {
            MlockKind::Onfault => bpfoom_host::MemoryLock::OnFault,
            MlockKind::All => bpfoom_host::MemoryLock::All,
            MlockKind::Off => bpfoom_host::MemoryLock::Off,
        }
    }
}

/// `[daemon] engine`: what executes the policies' programs.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum EngineKind {
    /// bpfoom-vm's Cranelift JIT (programs it refuses run interpreted).
    Jit,
    /// bpfoom-vm's interpreter for every program.
    Interpreter,
}

impl From<EngineKind> for bpfoom_engine::VmBackend {
    fn from(k: EngineKind) -> Self {
        match k {
            EngineKind::Jit => bpfoom_engine::VmBackend::Jit,
            EngineKind::Interpreter => bpfoom_engine::VmBackend::Interpreter,
        }
    }
}

/// `[v2]`.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct V2Section {
    /// `memory.high` is kept this far below `memory.max`.
    pub headroom: Option<Size>,
    /// Stall (µs) between samples that counts as pressure.
    pub min_stall_us: Option<u64>,
}

/// What a global OOM falls back to.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum FallbackKind {
    /// `/proc/sysrq-trigger` `f`.
    Sysrq,
    /// Nothing.
    None,
}

/// `[global]`.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct GlobalSection {
    /// Global OOM when MemAvailable is below this percentage of MemTotal.
    pub min_available_percent: Option<f64>,
    /// Global OOM when memory PSI `full` avg10 exceeds this.
    pub max_psi_full_avg10: Option<f64>,
    /// Fallback for global OOMs.
    pub fallback: Option<FallbackKind>,
}

/// Record output format.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// One JSON object per line.
    #[default]
    Json,
    /// Human-readable lines.
    Text,
}

/// One map entry handed to a policy at attach, key and value typed by the
/// map's BTF key and value types.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct MapEntry {
    /// Map name.
    pub map: String,
    /// Key (an integer, a cgroup path, a table of fields).
    pub key: Spanned<MapValue>,
    /// Value (an integer, a cgroup path, a table of fields).
    pub value: Spanned<MapValue>,
}

/// `[[attach]]`.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct AttachSection {
    /// The compiled policy.
    pub policy: Spanned<PathBuf>,
    /// The cgroup (path in the hierarchy, or absolute cgroupfs path).
    pub cgroup: Spanned<String>,
    /// The struct_ops instance, when the object has several.
    pub instance: Option<String>,
    /// BACKOFF budget.
    pub backoff_budget: Option<u32>,
    /// How long a honoured BACKOFF waits, milliseconds.
    pub backoff_timeout_ms: Option<u64>,
    /// Bytes `bpf_mem_cgroup_raise_limit` may hand out.
    pub limit_reserve: Option<Size>,
    /// Global variables to set before verification, typed by their BTF
    /// types.
    #[serde(default)]
    pub globals: std::collections::BTreeMap<String, Spanned<MapValue>>,
    /// Map entries (e.g. `oomd_like`'s preferences).
    #[serde(default)]
    pub maps: Vec<Spanned<MapEntry>>,
}

/// The whole file.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// `[daemon]`.
    #[serde(default)]
    pub daemon: DaemonSection,
    /// `[v2]`.
    #[serde(default)]
    pub v2: V2Section,
    /// `[global]`.
    #[serde(default)]
    pub global: GlobalSection,
    /// `[[attach]]`.
    #[serde(default)]
    pub attach: Vec<AttachSection>,
    /// `[[hook]]`: commands after a kill or a limit raise.
    #[serde(default)]
    pub hook: Vec<crate::hooks::HookSection>,
    /// The file the configuration came from (empty when built in code).
    #[serde(skip)]
    pub file: String,
    /// Byte offsets at which the text's lines start, to turn spans into
    /// lines for errors found after parsing (a value that does not fit its
    /// BTF type).
    #[serde(skip)]
    line_starts: Vec<usize>,
}

/// A configuration error, located (line 0: the file itself, e.g. unreadable).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{}", self.located())]
pub struct ConfigError {
    /// The file.
    pub file: String,
    /// 1-based line.
    pub line: usize,
    /// What is wrong (naming the key).
    pub message: String,
}

impl ConfigError {
    fn located(&self) -> String {
        match self.line {
            0 => format!("{}: {}", self.file, self.message),
            l => format!("{}:{l}: {}", self.file, self.message),
        }
    }
}

/// Parses a map key or value, or a global's value, given on the command
/// line (`bpfoom attach --map MAP:KEY=VALUE`, `--set NAME=VALUE`): an
/// integer (decimal, `-` allowed, or `0x` hex up to `u64`), a TOML inline
/// table or list (`{ preference = 2 }`, `[1, 2]`), `true`/`false`, a quoted
/// TOML string, or else the text itself (a cgroup path, an enumerator name).
pub fn parse_value_arg(s: &str) -> Result<MapValue, crate::ValueArgError> {
    use crate::ValueArgError;
    let t = s.trim();
    if t.is_empty() {
        return Err(ValueArgError::Empty);
    }
    if let Some(h) = t.strip_prefix("0x").or_else(|| t.strip_prefix("0X")) {
        return u64::from_str_radix(h, 16)
            .map(MapValue::from)
            .map_err(|_| ValueArgError::Hex { text: t.into() });
    }
    if t.bytes().all(|b| b.is_ascii_digit()) || t.starts_with('-') {
        return t
            .parse::<i128>()
            .ok()
            .filter(|n| (i128::from(i64::MIN)..=i128::from(u64::MAX)).contains(n))
            .map(MapValue::Int)
            .ok_or_else(|| ValueArgError::Int { text: t.into() });
    }
    if t.starts_with(['{', '[', '"', '\'']) || t == "true" || t == "false" {
        #[derive(Deserialize)]
        struct One {
            v: MapValue,
        }
        return toml::from_str::<One>(&format!("v = {t}"))
            .map(|o| o.v)
            .map_err(|e| ValueArgError::Toml {
                text: t.into(),
                message: e.message().trim().into(),
            });
    }
    Ok(MapValue::Str(t.into()))
}

/// The 1-based line of a byte offset.
pub fn line_of(text: &str, offset: usize) -> usize {
    text.as_bytes()[..offset.min(text.len())]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

impl Config {
    /// Parses configuration text; `file` names it in errors.
    pub fn parse(text: &str, file: &str) -> Result<Config, ConfigError> {
        let c: Config = toml::from_str(text).map_err(|e| ConfigError {
            file: file.into(),
            line: e.span().map_or(1, |s| line_of(text, s.start)),
            message: e.message().trim().to_string(),
        })?;
        let at = |line, message: String| ConfigError {
            file: file.into(),
            line,
            message,
        };
        let key_line = |key: &str| {
            text.lines()
                .position(|l| l.trim_start().starts_with(key))
                .map_or(1, |i| i + 1)
        };
        if let Some(p) = c.global.min_available_percent {
            if !(0.0..=100.0).contains(&p) {
                return Err(at(
                    key_line("min_available_percent"),
                    format!("global.min_available_percent: {p} is not within 0..=100"),
                ));
            }
        }
        if let Some(p) = c.global.max_psi_full_avg10 {
            if !(0.0..=100.0).contains(&p) {
                return Err(at(
                    key_line("max_psi_full_avg10"),
                    format!("global.max_psi_full_avg10: {p} is not within 0..=100"),
                ));
            }
        }
        if c.daemon.engine == Some(EngineKind::Jit) && !bpfoom_engine::VmBackend::jit_built() {
            return Err(at(
                key_line("engine"),
                "daemon.engine: \"jit\" needs a build with the JIT (cargo feature jit); \
                 use \"interpreter\""
                    .into(),
            ));
        }
        if c.daemon.handler_time_limit_ms == Some(0) {
            return Err(at(
                key_line("handler_time_limit_ms"),
                "daemon.handler_time_limit_ms: must be at least 1".into(),
            ));
        }
        let mut c = c;
        c.file = file.into();
        c.line_starts = std::iter::once(0)
            .chain(text.match_indices('\n').map(|(i, _)| i + 1))
            .collect();
        Ok(c)
    }

    /// An error located at a byte offset of the parsed text (a span of one
    /// of its `Spanned` values).
    pub fn error_at(&self, offset: usize, message: String) -> ConfigError {
        ConfigError {
            file: self.file.clone(),
            line: self.line_starts.partition_point(|&s| s <= offset).max(1),
            message,
        }
    }

    /// Reads and parses a file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            file: path.display().to_string(),
            line: 0,
            message: e.to_string(),
        })?;
        Config::parse(&text, &path.display().to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_example_parses() {
        let text = r#"
[daemon]
socket = "/tmp/s"
log_format = "text"
handler_time_limit_ms = 50

[v2]
headroom = "16M"

[global]
min_available_percent = 5.0
fallback = "sysrq"

[[attach]]
policy = "p.bpf.o"
cgroup = "/a"
limit_reserve = "1G"
backoff_budget = 2
globals = { raise_step = 4096 }
maps = [{ map = "prefs", key = "/a/b", value = 3 }, { map = "prefs", key = 7, value = 1 }]
"#;
        let c = Config::parse(text, "t.toml").unwrap();
        assert_eq!(c.daemon.log_format, Some(LogFormat::Text));
        assert_eq!(c.v2.headroom, Some(Size(16 << 20)));
        assert_eq!(c.global.fallback, Some(FallbackKind::Sysrq));
        let a = &c.attach[0];
        assert_eq!(a.limit_reserve, Some(Size(1 << 30)));
        assert_eq!(*a.globals["raise_step"].get_ref(), MapValue::Int(4096));
        assert_eq!(*a.maps[1].get_ref().key.get_ref(), MapValue::Int(7));
        assert_eq!(*a.maps[0].get_ref().key.get_ref(), MapValue::from("/a/b"));
        assert_eq!(line_of(text, a.cgroup.span().start), 16);
    }

    #[test]
    fn engine_choice() {
        let c = Config::parse("[daemon]\nengine = \"interpreter\"\n", "c.toml").unwrap();
        assert_eq!(c.daemon.engine, Some(EngineKind::Interpreter));
        let c = Config::parse("[daemon]\nengine = \"jit\"\n", "c.toml");
        assert_eq!(c.is_ok(), bpfoom_engine::VmBackend::jit_built(), "{c:?}");
        let e = Config::parse("[daemon]\n\nengine = \"fast\"\n", "c.toml").unwrap_err();
        assert_eq!(e.line, 3);
        assert!(e.message.contains("fast"), "{e}");
    }

    #[test]
    fn mlock_choice() {
        let c = Config::parse("[daemon]\nmlock = \"all\"\n", "c.toml").unwrap();
        assert_eq!(c.daemon.mlock, Some(MlockKind::All));
        let c = Config::parse("[daemon]\nmlock = \"off\"\n", "c.toml").unwrap();
        assert_eq!(c.daemon.mlock, Some(MlockKind::Off));
        let c = Config::parse("[daemon]\n", "c.toml").unwrap();
        assert_eq!(c.daemon.mlock, None);
        assert_eq!(
            bpfoom_host::MemoryLock::default(),
            MlockKind::Onfault.into(),
            "unset means onfault"
        );
        let e = Config::parse("[daemon]\n\nmlock = \"some\"\n", "c.toml").unwrap_err();
        let m = e.to_string();
        assert!(m.contains("c.toml:3") && m.contains("onfault"), "{m}");
    }

    #[test]
    fn errors_name_key_and_line() {
        let e = Config::parse("[daemon]\nsocket = \"/x\"\nbogus = 1\n", "c.toml").unwrap_err();
        assert_eq!(e.line, 3);
        assert!(e.message.contains("bogus"), "{e}");
        let e = Config::parse("[v2]\n\nheadroom = \"12Q\"\n", "c.toml").unwrap_err();
        assert_eq!(e.line, 3);
        assert!(e.to_string().starts_with("c.toml:3:"), "{e}");
        assert!(e.message.contains("12Q"), "{e}");
        let e = Config::parse("[global]\nfallback = \"panic\"\n", "c.toml").unwrap_err();
        assert_eq!(e.line, 2);
        assert!(e.message.contains("panic"), "{e}");
        let e = Config::parse("[[attach]]\ncgroup = \"/a\"\n", "c.toml").unwrap_err();
        assert!(e.message.contains("policy"), "{e}");
        let e = Config::parse("[global]\nmin_available_percent = 150.0\n", "c.toml").unwrap_err();
        assert_eq!(e.line, 2);
        assert!(e.message.contains("min_available_percent"), "{e}");
        let e = Config::parse("[daemon\n", "c.toml").unwrap_err();
        assert_eq!(e.line, 1);
        let e = Config::parse("x = [\n1,\n\"a\"\n", "c.toml").unwrap_err();
        assert!(e.line >= 1, "{e}");
    }

    #[test]
    fn shipped_example_is_valid() {
        let text = include_str!("../../../dist/bpfoom.toml");
        let c = Config::parse(text, "dist/bpfoom.toml").unwrap();
        // As shipped: one instance at the root, which every host has.
        assert_eq!(c.attach.len(), 1);
        assert_eq!(c.attach[0].cgroup.get_ref(), "/");
        assert_eq!(c.daemon.metrics.as_deref(), Some("127.0.0.1:9464"));
        assert_eq!(c.global.fallback, Some(FallbackKind::None));
        // The commented examples are valid once uncommented.
        let mut on = String::new();
        let mut example = false;
        for l in text.lines() {
            example |= l.starts_with("# [[attach]]");
            // Config lines, not the prose between the examples.
            let config = |x: &str| x.starts_with(['[', ']', ' ']) || x.contains(" = ");
            match l.strip_prefix("# ") {
                Some(x) if example && config(x) => on.push_str(x),
                _ => on.push_str(l),
            }
            on.push('\n');
        }
        let c = Config::parse(&on, "dist/bpfoom.toml (examples)").unwrap();
        assert_eq!(c.attach.len(), 3);
        assert_eq!(c.attach[2].limit_reserve, Some(Size(512 << 20)));
        assert_eq!(c.attach[1].maps.len(), 2);
    }

    #[test]
    fn typed_map_entries_and_globals() {
        let text = r#"
[[attach]]
policy = "p.bpf.o"
cgroup = "/a"
globals = { protected = ["sshd", "init"], watch = "/a/b", limit = -1 }
maps = [
  { map = "prefs", key = "/a/b", value = { preference = 2, last_pgscan = 0 } },
  { map = "prefs", key = 7, value = { nested = { x = [1, 2] } } },
]
"#;
        let c = Config::parse(text, "t.toml").unwrap();
        let a = &c.attach[0];
        assert_eq!(
            *a.globals["protected"].get_ref(),
            MapValue::Array(vec!["sshd".into(), "init".into()])
        );
        assert_eq!(*a.globals["limit"].get_ref(), MapValue::Int(-1));
        let m = a.maps[0].get_ref();
        let MapValue::Struct(fields) = m.value.get_ref() else {
            panic!("{m:?}")
        };
        assert_eq!(fields["preference"], MapValue::Int(2));
        // Errors found later (when the value meets its BTF type) are located
        // by the value's span: the second entry is on line 8.
        let e = c.error_at(a.maps[1].get_ref().value.span().start, "bad".into());
        assert_eq!((e.file.as_str(), e.line), ("t.toml", 8));
        assert_eq!(e.to_string(), "t.toml:8: bad");
        let e = c.error_at(a.globals["watch"].span().start, "bad".into());
        assert_eq!(e.line, 5);
        // Floats and duplicate fields are refused at parse time, with a line.
        let e = Config::parse(
            "[[attach]]\npolicy = \"p\"\ncgroup = \"/\"\nglobals = { x = 1.5 }\n",
            "c.toml",
        )
        .unwrap_err();
        assert_eq!(e.line, 4, "{e}");
        assert!(e.message.contains("float"), "{e}");
    }

    #[test]
    fn command_line_values() {
        assert_eq!(parse_value_arg("42"), Ok(MapValue::Int(42)));
        assert_eq!(parse_value_arg("-3"), Ok(MapValue::Int(-3)));
        assert_eq!(
            parse_value_arg("0xffffffffffffffff"),
            Ok(MapValue::from(u64::MAX))
        );
        assert_eq!(parse_value_arg("/job/a"), Ok(MapValue::from("/job/a")));
        assert_eq!(
            parse_value_arg("PREF_AVOID"),
            Ok(MapValue::from("PREF_AVOID"))
        );
        assert_eq!(parse_value_arg("\"a b\""), Ok(MapValue::from("a b")));
        assert_eq!(parse_value_arg("true"), Ok(MapValue::Bool(true)));
        let v = parse_value_arg("{ preference = 2, kill = true }").unwrap();
        assert_eq!(v.to_string(), "{ kill = true, preference = 2 }");
        assert_eq!(
            parse_value_arg("[1, 2]"),
            Ok(MapValue::Array(vec![1u64.into(), 2u64.into()]))
        );
        use crate::ValueArgError;
        assert_eq!(parse_value_arg(" "), Err(ValueArgError::Empty));
        assert_eq!(
            parse_value_arg("0xzz").unwrap_err().to_string(),
            "\"0xzz\" is not a hex number"
        );
        assert_eq!(
            parse_value_arg("99999999999999999999")
                .unwrap_err()
                .to_string(),
            "\"99999999999999999999\" is not a 64-bit integer"
        );
        assert!(matches!(
            parse_value_arg("-"),
            Err(ValueArgError::Int { .. })
        ));
        let e = parse_value_arg("{ preference = }").unwrap_err();
        assert!(matches!(e, ValueArgError::Toml { .. }), "{e}");
        assert!(e.to_string().starts_with("{ preference = }: "), "{e}");
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("64K").ok(), Some(65536));
        assert_eq!(parse_size("2g").ok(), Some(2 << 30));
        assert_eq!(parse_size("17").ok(), Some(17));
        assert_eq!(parse_size("99999999999T").ok(), None);
        assert_eq!(parse_size("M").ok(), None);
        assert_eq!(parse_size("").ok(), None);
        assert_eq!(parse_size("-1M").ok(), None);
    }
}
