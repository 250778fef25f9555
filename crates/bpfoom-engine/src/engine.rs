//! Instances, the handler chain, BACKOFF, PSI triggers and cgroup lifecycle.

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use bpfoom_obj::{MapKind as ObjMapKind, Object};
use bpfoom_vm::{LoadOptions, MapKind, MapSpec, ProgId, Vm, VmError};

use crate::host::{ancestors, is_within, CgroupId, Host, KernelOom, Pid};
use crate::kfuncs::{Kctx, OomRun, PsiRun};
use crate::objects::{put, Key, Layout};
use crate::record::{Constraint, Record, Verdict};
use crate::{AttachOptions, EngineConfig, EngineError, OpsKind, Policy};

/// Engine-wide mutable state shared by every run.
#[derive(Default)]
pub(crate) struct State {
    /// Processes killed by a policy or the kernel, until they are gone.
    pub victims: BTreeMap<Pid, CgroupId>,
    /// Every record so far (also passed to [`Host::record`]).
    pub records: Vec<Record>,
    /// References and iterators programs failed to release, in total.
    pub leaked_refs: u64,
}

impl State {
    pub(crate) fn emit<H: Host + ?Sized>(&mut self, host: &mut H, r: Record) {
        host.record(&r);
        self.records.push(r);
    }
}

/// An OOM event to handle.
pub(crate) struct OomRequest {
    pub memcg: Option<CgroupId>,
    pub constraint: Constraint,
    pub text: Option<String>,
    pub order: i32,
}

/// How an OOM event ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OomOutcome {
    /// A policy's handler freed memory.
    Policy(String),
    /// A honoured BACKOFF was followed by the OOM going away.
    Backoff,
    /// The kernel's OOM killer killed these processes.
    Kernel(Vec<Pid>),
    /// The kernel's OOM killer waited for an earlier victim, or acted on a
    /// real host without telling whom it killed.
    KernelOther,
    /// Nothing could be done: no eligible victim.
    Nothing,
}

impl OomOutcome {
    /// True unless nothing could be done.
    pub fn made_progress(&self) -> bool {
        !matches!(self, OomOutcome::Nothing)
    }
}

/// An attached `bpf_oom_ops` instance.
pub(crate) struct OomInstance {
    pub name: String,
    pub attach: CgroupId,
    vm: Vm,
    handle_oom: ProgId,
    offline: Option<ProgId>,
    budget: AtomicU32,
    opts: AttachOptions,
    reserve_left: u64,
}

/// A PSI trigger created by `bpf_psi_create_trigger`.
pub(crate) struct Trigger {
    cg: CgroupId,
    /// The id the program passed (0 for system-wide), echoed in `t->cgroup_id`.
    id_arg: u64,
    resource: u32,
    full: bool,
    threshold_us: u64,
    window_us: u64,
    samples: VecDeque<(Duration, u64)>,
    last_fire: Option<Duration>,
}

impl Trigger {
    pub(crate) fn new(
        cg: CgroupId,
        id_arg: u64,
        resource: u32,
        full: bool,
        threshold_us: u64,
        window_us: u64,
    ) -> Self {
        Self {
            cg,
            id_arg,
            resource,
            full,
            threshold_us,
            window_us,
            samples: VecDeque::new(),
            last_fire: None,
        }
    }

    /// Adds a stall sample; true when the trigger fires. Like the kernel's
    /// PSI triggers: fires when the stall within the last window reaches the
    /// threshold, at most once per window.
    fn add(&mut self, now: Duration, stall_us: u64) -> bool {
        let win = Duration::from_micros(self.window_us);
        self.samples.push_back((now, stall_us));
        while self
            .samples
            .front()
            .is_some_and(|&(t, _)| now.saturating_sub(t) >= win)
        {
            self.samples.pop_front();
        }
        let total: u64 = self.samples.iter().map(|s| s.1).sum();
        let rested = self.last_fire.is_none_or(|l| now.saturating_sub(l) >= win);
        if total >= self.threshold_us && rested {
            self.last_fire = Some(now);
            return true;
        }
        false
    }
}

