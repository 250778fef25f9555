//! `bpf_spin_lock` / `bpf_spin_unlock` on map values, with Linux's rules
//! (`process_spin_lock()` and its callers in `kernel/bpf/verifier.c`):
//!
//! - the argument is a map value pointer at a constant offset, exactly the
//!   offset of the value's one `struct bpf_spin_lock` (from the map's BTF);
//! - at most one lock is held; the unlock names the same lock (same map and
//!   the same looked-up value, tracked by the pointer's id);
//! - while a lock is held no helper but `bpf_spin_unlock` and no kfunc may
//!   be called (static bpf-to-bpf calls are fine, as in Linux 6.10+);
//! - the main program may not exit with the lock held (a subprogram may
//!   return holding it, the caller then unlocks);
//! - the lock field is never loaded or stored directly, nor read or written
//!   by a helper.

use bpfoom_abi::helpers;
use bpfoom_insn::opcode::*;
use bpfoom_obj::{Btf, BtfKind};

use crate::check::{fail, Verifier, R};
use crate::state::{Reg, RegFmt, RegType, State};
use crate::RejectKind;

/// The lock a path holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) struct Lock {
    /// Map whose value holds the lock.
    pub map: u32,
    /// Id of the map value pointer (0 for global data): which element.
    pub id: u32,
}

/// Byte offset of the only `struct bpf_spin_lock` in a map value of BTF type
/// `ty` (a struct, possibly nesting structs, or a global data section).
/// `None` when there is none or more than one (Linux refuses such a map).
pub(crate) fn spin_lock_offset(btf: &Btf, ty: u32) -> Option<u32> {
    let mut found = Vec::new();
    find(btf, ty, 0, 0, &mut found);
    match found.as_slice() {
        [one] => Some(*one),
        _ => None,
    }
}

fn find(btf: &Btf, ty: u32, base: u32, depth: usize, out: &mut Vec<u32>) {
    // Nesting deeper than this is no map value a compiler emits.
    if depth > 8 {
        return;
    }
    let id = btf.skip_mods_and_typedefs(ty);
    let Some(t) = btf.type_by_id(id) else { return };
    match &t.kind {
        BtfKind::Struct { members, .. } => {
            if t.name == "bpf_spin_lock" {
                out.push(base);
                return;
            }
            for m in members {
                find(btf, m.ty, base + m.bit_offset / 8, depth + 1, out);
            }
        }
        BtfKind::Datasec { vars, .. } => {
            for v in vars {
                if let Some(BtfKind::Var { ty, .. }) = btf.type_by_id(v.ty).map(|t| &t.kind) {
                    find(btf, *ty, base + v.offset, depth + 1, out);
                }
            }
        }
        _ => {}
    }
}

impl Verifier<'_> {
    /// `ARG_PTR_TO_SPIN_LOCK` of `bpf_spin_lock` (`lock`) or `bpf_spin_unlock`.
    pub(crate) fn spin_lock_arg(&self, st: &mut State, regno: u8, lock: bool) -> R<()> {
        let r: Reg = self.reg(st, regno)?;
        let desc = RegFmt(&r, self.input.maps).to_string();
        let RegType::MapValue { map } = r.ty else {
            return fail(
                RejectKind::Call,
                format!("R{regno} type={desc} expected=map_value"),
            );
        };
        if r.maybe_null {
            return fail(
                RejectKind::NullDeref,
                format!("R{regno} type={desc} expected=map_value: check it for NULL first"),
            );
        }
        let Some(c) = r.var.as_const() else {
            return fail(RejectKind::Call, format!("R{regno} doesn't have constant offset. bpf_spin_lock has to be at the constant offset"));
        };
        let info = &self.input.maps[map as usize];
        let Some(at) = info.spin_lock_off else {
            return fail(
                RejectKind::Call,
                format!("map '{}' has no valid bpf_spin_lock", info.name),
            );
        };
        let off = r.off + c as i64;
        if off != i64::from(at) {
            return fail(
                RejectKind::Call,
                format!("off {off} doesn't point to 'struct bpf_spin_lock' that is at {at}"),
            );
        }
        let this = Lock { map, id: r.id };
        if lock {
            if st.lock.is_some() {
                return fail(
                    RejectKind::Reference,
                    "Locking two bpf_spin_locks are not allowed",
                );
            }
            st.lock = Some(this);
        } else {
            match st.lock {
                None => {
                    return fail(
                        RejectKind::Reference,
                        "bpf_spin_unlock without taking a lock",
                    )
                }
                Some(l) if l != this => {
                    return fail(RejectKind::Reference, "bpf_spin_unlock of different lock")
                }
                Some(_) => st.lock = None,
            }
        }
        Ok(())
    }

    /// Calls other than `bpf_spin_unlock` and bpf-to-bpf calls are not
    /// allowed while a lock is held.
    pub(crate) fn check_call_under_lock(&self, st: &State, pc: usize) -> R<()> {
        if st.lock.is_none() {
            return Ok(());
        }
        let i = self.insns[pc];
        let unlock = helpers::by_name("spin_unlock").map(|h| h.id as i32);
        let allowed = match i.src {
            BPF_PSEUDO_CALL => true,
            BPF_PSEUDO_KFUNC_CALL => false,
            _ => Some(i.imm) == unlock,
        };
        if allowed {
            Ok(())
        } else {
            fail(
                RejectKind::Call,
                "function calls are not allowed while holding a lock",
            )
        }
    }

    /// The main program's exit with a lock held.
    pub(crate) fn check_exit_unlocked(&self, st: &State) -> R<()> {
        if st.lock.is_some() {
            return fail(
                RejectKind::Reference,
                "BPF_EXIT instruction in main prog cannot be used inside bpf_spin_lock-ed region",
            );
        }
        Ok(())
    }

    /// A load, store or helper access of `[lo, hi)` in a value of `map` must
    /// not touch its lock.
    pub(crate) fn check_lock_field(&self, map: u32, lo: i64, hi: i64) -> R<()> {
        let Some(at) = self
            .input
            .maps
            .get(map as usize)
            .and_then(|m| m.spin_lock_off)
        else {
            return Ok(());
        };
        let at = i64::from(at);
        if lo < at + 4 && at < hi {
            return fail(
                RejectKind::InvalidMemAccess,
                "bpf_spin_lock cannot be accessed directly by load/store",
            );
        }
        Ok(())
    }
}
