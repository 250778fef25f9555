//! The exploration driver and the ALU / jump / exit rules.

use std::fmt::Write as _;
use std::time::Instant;

use bpfoom_abi::struct_ops::{self, Return};
use bpfoom_abi::types::{HostTypes, Type, TypeId};
use bpfoom_abi::{helpers, kfuncs, Scope};
use bpfoom_insn::disasm::{insn_text, Names};
use bpfoom_insn::opcode::*;
use bpfoom_insn::Insn;

use crate::cfg::{self, Cfg};
use crate::scalar::{Cmp, Scalar};
use crate::state::{self, fmt_regs, Frame, Reg, RegType, State};
use crate::{Options, ProgramInput, RejectKind, Rejection, Report, VerifyError};

/// Pending branches allowed at once (the kernel's jump-sequence limit).
const MAX_PENDING: usize = 8192;
/// Remembered states per instruction beyond which no more are added.
const MAX_STATES_PER_INSN: usize = 64;
/// Remembered states in all, beyond which no more are added (bounds memory).
const MAX_LIVE_STATES: usize = 1 << 16;
/// Iterator-loop rounds that join scalar values before widening them to unknown.
const WIDEN_AFTER: usize = 3;

/// A callback argument's abstract type.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Param {
    Object(TypeId),
    Scalar,
}

/// What the program's hook allows.
pub(crate) struct Hook {
    pub params: Vec<Param>,
    pub scope: Scope,
    pub ret: Return,
    pub ops: &'static str,
    /// The callback's C prototype, for messages.
    pub proto: String,
}

/// Result of stepping one instruction.
pub(crate) enum Flow {
    Next(usize),
    Done,
}

/// A rejection before it is dressed with context.
pub(crate) struct Fail {
    pub kind: RejectKind,
    pub reason: String,
}

pub(crate) type R<T> = Result<T, Fail>;

pub(crate) fn fail<T>(kind: RejectKind, reason: impl Into<String>) -> R<T> {
    Err(Fail {
        kind,
        reason: reason.into(),
    })
}

struct Pending {
    st: State,
    pc: usize,
    parent: Option<usize>,
    from: usize,
    /// The path's history since `parent` (see `precision.rs`).
    hist: Vec<Hist>,
}

/// One executed instruction in a path's history, for precision tracking.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Hist {
    pub pc: u32,
    /// The stack slot (frame, 8-byte slot) a register was spilled to or
    /// filled from by this instruction.
    pub stack: Option<(u8, u8)>,
}

pub(crate) struct Ckpt {
    pub st: State,
    /// The instruction the state was remembered at.
    pub pc: usize,
    /// The instructions from the parent checkpoint to this one.
    pub hist: Vec<Hist>,
    pub parent: Option<usize>,
    /// Checkpoints above it on its path (Linux's `dfs_depth`).
    pub depth: u32,
    pub(crate) branches: u32,
    /// Comparisons that pruned / failed (to forget useless states).
    hits: u32,
    misses: u32,
}

enum Visit {
    Pruned,
    New(usize),
}

pub(crate) struct Verifier<'a> {
    pub input: &'a ProgramInput<'a>,
    pub insns: &'a [Insn],
    pub hook: Hook,
    pub(crate) cfg: Cfg,
    pub(crate) opts: &'a Options,
    pending: Vec<Pending>,
    pub(crate) ckpts: Vec<Ckpt>,
    /// The current path's instructions since its parent checkpoint.
    pub(crate) hist: Vec<Hist>,
    pub(crate) explored: Vec<Vec<usize>>,
    id_gen: u32,
    processed: u64,
    /// `processed` when the last checkpoint was added.
    last_ckpt: u64,
    peak: usize,
    /// Remembered states not forgotten yet.
    live_ckpts: usize,
    pub log: String,
    /// Parent checkpoint of the path being explored (for forks).
    pub(crate) parent: Option<usize>,
    /// Loads through kernel-object pointers seen on any path.
    probe_mem: std::collections::BTreeSet<usize>,
    /// The program's global functions.
    pub globals: &'a [crate::GlobalFunc],
    /// Called global functions still to verify (indexes into `globals`).
    pub global_queue: Vec<usize>,
    /// Global functions queued or verified.
    pub global_seen: Vec<usize>,
    /// The global function being verified (None: the program itself).
    cur_global: Option<usize>,
    /// Per function (first instruction): the deepest stack any path used,
    /// in bytes rounded up to 8 (Linux's `subprog_info[].stack_depth`).
    pub(crate) stack_depth: std::collections::BTreeMap<usize, usize>,
    /// Accesses that verify but are probably mistakes, by instruction
    /// (see `explain.rs`).
    pub(crate) warnings: std::collections::BTreeMap<usize, String>,
}

struct MapNames<'a>(&'a [crate::MapInfo]);

impl Names for MapNames<'_> {
    fn helper(&self, id: i32) -> Option<String> {
        // Linux's name also for a helper bpfoom does not provide, so the
        // log shows what the program tried to call.
        helpers::by_id(id as u32)
            .map(|h| format!("bpf_{}", h.name))
            .or_else(|| crate::helper_names::linux_helper_name(id))
    }
    fn kfunc(&self, id: i32) -> Option<String> {
        kfuncs::by_id(id as u32).map(|k| k.name.to_string())
    }
    fn map(&self, index: i32) -> Option<String> {
        self.0.get(index as usize).map(|m| m.name.clone())
    }
}

