//! Precision tracking, as Linux's `mark_chain_precision()` /
//! `backtrack_insn()` do it, in bpfoom's own terms.
//!
//! Most scalars a program computes never matter exactly: a counter that is
//! only stored, a value only passed on. Some do: the operand of a branch whose
//! outcome the verifier decided from the value, a scalar added to a pointer,
//! the size of a helper's memory argument, a callback's return value, a
//! constant array-map key. When the verifier relies on such a value it walks
//! the path it took backwards, instruction by instruction and then through
//! the remembered states (checkpoints) that led there, and marks every
//! register or spilled stack slot the value came from `precise` in those
//! states, until it reaches the instructions that made it (a constant, a
//! load from memory, a helper's result).
//!
//! bpfoom uses the marks where Linux uses them to decide what a loop may
//! forget: at an open-coded iterator's `next` call the round that runs again
//! has its imprecise scalars widened to unknown (`state::widen_imprecise`),
//! precise ones keep their values. Widening only ever generalises a state,
//! so a missing mark can never make the verifier accept a wrong program; it
//! can only make it converge where the kernel keeps counting. The parity test
//! (`tests/parity.rs`) checks the verdicts against the running kernel.
//!
//! Every executed instruction is recorded in the path's history (`Hist`)
//! since its last checkpoint, with the stack slot it spilled to or filled
//! from; a checkpoint keeps the history that led to it.

use bpfoom_insn::opcode::*;

use crate::check::{Hist, Verifier};
use crate::scalar::Scalar;
use crate::state::{Byte, SlotData, State};

/// Frames a call chain may have (the masks below are per frame).
const FRAMES: usize = 9;

/// What is still to be traced back: registers and 8-byte stack slots per
/// frame, and the frame the instruction being traced ran in.
#[derive(Default)]
pub(crate) struct Backtrack {
    frame: usize,
    regs: [u16; FRAMES],
    slots: [u64; FRAMES],
}

impl Backtrack {
    fn is_empty(&self) -> bool {
        self.regs.iter().all(|&r| r == 0) && self.slots.iter().all(|&s| s == 0)
    }
    fn reg(&self, r: u8) -> bool {
        self.regs[self.frame] & (1 << r) != 0
    }
    fn set(&mut self, r: u8) {
        if r < 10 {
            self.regs[self.frame] |= 1 << r;
        }
    }
    fn clear(&mut self, r: u8) {
        self.regs[self.frame] &= !(1 << r);
    }
    /// Clears r1-r5 of the current frame (arguments set up by the caller or
    /// by the helper that calls back).
    fn clear_args(&mut self) {
        self.regs[self.frame] &= !0x3e;
    }
}

