//! The scenario file: TOML, parsed with spans so every error names a line.
//!
//! ```toml
//! [host]
//! memory = "8G"                  # total RAM: totalpages and the global OOM
//! exit_delay = "50ms"            # optional: how long a killed process keeps its memory
//!
//! [[cgroup]]                     # missing ancestors are created unlimited
//! path = "/job"
//! limit = "80M"                  # memory.max; absent = unlimited
//! oom_group = false              # memory.oom.group
//!
//! [[process]]
//! pid = 101
//! comm = "worker"
//! cgroup = "/job/a"
//! rss = "10M"                    # anonymous memory (usage and badness; MM_ANONPAGES)
//! rss_file = "0"                 # resident file pages it maps (badness, MM_FILEPAGES)
//! rss_shmem = "0"                # resident shmem pages (badness, MM_SHMEMPAGES)
//! file = "0"                     # page cache: counts in usage, not in badness
//! swap = "0"                     # counts in badness, not in usage
//! oom_score_adj = 0
//! kthread = false
//!
//! [[attach]]
//! policy = "bpf/policies/largest_leaf.bpf.o"   # relative to the scenario file or the cwd
//! cgroup = "/job"                # "/" = system-wide
//! instance = "largest_leaf"      # optional: which struct_ops instance
//! backoff_budget = 3             # optional
//! backoff_timeout = "100ms"      # optional (or backoff_timeout_ms = 100, as in the daemon config)
//! limit_reserve = "0"            # optional, for bpf_mem_cgroup_raise_limit
//! globals = { watch_cgroup_id = "/job" }        # optional: .rodata/.data/.bss values;
//!                                               # a string is a cgroup path (its id)
//! entries = [{ map = "prefs", key = "/job/a", value = 3 }]  # optional map entries (or maps = [...])
//! # key and value follow the map's BTF types: integers, cgroup paths,
//! # structs by field name, lists for arrays, text for char[N]:
//! # entries = [{ map = "prefs", key = "/job/a", value = { preference = 2 } }]
//!
//! [[step]]                       # exactly one of:
//! alloc = { pid = 102, bytes = "20M" }   # a charge over a limit is an OOM
//! # free = { pid, bytes }, spawn = { ...process fields }, exit = { pid },
//! # mkdir = { path, limit, oom_group }, rmdir = { path },
//! # psi = { cgroup, some_us, full_us }, advance = "100ms"
//!
//! [[expect]]                     # every key given must hold
//! killed = [104]                 # pids killed in the whole run, in order
//! survivors = [101]              # alive and not dying at the end
//! limit = { path = "/job", bytes = "80M" }
//! handler = { policy = "largest_leaf", result = "processed" }  # or failed, backoff
//! fallback = false               # whether the kernel OOM killer ran
//! ```
//!
//! Sizes are integers or strings with a `K`, `M` or `G` suffix (powers of
//! 1024); durations are strings in `us`, `ms` or `s`. Unknown keys are
//! errors.

use std::collections::BTreeMap;
use std::time::Duration;

use bpfoom_engine::MapValue;
use serde::de::{self, Deserializer};
use serde::Deserialize;
use toml::Spanned;

use crate::SimError;

pub use bpfoom_engine::size::{parse_size, Size};

/// Why [`parse_duration`] refused a text.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    /// No number before the unit (or one too large).
    #[error("bad duration {given:?}: expected e.g. \"100ms\"")]
    Number {
        /// As given.
        given: String,
    },
    /// A unit other than `us`, `ms` and `s`.
    #[error("bad duration {given:?}: unknown unit {unit:?} (use us, ms or s)")]
    Unit {
        /// As given.
        given: String,
        /// The unit found.
        unit: String,
    },
}

