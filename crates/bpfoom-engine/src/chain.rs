//! The handler chain: an OOM in memcg M runs the `bpf_oom_ops` handler
//! attached at M, then at each ancestor up to the root, with BACKOFF and the
//! kernel fallback. `bpf_out_of_memory` re-enters it through the
//! [`crate::kfuncs::Reenter`] callback the engine passes to PSI runs, so the
//! kfuncs never name this module.

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use bpfoom_vm::{ProgId, Vm, VmError};

use crate::host::{ancestors, is_within, CgroupId, Host, KernelOom, Pid};
use crate::kfuncs::{Kctx, OomRun};
use crate::objects::{put, Key, Layout};
use crate::record::{Record, ResolvedBy, Verdict};
use crate::state::{OomRequest, State};
use crate::{AttachOptions, EngineConfig};

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
    pub vm: Vm,
    pub handle_oom: ProgId,
    /// `handle_out_of_memory` is upstream v3's `(oc, struct
    /// bpf_struct_ops_link *link)`: it gets a link, not the cgroup.
    pub link_arg: bool,
    pub offline: Option<ProgId>,
    pub budget: AtomicU32,
    pub opts: AttachOptions,
    pub reserve_left: u64,
    /// The object's BTF and map definitions, for [`crate::Engine::maps`].
    pub types: std::sync::Arc<crate::dump::MapTypes>,
}

/// Why a program run counts as failed although the VM returned: the
/// handler chain passes on, `init` fails the attachment, and the records
/// carry the message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RunFailure {
    /// The engine's instruction budget ran out.
    #[error("instruction budget of {budget} exhausted at instruction {pc}")]
    Budget {
        /// The budget of the run.
        budget: u64,
        /// The instruction being executed.
        pc: usize,
    },
    /// The VM stopped the program (memory fault, bad call, ...).
    #[error("program fault: {0}")]
    Fault(#[source] VmError),
    /// The program returned, but later than the engine allows.
    #[error("wall-clock limit of {limit:?} exceeded ({elapsed:?})")]
    TimeLimit {
        /// [`EngineConfig::time_limit`].
        limit: Duration,
        /// How long the run took.
        elapsed: Duration,
    },
}

/// Runs one program; `Err` carries why it counts as failed.
pub(crate) fn run_prog<H: Host + ?Sized>(
    vm: &mut Vm,
    prog: ProgId,
    k: &mut Kctx<'_, H>,
    ctx: &[u64],
) -> Result<u64, RunFailure> {
    vm.set_budget(k.cfg.insn_budget);
    let start = Instant::now();
    let r = vm.run(prog, ctx, k);
    let elapsed = start.elapsed();
    k.flush_output(vm.env_mut());
    match r {
        Err(VmError::Budget { budget, pc }) => Err(RunFailure::Budget { budget, pc }),
        Err(e) => Err(RunFailure::Fault(e)),
        Ok(_) if elapsed > k.cfg.time_limit => Err(RunFailure::TimeLimit {
            limit: k.cfg.time_limit,
            elapsed,
        }),
        Ok(v) => Ok(v),
    }
}

/// Ends a run: reports leaks as an error record.
pub(crate) fn finish_run<H: Host + ?Sized>(vm: &mut Vm, k: &mut Kctx<'_, H>) {
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
    ) -> (Result<u64, RunFailure>, bool, u64) {
        let l = Layout::get();
        let OomInstance {
            name,
            attach,
            vm,
            handle_oom,
            link_arg,
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
        let mut arg2 = cgrp;
        if *link_arg {
            // The link of the attachment, as v3's kernel passes it: its
            // cgroup is the attach point (the root cgroup for a system-wide
            // instance, which v3 attaches to the root). bpfoom has no
            // struct_ops map object to point `map` at; it stays NULL.
            let mut link = vec![0u8; l.link_size];
            put(&mut link, l.off("bpf_struct_ops_link", "cgroup"), 8, cgrp);
            arg2 = k.objs.add_other(env.memory(), &link).2;
        }
        k.oom = Some(OomRun {
            oc: oc_id,
            oc_addr,
            scope: req.memcg,
        });
        let r = run_prog(vm, *handle_oom, &mut k, &[oc_addr, arg2]);
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

    pub(crate) fn call_offline<H: Host + ?Sized>(
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
            let message = e.to_string();
            k.st.emit(&mut *k.host, Record::Error { policy, message });
        }
        finish_run(vm, &mut k);
        let policy = name.clone();
        let cgroup = host.path(cg).unwrap_or_else(|| format!("#{cg}"));
        st.emit(host, Record::Offline { policy, cgroup });
    }
}

pub(crate) fn path_of<H: Host + ?Sized>(host: &H, cg: CgroupId) -> String {
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
                            by: ResolvedBy::Policy(policy.clone()),
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
                                    by: ResolvedBy::Backoff,
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
                Err(e) => st.emit(host, handler(Verdict::Failed, Some(e.to_string()))),
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
        ResolvedBy::Kernel
    } else {
        ResolvedBy::Nothing
    };
    st.emit(host, Record::Resolved { by });
    outcome
}
