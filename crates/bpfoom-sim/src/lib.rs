//! bpfoom's deterministic simulator: run BPF OOM policies against a
//! scripted machine, without root and without a real OOM.
//!
//! A scenario (TOML, see [`scenario`]) describes the machine (`[host]`), its
//! cgroup tree, processes, which policies are attached where, a list of
//! steps (allocations, exits, pressure stalls, time), and expectations. The
//! simulator drives [`bpfoom_engine::Engine`] over a [`SimHost`], whose
//! fallback is a model of the kernel OOM killer ([`kernel`]), and prints
//! one JSON object per line: every engine decision record, simulator events
//! (exits, failed allocations) and the verdict of each `[[expect]]`.
//!
//! Entry points: [`run_scenario_file`] (what `bpfoom sim` calls),
//! [`run_scenario`] (text plus a policy loader, for tests and the demo), and
//! [`DEMO_SCENARIO`].

pub mod host;
pub mod kernel;
pub mod scenario;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use bpfoom_engine::{
    AttachOptions, Engine, EngineConfig, EngineError, OomOutcome, PolicyCheck, Record, Verdict,
};
use bpfoom_obj::Object;

pub use host::{Line, SimEvent, SimHost, SimHostError, SimProc};
pub use scenario::Scenario;

use scenario::{ExpectSpec, ProcessSpec, StepSpec};

/// The upstream selftest tree with `largest_leaf` attached at `/oom_test`;
/// `bpfoom demo` runs it. The policy path is resolved by the caller's loader.
pub const DEMO_SCENARIO: &str = include_str!("../../../bpf/policies/tests/largest_leaf.toml");

/// Why a scenario could not be run.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    /// The scenario is malformed or inconsistent (exit code 2).
    #[error("{file}:{line}: {source}")]
    Scenario {
        /// Scenario file (or name).
        file: String,
        /// 1-based line.
        line: usize,
        /// What is wrong (boxed: an engine error can be large).
        #[source]
        source: Box<ScenarioError>,
    },
    /// The scenario file cannot be read (exit code 2).
    #[error("{file}: {source}")]
    Io {
        /// Path.
        file: String,
        /// OS error.
        #[source]
        source: std::io::Error,
    },
    /// Writing the output failed.
    #[error("output: {0}")]
    Output(#[from] std::io::Error),
}

/// What is wrong at a line of a scenario.
#[derive(Debug, thiserror::Error)]
pub enum ScenarioError {
    /// The scenario text itself: TOML syntax, an unknown key, a bad value,
    /// a step that names a missing process or cgroup, ...
    #[error("{0}")]
    Invalid(String),
    /// The policy's object file does not parse.
    #[error("{policy}: {source}")]
    Object {
        /// The scenario's `policy` path.
        policy: String,
        /// The loader's error.
        #[source]
        source: bpfoom_obj::ObjError,
    },
    /// The engine refused the policy (no instance, bad value, rejected by
    /// the verifier, cannot attach).
    #[error(transparent)]
    Engine(#[from] EngineError),
    /// The simulated machine refused a cgroup or process of the scenario.
    #[error(transparent)]
    Host(#[from] SimHostError),
    /// The policy loader could not produce the object (its own error:
    /// loaders are the caller's, see [`LoadPolicy`]).
    #[error(transparent)]
    Policy(BoxError),
}

/// Any error, as a [`LoadPolicy`] returns it.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

impl From<String> for ScenarioError {
    fn from(s: String) -> Self {
        ScenarioError::Invalid(s)
    }
}

impl From<&str> for ScenarioError {
    fn from(s: &str) -> Self {
        ScenarioError::Invalid(s.to_string())
    }
}

impl SimError {
    /// The process exit code: always 2 (bad input or unusable output).
    pub fn exit_code(&self) -> u8 {
        2
    }
}

/// The result of a completed run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Outcome {
    /// Number of `[[expect]]` tables.
    pub expects: usize,
    /// One message per failed expect: `expect #N (line L): ...`.
    pub failures: Vec<String>,
    /// Pids killed, in order.
    pub killed: Vec<i32>,
    /// References programs failed to release (0 for correct policies).
    pub leaked_refs: u64,
}

impl Outcome {
    /// 0 when every expect held, 1 otherwise.
    pub fn exit_code(&self) -> u8 {
        u8::from(!self.failures.is_empty())
    }
}

/// How a scenario's `policy = "..."` becomes object bytes: given the path as
/// written and the scenario's directory. Any `Fn(&str, &Path) -> Result<Vec<u8>,
/// E>` is one, for every error `E` that converts into a [`BoxError`] (typed
/// errors, and the `String`s of small test loaders).
pub trait LoadPolicy {
    /// Loads `policy` (relative paths start from `base`).
    fn load(&self, policy: &str, base: &Path) -> Result<Vec<u8>, BoxError>;
}

impl<F, E> LoadPolicy for F
where
    F: Fn(&str, &Path) -> Result<Vec<u8>, E>,
    E: Into<BoxError>,
{
    fn load(&self, policy: &str, base: &Path) -> Result<Vec<u8>, BoxError> {
        self(policy, base).map_err(Into::into)
    }
}

/// The loader of [`SimOptions`].
pub type PolicyLoader<'a> = dyn LoadPolicy + 'a;

/// Why [`read_policy_file`] has no object.
#[derive(Debug, thiserror::Error)]
pub enum PolicyFileError {
    /// The file exists but cannot be read.
    #[error("{}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// Neither place has the file.
    #[error(
        "policy {policy:?} not found (tried {}: the scenario's directory, then the working directory){}",
        tried.join(" and "),
        beside.as_ref().map(|s| format!("; build it first: bpfoom build {s}")).unwrap_or_default()
    )]
    NotFound {
        /// The path as written.
        policy: String,
        /// Each place tried, once (an empty base is the working directory).
        tried: Vec<String>,
        /// The `.bpf.c` beside the missing object, when there is one.
        beside: Option<String>,
    },
}

