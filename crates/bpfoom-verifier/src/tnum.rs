//! Tristate numbers: which bits of a value are known, and their values.
//!
//! A `Tnum { value, mask }` stands for every `x` with `x & !mask == value`.
//! The arithmetic follows the published tnum algorithms (Vishwanathan et al.,
//! "Sound, precise, and fast abstract interpretation with tristate numbers").

/// A set of 64-bit values described bit by bit.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Tnum {
    /// Known bit values (zero where unknown).
    pub value: u64,
    /// Unknown bits.
    pub mask: u64,
}

use std::ops::Add as _;

impl Tnum {
    /// Every value.
    pub const UNKNOWN: Tnum = Tnum {
        value: 0,
        mask: u64::MAX,
    };

    /// Exactly `v`.
    pub const fn konst(v: u64) -> Tnum {
        Tnum { value: v, mask: 0 }
    }

    /// The smallest tnum containing every value in `min..=max`.
    pub fn range(min: u64, max: u64) -> Tnum {
        let chi = min ^ max;
        let bits = 64 - chi.leading_zeros();
        if bits > 63 {
            return Tnum::UNKNOWN;
        }
        let delta = (1u64 << bits) - 1;
        Tnum {
            value: min & !delta,
            mask: delta,
        }
    }

    /// True when the value is fully known.
    pub const fn is_const(self) -> bool {
        self.mask == 0
    }

    /// Smallest member as unsigned.
    pub const fn umin(self) -> u64 {
        self.value
    }

    /// Largest member as unsigned.
    pub const fn umax(self) -> u64 {
        self.value | self.mask
    }

    /// Bitwise and.
    pub fn and(self, b: Tnum) -> Tnum {
        let alpha = self.value | self.mask;
        let beta = b.value | b.mask;
        let v = self.value & b.value;
        Tnum {
            value: v,
            mask: alpha & beta & !v,
        }
    }

    /// Bitwise or.
    pub fn or(self, b: Tnum) -> Tnum {
        let v = self.value | b.value;
        let mu = self.mask | b.mask;
        Tnum {
            value: v,
            mask: mu & !v,
        }
    }

    /// Bitwise exclusive or.
    pub fn xor(self, b: Tnum) -> Tnum {
        let v = self.value ^ b.value;
        let mu = self.mask | b.mask;
        Tnum {
            value: v & !mu,
            mask: mu,
        }
    }

    /// Left shift by a known amount (< 64).
    pub fn lsh(self, s: u32) -> Tnum {
        Tnum {
            value: self.value << s,
            mask: self.mask << s,
        }
    }

    /// Logical right shift by a known amount (< 64).
    pub fn rsh(self, s: u32) -> Tnum {
        Tnum {
            value: self.value >> s,
            mask: self.mask >> s,
        }
    }

    /// Arithmetic right shift of the low `width` bits by a known amount.
    pub fn arsh(self, s: u32, width: u32) -> Tnum {
        if width == 32 {
            let v = ((self.value as u32 as i32) >> s) as u32 as u64;
            let m = ((self.mask as u32 as i32) >> s) as u32 as u64;
            Tnum { value: v, mask: m }
        } else {
            Tnum {
                value: ((self.value as i64) >> s) as u64,
                mask: ((self.mask as i64) >> s) as u64,
            }
        }
    }

    /// Both sets at once; `None` when they share no value.
    pub fn intersect(self, b: Tnum) -> Option<Tnum> {
        if (self.value ^ b.value) & !(self.mask | b.mask) != 0 {
            return None;
        }
        let v = self.value | b.value;
        let mu = self.mask & b.mask;
        Some(Tnum {
            value: v & !mu,
            mask: mu,
        })
    }

    /// Truncates to the low `bytes` bytes (zero-extended).
    pub fn cast(self, bytes: u32) -> Tnum {
        if bytes >= 8 {
            return self;
        }
        let m = (1u64 << (bytes * 8)) - 1;
        Tnum {
            value: self.value & m,
            mask: self.mask & m,
        }
    }

    /// The low 32 bits, zero-extended.
    pub fn subreg(self) -> Tnum {
        self.cast(4)
    }

