//! Loads and stores: context, stack, map values, sized memory, kernel objects.

use bpfoom_abi::types::{HostTypes, Type, TypeId};
use bpfoom_insn::opcode::*;
use bpfoom_insn::Insn;

use crate::check::{fail, Param, Verifier, R};
use crate::scalar::Scalar;
use crate::state::{Byte, Frame, Reg, RegFmt, RegType, SlotData, State, Trust, STACK_SIZE};
use crate::RejectKind;

/// Pointer fields that are trusted but may be NULL (need a check), by
/// (struct, member). Every other pointer field gives a walked pointer.
/// `link->cgroup` is the attach point of upstream v3's link argument: a
/// struct_ops link need not be attached to a cgroup, so it is checked like
/// `oc->memcg`.
const TRUSTED_OR_NULL: &[(&str, &str)] =
    &[("oom_control", "memcg"), ("bpf_struct_ops_link", "cgroup")];

/// Pointer fields that Linux's verifier trusts inside an RCU read section
/// when walked from a trusted or RCU pointer (its `BTF_TYPE_SAFE_RCU` lists,
/// `kernel/bpf/verifier.c`): the result is an RCU pointer, never NULL.
/// Non-sleepable programs are always inside an RCU read section.
const SAFE_RCU: &[(&str, &str)] = &[
    ("task_struct", "real_parent"),
    ("task_struct", "group_leader"),
    ("cgroup", "kn"),
    ("cgroup_subsys_state", "cgroup"),
];

/// A memory access.
#[derive(Clone, Copy)]
pub(crate) enum Access {
    Read,
    Write(Reg),
}

