//! Parser for the bpf_conformance `.data` test format.
//!
//! Sections start with a `-- name` line: `asm` (uBPF text), `raw` (one 64-bit
//! little-endian instruction per line, takes precedence over `asm`), `mem`
//! (hex bytes passed to the program: `r1` = address, `r2` = length),
//! `result` (expected `r0`), `error` (expected failure text); `c` and
//! `no register offset` are informational. `#` starts a comment.

use thiserror::Error;

use crate::asm::{assemble, AsmError};
use crate::Insn;

/// One conformance test case.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TestCase {
    /// Assembly text of the `asm` section.
    pub asm: String,
    /// Instructions of the `raw` section, if present.
    pub raw: Option<Vec<Insn>>,
    /// Input memory.
    pub mem: Vec<u8>,
    /// Expected `r0`, if the test expects success.
    pub result: Option<u64>,
    /// Expected error text, if the test expects a failure.
    pub error: Option<String>,
}

/// A malformed `.data` file.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum DataError {
    /// An unknown `-- section` header.
    #[error("line {line}: unknown section `{name}`")]
    UnknownSection {
        /// 1-based line.
        line: usize,
        /// Section name.
        name: String,
    },
    /// A number that does not parse.
    #[error("line {line}: bad number `{text}` in section `{section}`")]
    BadNumber {
        /// 1-based line.
        line: usize,
        /// Section name.
        section: &'static str,
        /// Offending text.
        text: String,
    },
    /// Neither `result` nor `error` is given.
    #[error("no `-- result` or `-- error` section")]
    NoExpectation,
    /// The `asm` section does not assemble.
    #[error("asm section: {0}")]
    Asm(#[from] AsmError),
}

fn parse_u64(t: &str) -> Option<u64> {
    match t.strip_prefix("0x").or_else(|| t.strip_prefix("0X")) {
        Some(h) => u64::from_str_radix(h, 16).ok(),
        None => t.parse().ok(),
    }
}

impl TestCase {
    /// Parses the text of a `.data` file.
    pub fn parse(text: &str) -> Result<Self, DataError> {
        let mut tc = TestCase::default();
        let mut section = "";
        let mut raw = Vec::new();
        for (idx, full) in text.lines().enumerate() {
            let line = idx + 1;
            let content = full.split('#').next().unwrap_or("").trim();
            if let Some(name) = content.strip_prefix("--") {
                section = match name.trim() {
                    "asm" => "asm",
                    "raw" => "raw",
                    "mem" => "mem",
                    "result" => "result",
                    "error" => "error",
                    "c" | "no register offset" => "",
                    other => {
                        return Err(DataError::UnknownSection {
                            line,
                            name: other.to_string(),
                        })
                    }
                };
                continue;
            }
            if section == "asm" {
                // Keep comments out but line numbers intact for assembly errors.
                tc.asm.push_str(content);
                tc.asm.push('\n');
                continue;
            }
            if section == "asm" || content.is_empty() {
                continue;
            }
            let bad = |text: &str| DataError::BadNumber {
                line,
                section,
                text: text.to_string(),
            };
            match section {
                "raw" => {
                    let v = parse_u64(content).ok_or_else(|| bad(content))?;
                    raw.push(Insn::from_bytes(v.to_le_bytes()));
                }
                "mem" => {
                    for b in content.split_whitespace() {
                        tc.mem.push(u8::from_str_radix(b, 16).map_err(|_| bad(b))?);
                    }
                }
                "result" => tc.result = Some(parse_u64(content).ok_or_else(|| bad(content))?),
                "error" => tc.error = Some(content.to_string()),
                _ => {}
            }
        }
        if !raw.is_empty() {
            tc.raw = Some(raw);
        }
        if tc.result.is_none() && tc.error.is_none() {
            return Err(DataError::NoExpectation);
        }
        Ok(tc)
    }

    /// The program: the `raw` section if present, else the assembled `asm`.
    pub fn program(&self) -> Result<Vec<Insn>, AsmError> {
        match &self.raw {
            Some(r) => Ok(r.clone()),
            None => assemble(&self.asm),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_all_sections() {
        let t = "# c\n-- asm\nlddw %r0, 0x1122334455667788 # x\nexit\n-- raw\n0x5566778800000018\n\
                 0x1122334400000000\n0x0000000000000095\n-- mem\naa bb\n11\n-- result\n0x1122334455667788\n\
                 -- no register offset\ncall instruction\n";
        let tc = TestCase::parse(t).expect("parses");
        assert_eq!(tc.mem, [0xaa, 0xbb, 0x11]);
        assert_eq!(tc.result, Some(0x1122334455667788));
        assert_eq!(
            tc.program().ok(),
            assemble("lddw %r0, 0x1122334455667788\nexit").ok()
        );
        assert_eq!(
            TestCase::parse("-- asm\nexit\n"),
            Err(DataError::NoExpectation)
        );
        assert!(matches!(
            TestCase::parse("-- bogus\n"),
            Err(DataError::UnknownSection { line: 1, .. })
        ));
        assert!(matches!(
            TestCase::parse("-- mem\nzz\n"),
            Err(DataError::BadNumber { line: 2, .. })
        ));
        let e = TestCase::parse("-- asm\nexit\n-- error\nboom\n").expect("error case");
        assert_eq!(e.error.as_deref(), Some("boom"));
    }
}
