//! Scalar abstract values: a tnum plus signed and unsigned 64- and 32-bit
//! bounds, kept mutually refined by [`Scalar::sync`].

use std::fmt;
use std::ops::{Add, Mul, Sub};

use bpfoom_insn::opcode::*;

use crate::tnum::Tnum;

/// An abstract 64-bit value.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Scalar {
    /// Known bits.
    pub var_off: Tnum,
    /// Signed 64-bit minimum.
    pub smin: i64,
    /// Signed 64-bit maximum.
    pub smax: i64,
    /// Unsigned 64-bit minimum.
    pub umin: u64,
    /// Unsigned 64-bit maximum.
    pub umax: u64,
    /// Signed minimum of the low 32 bits.
    pub s32min: i32,
    /// Signed maximum of the low 32 bits.
    pub s32max: i32,
    /// Unsigned minimum of the low 32 bits.
    pub u32min: u32,
    /// Unsigned maximum of the low 32 bits.
    pub u32max: u32,
}

/// Bounds of one width (32 or 64), held in 64-bit integers.
#[derive(Clone, Copy, Debug)]
struct Bounds {
    smin: i64,
    smax: i64,
    umin: u64,
    umax: u64,
}

fn umax_of(w: u32) -> u64 {
    if w == 32 {
        u64::from(u32::MAX)
    } else {
        u64::MAX
    }
}
fn smin_of(w: u32) -> i64 {
    if w == 32 {
        i64::from(i32::MIN)
    } else {
        i64::MIN
    }
}
fn smax_of(w: u32) -> i64 {
    if w == 32 {
        i64::from(i32::MAX)
    } else {
        i64::MAX
    }
}

impl Bounds {
    fn full(w: u32) -> Bounds {
        Bounds {
            smin: smin_of(w),
            smax: smax_of(w),
            umin: 0,
            umax: umax_of(w),
        }
    }
}

/// A comparison as seen from one outcome of a conditional jump.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cmp {
    /// `==`
    Eq,
    /// `!=`
    Ne,
    /// unsigned `>`
    Gt,
    /// unsigned `>=`
    Ge,
    /// unsigned `<`
    Lt,
    /// unsigned `<=`
    Le,
    /// signed `>`
    Sgt,
    /// signed `>=`
    Sge,
    /// signed `<`
    Slt,
    /// signed `<=`
    Sle,
    /// `a & b != 0`
    Set,
    /// `a & b == 0`
    NotSet,
}

impl Cmp {
    /// The comparison a jump opcode tests (`None` for non-conditional ops).
    pub fn from_op(op: u8) -> Option<Cmp> {
        Some(match op {
            BPF_JEQ => Cmp::Eq,
            BPF_JNE => Cmp::Ne,
            BPF_JGT => Cmp::Gt,
            BPF_JGE => Cmp::Ge,
            BPF_JLT => Cmp::Lt,
            BPF_JLE => Cmp::Le,
            BPF_JSGT => Cmp::Sgt,
            BPF_JSGE => Cmp::Sge,
            BPF_JSLT => Cmp::Slt,
            BPF_JSLE => Cmp::Sle,
            BPF_JSET => Cmp::Set,
            _ => return None,
        })
    }

    /// The comparison that holds on the other outcome.
    pub fn negate(self) -> Cmp {
        match self {
            Cmp::Eq => Cmp::Ne,
            Cmp::Ne => Cmp::Eq,
            Cmp::Gt => Cmp::Le,
            Cmp::Le => Cmp::Gt,
            Cmp::Ge => Cmp::Lt,
            Cmp::Lt => Cmp::Ge,
            Cmp::Sgt => Cmp::Sle,
            Cmp::Sle => Cmp::Sgt,
            Cmp::Sge => Cmp::Slt,
            Cmp::Slt => Cmp::Sge,
            Cmp::Set => Cmp::NotSet,
            Cmp::NotSet => Cmp::Set,
        }
    }

