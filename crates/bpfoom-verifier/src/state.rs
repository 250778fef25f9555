//! Abstract machine state: registers, stack slots, frames, references.

use std::fmt::{self, Write as _};

use bpfoom_abi::types::{HostTypes, TypeId};

use crate::scalar::Scalar;
use crate::MapInfo;

/// Stack bytes per frame.
pub(crate) const STACK_SIZE: i64 = 512;

/// How far a typed kernel pointer may be trusted.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Trust {
    /// A callback argument, an acquired or kfunc-returned object.
    Trusted,
    /// Valid while the RCU read section that produced it lasts.
    Rcu,
    /// Loaded from a field of another object: readable (a load through NULL
    /// reads 0), never passed where trust is required.
    Walked,
}

/// What a register holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum RegType {
    /// Never written (or invalidated by a call or a release).
    NotInit,
    /// A number.
    Scalar,
    /// The callback's u64 argument array.
    Ctx,
    /// A pointer into the stack of frame `frame`.
    Stack { frame: u8 },
    /// A pointer into a value of map `map`.
    MapValue { map: u32 },
    /// A map reference loaded by `ld_imm64`.
    ConstMap { map: u32 },
    /// A typed kernel object.
    Btf { ty: TypeId, trust: Trust },
    /// Memory of a known size (a ring buffer record).
    Mem { size: u32 },
    /// Read-only memory of a known size (`int *` from `bpf_iter_num_next`).
    RdonlyMem { size: u32 },
    /// A static subprogram starting at instruction `insn` (`ld_imm64` with
    /// `BPF_PSEUDO_FUNC`), only good as a callback argument.
    Func { insn: u32 },
}

/// One register.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) struct Reg {
    pub ty: RegType,
    /// Fixed part of a pointer's offset.
    pub off: i64,
    /// A scalar's value, or a pointer's variable offset.
    pub var: Scalar,
    /// Links copies: NULL checks on pointers, bounds on scalars.
    pub id: u32,
    /// The acquired reference this pointer depends on (0 = none).
    pub ref_obj_id: u32,
    /// The pointer may be NULL and must be checked before use.
    pub maybe_null: bool,
    /// A scalar whose exact value some later instruction relied on (Linux's
    /// `precise` mark, set by backtracking in remembered states; see
    /// `precision.rs`): never widened around an iterator loop.
    pub precise: bool,
}

impl Reg {
    pub const NOT_INIT: Reg = Reg {
        ty: RegType::NotInit,
        off: 0,
        var: Scalar::UNKNOWN,
        id: 0,
        ref_obj_id: 0,
        maybe_null: false,
        precise: false,
    };

    pub fn scalar(s: Scalar) -> Reg {
        Reg {
            ty: RegType::Scalar,
            var: s,
            ..Reg::NOT_INIT
        }
    }

    pub fn ptr(ty: RegType) -> Reg {
        Reg {
            ty,
            var: Scalar::konst(0),
            ..Reg::NOT_INIT
        }
    }

    pub fn is_ptr(&self) -> bool {
        !matches!(self.ty, RegType::NotInit | RegType::Scalar)
    }

    pub fn is_scalar(&self) -> bool {
        self.ty == RegType::Scalar
    }

    pub fn is_init(&self) -> bool {
        self.ty != RegType::NotInit
    }

    /// A scalar known to be 0.
    pub fn is_null_const(&self) -> bool {
        self.is_scalar() && self.var.as_const() == Some(0)
    }

    /// A pointer that cannot be NULL at run time.
    pub fn not_null(&self) -> bool {
        !self.maybe_null
            && match self.ty {
                RegType::Btf { trust, .. } => trust != Trust::Walked,
                RegType::NotInit | RegType::Scalar => false,
                _ => true,
            }
    }
}

/// What a stack byte holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Byte {
    Invalid,
    Misc,
    Zero,
    Spill,
    Iter,
}

/// An open-coded iterator living in stack slots.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) struct IterSlot {
    pub kind: &'static str,
    /// Slot index within the iterator (0 = the one the pointer points to).
    pub index: u8,
    pub drained: bool,
    pub depth: u32,
    pub ref_id: u32,
    /// Created by an RCU-protected constructor: its elements are RCU pointers.
    pub rcu: bool,
}