/// Reads the object at `policy`, relative to `base` first, then the
/// working directory.
pub fn read_policy_file(policy: &str, base: &Path) -> Result<Vec<u8>, PolicyFileError> {
    let candidates = [base.join(policy), PathBuf::from(policy)];
    for c in &candidates {
        if c.is_file() {
            return std::fs::read(c).map_err(|source| PolicyFileError::Read {
                path: c.clone(),
                source,
            });
        }
    }
    let beside = policy
        .strip_suffix(".o")
        .map(|s| format!("{s}.c"))
        .filter(|src| base.join(src).is_file() || Path::new(src).is_file());
    let mut tried: Vec<String> = candidates.iter().map(|c| c.display().to_string()).collect();
    tried.dedup();
    Err(PolicyFileError::NotFound {
        policy: policy.into(),
        tried,
        beside,
    })
}

/// Options of a run.
pub struct SimOptions<'a> {
    /// Directory relative paths in the scenario start from.
    pub base_dir: PathBuf,
    /// Turns a `policy` entry into object bytes.
    pub loader: &'a PolicyLoader<'a>,
    /// The gate every policy must pass before it attaches (the verifier).
    pub check: &'a dyn PolicyCheck,
    /// Engine limits.
    pub engine: EngineConfig,
}

/// Runs a scenario file with the default loader ([`read_policy_file`]) and
/// the bpfoom verifier as the gate, printing JSON lines to `out`. This is
/// `bpfoom sim FILE`: exit with [`Outcome::exit_code`] or
/// [`SimError::exit_code`].
pub fn run_scenario_file(path: &Path, out: &mut dyn Write) -> Result<Outcome, SimError> {
    run_scenario_file_with(path, &bpfoom_engine::Verifier::default(), out)
}

/// [`run_scenario_file`] with another gate.
pub fn run_scenario_file_with(
    path: &Path,
    check: &dyn PolicyCheck,
    out: &mut dyn Write,
) -> Result<Outcome, SimError> {
    let text = std::fs::read_to_string(path).map_err(|source| SimError::Io {
        file: path.display().to_string(),
        source,
    })?;
    let base_dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
    let opts = SimOptions {
        base_dir,
        loader: &read_policy_file,
        check,
        engine: EngineConfig::default(),
    };
    run_scenario(&text, &path.display().to_string(), &opts, out)
}

/// Maximum OOM rounds for one allocation before it is declared failed.
const MAX_ROUNDS: usize = 16;

struct Runner<'a> {
    text: &'a str,
    origin: &'a str,
    engine: Engine<SimHost>,
}