fn hook_of(input: &ProgramInput<'_>) -> Option<Hook> {
    let ops = struct_ops::by_name(input.hook.ops)?;
    let cb = ops.callback(input.hook.member)?;
    let h = HostTypes::get();
    let p = h.callback_proto(ops.name, cb.name, input.hook.form)?;
    let Some(Type::FuncProto { params, .. }) = h.ty(p) else {
        return None;
    };
    let params = params
        .iter()
        .map(|(_, t)| match h.ty(h.resolve(*t)) {
            Some(Type::Ptr(to)) if matches!(h.ty(h.resolve(*to)), Some(Type::Struct(_))) => {
                Param::Object(h.resolve(*to))
            }
            _ => Param::Scalar,
        })
        .collect();
    Some(Hook {
        params,
        scope: ops.scope,
        ret: cb.ret,
        ops: ops.name,
        proto: crate::explain::prototype(h, ops.name, cb.name, p),
    })
}

impl<'a> Verifier<'a> {
    pub fn run(
        input: &'a ProgramInput<'a>,
        globals: &'a [crate::GlobalFunc],
        opts: &'a Options,
    ) -> Result<Report, VerifyError> {
        let start = Instant::now();
        let hook = hook_of(input).ok_or_else(|| VerifyError::UnknownHook {
            ops: input.hook.ops.to_string(),
            member: input.hook.member.to_string(),
        })?;
        let n = input.insns.len();
        let mut v = Verifier {
            input,
            insns: input.insns,
            hook,
            cfg: Cfg {
                prune: vec![],
                live_in: vec![],
                subprogs: vec![],
            },
            opts,
            pending: Vec::new(),
            ckpts: Vec::new(),
            hist: Vec::new(),
            explored: vec![Vec::new(); n],
            id_gen: 0,
            processed: 0,
            last_ckpt: 0,
            peak: 0,
            live_ckpts: 0,
            log: String::new(),
            parent: None,
            probe_mem: Default::default(),
            globals,
            global_queue: Vec::new(),
            global_seen: Vec::new(),
            cur_global: None,
            stack_depth: Default::default(),
            warnings: Default::default(),
        };
        match cfg::analyze(input.insns) {
            Ok(c) => v.cfg = c,
            Err((pc, kind, reason)) => {
                let st = v.initial();
                return Err(v.reject(&st, pc.min(n.saturating_sub(1)), Fail { kind, reason }));
            }
        }
        v.explore()?;
        // As Linux, the combined stack of call chains is checked once the
        // deepest frame of every function is known.
        if let Err(f) = v.check_max_stack_depth() {
            let st = v.initial();
            let mut e = v.reject(
                &st,
                f.insn,
                Fail {
                    kind: RejectKind::Stack,
                    reason: f.reason,
                },
            );
            if let VerifyError::Rejected(r) = &mut e {
                // No path is at fault: the register state says nothing.
                r.regs.clear();
            }
            return Err(e);
        }
        if opts.log_level > 0 {
            let per_insn = v.explored.iter().map(Vec::len).max().unwrap_or(0);
            let _ = writeln!(
                v.log,
                "processed {} insns (limit {}) max_states_per_insn {per_insn} total_states {} peak_states {}",
                v.processed,
                opts.max_insns,
                v.ckpts.len(),
                v.peak
            );
            let _ = writeln!(v.log, "{}", v.stack_depth_line());
        }
        Ok(Report {
            insns_processed: v.processed,
            states: v.ckpts.len() as u64,
            peak_states: v.peak as u64,
            time: start.elapsed(),
            probe_mem: v.probe_mem.into_iter().collect(),
            warnings: v
                .warnings
                .iter()
                .map(|(pc, why)| format!("insn {pc}: {why}"))
                .collect(),
            log: v.log,
        })
    }

    fn initial(&self) -> State {
        let mut f = Frame::new(usize::MAX, 0, 0);
        f.regs[1] = Reg::ptr(RegType::Ctx);
        State {
            frames: vec![f],
            ..State::default()
        }
    }

    pub fn new_id(&mut self) -> u32 {
        self.id_gen += 1;
        self.id_gen
    }

    pub fn disasm(&self, pc: usize) -> String {
        if pc >= self.insns.len() {
            return String::new();
        }
        let i = self.insns[pc];
        format!(
            "({:02x}) {}",
            i.code,
            insn_text(self.insns, pc, &MapNames(self.input.maps))
        )
    }