/// Extra meaning of an 8-byte slot.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum SlotData {
    None,
    /// A register spilled at byte `start` (within the slot) of `size` bytes.
    Spill {
        reg: Reg,
        start: u8,
        size: u8,
    },
    Iter(IterSlot),
}

/// 8 bytes of stack.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) struct Slot {
    pub bytes: [Byte; 8],
    pub data: SlotData,
}

impl Slot {
    pub const EMPTY: Slot = Slot {
        bytes: [Byte::Invalid; 8],
        data: SlotData::None,
    };
}

/// One function frame.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) struct Frame {
    pub regs: [Reg; 11],
    /// Slot `i` covers bytes `fp-8(i+1) .. fp-8i`; absent slots are invalid.
    pub stack: Vec<Slot>,
    /// Instruction of the call that created this frame (main: usize::MAX).
    pub callsite: usize,
    /// First instruction of the function.
    pub subprog: usize,
    /// A callback frame (`bpf_loop`): it returns to its call instruction,
    /// which runs again, and its r0 must be 0 or 1.
    pub callback: bool,
}

impl Frame {
    pub fn new(callsite: usize, subprog: usize, frameno: u8) -> Frame {
        let mut regs = [Reg::NOT_INIT; 11];
        regs[10] = Reg::ptr(RegType::Stack { frame: frameno });
        Frame {
            regs,
            stack: Vec::new(),
            callsite,
            subprog,
            callback: false,
        }
    }

    /// Slot and byte index of stack offset `off` (`-512 ..= -1`).
    pub fn locate(off: i64) -> (usize, usize) {
        let b = (-off - 1) as usize;
        (b / 8, 7 - b % 8)
    }

    pub fn slot(&self, i: usize) -> &Slot {
        self.stack.get(i).unwrap_or(&Slot::EMPTY)
    }

    pub fn slot_mut(&mut self, i: usize) -> &mut Slot {
        if self.stack.len() <= i {
            self.stack.resize(i + 1, Slot::EMPTY);
        }
        &mut self.stack[i]
    }
}

/// What an acquired reference is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum RefKind {
    Object,
    Ringbuf,
    Iter,
}

/// An acquired reference.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) struct RefEntry {
    pub id: u32,
    pub kind: RefKind,
    pub insn: usize,
}

/// The whole abstract state of one path.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub(crate) struct State {
    pub frames: Vec<Frame>,
    pub refs: Vec<RefEntry>,
    pub rcu_depth: u32,
    /// The `bpf_spin_lock` held, if any.
    pub lock: Option<crate::spin_lock::Lock>,
    /// Callback calls entered on this path (Linux's
    /// `callback_unroll_depth`): never compared for pruning, only by the
    /// infinite-loop check, for which a callback body reached again by the
    /// next call of the same callback is progress, not a loop.
    pub callbacks: u32,
}

impl State {
    pub fn cur(&self) -> &Frame {
        // A state always has at least the main frame.
        &self.frames[self.frames.len() - 1]
    }
    pub fn cur_mut(&mut self) -> &mut Frame {
        let n = self.frames.len() - 1;
        &mut self.frames[n]
    }
    pub fn frameno(&self) -> u8 {
        (self.frames.len() - 1) as u8
    }

    /// Every register and spilled register, in all frames.
    pub fn for_each_reg(&mut self, mut f: impl FnMut(&mut Reg)) {
        for fr in &mut self.frames {
            for r in &mut fr.regs {
                f(r);
            }
            for s in &mut fr.stack {
                if let SlotData::Spill { reg, .. } = &mut s.data {
                    f(reg);
                }
            }
        }
    }
}

/// A consistent renaming of ids between an old and a current state.
#[derive(Default)]
pub(crate) struct IdMap(Vec<(u32, u32)>);

impl IdMap {
    pub fn check(&mut self, old: u32, cur: u32) -> bool {
        if old == 0 && cur == 0 {
            return true;
        }
        if old == 0 || cur == 0 {
            return false;
        }
        for &(o, c) in &self.0 {
            if o == old || c == cur {
                return o == old && c == cur;
            }
        }
        self.0.push((old, cur));
        true
    }
}