impl Verifier<'_> {
    pub(crate) fn ldx(&mut self, st: &mut State, i: Insn) -> R<()> {
        let size = size_bytes(size(i.code)) as i64;
        let mut v = self.access(st, i.src, i64::from(i.off), size, Access::Read)?;
        if mode(i.code) == BPF_MEMSX && v.is_scalar() {
            v = Reg::scalar(v.var.sign_extend(size as u32 * 8));
        }
        self.set_reg(st, i.dst, v)
    }

    pub(crate) fn store(&mut self, st: &mut State, i: Insn) -> R<()> {
        let size = size_bytes(size(i.code)) as i64;
        let off = i64::from(i.off);
        if class(i.code) == BPF_ST {
            let v = Reg::scalar(Scalar::konst(i.imm as i64 as u64).truncate(size as u32));
            self.access(st, i.dst, off, size, Access::Write(v))?;
            return Ok(());
        }
        let mut src = self.reg(st, i.src)?;
        let to_stack = matches!(st.cur().regs[i.dst as usize].ty, RegType::Stack { .. });
        if to_stack
            && src.is_scalar()
            && src.id == 0
            && src.var.as_const().is_none()
            && src.var.truncate(size as u32) == src.var
        {
            // Link the register and its spilled copy so a later check refines both.
            src.id = self.new_id();
            st.cur_mut().regs[i.src as usize].id = src.id;
        }
        if mode(i.code) != BPF_ATOMIC {
            self.access(st, i.dst, off, size, Access::Write(src))?;
            return Ok(());
        }
        let dst = self.reg(st, i.dst)?;
        if !matches!(
            dst.ty,
            RegType::Stack { .. } | RegType::MapValue { .. } | RegType::Mem { .. }
        ) {
            return fail(
                RejectKind::InvalidMemAccess,
                format!(
                    "BPF_ATOMIC stores into R{} {} are not allowed",
                    i.dst,
                    RegFmt(&dst, self.input.maps)
                ),
            );
        }
        // Privileged (allow_ptr_leaks): a pointer operand is stored as a number.
        if i.imm == BPF_CMPXCHG {
            self.reg(st, 0)?;
        }
        let old = self.access(st, i.dst, off, size, Access::Read)?;
        if old.is_ptr() {
            return fail(
                RejectKind::InvalidMemAccess,
                "BPF_ATOMIC on a spilled pointer is not allowed",
            );
        }
        self.access(
            st,
            i.dst,
            off,
            size,
            Access::Write(Reg::scalar(Scalar::sized(size as u32))),
        )?;
        let loaded = Reg::scalar(Scalar::sized(size as u32));
        if i.imm == BPF_CMPXCHG {
            self.set_reg(st, 0, loaded)?;
        } else if i.imm & BPF_FETCH != 0 {
            self.set_reg(st, i.src, loaded)?;
        }
        Ok(())
    }

    /// Checks a load or store of `size` bytes at `reg + off`; returns the loaded value.
    pub(crate) fn access(
        &mut self,
        st: &mut State,
        regno: u8,
        off: i64,
        size: i64,
        acc: Access,
    ) -> R<Reg> {
        let r = self.reg(st, regno)?;
        let desc = RegFmt(&r, self.input.maps).to_string();
        if r.maybe_null {
            return fail(
                RejectKind::NullDeref,
                format!(
                    "R{regno} invalid mem access '{desc}': the pointer may be NULL, check it first"
                ),
            );
        }
        // Privileged (allow_ptr_leaks): a pointer may be stored into a map
        // value or memory; what is read back is a number.
        match r.ty {
            RegType::Scalar | RegType::NotInit => fail(
                RejectKind::InvalidMemAccess,
                format!("R{regno} invalid mem access 'scalar'"),
            ),
            RegType::ConstMap { .. } => fail(
                RejectKind::InvalidMemAccess,
                format!("R{regno} invalid mem access 'map_ptr'"),
            ),
            RegType::Ctx => self.ctx_access(&r, regno, off, size, acc),
            RegType::Btf { ty, trust } => {
                if let Access::Write(_) = acc {
                    return fail(RejectKind::ReadOnly, format!("only read is supported: R{regno} ({desc}) points to a read-only kernel object"));
                }
                let Some(c) = r.var.as_const() else {
                    return fail(
                        RejectKind::InvalidMemAccess,
                        format!(
                            "R{regno} variable offset access to {desc} is not allowed (var_off={})",
                            r.var
                        ),
                    );
                };
                let in_rcu = !self.input.sleepable || st.rcu_depth > 0;
                self.btf_load(ty, trust, in_rcu, r.off + c as i64 + off, size)
            }
            RegType::MapValue { map } => {
                let info = &self.input.maps[map as usize];
                if let (Access::Write(_), true) = (acc, info.read_only) {
                    return fail(RejectKind::ReadOnly, format!("write into map forbidden: {} is read-only, value_size={} off={} size={size}", info.name, info.value_size, r.off + off));
                }
                region(
                    &r,
                    regno,
                    off,
                    size,
                    i64::from(info.value_size),
                    "map value",
                )?;
                let lo = r.off + off + r.var.smin;
                self.check_lock_field(map, lo, r.off + off + r.var.smax + size)?;
                match (acc, r.var.as_const(), &info.initial) {
                    (Access::Read, Some(c), Some(init)) if info.read_only => {
                        let o = (r.off + off + c as i64) as usize;
                        let mut b = [0u8; 8];
                        if let Some(src) = init.get(o..o + size as usize) {
                            b[..size as usize].copy_from_slice(src);
                            return Ok(Reg::scalar(Scalar::konst(u64::from_le_bytes(b))));
                        }
                        Ok(Reg::scalar(Scalar::sized(size as u32)))
                    }
                    (Access::Read, ..) => Ok(Reg::scalar(Scalar::sized(size as u32))),
                    _ => Ok(Reg::NOT_INIT),
                }
            }
            RegType::Mem { size: limit } => {
                region(&r, regno, off, size, i64::from(limit), "memory")?;
                Ok(match acc {
                    Access::Read => Reg::scalar(Scalar::sized(size as u32)),
                    Access::Write(_) => Reg::NOT_INIT,
                })
            }
            RegType::RdonlyMem { size: limit } => {
                if let Access::Write(_) = acc {
                    return fail(
                        RejectKind::ReadOnly,
                        format!("R{regno} cannot write into {desc}: the memory is read-only"),
                    );
                }
                region(&r, regno, off, size, i64::from(limit), "memory")?;
                Ok(Reg::scalar(Scalar::sized(size as u32)))
            }
            RegType::Func { .. } => fail(
                RejectKind::InvalidMemAccess,
                format!("R{regno} invalid mem access 'func'"),
            ),
            RegType::Stack { frame } => self.stack_access(st, &r, frame, regno, off, size, acc),
        }
    }

    fn ctx_access(&self, r: &Reg, regno: u8, off: i64, size: i64, acc: Access) -> R<Reg> {
        if let Access::Write(_) = acc {
            return fail(
                RejectKind::ReadOnly,
                format!(
                    "cannot write into ctx: the arguments of {} are read-only",
                    self.input.hook.member
                ),
            );
        }
        let Some(c) = r.var.as_const() else {
            return fail(
                RejectKind::InvalidMemAccess,
                format!("R{regno} variable ctx access var_off={} disallowed", r.var),
            );
        };
        let o = r.off + off + c as i64;
        let n = self.hook.params.len() as i64;
        if size != 8 || o < 0 || o % 8 != 0 || o >= n * 8 {
            return fail(
                RejectKind::InvalidMemAccess,
                format!(
                    "invalid bpf_context access off={o} size={size}: {} has {n} u64 argument(s)",
                    self.input.hook.member
                ),
            );
        }
        Ok(match self.hook.params[(o / 8) as usize] {
            Param::Object(ty) => Reg::ptr(RegType::Btf {
                ty,
                trust: Trust::Trusted,
            }),
            Param::Scalar => Reg::scalar(Scalar::UNKNOWN),
        })
    }

    /// A load from a typed kernel object: only whole fields (or bytes inside
    /// a non-pointer field), typed by the field.
    fn btf_load(&mut self, ty: TypeId, trust: Trust, in_rcu: bool, o: i64, size: i64) -> R<Reg> {
        let h = HostTypes::get();
        let mut ty = h.resolve(ty);
        let mut o = o;
        let top = h.ty(ty).and_then(|t| t.name()).unwrap_or("?").to_string();
        let top_size = i64::from(h.size_of(ty).unwrap_or(0));
        if o < 0 || o + size > top_size {
            return fail(
                RejectKind::InvalidMemAccess,
                format!("access beyond struct {top} at off {o} size {size}: the object is {top_size} bytes"),
            );
        }
        // Descend to the innermost field containing the access.
        for _ in 0..16 {
            let (sname, members) = match h.ty(ty) {
                Some(Type::Struct(c)) | Some(Type::Union(c)) => (c.name.clone(), &c.members),
                Some(Type::Array { elem, .. }) => {
                    let es = i64::from(h.size_of(*elem).unwrap_or(1)).max(1);
                    o %= es;
                    ty = h.resolve(*elem);
                    if o + size > es {
                        return fail(
                            RejectKind::InvalidMemAccess,
                            format!(
                                "access of {size} bytes crosses array elements in struct {top}"
                            ),
                        );
                    }
                    continue;
                }
                _ => break,
            };
            let Some(m) = members.iter().find(|m| {
                let ms = i64::from(h.size_of(m.ty).unwrap_or(0));
                i64::from(m.offset) <= o && o < i64::from(m.offset) + ms
            }) else {
                return fail(
                    RejectKind::InvalidMemAccess,
                    format!("access to padding of struct {sname} at off {o} size {size}"),
                );
            };
            let ms = i64::from(h.size_of(m.ty).unwrap_or(0));
            let rel = o - i64::from(m.offset);
            if rel + size > ms {
                return fail(
                    RejectKind::InvalidMemAccess,
                    format!(
                        "access of {size} bytes at off {o} crosses field {sname}.{} ({ms} bytes)",
                        m.name
                    ),
                );
            }
            let mt = h.resolve(m.ty);
            if let Some(Type::Ptr(to)) = h.ty(mt) {
                if rel != 0 || size != 8 {
                    return fail(
                        RejectKind::InvalidMemAccess,
                        format!("partial read of pointer field {sname}.{}", m.name),
                    );
                }
                let to = h.resolve(*to);
                if !matches!(h.ty(to), Some(Type::Struct(_))) {
                    // char *, void *: an opaque number to the program.
                    return Ok(Reg::scalar(Scalar::UNKNOWN));
                }
                if TRUSTED_OR_NULL.contains(&(sname.as_str(), m.name.as_str()))
                    && trust != Trust::Walked
                {
                    let id = self.new_id();
                    return Ok(Reg {
                        id,
                        maybe_null: true,
                        ..Reg::ptr(RegType::Btf {
                            ty: to,
                            trust: Trust::Trusted,
                        })
                    });
                }
                if SAFE_RCU.contains(&(sname.as_str(), m.name.as_str()))
                    && trust != Trust::Walked
                    && in_rcu
                {
                    return Ok(Reg::ptr(RegType::Btf {
                        ty: to,
                        trust: Trust::Rcu,
                    }));
                }
                return Ok(Reg::ptr(RegType::Btf {
                    ty: to,
                    trust: Trust::Walked,
                }));
            }
            if let Some(Type::Int { is_bool: true, .. }) = h.ty(mt) {
                // The host only ever stores 0 or 1 in a _Bool field.
                return Ok(Reg::scalar(Scalar::urange(0, 1)));
            }
            ty = mt;
            o = rel;
        }
        Ok(Reg::scalar(Scalar::sized(size as u32)))
    }

    #[allow(clippy::too_many_arguments)]
    fn stack_access(
        &mut self,
        st: &mut State,
        r: &Reg,
        frame: u8,
        regno: u8,
        off: i64,
        size: i64,
        acc: Access,
    ) -> R<Reg> {
        let fi = frame as usize;
        let lo = r.off + off + r.var.smin;
        let hi = r.off + off + r.var.smax;
        let rw = if matches!(acc, Access::Read) {
            "read"
        } else {
            "write"
        };
        if lo < -STACK_SIZE || hi + size > 0 || fi >= st.frames.len() {
            return fail(
                RejectKind::Stack,
                format!(
                    "invalid {rw} to stack R{regno} off={} size={size}: outside the 512-byte stack",
                    if lo < -STACK_SIZE { lo } else { hi }
                ),
            );
        }
        if let Access::Write(v) = acc {
            if let RegType::Stack { frame: pf } = v.ty {
                if pf > frame {
                    return fail(
                        RejectKind::PointerLeak,
                        "cannot spill a pointer to a callee's stack into a caller's stack",
                    );
                }
            }
        }
        // Like the kernel, stack accesses are always size-aligned: spill
        // tracking works on aligned slots.
        let at = r.var.var_off + crate::tnum::Tnum::konst((r.off + off) as u64);
        if (at.value | at.mask) & (size as u64 - 1) != 0 {
            return fail(
                RejectKind::Stack,
                format!(
                    "misaligned stack access off {}+{} size {size}",
                    r.off + off,
                    r.var
                ),
            );
        }
        let var = r.var.as_const().is_none();
        let base = lo;
        let span = if var { hi - lo + size } else { size };
        let fr = &mut st.frames[fi];
        // Bytes covered, lowest address first.
        let bytes: Vec<(usize, usize)> = (0..span).map(|k| Frame::locate(base + k)).collect();
        for &(s, b) in &bytes {
            if fr.slot(s).bytes[b] == Byte::Iter {
                return fail(RejectKind::Reference, format!("cannot {rw} iterator slot at fp{}: iterators are only used through their kfuncs", -8 * (s as i64 + 1)));
            }
        }
        self.grow_stack(st, fi, base);
        let fr = &mut st.frames[fi];
        match acc {
            Access::Read => {
                // Privileged (allow_uninit_stack): uninitialised bytes read as
                // an unknown number.
                if !var && bytes.iter().all(|&(s, _)| s == bytes[0].0) {
                    let (s, b0) = bytes[0];
                    let slot = fr.slot(s);
                    if let SlotData::Spill {
                        reg,
                        start,
                        size: ssz,
                    } = slot.data
                    {
                        let covers_spill = bytes.iter().any(|&(_, b)| slot.bytes[b] == Byte::Spill);
                        if covers_spill {
                            if b0 == start as usize && size == i64::from(ssz) {
                                // A fill: precision of the result traces back
                                // to the slot (`precision.rs`).
                                self.note_stack_access(fi, s);
                                return Ok(reg);
                            }
                            if reg.is_ptr() {
                                return fail(RejectKind::Stack, format!("invalid size of register fill: partial read of a spilled pointer at fp{base}"));
                            }
                            // The low bytes of a spilled constant (as the kernel
                            // reads them).
                            if let Some(c) = reg.var.as_const() {
                                if b0 == start as usize && size < i64::from(ssz) {
                                    return Ok(Reg::scalar(Scalar::konst(c).truncate(size as u32)));
                                }
                            }
                        }
                    }
                }
                for &(s, b) in &bytes {
                    let slot = fr.slot(s);
                    if slot.bytes[b] == Byte::Spill {
                        if let SlotData::Spill { reg, .. } = slot.data {
                            if reg.is_ptr() {
                                return fail(RejectKind::Stack, format!("invalid read of a spilled pointer at fp{base}: pointers can only be filled whole"));
                            }
                        }
                    }
                }
                if bytes
                    .iter()
                    .all(|&(s, b)| fr.slot(s).bytes[b] == Byte::Zero)
                {
                    return Ok(Reg::scalar(Scalar::konst(0)));
                }
                Ok(Reg::scalar(Scalar::sized(size as u32)))
            }
            Access::Write(v) => {
                if v.is_ptr() && (var || size != 8 || base % 8 != 0) {
                    return fail(RejectKind::Stack, format!("invalid size of register spill: a pointer must be stored whole at an 8-byte aligned stack slot (off {base} size {size})"));
                }
                // Break spills partially overwritten: what is left of a
                // scalar is some number, what is left of a pointer must never
                // be read (its bytes are an address).
                for &(s, _) in &bytes {
                    let slot = fr.slot_mut(s);
                    if let SlotData::Spill { reg, .. } = slot.data {
                        let rest = if reg.is_ptr() {
                            Byte::Invalid
                        } else {
                            Byte::Misc
                        };
                        for b in slot.bytes.iter_mut() {
                            if *b == Byte::Spill {
                                *b = rest;
                            }
                        }
                        slot.data = SlotData::None;
                    }
                }
                let zero = v.is_null_const();
                let one_slot = !var && bytes.iter().all(|&(s, _)| s == bytes[0].0);
                if one_slot && (v.is_ptr() || (!zero && v.is_scalar())) {
                    let (s, b0) = bytes[0];
                    let mut reg = v;
                    if reg.is_scalar() {
                        reg.var = reg.var.truncate(size as u32);
                        if reg.var != v.var {
                            reg.id = 0;
                        }
                    }
                    let fr = &mut st.frames[fi];
                    let slot = fr.slot_mut(s);
                    for &(_, b) in &bytes {
                        slot.bytes[b] = Byte::Spill;
                    }
                    slot.data = SlotData::Spill {
                        reg,
                        start: b0 as u8,
                        size: size as u8,
                    };
                    self.note_stack_access(fi, s);
                    return Ok(Reg::NOT_INIT);
                }
                let fr = &mut st.frames[fi];
                let t = if zero && !var { Byte::Zero } else { Byte::Misc };
                for &(s, b) in &bytes {
                    fr.slot_mut(s).bytes[b] = t;
                }
                Ok(Reg::NOT_INIT)
            }
        }
    }

    /// Checks that a helper/kfunc may read (or write) `size` bytes at the pointer in `regno`.
    pub(crate) fn check_mem_arg(
        &mut self,
        st: &mut State,
        regno: u8,
        size: i64,
        write: bool,
    ) -> R<()> {
        let r = self.reg(st, regno)?;
        let rdonly = matches!(r.ty, RegType::RdonlyMem { .. });
        if !matches!(
            r.ty,
            RegType::Stack { .. } | RegType::MapValue { .. } | RegType::Mem { .. }
        ) && (!rdonly || write)
        {
            return fail(
                RejectKind::Call,
                format!(
                    "R{regno} type={} expected=fp, map_value, mem",
                    RegFmt(&r, self.input.maps)
                ),
            );
        }
        if size == 0 {
            // Linux checks (and counts for the stack depth) a zero-sized
            // access's offset too.
            if let RegType::Stack { frame } = r.ty {
                let lo = r.off + r.var.smin;
                if (-STACK_SIZE..0).contains(&lo) {
                    self.grow_stack(st, frame as usize, lo);
                }
            }
            return Ok(());
        }
        if write {
            self.access(
                st,
                regno,
                0,
                size,
                crate::mem::Access::Write(Reg::scalar(Scalar::UNKNOWN)),
            )?;
            return Ok(());
        }
        // Read byte-wise so any size is accepted (the access checks the whole range).
        match r.ty {
            RegType::Stack { frame } => {
                let lo = r.off + r.var.smin;
                let hi = r.off + r.var.smax + size;
                if lo < -STACK_SIZE || hi > 0 {
                    return fail(
                        RejectKind::Stack,
                        format!("invalid indirect read from stack R{regno} off {lo}+0 size {size}"),
                    );
                }
                self.grow_stack(st, frame as usize, lo);
                let Some(fr) = st.frames.get(frame as usize) else {
                    return fail(
                        RejectKind::Stack,
                        format!("R{regno} points to a stack frame that no longer exists"),
                    );
                };
                for o in lo..hi {
                    let (s, b) = Frame::locate(o);
                    let slot = fr.slot(s);
                    let why = match slot.bytes[b] {
                        Byte::Misc | Byte::Zero => None,
                        // Privileged (allow_ptr_leaks, allow_uninit_stack):
                        // helpers may read spilled pointers and bytes never
                        // written.
                        Byte::Spill | Byte::Invalid => None,
                        Byte::Iter => Some((RejectKind::Reference, "it holds an iterator")),
                    };
                    if let Some((kind, why)) = why {
                        return fail(kind, format!("invalid indirect read from stack R{regno} off {o} ({size} bytes from off {lo}): {why}"));
                    }
                }
                Ok(())
            }
            _ => {
                if let RegType::MapValue { map } = r.ty {
                    let lo = r.off + r.var.smin;
                    self.check_lock_field(map, lo, r.off + r.var.smax + size)?;
                }
                let limit = match r.ty {
                    RegType::MapValue { map } => {
                        i64::from(self.input.maps[map as usize].value_size)
                    }
                    RegType::Mem { size } | RegType::RdonlyMem { size } => i64::from(size),
                    _ => 0,
                };
                if r.maybe_null {
                    return fail(
                        RejectKind::NullDeref,
                        format!("R{regno} may be NULL: check it before passing it"),
                    );
                }
                region(&r, regno, 0, size, limit, "memory")
            }
        }
    }
}

/// Checks `[ptr + off, + size)` against `[0, limit)`.
fn region(r: &Reg, regno: u8, off: i64, size: i64, limit: i64, what: &str) -> R<()> {
    let lo = r.off + off + r.var.smin;
    let hi = r.off + off + r.var.smax + size;
    if lo < 0 {
        return fail(RejectKind::InvalidMemAccess, format!("R{regno} min value is outside of the allowed memory range: invalid access to {what} off={lo} size={size} (size {limit})"));
    }
    if hi > limit {
        return fail(
            RejectKind::InvalidMemAccess,
            format!(
                "R{regno} invalid access to {what}, value_size={limit} off={} size={size}",
                hi - size
            ),
        );
    }
    Ok(())
}