/// Parses `"100ms"`, `"2s"`, `"500us"`.
pub fn parse_duration(s: &str) -> Result<Duration, DurationError> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let n: u64 = t[..split]
        .parse()
        .map_err(|_| DurationError::Number { given: s.into() })?;
    match &t[split..] {
        "us" => Ok(Duration::from_micros(n)),
        "ms" => Ok(Duration::from_millis(n)),
        "s" => Ok(Duration::from_secs(n)),
        u => Err(DurationError::Unit {
            given: s.into(),
            unit: u.into(),
        }),
    }
}

/// A duration written as `"100ms"`, `"2s"` or `"500us"`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Dur(pub Duration);

impl<'de> Deserialize<'de> for Dur {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        parse_duration(&s).map(Dur).map_err(de::Error::custom)
    }
}

/// `[host]`.
#[derive(Deserialize, Debug, Clone)]
#[serde(deny_unknown_fields)]
pub struct HostSpec {
    /// Total RAM.
    pub memory: Size,
    /// How long a killed process keeps its memory before it is gone
    /// (default 0: at once). Models a victim that is slow to exit.
    #[serde(default)]
    pub exit_delay: Option<Dur>,
}

/// `[[cgroup]]`.
#[derive(Deserialize, Debug, Clone)]
#[serde(deny_unknown_fields)]
pub struct CgroupSpec {
    /// Path, `/` separated, starting at the root `/`.
    pub path: String,
    /// `memory.max`; absent = unlimited.
    #[serde(default)]
    pub limit: Option<Size>,
    /// `memory.oom.group`.
    #[serde(default)]
    pub oom_group: bool,
}

/// `[[process]]`, also the body of a `spawn` step.
#[derive(Deserialize, Debug, Clone)]
#[serde(deny_unknown_fields)]
pub struct ProcessSpec {
    /// Process id (> 0; 1 is init).
    pub pid: i32,
    /// Command name.
    #[serde(default = "default_comm")]
    pub comm: String,
    /// Cgroup path.
    pub cgroup: String,
    /// Anonymous memory.
    #[serde(default)]
    pub rss: Size,
    /// Resident file-backed pages the process maps (`RssFile`,
    /// `mm->rss_stat[MM_FILEPAGES]`): in its RSS and badness; the model does
    /// not charge them (give the cgroup's page cache as `file`).
    #[serde(default)]
    pub rss_file: Size,
    /// Resident shared-memory pages (`RssShmem`, `MM_SHMEMPAGES`): in its
    /// RSS and badness, not charged (as `rss_file`).
    #[serde(default)]
    pub rss_shmem: Size,
    /// Page cache charged to the cgroup: counts in usage, not in badness.
    #[serde(default)]
    pub file: Size,
    /// Swapped-out memory (counts in badness, not in usage).
    #[serde(default)]
    pub swap: Size,
    /// `oom_score_adj`, -1000..=1000.
    #[serde(default)]
    pub oom_score_adj: i16,
    /// A kernel thread (never killed).
    #[serde(default)]
    pub kthread: bool,
}

fn default_comm() -> String {
    "proc".into()
}

/// `[[attach]]`.
#[derive(Deserialize, Debug, Clone)]
#[serde(deny_unknown_fields)]
pub struct AttachSpec {
    /// Object path, relative to the scenario file or the working directory.
    pub policy: String,
    /// Attach point.
    pub cgroup: String,
    /// struct_ops instance to use when the object has several.
    #[serde(default)]
    pub instance: Option<String>,
    /// BACKOFF budget.
    #[serde(default)]
    pub backoff_budget: Option<u32>,
    /// BACKOFF wait, as a duration (`"100ms"`).
    #[serde(default)]
    pub backoff_timeout: Option<Dur>,
    /// BACKOFF wait in milliseconds: the daemon config's and the CLI's
    /// name for it (one of the two may be given).
    #[serde(default)]
    pub backoff_timeout_ms: Option<u64>,
    /// Reserve for `bpf_mem_cgroup_raise_limit`.
    #[serde(default)]
    pub limit_reserve: Option<Size>,
    /// Global variables to set before attach (`const volatile` tunables),
    /// typed by the variable's BTF type (see [`MapValue`]).
    #[serde(default)]
    pub globals: BTreeMap<String, Spanned<MapValue>>,
    /// Map entries to insert at attach (the daemon's configuration maps);
    /// `maps`, the daemon config's name, is accepted too.
    #[serde(default, alias = "maps")]
    pub entries: Vec<Spanned<MapEntry>>,
}