/// How loosely iterator slots compare.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Cmp {
    /// `old` covers `cur` (pruning against a finished state).
    Subsume,
    /// Like `Subsume` but iterator depths may differ (at an iterator's next).
    IterLoop,
    /// Like `IterLoop` but scalar values may differ (candidates for widening).
    Shape,
}

/// True when every behaviour from `cur` was already covered by exploring
/// `old`. `live` gives, per frame, the registers that may still be read.
pub(crate) fn covers(old: &State, cur: &State, live: &[u16], mode: Cmp) -> bool {
    if old.frames.len() != cur.frames.len()
        || old.refs.len() != cur.refs.len()
        || old.rcu_depth != cur.rcu_depth
        || old.lock.is_some() != cur.lock.is_some()
    {
        return false;
    }
    let mut ids = IdMap::default();
    if let (Some(o), Some(c)) = (old.lock, cur.lock) {
        if o.map != c.map || !ids.check(o.id, c.id) {
            return false;
        }
    }
    for (i, (fo, fc)) in old.frames.iter().zip(&cur.frames).enumerate() {
        if fo.callsite != fc.callsite || fo.subprog != fc.subprog || fo.callback != fc.callback {
            return false;
        }
        let mask = live.get(i).copied().unwrap_or(0x7ff);
        for r in 0..11 {
            if mask & (1 << r) != 0
                && !reg_covers(&fo.regs[r], &fc.regs[r], &mut ids, mode == Cmp::Shape)
            {
                return false;
            }
        }
        let n = fo.stack.len().max(fc.stack.len());
        for s in 0..n {
            if !slot_covers(fo.slot(s), fc.slot(s), &mut ids, mode) {
                return false;
            }
        }
    }
    // Every old reference must correspond to a current one of the same kind.
    old.refs.iter().all(|o| {
        cur.refs
            .iter()
            .any(|c| c.kind == o.kind && ids.check(o.id, c.id))
    })
}

fn reg_covers(old: &Reg, cur: &Reg, ids: &mut IdMap, shape: bool) -> bool {
    if old.ty == RegType::NotInit {
        // Old never read it on any path (or it would have failed).
        return true;
    }
    if old.ty != cur.ty {
        return false;
    }
    if old.ty == RegType::Scalar && shape {
        return true;
    }
    if old.ty == RegType::Scalar {
        // An old unlinked scalar did not rely on copies being refined together.
        return old.var.contains(&cur.var) && (old.id == 0 || ids.check(old.id, cur.id));
    }
    old.off == cur.off
        && old.maybe_null == cur.maybe_null
        && old.var.contains(&cur.var)
        && (!old.maybe_null || ids.check(old.id, cur.id))
        && ids.check(old.ref_obj_id, cur.ref_obj_id)
}

fn slot_covers(old: &Slot, cur: &Slot, ids: &mut IdMap, mode: Cmp) -> bool {
    for b in 0..8 {
        let ok = match (old.bytes[b], cur.bytes[b]) {
            (Byte::Invalid, _) => true,
            // Privileged (allow_uninit_stack), as Linux's stacksafe(): a
            // state that was safe with unknown bytes is safe with any.
            (Byte::Misc, Byte::Misc | Byte::Zero | Byte::Invalid | Byte::Spill) => true,
            (Byte::Zero, Byte::Zero) => true,
            (Byte::Zero, Byte::Spill) => {
                matches!(cur.data, SlotData::Spill { reg, .. } if reg.is_null_const())
            }
            (Byte::Spill, Byte::Spill) | (Byte::Iter, Byte::Iter) => true,
            _ => false,
        };
        if !ok {
            return false;
        }
    }
    match (old.data, cur.data) {
        (
            SlotData::Spill {
                reg: o,
                start: so,
                size: zo,
            },
            SlotData::Spill {
                reg: c,
                start: sc,
                size: zc,
            },
        ) => {
            if !old.bytes.contains(&Byte::Spill) {
                return true;
            }
            so == sc && zo == zc && reg_covers(&o, &c, ids, mode == Cmp::Shape)
        }
        (SlotData::Spill { .. }, _) => !old.bytes.contains(&Byte::Spill),
        (SlotData::Iter(o), SlotData::Iter(c)) => {
            o.kind == c.kind
                && o.index == c.index
                && o.drained == c.drained
                && o.rcu == c.rcu
                && (o.depth == c.depth || mode != Cmp::Subsume)
                && ids.check(o.ref_id, c.ref_id)
        }
        (SlotData::Iter(_), _) => false,
        (SlotData::None, _) => true,
    }
}