    /// Replaces the low 32 bits with `sub`'s.
    pub fn with_subreg(self, sub: Tnum) -> Tnum {
        let hi = Tnum {
            value: self.value & !0xffff_ffff,
            mask: self.mask & !0xffff_ffff,
        };
        hi.or(sub.subreg())
    }

    /// True when every member of `b` is a member of `self`.
    pub fn contains(self, b: Tnum) -> bool {
        if b.mask & !self.mask != 0 {
            return false;
        }
        b.value & !self.mask == self.value
    }

    /// True when `v` is a member.
    pub fn has(self, v: u64) -> bool {
        v & !self.mask == self.value
    }
}

impl std::ops::Add for Tnum {
    type Output = Tnum;

    /// Set addition.
    fn add(self, b: Tnum) -> Tnum {
        let sm = self.mask.wrapping_add(b.mask);
        let sv = self.value.wrapping_add(b.value);
        let sigma = sm.wrapping_add(sv);
        let chi = sigma ^ sv;
        let mu = chi | self.mask | b.mask;
        Tnum {
            value: sv & !mu,
            mask: mu,
        }
    }
}

impl std::ops::Sub for Tnum {
    type Output = Tnum;

    /// Set subtraction.
    fn sub(self, b: Tnum) -> Tnum {
        let dv = self.value.wrapping_sub(b.value);
        let alpha = dv.wrapping_add(self.mask);
        let beta = dv.wrapping_sub(b.mask);
        let chi = alpha ^ beta;
        let mu = chi | self.mask | b.mask;
        Tnum {
            value: dv & !mu,
            mask: mu,
        }
    }
}

impl std::ops::Mul for Tnum {
    type Output = Tnum;

    /// Set multiplication (shift-and-add over the multiplier's bits).
    fn mul(self, b: Tnum) -> Tnum {
        let acc_v = self.value.wrapping_mul(b.value);
        let mut acc_m = Tnum::konst(0);
        let (mut a, mut b) = (self, b);
        while a.value | a.mask != 0 {
            if a.value & 1 != 0 {
                acc_m = acc_m.add(Tnum {
                    value: 0,
                    mask: b.mask,
                });
            } else if a.mask & 1 != 0 {
                acc_m = acc_m.add(Tnum {
                    value: 0,
                    mask: b.value | b.mask,
                });
            }
            a = a.rsh(1);
            b = b.lsh(1);
        }
        Tnum::konst(acc_v).add(acc_m)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ops::{Add, Mul, Sub};

    fn members(t: Tnum) -> Vec<u64> {
        // Only for tnums with few unknown low bits.
        (0..=t.mask)
            .filter(|m| m & !t.mask == 0)
            .map(|m| t.value | m)
            .collect()
    }

    #[test]
    fn ops_are_sound_on_small_sets() {
        let samples = [
            Tnum::konst(5),
            Tnum::range(0, 7),
            Tnum {
                value: 0b1000,
                mask: 0b0101,
            },
            Tnum { value: 2, mask: 1 },
        ];
        for a in samples {
            for b in samples {
                for x in members(a) {
                    for y in members(b) {
                        assert!(a.add(b).has(x.wrapping_add(y)));
                        assert!(a.sub(b).has(x.wrapping_sub(y)));
                        assert!(a.mul(b).has(x.wrapping_mul(y)));
                        assert!(a.and(b).has(x & y));
                        assert!(a.or(b).has(x | y));
                        assert!(a.xor(b).has(x ^ y));
                    }
                }
            }
        }
    }

    #[test]
    fn range_and_intersect() {
        let r = Tnum::range(4, 7);
        assert_eq!(r, Tnum { value: 4, mask: 3 });
        assert_eq!(Tnum::range(0, u64::MAX), Tnum::UNKNOWN);
        assert!(Tnum::konst(4).intersect(Tnum::konst(5)).is_none());
        assert_eq!(r.intersect(Tnum::konst(6)), Some(Tnum::konst(6)));
        assert!(r.contains(Tnum::konst(5)));
        assert!(!Tnum::konst(5).contains(r));
    }
}
