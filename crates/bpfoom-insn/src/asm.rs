//! Assembler for the uBPF text syntax used by the bpf_conformance `.data` files.
//!
//! One instruction per line, `#` starts a comment, `name:` defines a label.
//! Forms: `mov32 %r0, 1`, `ldxdw %r0, [%r1+8]`, `stw [%r10-4], 7`,
//! `stxdw [%r10-8], %r1`, `lddw %r0, 0x1122334455667788`, `jeq %r1, 2, +3`,
//! `jne %r0, %r1, label`, `ja label`, `ja32 +5` (gotol), `call 5` / `call helper 5`,
//! `call %r2` (callx), `call local label`, `call runtime 7` (kfunc), `exit`,
//! `lock [fetch] add|and|or|xor|xchg|cmpxchg[32] [%r10-8], %r1`,
//! `be16 %r0`, `le32 %r0`, `bswap64 %r0` (alias `swap64`), `neg %r0`,
//! `sdiv`/`smod`, `movsx{8,16,32}{32,64}`.
//! A jump target is a signed offset (`+3`, `-2`) or a label; the label `exit`
//! names the first `exit` unless defined explicitly.
//!
//! bpfoom extensions for relocated programs: `ldmapfd %r1, MAP`,
//! `ldmapvalue %r1, MAP, OFF`, `ldpseudo %r1, SRC, IMM, IMM2` (any `ld_imm64`),
//! `call kfunc ID` (alias of `call runtime`) and `callx %rN`.

use std::collections::HashMap;

use thiserror::Error;

use crate::opcode::*;
use crate::Insn;

/// An assembly error, with the 1-based line number of the offending text.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("line {line}: {kind}")]
pub struct AsmError {
    /// 1-based line number in the assembled text.
    pub line: usize,
    /// What is wrong.
    pub kind: AsmErrorKind,
}

/// The reasons an assembly line can be rejected.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum AsmErrorKind {
    /// The mnemonic is not known.
    #[error("unknown mnemonic `{0}`")]
    UnknownMnemonic(String),
    /// Wrong number of operands.
    #[error("`{mnemonic}` takes {expected} operand(s), found {found}")]
    OperandCount {
        /// The mnemonic.
        mnemonic: String,
        /// Operands expected.
        expected: usize,
        /// Operands found.
        found: usize,
    },
    /// Not a register name `%r0`..`%r10`.
    #[error("invalid register `{0}`")]
    BadRegister(String),
    /// Not a number, or out of range for its field.
    #[error("invalid or out-of-range number `{0}`")]
    BadNumber(String),
    /// Not a memory operand `[%rN]`, `[%rN+off]` or `[%rN-off]`.
    #[error("invalid memory operand `{0}` (expected [%rN+off])")]
    BadMemOperand(String),
    /// A jump or call names a label that is never defined.
    #[error("undefined label `{0}`")]
    UndefinedLabel(String),
    /// A label is defined twice.
    #[error("duplicate label `{0}`")]
    DuplicateLabel(String),
    /// A label is too far away for the instruction's offset field.
    #[error("jump to `{0}` is out of range")]
    JumpRange(String),
    /// A `call` with an unknown mode.
    #[error("invalid call form `{0}`")]
    BadCall(String),
    /// A `lock` line without a valid atomic operation.
    #[error("invalid atomic operation `{0}`")]
    BadAtomic(String),
}