    /// The C source line instruction `pc` belongs to (BTF line info): the
    /// last record at or before it within the same function.
    pub(crate) fn source_line(&self, pc: usize) -> Option<&'a crate::SourceLine> {
        let li = self.input.line_info;
        let i = li.partition_point(|l| l.insn <= pc);
        let func = self
            .cfg
            .subprogs
            .iter()
            .copied()
            .filter(|&s| s <= pc)
            .max()
            .unwrap_or(0);
        li[..i].last().filter(|l| l.insn >= func)
    }

    fn reject(&self, st: &State, pc: usize, mut f: Fail) -> VerifyError {
        let source = self.source_line(pc).cloned();
        if let Some(why) = self.core_mismatch(st, pc) {
            f.reason = format!("{}: {why}", f.reason);
        } else if let Some((at, why)) = self.warnings.iter().next() {
            // An earlier access went through a pointer to another struct
            // than the program meant: what was read there is not what the
            // program thinks, which may be why it fails here.
            f.reason = format!("{} (note: insn {at}: {why})", f.reason);
        }
        VerifyError::Rejected(Box::new(Rejection {
            program: self.input.name.to_string(),
            kind: f.kind,
            insn: pc,
            disasm: self.disasm(pc),
            source,
            regs: fmt_regs(st, self.input.maps),
            reason: f.reason,
            insns_processed: self.processed,
            log: self.log.clone(),
        }))
    }

    /// Queues the other outcome of a branch.
    pub fn push_branch(&mut self, st: State, pc: usize, from: usize) -> R<()> {
        if self.pending.len() >= MAX_PENDING {
            return fail(
                RejectKind::TooComplex,
                // Linux's words: its stack of pending branches would hold
                // one more than the limit.
                format!(
                    "The sequence of {} jumps is too complex.",
                    self.pending.len() + 1
                ),
            );
        }
        if let Some(p) = self.parent {
            self.ckpts[p].branches += 1;
        }
        self.pending.push(Pending {
            st,
            pc,
            parent: self.parent,
            from,
            hist: self.hist.clone(),
        });
        self.peak = self.peak.max(self.pending.len() + self.live_ckpts);
        Ok(())
    }

    fn finish_path(&mut self) {
        let mut p = self.parent;
        while let Some(i) = p {
            self.ckpts[i].branches -= 1;
            if self.ckpts[i].branches > 0 {
                break;
            }
            p = self.ckpts[i].parent;
        }
    }

    fn explore(&mut self) -> Result<(), VerifyError> {
        let init = self.initial();
        self.explore_from(init, 0)?;
        // As Linux: each called global function once, on its own, from its
        // prototype (functions they call are queued in turn).
        while let Some(g) = self.global_queue.pop() {
            self.cur_global = Some(g);
            let st = self.global_initial(g);
            let pc = self.globals[g].insn;
            if self.opts.log_level > 0 {
                let _ = writeln!(
                    self.log,
                    "Validating {}() func at insn {pc}...",
                    self.globals[g].name
                );
            }
            self.explore_from(st, pc)?;
        }
        Ok(())
    }

    /// The entry state of global function `g`: arguments from its prototype.
    fn global_initial(&mut self, g: usize) -> State {
        let gf = &self.globals[g];
        let mut f = Frame::new(usize::MAX, gf.insn, 0);
        let params = gf.params.clone();
        for (k, p) in params.iter().enumerate().take(5) {
            let mut maybe_null = false;
            let reg = match p {
                crate::GlobalArg::Scalar | crate::GlobalArg::Unsupported(_) => {
                    Reg::scalar(Scalar::UNKNOWN)
                }
                crate::GlobalArg::Ctx => Reg::ptr(RegType::Ctx),
                crate::GlobalArg::Trusted { ty, nullable } => {
                    maybe_null = *nullable;
                    let ty = HostTypes::get().struct_id(ty).unwrap_or(0);
                    Reg::ptr(RegType::Btf {
                        ty,
                        trust: crate::state::Trust::Trusted,
                    })
                }
                crate::GlobalArg::Mem { size, nullable } => {
                    maybe_null = *nullable;
                    Reg::ptr(RegType::Mem { size: *size })
                }
            };
            f.regs[k + 1] = if maybe_null {
                Reg {
                    maybe_null: true,
                    id: self.new_id(),
                    ..reg
                }
            } else {
                reg
            };
        }
        State {
            frames: vec![f],
            ..State::default()
        }
    }

    fn explore_from(&mut self, init: State, start: usize) -> Result<(), VerifyError> {
        self.parent = None;
        self.pending.push(Pending {
            st: init,
            pc: start,
            parent: None,
            from: usize::MAX,
            hist: Vec::new(),
        });
        while let Some(Pending {
            mut st,
            mut pc,
            parent,
            from,
            hist,
        }) = self.pending.pop()
        {
            self.parent = parent;
            self.hist = hist;
            if self.opts.log_level > 0 && from != usize::MAX {
                let _ = writeln!(
                    self.log,
                    "from {from} to {pc}: {}",
                    fmt_regs(&st, self.input.maps)
                );
            }
            loop {
                if self.cfg.prune[pc] || self.is_iter_next(pc) {
                    match self.visit(&mut st, pc) {
                        Ok(None) => {}
                        Ok(Some(Visit::Pruned)) => {
                            if self.opts.log_level > 0 {
                                let _ = writeln!(self.log, "{pc}: safe");
                            }
                            self.finish_path();
                            break;
                        }
                        Ok(Some(Visit::New(c))) => self.parent = Some(c),
                        Err(f) => return Err(self.reject(&st, pc, f)),
                    }
                }
                self.processed += 1;
                if self.processed > self.opts.max_insns {
                    let f = Fail {
                        kind: RejectKind::TooComplex,
                        // Linux's words (the limit is the kernel's
                        // BPF_COMPLEXITY_LIMIT_INSNS by default).
                        reason: format!(
                            "BPF program is too large. Processed {} insn",
                            self.processed
                        ),
                    };
                    return Err(self.reject(&st, pc, f));
                }
                if self.opts.log_level > 0 {
                    // As Linux's verbose_linfo(): the C line before the
                    // first instruction it covers.
                    if let Some(l) = self.source_line(pc).filter(|l| l.insn == pc) {
                        let _ = writeln!(self.log, "; {} @ {}:{}", l.text.trim(), l.file, l.line);
                    }
                    let _ = write!(self.log, "{pc}: {}", self.disasm(pc));
                }
                self.hist.push(Hist {
                    pc: pc as u32,
                    stack: None,
                });
                self.note_core_mismatch(&st, pc);
                let flow = self.step(&mut st, pc);
                if self.opts.log_level > 1 {
                    let _ = write!(self.log, " ; {}", fmt_regs(&st, self.input.maps));
                }
                if self.opts.log_level > 0 {
                    self.log.push('\n');
                }
                match flow {
                    Ok(Flow::Next(n)) => pc = n,
                    Ok(Flow::Done) => {
                        self.finish_path();
                        break;
                    }
                    Err(f) => return Err(self.reject(&st, pc, f)),
                }
            }
        }
        Ok(())
    }

    fn is_iter_next(&self, pc: usize) -> bool {
        let i = self.insns[pc];
        // A helper call that calls back is the same kind of loop head.
        crate::callbacks::calls_callback(i)
            || i.code == CALL
                && i.src == BPF_PSEUDO_KFUNC_CALL
                && kfuncs::by_id(i.imm as u32).is_some_and(|k| k.has(kfuncs::KF_ITER_NEXT))
    }

    /// Registers that matter, per frame, when comparing states at `pc`.
    fn live_masks(&self, st: &State, pc: usize) -> Vec<u16> {
        let n = st.frames.len();
        (0..n)
            .map(|i| {
                if i + 1 == n {
                    self.cfg.live_in[pc]
                } else if st.frames[i + 1].callback {
                    // A callback returns to its call, which runs again and
                    // reads the call's arguments.
                    self.cfg.live_in[st.frames[i + 1].callsite] | (1 << 10)
                } else {
                    let ret = st.frames[i + 1].callsite + 1;
                    (self.cfg.live_in.get(ret).copied().unwrap_or(0x7ff) & !0x3f) | (1 << 10)
                }
            })
            .collect()
    }

    fn visit(&mut self, st: &mut State, pc: usize) -> R<Option<Visit>> {
        let live = self.live_masks(st, pc);
        let iter_next = self.is_iter_next(pc);
        // Whether this visit may remember a new state (as Linux's
        // `add_new_state`: an iterator's next call and a callback call are
        // forced checkpoints); a miss is only counted then, so a few rounds
        // of a loop stay remembered.
        let adding =
            iter_next || self.processed >= self.last_ckpt + 8 || self.explored[pc].is_empty();
        let mut widen_from = None;
        let mut loop_visits = 0;
        let mut useless = Vec::new();
        let mut pruned = None;
        // Open-coded iterators widen their imprecise scalars when the next
        // round is queued (`iter_call`); callback loops join them here.
        let callback_loop = iter_next && crate::callbacks::calls_callback(self.insns[pc]);
        // `st` with unshared ids dropped, as saved states have them.
        let mut normalized: Option<State> = None;
        for &c in self.explored[pc].iter().rev() {
            let ck = &mut self.ckpts[c];
            if ck.branches == 0 {
                if state::covers(&ck.st, st, &live, state::Cmp::Subsume) {
                    ck.hits += 1;
                    pruned = Some(c);
                    break;
                }
            } else if iter_next {
                // An ancestor in the same iterator loop: the iterator bounds the loop.
                if state::covers(&ck.st, st, &live, state::Cmp::IterLoop) {
                    self.propagate_precision(c, st);
                    return Ok(Some(Visit::Pruned));
                }
                if callback_loop && state::covers(&ck.st, st, &live, state::Cmp::Shape) {
                    widen_from = Some(c);
                    loop_visits += 1;
                }
            } else if ck.st.callbacks == st.callbacks
                && state::covers(&ck.st, st, &live, state::Cmp::Subsume)
                && {
                    let cur = normalized.get_or_insert_with(|| {
                        let mut c = st.clone();
                        state::clear_singular_ids(&mut c);
                        c
                    });
                    state::covers(cur, &ck.st, &live, state::Cmp::Subsume)
                }
            {
                return fail(
                    RejectKind::InfiniteLoop,
                    format!("infinite loop detected at insn {pc}: the loop returns to an identical state"),
                );
            }
            // A miss. As Linux's is_state_visited(), a state that keeps
            // missing is forgotten (`miss_cnt > hit_cnt * n + n`, a miss
            // counted only when a new state may be remembered): else a long
            // loop fills the list with its own earlier rounds, every visit
            // compares against all of them, and the path's history (walked
            // by every precision mark) grows without bound. Linux's n is 64
            // for a loop's unfinished state at an iterator's next call or a
            // callback call (evicting those early would keep iterator loops
            // from converging) and 3 otherwise; bpfoom keeps finished states
            // longer (`hits * 3 + 256` misses, counted on every visit): its
            // pruning compares every scalar by range, precise or not, so it
            // needs more of them to prune as much (with Linux's rule,
            // `loop_comm_count`, 951k instructions in Linux, runs out of
            // budget).
            let ck = &mut self.ckpts[c];
            let (per_hit, base) = if ck.branches == 0 {
                ck.misses += 1;
                (3, 256)
            } else {
                if adding {
                    ck.misses += 1;
                }
                if iter_next {
                    (64, 64)
                } else {
                    (3, 3)
                }
            };
            if ck.misses > ck.hits * per_hit + base {
                useless.push(c);
            }
        }
        if !useless.is_empty() {
            // Like the kernel, forget states that keep failing to prune (a
            // looping one stays a parent of the path, without its state).
            self.explored[pc].retain(|c| !useless.contains(c));
            for c in useless {
                self.ckpts[c].st = State::default();
                self.live_ckpts -= 1;
            }
        }
        if let Some(c) = pruned {
            self.propagate_precision(c, st);
            return Ok(Some(Visit::Pruned));
        }
        if let Some(c) = widen_from {
            // Scalars that changed around an iterator loop are joined with
            // their earlier values, and after a few rounds made unknown, so the
            // loop converges (sound: the state only gets more general).
            state::widen(&self.ckpts[c].st, st, loop_visits > WIDEN_AFTER);
        }
        let throttled = self.processed < self.last_ckpt + 8 && !self.explored[pc].is_empty();
        let full =
            self.explored[pc].len() >= MAX_STATES_PER_INSN || self.live_ckpts >= MAX_LIVE_STATES;
        if !iter_next && (throttled || full) {
            return Ok(None);
        }
        self.last_ckpt = self.processed;
        let mut saved = st.clone();
        state::clear_singular_ids(&mut saved);
        self.ckpts.push(Ckpt {
            st: saved,
            pc,
            hist: std::mem::take(&mut self.hist),
            parent: self.parent,
            depth: self.parent.map_or(0, |p| self.ckpts[p].depth + 1),
            branches: 1,
            hits: 0,
            misses: 0,
        });
        let id = self.ckpts.len() - 1;
        self.explored[pc].push(id);
        self.live_ckpts += 1;
        self.peak = self.peak.max(self.pending.len() + self.live_ckpts);
        Ok(Some(Visit::New(id)))
    }

    fn step(&mut self, st: &mut State, pc: usize) -> R<Flow> {
        let i = self.insns[pc];
        match class(i.code) {
            BPF_ALU | BPF_ALU64 => {
                self.alu(st, i)?;
                Ok(Flow::Next(pc + 1))
            }
            BPF_LD => {
                self.ld_imm64(st, pc)?;
                Ok(Flow::Next(pc + 2))
            }
            BPF_LDX => {
                // A load through a kernel-object pointer is Linux's BPF_PROBE_MEM:
                // the VM makes it fault-safe (a NULL walk reads 0).
                if matches!(self.reg(st, i.src).map(|r| r.ty), Ok(RegType::Btf { .. })) {
                    self.probe_mem.insert(pc);
                }
                self.ldx(st, i)?;
                Ok(Flow::Next(pc + 1))
            }
            BPF_ST | BPF_STX => {
                self.store(st, i)?;
                Ok(Flow::Next(pc + 1))
            }
            _ => match op(i.code) {
                BPF_JA => {
                    let rel = if class(i.code) == BPF_JMP {
                        i64::from(i.off)
                    } else {
                        i64::from(i.imm)
                    };
                    Ok(Flow::Next((pc as i64 + rel + 1) as usize))
                }
                BPF_CALL => self.call(st, pc),
                BPF_EXIT => self.exit(st),
                _ => self.cond_jump(st, pc),
            },
        }
    }

    pub fn reg(&self, st: &State, r: u8) -> R<Reg> {
        let reg = st.cur().regs[r as usize];
        if !reg.is_init() {
            return fail(
                RejectKind::UninitRegister,
                format!("R{r} !read_ok: the register is not initialized (or held a reference that was released)"),
            );
        }
        Ok(reg)
    }

    pub fn set_reg(&self, st: &mut State, r: u8, v: Reg) -> R<()> {
        if r == 10 {
            return fail(
                RejectKind::FramePointer,
                "frame pointer is read only: r10 cannot be written",
            );
        }
        st.cur_mut().regs[r as usize] = v;
        Ok(())
    }

    fn ld_imm64(&mut self, st: &mut State, pc: usize) -> R<()> {
        let (i, n) = (self.insns[pc], self.insns[pc + 1]);
        let map = |m: i32| -> R<u32> {
            if m < 0 || m as usize >= self.input.maps.len() {
                return fail(
                    RejectKind::InvalidInsn,
                    format!(
                        "ld_imm64 refers to map {m}, but the program has {} maps",
                        self.input.maps.len()
                    ),
                );
            }
            Ok(m as u32)
        };
        let v = match i.src {
            BPF_PSEUDO_MAP_FD => Reg::ptr(RegType::ConstMap { map: map(i.imm)? }),
            BPF_PSEUDO_MAP_VALUE => {
                let m = map(i.imm)?;
                let info = &self.input.maps[m as usize];
                if !matches!(info.kind, crate::MapKind::Array) || info.max_entries != 1 {
                    return fail(
                        RejectKind::InvalidInsn,
                        format!(
                            "direct value access needs a single-entry array map, {} is not",
                            info.name
                        ),
                    );
                }
                if n.imm < 0 || n.imm as u32 >= info.value_size {
                    return fail(
                        RejectKind::InvalidMemAccess,
                        format!(
                            "direct value offset {} is outside map {} (value_size={})",
                            n.imm, info.name, info.value_size
                        ),
                    );
                }
                Reg {
                    off: i64::from(n.imm),
                    ..Reg::ptr(RegType::MapValue { map: m })
                }
            }
            BPF_PSEUDO_FUNC => Reg::ptr(RegType::Func {
                insn: (pc as i64 + i64::from(i.imm) + 1) as u32,
            }),
            BPF_PSEUDO_BTF_ID => {
                if kfuncs::by_id(i.imm as u32).is_none() {
                    return fail(
                        RejectKind::InvalidInsn,
                        format!("ld_imm64 of unknown kernel symbol {}", i.imm),
                    );
                }
                // bpf_ksym_exists() of a present kfunc: a non-zero address.
                Reg::scalar(Scalar::urange(1, u64::MAX))
            }
            _ => {
                let v = (i.imm as u32 as u64) | ((n.imm as u32 as u64) << 32);
                Reg::scalar(Scalar::konst(v))
            }
        };
        self.set_reg(st, i.dst, v)
    }

    fn alu(&mut self, st: &mut State, i: Insn) -> R<()> {
        let w = if class(i.code) == BPF_ALU64 { 64 } else { 32 };
        let o = op(i.code);
        let x = source(i.code) == BPF_X;
        if i.dst == 10 {
            return fail(
                RejectKind::FramePointer,
                "frame pointer is read only: r10 cannot be written",
            );
        }
        let imm = if w == 64 {
            i.imm as i64 as u64
        } else {
            u64::from(i.imm as u32)
        };
        let src = if x {
            self.reg(st, i.src)?
        } else {
            Reg::scalar(Scalar::konst(imm))
        };
        if o == BPF_MOV {
            let v = if w == 64 && i.off == 0 {
                if x && i.src != i.dst
                    && src.is_scalar()
                    && src.id == 0
                    && src.var.as_const().is_none()
                {
                    // Link the copies so a bounds check on one refines both.
                    let id = self.new_id();
                    st.cur_mut().regs[i.src as usize].id = id;
                    Reg { id, ..src }
                } else {
                    src
                }
            } else if src.is_ptr() {
                // Privileged (allow_ptr_leaks): a partial or sign-extended
                // copy of a pointer is some number, zero-extended when 32-bit.
                Reg::scalar(if w == 32 {
                    Scalar::sized(4)
                } else {
                    Scalar::UNKNOWN
                })
            } else if i.off != 0 {
                let s = src.var.sign_extend(i.off as u32);
                Reg::scalar(if w == 32 { s.truncate(4) } else { s })
            } else if src.var.umax <= u64::from(u32::MAX) {
                if src.id == 0 && src.var.as_const().is_none() && i.src != i.dst {
                    let id = self.new_id();
                    st.cur_mut().regs[i.src as usize].id = id;
                    Reg::scalar(src.var).with_id(id)
                } else {
                    Reg::scalar(src.var).with_id(src.id)
                }
            } else {
                Reg::scalar(src.var.truncate(4))
            };
            return self.set_reg(st, i.dst, v);
        }
        let dst = self.reg(st, i.dst)?;
        let res = match o {
            BPF_NEG => {
                if dst.is_ptr() {
                    // Privileged (allow_ptr_leaks): the result is some number.
                    return self.set_reg(st, i.dst, Reg::scalar(Scalar::UNKNOWN));
                }
                Reg::scalar(Scalar::alu(BPF_SUB, &Scalar::konst(0), &dst.var, w, false))
            }
            BPF_END => {
                if dst.is_ptr() {
                    // Privileged (allow_ptr_leaks): the result is some number.
                    return self.set_reg(st, i.dst, Reg::scalar(Scalar::UNKNOWN));
                }
                let bytes = (i.imm / 8) as u32;
                let to_le = class(i.code) == BPF_ALU && !x;
                let v = if to_le {
                    dst.var.truncate(bytes)
                } else if let Some(c) = dst.var.as_const() {
                    let sw = match bytes {
                        2 => u64::from((c as u16).swap_bytes()),
                        4 => u64::from((c as u32).swap_bytes()),
                        _ => c.swap_bytes(),
                    };
                    Scalar::konst(sw)
                } else {
                    Scalar::sized(bytes)
                };
                Reg::scalar(v)
            }
            _ => {
                if !x
                    && matches!(o, BPF_LSH | BPF_RSH | BPF_ARSH)
                    && !(0..w as i32).contains(&i.imm)
                {
                    return fail(RejectKind::InvalidInsn, format!("invalid shift {}", i.imm));
                }
                if !x && matches!(o, BPF_DIV | BPF_MOD) && i.imm == 0 {
                    return fail(RejectKind::InvalidInsn, "division by zero");
                }
                if dst.is_ptr() || src.is_ptr() {
                    if x && dst.is_ptr() != src.is_ptr() {
                        // Linux's adjust_reg_min_max_vals(): the scalar added
                        // to a pointer is relied on exactly.
                        let k = if dst.is_ptr() { i.src } else { i.dst };
                        self.mark_precise(st, &[k], true);
                    }
                    self.ptr_arith(i, w, dst, src)?
                } else {
                    Reg::scalar(Scalar::alu(o, &dst.var, &src.var, w, i.off == 1))
                }
            }
        };
        self.set_reg(st, i.dst, res)
    }

    fn ptr_arith(&mut self, i: Insn, w: u32, dst: Reg, src: Reg) -> R<Reg> {
        let o = op(i.code);
        let d = i.dst;
        if w == 32 {
            return fail(
                RejectKind::PointerArith,
                format!("R{d} 32-bit pointer arithmetic prohibited"),
            );
        }
        if o != BPF_ADD && o != BPF_SUB {
            return fail(
                RejectKind::PointerArith,
                format!(
                    "R{d} pointer arithmetic with {} operator prohibited",
                    op_name(o)
                ),
            );
        }
        if dst.is_ptr() && src.is_ptr() {
            // Privileged (allow_ptr_leaks): the difference of any two
            // pointers is some number; every other combination is refused.
            if o == BPF_SUB {
                return Ok(Reg::scalar(Scalar::UNKNOWN));
            }
            return fail(
                RejectKind::PointerArith,
                format!("R{d} pointer arithmetic between two pointers prohibited"),
            );
        }
        if src.is_ptr() && o == BPF_SUB {
            return fail(
                RejectKind::PointerArith,
                format!("R{d} tried to subtract pointer from scalar"),
            );
        }
        let (ptr, k) = if dst.is_ptr() { (dst, src) } else { (src, dst) };
        let desc = crate::state::RegFmt(&ptr, self.input.maps).to_string();
        if matches!(ptr.ty, RegType::ConstMap { .. }) {
            return fail(
                RejectKind::PointerArith,
                format!("R{d} pointer arithmetic on map_ptr prohibited"),
            );
        }
        if ptr.maybe_null {
            return fail(
                RejectKind::NullDeref,
                format!("R{d} pointer arithmetic on {desc} prohibited, null-check it first"),
            );
        }
        const LIMIT: i64 = 1 << 29;
        let mut out = ptr;
        if let Some(c) = k.var.as_const() {
            let c = c as i64;
            let off = if o == BPF_ADD {
                ptr.off.checked_add(c)
            } else {
                ptr.off.checked_sub(c)
            };
            match off {
                Some(off) if off.abs() < LIMIT => out.off = off,
                _ => {
                    return fail(
                        RejectKind::PointerArith,
                        format!("R{d} pointer offset {c} is out of range"),
                    )
                }
            }
        } else {
            if k.var.smin <= -LIMIT || k.var.smax >= LIMIT {
                return fail(
                    RejectKind::PointerArith,
                    format!("R{d} math between {desc} pointer and register with unbounded value is not allowed (bound it with 'if (x < N)' or 'x &= N' first)"),
                );
            }
            let var = Scalar::alu(o, &ptr.var, &k.var, 64, false);
            if var.smin <= -LIMIT || var.smax >= LIMIT {
                return fail(
                    RejectKind::PointerArith,
                    format!("R{d} pointer variable offset out of range"),
                );
            }
            out.var = var;
        }
        Ok(out)
    }

    fn cond_jump(&mut self, st: &mut State, pc: usize) -> R<Flow> {
        let i = self.insns[pc];
        let w = if class(i.code) == BPF_JMP32 { 32 } else { 64 };
        let Some(cmp) = Cmp::from_op(op(i.code)) else {
            return fail(
                RejectKind::InvalidInsn,
                format!("unknown opcode {:#04x}", i.code),
            );
        };
        let x = source(i.code) == BPF_X;
        let target = (pc as i64 + i64::from(i.off) + 1) as usize;
        let a = self.reg(st, i.dst)?;
        let imm = if w == 64 {
            i.imm as i64 as u64
        } else {
            u64::from(i.imm as u32)
        };
        let b = if x {
            self.reg(st, i.src)?
        } else {
            Reg::scalar(Scalar::konst(imm))
        };
        if a.is_scalar() && b.is_scalar() {
            if x && i.dst == i.src {
                // A register against itself: the order tests are decided;
                // `x & x` is `x`, so JSET tests `x != 0`.
                let test = match cmp {
                    Cmp::Eq | Cmp::Ge | Cmp::Le | Cmp::Sge | Cmp::Sle => {
                        self.mark_precise(st, &[i.dst], true);
                        return self.fork(st, pc, target, (true, false), |_, _| {});
                    }
                    Cmp::Ne | Cmp::Gt | Cmp::Lt | Cmp::Sgt | Cmp::Slt => {
                        self.mark_precise(st, &[i.dst], true);
                        return self.fork(st, pc, target, (false, true), |_, _| {});
                    }
                    Cmp::Set => Cmp::Ne,
                    Cmp::NotSet => Cmp::Eq,
                };
                let (mut at, mut af) = (a.var, a.var);
                let taken = Scalar::refine(test, &mut at, &mut Scalar::konst(0), w);
                let fall = Scalar::refine(test.negate(), &mut af, &mut Scalar::konst(0), w);
                if !(taken && fall) {
                    self.mark_precise(st, &[i.dst], true);
                }
                let (dst, id) = (i.dst, a.id);
                return self.fork(st, pc, target, (taken, fall), move |s, t| {
                    assign_scalar(s, dst, id, if t { at } else { af });
                });
            }
            let (mut at, mut bt) = (a.var, b.var);
            let taken = Scalar::refine(cmp, &mut at, &mut bt, w);
            let (mut af, mut bf) = (a.var, b.var);
            let fall = Scalar::refine(cmp.negate(), &mut af, &mut bf, w);
            if !(taken && fall) {
                // Linux's check_cond_jmp_op(): a branch decided by the
                // values relies on them exactly.
                let regs = [i.dst, if x { i.src } else { i.dst }];
                self.mark_precise(st, &regs, true);
            }
            let (dst, src) = (i.dst, if x { Some(i.src) } else { None });
            return self.fork(st, pc, target, (taken, fall), move |s, t| {
                let (av, bv) = if t { (at, bt) } else { (af, bf) };
                assign_scalar(s, dst, a.id, av);
                if let Some(sr) = src {
                    assign_scalar(s, sr, b.id, bv);
                }
            });
        }
        // Privileged (allow_ptr_leaks): pointers may be compared with
        // anything. Only a 64-bit equality test against NULL teaches the
        // verifier something; every other comparison explores both ways.
        let null_side = if a.is_ptr() && b.is_null_const() {
            Some(a)
        } else if b.is_ptr() && a.is_null_const() {
            Some(b)
        } else {
            None
        };
        if let (Some(p), Cmp::Eq | Cmp::Ne, 64) = (null_side, cmp, w) {
            let eq_taken = cmp == Cmp::Eq;
            if p.maybe_null {
                let id = p.id;
                return self.fork(st, pc, target, (true, true), move |s, t| {
                    let is_null = t == eq_taken;
                    mark_null(s, id, is_null);
                });
            }
            if p.not_null() {
                // The comparison with NULL is known: only one way is possible
                // (the scalar side is relied on exactly).
                if x {
                    let r = if a.is_ptr() { i.src } else { i.dst };
                    self.mark_precise(st, &[r], true);
                }
                return self.fork(st, pc, target, (!eq_taken, eq_taken), |_, _| {});
            }
        }
        self.fork(st, pc, target, (true, true), |_, _| {})
    }

    /// Continues with the feasible outcomes of a branch: the taken one is
    /// queued, the fall-through one continues.
    fn fork(
        &mut self,
        st: &mut State,
        pc: usize,
        target: usize,
        (taken, fall): (bool, bool),
        apply: impl Fn(&mut State, bool),
    ) -> R<Flow> {
        match (taken, fall) {
            (true, true) => {
                let mut other = st.clone();
                apply(&mut other, true);
                self.push_branch(other, target, pc)?;
                apply(st, false);
                Ok(Flow::Next(pc + 1))
            }
            (true, false) => {
                apply(st, true);
                Ok(Flow::Next(target))
            }
            (false, true) => {
                apply(st, false);
                Ok(Flow::Next(pc + 1))
            }
            (false, false) => Ok(Flow::Done),
        }
    }

    fn exit(&mut self, st: &mut State) -> R<Flow> {
        if st.frames.len() > 1 && st.cur().callback {
            return self.callback_exit(st);
        }
        if st.frames.len() > 1 {
            let r0 = st.cur().regs[0];
            let callee = st.frameno();
            if r0.ty == (RegType::Stack { frame: callee }) {
                return fail(
                    RejectKind::PointerLeak,
                    "cannot return a pointer to the function's own stack to the caller",
                );
            }
            if st
                .cur()
                .stack
                .iter()
                .any(|s| matches!(s.data, state::SlotData::Iter(_)))
            {
                return fail(RejectKind::Reference, "an iterator on this function's stack is not destroyed before the function returns");
            }
            let fr = st.frames.pop().expect("more than one frame");
            let caller = st.cur_mut();
            caller.regs[0] = r0;
            for r in 1..=5 {
                caller.regs[r] = Reg::NOT_INIT;
            }
            return Ok(Flow::Next(fr.callsite + 1));
        }
        if let Some(r) = st.refs.first() {
            let what = match r.kind {
                state::RefKind::Iter => "iterator (missing destroy)",
                state::RefKind::Ringbuf => "ring buffer record (missing submit or discard)",
                state::RefKind::Object => "object (missing release)",
            };
            // Linux's words, then where the reference was taken in the C
            // source: the instruction number alone means nothing to the
            // policy's author.
            let at = self
                .source_line(r.insn)
                .map(|l| match l.text.trim() {
                    "" => format!(" ({}:{})", l.file, l.line),
                    text => format!(" ({}:{}: `{text}`)", l.file, l.line),
                })
                .unwrap_or_default();
            return fail(
                RejectKind::Reference,
                format!(
                    "Unreleased reference id={} alloc_insn={}{at}: an acquired {what} is still held at exit",
                    r.id, r.insn
                ),
            );
        }
        if st.rcu_depth > 0 {
            return fail(
                RejectKind::Rcu,
                "bpf_rcu_read_lock is missing a matching bpf_rcu_read_unlock at exit",
            );
        }
        self.check_exit_unlocked(st)?;
        if let Some(g) = self.cur_global {
            // A global function returns a number (or nothing).
            let r0 = st.cur().regs[0];
            if !self.globals[g].returns_void && !r0.is_scalar() {
                return fail(
                    RejectKind::ReturnValue,
                    format!(
                        "At subprogram exit the register R0 is not a scalar value ({})",
                        crate::state::RegFmt(&r0, self.input.maps)
                    ),
                );
            }
            return Ok(Flow::Done);
        }
        if let Return::Int { min, max } = self.hook.ret {
            let r0 = st.cur().regs[0];
            if !r0.is_init() {
                return fail(
                    RejectKind::UninitRegister,
                    "R0 !read_ok: the return value is not set",
                );
            }
            // As Linux's check_return_code() for a program type with a
            // return range: the range check relies on the return value
            // exactly, so it is marked precise (an iterator loop then keeps
            // it rather than widening it) -- unless the instruction that
            // made it bounds it by itself (`return n & 1`), or any `int`
            // is allowed: Linux has no range rule, and so no precision mark,
            // for struct_ops callbacks, and converges on such loops.
            let any_int = min <= i64::from(i32::MIN) && max >= i64::from(i32::MAX);
            if !any_int && !self.range_guaranteed(0, min, max) {
                self.mark_precise(st, &[0], true);
            }
            // Privileged (allow_ptr_leaks): a pointer returned is some number.
            let (lo, hi) = if r0.is_ptr() {
                (i64::from(i32::MIN), i64::from(i32::MAX))
            } else {
                (i64::from(r0.var.s32min), i64::from(r0.var.s32max))
            };
            if lo < min || hi > max {
                return fail(
                    RejectKind::ReturnValue,
                    format!("At program exit the register R0 has smin={lo} smax={hi} should have been in [{min}, {max}]"),
                );
            }
        }
        Ok(Flow::Done)
    }
}