    /// Whether the comparison holds for two concrete values of width `w`.
    pub fn eval(self, a: u64, b: u64, w: u32) -> bool {
        let (sa, sb) = if w == 32 {
            (i64::from(a as u32 as i32), i64::from(b as u32 as i32))
        } else {
            (a as i64, b as i64)
        };
        match self {
            Cmp::Eq => a == b,
            Cmp::Ne => a != b,
            Cmp::Gt => a > b,
            Cmp::Ge => a >= b,
            Cmp::Lt => a < b,
            Cmp::Le => a <= b,
            Cmp::Sgt => sa > sb,
            Cmp::Sge => sa >= sb,
            Cmp::Slt => sa < sb,
            Cmp::Sle => sa <= sb,
            Cmp::Set => a & b != 0,
            Cmp::NotSet => a & b == 0,
        }
    }
}

impl Scalar {
    /// Any 64-bit value.
    pub const UNKNOWN: Scalar = Scalar {
        var_off: Tnum::UNKNOWN,
        smin: i64::MIN,
        smax: i64::MAX,
        umin: 0,
        umax: u64::MAX,
        s32min: i32::MIN,
        s32max: i32::MAX,
        u32min: 0,
        u32max: u32::MAX,
    };

    /// Exactly `v`.
    pub fn konst(v: u64) -> Scalar {
        Scalar {
            var_off: Tnum::konst(v),
            smin: v as i64,
            smax: v as i64,
            umin: v,
            umax: v,
            s32min: v as u32 as i32,
            s32max: v as u32 as i32,
            u32min: v as u32,
            u32max: v as u32,
        }
    }

    /// Any zero-extended value of `bytes` bytes.
    pub fn sized(bytes: u32) -> Scalar {
        if bytes >= 8 {
            return Scalar::UNKNOWN;
        }
        Scalar::from_tnum(Tnum::UNKNOWN.cast(bytes))
    }

    /// The values of a tnum, bounds derived from it.
    pub fn from_tnum(t: Tnum) -> Scalar {
        let mut s = Scalar {
            var_off: t,
            ..Scalar::UNKNOWN
        };
        s.sync();
        s
    }

    /// Any value in `min..=max` (unsigned).
    pub fn urange(min: u64, max: u64) -> Scalar {
        let mut s = Scalar {
            umin: min,
            umax: max,
            ..Scalar::UNKNOWN
        };
        s.sync();
        s
    }

    /// The value, when known.
    pub fn as_const(&self) -> Option<u64> {
        self.var_off.is_const().then_some(self.var_off.value)
    }

    /// The low 32 bits, when known.
    pub fn as_const32(&self) -> Option<u64> {
        self.var_off
            .subreg()
            .is_const()
            .then_some(self.var_off.value & 0xffff_ffff)
    }

    fn width_const(&self, w: u32) -> Option<u64> {
        if w == 32 {
            self.as_const32()
        } else {
            self.as_const()
        }
    }

    /// True for the full unknown value.
    pub fn is_unknown(&self) -> bool {
        *self == Scalar::UNKNOWN
    }

    fn bounds(&self, w: u32) -> Bounds {
        if w == 32 {
            Bounds {
                smin: self.s32min.into(),
                smax: self.s32max.into(),
                umin: self.u32min.into(),
                umax: self.u32max.into(),
            }
        } else {
            Bounds {
                smin: self.smin,
                smax: self.smax,
                umin: self.umin,
                umax: self.umax,
            }
        }
    }

    fn set_bounds(&mut self, w: u32, b: Bounds) -> bool {
        if b.umin > b.umax || b.smin > b.smax {
            return false;
        }
        if w == 32 {
            self.s32min = b.smin as i32;
            self.s32max = b.smax as i32;
            self.u32min = b.umin as u32;
            self.u32max = b.umax as u32;
        } else {
            self.smin = b.smin;
            self.smax = b.smax;
            self.umin = b.umin;
            self.umax = b.umax;
        }
        true
    }

    fn tnum(&self, w: u32) -> Tnum {
        if w == 32 {
            self.var_off.subreg()
        } else {
            self.var_off
        }
    }

    fn set_tnum(&mut self, w: u32, t: Tnum) {
        self.var_off = if w == 32 {
            self.var_off.with_subreg(t)
        } else {
            t
        };
    }