/// Assembles uBPF-syntax text into instruction slots.
pub fn assemble(text: &str) -> Result<Vec<Insn>, AsmError> {
    let mut out: Vec<Insn> = Vec::new();
    // (slot index, label, line, field is imm rather than off)
    let mut fixups: Vec<(usize, String, usize, bool)> = Vec::new();
    let mut labels: HashMap<String, usize> = HashMap::new();
    let mut first_exit: Option<usize> = None;
    for (idx, raw_line) in text.lines().enumerate() {
        let line = idx + 1;
        let code = raw_line.split('#').next().unwrap_or("");
        let toks: Vec<&str> = code
            .split(|c: char| c == ',' || c.is_whitespace())
            .filter(|t| !t.is_empty())
            .collect();
        let Some((&first, ops)) = toks.split_first() else {
            continue;
        };
        let err = |kind| AsmError { line, kind };
        if let Some(label) = first.strip_suffix(':') {
            if labels.insert(label.to_string(), out.len()).is_some() {
                return Err(err(AsmErrorKind::DuplicateLabel(label.to_string())));
            }
            if let Some(&next) = ops.first() {
                return Err(err(AsmErrorKind::UnknownMnemonic(next.to_string())));
            }
            continue;
        }
        if first == "exit" && first_exit.is_none() {
            first_exit = Some(out.len());
        }
        let enc = encode(first, ops).map_err(err)?;
        if let Some(label) = enc.label {
            fixups.push((out.len(), label, line, enc.label_in_imm));
        }
        out.extend_from_slice(&enc.insns);
    }
    if let Some(pc) = first_exit {
        labels.entry("exit".to_string()).or_insert(pc);
    }
    for (pc, label, line, in_imm) in fixups {
        let err = |kind| AsmError { line, kind };
        let target = *labels
            .get(&label)
            .ok_or_else(|| err(AsmErrorKind::UndefinedLabel(label.clone())))?;
        let rel = target as i64 - pc as i64 - 1;
        if in_imm {
            out[pc].imm =
                i32::try_from(rel).map_err(|_| err(AsmErrorKind::JumpRange(label.clone())))?;
        } else {
            out[pc].off =
                i16::try_from(rel).map_err(|_| err(AsmErrorKind::JumpRange(label.clone())))?;
        }
    }
    Ok(out)
}

/// Assembles one line that must encode to exactly the given slots; used by
/// the disassembler to prove that its text round-trips.
pub(crate) fn encode_line(text: &str) -> Option<Vec<Insn>> {
    let toks: Vec<&str> = text
        .split(|c: char| c == ',' || c.is_whitespace())
        .filter(|t| !t.is_empty())
        .collect();
    let (&first, ops) = toks.split_first()?;
    let enc = encode(first, ops).ok()?;
    enc.label.is_none().then_some(enc.insns)
}

struct Encoded {
    insns: Vec<Insn>,
    label: Option<String>,
    label_in_imm: bool,
}

impl Encoded {
    fn one(i: Insn) -> Self {
        Self {
            insns: vec![i],
            label: None,
            label_in_imm: false,
        }
    }
}

type R<T> = Result<T, AsmErrorKind>;

fn want(m: &str, ops: &[&str], n: usize) -> R<()> {
    if ops.len() == n {
        Ok(())
    } else {
        Err(AsmErrorKind::OperandCount {
            mnemonic: m.to_string(),
            expected: n,
            found: ops.len(),
        })
    }
}

fn reg(s: &str) -> R<u8> {
    s.strip_prefix("%r")
        .and_then(|n| n.parse::<u8>().ok())
        .filter(|&n| n <= 10 && !s[2..].starts_with('0') || s == "%r0")
        .ok_or_else(|| AsmErrorKind::BadRegister(s.to_string()))
}

/// Parses `[-]0xHEX` or `[-+]DEC` into a value and whether it was hex.
fn number(s: &str) -> Option<(i128, bool)> {
    let (neg, body) = match s.as_bytes().first()? {
        b'-' => (true, &s[1..]),
        b'+' => (false, &s[1..]),
        _ => (false, s),
    };
    let (v, hex) = match body.strip_prefix("0x").or_else(|| body.strip_prefix("0X")) {
        Some(h) => (u64::from_str_radix(h, 16).ok()?, true),
        None if body.bytes().all(|b| b.is_ascii_digit()) && !body.is_empty() => {
            (body.parse::<u64>().ok()?, false)
        }
        None => return None,
    };
    Some((if neg { -(v as i128) } else { v as i128 }, hex))
}

fn imm32(s: &str) -> R<i32> {
    let bad = || AsmErrorKind::BadNumber(s.to_string());
    let (v, hex) = number(s).ok_or_else(bad)?;
    if hex && (0..=u32::MAX as i128).contains(&v) {
        return Ok(v as u32 as i32);
    }
    i32::try_from(v).map_err(|_| bad())
}

