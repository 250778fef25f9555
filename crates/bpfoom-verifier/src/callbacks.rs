//! Callback functions (`bpf_loop`), verified as Linux 6.7+ does
//! (`push_callback_call()`, `set_loop_callback_state()` and the callback
//! branch of `prepare_func_exit()` in `kernel/bpf/verifier.c`):
//!
//! - the callback is a static subprogram named by `ld_imm64` with
//!   `BPF_PSEUDO_FUNC`; it gets r1 = an unknown scalar (the index) and r2 =
//!   the caller's r3 (a pointer to the caller's stack, or NULL); r3..r5 are
//!   unset;
//! - at the call the program goes on after the call (r0 an unknown scalar)
//!   and, as another branch, enters the callback in a new frame;
//! - the callback must return a scalar in [0, 1] (all 64 bits: Linux checks
//!   `bpf_callback_t`'s `long`); its exit goes back to the call instruction,
//!   which runs again: the callback is explored as if called any number of
//!   times, its effects on the caller's stack seen by the code after the
//!   call. The call instruction is a loop head like an iterator's next:
//!   states there are compared with their ancestors, scalars that keep
//!   changing are widened, and a state covered by an ancestor is pruned.

use bpfoom_insn::opcode::*;

use crate::check::{fail, Flow, Verifier, R};
use crate::scalar::Scalar;
use crate::state::{Frame, Reg, RegFmt, RegType, SlotData, State};
use crate::RejectKind;

/// Deepest bpf-to-bpf call chain, callback frames included (Linux's
/// `MAX_CALL_FRAMES`).
const MAX_FRAMES: usize = 8;

/// `BPF_FUNC_loop`.
pub(crate) const BPF_FUNC_LOOP: i32 = 181;

/// True when the instruction at `pc` calls a helper that calls back.
pub(crate) fn calls_callback(i: bpfoom_insn::Insn) -> bool {
    i.code == CALL && i.src == BPF_PSEUDO_HELPER && i.imm == BPF_FUNC_LOOP
}

impl Verifier<'_> {
    /// `ARG_PTR_TO_FUNC`: the callback's first instruction.
    pub(crate) fn func_arg(&self, st: &State, regno: u8) -> R<usize> {
        let r = self.reg(st, regno)?;
        match r.ty {
            RegType::Func { insn } if r.off == 0 => Ok(insn as usize),
            _ => fail(
                RejectKind::Call,
                format!(
                    "R{regno} type={} expected=func",
                    RegFmt(&r, self.input.maps)
                ),
            ),
        }
    }

    /// `ARG_PTR_TO_STACK_OR_NULL`.
    pub(crate) fn stack_or_null_arg(&self, st: &State, regno: u8) -> R<()> {
        let r = self.reg(st, regno)?;
        if r.is_null_const() || (matches!(r.ty, RegType::Stack { .. }) && !r.maybe_null) {
            return Ok(());
        }
        fail(
            RejectKind::Call,
            format!(
                "R{regno} type={} expected=fp or NULL",
                RegFmt(&r, self.input.maps)
            ),
        )
    }

    /// Queues the callback of the `bpf_loop` at `pc`, entered from `st` as
    /// it is before the call clobbers anything.
    pub(crate) fn push_loop_callback(&mut self, st: &State, pc: usize, target: usize) -> R<()> {
        if st.frames.len() >= MAX_FRAMES {
            return fail(
                RejectKind::Call,
                format!(
                    "the call stack of {} frames is too deep (at most {MAX_FRAMES})",
                    st.frames.len() + 1
                ),
            );
        }
        let mut cb = st.clone();
        cb.callbacks += 1;
        let n = cb.frames.len() as u8;
        let ctx = cb.cur().regs[3];
        let mut f = Frame::new(pc, target, n);
        f.callback = true;
        f.regs[1] = Reg::scalar(Scalar::UNKNOWN);
        f.regs[2] = ctx;
        cb.frames.push(f);
        self.push_branch(cb, target, pc)
    }

    /// The exit of a callback frame: checks r0 and goes back to the call.
    pub(crate) fn callback_exit(&mut self, st: &mut State) -> R<Flow> {
        let r0 = st.cur().regs[0];
        if !r0.is_init() {
            return fail(
                RejectKind::UninitRegister,
                "R0 !read_ok: the callback's return value is not set",
            );
        }
        if !r0.is_scalar() {
            return fail(RejectKind::PointerLeak, "R0 not a scalar value");
        }
        // As Linux's prepare_func_exit(): the return value is relied on exactly.
        self.mark_precise(st, &[0], true);
        if r0.var.smin < 0 || r0.var.smax > 1 {
            return fail(
                RejectKind::ReturnValue,
                format!(
                    "At callback return the register R0 has smin={} smax={} should have been in [0, 1]",
                    r0.var.smin, r0.var.smax
                ),
            );
        }
        if st
            .cur()
            .stack
            .iter()
            .any(|s| matches!(s.data, SlotData::Iter(_)))
        {
            return fail(
                RejectKind::Reference,
                "an iterator on the callback's stack is not destroyed before it returns",
            );
        }
        let fr = st.frames.pop().expect("a callback frame above the caller");
        Ok(Flow::Next(fr.callsite))
    }
}

/// A `bpf_loop` callback must be a static function (Linux checks the BTF
/// linkage of the `BPF_PSEUDO_FUNC` target: "callback function not
/// static"). The verifier proper sees no BTF, so this is checked on the
/// loaded object: the first reference to a global function, as (instruction,
/// function name).
pub(crate) fn global_callback(
    obj: &bpfoom_obj::Object,
    p: &bpfoom_obj::Program,
) -> Option<(usize, String)> {
    p.insns.iter().enumerate().find_map(|(pc, i)| {
        if i.code != LD_IMM64 || i.src != BPF_PSEUDO_FUNC {
            return None;
        }
        let target = (pc as i64 + i64::from(i.imm) + 1) as usize;
        let f = p.func_info.iter().find(|f| f.insn == target)?;
        let linkage = match obj.btf.type_by_id(f.type_id?).map(|t| &t.kind) {
            Some(bpfoom_obj::BtfKind::Func { linkage, .. }) => *linkage,
            _ => return None,
        };
        (linkage != 0).then(|| (pc, f.name.clone()))
    })
}
