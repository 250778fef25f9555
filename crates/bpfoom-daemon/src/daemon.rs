//! The daemon: set-up, the poll loop, OOM handling, control requests,
//! shutdown.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::io::Write;
use std::os::fd::AsFd;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::net::{UnixDatagram, UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::{Duration, Instant};

use bpfoom_engine::{
    AttachOptions, CgroupId, CgroupLookupError, Engine, EngineConfig, EngineError, Host, OpsKind,
    Policy, Record,
};
use bpfoom_host::pressure::{GlobalMonitor, GlobalThresholds};
use bpfoom_host::sys::Wait;
use bpfoom_host::{restore, sys, GlobalFallback, HostConfig, LinuxHost};
use bpfoom_obj::Object;

use crate::clients::{Got, Pending};
use crate::config::{AttachSection, Config, FallbackKind, LogFormat};
use crate::control::{self, AttachOpts, Request, Response, MAX_REQUEST};
use crate::logging::Output;
use crate::metrics::Metrics;
use crate::psi::{PsiFeeder, PSI_INTERVAL};
use crate::reload::{Action, Change, Spec};
use crate::{
    DaemonError, InputError, Rejection, RunArgs, SetupError, DEFAULT_SOCKET, DEFAULT_STATE_FILE,
};

/// How often the managed subtrees are re-read in full: inotify reports
/// created and removed cgroups at once, this only catches what it missed
/// (e.g. an inotify queue overflow), so it can be slow: a full pass over
/// 1,000 cgroups costs about 50 ms of CPU.
const RESCAN: Duration = Duration::from_secs(300);

struct Attached {
    cgroup: CgroupId,
    kind: OpsKind,
    file: PathBuf,
    /// What the config entry asked for; `None` for `bpfoom attach` and
    /// `run --attach`, which a reload leaves alone.
    spec: Option<Spec>,
}

/// A policy loaded, configured and verified, not yet attached.
struct Prepared {
    policy: Policy,
    cgroup: CgroupId,
    opts: AttachOptions,
}

/// signal(7): SIGHUP is 1 on every Linux architecture.
const SIGHUP: i32 = 1;

#[derive(Default, serde::Serialize)]
struct Counters {
    ooms: u64,
    resolved_by_policy: u64,
    resolved_by_backoff: u64,
    kernel_fallbacks: u64,
    unresolved: u64,
    kills: u64,
    limit_raises: u64,
    handler_failures: u64,
    requests: u64,
    rejected_requests: u64,
}

struct Daemon {
    engine: Engine<LinuxHost>,
    out: Rc<RefCell<Output>>,
    attached: Vec<Attached>,
    counters: Counters,
    /// When the daemon started (status: `started`, `uptime_s`).
    started: (Instant, std::time::SystemTime),
    global: GlobalMonitor,
    dry_run: bool,
    global_full_avg10: Option<f64>,
    psi: PsiFeeder,
    clients: Pending,
    metrics: Metrics,
    /// The config file and what it said at start or the last reload.
    config: Option<(PathBuf, Config)>,
    /// The bound metrics endpoint, until its thread starts.
    metrics_listener: Option<std::net::TcpListener>,
    /// `[[hook]]` commands and the running ones.
    hooks: crate::hooks::Hooks,
}

fn setup(what: impl std::fmt::Display) -> impl FnOnce(std::io::Error) -> DaemonError {
    move |source| DaemonError::Io {
        what: what.to_string(),
        source,
    }
}

/// Runs the daemon in the foreground until SIGTERM/SIGINT/SIGHUP.
pub fn run_daemon(args: &RunArgs) -> Result<(), DaemonError> {
    let cfg = match &args.config {
        Some(p) => Config::load(p)?,
        None => Config::default(),
    };
    let d = &cfg.daemon;
    let dry_run = args.dry_run || d.dry_run.unwrap_or(false);
    let format = args.log_format.or(d.log_format).unwrap_or(LogFormat::Json);
    let socket = args
        .socket
        .clone()
        .or_else(|| d.socket.clone())
        .unwrap_or_else(|| DEFAULT_SOCKET.into());
    let state_file = args
        .state_file
        .clone()
        .or_else(|| d.state_file.clone())
        .unwrap_or_else(|| DEFAULT_STATE_FILE.into());
    let proc_root = d.proc_root.clone().unwrap_or_else(|| "/proc".into());
    let cgroup_root = args
        .cgroup_root
        .clone()
        .or_else(|| d.cgroup_root.clone())
        .or_else(|| bpfoom_host::find_memory_hierarchy(&proc_root))
        .ok_or(SetupError::NoHierarchy)?;
    let attach_specs = parse_attach_args(&args.attach)?;
    let out = Rc::new(RefCell::new(Output::stdio(format, dry_run)));
    let info = |m: &str| out.borrow_mut().info(m);

    // Leftovers of a crashed daemon first: un-pause what it paused.
    if let Some(dir) = state_file.parent() {
        std::fs::create_dir_all(dir).map_err(setup(dir.display()))?;
    }
    match restore::reconcile(&state_file) {
        Ok(v) if !v.is_empty() => info(&format!(
            "restored {} settings left by a previous daemon ({})",
            v.len(),
            state_file.display()
        )),
        Ok(_) => {}
        Err(e) => info(&format!("reconciling {}: {e}", state_file.display())),
    }
    let guardian = Guardian::start(&state_file)?;
    // Termination signals are blocked before the first cgroup is changed,
    // not once serving starts: a SIGTERM during start-up (a service stopped
    // just after it became ready) is then taken by the loop, which puts
    // every cgroup back, instead of killing the process and leaving that to
    // the guardian. The guardian was forked before, with the default mask.
    let sigfd = sys::termination_signalfd().map_err(setup("signalfd"))?;

    let mut hc = HostConfig::new(&cgroup_root);
    hc.proc_root = proc_root;
    hc.dry_run = dry_run;
    hc.state_file = Some(state_file.clone());
    // The kernel's report names its victims in fallbacks and dry runs.
    hc.kmsg = Some("/dev/kmsg".into());
    if let Some(h) = cfg.v2.headroom {
        hc.v2_headroom = h.0;
    }
    if let Some(s) = cfg.v2.min_stall_us {
        hc.v2_min_stall_us = s;
    }
    hc.global_fallback = match cfg.global.fallback {
        Some(FallbackKind::Sysrq) => GlobalFallback::Sysrq,
        _ => GlobalFallback::None,
    };
    let global = GlobalMonitor::new(GlobalThresholds {
        min_available_pct: cfg.global.min_available_percent,
        max_full_avg10: cfg.global.max_psi_full_avg10,
        ..Default::default()
    });
    if let Some(m) = bpfoom_host::procfs::Procfs::new(&hc.proc_root).meminfo() {
        hc.global_min_available_kb = global.min_available_kb(&m);
    }
    let mut host = LinuxHost::new(hc)?;
    let sink_out = out.clone();
    host.set_sink(Box::new(move |r| sink_out.borrow_mut().record(r)));
    let ecfg = EngineConfig {
        insn_budget: d.insn_budget.unwrap_or(EngineConfig::default().insn_budget),
        time_limit: d
            .handler_time_limit_ms
            .map_or(EngineConfig::default().time_limit, Duration::from_millis),
        vm: d.engine.map_or_else(Default::default, Into::into),
        ..EngineConfig::default()
    };
    let mut dm = Daemon {
        engine: Engine::new(host, ecfg),
        out,
        attached: Vec::new(),
        counters: Counters::default(),
        started: (Instant::now(), std::time::SystemTime::now()),
        global,
        dry_run,
        global_full_avg10: cfg.global.max_psi_full_avg10,
        psi: PsiFeeder::default(),
        clients: Pending::default(),
        metrics: Metrics::new(),
        config: args.config.clone().map(|p| (p, cfg.clone())),
        metrics_listener: None,
        hooks: crate::hooks::Hooks::new(cfg.hook.clone()),
    };
    let metrics_addr = match args.metrics.as_deref().or(d.metrics.as_deref()) {
        Some(a) => Some(crate::metrics::parse_addr(a)?),
        None => None,
    };
    // --no-mlock (unprivileged experiments) wins over the file.
    let mlock = match (args.no_mlock, args.mlock.or(d.mlock)) {
        (true, _) => bpfoom_host::MemoryLock::Off,
        (false, k) => k.map(Into::into).unwrap_or_default(),
    };
    let result = dm.start(&cfg, &attach_specs, &socket, mlock, metrics_addr);
    let result = result.and_then(|listener| dm.serve(&listener, guardian, &sigfd));
    // Whatever happened, put every cgroup back.
    let errs = dm.engine.host_mut().restore_all();
    for e in errs {
        dm.out.borrow_mut().log(
            crate::records::Severity::Err,
            &format!("restore failed: {e}"),
        );
    }
    let _ = std::fs::remove_file(&socket);
    notify_systemd("STOPPING=1");
    result
}

/// The guardian process, watched so a dead one is replaced.
struct Guardian {
    pid: i32,
    pidfd: std::os::fd::OwnedFd,
    state_file: PathBuf,
}

impl Guardian {
    fn start(state_file: &Path) -> Result<Guardian, DaemonError> {
        let pid = sys::spawn_guardian(state_file).map_err(setup("starting the guardian"))?;
        let pidfd = sys::pidfd_open(pid).map_err(setup("watching the guardian"))?;
        Ok(Guardian {
            pid,
            pidfd,
            state_file: state_file.to_path_buf(),
        })
    }

    /// Replaces a guardian that died (it is never expected to).
    fn restart(&mut self) -> Result<(), DaemonError> {
        sys::reap_child(self.pid);
        *self = Guardian::start(&self.state_file)?;
        Ok(())
    }
}

/// Each `--attach` as a one-entry config ([`crate::attach_arg`]).
fn parse_attach_args(v: &[String]) -> Result<Vec<Config>, DaemonError> {
    v.iter()
        .enumerate()
        .map(|(i, s)| crate::attach_arg::parse(s, i).map_err(DaemonError::Config))
        .collect()
}

/// Sends a state line to systemd when started as a `Type=notify` service.
fn notify_systemd(state: &str) {
    let Some(path) = std::env::var_os("NOTIFY_SOCKET") else {
        return;
    };
    let Ok(sock) = UnixDatagram::unbound() else {
        return;
    };
    let p = path.to_string_lossy();
    let _ = match p.strip_prefix('@') {
        Some(name) => {
            use std::os::linux::net::SocketAddrExt;
            std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes())
                .and_then(|a| sock.send_to_addr(state.as_bytes(), &a))
        }
        None => sock.send_to(state.as_bytes(), Path::new(&*p)),
    };
}