/// Generalises `cur` against `old` around a callback loop (a helper that
/// calls back, e.g. `bpf_loop`): scalars that differ become the join of both
/// (unknown when `hard`), and links between scalar copies are dropped, so the
/// loop reaches a state that covers the next round.
pub(crate) fn widen(old: &State, cur: &mut State, hard: bool) {
    let w = |o: &Reg, c: &mut Reg| {
        if o.is_scalar() && c.is_scalar() {
            let v = if o.var == c.var {
                c.var
            } else if hard {
                Scalar::UNKNOWN
            } else {
                o.var.join(&c.var)
            };
            *c = Reg::scalar(v);
        }
    };
    for (fo, fc) in old.frames.iter().zip(cur.frames.iter_mut()) {
        for (o, c) in fo.regs.iter().zip(fc.regs.iter_mut()) {
            w(o, c);
        }
        for (so, sc) in fo.stack.iter().zip(fc.stack.iter_mut()) {
            if let (SlotData::Spill { reg: o, .. }, SlotData::Spill { reg: c, .. }) =
                (&so.data, &mut sc.data)
            {
                w(o, c);
            }
        }
    }
}

/// Linux's `widen_imprecise_scalars()`: around an open-coded iterator loop,
/// every scalar of `cur` (the state that runs one more round) that differs
/// from the same register or spilled slot of `old` (the loop's previous
/// round) becomes unknown, unless either side is marked precise. Precise
/// scalars keep their exact values, so a loop whose counter decides a later
/// branch is counted out round by round, as the kernel does.
pub(crate) fn widen_imprecise(old: &State, cur: &mut State) {
    // `unknown` is what the register or slot can hold at all: a spill of
    // fewer than 8 bytes stays within its size.
    let w = |o: &Reg, c: &mut Reg, unknown: Scalar| {
        if o.is_scalar() && c.is_scalar() && !o.precise && !c.precise && o.var != c.var {
            *c = Reg::scalar(unknown);
        }
    };
    for (fo, fc) in old.frames.iter().zip(cur.frames.iter_mut()) {
        for (o, c) in fo.regs.iter().zip(fc.regs.iter_mut()) {
            w(o, c, Scalar::UNKNOWN);
        }
        for (so, sc) in fo.stack.iter().zip(fc.stack.iter_mut()) {
            if !so.bytes.contains(&Byte::Spill) || !sc.bytes.contains(&Byte::Spill) {
                continue;
            }
            if let (
                SlotData::Spill {
                    reg: o,
                    start: s0,
                    size: z0,
                },
                SlotData::Spill {
                    reg: c,
                    start: s1,
                    size: z1,
                },
            ) = (&so.data, &mut sc.data)
            {
                if *s0 == *s1 && *z0 == *z1 {
                    let unknown = if *z1 >= 8 {
                        Scalar::UNKNOWN
                    } else {
                        Scalar::sized(u32::from(*z1))
                    };
                    w(o, c, unknown);
                }
            }
        }
    }
}

/// Drops scalar ids that only one register or slot holds: they link
/// nothing, and would only make states look different.
pub(crate) fn clear_singular_ids(st: &mut State) {
    let mut count: Vec<(u32, u32)> = Vec::new();
    st.for_each_reg(|r| {
        if r.is_scalar() && r.id != 0 {
            match count.iter_mut().find(|(id, _)| *id == r.id) {
                Some((_, n)) => *n += 1,
                None => count.push((r.id, 1)),
            }
        }
    });
    st.for_each_reg(|r| {
        if r.is_scalar() && r.id != 0 && count.iter().any(|&(id, n)| id == r.id && n == 1) {
            r.id = 0;
        }
    });
}