fn imm64(s: &str) -> R<i64> {
    let (v, _) = number(s).ok_or_else(|| AsmErrorKind::BadNumber(s.to_string()))?;
    if (0..=u64::MAX as i128).contains(&v) {
        return Ok(v as u64 as i64);
    }
    i64::try_from(v).map_err(|_| AsmErrorKind::BadNumber(s.to_string()))
}

fn off16(s: &str) -> R<i16> {
    let bad = || AsmErrorKind::BadNumber(s.to_string());
    let (v, hex) = number(s).ok_or_else(bad)?;
    if hex && (0..=u16::MAX as i128).contains(&v) {
        return Ok(v as u16 as i16);
    }
    i16::try_from(v).map_err(|_| bad())
}

/// `[%rN+off]` -> (register, offset).
fn mem(s: &str) -> R<(u8, i16)> {
    let bad = || AsmErrorKind::BadMemOperand(s.to_string());
    let inner = s
        .strip_prefix('[')
        .and_then(|t| t.strip_suffix(']'))
        .ok_or_else(bad)?;
    match inner.find(['+', '-']) {
        Some(i) => Ok((reg(&inner[..i])?, off16(&inner[i..])?)),
        None => Ok((reg(inner)?, 0)),
    }
}

/// A jump target: a signed offset or a label (returned for fixup).
fn target(s: &str) -> R<(i32, Option<String>)> {
    match s.as_bytes().first() {
        Some(b'+' | b'-' | b'0'..=b'9') => imm32(s).map(|v| (v, None)),
        _ => Ok((0, Some(s.to_string()))),
    }
}

const ALU_OPS: [(&str, u8); 15] = [
    ("add", BPF_ADD),
    ("sub", BPF_SUB),
    ("mul", BPF_MUL),
    ("div", BPF_DIV),
    ("sdiv", BPF_DIV),
    ("or", BPF_OR),
    ("and", BPF_AND),
    ("lsh", BPF_LSH),
    ("rsh", BPF_RSH),
    ("neg", BPF_NEG),
    ("mod", BPF_MOD),
    ("smod", BPF_MOD),
    ("xor", BPF_XOR),
    ("mov", BPF_MOV),
    ("arsh", BPF_ARSH),
];

pub(crate) const JMP_OPS: [(&str, u8); 11] = [
    ("jeq", BPF_JEQ),
    ("jgt", BPF_JGT),
    ("jge", BPF_JGE),
    ("jset", BPF_JSET),
    ("jne", BPF_JNE),
    ("jsgt", BPF_JSGT),
    ("jsge", BPF_JSGE),
    ("jlt", BPF_JLT),
    ("jle", BPF_JLE),
    ("jslt", BPF_JSLT),
    ("jsle", BPF_JSLE),
];

const SIZES: [(&str, u8); 4] = [("b", BPF_B), ("h", BPF_H), ("w", BPF_W), ("dw", BPF_DW)];

fn size_of(suffix: &str) -> Option<u8> {
    SIZES.iter().find(|(n, _)| *n == suffix).map(|&(_, s)| s)
}