/// An attached `bpf_psi_ops` instance.
pub(crate) struct PsiInstance {
    name: String,
    attach: CgroupId,
    vm: Vm,
    progs: [Option<ProgId>; 4],
    triggers: Vec<Trigger>,
}

const PSI_INIT: usize = 0;
const PSI_EVENT: usize = 1;
const PSI_ONLINE: usize = 2;
const PSI_OFFLINE: usize = 3;
const PSI_CALLBACKS: [&str; 4] = [
    "init",
    "handle_psi_event",
    "handle_cgroup_online",
    "handle_cgroup_offline",
];

/// The BPF OOM engine over a host.
pub struct Engine<H: Host> {
    host: H,
    cfg: EngineConfig,
    oom: Vec<OomInstance>,
    psi: Vec<PsiInstance>,
    st: State,
}

fn vm_for(policy: &Policy) -> Result<Vm, EngineError> {
    let obj: &Object = &policy.object;
    let specs = obj
        .maps
        .iter()
        .map(|m| MapSpec {
            name: m.name.clone(),
            kind: match (m.kind, m.initial.is_some()) {
                (_, true) => MapKind::GlobalData,
                (ObjMapKind::Hash, _) => MapKind::Hash,
                (ObjMapKind::Array, _) => MapKind::Array,
                (ObjMapKind::PercpuArray, _) => MapKind::PercpuArray,
                (ObjMapKind::LruHash, _) => MapKind::LruHash,
                (ObjMapKind::Ringbuf, _) => MapKind::RingBuf,
            },
            key_size: m.key_size,
            value_size: m.value_size,
            max_entries: m.max_entries,
            initial_data: m.initial.clone().unwrap_or_default(),
            frozen: m.readonly,
        })
        .collect();
    let vm_err = |reason: String| EngineError::Vm {
        policy: policy.name.clone(),
        reason,
    };
    let mut vm = Vm::new(specs).map_err(|e| vm_err(e.to_string()))?;
    for (idx, key, value) in &policy.preload {
        let map = vm
            .map_mut(*idx)
            .ok_or_else(|| vm_err(format!("no map {idx}")))?;
        map.update(key, value, bpfoom_vm::BPF_ANY)
            .map_err(|e| vm_err(e.to_string()))?;
    }
    // Deterministic prandom: simulated runs must be reproducible.
    vm.env_mut().seed_random(0x5eed);
    Ok(vm)
}

fn load_prog(vm: &mut Vm, policy: &Policy, member: &str) -> Result<Option<ProgId>, EngineError> {
    let Some(idx) = policy.callback(member) else {
        return Ok(None);
    };
    let prog = &policy.object.programs[idx];
    let opts = LoadOptions {
        probe_mem: policy
            .report
            .probe_mem
            .get(&idx)
            .cloned()
            .unwrap_or_default(),
    };
    vm.load_with(&prog.insns, &opts)
        .map(Some)
        .map_err(|e| EngineError::Vm {
            policy: policy.name.clone(),
            reason: format!("{}: {e}", prog.name),
        })
}

/// Runs one program; `Err` carries why it counts as failed.
fn run_prog<H: Host + ?Sized>(
    vm: &mut Vm,
    prog: ProgId,
    k: &mut Kctx<'_, H>,
    ctx: &[u64],
) -> Result<u64, String> {
    vm.set_budget(k.cfg.insn_budget);
    let start = Instant::now();
    let r = vm.run(prog, ctx, k);
    let elapsed = start.elapsed();
    k.flush_trace(vm.env_mut());
    match r {
        Err(VmError::Budget { budget, pc }) => Err(format!(
            "instruction budget of {budget} exhausted at instruction {pc}"
        )),
        Err(e) => Err(format!("program fault: {e}")),
        Ok(_) if elapsed > k.cfg.time_limit => Err(format!(
            "wall-clock limit of {:?} exceeded ({:?})",
            k.cfg.time_limit, elapsed
        )),
        Ok(v) => Ok(v),
    }
}