    /// Builds the result of a `w`-bit operation: 32-bit results are zero-extended.
    fn result(w: u32, t: Tnum, b: Bounds) -> Scalar {
        let mut s = if w == 32 {
            Scalar {
                var_off: t.subreg(),
                umin: 0,
                umax: u64::from(u32::MAX),
                smin: 0,
                smax: i64::from(u32::MAX),
                ..Scalar::UNKNOWN
            }
        } else {
            Scalar {
                var_off: t,
                ..Scalar::UNKNOWN
            }
        };
        let ok = s.set_bounds(w, b) && s.sync();
        if ok {
            s
        } else if w == 32 {
            Scalar::sized(4)
        } else {
            Scalar::UNKNOWN
        }
    }

    /// Refines all bounds and the tnum from each other. Returns false when
    /// they contradict (no concrete value fits): the path is impossible.
    pub fn sync(&mut self) -> bool {
        for _ in 0..3 {
            let t = self.var_off;
            let sb = 1u64 << 63;
            self.umin = self.umin.max(t.umin());
            self.umax = self.umax.min(t.umax());
            self.smin = self.smin.max((t.value | (t.mask & sb)) as i64);
            self.smax = self.smax.min((t.value | (t.mask & !sb)) as i64);
            let (v, m) = (t.value as u32, t.mask as u32);
            self.u32min = self.u32min.max(v);
            self.u32max = self.u32max.min(v | m);
            self.s32min = self.s32min.max((v | (m & 0x8000_0000)) as i32);
            self.s32max = self.s32max.min((v | (m & 0x7fff_ffff)) as i32);
            // Signed and unsigned agree on a range that does not cross the sign boundary.
            if (self.umin as i64) <= (self.umax as i64) {
                self.smin = self.smin.max(self.umin as i64);
                self.smax = self.smax.min(self.umax as i64);
            }
            if (self.smin as u64) <= (self.smax as u64) {
                self.umin = self.umin.max(self.smin as u64);
                self.umax = self.umax.min(self.smax as u64);
            }
            if (self.u32min as i32) <= (self.u32max as i32) {
                self.s32min = self.s32min.max(self.u32min as i32);
                self.s32max = self.s32max.min(self.u32max as i32);
            }
            if (self.s32min as u32) <= (self.s32max as u32) {
                self.u32min = self.u32min.max(self.s32min as u32);
                self.u32max = self.u32max.min(self.s32max as u32);
            }
            // With the upper halves fixed, the low halves follow the 64-bit order.
            if self.umin >> 32 == self.umax >> 32 {
                self.u32min = self.u32min.max(self.umin as u32);
                self.u32max = self.u32max.min(self.umax as u32);
                if (self.umin as u32 as i32) <= (self.umax as u32 as i32) {
                    self.s32min = self.s32min.max(self.umin as u32 as i32);
                    self.s32max = self.s32max.min(self.umax as u32 as i32);
                }
            }
            if self.smin >> 32 == self.smax >> 32 {
                if (self.smin as u32) <= (self.smax as u32) {
                    self.u32min = self.u32min.max(self.smin as u32);
                    self.u32max = self.u32max.min(self.smax as u32);
                }
                if (self.smin as i32) <= (self.smax as i32) {
                    self.s32min = self.s32min.max(self.smin as i32);
                    self.s32max = self.s32max.min(self.smax as i32);
                }
            }
            if self.u32min > self.u32max || self.s32min > self.s32max {
                return false;
            }
            let hi_fixed = if self.umin >> 32 == self.umax >> 32 {
                Some(self.umin & !0xffff_ffff)
            } else if self.var_off.mask >> 32 == 0 {
                Some(self.var_off.value & !0xffff_ffff)
            } else {
                None
            };
            if let Some(hi) = hi_fixed {
                self.umin = self.umin.max(hi | u64::from(self.u32min));
                self.umax = self.umax.min(hi | u64::from(self.u32max));
                self.smin = self.smin.max((hi | u64::from(self.u32min)) as i64);
                self.smax = self.smax.min((hi | u64::from(self.u32max)) as i64);
            }
            if self.umin > self.umax || self.smin > self.smax {
                return false;
            }
            let Some(t) = self.var_off.intersect(Tnum::range(self.umin, self.umax)) else {
                return false;
            };
            let sub = Tnum::range(self.u32min.into(), self.u32max.into());
            let Some(sub) = t.subreg().intersect(sub) else {
                return false;
            };
            self.var_off = t.with_subreg(sub);
        }
        true
    }

