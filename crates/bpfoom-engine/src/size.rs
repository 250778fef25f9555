//! Byte sizes as people write them in configs and scenarios.
//!
//! One parser for the daemon's config, its command line and the simulator's
//! scenarios, so a size that one accepts the others accept too: a plain
//! number of bytes, or a number with a `K`, `M`, `G` or `T` suffix (either
//! case, powers of 1024, as cgroupfs and `free -h` count). It lives here
//! because the engine is the pure crate both the daemon and the simulator
//! build on.

use serde::de::{self, Deserialize, Deserializer};
use thiserror::Error;

/// A byte count: an integer, or a string [`parse_size`] accepts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Size(pub u64);

/// Why a size did not parse.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum SizeError {
    /// The last character is a letter that is not a unit.
    #[error("bad size {text:?}: unknown suffix {suffix:?} (use K, M, G or T)")]
    UnknownSuffix {
        /// The whole text.
        text: String,
        /// The letter found.
        suffix: char,
    },
    /// No number before the (optional) unit.
    #[error("bad size {text:?}: expected a number with an optional K/M/G/T suffix")]
    NotANumber {
        /// The whole text.
        text: String,
    },
    /// The number times its unit does not fit 64 bits.
    #[error("size {text:?} is too large")]
    TooLarge {
        /// The whole text.
        text: String,
    },
    /// A negative integer where a size was expected.
    #[error("a size cannot be negative ({value})")]
    Negative {
        /// The integer given.
        value: i64,
    },
}

/// Parses `"80M"`, `"4096"`, `"1g"`, `"2T"`, `"0"` into bytes.
pub fn parse_size(s: &str) -> Result<u64, SizeError> {
    let t = s.trim();
    let (num, mult) = match t.char_indices().last() {
        Some((i, c)) if c.is_ascii_alphabetic() => {
            let shift = match c.to_ascii_uppercase() {
                'K' => 10,
                'M' => 20,
                'G' => 30,
                'T' => 40,
                _ => {
                    return Err(SizeError::UnknownSuffix {
                        text: s.to_string(),
                        suffix: c,
                    })
                }
            };
            (&t[..i], 1u64 << shift)
        }
        _ => (t, 1),
    };
    let n: u64 = num.trim().parse().map_err(|_| SizeError::NotANumber {
        text: s.to_string(),
    })?;
    n.checked_mul(mult).ok_or_else(|| SizeError::TooLarge {
        text: s.to_string(),
    })
}

impl std::str::FromStr for Size {
    type Err = SizeError;
    fn from_str(s: &str) -> Result<Self, SizeError> {
        parse_size(s).map(Size)
    }
}

impl<'de> Deserialize<'de> for Size {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(serde::Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Int(i64),
            Str(String),
        }
        match Raw::deserialize(d)? {
            Raw::Int(n) => u64::try_from(n)
                .map(Size)
                .map_err(|_| de::Error::custom(SizeError::Negative { value: n })),
            Raw::Str(s) => parse_size(&s).map(Size).map_err(de::Error::custom),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suffixes_and_errors() {
        assert_eq!(parse_size("80M"), Ok(80 << 20));
        assert_eq!(parse_size("8G"), Ok(8 << 30));
        assert_eq!(parse_size("4k"), Ok(4096));
        assert_eq!(parse_size("2t"), Ok(2 << 40));
        assert_eq!(parse_size(" 123 "), Ok(123));
        assert_eq!(parse_size("0"), Ok(0));
        assert!(matches!(
            parse_size("12X"),
            Err(SizeError::UnknownSuffix { suffix: 'X', .. })
        ));
        for bad in ["M", "", "-1M", "1.5G"] {
            assert!(
                matches!(parse_size(bad), Err(SizeError::NotANumber { .. })),
                "{bad:?}"
            );
        }
        assert!(matches!(
            parse_size("99999999999T"),
            Err(SizeError::TooLarge { .. })
        ));
    }

    #[test]
    fn deserializes_integers_and_strings() {
        #[derive(serde::Deserialize)]
        struct T {
            a: Size,
            b: Size,
        }
        let t: T = serde_json::from_str(r#"{"a": 4096, "b": "1T"}"#).unwrap();
        assert_eq!((t.a, t.b), (Size(4096), Size(1 << 40)));
        let e = serde_json::from_str::<T>(r#"{"a": -1, "b": "1"}"#)
            .err()
            .unwrap();
        assert!(e.to_string().contains("cannot be negative"), "{e}");
    }
}