fn encode(m: &str, ops: &[&str]) -> R<Encoded> {
    let unknown = || AsmErrorKind::UnknownMnemonic(m.to_string());
    match m {
        "exit" => {
            want(m, ops, 0)?;
            return Ok(Encoded::one(Insn::new(EXIT, 0, 0, 0, 0)));
        }
        "lddw" => {
            want(m, ops, 2)?;
            return Ok(ld_imm64(reg(ops[0])?, 0, imm64(ops[1])?));
        }
        "ldmapfd" => {
            want(m, ops, 2)?;
            return Ok(ld_imm64(
                reg(ops[0])?,
                BPF_PSEUDO_MAP_FD,
                imm32(ops[1])? as u32 as i64,
            ));
        }
        "ldmapvalue" => {
            want(m, ops, 3)?;
            let v = (imm32(ops[1])? as u32 as i64) | ((imm32(ops[2])? as i64) << 32);
            return Ok(ld_imm64(reg(ops[0])?, BPF_PSEUDO_MAP_VALUE, v));
        }
        "ldpseudo" => {
            want(m, ops, 4)?;
            let src = imm32(ops[1])?;
            let src = u8::try_from(src)
                .ok()
                .filter(|s| *s < 16)
                .ok_or_else(|| AsmErrorKind::BadNumber(ops[1].to_string()))?;
            let v = (imm32(ops[2])? as u32 as i64) | ((imm32(ops[3])? as i64) << 32);
            return Ok(ld_imm64(reg(ops[0])?, src, v));
        }
        "ja" | "ja32" | "gotol" => {
            want(m, ops, 1)?;
            let (v, label) = target(ops[0])?;
            let (insn, in_imm) = if m == "ja" {
                (
                    Insn::new(BPF_JMP | BPF_JA, 0, 0, off_of(v, ops[0])?, 0),
                    false,
                )
            } else {
                (Insn::new(BPF_JMP32 | BPF_JA, 0, 0, 0, v), true)
            };
            return Ok(Encoded {
                insns: vec![insn],
                label,
                label_in_imm: in_imm,
            });
        }
        "call" | "callx" => return encode_call(m, ops),
        "lock" => return encode_atomic(ops),
        _ => {}
    }
    // Byte swaps.
    for (prefix, code) in [
        ("be", BPF_ALU | BPF_END | BPF_X),
        ("le", BPF_ALU | BPF_END | BPF_K),
        ("bswap", BPF_ALU64 | BPF_END | BPF_K),
        ("swap", BPF_ALU64 | BPF_END | BPF_K),
    ] {
        if let Some(w @ ("16" | "32" | "64")) = m.strip_prefix(prefix) {
            want(m, ops, 1)?;
            return Ok(Encoded::one(Insn::new(
                code,
                reg(ops[0])?,
                0,
                0,
                w.parse().unwrap_or(0),
            )));
        }
    }
    // Loads and stores.
    if let Some(sfx) = m
        .strip_prefix("ldxs")
        .and_then(|s| size_of(s).filter(|&z| z != BPF_DW))
    {
        want(m, ops, 2)?;
        let (src, off) = mem(ops[1])?;
        return Ok(Encoded::one(Insn::new(
            BPF_LDX | BPF_MEMSX | sfx,
            reg(ops[0])?,
            src,
            off,
            0,
        )));
    }
    if let Some(sfx) = m.strip_prefix("ldx").and_then(size_of) {
        want(m, ops, 2)?;
        let (src, off) = mem(ops[1])?;
        return Ok(Encoded::one(Insn::new(
            BPF_LDX | BPF_MEM | sfx,
            reg(ops[0])?,
            src,
            off,
            0,
        )));
    }
    if let Some(sfx) = m.strip_prefix("stx").and_then(size_of) {
        want(m, ops, 2)?;
        let (dst, off) = mem(ops[0])?;
        return Ok(Encoded::one(Insn::new(
            BPF_STX | BPF_MEM | sfx,
            dst,
            reg(ops[1])?,
            off,
            0,
        )));
    }
    if let Some(sfx) = m.strip_prefix("st").and_then(size_of) {
        want(m, ops, 2)?;
        let (dst, off) = mem(ops[0])?;
        return Ok(Encoded::one(Insn::new(
            BPF_ST | BPF_MEM | sfx,
            dst,
            0,
            off,
            imm32(ops[1])?,
        )));
    }
    // Conditional jumps.
    let (base, class_jmp) = match m.strip_suffix("32") {
        Some(b) => (b, BPF_JMP32),
        None => (m, BPF_JMP),
    };
    if let Some(&(_, op)) = JMP_OPS.iter().find(|(n, _)| *n == base) {
        want(m, ops, 3)?;
        let dst = reg(ops[0])?;
        let (v, label) = target(ops[2])?;
        let off = off_of(v, ops[2])?;
        let insn = if ops[1].starts_with('%') {
            Insn::new(class_jmp | op | BPF_X, dst, reg(ops[1])?, off, 0)
        } else {
            Insn::new(class_jmp | op | BPF_K, dst, 0, off, imm32(ops[1])?)
        };
        return Ok(Encoded {
            insns: vec![insn],
            label,
            label_in_imm: false,
        });
    }
    // ALU.
    if let Some(rest) = m.strip_prefix("movsx") {
        let (width, class) = alu_class(rest).ok_or_else(unknown)?;
        let off: i16 = match width {
            "8" => 8,
            "16" => 16,
            "32" if class == BPF_ALU64 => 32,
            _ => return Err(unknown()),
        };
        want(m, ops, 2)?;
        return Ok(Encoded::one(Insn::new(
            class | BPF_MOV | BPF_X,
            reg(ops[0])?,
            reg(ops[1])?,
            off,
            0,
        )));
    }
    let (name, class) = alu_class(m).ok_or_else(unknown)?;
    let &(_, op) = ALU_OPS
        .iter()
        .find(|(n, _)| *n == name)
        .ok_or_else(unknown)?;
    let off = i16::from(name == "sdiv" || name == "smod");
    if op == BPF_NEG {
        want(m, ops, 1)?;
        return Ok(Encoded::one(Insn::new(class | op, reg(ops[0])?, 0, 0, 0)));
    }
    want(m, ops, 2)?;
    let dst = reg(ops[0])?;
    Ok(Encoded::one(if ops[1].starts_with('%') {
        Insn::new(class | op | BPF_X, dst, reg(ops[1])?, off, 0)
    } else {
        Insn::new(class | op | BPF_K, dst, 0, off, imm32(ops[1])?)
    }))
}