/// `{ map, key, value }`: one map entry, key and value laid out from the
/// map's BTF key and value types: integers, cgroup paths (a string for an
/// integer field is a cgroup path, its id is used), inline tables of struct
/// fields by name, lists for arrays (see [`bpfoom_engine::mapvalue`]).
#[derive(Deserialize, Debug, Clone)]
#[serde(deny_unknown_fields)]
pub struct MapEntry {
    /// Map name.
    pub map: String,
    /// Key.
    pub key: Spanned<MapValue>,
    /// Value.
    pub value: Spanned<MapValue>,
}

/// `{ pid, bytes }`.
#[derive(Deserialize, Debug, Clone)]
#[serde(deny_unknown_fields)]
pub struct PidBytes {
    /// Process.
    pub pid: i32,
    /// Amount.
    pub bytes: Size,
}

/// `{ pid }`.
#[derive(Deserialize, Debug, Clone)]
#[serde(deny_unknown_fields)]
pub struct PidOnly {
    /// Process.
    pub pid: i32,
}

/// `{ path }`.
#[derive(Deserialize, Debug, Clone)]
#[serde(deny_unknown_fields)]
pub struct PathOnly {
    /// Cgroup path.
    pub path: String,
}

/// `{ cgroup, some_us, full_us }`.
#[derive(Deserialize, Debug, Clone)]
#[serde(deny_unknown_fields)]
pub struct PsiSpec {
    /// Where the stall happens.
    pub cgroup: String,
    /// "some" stall time, microseconds.
    #[serde(default)]
    pub some_us: u64,
    /// "full" stall time, microseconds (also counts as "some").
    #[serde(default)]
    pub full_us: u64,
}

/// `[[step]]`: exactly one key.
#[derive(Deserialize, Debug, Clone)]
#[serde(deny_unknown_fields)]
pub struct StepSpec {
    /// Charge memory to a process (may OOM).
    #[serde(default)]
    pub alloc: Option<PidBytes>,
    /// Uncharge memory.
    #[serde(default)]
    pub free: Option<PidBytes>,
    /// Start a process (its `rss` is charged like an allocation).
    #[serde(default)]
    pub spawn: Option<ProcessSpec>,
    /// A process exits normally.
    #[serde(default)]
    pub exit: Option<PidOnly>,
    /// Remove an empty cgroup.
    #[serde(default)]
    pub rmdir: Option<PathOnly>,
    /// Create a cgroup at run time (PSI policies hear `handle_cgroup_online`).
    #[serde(default)]
    pub mkdir: Option<CgroupSpec>,
    /// Memory pressure stall.
    #[serde(default)]
    pub psi: Option<PsiSpec>,
    /// Let simulated time pass.
    #[serde(default)]
    pub advance: Option<Dur>,
}

/// `limit = { path, bytes }`.
#[derive(Deserialize, Debug, Clone)]
#[serde(deny_unknown_fields)]
pub struct LimitExpect {
    /// Cgroup path.
    pub path: String,
    /// Expected `memory.max`.
    pub bytes: Size,
}

/// `handler = { policy, result }`.
#[derive(Deserialize, Debug, Clone)]
#[serde(deny_unknown_fields)]
pub struct HandlerExpect {
    /// Instance name.
    pub policy: String,
    /// `processed`, `failed` or `backoff`.
    pub result: String,
}