impl Runner<'_> {
    fn err(&self, span: std::ops::Range<usize>, source: impl Into<ScenarioError>) -> SimError {
        SimError::Scenario {
            file: self.origin.into(),
            line: scenario::line_of(self.text, span.start),
            source: Box::new(source.into()),
        }
    }

    fn host(&mut self) -> &mut SimHost {
        self.engine.host_mut()
    }

    fn cgroup(&self, path: &str, span: &std::ops::Range<usize>) -> Result<u64, SimError> {
        self.engine
            .host()
            .lookup(path)
            .ok_or_else(|| self.err(span.clone(), format!("no cgroup {path}")))
    }

    fn process(
        &self,
        p: &ProcessSpec,
        span: &std::ops::Range<usize>,
        charged: bool,
    ) -> Result<SimProc, SimError> {
        let cgroup = self.cgroup(&p.cgroup, span)?;
        if !(-1000..=1000).contains(&p.oom_score_adj) {
            return Err(self.err(
                span.clone(),
                format!("oom_score_adj {} is outside -1000..=1000", p.oom_score_adj),
            ));
        }
        Ok(SimProc {
            pid: p.pid,
            comm: p.comm.clone(),
            cgroup,
            rss: if charged { p.rss.0 } else { 0 },
            rss_file: p.rss_file.0,
            rss_shmem: p.rss_shmem.0,
            file: p.file.0,
            swap: p.swap.0,
            oom_score_adj: p.oom_score_adj,
            kthread: p.kthread,
            exiting_until: None,
        })
    }

    /// Charges `bytes` to `pid`, running OOM events until it fits, the
    /// allocator dies, or nothing more can be done.
    fn alloc(&mut self, pid: i32, bytes: u64) {
        let fail = |r: &mut Self, reason: String| {
            r.host()
                .log(Line::Sim(SimEvent::AllocFailed { pid, bytes, reason }));
        };
        for _ in 0..MAX_ROUNDS {
            let Some(p) = self.engine.host().process(pid) else {
                return fail(self, "the allocating process was killed".into());
            };
            if p.exiting_until.is_some() {
                return fail(self, "the allocating process was killed".into());
            }
            let (cg, rss) = (p.cgroup, p.rss);
            let Some(scope) = self.engine.host().over_limit(cg, bytes) else {
                self.host().set_rss(pid, rss + bytes);
                return;
            };
            let h = self.host();
            if let Some(s) = scope {
                // memory.events: max (2) and oom (3); reclaim scanned first.
                h.count_event(s, 2, 1);
                h.count_event(s, 3, 1);
                // Reclaim before the OOM: its scanning shows in the
                // allocator's memcg and above (the model's pressure signal).
                h.count_scan(cg, bytes.div_ceil(4096));
            }
            h.set_pending(Some((cg, bytes)));
            h.set_allocator(Some(pid));
            let outcome = self.engine.out_of_memory(scope);
            self.host().set_pending(None);
            self.host().set_allocator(None);
            self.host().advance(Duration::ZERO);
            if outcome == OomOutcome::Nothing {
                return fail(self, "no process could be killed".into());
            }
        }
        fail(
            self,
            format!("still over the limit after {MAX_ROUNDS} OOM rounds"),
        )
    }

    fn step(&mut self, s: &StepSpec, span: &std::ops::Range<usize>) -> Result<(), SimError> {
        let known = |r: &Self, pid: i32| {
            r.engine.host().process(pid).map(|_| ()).ok_or_else(|| {
                r.err(
                    span.clone(),
                    format!("no process {pid} (never started, or already gone)"),
                )
            })
        };
        if let Some(a) = &s.alloc {
            known(self, a.pid)?;
            self.alloc(a.pid, a.bytes.0);
        } else if let Some(f) = &s.free {
            known(self, f.pid)?;
            let rss = self.engine.host().process(f.pid).map_or(0, |p| p.rss);
            self.host().set_rss(f.pid, rss.saturating_sub(f.bytes.0));
        } else if let Some(p) = &s.spawn {
            let proc = self.process(p, span, false)?;
            self.host()
                .add_process(proc)
                .map_err(|e| self.err(span.clone(), e))?;
            self.alloc(p.pid, p.rss.0);
        } else if let Some(e) = &s.exit {
            known(self, e.pid)?;
            self.host().exit(e.pid);
        } else if let Some(m) = &s.mkdir {
            if self.engine.host().lookup(&m.path).is_some() {
                return Err(self.err(span.clone(), format!("mkdir {}: it exists", m.path)));
            }
            let cg = self
                .host()
                .mkdir(&m.path, m.limit.map(|l| l.0), m.oom_group)
                .map_err(|e| self.err(span.clone(), e))?;
            self.engine.cgroup_online(cg);
        } else if let Some(r) = &s.rmdir {
            let cg = self.cgroup(&r.path, span)?;
            if self.engine.host().tasks_in(cg) {
                return Err(self.err(
                    span.clone(),
                    format!("rmdir {}: the cgroup still has processes", r.path),
                ));
            }
            self.engine.cgroup_offline(cg);
            self.host()
                .rmdir(cg)
                .map_err(|e| self.err(span.clone(), e))?;
        } else if let Some(p) = &s.psi {
            let cg = self.cgroup(&p.cgroup, span)?;
            // A full stall is also a some stall.
            let some = Duration::from_micros(p.some_us.max(p.full_us));
            self.engine
                .psi_stall(cg, some, Duration::from_micros(p.full_us));
            self.host().advance(Duration::ZERO);
        } else if let Some(d) = &s.advance {
            self.host().advance(d.0);
        }
        Ok(())
    }

    fn check(&self, e: &ExpectSpec) -> Vec<String> {
        let h = self.engine.host();
        let records: Vec<&Record> = h
            .lines()
            .iter()
            .filter_map(|l| match l {
                Line::Engine(r) => Some(r),
                Line::Sim(_) => None,
            })
            .collect();
        let mut bad = Vec::new();
        if let Some(want) = &e.killed {
            let got = killed(&records);
            if &got != want {
                bad.push(format!("killed: expected {want:?}, got {got:?}"));
            }
        }
        if let Some(want) = &e.survivors {
            let dead: Vec<i32> = want
                .iter()
                .copied()
                .filter(|&pid| h.process(pid).is_none_or(|p| p.exiting_until.is_some()))
                .collect();
            if !dead.is_empty() {
                bad.push(format!("survivors: {dead:?} did not survive"));
            }
        }
        if let Some(l) = &e.limit {
            let got = h.lookup(&l.path).map(|cg| h.limit(cg));
            match got {
                Some(Some(v)) if v == l.bytes.0 => {}
                Some(v) => bad.push(format!(
                    "limit of {}: expected {}, got {v:?}",
                    l.path, l.bytes.0
                )),
                None => bad.push(format!("limit: no cgroup {}", l.path)),
            }
        }
        if let Some(want) = &e.handler {
            let results: Vec<Verdict> = records
                .iter()
                .filter_map(|r| match r {
                    Record::Handler { policy, ret, .. } if *policy == want.policy => Some(*ret),
                    _ => None,
                })
                .collect();
            let name = |v: &Verdict| {
                serde_json::to_value(v)
                    .ok()
                    .and_then(|j| j.as_str().map(String::from))
            };
            if !results
                .iter()
                .any(|v| name(v).as_deref() == Some(want.result.as_str()))
            {
                let seen: Vec<String> = results.iter().filter_map(name).collect();
                bad.push(format!(
                    "handler {}: expected a {} result, got {seen:?}",
                    want.policy, want.result
                ));
            }
        }
        if let Some(want) = e.fallback {
            let got = records.iter().any(|r| matches!(r, Record::Fallback { .. }));
            if got != want {
                bad.push(format!("fallback: expected {want}, got {got}"));
            }
        }
        bad
    }
}