    /// True when every value of `cur` is a value of `self` (state pruning).
    pub fn contains(&self, cur: &Scalar) -> bool {
        self.umin <= cur.umin
            && self.umax >= cur.umax
            && self.smin <= cur.smin
            && self.smax >= cur.smax
            && self.u32min <= cur.u32min
            && self.u32max >= cur.u32max
            && self.s32min <= cur.s32min
            && self.s32max >= cur.s32max
            && self.var_off.contains(cur.var_off)
    }

    /// The smallest value containing both (for widening).
    pub fn join(&self, o: &Scalar) -> Scalar {
        let mut s = Scalar {
            var_off: join_tnum(self.var_off, o.var_off),
            smin: self.smin.min(o.smin),
            smax: self.smax.max(o.smax),
            umin: self.umin.min(o.umin),
            umax: self.umax.max(o.umax),
            s32min: self.s32min.min(o.s32min),
            s32max: self.s32max.max(o.s32max),
            u32min: self.u32min.min(o.u32min),
            u32max: self.u32max.max(o.u32max),
        };
        if !s.sync() {
            s = Scalar::UNKNOWN;
        }
        s
    }

    /// Truncates to `bytes` bytes, zero-extended (a narrow load or store).
    pub fn truncate(&self, bytes: u32) -> Scalar {
        if bytes >= 8 {
            return *self;
        }
        let limit = (1u64 << (bytes * 8)) - 1;
        if self.umax <= limit {
            return *self;
        }
        Scalar::from_tnum(self.var_off.cast(bytes))
    }

    /// Sign-extends the low `bits` bits to 64 (`movsx`, `ldsx`).
    pub fn sign_extend(&self, bits: u32) -> Scalar {
        let t = self.var_off.cast(bits / 8);
        if t.is_const() {
            let v = t.value << (64 - bits);
            return Scalar::konst(((v as i64) >> (64 - bits)) as u64);
        }
        let half = 1u64 << (bits - 1);
        if t.umax() < half {
            return Scalar::from_tnum(t);
        }
        let mut s = Scalar {
            smin: -(half as i64),
            smax: half as i64 - 1,
            ..Scalar::UNKNOWN
        };
        s.sync();
        s
    }