impl Reg {
    fn with_id(self, id: u32) -> Reg {
        Reg { id, ..self }
    }
}

/// Sets a refined scalar in `r` and in every copy linked to it by `id`.
fn assign_scalar(st: &mut State, r: u8, id: u32, v: Scalar) {
    st.cur_mut().regs[r as usize].var = v;
    if id != 0 {
        st.for_each_reg(|reg| {
            if reg.is_scalar() && reg.id == id {
                reg.var = v;
            }
        });
    }
}

/// Resolves a NULL check on every copy of a maybe-NULL pointer.
pub(crate) fn mark_null(st: &mut State, id: u32, is_null: bool) {
    let mut released = None;
    st.for_each_reg(|reg| {
        if reg.is_ptr() && reg.maybe_null && reg.id == id {
            if is_null {
                if reg.ref_obj_id != 0 {
                    released = Some(reg.ref_obj_id);
                }
                *reg = Reg::scalar(Scalar::konst(0));
            } else {
                reg.maybe_null = false;
            }
        }
    });
    if let Some(r) = released {
        // A NULL result holds no reference.
        st.refs.retain(|e| e.id != r);
    }
}

pub(crate) fn op_name(o: u8) -> &'static str {
    match o {
        BPF_MUL => "*=",
        BPF_DIV => "/=",
        BPF_OR => "|=",
        BPF_AND => "&=",
        BPF_LSH => "<<=",
        BPF_RSH => ">>=",
        BPF_MOD => "%=",
        BPF_XOR => "^=",
        BPF_ARSH => "s>>=",
        _ => "?",
    }
}