fn bind_socket(path: &Path) -> Result<UnixListener, DaemonError> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(setup(dir.display()))?;
    }
    // A live daemon answers; a stale socket file does not.
    if UnixStream::connect(path).is_ok() {
        return Err(SetupError::SocketTaken {
            socket: path.to_path_buf(),
        }
        .into());
    }
    let _ = std::fs::remove_file(path);
    let l = UnixListener::bind(path).map_err(setup(path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        .map_err(setup(path.display()))?;
    l.set_nonblocking(true).map_err(setup(path.display()))?;
    Ok(l)
}

impl Daemon {
    fn start(
        &mut self,
        cfg: &Config,
        cli: &[Config],
        socket: &Path,
        mlock: bpfoom_host::MemoryLock,
        metrics_addr: Option<std::net::SocketAddr>,
    ) -> Result<UnixListener, DaemonError> {
        // Before any attachment: a second daemon must fail without an
        // `attach` record or a changed cgroup.
        if UnixStream::connect(socket).is_ok() {
            return Err(SetupError::AlreadyRunning {
                socket: socket.to_path_buf(),
            }
            .into());
        }
        // Before the attachments and their watches: each watched cgroup
        // holds descriptors (see raise_nofile_limit).
        if let Err(e) = bpfoom_host::sys::raise_nofile_limit() {
            self.warn(&format!("cannot raise the open-file limit ({e})"));
        }
        // The file's entries are the reload's to manage; `--attach` ones
        // stay until detached.
        let entries = cfg.attach.iter().map(|a| (cfg, a, true));
        let cli = cli
            .iter()
            .flat_map(|c| c.attach.iter().map(move |a| (c, a, false)));
        for (cfg, a, from_config) in entries.chain(cli) {
            let opts = entry_opts(a);
            let locate = entry_locate(cfg, a);
            let file = cfg_path(&args_config_dir(), a.policy.get_ref());
            let instance = a.instance.as_deref();
            self.attach_as(
                &file,
                a.cgroup.get_ref(),
                instance,
                &opts,
                &locate,
                from_config,
            )
            .map_err(|e| match e {
                e @ (DaemonError::Rejected(_) | DaemonError::Config(_)) => e,
                other => InputError::AttachEntry {
                    cgroup: a.cgroup.get_ref().clone(),
                    source: Box::new(other),
                }
                .into(),
            })?;
        }
        // The daemon must outlive the OOMs it handles (needs
        // CAP_SYS_RESOURCE; the unit file sets it too).
        if let Err(e) = std::fs::write("/proc/self/oom_score_adj", "-1000") {
            self.warn(&format!("cannot set oom_score_adj -1000 ({e})"));
        }
        if let Err(e) = bpfoom_host::lock_memory(mlock, 1 << 20) {
            self.warn(&format!("mlockall failed ({e}); continuing unlocked"));
        }
        // Bound last: a client that can connect sees the initial attachments.
        let listener = bind_socket(socket)?;
        self.flush();
        if let Some(addr) = metrics_addr {
            // After the initial attachments: a readiness probe on /metrics
            // passes only once the policies are in place. The thread starts
            // in serve(), once the signals are blocked.
            let l = crate::metrics::bind(addr)?;
            let bound = l.local_addr().map_err(setup("metrics endpoint"))?;
            self.metrics_listener = Some(l);
            self.info(&format!("metrics at http://{bound}/metrics"));
        }
        self.info(&format!(
            "running (pid {}, socket {}, {} instances, {}{})",
            std::process::id(),
            socket.display(),
            self.attached.len(),
            self.engine.config().vm.name(),
            if self.dry_run { ", dry run" } else { "" }
        ));
        notify_systemd("READY=1");
        Ok(listener)
    }

    fn serve(
        &mut self,
        listener: &UnixListener,
        mut guardian: Guardian,
        sigfd: &std::fs::File,
    ) -> Result<(), DaemonError> {
        if let Some(l) = self.metrics_listener.take() {
            crate::metrics::spawn(l, self.metrics.registry())?;
        }
        let global_psi = self.global_trigger();
        let mut last_rescan = Instant::now();
        let mut watchdog = crate::notify::Watchdog::from_env();
        loop {
            if let Some(w) = watchdog.as_mut() {
                // From the loop itself: a hung loop stops the keep-alives.
                if w.tick(Instant::now()) {
                    notify_systemd("WATCHDOG=1");
                }
            }
            // Idle, only the descriptors wake the loop; housekeeping (v1
            // fallbacks to the kernel, global sampling, v2 sampling) needs
            // turns. The OOM path itself has deadlines, not ticks.
            let housekeeping = self.global.enabled()
                || self.engine.host().has_holds()
                || self.engine.host().watching_kernel()
                || self.engine.host().v2_active();
            // Idle, the loop sleeps until the next full rescan: every
            // event it waits for has a descriptor (signals, clients, the
            // guardian, eventfds, PSI triggers, inotify, victims' pidfds).
            let mut timeout = if housekeeping {
                Duration::from_millis(250)
            } else {
                RESCAN.saturating_sub(last_rescan.elapsed())
            };
            let start = Instant::now();
            if let Some(d) = self.engine.host().next_oom_deadline(start) {
                timeout = timeout.min(d.saturating_duration_since(start));
            }
            let psi_active = PsiFeeder::active(&self.engine);
            if psi_active {
                timeout = timeout.min(PSI_INTERVAL);
            }
            if !self.clients.is_empty() {
                // Connections still sending their request are read each pass.
                timeout = timeout.min(Duration::from_millis(20));
            }
            if let Some(w) = &watchdog {
                timeout = timeout.min(w.due_in(Instant::now()));
            }
            if self.hooks.running() > 0 {
                // Hook timeouts are enforced on loop passes.
                timeout = timeout.min(Duration::from_millis(100));
            }
            let (ready, fired) = {
                let host = self.engine.host();
                let mut fds = vec![
                    (sigfd.as_fd(), Wait::Readable),
                    (listener.as_fd(), Wait::Readable),
                    (host.inotify().as_fd(), Wait::Readable),
                    (guardian.pidfd.as_fd(), Wait::Readable),
                ];
                // Wake-ups only: what they mean is sampled below.
                fds.extend(global_psi.iter().map(|f| (f.as_fd(), Wait::Priority)));
                // v2: a cgroup's PSI trigger and v1: its OOM eventfd both
                // say "look at this cgroup now".
                let first_efd = fds.len();
                let mut efds: Vec<_> = host
                    .psi_fds()
                    .into_iter()
                    .map(|(c, f)| (c, f, Wait::Priority))
                    .collect();
                efds.extend(
                    host.notify_fds()
                        .into_iter()
                        .map(|(c, f)| (c, f, Wait::Readable)),
                );
                fds.extend(efds.iter().map(|&(_, f, w)| (f, w)));
                // A victim's exit wakes the loop: an OOM it held off goes on.
                let ready = host.with_victim_fds(|victims| {
                    let mut all = fds.clone();
                    all.extend(victims.iter().map(|&f| (f, Wait::Readable)));
                    sys::poll(&all, Some(timeout))
                });
                let ready = ready.map_err(setup("poll"))?;
                let fired: Vec<CgroupId> = efds
                    .iter()
                    .zip(&ready[first_efd..])
                    .filter(|(_, &r)| r)
                    .map(|(&(c, _, _), _)| c)
                    .collect();
                (ready, fired)
            };
            let now = Instant::now();
            if ready[0] {
                let sig = sys::read_signal(sigfd).unwrap_or(0);
                if sig == SIGHUP {
                    // A habitual `kill -HUP` reloads; it never drops protection.
                    notify_systemd("RELOADING=1");
                    self.reload_logged("SIGHUP");
                    notify_systemd("READY=1");
                } else {
                    self.info(&format!("signal {sig}: restoring cgroups and exiting"));
                    return Ok(());
                }
            }
            if ready[3] {
                self.info(&format!(
                    "guardian (pid {}) died; starting a new one",
                    guardian.pid
                ));
                guardian.restart()?;
            }
            if now.duration_since(last_rescan) >= RESCAN {
                let r = self.engine.host_mut().rescan();
                self.apply_rescan(r);
                last_rescan = now;
            } else if ready[2] {
                let r = self.engine.host_mut().rescan_changed();
                self.apply_rescan(r);
            }
            // v1 wakes us by eventfd, v2 by PSI trigger or by inotify on
            // memory.events; cgroups still in OOM (v1) or with half a signal
            // (v2) are looked at again on their deadlines.
            let host = self.engine.host();
            let again = host.has_suspects() || host.v2_active();
            if ready[2] || ready.iter().skip(4).any(|&r| r) || again {
                self.handle_memcg_ooms(now, &fired);
            }
            if self.global.enabled() {
                let p = bpfoom_host::procfs::Procfs::new(&self.engine.host().config().proc_root);
                if let Some(why) =
                    self.global
                        .sample(now, p.meminfo().as_ref(), p.memory_pressure().as_ref())
                {
                    self.info(&format!("global OOM: {why}"));
                    self.handle_oom(None, now);
                }
            }
            if psi_active {
                self.feed_psi(now);
            }
            if ready[1] || !self.clients.is_empty() {
                self.accept(listener, ready[1]);
            }
            self.engine.host_mut().tick();
            self.flush();
        }
    }

    /// A PSI trigger on the system's memory pressure for the `full`
    /// threshold, so a stall wakes the loop at once (sampling decides).
    fn global_trigger(&self) -> Option<std::fs::File> {
        let pct = self.global_full_avg10?;
        let path = self
            .engine
            .host()
            .config()
            .proc_root
            .join("pressure/memory");
        if !sys::fs_magic(&path).is_ok_and(|m| m == sys::PROC_MAGIC) {
            return None;
        }
        // avg10 above pct% means that share of the time stalled.
        let window = bpfoom_host::pressure::PSI_WINDOW_US;
        let stall_us = (pct / 100.0 * window as f64) as u64;
        match bpfoom_host::pressure::psi_trigger(&path, "full", stall_us, window) {
            Ok(f) => Some(f),
            Err(e) => {
                self.info(&format!(
                    "no PSI trigger on {} ({e}); sampling",
                    path.display()
                ));
                None
            }
        }
    }

    fn apply_rescan(&mut self, r: bpfoom_host::Rescan) {
        for c in r.added {
            self.engine.cgroup_online(c);
        }
        for c in r.removed {
            self.engine.cgroup_offline(c);
            self.attached.retain(|a| a.cgroup != c);
        }
        self.engine.host_mut().forget_gone();
    }

    /// Feeds real stall time to `bpf_psi_ops` triggers; an OOM a handler
    /// declares runs the chain right inside.
    fn feed_psi(&mut self, now: Instant) {
        self.engine.host_mut().begin_oom(now, None);
        let logs = self.psi.sample(&mut self.engine);
        self.engine.host_mut().end_oom();
        for l in logs {
            self.info(&l);
        }
        self.flush();
    }

    /// Runs the chain for every memcg whose OOM the host's monitor says is
    /// due (its hold-off rule: `bpfoom_host::monitor`).
    fn handle_memcg_ooms(&mut self, now: Instant, fired: &[CgroupId]) {
        for cg in self.engine.host_mut().due_ooms(now, fired) {
            self.handle_oom(Some(cg), now);
        }
    }

    fn handle_oom(&mut self, cg: Option<CgroupId>, notified: Instant) {
        self.counters.ooms += 1;
        self.engine.host_mut().begin_oom(notified, cg);
        let outcome = self.engine.out_of_memory(cg);
        self.engine.host_mut().end_oom();
        // The monitor's hold-off follows the outcome (no eligible victim:
        // retried later, the record says why).
        self.engine
            .host_mut()
            .oom_handled(cg, outcome.made_progress());
        self.flush();
    }

    fn flush(&mut self) {
        self.engine.take_records();
        for r in self.engine.host_mut().take_records() {
            match &r.record {
                Record::Kill { .. } => self.counters.kills += 1,
                Record::LimitRaised { .. } => self.counters.limit_raises += 1,
                Record::Handler { ret, .. } if *ret == bpfoom_engine::Verdict::Failed => {
                    self.counters.handler_failures += 1
                }
                Record::Resolved { by } => match by {
                    bpfoom_engine::ResolvedBy::Kernel => self.counters.kernel_fallbacks += 1,
                    bpfoom_engine::ResolvedBy::Backoff => self.counters.resolved_by_backoff += 1,
                    bpfoom_engine::ResolvedBy::Nothing => self.counters.unresolved += 1,
                    bpfoom_engine::ResolvedBy::Policy(_) => self.counters.resolved_by_policy += 1,
                },
                _ => {}
            }
            self.metrics.observe(&r);
            // After the action: the OOM is already handled when hooks start.
            if matches!(r.record, Record::Kill { .. } | Record::LimitRaised { .. }) {
                let json =
                    crate::records::json_line(&r, self.dry_run, std::time::SystemTime::now());
                let event = if matches!(r.record, Record::Kill { .. }) {
                    "kill"
                } else {
                    "limit_raised"
                };
                for l in self.hooks.fire(event, &json) {
                    self.warn(&l);
                }
            }
        }
        for l in self.hooks.reap(Instant::now()) {
            self.warn(&l);
        }
        let host = self.engine.host();
        self.metrics
            .set_state(self.engine.instances().len(), host.watched());
    }

    fn info(&self, msg: &str) {
        self.out.borrow_mut().info(msg);
    }

    fn warn(&self, msg: &str) {
        self.out
            .borrow_mut()
            .log(crate::records::Severity::Warning, msg);
    }

    /// Accepts new connections (a bounded number per wake-up: a flood
    /// cannot starve OOM handling) and serves those whose request line is
    /// complete. Nothing here blocks: a client that connects and sends
    /// nothing only waits in `clients` until its deadline (fault 5).
    fn accept(&mut self, listener: &UnixListener, incoming: bool) {
        let now = Instant::now();
        let mut ready = Vec::new();
        for _ in 0..if incoming { 64 } else { 0 } {
            let Ok((s, _)) = listener.accept() else {
                break;
            };
            let (got, evicted) = self.clients.admit(s, now);
            ready.extend(got);
            if evicted {
                self.counters.rejected_requests += 1;
            }
        }
        ready.extend(self.clients.take_ready(now));
        for got in ready {
            let r = match got {
                Got::Line(s, line) => self.serve_client(&s, &line),
                Got::TooLong(s) => {
                    self.counters.rejected_requests += 1;
                    let e = InputError::RequestTooLong { max: MAX_REQUEST }.into();
                    respond(&s, &Response::err(&e))
                }
            };
            if let Err(e) = r {
                self.info(&format!("control connection: {e}"));
            }
        }
    }

    fn serve_client(&mut self, s: &UnixStream, line: &[u8]) -> std::io::Result<()> {
        let (uid, pid) = sys::peer_cred(s)?;
        let line = String::from_utf8_lossy(line);
        let me = std::fs::metadata("/proc/self")
            .map(|m| m.uid())
            .unwrap_or(0);
        let resp = if uid != 0 && uid != me {
            self.counters.rejected_requests += 1;
            Response::err(&Rejection::PermissionDenied { uid, pid }.into())
        } else {
            let req = serde_json::from_str::<Request>(&line);
            // Looking (status, events, maps) is not a request that changes anything.
            if !matches!(
                req,
                Ok(Request::Status | Request::Events { .. } | Request::Maps { .. })
            ) {
                self.counters.requests += 1;
            }
            let follow = matches!(req, Ok(Request::Events { follow: true }));
            let r = match req {
                Ok(req) => self.request(req),
                Err(e) => Response::err(&InputError::BadRequest(e).into()),
            };
            if follow {
                respond(s, &r)?;
                // From now on every record is written to this client too.
                let f = s.try_clone()?;
                f.set_nonblocking(true)?;
                self.out.borrow_mut().journal.follow(f);
                return Ok(());
            }
            if !r.ok {
                self.counters.rejected_requests += 1;
            }
            r
        };
        respond(s, &resp)
    }

    fn request(&mut self, req: Request) -> Response {
        let r = match req {
            Request::Attach {
                policy,
                cgroup,
                instance,
                options,
            } => {
                let locate = |item: Item<'_>, source: EngineError| {
                    let arg = match item {
                        Item::Global(var) => format!("--set {var}"),
                        Item::Map { index, .. } => {
                            options.maps.get(index).map_or_else(String::new, |m| {
                                m.arg.clone().unwrap_or_else(|| {
                                    format!("map entry {} ({}={})", m.map, m.key, m.value)
                                })
                            })
                        }
                    };
                    InputError::AttachOption {
                        arg,
                        source: Box::new(source),
                    }
                    .into()
                };
                self.attach(&policy, &cgroup, instance.as_deref(), &options, &locate)
                    .map(|name| Response::ok(format!("attached {name} to {cgroup}")))
            }
            Request::Detach { cgroup } => self
                .detach(&cgroup)
                .map(|n| Response::ok(format!("detached {n} from {cgroup}"))),
            Request::Reload => Ok(self.reload_reply()),
            Request::Events { .. } => Ok(Response {
                ok: true,
                events: Some(self.recent_records()),
                ..Default::default()
            }),
            Request::Status => Ok(Response {
                ok: true,
                status: Some(self.status()),
                ..Default::default()
            }),
            Request::Maps { cgroup, instance } => {
                crate::maps::reply(&self.engine, &cgroup, instance.as_deref())
            }
        };
        self.flush();
        r.unwrap_or_else(|e| Response::err(&e))
    }

    fn resolve(&self, cgroup: &str) -> Result<CgroupId, DaemonError> {
        self.engine
            .host()
            .cgroupfs()
            .resolve(cgroup)
            .map_err(|e| InputError::Cgroup(e).into())
    }

    /// Loads, configures, verifies and attaches; returns the instance name.
    fn attach(
        &mut self,
        file: &Path,
        cgroup: &str,
        instance: Option<&str>,
        opts: &AttachOpts,
        locate: &dyn Fn(Item<'_>, EngineError) -> DaemonError,
    ) -> Result<String, DaemonError> {
        self.attach_as(file, cgroup, instance, opts, locate, false)
    }

    /// [`Daemon::attach`]; `from_config`: the instance is a config entry's,
    /// which a reload manages.
    fn attach_as(
        &mut self,
        file: &Path,
        cgroup: &str,
        instance: Option<&str>,
        opts: &AttachOpts,
        locate: &dyn Fn(Item<'_>, EngineError) -> DaemonError,
        from_config: bool,
    ) -> Result<String, DaemonError> {
        let spec = Spec::read(file.to_path_buf(), instance, opts)?;
        let p = self.prepare(&spec, cgroup, locate)?;
        self.install(p, spec.file.clone(), from_config.then_some(spec))
    }

    /// Loads, configures and verifies a policy for `cgroup`; changes nothing.
    fn prepare(
        &self,
        spec: &Spec,
        cgroup: &str,
        locate: &dyn Fn(Item<'_>, EngineError) -> DaemonError,
    ) -> Result<Prepared, DaemonError> {
        let (file, bytes, instance) = (&spec.file, &spec.bytes, spec.instance.as_deref());
        let opts = &spec.opts;
        let cg = self.resolve(cgroup)?;
        let obj = Object::parse(bytes).map_err(|source| InputError::Object {
            file: file.clone(),
            source: Box::new(source),
        })?;
        let mut policy = Policy::open(obj, instance).map_err(|source| InputError::Policy {
            file: file.clone(),
            source: Box::new(source),
        })?;
        // Typed values: laid out from the object's BTF; a string for an
        // integer is a cgroup path of this daemon's hierarchy.
        let cgroupfs = self.engine.host().cgroupfs();
        let mut resolve = |p: &str| cgroupfs.resolve(p).map_err(CgroupLookupError::host);
        for (var, v) in &opts.globals {
            policy
                .set_global_value(var, v, &mut resolve)
                .map_err(|e| locate(Item::Global(var), e))?;
        }
        for (index, m) in opts.maps.iter().enumerate() {
            if let Err(e) = policy.set_map_entry(&m.map, &m.key, &m.value, &mut resolve) {
                let key = matches!(&e, EngineError::Value { source, .. }
                    if source.path().starts_with("key"));
                return Err(locate(Item::Map { index, key }, e));
            }
        }
        policy
            // The contract check, then bpfoom's verifier; its report carries
            // the PROBE_MEM loads the VM must make fault-safe.
            .check(&bpfoom_engine::Verifier::default())
            .map_err(|source| {
                self.metrics.verifier_rejection();
                Rejection::Verifier {
                    file: file.clone(),
                    source: Box::new(source),
                }
            })?;
        let defaults = AttachOptions::default();
        let aopts = AttachOptions {
            backoff_budget: opts.backoff_budget.unwrap_or(defaults.backoff_budget),
            backoff_timeout: opts
                .backoff_timeout_ms
                .map_or(defaults.backoff_timeout, Duration::from_millis),
            limit_reserve: opts.limit_reserve.unwrap_or(defaults.limit_reserve),
        };
        Ok(Prepared {
            policy,
            cgroup: cg,
            opts: aopts,
        })
    }

    /// Attaches a prepared policy and watches its subtree; returns the
    /// instance name.
    fn install(
        &mut self,
        p: Prepared,
        file: PathBuf,
        spec: Option<Spec>,
    ) -> Result<String, DaemonError> {
        let (name, kind, cg) = (p.policy.name().to_string(), p.policy.kind(), p.cgroup);
        self.engine
            .attach(p.policy, cg, p.opts)
            .map_err(|e| Rejection::Attach(Box::new(e)))?;
        self.attached.push(Attached {
            cgroup: cg,
            kind,
            file,
            spec,
        });
        let r = self.engine.host_mut().manage(cg);
        for c in r.added {
            self.engine.cgroup_online(c);
        }
        Ok(name)
    }

    /// Reloads and logs each change (SIGHUP).
    fn reload_logged(&mut self, why: &str) {
        match self.reload() {
            Ok(changes) => {
                self.info(&format!("{why}: reloaded the config"));
                for c in &changes {
                    self.info(&format!("reload: {}", c.line()));
                }
            }
            Err(e) => self.info(&format!("{why}: reload failed, nothing changed: {e}")),
        }
        self.flush();
    }

    /// Reloads for `bpfoom reload`: the changes, and code 1 when an entry
    /// was rejected (the rest is applied).
    fn reload_reply(&mut self) -> Response {
        match self.reload() {
            Ok(changes) => {
                let rejected = changes.iter().any(|c| c.action == Action::Rejected);
                let text: Vec<String> = changes.iter().map(Change::line).collect();
                Response {
                    ok: !rejected,
                    code: u8::from(rejected),
                    message: Some(text.join("\n")),
                    error: rejected.then(|| text.join("\n")),
                    changes: Some(changes),
                    ..Default::default()
                }
            }
            Err(e) => Response::err(&e),
        }
    }

    /// Re-reads the config file and brings its `[[attach]]` entries into
    /// effect (see [`crate::reload`] for the rules). An unreadable or
    /// invalid file changes nothing.
    fn reload(&mut self) -> Result<Vec<Change>, DaemonError> {
        let Some((path, old_cfg)) = self.config.clone() else {
            return Err(InputError::NoConfig.into());
        };
        let cfg = Config::load(&path)?;
        let mut changes = crate::reload::restart_sections(&old_cfg, &cfg);
        // Which config-made instances stay as they are (by index).
        let mut keep = vec![false; self.attached.len()];
        let mut installs: Vec<(Prepared, Spec, String)> = Vec::new();
        for a in &cfg.attach {
            let cgroup = a.cgroup.get_ref();
            let reject = |why: String| Change::new(Action::Rejected, cgroup, None).because(why);
            let cg = match self.resolve(cgroup) {
                Ok(cg) => cg,
                Err(e) => {
                    changes.push(reject(e.to_string()));
                    continue;
                }
            };
            let ours = |x: &Attached| x.cgroup == cg && x.spec.is_some();
            let file = cfg_path(&args_config_dir(), a.policy.get_ref());
            let spec = match Spec::read(file, a.instance.as_deref(), &entry_opts(a)) {
                Ok(s) => s,
                Err(e) => {
                    for (i, x) in self.attached.iter().enumerate() {
                        keep[i] |= ours(x);
                    }
                    changes.push(reject(e.to_string()));
                    continue;
                }
            };
            if let Some(i) = self
                .attached
                .iter()
                .position(|x| ours(x) && x.spec.as_ref() == Some(&spec))
            {
                keep[i] = true;
                let name = self.instance_name(cg, self.attached[i].kind);
                changes.push(Change::new(Action::Unchanged, cgroup, name.as_deref()));
                continue;
            }
            match self.prepare(&spec, cgroup, &entry_locate(&cfg, a)) {
                Ok(p) => installs.push((p, spec, cgroup.clone())),
                Err(e) => {
                    for (i, x) in self.attached.iter().enumerate() {
                        keep[i] |= ours(x);
                    }
                    changes.push(reject(e.to_string()));
                }
            }
        }
        // Everything is verified: swap. Nothing below handles an OOM, and
        // no cgroup of a replaced instance is unwatched.
        for (p, spec, cgroup) in installs {
            let (cg, kind) = (p.cgroup, p.policy.kind());
            let old = self
                .attached
                .iter()
                .position(|x| x.cgroup == cg && x.kind == kind && x.spec.is_some());
            let Some(i) = old else {
                let r = self.install(p, spec.file.clone(), Some(spec));
                keep.push(true);
                changes.push(match r {
                    Ok(name) => Change::new(Action::Attached, &cgroup, Some(&name)),
                    Err(e) => Change::new(Action::Rejected, &cgroup, None).because(e.to_string()),
                });
                continue;
            };
            keep[i] = true;
            let why = self.attached[i]
                .spec
                .as_ref()
                .map(|o| crate::reload::what_changed(o, &spec))
                .unwrap_or_default();
            let _ = self.engine.detach(cg, kind, "replaced by reload");
            let a = self.attached.remove(i);
            keep.remove(i);
            match self.install(p, spec.file.clone(), Some(spec)) {
                Ok(name) => {
                    keep.push(true);
                    changes.push(Change::new(Action::Replaced, &cgroup, Some(&name)).because(why));
                }
                Err(e) => {
                    // Put the old instance back from its own bytes (it was
                    // verified when it was attached).
                    let back = a.spec.clone().ok_or_else(|| e.to_string());
                    let back = back.and_then(|old| {
                        let p = self
                            .prepare(&old, &cgroup, &request_item)
                            .map_err(|e| e.to_string())?;
                        self.install(p, a.file.clone(), Some(old))
                            .map_err(|e| e.to_string())
                    });
                    keep.push(true);
                    let mut c = Change::new(Action::Rejected, &cgroup, None).because(e.to_string());
                    if let Err(b) = back {
                        c.reason =
                            Some(format!("{e}; the old instance could not be restored: {b}"));
                    }
                    changes.push(c);
                }
            }
        }
        // Entries gone from the file.
        let gone: Vec<(CgroupId, OpsKind)> = self
            .attached
            .iter()
            .zip(&keep)
            .filter(|(x, k)| x.spec.is_some() && !**k)
            .map(|(x, _)| (x.cgroup, x.kind))
            .collect();
        for (cg, kind) in gone {
            let name = self.instance_name(cg, kind);
            let path = self.engine.host().path(cg).unwrap_or_default();
            let _ = self
                .engine
                .detach(cg, kind, "removed from the config by reload");
            self.attached
                .retain(|x| !(x.cgroup == cg && x.kind == kind));
            if !self.attached.iter().any(|x| x.cgroup == cg) {
                self.engine.host_mut().unmanage(cg);
            }
            changes.push(Change::new(Action::Detached, &path, name.as_deref()));
        }
        self.config = Some((path, cfg));
        Ok(changes)
    }

    /// The last records as JSON objects, oldest first.
    fn recent_records(&self) -> Vec<serde_json::Value> {
        let out = self.out.borrow();
        out.journal
            .recent()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    fn instance_name(&self, cg: CgroupId, kind: OpsKind) -> Option<String> {
        self.engine
            .instances()
            .into_iter()
            .find(|x| x.cgroup == cg && x.kind == kind)
            .map(|x| x.name)
    }

    fn detach(&mut self, cgroup: &str) -> Result<String, DaemonError> {
        let cg = self.resolve(cgroup)?;
        let Some(i) = self.attached.iter().position(|a| a.cgroup == cg) else {
            return Err(InputError::NotAttached {
                cgroup: cgroup.into(),
            }
            .into());
        };
        let a = self.attached.remove(i);
        let name = self
            .engine
            .instances()
            .into_iter()
            .find(|x| x.cgroup == cg && x.kind == a.kind)
            .map(|x| x.name)
            .unwrap_or_default();
        self.engine
            .detach(cg, a.kind, "detached by request")
            .map_err(|e| InputError::Detach(Box::new(e)))?;
        if !self.attached.iter().any(|x| x.cgroup == cg) {
            self.engine.host_mut().unmanage(cg);
        }
        Ok(name)
    }

    fn status(&self) -> serde_json::Value {
        let host = self.engine.host();
        let files: BTreeMap<(CgroupId, bool), String> = self
            .attached
            .iter()
            .map(|a| {
                (
                    (a.cgroup, a.kind == OpsKind::Oom),
                    a.file.display().to_string(),
                )
            })
            .collect();
        let instances: Vec<serde_json::Value> = self
            .engine
            .instances()
            .into_iter()
            .map(|i| {
                serde_json::json!({
                    "name": i.name,
                    "kind": i.kind.struct_name(),
                    "cgroup": host.path(i.cgroup),
                    "cgroup_id": i.cgroup,
                    "backoff_budget_left": i.backoff_budget_left,
                    "limit_reserve_left": i.limit_reserve_left,
                    "policy_file": files.get(&(i.cgroup, i.kind == OpsKind::Oom)),
                    "counters": self.metrics.instance_counters(&i.name, &host.path(i.cgroup).unwrap_or_default()),
                })
            })
            .collect();
        serde_json::json!({
            "bpfoom": crate::VERSION,
            "pid": std::process::id(),
            "hierarchy": host.cgroupfs().root_dir().display().to_string(),
            "version": format!("{:?}", host.cgroupfs().version()),
            "dry_run": self.dry_run,
            "watched": host.watched(),
            "restore_entries": host.restore_entries().len(),
            "instances": instances,
            "counters": self.counters,
            "started": crate::records::rfc3339(self.started.1),
            "uptime_s": self.started.0.elapsed().as_secs(),
            "last_decisions": self.recent_records(),
        })
    }
}

/// Writes a response without blocking the loop: a client that does not read
/// loses its answer once the socket buffer (far larger than any response)
/// is full.
fn respond(s: &UnixStream, resp: &Response) -> std::io::Result<()> {
    let mut text = serde_json::to_string(resp).unwrap_or_default();
    text.push('\n');
    let mut w = s;
    w.write_all(text.as_bytes())
}

/// Config paths are relative to the working directory (as given on the
/// command line); kept as a function so a config-relative rule can come later.
/// An attach option that can be wrong, for [`Daemon::attach`]'s `locate`.
#[derive(Clone, Copy)]
enum Item<'a> {
    /// A global variable.
    Global(&'a str),
    /// Map entry `index`; `key`: the error is in its key.
    Map { index: usize, key: bool },
}

/// A config entry's options as an attach request carries them.
fn entry_opts(a: &AttachSection) -> AttachOpts {
    AttachOpts {
        backoff_budget: a.backoff_budget,
        backoff_timeout_ms: a.backoff_timeout_ms,
        limit_reserve: a.limit_reserve.map(|s| s.0),
        globals: a
            .globals
            .iter()
            .map(|(k, v)| (k.clone(), v.get_ref().clone()))
            .collect(),
        maps: a
            .maps
            .iter()
            .map(|m| {
                let m = m.get_ref();
                control::MapEntry {
                    map: m.map.clone(),
                    key: m.key.get_ref().clone(),
                    value: m.value.get_ref().clone(),
                    arg: None,
                }
            })
            .collect(),
    }
}

/// Locates a config entry's bad value: the error names the line of the
/// value (or key) in the configuration file.
fn entry_locate<'a>(
    cfg: &'a Config,
    a: &'a AttachSection,
) -> impl Fn(Item<'_>, EngineError) -> DaemonError + 'a {
    move |item: Item<'_>, e: EngineError| {
        let span = match item {
            Item::Global(var) => a.globals.get(var).map(|v| v.span()),
            Item::Map { index, key: true } => a.maps.get(index).map(|m| m.get_ref().key.span()),
            Item::Map { index, key: false } => a.maps.get(index).map(|m| m.get_ref().value.span()),
        };
        DaemonError::Config(cfg.error_at(span.map_or(0, |s| s.start), e.to_string()))
    }
}

/// Locates errors of a request's options by the client's arguments (the
/// `--attach` command line has none).
fn request_item(item: Item<'_>, source: EngineError) -> DaemonError {
    let arg = match item {
        Item::Global(var) => format!("--set {var}"),
        Item::Map { index, .. } => format!("map entry {index}"),
    };
    InputError::AttachOption {
        arg,
        source: Box::new(source),
    }
    .into()
}

fn args_config_dir() -> PathBuf {
    PathBuf::new()
}

fn cfg_path(base: &Path, p: &Path) -> PathBuf {
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        base.join(p)
    }
}