    /// Applies an ALU operation of width `w` (32 or 64). `signed` selects
    /// sdiv/smod. Division by zero follows BPF semantics (`x / 0 = 0`,
    /// `x % 0 = x`). The caller rejects constant shifts out of range.
    pub fn alu(op: u8, a: &Scalar, b: &Scalar, w: u32, signed: bool) -> Scalar {
        if let (Some(x), Some(y)) = (a.width_const(w), b.width_const(w)) {
            if let Some(v) = eval_alu(op, x, y, w, signed) {
                return Scalar::konst(v);
            }
        }
        let (ta, tb) = (a.tnum(w), b.tnum(w));
        let (ba, bb) = (a.bounds(w), b.bounds(w));
        let full = Bounds::full(w);
        let um = umax_of(w);
        let fits_s = |v: Option<i64>| v.filter(|v| (smin_of(w)..=smax_of(w)).contains(v));
        let fits_u = |v: Option<u64>| v.filter(|v| *v <= um);
        let (t, bnd) = match op {
            BPF_ADD => {
                let mut r = full;
                if let (Some(lo), Some(hi)) = (
                    fits_u(ba.umin.checked_add(bb.umin)),
                    fits_u(ba.umax.checked_add(bb.umax)),
                ) {
                    (r.umin, r.umax) = (lo, hi);
                }
                if let (Some(lo), Some(hi)) = (
                    fits_s(ba.smin.checked_add(bb.smin)),
                    fits_s(ba.smax.checked_add(bb.smax)),
                ) {
                    (r.smin, r.smax) = (lo, hi);
                }
                (ta.add(tb), r)
            }
            BPF_SUB => {
                let mut r = full;
                if ba.umin >= bb.umax {
                    (r.umin, r.umax) = (ba.umin - bb.umax, ba.umax - bb.umin);
                }
                if let (Some(lo), Some(hi)) = (
                    fits_s(ba.smin.checked_sub(bb.smax)),
                    fits_s(ba.smax.checked_sub(bb.smin)),
                ) {
                    (r.smin, r.smax) = (lo, hi);
                }
                (ta.sub(tb), r)
            }
            BPF_MUL => {
                let mut r = full;
                if let Some(hi) = fits_u(ba.umax.checked_mul(bb.umax)) {
                    (r.umin, r.umax) = (ba.umin * bb.umin, hi);
                    if hi <= smax_of(w) as u64 {
                        (r.smin, r.smax) = (r.umin as i64, hi as i64);
                    }
                }
                (ta.mul(tb), r)
            }
            BPF_AND => {
                let mut r = full;
                r.umax = ba.umax.min(bb.umax);
                if ba.smin >= 0 || bb.smin >= 0 {
                    r.smin = 0;
                    r.smax = if ba.smin >= 0 && bb.smin >= 0 {
                        ba.smax.min(bb.smax)
                    } else if ba.smin >= 0 {
                        ba.smax
                    } else {
                        bb.smax
                    };
                }
                (ta.and(tb), r)
            }
            BPF_OR => {
                let mut r = full;
                r.umin = ba.umin.max(bb.umin);
                (ta.or(tb), r)
            }
            BPF_XOR => (ta.xor(tb), full),
            BPF_LSH | BPF_RSH | BPF_ARSH => match b.width_const(w) {
                Some(k) if k < u64::from(w) => shift(op, ta, ba, k as u32, w),
                _ => (Tnum::UNKNOWN, full),
            },
            BPF_DIV | BPF_MOD if signed => (Tnum::UNKNOWN, full),
            BPF_DIV => {
                let mut r = full;
                r.umax = ba.umax.checked_div(bb.umin).unwrap_or(ba.umax);
                r.umin = if bb.umin > 0 {
                    ba.umin / bb.umax.max(1)
                } else {
                    0
                };
                (Tnum::UNKNOWN, r)
            }
            BPF_MOD => {
                let mut r = full;
                r.umax = if bb.umin > 0 {
                    ba.umax.min(bb.umax - 1)
                } else {
                    ba.umax.max(bb.umax.saturating_sub(1))
                };
                (Tnum::UNKNOWN, r)
            }
            _ => (Tnum::UNKNOWN, full),
        };
        let t = if w == 32 { t.subreg() } else { t };
        Scalar::result(w, t, bnd)
    }

    /// Narrows `a` and `b` to the values for which `a cmp b` holds (width
    /// `w`). Returns false when no values do: that outcome is impossible.
    pub fn refine(cmp: Cmp, a: &mut Scalar, b: &mut Scalar, w: u32) -> bool {
        let (mut x, mut y) = (a.bounds(w), b.bounds(w));
        let (mut tx, mut ty) = (a.tnum(w), b.tnum(w));
        let um = umax_of(w);
        match cmp {
            Cmp::Eq => {
                x.umin = x.umin.max(y.umin);
                x.umax = x.umax.min(y.umax);
                x.smin = x.smin.max(y.smin);
                x.smax = x.smax.min(y.smax);
                y = x;
                let Some(t) = tx.intersect(ty) else {
                    return false;
                };
                tx = t;
                ty = t;
            }
            Cmp::Ne => {
                if !ne_trim(&mut x, &ty, w) || !ne_trim(&mut y, &tx, w) {
                    return false;
                }
            }
            Cmp::Gt | Cmp::Ge | Cmp::Lt | Cmp::Le => {
                let strict = u64::from(matches!(cmp, Cmp::Gt | Cmp::Lt));
                let (hi, lo) = if matches!(cmp, Cmp::Gt | Cmp::Ge) {
                    (&mut x, &mut y)
                } else {
                    (&mut y, &mut x)
                };
                // hi > lo (or >=).
                let Some(m) = lo.umin.checked_add(strict).filter(|m| *m <= um) else {
                    return false;
                };
                hi.umin = hi.umin.max(m);
                let Some(m) = hi.umax.checked_sub(strict) else {
                    return false;
                };
                lo.umax = lo.umax.min(m);
            }
            Cmp::Sgt | Cmp::Sge | Cmp::Slt | Cmp::Sle => {
                let strict = i64::from(matches!(cmp, Cmp::Sgt | Cmp::Slt));
                let (hi, lo) = if matches!(cmp, Cmp::Sgt | Cmp::Sge) {
                    (&mut x, &mut y)
                } else {
                    (&mut y, &mut x)
                };
                let Some(m) = lo.smin.checked_add(strict).filter(|m| *m <= smax_of(w)) else {
                    return false;
                };
                hi.smin = hi.smin.max(m);
                let Some(m) = hi.smax.checked_sub(strict).filter(|m| *m >= smin_of(w)) else {
                    return false;
                };
                lo.smax = lo.smax.min(m);
            }
            Cmp::Set => {
                if (tx.umax() & ty.umax()) == 0 {
                    return false;
                }
                if let Some(c) = ty.is_const().then_some(ty.value) {
                    if tx.value & c == 0 && tx.mask & c & (tx.mask & c).wrapping_sub(1) == 0 {
                        // Exactly one candidate bit may be set: it must be.
                        tx.value |= tx.mask & c;
                        tx.mask &= !c;
                    }
                }
            }
            Cmp::NotSet => {
                if let Some(c) = ty.is_const().then_some(ty.value) {
                    if tx.value & c != 0 {
                        return false;
                    }
                    tx.mask &= !c;
                } else if tx.is_const() && ty.value & tx.value != 0 {
                    return false;
                }
            }
        }
        a.set_tnum(w, tx);
        b.set_tnum(w, ty);
        a.set_bounds(w, x) && b.set_bounds(w, y) && a.sync() && b.sync()
    }
}