/// Ends a run: reports leaks as an error record.
fn finish_run<H: Host + ?Sized>(vm: &mut Vm, k: &mut Kctx<'_, H>) {
    if let Some(problem) = k.finish(vm.env_mut()) {
        let policy = k.policy.to_string();
        k.st.emit(
            &mut *k.host,
            Record::Error {
                policy,
                message: problem,
            },
        );
    }
}

impl OomInstance {
    fn take_budget(&self) -> Option<u32> {
        self.budget
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |b| b.checked_sub(1))
            .ok()
            .map(|b| b - 1)
    }

    fn refill(&self) {
        self.budget
            .store(self.opts.backoff_budget, Ordering::SeqCst);
    }

    /// Runs `handle_out_of_memory`; returns the program's result,
    /// `oc->bpf_memory_freed` and the instructions it executed.
    fn call<H: Host + ?Sized>(
        &mut self,
        host: &mut H,
        st: &mut State,
        cfg: &EngineConfig,
        req: &OomRequest,
        totalpages: u64,
    ) -> (Result<u64, String>, bool, u64) {
        let l = Layout::get();
        let OomInstance {
            name,
            attach,
            vm,
            handle_oom,
            reserve_left,
            ..
        } = self;
        let mut k = Kctx::new(host, st, cfg, name, *attach, reserve_left);
        let env = vm.env_mut();
        let memcg = req.memcg.map_or(0, |c| k.addr_of(Key::Memcg(c), env));
        let mut handler_name = name.as_bytes().to_vec();
        handler_name.push(0);
        let (_, _, name_addr) = k.objs.add_other(env.memory(), &handler_name);
        let mut oc = vec![0u8; l.oc_size];
        put(&mut oc, l.off("oom_control", "memcg"), 8, memcg);
        // GFP_KERNEL: what a user-space page fault allocates with.
        put(&mut oc, l.off("oom_control", "gfp_mask"), 4, 0xcc0);
        put(
            &mut oc,
            l.off("oom_control", "order"),
            4,
            req.order as u32 as u64,
        );
        put(&mut oc, l.off("oom_control", "totalpages"), 8, totalpages);
        let constraint = if req.memcg.is_some() { 3 } else { 0 };
        put(&mut oc, l.off("oom_control", "constraint"), 4, constraint);
        put(
            &mut oc,
            l.off("oom_control", "bpf_handler_name"),
            8,
            name_addr,
        );
        let (_, oc_id, oc_addr) = k.objs.add_other(env.memory(), &oc);
        let cgrp = k.addr_of(Key::Cgroup(*attach), env);
        k.oom = Some(OomRun {
            oc: oc_id,
            oc_addr,
            scope: req.memcg,
        });
        let r = run_prog(vm, *handle_oom, &mut k, &[oc_addr, cgrp]);
        let insns = vm.last_run_insns();
        let freed = vm
            .env_mut()
            .memory()
            .object(oc_id)
            .and_then(|b| b.get(l.off("oom_control", "bpf_memory_freed")).copied())
            .is_some_and(|b| b != 0);
        finish_run(vm, &mut k);
        (r, freed, insns)
    }

    fn call_offline<H: Host + ?Sized>(
        &mut self,
        host: &mut H,
        st: &mut State,
        cfg: &EngineConfig,
        cg: CgroupId,
    ) {
        let Some(prog) = self.offline else { return };
        let OomInstance {
            name,
            attach,
            vm,
            reserve_left,
            ..
        } = self;
        let mut k = Kctx::new(host, st, cfg, name, *attach, reserve_left);
        let addr = k.addr_of(Key::Cgroup(cg), vm.env_mut());
        if let Err(e) = run_prog(vm, prog, &mut k, &[addr, cg]) {
            let policy = name.clone();
            k.st.emit(&mut *k.host, Record::Error { policy, message: e });
        }
        finish_run(vm, &mut k);
        let policy = name.clone();
        let cgroup = host.path(cg).unwrap_or_else(|| format!("#{cg}"));
        st.emit(host, Record::Offline { policy, cgroup });
    }
}