impl Verifier<'_> {
    /// Marks registers `regs` of the current frame of `st` precise along the
    /// current path. `skip_current`: the instruction being checked is the
    /// last one in the history and does not itself produce the values.
    pub(crate) fn mark_precise(&mut self, st: &State, regs: &[u8], skip_current: bool) {
        let mut bt = Backtrack {
            frame: st.frames.len().saturating_sub(1).min(FRAMES - 1),
            ..Backtrack::default()
        };
        for &r in regs {
            if st.cur().regs[r as usize].is_scalar() {
                bt.set(r);
            }
        }
        self.backtrack(bt, skip_current);
    }

    /// True when the value register `reg` holds now lies in `lo..=hi` (its
    /// low 32 bits, signed) whatever the inputs of the instruction that made
    /// it: following copies back, the last instruction that computed it is
    /// an ALU operation with a constant whose result on *any* input is in
    /// range (`r &= 1`, `r >>= 62`, ...). The value then needs no precision
    /// for a range check: its sources may be widened freely.
    ///
    /// Used for bpfoom's return-range rule, which Linux does not have for
    /// struct_ops callbacks returning `int` (`check_return_code()` returns
    /// before its range check and precision mark for them): marking a
    /// loop counter precise because the program returns `count & 1` would
    /// keep an iterator loop from converging where Linux converges.
    pub(crate) fn range_guaranteed(&self, reg: u8, lo: i64, hi: i64) -> bool {
        let mut t = reg;
        // The current instruction (the exit) is the last history entry.
        let own = &self.hist[..self.hist.len().saturating_sub(1)];
        let mut chain = vec![own];
        let mut p = self.parent;
        while let Some(c) = p {
            chain.push(&self.ckpts[c].hist);
            p = self.ckpts[c].parent;
        }
        for h in chain.into_iter().flat_map(|h| h.iter().rev()) {
            let i = self.insns[h.pc as usize];
            match class(i.code) {
                BPF_ALU | BPF_ALU64 if i.dst == t => {
                    let o = op(i.code);
                    if source(i.code) == BPF_X {
                        if o == BPF_MOV && i.off == 0 && i.src != t {
                            t = i.src;
                            continue;
                        }
                        return false;
                    }
                    if matches!(o, BPF_MOV | BPF_NEG | BPF_END) {
                        return false;
                    }
                    let w = if class(i.code) == BPF_ALU64 { 64 } else { 32 };
                    let k = if w == 64 {
                        i.imm as i64 as u64
                    } else {
                        u64::from(i.imm as u32)
                    };
                    let v = Scalar::alu(o, &Scalar::UNKNOWN, &Scalar::konst(k), w, i.off == 1);
                    return lo <= i64::from(v.s32min) && i64::from(v.s32max) <= hi;
                }
                BPF_LD | BPF_LDX if i.dst == t => return false,
                BPF_STX if mode(i.code) == BPF_ATOMIC => {
                    let fetch = i.imm & BPF_FETCH != 0 && i.src == t;
                    if fetch || (i.imm == BPF_CMPXCHG && t == 0) {
                        return false;
                    }
                }
                BPF_JMP | BPF_JMP32 => match op(i.code) {
                    // Another frame's instructions follow in the history.
                    BPF_EXIT => return false,
                    BPF_CALL
                        if i.src == BPF_PSEUDO_CALL
                            || crate::callbacks::calls_callback(i)
                            || t <= 5 =>
                    {
                        return false
                    }
                    _ => {}
                },
                _ => {}
            }
        }
        false
    }

    /// Marks the spilled scalar in stack slot `slot` of frame `frame` precise
    /// along the current path.
    pub(crate) fn mark_slot_precise(&mut self, st: &State, frame: usize, slot: usize) {
        if frame >= FRAMES || slot >= 64 {
            return;
        }
        let mut bt = Backtrack {
            frame: st.frames.len().saturating_sub(1).min(FRAMES - 1),
            ..Backtrack::default()
        };
        bt.slots[frame] |= 1 << slot;
        self.backtrack(bt, true);
    }

    /// Records in the history that the current instruction spilled a
    /// register to, or filled one from, slot `slot` of frame `frame`.
    pub(crate) fn note_stack_access(&mut self, frame: usize, slot: usize) {
        if let Some(h) = self.hist.last_mut() {
            h.stack = Some((frame as u8, slot.min(255) as u8));
        }
    }

    /// Linux's `propagate_precision()`: `cur` was pruned because the
    /// remembered state `old` (checkpoint `old`) covers it, so whatever that
    /// state needed exactly the current path needs exactly too.
    pub(crate) fn propagate_precision(&mut self, old: usize, cur: &State) {
        let mut bt = Backtrack {
            frame: cur.frames.len().saturating_sub(1).min(FRAMES - 1),
            ..Backtrack::default()
        };
        for (f, fr) in self.ckpts[old].st.frames.iter().enumerate().take(FRAMES) {
            for (r, reg) in fr.regs.iter().enumerate() {
                if reg.is_scalar() && reg.precise {
                    bt.regs[f] |= 1 << r;
                }
            }
            for (s, slot) in fr.stack.iter().enumerate().take(64) {
                if let SlotData::Spill { reg, .. } = slot.data {
                    if reg.is_scalar() && reg.precise && slot.bytes.contains(&Byte::Spill) {
                        bt.slots[f] |= 1 << s;
                    }
                }
            }
        }
        if !bt.is_empty() {
            self.backtrack(bt, false);
        }
    }

    /// The checkpoint of an iterator loop's previous round at `pc`, as
    /// Linux's `find_prev_entry()` finds it: the newest state remembered at
    /// `pc` that is still being explored (so it is an ancestor of the
    /// current path), with the same call chain, and above the current
    /// round's own checkpoint (the parent). Looking in the states
    /// remembered at `pc` rather than walking the path's ancestors keeps
    /// this cheap when the loop is nested and the path is long.
    pub(crate) fn prev_round(&self, st: &State, pc: usize) -> Option<usize> {
        let cur = self.parent?;
        let depth = self.ckpts[cur].depth;
        self.explored[pc].iter().rev().copied().find(|&c| {
            let ck = &self.ckpts[c];
            c != cur
                && ck.branches > 0
                && ck.depth < depth
                && ck.st.frames.len() == st.frames.len()
                && ck
                    .st
                    .frames
                    .iter()
                    .zip(&st.frames)
                    .all(|(a, b)| a.callsite == b.callsite)
        })
    }

    fn backtrack(&mut self, mut bt: Backtrack, skip_current: bool) {
        // The current path's own history first (the current instruction is
        // the last entry), then each checkpoint's, newest first.
        let hist = std::mem::take(&mut self.hist);
        let n = hist.len() - usize::from(skip_current && !hist.is_empty());
        let subseq = hist.get(n).map(|h| h.pc as usize);
        self.walk(&hist[..n], subseq, &mut bt);
        self.hist = hist;
        let mut p = self.parent;
        while let Some(c) = p {
            if bt.is_empty() {
                return;
            }
            let ck = &mut self.ckpts[c];
            mark_state(&mut ck.st, &mut bt);
            if bt.is_empty() {
                return;
            }
            let hist = std::mem::take(&mut ck.hist);
            let subseq = Some(ck.pc);
            p = ck.parent;
            self.walk(&hist, subseq, &mut bt);
            self.ckpts[c].hist = hist;
        }
    }

    /// Traces `hist` backwards; `subseq` is the instruction that ran after
    /// its last entry.
    fn walk(&self, hist: &[Hist], mut subseq: Option<usize>, bt: &mut Backtrack) {
        for h in hist.iter().rev() {
            if bt.is_empty() {
                return;
            }
            self.backtrack_insn(h, subseq, bt);
            subseq = Some(h.pc as usize);
        }
    }

    /// One instruction backwards: which of its inputs the wanted outputs
    /// came from.
    fn backtrack_insn(&self, h: &Hist, subseq: Option<usize>, bt: &mut Backtrack) {
        let pc = h.pc as usize;
        let i = self.insns[pc];
        let (dst, src) = (i.dst, i.src);
        let x = source(i.code) == BPF_X;
        match class(i.code) {
            BPF_ALU | BPF_ALU64 => {
                if !bt.reg(dst) {
                    return;
                }
                if op(i.code) == BPF_MOV {
                    bt.clear(dst);
                    if x {
                        bt.set(src);
                    }
                } else if x {
                    // dst = dst op src: both decide the result.
                    bt.set(src);
                }
            }
            BPF_LD => {
                // ld_imm64: a constant (or a map / function address).
                bt.clear(dst);
            }
            BPF_LDX => {
                if !bt.reg(dst) {
                    return;
                }
                bt.clear(dst);
                // A fill of a spilled register: the slot held the value.
                if let Some((f, s)) = h.stack {
                    if (f as usize) < FRAMES && s < 64 {
                        bt.slots[f as usize] |= 1 << s;
                    }
                }
            }
            BPF_ST | BPF_STX => {
                let Some((f, s)) = h.stack else { return };
                let (f, s) = (f as usize, s as u32);
                if f >= FRAMES || s >= 64 || bt.slots[f] & (1 << s) == 0 {
                    return;
                }
                bt.slots[f] &= !(1 << s);
                if class(i.code) == BPF_STX {
                    bt.set(src);
                }
            }
            _ => match op(i.code) {
                BPF_CALL if i.src == BPF_PSEUDO_CALL => {
                    let target = (pc as i64 + i64::from(i.imm) + 1) as usize;
                    if subseq == Some(target) && bt.frame > 0 {
                        // Back out of the callee it entered: its arguments
                        // came from the caller's r1-r5.
                        let args = bt.regs[bt.frame] & 0x3e;
                        bt.regs[bt.frame] = 0;
                        bt.slots[bt.frame] = 0;
                        bt.frame -= 1;
                        bt.regs[bt.frame] |= args;
                    } else {
                        // A global function, verified on its own: r0 is its
                        // result.
                        bt.clear(0);
                        bt.clear_args();
                    }
                }
                BPF_CALL => {
                    if subseq.is_some_and(|s| s != pc + 1)
                        && crate::callbacks::calls_callback(i)
                        && bt.frame > 0
                    {
                        // Back out of the callback the helper entered: its
                        // arguments come from the helper, not from registers.
                        bt.regs[bt.frame] = 0;
                        bt.slots[bt.frame] = 0;
                        bt.frame -= 1;
                    } else {
                        // A helper or kfunc sets r0 and clobbers r1-r5.
                        bt.clear(0);
                        bt.clear_args();
                    }
                }
                BPF_EXIT => {
                    // Back into the function that returned here.
                    let Some(s) = subseq else { return };
                    let from_call = s > 0 && {
                        let c = self.insns[s - 1];
                        c.code == (BPF_JMP | BPF_CALL)
                            && c.src == BPF_PSEUDO_CALL
                            && (s as i64 - 1 + i64::from(c.imm) + 1) as usize != s
                    };
                    let r0 = from_call && bt.reg(0);
                    bt.clear(0);
                    if bt.frame + 1 >= FRAMES {
                        return;
                    }
                    bt.frame += 1;
                    bt.regs[bt.frame] = 0;
                    bt.slots[bt.frame] = 0;
                    if r0 {
                        bt.set(0);
                    }
                }
                BPF_JA => {}
                _ => {
                    // A conditional jump on two registers: the outcome the
                    // path took depends on both.
                    if x && (bt.reg(dst) || bt.reg(src)) {
                        bt.set(dst);
                        bt.set(src);
                    }
                }
            },
        }
    }
}