/// Removes a known excluded constant from the ends of a range.
fn ne_trim(x: &mut Bounds, other: &Tnum, w: u32) -> bool {
    if !other.is_const() {
        return true;
    }
    let c = other.value;
    let sc = if w == 32 {
        i64::from(c as u32 as i32)
    } else {
        c as i64
    };
    if x.umin == c {
        x.umin = match c.checked_add(1).filter(|v| *v <= umax_of(w)) {
            Some(v) => v,
            None => return false,
        };
    }
    if x.umax == c {
        x.umax = match c.checked_sub(1) {
            Some(v) => v,
            None => return false,
        };
    }
    if x.smin == sc {
        x.smin = match sc.checked_add(1).filter(|v| *v <= smax_of(w)) {
            Some(v) => v,
            None => return false,
        };
    }
    if x.smax == sc {
        x.smax = match sc.checked_sub(1).filter(|v| *v >= smin_of(w)) {
            Some(v) => v,
            None => return false,
        };
    }
    x.umin <= x.umax && x.smin <= x.smax
}

fn shift(op: u8, t: Tnum, b: Bounds, k: u32, w: u32) -> (Tnum, Bounds) {
    let mut r = Bounds::full(w);
    match op {
        BPF_LSH => {
            if b.umax <= umax_of(w) >> k {
                (r.umin, r.umax) = (b.umin << k, b.umax << k);
            }
            (t.lsh(k), r)
        }
        BPF_RSH => {
            (r.umin, r.umax) = (b.umin >> k, b.umax >> k);
            (t.rsh(k), r)
        }
        _ => {
            (r.smin, r.smax) = (b.smin >> k, b.smax >> k);
            (t.arsh(k, w), r)
        }
    }
}

fn join_tnum(a: Tnum, b: Tnum) -> Tnum {
    let mu = a.mask | b.mask | (a.value ^ b.value);
    Tnum {
        value: a.value & !mu,
        mask: mu,
    }
}

/// Concrete BPF ALU semantics on width `w` (32-bit results zero-extended).
/// `None` for operations this function does not evaluate.
pub fn eval_alu(op: u8, x: u64, y: u64, w: u32, signed: bool) -> Option<u64> {
    let m = umax_of(w);
    let (x, y) = (x & m, y & m);
    let sx = |v: u64| {
        if w == 32 {
            i64::from(v as u32 as i32)
        } else {
            v as i64
        }
    };
    let r = match op {
        BPF_ADD => x.wrapping_add(y),
        BPF_SUB => x.wrapping_sub(y),
        BPF_MUL => x.wrapping_mul(y),
        BPF_OR => x | y,
        BPF_AND => x & y,
        BPF_XOR => x ^ y,
        BPF_LSH if y < u64::from(w) => x << y,
        BPF_RSH if y < u64::from(w) => x >> y,
        BPF_ARSH if y < u64::from(w) => (sx(x) >> y) as u64,
        BPF_DIV if !signed => x.checked_div(y).unwrap_or(0),
        BPF_MOD if !signed => x.checked_rem(y).unwrap_or(x),
        BPF_DIV => {
            if y == 0 {
                0
            } else {
                sx(x).wrapping_div(sx(y)) as u64
            }
        }
        BPF_MOD => {
            if y == 0 {
                x
            } else {
                sx(x).wrapping_rem(sx(y)) as u64
            }
        }
        _ => return None,
    };
    Some(r & m)
}