/// `[[expect]]`: every key given must hold.
#[derive(Deserialize, Debug, Clone)]
#[serde(deny_unknown_fields)]
pub struct ExpectSpec {
    /// Pids killed in the whole run, in order.
    #[serde(default)]
    pub killed: Option<Vec<i32>>,
    /// Pids alive (and not dying) at the end.
    #[serde(default)]
    pub survivors: Option<Vec<i32>>,
    /// A final `memory.max`.
    #[serde(default)]
    pub limit: Option<LimitExpect>,
    /// Some run of this handler had this result.
    #[serde(default)]
    pub handler: Option<HandlerExpect>,
    /// Whether the kernel fallback ran at all.
    #[serde(default)]
    pub fallback: Option<bool>,
}

/// The whole file.
#[derive(Deserialize, Debug, Clone)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    /// `[host]`.
    pub host: HostSpec,
    /// `[[cgroup]]`.
    #[serde(default)]
    pub cgroup: Vec<Spanned<CgroupSpec>>,
    /// `[[process]]`.
    #[serde(default)]
    pub process: Vec<Spanned<ProcessSpec>>,
    /// `[[attach]]`.
    #[serde(default)]
    pub attach: Vec<Spanned<AttachSpec>>,
    /// `[[step]]`.
    #[serde(default)]
    pub step: Vec<Spanned<StepSpec>>,
    /// `[[expect]]`.
    #[serde(default)]
    pub expect: Vec<Spanned<ExpectSpec>>,
}

/// 1-based line of a byte offset.
pub fn line_of(text: &str, offset: usize) -> usize {
    text.get(..offset.min(text.len()))
        .map_or(1, |t| t.bytes().filter(|&b| b == b'\n').count() + 1)
}

impl Scenario {
    /// Parses scenario text; `origin` names it in errors.
    pub fn parse(text: &str, origin: &str) -> Result<Scenario, SimError> {
        let sc: Scenario = toml::from_str(text).map_err(|e| SimError::Scenario {
            file: origin.to_string(),
            line: e.span().map_or(1, |s| line_of(text, s.start)),
            source: Box::new(e.message().into()),
        })?;
        let err = |span: std::ops::Range<usize>, reason: String| SimError::Scenario {
            file: origin.to_string(),
            line: line_of(text, span.start),
            source: Box::new(reason.into()),
        };
        for s in &sc.step {
            let v = s.get_ref();
            let n = [
                v.alloc.is_some(),
                v.free.is_some(),
                v.spawn.is_some(),
                v.exit.is_some(),
                v.rmdir.is_some(),
                v.mkdir.is_some(),
                v.psi.is_some(),
                v.advance.is_some(),
            ]
            .iter()
            .filter(|&&b| b)
            .count();
            if n != 1 {
                return Err(err(
                    s.span(),
                    format!("a step needs exactly one of alloc, free, spawn, exit, mkdir, rmdir, psi, advance (found {n})"),
                ));
            }
        }
        for e in &sc.expect {
            let v = e.get_ref();
            if v.killed.is_none()
                && v.survivors.is_none()
                && v.limit.is_none()
                && v.handler.is_none()
                && v.fallback.is_none()
            {
                return Err(err(
                    e.span(),
                    "an expect needs at least one of killed, survivors, limit, handler, fallback"
                        .into(),
                ));
            }
            if let Some(h) = &v.handler {
                if !["processed", "failed", "backoff"].contains(&h.result.as_str()) {
                    return Err(err(
                        e.span(),
                        format!(
                            "handler result {:?}: use processed, failed or backoff",
                            h.result
                        ),
                    ));
                }
            }
        }
        Ok(sc)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        // Sizes are bpfoom_engine::size's (tested there).
        assert_eq!(parse_duration("100ms"), Ok(Duration::from_millis(100)));
        assert_eq!(parse_duration("2s"), Ok(Duration::from_secs(2)));
        assert_eq!(parse_duration("7us"), Ok(Duration::from_micros(7)));
        assert_eq!(
            parse_duration("7h").unwrap_err().to_string(),
            "bad duration \"7h\": unknown unit \"h\" (use us, ms or s)"
        );
        assert_eq!(
            parse_duration("ms").unwrap_err(),
            DurationError::Number { given: "ms".into() }
        );
    }