/// Marks what `bt` asks for in a remembered state, and stops tracing what
/// is not a scalar there or was marked before (its origin is marked too).
fn mark_state(st: &mut State, bt: &mut Backtrack) {
    if st.frames.is_empty() {
        // A forgotten state: nothing to mark, the trace goes on.
        return;
    }
    for f in 0..FRAMES {
        let Some(fr) = st.frames.get_mut(f) else {
            bt.regs[f] = 0;
            bt.slots[f] = 0;
            continue;
        };
        for r in 0..10 {
            if bt.regs[f] & (1 << r) == 0 {
                continue;
            }
            let reg = &mut fr.regs[r];
            if !reg.is_scalar() || reg.precise {
                bt.regs[f] &= !(1 << r);
            } else {
                reg.precise = true;
            }
        }
        for s in 0..64 {
            if bt.slots[f] & (1 << s) == 0 {
                continue;
            }
            let keep = match fr.stack.get_mut(s) {
                Some(slot) if slot.bytes.contains(&Byte::Spill) => match &mut slot.data {
                    SlotData::Spill { reg, .. } if reg.is_scalar() && !reg.precise => {
                        reg.precise = true;
                        true
                    }
                    _ => false,
                },
                _ => false,
            };
            if !keep {
                bt.slots[f] &= !(1 << s);
            }
        }
    }
}