/// Splits an optional `32`/`64` width suffix off an ALU mnemonic.
fn alu_class(m: &str) -> Option<(&str, u8)> {
    if let Some(b) = m.strip_suffix("32") {
        Some((b, BPF_ALU))
    } else if let Some(b) = m.strip_suffix("64") {
        Some((b, BPF_ALU64))
    } else {
        Some((m, BPF_ALU64))
    }
}

fn off_of(v: i32, text: &str) -> R<i16> {
    i16::try_from(v).map_err(|_| AsmErrorKind::BadNumber(text.to_string()))
}

fn ld_imm64(dst: u8, src: u8, v: i64) -> Encoded {
    Encoded {
        insns: vec![
            Insn::new(LD_IMM64, dst, src, 0, v as i32),
            Insn::new(0, 0, 0, 0, (v >> 32) as i32),
        ],
        label: None,
        label_in_imm: false,
    }
}

fn encode_call(m: &str, ops: &[&str]) -> R<Encoded> {
    let bad = || AsmErrorKind::BadCall(ops.join(" "));
    let (mode, what) = match (m, ops) {
        ("callx", [r]) => ("helper", *r),
        ("call", [x]) => ("helper", *x),
        ("call", [mode, x]) => (*mode, *x),
        _ => {
            let expected = if m == "callx" { 1 } else { 2 };
            return Err(AsmErrorKind::OperandCount {
                mnemonic: m.to_string(),
                expected,
                found: ops.len(),
            });
        }
    };
    let insn = match mode {
        "helper" if what.starts_with('%') => Insn::new(CALL | BPF_X, reg(what)?, 0, 0, 0),
        "helper" if m == "call" => Insn::new(CALL, 0, BPF_PSEUDO_HELPER, 0, imm32(what)?),
        "runtime" | "kfunc" => Insn::new(CALL, 0, BPF_PSEUDO_KFUNC_CALL, 0, imm32(what)?),
        "local" => {
            let (v, label) = target(what)?;
            return Ok(Encoded {
                insns: vec![Insn::new(CALL, 0, BPF_PSEUDO_CALL, 0, v)],
                label,
                label_in_imm: true,
            });
        }
        _ => return Err(bad()),
    };
    Ok(Encoded::one(insn))
}

