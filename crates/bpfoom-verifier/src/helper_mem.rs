//! Helper memory arguments beyond plain reads: `ARG_PTR_TO_UNINIT_MEM`
//! (memory the helper fills, e.g. `bpf_probe_read_kernel`'s `dst`) and
//! `ARG_PTR_TO_CONST_STR` (`bpf_strncmp`'s `s2`), as Linux checks them
//! (`check_helper_mem_access()` in raw mode, `check_reg_const_str()`).

use crate::check::{fail, Verifier, R};
use crate::state::{Byte, Frame, RegFmt, RegType, SlotData, State, STACK_SIZE};
use crate::RejectKind;

impl Verifier<'_> {
    /// The helper writes `size` bytes (the size register's maximum) at the
    /// pointer in `regno`: the bytes need not be initialised before, and are
    /// initialised (unknown) after. Spilled registers in the range are lost.
    pub(crate) fn uninit_mem_arg(&mut self, st: &mut State, regno: u8, size: i64) -> R<()> {
        let r = self.reg(st, regno)?;
        let desc = RegFmt(&r, self.input.maps).to_string();
        if r.maybe_null && size > 0 {
            return fail(
                RejectKind::NullDeref,
                format!("R{regno} may be NULL: check it before passing it"),
            );
        }
        let lo = r.off + r.var.smin;
        let hi = r.off + r.var.smax + size;
        match r.ty {
            RegType::Stack { frame } => {
                if size == 0 {
                    // Linux checks (and counts for the stack depth) a
                    // zero-sized access's offset too.
                    if (-STACK_SIZE..0).contains(&lo) {
                        self.grow_stack(st, frame as usize, lo);
                    }
                    return Ok(());
                }
                if lo < -STACK_SIZE || hi > 0 {
                    return fail(
                        RejectKind::Stack,
                        format!("invalid indirect access to stack R{regno} off={lo} size={size}"),
                    );
                }
                self.grow_stack(st, frame as usize, lo);
                let Some(fr) = st.frames.get_mut(frame as usize) else {
                    return fail(
                        RejectKind::Stack,
                        format!("R{regno} points to a stack frame that no longer exists"),
                    );
                };
                for o in lo..hi {
                    let (s, _) = Frame::locate(o);
                    if fr.slot(s).bytes.contains(&Byte::Iter) {
                        return fail(
                            RejectKind::Reference,
                            format!("R{regno} writes over an iterator at fp{o}"),
                        );
                    }
                }
                for o in lo..hi {
                    let (s, b) = Frame::locate(o);
                    let slot = fr.slot_mut(s);
                    if let SlotData::Spill { .. } = slot.data {
                        for x in slot.bytes.iter_mut() {
                            if *x == Byte::Spill {
                                *x = Byte::Misc;
                            }
                        }
                        slot.data = SlotData::None;
                    }
                    slot.bytes[b] = Byte::Misc;
                }
                Ok(())
            }
            RegType::MapValue { map } => {
                let info = &self.input.maps[map as usize];
                if info.read_only {
                    return fail(
                        RejectKind::ReadOnly,
                        format!("write into map forbidden: {} is read-only", info.name),
                    );
                }
                let limit = i64::from(info.value_size);
                if size > 0 && (lo < 0 || hi > limit) {
                    return fail(
                        RejectKind::InvalidMemAccess,
                        format!("R{regno} invalid access to map value, value_size={limit} off={lo} size={size}"),
                    );
                }
                self.check_lock_field(map, lo, hi)
            }
            RegType::Mem { size: limit } => {
                if size > 0 && (lo < 0 || hi > i64::from(limit)) {
                    return fail(
                        RejectKind::InvalidMemAccess,
                        format!("R{regno} invalid access to memory, mem_size={limit} off={lo} size={size}"),
                    );
                }
                Ok(())
            }
            RegType::RdonlyMem { .. } => fail(
                RejectKind::ReadOnly,
                format!("R{regno} cannot write into {desc}: the memory is read-only"),
            ),
            _ if r.is_null_const() && size == 0 => Ok(()),
            _ => fail(
                RejectKind::Call,
                format!("R{regno} type={desc} expected=fp, map_value, mem"),
            ),
        }
    }

    /// `ARG_PTR_TO_CONST_STR`: a constant offset into a read-only map
    /// (`.rodata`) with a NUL after it.
    pub(crate) fn const_str_arg(&self, st: &State, regno: u8) -> R<()> {
        let r = self.reg(st, regno)?;
        let RegType::MapValue { map } = r.ty else {
            return fail(
                RejectKind::Call,
                format!(
                    "R{regno} type={} expected=map_value (a string in .rodata)",
                    RegFmt(&r, self.input.maps)
                ),
            );
        };
        let info = &self.input.maps[map as usize];
        if r.maybe_null || !info.read_only {
            return fail(
                RejectKind::Call,
                format!("R{regno} does not point to a readonly map'"),
            );
        }
        let Some(c) = r.var.as_const() else {
            return fail(
                RejectKind::Call,
                format!("R{regno} is not a constant address'"),
            );
        };
        let o = r.off + c as i64;
        if o < 0 || o >= i64::from(info.value_size) {
            return fail(
                RejectKind::InvalidMemAccess,
                format!(
                    "R{regno} invalid access to map value, value_size={} off={o}",
                    info.value_size
                ),
            );
        }
        if let Some(init) = &info.initial {
            if !init.get(o as usize..).is_some_and(|s| s.contains(&0)) {
                return fail(RejectKind::Call, "string is not zero-terminated");
            }
        }
        Ok(())
    }
}