impl fmt::Display for Scalar {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(v) = self.as_const() {
            return if (v as i64) < 0 && (v as i64) > -(1 << 32) {
                write!(f, "{}", v as i64)
            } else {
                write!(f, "{v}")
            };
        }
        let mut parts: Vec<String> = Vec::new();
        if self.smin != i64::MIN {
            parts.push(format!("smin={}", self.smin));
        }
        if self.smax != i64::MAX {
            parts.push(format!("smax={}", self.smax));
        }
        if self.umin != 0 {
            parts.push(format!("umin={}", self.umin));
        }
        if self.umax != u64::MAX {
            parts.push(format!("umax={}", self.umax));
        }
        if self.s32min != i32::MIN {
            parts.push(format!("smin32={}", self.s32min));
        }
        if self.s32max != i32::MAX {
            parts.push(format!("smax32={}", self.s32max));
        }
        if self.u32min != 0 {
            parts.push(format!("umin32={}", self.u32min));
        }
        if self.u32max != u32::MAX {
            parts.push(format!("umax32={}", self.u32max));
        }
        if self.var_off != Tnum::UNKNOWN {
            parts.push(format!(
                "var_off=({:#x}; {:#x})",
                self.var_off.value, self.var_off.mask
            ));
        }
        write!(f, "scalar({})", parts.join(","))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constants_fold_exactly() {
        let a = Scalar::konst(7);
        let b = Scalar::konst(3);
        assert_eq!(Scalar::alu(BPF_MOD, &a, &b, 64, false).as_const(), Some(1));
        assert_eq!(
            Scalar::alu(BPF_SUB, &b, &a, 32, false).as_const(),
            Some(0xffff_fffc)
        );
        assert_eq!(
            Scalar::alu(BPF_DIV, &a, &Scalar::konst(0), 64, false).as_const(),
            Some(0)
        );
        assert_eq!(
            Scalar::alu(BPF_MOD, &a, &Scalar::konst(0), 64, false).as_const(),
            Some(7)
        );
    }

    #[test]
    fn and_mask_bounds_index() {
        let x = Scalar::alu(BPF_AND, &Scalar::UNKNOWN, &Scalar::konst(0xff), 64, false);
        assert_eq!((x.umin, x.umax, x.smin, x.smax), (0, 255, 0, 255));
        let y = Scalar::alu(BPF_LSH, &x, &Scalar::konst(3), 64, false);
        assert_eq!(y.umax, 255 << 3);
    }

    #[test]
    fn branches_refine_and_detect_impossible() {
        let mut a = Scalar::UNKNOWN;
        let mut k = Scalar::konst(10);
        assert!(Scalar::refine(Cmp::Lt, &mut a, &mut k, 64));
        assert_eq!(a.umax, 9);
        let mut k2 = Scalar::konst(20);
        assert!(!Scalar::refine(Cmp::Gt, &mut a.clone(), &mut k2, 64));
        // 32-bit compare on a zero-extended value bounds the whole register.
        let mut z = Scalar::sized(4);
        let mut c = Scalar::konst(4);
        assert!(Scalar::refine(Cmp::Le, &mut z, &mut c, 32));
        assert_eq!((z.umin, z.umax), (0, 4));
        let mut e = Scalar::konst(3);
        assert!(!Scalar::refine(Cmp::Ne, &mut e, &mut Scalar::konst(3), 64));
    }

    #[test]
    fn signed_unsigned_cross_refine() {
        let mut a = Scalar::UNKNOWN;
        assert!(Scalar::refine(Cmp::Sge, &mut a, &mut Scalar::konst(0), 64));
        assert!(Scalar::refine(Cmp::Slt, &mut a, &mut Scalar::konst(16), 64));
        assert_eq!((a.umin, a.umax), (0, 15));
    }