fn path_of<H: Host + ?Sized>(host: &H, cg: CgroupId) -> String {
    host.path(cg).unwrap_or_else(|| format!("#{cg}"))
}

/// True when a victim of an earlier kill is still exiting inside `scope`.
fn victim_exiting<H: Host + ?Sized>(host: &H, st: &mut State, scope: Option<CgroupId>) -> bool {
    st.victims.retain(|&pid, _| host.task(pid).is_some());
    st.victims.iter().any(|(&pid, _)| {
        host.task(pid)
            .is_some_and(|t| scope.is_none_or(|s| is_within(host, t.cgroup, s)))
    })
}

/// Runs the chain for one OOM event, then the fallback if no handler
/// succeeded.
pub(crate) fn run_chain<H: Host + ?Sized>(
    host: &mut H,
    st: &mut State,
    cfg: &EngineConfig,
    oom: &mut [OomInstance],
    req: &OomRequest,
) -> OomOutcome {
    let total = host.total_pages();
    let totalpages = req
        .memcg
        .and_then(|c| host.memcg(c)?.limit)
        .map_or(total, |l| (l / host.page_size()).min(total));
    let start = req.memcg.unwrap_or_else(|| host.root());
    st.emit(
        host,
        Record::Oom {
            memcg: req.memcg.map(|c| path_of(host, c)),
            constraint: req.constraint,
            text: req.text.clone(),
            totalpages,
        },
    );
    let chain: Vec<usize> = ancestors(host, start)
        .into_iter()
        .filter_map(|cg| oom.iter().position(|i| i.attach == cg))
        .collect();
    let refill = |oom: &[OomInstance]| chain.iter().for_each(|&i| oom[i].refill());
    let mut victim_waits = 0;
    // Every re-run follows a honoured BACKOFF, which spends budget or a
    // bounded victim wait; the cap is a second line of defence.
    let max_rounds = cfg.max_victim_waits as usize
        + chain
            .iter()
            .map(|&i| oom[i].opts.backoff_budget as usize)
            .sum::<usize>()
        + 1;
    'rounds: for _ in 0..max_rounds {
        for &i in &chain {
            let inst = &mut oom[i];
            let (r, freed, insns) = inst.call(host, st, cfg, req, totalpages);
            let policy = inst.name.clone();
            let cgroup = path_of(host, inst.attach);
            let handler = |ret, reason: Option<String>| Record::Handler {
                policy: policy.clone(),
                cgroup: cgroup.clone(),
                ret,
                memory_freed: freed,
                insns: Some(insns),
                reason,
            };
            match r {
                Ok(1) if freed => {
                    st.emit(host, handler(Verdict::Processed, None));
                    refill(oom);
                    st.emit(
                        host,
                        Record::Resolved {
                            by: format!("policy:{policy}"),
                        },
                    );
                    return OomOutcome::Policy(policy);
                }
                Ok(1) => st.emit(
                    host,
                    handler(
                        Verdict::Failed,
                        Some("returned PROCESSED without freeing memory".into()),
                    ),
                ),
                Ok(2) => {
                    let exiting =
                        victim_waits < cfg.max_victim_waits && victim_exiting(host, st, req.memcg);
                    let (honoured, reason) = if exiting {
                        victim_waits += 1;
                        (true, "an OOM victim is still exiting".to_string())
                    } else if let Some(left) = inst.take_budget() {
                        (true, format!("backoff budget: {left} left"))
                    } else {
                        (false, "backoff budget spent".to_string())
                    };
                    let budget_left = inst.budget.load(Ordering::SeqCst);
                    let timeout = inst.opts.backoff_timeout;
                    let verdict = if honoured {
                        Verdict::Backoff
                    } else {
                        Verdict::Failed
                    };
                    let why = (!honoured).then(|| reason.clone());
                    st.emit(host, handler(verdict, why));
                    st.emit(
                        host,
                        Record::Backoff {
                            policy: policy.clone(),
                            honoured,
                            reason,
                            budget_left,
                        },
                    );
                    if honoured {
                        if host.wait_for_release(req.memcg, timeout) {
                            refill(oom);
                        }
                        if host.oom_resolved(req.memcg) {
                            st.emit(
                                host,
                                Record::Resolved {
                                    by: "backoff".into(),
                                },
                            );
                            return OomOutcome::Backoff;
                        }
                        continue 'rounds;
                    }
                }
                Ok(0) => st.emit(host, handler(Verdict::Failed, None)),
                Ok(n) => st.emit(
                    host,
                    handler(
                        Verdict::Failed,
                        Some(format!("return value {n} out of range")),
                    ),
                ),
                Err(e) => st.emit(host, handler(Verdict::Failed, Some(e))),
            }
        }
        break;
    }
    let reason = if chain.is_empty() {
        "no bpf_oom_ops instance in the chain"
    } else {
        "no handler freed memory"
    };
    st.emit(
        host,
        Record::Fallback {
            reason: reason.into(),
        },
    );
    let outcome = match host.kernel_oom(req.memcg, totalpages) {
        KernelOom::Killed(tasks) => {
            let mut pids = Vec::new();
            for t in tasks {
                st.victims.insert(t.pid, t.cgroup);
                let cgroup = path_of(host, t.cgroup);
                st.emit(
                    host,
                    Record::Kill {
                        pid: t.pid,
                        comm: t.comm,
                        cgroup,
                        by: "kernel".into(),
                        message: "Out of memory (oom_badness)".into(),
                    },
                );
                pids.push(t.pid);
            }
            refill(oom);
            OomOutcome::Kernel(pids)
        }
        KernelOom::WaitedForVictim | KernelOom::Delegated => OomOutcome::KernelOther,
        KernelOom::NoVictim => OomOutcome::Nothing,
    };
    let by = if outcome.made_progress() {
        "kernel"
    } else {
        "none"
    };
    st.emit(host, Record::Resolved { by: by.into() });
    outcome
}

