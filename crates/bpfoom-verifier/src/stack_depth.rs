//! The combined stack limit across calls, as Linux checks it
//! (`grow_stack_state()`, `round_up_stack_depth()` and
//! `check_max_stack_depth()` in `kernel/bpf/verifier.c`).
//!
//! During exploration every stack access (loads, stores, atomics, helper and
//! kfunc memory, iterator slots) raises the depth of the *function* that owns
//! the frame, to the access's lowest offset rounded up to 8 bytes; the
//! deepest access on any path counts, whenever it happens (after a call
//! returns too). After the whole program (and every called global function)
//! is verified, the static call graph is walked from the program's entry:
//! every `call` of a subprogram and every `ld_imm64` of a callback (a
//! `bpf_loop` callback runs on top of its caller's frame) enters the
//! callee; each frame is rounded (16 bytes with the JIT, else at least 32
//! in steps of 32: the interpreter's granularity) and the frames of a
//! chain may add up to 512 bytes, at most 8 of them.

use std::collections::BTreeMap;

use bpfoom_insn::opcode::*;

use crate::check::Verifier;
use crate::state::{State, STACK_SIZE};

/// Linux's `MAX_CALL_FRAMES`.
const MAX_CALL_FRAMES: usize = 8;

/// One frame's share of the combined stack: Linux's `round_up_stack_depth()`.
pub(crate) fn round_up_stack_depth(jit: bool, depth: usize) -> usize {
    if jit {
        depth.div_ceil(16) * 16
    } else {
        // The interpreter allocates stack in 32-byte steps, and every frame
        // at least one step.
        depth.max(1).div_ceil(32) * 32
    }
}

/// A combined-stack failure: the call instruction that entered the frame
/// over the limit (0 for the entry itself) and Linux's message.
pub(crate) struct StackFail {
    pub insn: usize,
    pub reason: String,
}

/// The deepest chain below a function: its rounded bytes and frames.
#[derive(Clone, Copy)]
struct Below {
    bytes: usize,
    frames: usize,
}

impl Verifier<'_> {
    /// Records a stack access of frame `frame` reaching down to `min_off`
    /// (negative, from the frame pointer) for that frame's function.
    pub(crate) fn grow_stack(&mut self, st: &State, frame: usize, min_off: i64) {
        let Some(f) = st.frames.get(frame) else {
            return;
        };
        if min_off >= 0 {
            return;
        }
        let size = ((-min_off) as usize).div_ceil(8) * 8;
        let d = self.stack_depth.entry(f.subprog).or_insert(0);
        *d = (*d).max(size);
    }

    /// The deepest stack any path of the function starting at `start` used.
    pub(crate) fn depth_of(&self, start: usize) -> usize {
        self.stack_depth.get(&start).copied().unwrap_or(0)
    }

    /// Per function (ascending start), the functions it calls or passes as
    /// a callback, in instruction order, with the instruction that does it.
    fn callees(&self) -> BTreeMap<usize, Vec<(usize, usize)>> {
        let subs = &self.cfg.subprogs;
        let n = self.insns.len();
        let mut out = BTreeMap::new();
        for (k, &start) in subs.iter().enumerate() {
            let end = subs.get(k + 1).copied().unwrap_or(n);
            let mut v = Vec::new();
            let mut pc = start;
            while pc < end {
                let i = self.insns[pc];
                let target = (pc as i64 + i64::from(i.imm) + 1) as usize;
                if (i.code == CALL && i.src == BPF_PSEUDO_CALL)
                    || (i.code == LD_IMM64 && i.src == BPF_PSEUDO_FUNC)
                {
                    v.push((pc, target));
                }
                pc += if i.code == LD_IMM64 { 2 } else { 1 };
            }
            out.insert(start, v);
        }
        out
    }

    /// Linux's `check_max_stack_depth()` from the program's entry.
    pub(crate) fn check_max_stack_depth(&self) -> Result<(), StackFail> {
        let callees = self.callees();
        let mut below: BTreeMap<usize, Below> = BTreeMap::new();
        let mut visiting = Vec::new();
        for &s in callees.keys() {
            self.below(s, &callees, &mut below, &mut visiting);
        }
        self.walk_calls(0, 0, 0, 0, &callees, &below)
    }

    /// The deepest chain starting at `f` (memoised). A call cycle (Linux
    /// finds none before this check only for static functions) counts as
    /// unbounded, so the walk goes down it and stops at the frame limit.
    fn below(
        &self,
        f: usize,
        callees: &BTreeMap<usize, Vec<(usize, usize)>>,
        memo: &mut BTreeMap<usize, Below>,
        visiting: &mut Vec<usize>,
    ) -> Below {
        const UNBOUNDED: Below = Below {
            bytes: usize::MAX / 4,
            frames: usize::MAX / 4,
        };
        if let Some(b) = memo.get(&f) {
            return *b;
        }
        if visiting.contains(&f) {
            return UNBOUNDED;
        }
        visiting.push(f);
        let mut deepest = Below {
            bytes: 0,
            frames: 0,
        };
        for &(_, c) in callees.get(&f).map(Vec::as_slice).unwrap_or(&[]) {
            let b = self.below(c, callees, memo, visiting);
            deepest.bytes = deepest.bytes.max(b.bytes);
            deepest.frames = deepest.frames.max(b.frames);
        }
        visiting.pop();
        let own = round_up_stack_depth(self.opts.jit, self.depth_of(f));
        let b = Below {
            bytes: own.saturating_add(deepest.bytes),
            frames: deepest.frames.saturating_add(1),
        };
        // A result computed inside a cycle depends on where the cycle was
        // entered: only remember results outside one.
        if b.bytes < UNBOUNDED.bytes {
            memo.insert(f, b);
        }
        b
    }

    /// Linux's depth-first walk, in its order, so that the first chain
    /// over a limit is the one Linux reports. Subtrees whose deepest chain
    /// fits are skipped (the walk would find nothing there).
    fn walk_calls(
        &self,
        f: usize,
        depth: usize,
        frame: usize,
        via: usize,
        callees: &BTreeMap<usize, Vec<(usize, usize)>>,
        below: &BTreeMap<usize, Below>,
    ) -> Result<(), StackFail> {
        if let Some(b) = below.get(&f) {
            if depth + b.bytes <= STACK_SIZE as usize && frame + b.frames <= MAX_CALL_FRAMES {
                return Ok(());
            }
        }
        let depth = depth + round_up_stack_depth(self.opts.jit, self.depth_of(f));
        if depth > STACK_SIZE as usize {
            return Err(StackFail {
                insn: via,
                reason: format!(
                    "combined stack size of {} calls is {depth}. Too large",
                    frame + 1
                ),
            });
        }
        for &(pc, c) in callees.get(&f).map(Vec::as_slice).unwrap_or(&[]) {
            if frame + 1 >= MAX_CALL_FRAMES {
                return Err(StackFail {
                    insn: pc,
                    reason: format!("the call stack of {} frames is too deep !", frame + 1),
                });
            }
            self.walk_calls(c, depth, frame + 1, pc, callees, below)?;
        }
        Ok(())
    }

    /// Linux's `stack depth A+B+...` log line: each function's deepest
    /// stack, unrounded, in instruction order.
    pub(crate) fn stack_depth_line(&self) -> String {
        let parts: Vec<String> = self
            .cfg
            .subprogs
            .iter()
            .map(|&s| self.depth_of(s).to_string())
            .collect();
        format!("stack depth {}", parts.join("+"))
    }
}
