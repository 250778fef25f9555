//! Helper, kfunc and bpf-to-bpf calls; references, RCU, iterators.

use crate::GlobalArg;
use bpfoom_abi::helpers::{self, Arg as HArg, Ret as HRet};
use bpfoom_abi::kfuncs::{self, Arg as KArg, Kfunc, Ret as KRet, *};
use bpfoom_abi::types::{HostTypes, Type, TypeId};
use bpfoom_abi::Scope;
use bpfoom_insn::opcode::*;

use crate::check::{fail, Flow, Verifier, R};
use crate::scalar::Scalar;
use crate::state::{
    Byte, Frame, IterSlot, RefEntry, RefKind, Reg, RegFmt, RegType, Slot, SlotData, State, Trust,
};
use crate::{MapKind, RejectKind};

/// Deepest bpf-to-bpf call chain (frames).
const MAX_FRAMES: usize = 8;
/// libbpf's poison helper id for unresolved CO-RE relocations.
const CORE_POISON: i32 = 0x0bad_2310;
/// libbpf's base helper id for calls to missing weak kfuncs.
const KFUNC_POISON: i32 = 2_002_000_000;

impl Verifier<'_> {
    pub(crate) fn call(&mut self, st: &mut State, pc: usize) -> R<Flow> {
        let i = self.insns[pc];
        self.check_call_under_lock(st, pc)?;
        match i.src {
            BPF_PSEUDO_CALL => self.subprog_call(st, pc),
            BPF_PSEUDO_KFUNC_CALL => self.kfunc_call(st, pc),
            _ => self.helper_call(st, pc),
        }
    }

    fn subprog_call(&mut self, st: &mut State, pc: usize) -> R<Flow> {
        let target = (pc as i64 + i64::from(self.insns[pc].imm) + 1) as usize;
        if let Some(g) = self.globals.iter().position(|g| g.insn == target) {
            return self.global_call(st, pc, g);
        }
        if st.frames.len() >= MAX_FRAMES {
            return fail(
                RejectKind::Call,
                format!(
                    "the call stack of {} frames is too deep (at most {MAX_FRAMES})",
                    st.frames.len() + 1
                ),
            );
        }
        if st.frames.iter().any(|f| f.subprog == target) {
            return fail(
                RejectKind::Call,
                format!("recursive call from insn {pc} to {target}"),
            );
        }
        let n = st.frames.len() as u8;
        let mut f = Frame::new(pc, target, n);
        for r in 1..=5 {
            f.regs[r] = st.cur().regs[r];
        }
        st.frames.push(f);
        Ok(Flow::Next(target))
    }

    /// A call of a global function: the arguments must match its prototype
    /// (Linux's `btf_check_subprog_call()`); the result is an unknown number.
    fn global_call(&mut self, st: &mut State, pc: usize, g: usize) -> R<Flow> {
        let gf = &self.globals[g];
        let invalid = |why: String| {
            fail::<()>(
                RejectKind::Call,
                format!(
                    "Caller passes invalid args into func ('{}'): {why}",
                    gf.name
                ),
            )
        };
        if st.lock.is_some() {
            // As Linux: a global function is verified without the caller's lock.
            return fail(
                RejectKind::Call,
                "global function calls are not allowed while holding a lock, use static function instead",
            );
        }
        if gf.returns_void {
            // As Linux: only global functions that return a scalar are supported.
            invalid(format!(
                "Global function {}() doesn't return scalar. Only those are supported.",
                gf.name
            ))?;
        }
        for (k, p) in gf.params.iter().enumerate() {
            let regno = k as u8 + 1;
            let r = self.reg(st, regno)?;
            let desc = RegFmt(&r, self.input.maps).to_string();
            match p {
                GlobalArg::Unsupported(why) => invalid(why.clone())?,
                GlobalArg::Scalar => {
                    if !r.is_scalar() {
                        invalid(format!("R{regno} is not a scalar ({desc})"))?;
                    }
                }
                GlobalArg::Ctx => {
                    if r.ty != RegType::Ctx || r.off != 0 {
                        invalid(format!(
                            "arg#{k} expects pointer to ctx, R{regno} is {desc}"
                        ))?;
                    }
                }
                GlobalArg::Trusted { ty, nullable } => {
                    if r.is_null_const() && *nullable {
                        continue;
                    }
                    let RegType::Btf { ty: rty, trust } = r.ty else {
                        return invalid(format!(
                            "R{regno} is not a pointer to struct {ty} ({desc})"
                        ))
                        .map(|_| Flow::Done);
                    };
                    if (r.maybe_null && !nullable)
                        || trust != Trust::Trusted
                        || r.var.as_const() != Some(0)
                        || !type_at_matches(rty, r.off, ty)
                    {
                        invalid(format!(
                            "R{regno} must be a trusted pointer to struct {ty} ({desc})"
                        ))?;
                    }
                }
                GlobalArg::Mem { size, nullable } => {
                    if r.is_null_const() && *nullable {
                        continue;
                    }
                    if r.maybe_null && !nullable {
                        invalid(format!("R{regno} may be NULL ({desc})"))?;
                    }
                    let saved = st.cur().regs[regno as usize];
                    st.cur_mut().regs[regno as usize].maybe_null = false;
                    let res = self.check_mem_arg(st, regno, i64::from(*size), false);
                    st.cur_mut().regs[regno as usize] = saved;
                    if let Err(f) = res {
                        invalid(format!("arg#{k} is memory of {size} bytes: {}", f.reason))?;
                    }
                }
            }
        }
        if !self.global_seen.contains(&g) {
            self.global_seen.push(g);
            self.global_queue.push(g);
        }
        let void = self.globals[g].returns_void;
        Self::clobber(st);
        if !void {
            st.cur_mut().regs[0] = Reg::scalar(Scalar::UNKNOWN);
        }
        Ok(Flow::Next(pc + 1))
    }

    fn clobber(st: &mut State) {
        for r in 0..=5 {
            st.cur_mut().regs[r] = Reg::NOT_INIT;
        }
    }

    /// Drops a reference and invalidates every pointer that depends on it.
    fn release(&mut self, st: &mut State, id: u32) -> R<()> {
        let Some(pos) = st.refs.iter().position(|r| r.id == id) else {
            return fail(
                RejectKind::Reference,
                format!("release of reference id={id} that is not held (double release?)"),
            );
        };
        st.refs.remove(pos);
        // As Linux's mark_reg_invalid() for privileged programs
        // (allow_ptr_leaks): every copy of the released pointer, in registers
        // and spilled, becomes an unknown number.
        st.for_each_reg(|r| {
            if r.ref_obj_id == id {
                *r = Reg::scalar(Scalar::UNKNOWN);
            }
        });
        Ok(())
    }

    fn acquire(&mut self, st: &mut State, kind: RefKind, pc: usize) -> u32 {
        let id = self.new_id();
        st.refs.push(RefEntry { id, kind, insn: pc });
        id
    }

    /// Why helper `imm` cannot be called: its Linux name when Linux has
    /// such a helper (Linux: "program of this type cannot use helper
    /// bpf_X#N"), and what bpfoom offers instead.
    fn unknown_helper(&self, imm: i32) -> String {
        let provides: Vec<String> = helpers::HELPERS
            .iter()
            .map(|h| format!("bpf_{}", h.name))
            .collect();
        let provides = provides.join(", ");
        match crate::helper_names::linux_helper_name(imm) {
            Some(name) => format!(
                "helper {name} (#{imm}) is not available to {} programs (bpfoom provides: {provides})",
                self.hook.ops
            ),
            None => format!(
                "invalid func unknown#{imm}: Linux has no helper with this number (its helpers are #0..#{}); bpfoom provides: {provides}",
                crate::helper_names::LINUX_HELPER_COUNT - 1
            ),
        }
    }

    fn helper_call(&mut self, st: &mut State, pc: usize) -> R<Flow> {
        let imm = self.insns[pc].imm;
        let Some(h) = helpers::by_id(imm as u32) else {
            let why = if imm == CORE_POISON {
                "a CO-RE relocation of this program could not be resolved against the host's types"
                    .to_string()
            } else if imm >= KFUNC_POISON {
                "call to a weak kfunc the host does not provide (guard it with bpf_ksym_exists())"
                    .to_string()
            } else {
                self.unknown_helper(imm)
            };
            return fail(RejectKind::Call, why);
        };
        let mut map: Option<u32> = None;
        let mut release_id = None;
        let mut alloc_size = 0u32;
        let mut callback = None;
        for (k, arg) in h.args.iter().enumerate() {
            let regno = k as u8 + 1;
            // trace_printk is variadic: C callers leave unused value slots unset.
            if h.name == "trace_printk" && k >= 2 && !st.cur().regs[regno as usize].is_init() {
                continue;
            }
            let r = self.reg(st, regno)?;
            let desc = RegFmt(&r, self.input.maps).to_string();
            match arg {
                HArg::ConstMapPtr => {
                    let RegType::ConstMap { map: m } = r.ty else {
                        return fail(
                            RejectKind::Call,
                            format!("R{regno} type={desc} expected=map_ptr"),
                        );
                    };
                    map = Some(m);
                }
                HArg::MapKey | HArg::MapValue => {
                    let info = &self.input.maps[map.unwrap_or(0) as usize];
                    let sz = if *arg == HArg::MapKey {
                        info.key_size
                    } else {
                        info.value_size
                    };
                    self.check_mem_arg(st, regno, i64::from(sz), false)?;
                }
                HArg::ReadMem | HArg::UninitMem => {
                    let s = self.reg(st, regno + 1)?;
                    if !s.is_scalar() {
                        return fail(
                            RejectKind::Call,
                            format!("R{} must be a size (scalar)", regno + 1),
                        );
                    }
                    let zero_ok = h.args.get(k + 1) == Some(&HArg::ConstSizeOrZero);
                    if s.var.smin < 0 {
                        return fail(
                            RejectKind::Call,
                            format!(
                                "R{} min value is negative, either use unsigned or 'var &= const'",
                                regno + 1
                            ),
                        );
                    }
                    if s.var.umin == 0 && !zero_ok {
                        return fail(
                            RejectKind::Call,
                            format!("R{} invalid zero-sized read", regno + 1),
                        );
                    }
                    if s.var.umax >= 1 << 29 {
                        return fail(RejectKind::Call, format!("R{} unbounded memory access, use 'var &= const' or 'if (var < const)'", regno + 1));
                    }
                    // Linux's check_mem_size_reg(): the size is relied on exactly.
                    self.mark_precise(st, &[regno + 1], true);
                    if *arg == HArg::UninitMem {
                        self.uninit_mem_arg(st, regno, s.var.umax as i64)?;
                    } else {
                        self.check_mem_arg(st, regno, s.var.umax as i64, false)?;
                    }
                }
                HArg::ConstStr => self.const_str_arg(st, regno)?,
                HArg::SpinLock => self.spin_lock_arg(st, regno, h.name == "spin_lock")?,
                HArg::Func => callback = Some(self.func_arg(st, regno)?),
                HArg::StackOrNull => self.stack_or_null_arg(st, regno)?,
                HArg::ConstSize | HArg::ConstSizeOrZero | HArg::Anything => {
                    if *arg != HArg::Anything && !r.is_scalar() {
                        return fail(
                            RejectKind::Call,
                            format!("R{regno} type={desc} expected=scalar"),
                        );
                    }
                }
                HArg::ConstAllocSizeOrZero => match r.var.as_const().filter(|_| r.is_scalar()) {
                    Some(c) if c < 1 << 29 => {
                        alloc_size = c as u32;
                        self.mark_precise(st, &[regno], true);
                    }
                    _ => {
                        return fail(
                            RejectKind::Call,
                            format!("R{regno} is not a known constant size"),
                        )
                    }
                },
                HArg::ReleaseRingbufRecord => {
                    if r.maybe_null {
                        return fail(
                            RejectKind::NullDeref,
                            format!("Possibly NULL pointer passed to helper arg{regno}"),
                        );
                    }
                    match r.ty {
                        RegType::Mem { .. }
                            if r.ref_obj_id != 0 && r.off == 0 && r.var.as_const() == Some(0) =>
                        {
                            release_id = Some(r.ref_obj_id)
                        }
                        RegType::Mem { .. } if r.ref_obj_id != 0 => {
                            return fail(RejectKind::Call, format!("R{regno} must point to the start of the ring buffer record (off={})", r.off));
                        }
                        _ => {
                            return fail(
                                RejectKind::Call,
                                format!("R{regno} type={desc} expected=ringbuf_mem"),
                            )
                        }
                    }
                }
            }
        }
        if let Some(m) = map {
            let info = &self.input.maps[m as usize];
            let ringbuf_fn = h.name.starts_with("ringbuf_");
            if ringbuf_fn != (info.kind == MapKind::Ringbuf) {
                return fail(
                    RejectKind::Call,
                    format!(
                        "cannot pass map {} ({:?}) into func bpf_{}#{}",
                        info.name, info.kind, h.name, h.id
                    ),
                );
            }
            if info.read_only && matches!(h.name, "map_update_elem" | "map_delete_elem") {
                return fail(
                    RejectKind::ReadOnly,
                    format!("write into map forbidden: {} is read-only", info.name),
                );
            }
        }
        if let Some(id) = release_id {
            self.release(st, id)?;
        }
        if let Some(target) = callback {
            self.push_loop_callback(st, pc, target)?;
        }
        // An array element always exists: a lookup with a known in-range
        // key cannot return NULL (as in the kernel).
        let array_hit = h.name == "map_lookup_elem"
            && map.is_some_and(|m| {
                let info = &self.input.maps[m as usize];
                matches!(info.kind, MapKind::Array | MapKind::PercpuArray)
                    && info.key_size == 4
                    && self
                        .const_key(st)
                        .is_some_and(|k| k < u64::from(info.max_entries))
            });
        Self::clobber(st);
        let r0 = match h.ret {
            HRet::Integer => Reg::scalar(Scalar::UNKNOWN),
            HRet::Void => Reg::NOT_INIT,
            HRet::MapValueOrNull => {
                let id = self.new_id();
                Reg {
                    id,
                    maybe_null: !array_hit,
                    ..Reg::ptr(RegType::MapValue {
                        map: map.unwrap_or(0),
                    })
                }
            }
            HRet::RingbufRecordOrNull => {
                let id = self.new_id();
                let ref_obj_id = self.acquire(st, RefKind::Ringbuf, pc);
                Reg {
                    id,
                    ref_obj_id,
                    maybe_null: true,
                    ..Reg::ptr(RegType::Mem { size: alloc_size })
                }
            }
            HRet::TrustedObject(ty) => Reg::ptr(RegType::Btf {
                ty: HostTypes::get().struct_id(ty).unwrap_or(0),
                trust: Trust::Trusted,
            }),
        };
        st.cur_mut().regs[0] = r0;
        Ok(Flow::Next(pc + 1))
    }

    /// The 4-byte key r2 points to, when it is a known constant on the stack.
    fn const_key(&mut self, st: &mut State) -> Option<u64> {
        let r2 = st.cur().regs[2];
        if !matches!(r2.ty, RegType::Stack { .. }) || r2.var.as_const().is_none() {
            return None;
        }
        let v = self.access(st, 2, 0, 4, crate::mem::Access::Read).ok()?;
        let k = v.is_scalar().then(|| v.var.as_const()).flatten()?;
        // As Linux's get_constant_map_key(): a key spilled from a register
        // is relied on exactly (a zeroed slot is a constant by itself).
        if let RegType::Stack { frame } = r2.ty {
            let (slot, _) = Frame::locate(r2.off + r2.var.as_const()? as i64);
            let fr = st.frames.get(frame as usize)?;
            if fr.slot(slot).bytes.contains(&crate::state::Byte::Spill) {
                self.mark_slot_precise(st, frame as usize, slot);
            }
        }
        Some(k)
    }

    fn kfunc_call(&mut self, st: &mut State, pc: usize) -> R<Flow> {
        let imm = self.insns[pc].imm;
        let Some(k) = kfuncs::by_id(imm as u32) else {
            return fail(
                RejectKind::Call,
                format!("invalid kernel function call: unknown kfunc id {imm}"),
            );
        };
        if k.scope != Scope::Any && k.scope != self.hook.scope {
            return fail(
                RejectKind::Scope,
                format!(
                    "calling kernel function {} is not allowed in {} programs",
                    k.name, self.hook.ops
                ),
            );
        }
        if k.has(KF_SLEEPABLE) {
            if !self.input.sleepable {
                return fail(RejectKind::Sleepable, format!("program must be sleepable to call sleepable kfunc {} (use SEC(\"struct_ops.s/...\"))", k.name));
            }
            if st.rcu_depth > 0 {
                return fail(
                    RejectKind::Sleepable,
                    format!(
                        "kernel func {} is sleeping within rcu_read_lock region",
                        k.name
                    ),
                );
            }
        }
        if k.has(KF_RCU_PROTECTED) && self.input.sleepable && st.rcu_depth == 0 {
            return fail(
                RejectKind::Rcu,
                format!(
                    "kernel func {} requires RCU critical section protection",
                    k.name
                ),
            );
        }
        match k.name {
            "bpf_rcu_read_lock" => {
                if st.rcu_depth > 0 {
                    // As Linux: RCU read sections do not nest.
                    return fail(
                        RejectKind::Rcu,
                        "nested rcu read lock (kernel function bpf_rcu_read_lock)",
                    );
                }
                st.rcu_depth += 1;
                Self::clobber(st);
                return Ok(Flow::Next(pc + 1));
            }
            "bpf_rcu_read_unlock" => {
                if st.rcu_depth == 0 {
                    return fail(
                        RejectKind::Rcu,
                        "unmatched rcu read unlock: bpf_rcu_read_unlock without bpf_rcu_read_lock",
                    );
                }
                st.rcu_depth -= 1;
                if st.rcu_depth == 0 {
                    // RCU pointers are only valid inside the section.
                    st.for_each_reg(|r| {
                        if let RegType::Btf {
                            ty,
                            trust: Trust::Rcu,
                        } = r.ty
                        {
                            r.ty = RegType::Btf {
                                ty,
                                trust: Trust::Walked,
                            };
                        }
                    });
                }
                Self::clobber(st);
                return Ok(Flow::Next(pc + 1));
            }
            _ => {}
        }
        let mut release_id = None;
        let mut iter_at: Option<(u8, i64, &'static str)> = None;
        for (a, (pname, arg)) in k.params.iter().enumerate() {
            let regno = a as u8 + 1;
            let r = self.reg(st, regno)?;
            let desc = RegFmt(&r, self.input.maps).to_string();
            match *arg {
                KArg::Scalar => {
                    if !r.is_scalar() {
                        return fail(
                            RejectKind::Call,
                            format!(
                                "arg#{a} ({pname}) of {} expected a scalar, R{regno} is {desc}",
                                k.name
                            ),
                        );
                    }
                }
                KArg::Object { ty, nullable } => {
                    if r.is_null_const() {
                        if nullable {
                            continue;
                        }
                        return fail(
                            RejectKind::NullDeref,
                            format!("arg#{a} ({pname}) of {} must not be NULL", k.name),
                        );
                    }
                    let RegType::Btf { ty: rty, trust } = r.ty else {
                        return fail(RejectKind::Call, format!("arg#{a} ({pname}) of {} expected pointer to struct {ty}, R{regno} is {desc}", k.name));
                    };
                    if r.maybe_null && !nullable {
                        return fail(RejectKind::NullDeref, format!("Possibly NULL pointer passed to trusted arg{a} ({pname}) of {}: check R{regno} first", k.name));
                    }
                    if r.var.as_const() != Some(0) || !type_at_matches(rty, r.off, ty) {
                        return fail(RejectKind::Call, format!("arg#{a} ({pname}) of {} expected pointer to struct {ty}, R{regno} is {desc}", k.name));
                    }
                    let release_arg = k.has(KF_RELEASE) && release_id.is_none();
                    let ok = match trust {
                        Trust::Trusted => true,
                        // As in Linux: an RCU-protected pointer is enough only
                        // for KF_RCU kfuncs and for those that ask for no trust.
                        Trust::Rcu => k.has(KF_RCU) || !(k.has(KF_TRUSTED_ARGS) || release_arg),
                        Trust::Walked => !(k.has(KF_TRUSTED_ARGS) || k.has(KF_RCU) || release_arg),
                    };
                    if !ok {
                        // Linux's words: a KF_RCU kfunc asks for an RCU pointer
                        // at least, any other for a trusted one.
                        let want = if k.has(KF_RCU) && !k.has(KF_TRUSTED_ARGS) {
                            "must be a rcu pointer"
                        } else {
                            "must be referenced or trusted"
                        };
                        let why = match trust {
                            Trust::Rcu => "is only RCU-protected",
                            _ => "is untrusted (read from a field of another object, or an iterator element the kernel does not trust)",
                        };
                        return fail(
                            RejectKind::Trust,
                            format!(
                                "R{regno} {want}: {desc} {why} and cannot be passed to {}",
                                k.name
                            ),
                        );
                    }
                    if release_arg {
                        if r.ref_obj_id == 0 || r.off != 0 {
                            return fail(RejectKind::Reference, format!("release kernel function {} expects a refcounted pointer at offset 0, R{regno} is {desc}", k.name));
                        }
                        release_id = Some(r.ref_obj_id);
                    }
                }
                KArg::Mem { size, nullable } => {
                    if r.is_null_const() && nullable {
                        continue;
                    }
                    self.kfunc_mem_arg(st, regno, &r, size, nullable, a, pname, k)?;
                }
                KArg::Str { nullable } => {
                    if r.is_null_const() && nullable {
                        continue;
                    }
                    self.check_const_str(&r, a, pname, k)?;
                }
                KArg::Iter(name) => {
                    let RegType::Stack { frame } = r.ty else {
                        return fail(RejectKind::Call, format!("arg#{a} of {} expected pointer to an iterator on the stack, R{regno} is {desc}", k.name));
                    };
                    let Some(c) = r.var.as_const() else {
                        return fail(
                            RejectKind::Call,
                            format!(
                                "arg#{a} of {}: iterator pointer with variable offset",
                                k.name
                            ),
                        );
                    };
                    let o = r.off + c as i64;
                    if o % 8 != 0 {
                        return fail(
                            RejectKind::Call,
                            format!(
                                "arg#{a} of {}: iterator at fp{o} is not 8-byte aligned",
                                k.name
                            ),
                        );
                    }
                    iter_at = Some((frame, o, name));
                }
            }
        }
        if let Some((frame, o, name)) = iter_at {
            if let Some(flow) = self.iter_call(st, pc, k, frame, o, name)? {
                return Ok(flow);
            }
        }
        if let Some(id) = release_id {
            self.release(st, id)?;
        }
        Self::clobber(st);
        let r0 = match k.ret {
            KRet::Void => Reg::NOT_INIT,
            KRet::Scalar { .. } | KRet::Bool => Reg::scalar(Scalar::UNKNOWN),
            KRet::Object(ty) => {
                let h = HostTypes::get();
                let ty = h.struct_id(ty).unwrap_or(0);
                let mut r = Reg::ptr(RegType::Btf {
                    ty,
                    trust: Trust::Trusted,
                });
                if k.has(KF_RET_NULL) {
                    r.maybe_null = true;
                    r.id = self.new_id();
                }
                if k.has(KF_ACQUIRE) {
                    r.ref_obj_id = self.acquire(st, RefKind::Object, pc);
                }
                r
            }
            KRet::Mem { size } => {
                let mut r = Reg::ptr(RegType::RdonlyMem { size });
                if k.has(KF_RET_NULL) {
                    r.maybe_null = true;
                    r.id = self.new_id();
                }
                r
            }
        };
        st.cur_mut().regs[0] = r0;
        Ok(Flow::Next(pc + 1))
    }

    /// A kfunc's plain pointer-to-scalar argument: Linux's `check_mem_reg()`
    /// (memory of `size` bytes the kfunc may read; a maybe-NULL pointer only
    /// for `__nullable`).
    #[allow(clippy::too_many_arguments)]
    fn kfunc_mem_arg(
        &mut self,
        st: &mut State,
        regno: u8,
        r: &Reg,
        size: u32,
        nullable: bool,
        a: usize,
        pname: &str,
        k: &Kfunc,
    ) -> R<()> {
        if r.maybe_null && !nullable {
            return fail(
                RejectKind::NullDeref,
                format!(
                    "arg#{a} ({pname}) of {} may be NULL: check R{regno} first",
                    k.name
                ),
            );
        }
        // Read access is checked; a read-only map value (a string literal
        // in .rodata) is accepted. Whether Linux also asks for write access
        // here cannot be checked against this machine's kernel: none of its
        // kfuncs that syscall programs may call has a plain `const char *`
        // argument (see the crate docs).
        let saved = st.cur().regs[regno as usize];
        st.cur_mut().regs[regno as usize].maybe_null = false;
        let res = self.check_mem_arg(st, regno, i64::from(size), false);
        st.cur_mut().regs[regno as usize] = saved;
        res
    }

    fn check_const_str(&self, r: &Reg, a: usize, pname: &str, k: &Kfunc) -> R<()> {
        let bad = |why: &str| {
            fail(
                RejectKind::Call,
                format!(
                    "arg#{a} ({pname}) of {} doesn't point to a const string: {why}",
                    k.name
                ),
            )
        };
        let RegType::MapValue { map } = r.ty else {
            return bad("it must point into read-only global data (.rodata)");
        };
        if r.maybe_null {
            return bad("it may be NULL");
        }
        let info = &self.input.maps[map as usize];
        if !info.read_only {
            return bad("the map is writable");
        }
        let Some(c) = r.var.as_const() else {
            return bad("variable offset");
        };
        let o = r.off + c as i64;
        if o < 0 || o >= i64::from(info.value_size) {
            return bad("offset outside the map value");
        }
        if let Some(init) = &info.initial {
            if !init.get(o as usize..).is_some_and(|s| s.contains(&0)) {
                return bad("the string is not NUL-terminated");
            }
        }
        Ok(())
    }

    /// Iterator constructor, step or destructor. `Some(flow)` when the call is fully handled.
    fn iter_call(
        &mut self,
        st: &mut State,
        pc: usize,
        k: &'static Kfunc,
        frame: u8,
        o: i64,
        name: &'static str,
    ) -> R<Option<Flow>> {
        let h = HostTypes::get();
        let size = h
            .struct_id(&format!("bpf_iter_{name}"))
            .and_then(|t| h.size_of(t))
            .unwrap_or(8);
        let nslots = (size as usize).div_ceil(8);
        if o < -crate::state::STACK_SIZE || o + (nslots as i64) * 8 > 0 {
            if k.has(KF_ITER_NEW) {
                return fail(
                    RejectKind::Stack,
                    format!("iterator at fp{o} of {size} bytes does not fit the stack"),
                );
            }
            return fail(
                RejectKind::Reference,
                format!(
                    "expected an initialized iter_{name} at fp{o} as arg #0 of {}",
                    k.name
                ),
            );
        }
        if frame as usize >= st.frames.len() {
            return fail(
                RejectKind::Stack,
                "iterator pointer into a stack frame that no longer exists",
            );
        }
        if k.has(KF_ITER_NEW) {
            // Linux writes the iterator's slots with check_mem_access().
            self.grow_stack(st, frame as usize, o);
        }
        let first = Frame::locate(o).0; // slot of the lowest address
        let slots: Vec<usize> = (0..nslots).map(|j| first - j).collect();
        let fi = frame as usize;
        if k.has(KF_ITER_NEW) {
            if slots
                .iter()
                .any(|&s| st.frames[fi].slot(s).bytes.contains(&Byte::Iter))
            {
                return fail(RejectKind::Reference, format!("iterator at fp{o} is already initialized: destroy it before creating a new one"));
            }
            let ref_id = self.acquire(st, RefKind::Iter, pc);
            for (j, &s) in slots.iter().enumerate() {
                *st.frames[fi].slot_mut(s) = Slot {
                    bytes: [Byte::Iter; 8],
                    data: SlotData::Iter(IterSlot {
                        kind: name,
                        index: j as u8,
                        drained: false,
                        depth: 0,
                        ref_id,
                        rcu: k.has(KF_RCU_PROTECTED),
                    }),
                };
            }
            return Ok(None);
        }
        let it = match st.frames[fi].slot(slots[0]).data {
            SlotData::Iter(it) if it.kind == name && it.index == 0 => it,
            _ => {
                return fail(RejectKind::Reference, format!("expected an initialized iter_{name} at fp{o} as arg #0 of {} (created by bpf_iter_{name}_new and not destroyed)", k.name));
            }
        };
        if k.has(KF_ITER_DESTROY) {
            self.release(st, it.ref_id)?;
            for &s in &slots {
                *st.frames[fi].slot_mut(s) = Slot::EMPTY;
            }
            return Ok(None);
        }
        // bpf_iter_*_next: either drained (NULL) or one more element.
        if it.rcu && self.input.sleepable && st.rcu_depth == 0 {
            return fail(
                RejectKind::Rcu,
                format!(
                    "{} used outside the RCU read section its iterator needs",
                    k.name
                ),
            );
        }
        Self::clobber(st);
        let set_iter = |st: &mut State, drained: bool, depth: u32| {
            for &s in &slots {
                if let SlotData::Iter(x) = &mut st.frames[fi].slot_mut(s).data {
                    x.drained = drained;
                    x.depth = depth;
                }
            }
        };
        if it.drained {
            st.cur_mut().regs[0] = Reg::scalar(Scalar::konst(0));
            return Ok(Some(Flow::Next(pc + 1)));
        }
        // As the kernel does: continue with the drained outcome first and
        // queue the one with another element.
        let mut more = st.clone();
        set_iter(st, true, it.depth);
        st.cur_mut().regs[0] = Reg::scalar(Scalar::konst(0));
        set_iter(&mut more, false, it.depth + 1);
        more.cur_mut().regs[0] = match k.ret {
            KRet::Object(rt) => {
                let ty = HostTypes::get().struct_id(rt).unwrap_or(0);
                let trust = if it.rcu {
                    Trust::Rcu
                } else if self.opts.iter_next_trusted {
                    Trust::Trusted
                } else {
                    Trust::Walked
                };
                Reg::ptr(RegType::Btf { ty, trust })
            }
            // bpf_iter_num_next: a read-only int inside the iterator.
            KRet::Mem { size } => Reg::ptr(RegType::RdonlyMem { size }),
            _ => {
                return fail(
                    RejectKind::Call,
                    format!("{} does not return a pointer", k.name),
                )
            }
        };
        // Linux's process_iter_next_call(): the round that runs again is
        // widened against the loop's previous round (the newest ancestor
        // remembered at this instruction in the same call chain, skipping
        // the one just remembered for this round).
        if let Some(prev) = self.prev_round(&more, pc) {
            crate::state::widen_imprecise(&self.ckpts[prev].st, &mut more);
        }
        self.push_branch(more, pc + 1, pc)?;
        Ok(Some(Flow::Next(pc + 1)))
    }
}

/// True when a pointer to `ty` at byte `off` is (or starts with) a `want`,
/// following first members, as the kernel's type matching does.
pub(crate) fn type_at_matches(ty: TypeId, off: i64, want: &str) -> bool {
    let h = HostTypes::get();
    let mut ty = h.resolve(ty);
    let mut off = off;
    for _ in 0..8 {
        let Some(Type::Struct(c)) = h.ty(ty) else {
            return false;
        };
        if off == 0 && c.name == want {
            return true;
        }
        let Some(m) = c.members.iter().rfind(|m| i64::from(m.offset) <= off) else {
            return false;
        };
        let mt = h.resolve(m.ty);
        if !matches!(h.ty(mt), Some(Type::Struct(_))) {
            return false;
        }
        off -= i64::from(m.offset);
        ty = mt;
    }
    false
}