impl PsiInstance {
    /// Runs one of the PSI callbacks with `arg` as its second argument.
    fn call<H: Host + ?Sized>(
        &mut self,
        which: usize,
        host: &mut H,
        st: &mut State,
        cfg: &EngineConfig,
        chain: &mut [OomInstance],
        arg: PsiArg,
    ) -> Option<Result<u64, String>> {
        let prog = self.progs[which]?;
        let l = Layout::get();
        let PsiInstance {
            name,
            attach,
            vm,
            triggers,
            ..
        } = self;
        let mut no_reserve = 0;
        let mut k = Kctx::new(host, st, cfg, name, *attach, &mut no_reserve);
        let env = vm.env_mut();
        let mut psi = vec![0u8; l.psi_size];
        put(&mut psi, l.off("bpf_psi", "cgroup_id"), 8, *attach);
        let (_, _, psi_addr) = k.objs.add_other(env.memory(), &psi);
        let second = match arg {
            PsiArg::None => 0,
            PsiArg::Cgroup(cg) => cg,
            PsiArg::Trigger(t) => {
                let t = &triggers[t];
                let mut b = vec![0u8; l.trigger_size];
                // enum psi_states: SOME/FULL pairs per resource, in psi_res order.
                let state = u64::from(t.resource) * 2 + u64::from(t.full);
                put(&mut b, l.off("psi_trigger", "state"), 4, state);
                put(
                    &mut b,
                    l.off("psi_trigger", "threshold"),
                    8,
                    t.threshold_us * 1000,
                );
                put(&mut b, l.off("psi_trigger", "win"), 8, t.window_us * 1000);
                put(&mut b, l.off("psi_trigger", "cgroup_id"), 8, t.id_arg);
                k.objs.add_other(env.memory(), &b).2
            }
        };
        k.psi = Some(PsiRun {
            psi_addr,
            triggers,
            chain,
        });
        let r = run_prog(vm, prog, &mut k, &[psi_addr, second]);
        finish_run(vm, &mut k);
        Some(r)
    }
}