    #[test]
    fn the_daemon_configs_names_are_accepted() {
        let text = r#"[host]
memory = "8G"
[[attach]]
policy = "p.bpf.o"
cgroup = "/"
backoff_timeout_ms = 250
maps = [{ map = "prefs", key = "/job/a", value = 3 }]
"#;
        let sc = Scenario::parse(text, "t.toml").unwrap();
        let a = sc.attach[0].get_ref();
        assert_eq!(a.backoff_timeout_ms, Some(250));
        assert_eq!(a.entries.len(), 1);
        // Both spellings of the map list at once are one key given twice.
        let both = text.replace(
            "backoff_timeout_ms = 250",
            "entries = [{ map = \"prefs\", key = 1, value = 1 }]",
        );
        assert!(Scenario::parse(&both, "t.toml").is_err());
    }

    #[test]
    fn typed_globals_and_entries() {
        let text = r#"[host]
memory = "8G"
[[attach]]
policy = "p.bpf.o"
cgroup = "/"
globals = { names = ["sshd", "init"], id = "/job", n = -5 }
entries = [
  { map = "prefs", key = "/job/a", value = { preference = 2, inner = { x = [1, 2] } } },
  { map = "prefs", key = { id = 1, pad = 0 }, value = 7 },
]
"#;
        let sc = Scenario::parse(text, "t.toml").unwrap();
        let a = sc.attach[0].get_ref();
        assert_eq!(
            *a.globals["names"].get_ref(),
            MapValue::Array(vec!["sshd".into(), "init".into()])
        );
        assert_eq!(*a.globals["id"].get_ref(), MapValue::from("/job"));
        assert_eq!(*a.globals["n"].get_ref(), MapValue::Int(-5));
        let e0 = a.entries[0].get_ref();
        assert_eq!(
            e0.value.get_ref().to_string(),
            "{ inner = { x = [1, 2] }, preference = 2 }"
        );
        assert_eq!(line_of(text, e0.value.span().start), 8);
        let e1 = a.entries[1].get_ref();
        assert!(matches!(e1.key.get_ref(), MapValue::Struct(_)));
        assert_eq!(line_of(text, e1.key.span().start), 9);
        // Floats are refused with the line.
        let bad = text.replace("n = -5", "n = 0.5");
        match Scenario::parse(&bad, "t.toml") {
            Err(SimError::Scenario { line, source, .. }) => {
                let reason = source.to_string();
                assert_eq!(line, 6, "{reason}");
                assert!(reason.contains("float"), "{reason}");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn errors_name_the_line() {
        let text = "[host]\nmemory = \"8G\"\n\n[[cgroup]]\npath = \"/a\"\nlimit = \"80Q\"\n";
        match Scenario::parse(text, "x.toml") {
            Err(SimError::Scenario { line, source, .. }) => {
                let reason = source.to_string();
                assert_eq!(line, 6, "{reason}");
                assert!(reason.contains("suffix"), "{reason}");
            }
            other => panic!("{other:?}"),
        }
        let text = "[host]\nmemory = \"8G\"\n[[step]]\nalloc = { pid = 1, bytes = 1 }\nexit = { pid = 1 }\n";
        match Scenario::parse(text, "x.toml") {
            Err(SimError::Scenario { line, source, .. }) => {
                let reason = source.to_string();
                assert_eq!(line, 3, "{reason}");
                assert!(reason.contains("exactly one"));
            }
            other => panic!("{other:?}"),
        }
        let text = "[host]\nmemory = \"8G\"\nbogus = 1\n";
        match Scenario::parse(text, "x.toml") {
            Err(SimError::Scenario { line, source, .. }) => {
                let reason = source.to_string();
                assert_eq!(line, 3, "{reason}");
                assert!(reason.contains("bogus"), "{reason}");
            }
            other => panic!("{other:?}"),
        }
    }
}