fn killed(records: &[&Record]) -> Vec<i32> {
    records
        .iter()
        .filter_map(|r| match r {
            Record::Kill { pid, .. } => Some(*pid),
            _ => None,
        })
        .collect()
}

impl SimHost {
    /// Whether any process is in `cg` itself.
    fn tasks_in(&self, cg: u64) -> bool {
        use bpfoom_engine::Host;
        !self.tasks(cg).is_empty()
    }
}

fn write_lines(lines: &[Line], out: &mut dyn Write) -> Result<(), SimError> {
    for l in lines {
        let s = serde_json::to_string(l).map_err(std::io::Error::other)?;
        writeln!(out, "{s}")?;
    }
    Ok(())
}

/// Runs scenario `text` (`origin` names it in errors), printing JSON lines.
pub fn run_scenario(
    text: &str,
    origin: &str,
    opts: &SimOptions<'_>,
    out: &mut dyn Write,
) -> Result<Outcome, SimError> {
    let sc = Scenario::parse(text, origin)?;
    let exit_delay = sc.host.exit_delay.map_or(Duration::ZERO, |d| d.0);
    let mut r = Runner {
        text,
        origin,
        engine: Engine::new(
            SimHost::new(sc.host.memory.0, exit_delay),
            opts.engine.clone(),
        ),
    };
    for c in &sc.cgroup {
        let v = c.get_ref();
        r.host()
            .mkdir(&v.path, v.limit.map(|s| s.0), v.oom_group)
            .map_err(|e| r.err(c.span(), e))?;
    }
    for p in &sc.process {
        let proc = r.process(p.get_ref(), &p.span(), true)?;
        let cg = proc.cgroup;
        r.host().add_process(proc).map_err(|e| r.err(p.span(), e))?;
        if let Some(over) = r.engine.host().over_limit(cg, 0) {
            let what = over
                .and_then(|c| r.engine.host().path_of(c))
                .unwrap_or_else(|| "the host".into());
            return Err(r.err(
                p.span(),
                format!("initial usage exceeds the memory of {what}"),
            ));
        }
    }
    for a in &sc.attach {
        let v = a.get_ref();
        let span = a.span();
        let bytes = opts
            .loader
            .load(&v.policy, &opts.base_dir)
            .map_err(|e| r.err(span.clone(), ScenarioError::Policy(e)))?;
        let obj = Object::parse(&bytes).map_err(|source| {
            r.err(
                span.clone(),
                ScenarioError::Object {
                    policy: v.policy.clone(),
                    source,
                },
            )
        })?;
        let mut policy = bpfoom_engine::Policy::open(obj, v.instance.as_deref())
            .map_err(|e| r.err(span.clone(), e))?;
        // A string for an integer is a cgroup path; the simulated host
        // resolves it to the cgroup's id.
        let host = r.engine.host();
        let mut resolve = |p: &str| {
            host.lookup(p)
                .ok_or(bpfoom_engine::CgroupLookupError::NotFound)
        };
        for (name, val) in &v.globals {
            policy
                .set_global_value(name, val.get_ref(), &mut resolve)
                .map_err(|e| r.err(val.span(), e))?;
        }
        for entry in &v.entries {
            let en = entry.get_ref();
            if let Err(e) =
                policy.set_map_entry(&en.map, en.key.get_ref(), en.value.get_ref(), &mut resolve)
            {
                let at = match &e {
                    EngineError::Value { source, .. } if source.path().starts_with("key") => {
                        en.key.span()
                    }
                    EngineError::Value { .. } => en.value.span(),
                    _ => entry.span(),
                };
                return Err(r.err(at, e));
            }
        }
        policy
            .check(opts.check)
            .map_err(|e| r.err(span.clone(), e))?;
        let cg = r.cgroup(&v.cgroup, &span)?;
        let defaults = AttachOptions::default();
        let timeout = match (v.backoff_timeout, v.backoff_timeout_ms) {
            (Some(_), Some(_)) => {
                return Err(r.err(
                    span.clone(),
                    "give backoff_timeout or backoff_timeout_ms, not both",
                ))
            }
            (Some(d), None) => d.0,
            (None, Some(ms)) => std::time::Duration::from_millis(ms),
            (None, None) => defaults.backoff_timeout,
        };
        let attach = AttachOptions {
            backoff_budget: v.backoff_budget.unwrap_or(defaults.backoff_budget),
            backoff_timeout: timeout,
            limit_reserve: v.limit_reserve.map_or(defaults.limit_reserve, |s| s.0),
        };
        r.engine
            .attach(policy, cg, attach)
            .map_err(|e| r.err(span.clone(), e))?;
    }
    for s in &sc.step {
        r.step(s.get_ref(), &s.span())?;
    }
    let mut failures = Vec::new();
    for (i, e) in sc.expect.iter().enumerate() {
        let bad = r.check(e.get_ref());
        let line = scenario::line_of(text, e.span().start);
        let ok = bad.is_empty();
        let message = if ok { "ok".to_string() } else { bad.join("; ") };
        if !ok {
            failures.push(format!("expect #{} (line {line}): {message}", i + 1));
        }
        r.host().log(Line::Sim(SimEvent::Expect {
            index: i + 1,
            line,
            ok,
            message,
        }));
    }
    write_lines(r.engine.host().lines(), out)?;
    let records: Vec<&Record> = r
        .engine
        .host()
        .lines()
        .iter()
        .filter_map(|l| match l {
            Line::Engine(rec) => Some(rec),
            Line::Sim(_) => None,
        })
        .collect();
    Ok(Outcome {
        expects: sc.expect.len(),
        killed: killed(&records),
        failures,
        leaked_refs: r.engine.leaked_refs(),
    })
}

impl SimHost {
    fn path_of(&self, cg: u64) -> Option<String> {
        use bpfoom_engine::Host;
        self.path(cg)
    }
}