/// Formats registers like the kernel log: `R1=ctx() R10=fp0`.
pub(crate) fn fmt_regs(st: &State, maps: &[MapInfo]) -> String {
    let mut out = String::new();
    let fr = st.cur();
    for (i, r) in fr.regs.iter().enumerate() {
        if r.is_init() {
            let _ = write!(
                out,
                "{}R{i}={}",
                if out.is_empty() { "" } else { " " },
                RegFmt(r, maps)
            );
        }
    }
    for (i, s) in fr.stack.iter().enumerate() {
        let off = -8 * (i as i64 + 1);
        let desc = match s.data {
            SlotData::Spill { reg, .. } if s.bytes.contains(&Byte::Spill) => {
                format!("{}", RegFmt(&reg, maps))
            }
            SlotData::Iter(it) if it.index == 0 => {
                format!(
                    "iter_{}(ref_id={},state={},depth={})",
                    it.kind,
                    it.ref_id,
                    if it.drained { "drained" } else { "active" },
                    it.depth
                )
            }
            _ => s
                .bytes
                .iter()
                .map(|b| match b {
                    Byte::Invalid => '?',
                    Byte::Misc => 'm',
                    Byte::Zero => '0',
                    Byte::Spill => 'r',
                    Byte::Iter => 'i',
                })
                .collect(),
        };
        if s.bytes != [Byte::Invalid; 8] {
            let _ = write!(out, " fp{off}={desc}");
        }
    }
    if !st.refs.is_empty() {
        let ids: Vec<String> = st.refs.iter().map(|r| r.id.to_string()).collect();
        let _ = write!(out, " refs={}", ids.join(","));
    }
    out
}

/// Display adapter for one register.
pub(crate) struct RegFmt<'a>(pub &'a Reg, pub &'a [MapInfo]);

impl fmt::Display for RegFmt<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (r, maps) = (self.0, self.1);
        let map_name = |m: u32| maps.get(m as usize).map_or("?", |m| m.name.as_str());
        let null = if r.maybe_null { "_or_null" } else { "" };
        let mut extra: Vec<String> = Vec::new();
        if r.maybe_null || (r.id != 0 && r.is_ptr()) {
            extra.push(format!("id={}", r.id));
        }
        if r.ref_obj_id != 0 {
            extra.push(format!("ref_obj_id={}", r.ref_obj_id));
        }
        if r.off != 0 && !matches!(r.ty, RegType::Stack { .. }) {
            extra.push(format!("off={}", r.off));
        }
        if r.is_ptr() && r.var.as_const() != Some(0) {
            extra.push(format!("var_off={}", r.var));
        }
        match r.ty {
            RegType::NotInit => write!(f, "?"),
            RegType::Scalar => {
                if r.id != 0 && r.var.as_const().is_none() {
                    let s = r.var.to_string();
                    let inner = s.trim_start_matches("scalar(").trim_end_matches(')');
                    let sep = if inner.is_empty() { "" } else { "," };
                    write!(f, "scalar(id={}{sep}{inner})", r.id)
                } else {
                    write!(f, "{}", r.var)
                }
            }
            RegType::Stack { frame } => {
                if frame != 0 {
                    write!(f, "fp[{frame}]{}", r.off)?;
                } else {
                    write!(f, "fp{}", r.off)?;
                }
                if r.var.as_const() != Some(0) {
                    write!(f, "(var_off={})", r.var)?;
                }
                Ok(())
            }
            RegType::Ctx => write!(f, "ctx({})", extra.join(",")),
            RegType::MapValue { map } => {
                extra.insert(0, format!("map={}", map_name(map)));
                write!(f, "map_value{null}({})", extra.join(","))
            }
            RegType::ConstMap { map } => write!(f, "map_ptr(map={})", map_name(map)),
            RegType::Mem { size } => {
                extra.insert(0, format!("sz={size}"));
                write!(f, "mem{null}({})", extra.join(","))
            }
            RegType::RdonlyMem { size } => {
                extra.insert(0, format!("sz={size}"));
                write!(f, "rdonly_mem{null}({})", extra.join(","))
            }
            RegType::Func { insn } => write!(f, "func(insn={insn})"),
            RegType::Btf { ty, trust } => {
                let h = HostTypes::get();
                let name = h.ty(ty).and_then(|t| t.name()).unwrap_or("?");
                let pre = match (trust, r.maybe_null) {
                    (_, true) => "ptr_or_null_",
                    (Trust::Trusted, false) => "trusted_ptr_",
                    (Trust::Rcu, false) => "rcu_ptr_",
                    (Trust::Walked, false) => "ptr_",
                };
                write!(f, "{pre}{name}({})", extra.join(","))
            }
        }
    }
}
