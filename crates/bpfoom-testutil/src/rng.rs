//! The one random generator of the tests: small, seeded, reproducible.
//!
//! Generated-program tests print their seed and take another from the
//! environment, so a failure is replayed by seed; a crate generator with
//! its own versioned algorithm would not add to that. xorshift64* (Vigna):
//! three shifts and a multiply, fine statistical quality for picking
//! instructions and operands.

/// A deterministic xorshift64* generator.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rng(u64);

impl Rng {
    /// A generator from `seed` (an all-zero state would stay zero, so the
    /// low bit is forced on: `1` and `0` give the same sequence).
    pub fn new(seed: u64) -> Rng {
        Rng(seed | 1)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// A value in `0..n` (`n > 0`; the modulo bias is irrelevant for tests).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }

    /// One element of a non-empty slice.
    pub fn pick<T: Copy>(&mut self, v: &[T]) -> T {
        v[self.below(v.len() as u64) as usize]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reproducible_and_spread() {
        let (mut a, mut b) = (Rng::new(42), Rng::new(42));
        let xs: Vec<u64> = (0..64).map(|_| a.next_u64()).collect();
        assert!(xs.iter().all(|&x| x == b.next_u64()));
        assert_ne!(xs[0], xs[1]);
        assert_eq!(Rng::new(0), Rng::new(1));
        let mut seen = [false; 10];
        for _ in 0..200 {
            seen[a.below(10) as usize] = true;
        }
        assert!(seen.iter().all(|&s| s), "{seen:?}");
        assert_eq!(a.pick(&[7u8]), 7);
    }
}