pub(crate) const ATOMIC_OPS: [(&str, i32); 6] = [
    ("add", BPF_ADD as i32),
    ("or", BPF_OR as i32),
    ("and", BPF_AND as i32),
    ("xor", BPF_XOR as i32),
    ("xchg", BPF_XCHG),
    ("cmpxchg", BPF_CMPXCHG),
];

fn encode_atomic(ops: &[&str]) -> R<Encoded> {
    let (fetch, rest) = match ops.split_first() {
        Some((&"fetch", rest)) => (true, rest),
        _ => (false, ops),
    };
    let bad = || AsmErrorKind::BadAtomic(ops.join(" "));
    let [name, dst, src] = rest else {
        return Err(AsmErrorKind::OperandCount {
            mnemonic: "lock".into(),
            expected: 3,
            found: rest.len(),
        });
    };
    let (base, size) = match name.strip_suffix("32") {
        Some(b) => (b, BPF_W),
        None => (*name, BPF_DW),
    };
    let &(_, mut imm) = ATOMIC_OPS
        .iter()
        .find(|(n, _)| *n == base)
        .ok_or_else(bad)?;
    if fetch {
        if imm & BPF_FETCH != 0 {
            return Err(bad());
        }
        imm |= BPF_FETCH;
    }
    let (d, off) = mem(dst)?;
    Ok(Encoded::one(Insn::new(
        BPF_STX | BPF_ATOMIC | size,
        d,
        reg(src)?,
        off,
        imm,
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(s: &str) -> Insn {
        let v = assemble(s).expect("assembles");
        assert_eq!(v.len(), 1, "{s}");
        v[0]
    }

    #[test]
    fn every_form() {
        assert_eq!(one("mov32 %r0, 1"), Insn::new(0xb4, 0, 0, 0, 1));
        assert_eq!(one("mov %r0, %r1"), Insn::new(0xbf, 0, 1, 0, 0));
        assert_eq!(one("add64 %r1, -3"), Insn::new(0x07, 1, 0, 0, -3));
        assert_eq!(one("sdiv32 %r1, %r2"), Insn::new(0x3c, 1, 2, 1, 0));
        assert_eq!(one("smod %r1, 3"), Insn::new(0x97, 1, 0, 1, 3));
        assert_eq!(one("sub %r1, 3"), Insn::new(0x17, 1, 0, 0, 3));
        assert_eq!(one("neg32 %r3"), Insn::new(0x84, 3, 0, 0, 0));
        assert_eq!(one("movsx832 %r0, %r1"), Insn::new(0xbc, 0, 1, 8, 0));
        assert_eq!(one("movsx3264 %r0, %r1"), Insn::new(0xbf, 0, 1, 32, 0));
        assert_eq!(one("be16 %r0"), Insn::new(0xdc, 0, 0, 0, 16));
        assert_eq!(one("le64 %r2"), Insn::new(0xd4, 2, 0, 0, 64));
        assert_eq!(one("bswap32 %r0"), Insn::new(0xd7, 0, 0, 0, 32));
        assert_eq!(one("ldxdw %r0, [%r1+8]"), Insn::new(0x79, 0, 1, 8, 0));
        assert_eq!(one("ldxsh %r0, [%r1-2]"), Insn::new(0x89, 0, 1, -2, 0));
        assert_eq!(one("ldxb %r0, [%r1]"), Insn::new(0x71, 0, 1, 0, 0));
        assert_eq!(
            one("stw [%r10-4], 0x11223344"),
            Insn::new(0x62, 10, 0, -4, 0x11223344)
        );
        assert_eq!(one("stxh [%r10-2], %r3"), Insn::new(0x6b, 10, 3, -2, 0));
        assert_eq!(one("jeq %r1, 2, +3"), Insn::new(0x15, 1, 0, 3, 2));
        assert_eq!(one("jsle32 %r1, %r2, -1"), Insn::new(0xde, 1, 2, -1, 0));
        assert_eq!(one("ja32 +70000"), Insn::new(0x06, 0, 0, 0, 70000));
        assert_eq!(one("call 5"), Insn::new(0x85, 0, 0, 0, 5));
        assert_eq!(one("call %r2"), Insn::new(0x8d, 2, 0, 0, 0));
        assert_eq!(one("call runtime 7"), Insn::new(0x85, 0, 2, 0, 7));
        assert_eq!(one("call local +4"), Insn::new(0x85, 0, 1, 0, 4));
        assert_eq!(one("lock add [%r10-8], %r1"), Insn::new(0xdb, 10, 1, -8, 0));
        assert_eq!(
            one("lock fetch xor32 [%r10-4], %r3"),
            Insn::new(0xc3, 10, 3, -4, 0xa1)
        );
        assert_eq!(
            one("lock cmpxchg [%r10-8], %r1"),
            Insn::new(0xdb, 10, 1, -8, 0xf1)
        );
        assert_eq!(
            one("lock xchg32 [%r10-8], %r1"),
            Insn::new(0xc3, 10, 1, -8, 0xe1)
        );
        assert_eq!(one("exit"), Insn::new(0x95, 0, 0, 0, 0));
        let v = assemble("lddw %r0, 0x1122334455667788").expect("lddw");
        assert_eq!(
            v,
            vec![
                Insn::new(0x18, 0, 0, 0, 0x55667788),
                Insn::new(0, 0, 0, 0, 0x11223344)
            ]
        );
        let v = assemble("lddw %r0, -2").expect("lddw");
        assert_eq!((v[0].imm, v[1].imm), (-2, -1));
        let v = assemble("ldmapvalue %r1, 3, 16").expect("ldmapvalue");
        assert_eq!((v[0].src, v[0].imm, v[1].imm), (2, 3, 16));
    }

    #[test]
    fn labels_and_exit() {
        let v = assemble("jne %r0, 0, exit\nja L1\nmov %r0, 1\nL1:\nexit\ncall local f\nf:\nexit")
            .expect("ok");
        assert_eq!(v[0].off, 2);
        assert_eq!(v[1].off, 1);
        assert_eq!(v[4].imm, 0);
    }

    #[test]
    fn bad_text() {
        let e = |s: &str| assemble(s).expect_err(s);
        assert_eq!(e("mov %r0, 1\nfoo %r1").line, 2);
        assert!(matches!(
            e("foo %r1").kind,
            AsmErrorKind::UnknownMnemonic(_)
        ));
        assert!(matches!(
            e("mov %r11, 1").kind,
            AsmErrorKind::BadRegister(_)
        ));
        assert!(matches!(
            e("mov %r01, 1").kind,
            AsmErrorKind::BadRegister(_)
        ));
        assert!(matches!(
            e("mov %r1, 4294967296").kind,
            AsmErrorKind::BadNumber(_)
        ));
        assert!(matches!(
            e("mov %r1, 2147483648").kind,
            AsmErrorKind::BadNumber(_)
        ));
        assert!(matches!(
            e("mov %r1, 0x100000000").kind,
            AsmErrorKind::BadNumber(_)
        ));
        assert!(matches!(
            e("mov %r1").kind,
            AsmErrorKind::OperandCount { .. }
        ));
        assert!(matches!(
            e("ldxw %r1, %r2").kind,
            AsmErrorKind::BadMemOperand(_)
        ));
        assert!(matches!(
            e("ldxw %r1, [%r2+70000]").kind,
            AsmErrorKind::BadNumber(_)
        ));
        assert!(matches!(
            e("ja nowhere").kind,
            AsmErrorKind::UndefinedLabel(_)
        ));
        assert!(matches!(
            e("a:\na:\nexit").kind,
            AsmErrorKind::DuplicateLabel(_)
        ));
        assert!(matches!(
            e("lock fetch xchg [%r10-8], %r1").kind,
            AsmErrorKind::BadAtomic(_)
        ));
        assert!(matches!(
            e("lock sub [%r10-8], %r1").kind,
            AsmErrorKind::BadAtomic(_)
        ));
        assert!(matches!(e("call far 3").kind, AsmErrorKind::BadCall(_)));
        assert!(matches!(
            e("movsx3232 %r0, %r1").kind,
            AsmErrorKind::UnknownMnemonic(_)
        ));
    }
}
