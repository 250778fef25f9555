//! The engine: attaching instances, PSI instances and triggers, cgroup
//! lifecycle; the handler chain itself is in [`crate::chain`].

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bpfoom_obj::{Form, Object};
use bpfoom_vm::{LoadOptions, MapSpec, ProgId, Vm};

use crate::chain::{finish_run, path_of, run_chain, run_prog, OomInstance, OomOutcome, RunFailure};
use crate::dump::{dump_vm, InstanceMaps, MapTypes};
use crate::host::{is_within, CgroupId, Host, Pid};
use crate::kfuncs::{Kctx, PsiRun};
use crate::objects::{put, Layout};
use crate::record::{Constraint, Record};
use crate::state::{OomRequest, State, Trigger};
use crate::{AttachOptions, EngineConfig, EngineError, InitFailure, OpsKind, Policy, VmBackend};

/// An attached `bpf_psi_ops` instance.
pub(crate) struct PsiInstance {
    name: String,
    attach: CgroupId,
    vm: Vm,
    progs: [Option<ProgId>; 4],
    triggers: Vec<Trigger>,
    types: Arc<MapTypes>,
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

fn vm_for(policy: &Policy, backend: VmBackend) -> Result<Vm, EngineError> {
    let obj: &Object = &policy.object;
    let specs = obj
        .maps
        .iter()
        .map(|m| MapSpec {
            name: m.name.clone(),
            kind: m.kind,
            key_size: m.key_size,
            value_size: m.value_size,
            max_entries: m.max_entries,
            initial_data: m.initial.clone().unwrap_or_default(),
            frozen: m.readonly,
        })
        .collect();
    let maps_err = |source| EngineError::Maps {
        policy: policy.name.clone(),
        source,
    };
    let mut vm = Vm::new(specs).map_err(maps_err)?;
    for (idx, key, value) in &policy.preload {
        let map = vm.map_mut(*idx).ok_or_else(|| EngineError::NoMap {
            policy: policy.name.clone(),
            map: idx.to_string(),
        })?;
        map.update(key, value, bpfoom_vm::BPF_ANY)
            .map_err(maps_err)?;
    }
    // Deterministic prandom: simulated runs must be reproducible.
    vm.env_mut().seed_random(0x5eed);
    #[cfg(feature = "jit")]
    if backend == VmBackend::Jit {
        vm.set_backend(bpfoom_vm::ExecBackend::Jit);
    }
    #[cfg(not(feature = "jit"))]
    let _ = backend;
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
    let loaded = vm.load_with(&prog.insns, &opts);
    // A program the JIT cannot compile runs on the interpreter: same
    // semantics, only slower. Other load errors are the program's.
    #[cfg(feature = "jit")]
    let loaded = match loaded {
        Err(e) if matches!(e.kind, bpfoom_vm::LoadErrorKind::Jit(_)) => {
            vm.set_backend(bpfoom_vm::ExecBackend::Interpreter);
            let r = vm.load_with(&prog.insns, &opts);
            vm.set_backend(bpfoom_vm::ExecBackend::Jit);
            r
        }
        r => r,
    };
    loaded.map(Some).map_err(|source| EngineError::Load {
        policy: policy.name.clone(),
        program: prog.name.clone(),
        source,
    })
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
    ) -> Option<Result<u64, RunFailure>> {
        let prog = self.progs[which]?;
        let l = Layout::get();
        let PsiInstance {
            name,
            attach,
            vm,
            triggers,
            ..
        } = self;
        // bpf_out_of_memory re-enters the chain through this callback.
        let mut reenter = |host: &mut H, st: &mut State, req: &OomRequest| {
            run_chain(host, st, cfg, chain, req).made_progress()
        };
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
            reenter: &mut reenter,
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

    /// The maps of the instances attached at `cgroup` (both kinds, or the
    /// one named `instance`), decoded by each object's BTF ([`crate::dump`]).
    pub fn maps(
        &self,
        cgroup: CgroupId,
        instance: Option<&str>,
    ) -> Result<Vec<InstanceMaps>, EngineError> {
        let path = path_of(&self.host, cgroup);
        let oom = self
            .oom
            .iter()
            .filter(|i| i.attach == cgroup)
            .map(|i| (i.name.as_str(), OpsKind::Oom, &i.types, &i.vm));
        let psi = self
            .psi
            .iter()
            .filter(|i| i.attach == cgroup)
            .map(|i| (i.name.as_str(), OpsKind::Psi, &i.types, &i.vm));
        let all: Vec<_> = oom.chain(psi).collect();
        if all.is_empty() {
            return Err(EngineError::NotAttached(path));
        }
        let chosen: Vec<_> = all
            .iter()
            .filter(|(name, ..)| instance.is_none_or(|n| n == *name))
            .collect();
        if chosen.is_empty() {
            return Err(EngineError::NoInstanceAt {
                instance: instance.unwrap_or_default().to_string(),
                cgroup: path,
                attached: all.iter().map(|(n, ..)| (*n).to_string()).collect(),
            });
        }
        Ok(chosen
            .into_iter()
            .map(|(name, kind, types, vm)| InstanceMaps {
                policy: (*name).to_string(),
                kind: kind.struct_name().into(),
                cgroup: path.clone(),
                maps: dump_vm(types, vm),
            })
            .collect())
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
        let mut vm = vm_for(&policy, self.cfg.vm)?;
        let types = Arc::new(MapTypes {
            btf: policy.object.btf.clone(),
            maps: policy.object.maps.clone(),
        });
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
                let link_arg = policy.callback_form("handle_out_of_memory") == Form::V3Link;
                self.oom.push(OomInstance {
                    name: policy.name.clone(),
                    attach: cgroup,
                    vm,
                    handle_oom,
                    link_arg,
                    offline,
                    budget: AtomicU32::new(opts.backoff_budget),
                    reserve_left: opts.limit_reserve,
                    opts,
                    types,
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
                    types,
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
                            why: InitFailure::Returned(v as i32),
                        })
                    }
                    Some(Err(reason)) => {
                        return Err(EngineError::InitFailed {
                            policy: policy.name,
                            why: InitFailure::Stopped(reason),
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
                let message = e.to_string();
                st.emit(host, Record::Error { policy, message });
            }
        }
    }
}