#[derive(Clone, Copy)]
enum PsiArg {
    None,
    Cgroup(CgroupId),
    Trigger(usize),
}

impl<H: Host> Engine<H> {
    /// An engine with no instances.
    pub fn new(host: H, cfg: EngineConfig) -> Self {
        Self {
            host,
            cfg,
            oom: Vec::new(),
            psi: Vec::new(),
            st: State::default(),
        }
    }

    /// The host.
    pub fn host(&self) -> &H {
        &self.host
    }

    /// The host, mutable (the simulator changes it between events).
    pub fn host_mut(&mut self) -> &mut H {
        &mut self.host
    }

    /// The configuration.
    pub fn config(&self) -> &EngineConfig {
        &self.cfg
    }

    /// Records emitted since the last call.
    pub fn take_records(&mut self) -> Vec<Record> {
        std::mem::take(&mut self.st.records)
    }

    /// Adds a record of the embedder's own (passed to [`Host::record`] too).
    pub fn emit(&mut self, r: Record) {
        self.st.emit(&mut self.host, r);
    }

    /// References and iterators that programs acquired and never released,
    /// over the engine's lifetime. Zero for a correct policy.
    pub fn leaked_refs(&self) -> u64 {
        self.st.leaked_refs
    }

    /// Whether `pid` is an OOM victim that has not exited yet.
    pub fn is_victim(&self, pid: Pid) -> bool {
        self.st.victims.contains_key(&pid) && self.host.task(pid).is_some()
    }

    /// Attached instances.
    pub fn instances(&self) -> Vec<crate::InstanceInfo> {
        let oom = self.oom.iter().map(|i| crate::InstanceInfo {
            name: i.name.clone(),
            kind: OpsKind::Oom,
            cgroup: i.attach,
            backoff_budget_left: i.budget.load(Ordering::SeqCst),
            limit_reserve_left: i.reserve_left,
        });
        let psi = self.psi.iter().map(|i| crate::InstanceInfo {
            name: i.name.clone(),
            kind: OpsKind::Psi,
            cgroup: i.attach,
            backoff_budget_left: 0,
            limit_reserve_left: 0,
        });
        oom.chain(psi).collect()
    }