    fn member(s: &Scalar, v: u64) -> bool {
        s.contains(&Scalar::konst(v))
    }

    /// An abstract value built around the concrete `x` in one of several ways.
    fn around(x: u64, how: u8, a: u64, b: u64) -> Scalar {
        match how % 5 {
            0 => Scalar::konst(x),
            1 => Scalar::urange(x.saturating_sub(a % 1000), x.saturating_add(b % 1000)),
            2 => Scalar::from_tnum(Tnum {
                value: x & !a,
                mask: a,
            }),
            3 => {
                let mut s = Scalar {
                    smin: (x as i64).saturating_sub((a % 5000) as i64),
                    smax: (x as i64).saturating_add((b % 5000) as i64),
                    ..Scalar::UNKNOWN
                };
                assert!(s.sync());
                s
            }
            _ => Scalar::UNKNOWN,
        }
    }

    fn interesting() -> impl proptest::strategy::Strategy<Value = u64> {
        use proptest::prelude::*;
        prop_oneof![
            any::<u64>(),
            0u64..64,
            (0u64..64).prop_map(|v| v.wrapping_neg()),
            (0u64..64).prop_map(|v| (1 << 31) + v - 32),
            (0u64..64).prop_map(|v| (1 << 32) + v - 32),
            (0u64..64).prop_map(|v| (1 << 63) + v - 32),
        ]
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig { cases: 4000, ..Default::default() })]

        /// Every ALU result and branch refinement keeps the concrete values.
        #[test]
        fn alu_and_refine_are_sound(
            x in interesting(), y in interesting(),
            hx in 0u8..5, hy in 0u8..5,
            a in proptest::prelude::any::<u64>(), b in proptest::prelude::any::<u64>(),
            opi in 0usize..13, cmpi in 0usize..12, w64 in proptest::prelude::any::<bool>(),
            signed in proptest::prelude::any::<bool>(),
        ) {
            let (sa, sb) = (around(x, hx, a, b), around(y, hy, b, a));
            proptest::prop_assert!(member(&sa, x) && member(&sb, y));
            let w = if w64 { 64 } else { 32 };
            let ops = [BPF_ADD, BPF_SUB, BPF_MUL, BPF_DIV, BPF_OR, BPF_AND, BPF_LSH, BPF_RSH,
                       BPF_MOD, BPF_XOR, BPF_ARSH, BPF_DIV, BPF_MOD];
            let op = ops[opi];
            let signed = signed && matches!(op, BPF_DIV | BPF_MOD);
            if let Some(c) = eval_alu(op, x, y, w, signed) {
                let r = Scalar::alu(op, &sa, &sb, w, signed);
                proptest::prop_assert!(member(&r, c), "{op:#x} w{w} {sa} {sb}: {c:#x} not in {r}");
            }
            let cmps = [Cmp::Eq, Cmp::Ne, Cmp::Gt, Cmp::Ge, Cmp::Lt, Cmp::Le, Cmp::Sgt, Cmp::Sge,
                        Cmp::Slt, Cmp::Sle, Cmp::Set, Cmp::NotSet];
            let cmp = cmps[cmpi];
            let m = if w == 32 { 0xffff_ffff } else { u64::MAX };
            if cmp.eval(x & m, y & m, w) {
                let (mut ra, mut rb) = (sa, sb);
                let ok = Scalar::refine(cmp, &mut ra, &mut rb, w);
                proptest::prop_assert!(ok, "{cmp:?} w{w} wrongly impossible for {x:#x} {y:#x} in {sa} {sb}");
                proptest::prop_assert!(member(&ra, x) && member(&rb, y),
                    "{cmp:?} w{w}: {x:#x},{y:#x} lost: {ra} {rb} (from {sa} {sb})");
            }
            let t = sa.truncate(4);
            proptest::prop_assert!(member(&t, x & 0xffff_ffff));
            let e = sa.sign_extend(16);
            proptest::prop_assert!(member(&e, (x as u16 as i16) as i64 as u64));
            let j = sa.join(&sb);
            proptest::prop_assert!(member(&j, x) && member(&j, y));
        }
    }
}