    /// Attaches a loaded, verified policy at `cgroup` (the root for a
    /// system-wide instance). A `bpf_psi_ops` policy's `init` runs now and
    /// must return 0.
    pub fn attach(
        &mut self,
        policy: Policy,
        cgroup: CgroupId,
        opts: AttachOptions,
    ) -> Result<(), EngineError> {
        if !policy.is_checked() {
            return Err(EngineError::NotChecked(policy.name));
        }
        let path = self
            .host
            .path(cgroup)
            .ok_or_else(|| EngineError::NoSuchCgroup(format!("#{cgroup}")))?;
        let holder = match policy.kind {
            OpsKind::Oom => self
                .oom
                .iter()
                .find(|i| i.attach == cgroup)
                .map(|i| i.name.clone()),
            OpsKind::Psi => self
                .psi
                .iter()
                .find(|i| i.attach == cgroup)
                .map(|i| i.name.clone()),
        };
        if let Some(holder) = holder {
            return Err(EngineError::AlreadyAttached {
                cgroup: path,
                holder,
                policy: policy.name,
            });
        }
        let mut vm = vm_for(&policy)?;
        match policy.kind {
            OpsKind::Oom => {
                let handle_oom =
                    load_prog(&mut vm, &policy, "handle_out_of_memory")?.ok_or_else(|| {
                        EngineError::MissingCallback {
                            policy: policy.name.clone(),
                            callback: "handle_out_of_memory",
                        }
                    })?;
                let offline = load_prog(&mut vm, &policy, "handle_cgroup_offline")?;
                self.oom.push(OomInstance {
                    name: policy.name.clone(),
                    attach: cgroup,
                    vm,
                    handle_oom,
                    offline,
                    budget: AtomicU32::new(opts.backoff_budget),
                    reserve_left: opts.limit_reserve,
                    opts,
                });
            }
            OpsKind::Psi => {
                let mut progs = [None; 4];
                for (slot, member) in progs.iter_mut().zip(PSI_CALLBACKS) {
                    *slot = load_prog(&mut vm, &policy, member)?;
                }
                let mut inst = PsiInstance {
                    name: policy.name.clone(),
                    attach: cgroup,
                    vm,
                    progs,
                    triggers: Vec::new(),
                };
                let r = inst.call(
                    PSI_INIT,
                    &mut self.host,
                    &mut self.st,
                    &self.cfg,
                    &mut self.oom,
                    PsiArg::None,
                );
                match r {
                    Some(Ok(0)) => {}
                    Some(Ok(v)) => {
                        return Err(EngineError::InitFailed {
                            policy: policy.name,
                            reason: format!("init returned {}", v as i32),
                        })
                    }
                    Some(Err(reason)) => {
                        return Err(EngineError::InitFailed {
                            policy: policy.name,
                            reason,
                        })
                    }
                    None => {
                        return Err(EngineError::MissingCallback {
                            policy: policy.name,
                            callback: "init",
                        })
                    }
                }
                self.psi.push(inst);
            }
        }
        self.emit(Record::Attach {
            policy: policy.name,
            kind: policy.kind.struct_name().into(),
            cgroup: path,
        });
        Ok(())
    }

    /// Detaches the instance of `kind` attached at `cgroup`.
    pub fn detach(
        &mut self,
        cgroup: CgroupId,
        kind: OpsKind,
        reason: &str,
    ) -> Result<(), EngineError> {
        let name = match kind {
            OpsKind::Oom => {
                let i = self.oom.iter().position(|i| i.attach == cgroup);
                i.map(|i| self.oom.remove(i).name)
            }
            OpsKind::Psi => {
                let i = self.psi.iter().position(|i| i.attach == cgroup);
                i.map(|i| self.psi.remove(i).name)
            }
        };
        let cg = path_of(&self.host, cgroup);
        let name = name.ok_or_else(|| EngineError::NotAttached(cg.clone()))?;
        self.emit(Record::Detach {
            policy: name,
            cgroup: cg,
            reason: reason.into(),
        });
        Ok(())
    }

    /// Handles an OOM in `memcg` (`None`: a global OOM).
    pub fn out_of_memory(&mut self, memcg: Option<CgroupId>) -> OomOutcome {
        let req = OomRequest {
            memcg,
            constraint: if memcg.is_some() {
                Constraint::Memcg
            } else {
                Constraint::None
            },
            text: None,
            order: 0,
        };
        run_chain(&mut self.host, &mut self.st, &self.cfg, &mut self.oom, &req)
    }

    /// A new cgroup appeared: PSI instances above it hear about it.
    pub fn cgroup_online(&mut self, cg: CgroupId) {
        for inst in &mut self.psi {
            if is_within(&self.host, cg, inst.attach) {
                inst.call(
                    PSI_ONLINE,
                    &mut self.host,
                    &mut self.st,
                    &self.cfg,
                    &mut self.oom,
                    PsiArg::Cgroup(cg),
                );
            }
        }
    }

    /// A cgroup is going away. Call it while the host still knows the
    /// cgroup (its path is then in the records). Instances attached to it
    /// are detached; instances above it run their offline handlers, and PSI
    /// triggers on it are destroyed after.
    pub fn cgroup_offline(&mut self, cg: CgroupId) {
        for i in 0..self.oom.len() {
            if self.oom[i].attach != cg && is_within(&self.host, cg, self.oom[i].attach) {
                self.oom[i].call_offline(&mut self.host, &mut self.st, &self.cfg, cg);
            }
        }
        for i in 0..self.psi.len() {
            if self.psi[i].attach != cg && is_within(&self.host, cg, self.psi[i].attach) {
                let Engine {
                    host,
                    st,
                    cfg,
                    oom,
                    psi,
                } = self;
                if psi[i]
                    .call(PSI_OFFLINE, host, st, cfg, oom, PsiArg::Cgroup(cg))
                    .is_some()
                {
                    let policy = psi[i].name.clone();
                    let cgroup = path_of(host, cg);
                    st.emit(host, Record::Offline { policy, cgroup });
                }
                psi[i].triggers.retain(|t| t.cg != cg);
            }
        }
        for kind in [OpsKind::Oom, OpsKind::Psi] {
            // Only the instance attached here, if any, can be detached.
            let _ = self.detach(cg, kind, "cgroup removed");
        }
    }

    /// Memory stall time observed in `cg` (it counts for every ancestor, as
    /// PSI does). Fires the PSI triggers whose threshold is reached and
    /// runs their policies' `handle_psi_event`.
    pub fn psi_stall(&mut self, cg: CgroupId, some: Duration, full: Duration) {
        // Only memory stalls are modelled here: resource PSI_MEM (1).
        self.feed_psi(|h, t| t.resource == 1 && is_within(h, cg, t.cg), some, full);
    }

    /// The `(cgroup, resource)` pairs the attached policies' PSI triggers
    /// watch, without duplicates (resource in Linux's `psi_res` order: 0 io,
    /// 1 memory, 2 cpu): what a host must sample for [`Engine::psi_pressure`].
    pub fn psi_sources(&self) -> Vec<(CgroupId, u32)> {
        let mut v: Vec<(CgroupId, u32)> = self
            .psi
            .iter()
            .flat_map(|i| i.triggers.iter().map(|t| (t.cg, t.resource)))
            .collect();
        v.sort_unstable();
        v.dedup();
        v
    }

    /// Stall time of `resource` measured for `cg` as a whole (already
    /// hierarchical, like cgroup v2's `*.pressure` files and
    /// /proc/pressure/*): feeds only the triggers created on exactly that
    /// cgroup and resource, so no stall is counted twice.
    pub fn psi_pressure(&mut self, cg: CgroupId, resource: u32, some: Duration, full: Duration) {
        self.feed_psi(|_, t| t.resource == resource && t.cg == cg, some, full);
    }

    fn feed_psi(&mut self, pick: impl Fn(&H, &Trigger) -> bool, some: Duration, full: Duration) {
        let now = self.host.now();
        let mut fired = Vec::new();
        for (i, inst) in self.psi.iter_mut().enumerate() {
            for (j, t) in inst.triggers.iter_mut().enumerate() {
                let stall = if t.full { full } else { some };
                if stall.is_zero() || !pick(&self.host, t) {
                    continue;
                }
                if t.add(now, stall.as_micros() as u64) {
                    fired.push((i, j));
                }
            }
        }
        for (i, j) in fired {
            let Engine {
                host,
                st,
                cfg,
                oom,
                psi,
            } = self;
            let policy = psi[i].name.clone();
            let cgroup = path_of(host, psi[i].triggers[j].cg);
            st.emit(
                host,
                Record::PsiEvent {
                    policy: policy.clone(),
                    cgroup,
                },
            );
            if let Some(Err(e)) = psi[i].call(PSI_EVENT, host, st, cfg, oom, PsiArg::Trigger(j)) {
                st.emit(host, Record::Error { policy, message: e });
            }
        }
    }
}
