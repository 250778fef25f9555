//! Disassembly in two syntaxes.
//!
//! * The kernel verifier-log / llvm-objdump style (`r0 = *(u64 *)(r1 +8)`,
//!   `if w1 > 0x3 goto pc+2`, `call bpf_map_lookup_elem#1`) for humans:
//!   [`disassemble`], [`disassemble_with`], [`insn_text`] and `Display` for [`Insn`].
//! * The uBPF syntax accepted by [`crate::asm::assemble`], for programs that must
//!   be re-assembled (test failure reports): [`to_asm`].

use std::fmt::{self, Display, Write as _};

use thiserror::Error;

use crate::asm::{encode_line, ATOMIC_OPS, JMP_OPS};
use crate::opcode::*;
use crate::Insn;

/// Names for the numeric ids that appear in instructions.
///
/// Every method defaults to "unknown"; `()` implements the trait with no names.
pub trait Names {
    /// Name of a helper id (Linux numbering), e.g. `bpf_map_lookup_elem` for 1.
    fn helper(&self, _id: i32) -> Option<String> {
        None
    }
    /// Name of a kfunc id.
    fn kfunc(&self, _id: i32) -> Option<String> {
        None
    }
    /// Name of the map with this index in the object's map list.
    fn map(&self, _index: i32) -> Option<String> {
        None
    }
}

impl Names for () {}

/// What kind of id a [`Names`] closure is asked about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IdKind {
    /// A helper id.
    Helper,
    /// A kfunc id.
    Kfunc,
    /// A map index.
    Map,
}

/// Any `Fn(IdKind, i32) -> Option<String>` closure names ids.
impl<F: Fn(IdKind, i32) -> Option<String>> Names for F {
    fn helper(&self, id: i32) -> Option<String> {
        self(IdKind::Helper, id)
    }
    fn kfunc(&self, id: i32) -> Option<String> {
        self(IdKind::Kfunc, id)
    }
    fn map(&self, index: i32) -> Option<String> {
        self(IdKind::Map, index)
    }
}

/// Disassembles a program, one line `"  pc: text"` per instruction (an
/// `ld_imm64` is one line; its second slot gets none).
pub fn disassemble(insns: &[Insn]) -> Vec<String> {
    disassemble_with(insns, &())
}

/// Like [`disassemble`], resolving helper, kfunc and map names through `names`.
pub fn disassemble_with(insns: &[Insn], names: &dyn Names) -> Vec<String> {
    let mut out = Vec::new();
    let mut pc = 0;
    while pc < insns.len() {
        out.push(format!("{pc:4}: {}", insn_text(insns, pc, names)));
        pc += slots(insns[pc]);
    }
    out
}

/// Number of slots the instruction starting with `i` takes (2 for `ld_imm64`).
pub fn slots(i: Insn) -> usize {
    if i.code == LD_IMM64 {
        2
    } else {
        1
    }
}

/// Kernel-style text of the instruction at `pc` (reads `pc + 1` for `ld_imm64`).
pub fn insn_text(insns: &[Insn], pc: usize, names: &dyn Names) -> String {
    let mut s = String::new();
    let _ = kernel_fmt(&mut s, insns, pc, names);
    s
}

impl Display for Insn {
    /// Kernel-style text of this slot alone (an `ld_imm64` shows its low half).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        kernel_fmt(f, std::slice::from_ref(self), 0, &())
    }
}

fn size_name(code: u8) -> &'static str {
    match size(code) {
        BPF_B => "8",
        BPF_H => "16",
        BPF_W => "32",
        _ => "64",
    }
}

fn alu_sym(op: u8, signed: bool) -> Option<&'static str> {
    Some(match (op, signed) {
        (BPF_ADD, _) => "+=",
        (BPF_SUB, _) => "-=",
        (BPF_MUL, _) => "*=",
        (BPF_DIV, false) => "/=",
        (BPF_DIV, true) => "s/=",
        (BPF_OR, _) => "|=",
        (BPF_AND, _) => "&=",
        (BPF_LSH, _) => "<<=",
        (BPF_RSH, _) => ">>=",
        (BPF_MOD, false) => "%=",
        (BPF_MOD, true) => "s%=",
        (BPF_XOR, _) => "^=",
        (BPF_MOV, _) => "=",
        (BPF_ARSH, _) => "s>>=",
        _ => return None,
    })
}

fn jmp_sym(op: u8) -> &'static str {
    match op {
        BPF_JEQ => "==",
        BPF_JGT => ">",
        BPF_JGE => ">=",
        BPF_JSET => "&",
        BPF_JNE => "!=",
        BPF_JSGT => "s>",
        BPF_JSGE => "s>=",
        BPF_JLT => "<",
        BPF_JLE => "<=",
        BPF_JSLT => "s<",
        BPF_JSLE => "s<=",
        _ => "?",
    }
}

fn mem_ref(code: u8, reg: u8, off: i16, signed: bool) -> String {
    format!(
        "*({}{} *)(r{reg} {off:+})",
        if signed { 's' } else { 'u' },
        size_name(code)
    )
}

fn kernel_fmt(f: &mut dyn fmt::Write, insns: &[Insn], pc: usize, names: &dyn Names) -> fmt::Result {
    let i = insns[pc];
    let (code, dst, src, off, imm) = (i.code, i.dst, i.src, i.off, i.imm);
    let invalid = |f: &mut dyn fmt::Write| {
        write!(
            f,
            "invalid insn code=0x{code:02x} dst=r{dst} src=r{src} off={off} imm={imm}"
        )
    };
    match class(code) {
        BPF_ALU | BPF_ALU64 => {
            let r = if class(code) == BPF_ALU64 { 'r' } else { 'w' };
            let op = op(code);
            if op == BPF_END {
                let kind = match (class(code), source(code)) {
                    (BPF_ALU64, _) => "bswap",
                    (_, BPF_X) => "be",
                    _ => "le",
                };
                return write!(f, "r{dst} = {kind}{imm} r{dst}");
            }
            if op == BPF_NEG {
                return write!(f, "{r}{dst} = -{r}{dst}");
            }
            if op == BPF_MOV && source(code) == BPF_X && off != 0 {
                return write!(f, "{r}{dst} = (s{off}){r}{src}");
            }
            let Some(sym) = alu_sym(op, off == 1) else {
                return invalid(f);
            };
            if source(code) == BPF_X {
                write!(f, "{r}{dst} {sym} {r}{src}")
            } else {
                write!(f, "{r}{dst} {sym} {imm}")
            }
        }
        BPF_LDX => match mode(code) {
            BPF_MEM => write!(f, "r{dst} = {}", mem_ref(code, src, off, false)),
            BPF_MEMSX => write!(f, "r{dst} = {}", mem_ref(code, src, off, true)),
            _ => invalid(f),
        },
        BPF_ST if mode(code) == BPF_MEM => write!(f, "{} = {imm}", mem_ref(code, dst, off, false)),
        BPF_STX => match mode(code) {
            BPF_MEM => write!(f, "{} = r{src}", mem_ref(code, dst, off, false)),
            BPF_ATOMIC => {
                let (r, width) = if size(code) == BPF_DW {
                    ('r', "64")
                } else {
                    ('w', "")
                };
                let m = mem_ref(code, dst, off, false);
                let m = &m[1..];
                let fetch = imm & BPF_FETCH != 0;
                let name = ATOMIC_OPS
                    .iter()
                    .find(|(_, v)| *v == imm & !BPF_FETCH || *v == imm)
                    .map(|(n, _)| *n);
                match (name, imm) {
                    (Some(_), BPF_CMPXCHG) => {
                        write!(f, "r0 = atomic{width}_cmpxchg({m}, r0, {r}{src})")
                    }
                    (Some(_), BPF_XCHG) => {
                        write!(f, "{r}{src} = atomic{width}_xchg({m}, {r}{src})")
                    }
                    (Some(n), _) if fetch => {
                        write!(f, "{r}{src} = atomic{width}_fetch_{n}({m}, {r}{src})")
                    }
                    (Some(_), _) => write!(
                        f,
                        "lock *{m} {} {r}{src}",
                        alu_sym(imm as u8, false).unwrap_or("?=")
                    ),
                    (None, _) => invalid(f),
                }
            }
            _ => invalid(f),
        },
        BPF_LD => match (mode(code), size(code)) {
            (BPF_IMM, BPF_DW) => {
                let hi = insns.get(pc + 1).map_or(0, |n| n.imm);
                let v = (imm as u32 as u64) | ((hi as u32 as u64) << 32);
                let map = |f: &mut dyn fmt::Write| match names.map(imm) {
                    Some(n) => write!(f, "map[{n}]"),
                    None => write!(f, "map[id:{imm}]"),
                };
                match src {
                    BPF_PSEUDO_NONE => write!(f, "r{dst} = {v:#x} ll"),
                    BPF_PSEUDO_MAP_FD => {
                        write!(f, "r{dst} = ")?;
                        map(f)
                    }
                    BPF_PSEUDO_MAP_VALUE => {
                        write!(f, "r{dst} = ")?;
                        map(f)?;
                        write!(f, "[0]+{hi}")
                    }
                    BPF_PSEUDO_BTF_ID => write!(f, "r{dst} = btf_id[{imm}]"),
                    BPF_PSEUDO_FUNC => write!(f, "r{dst} = func[pc{imm:+}]"),
                    _ => write!(f, "r{dst} = pseudo{src}[{imm}][{hi}]"),
                }
            }
            (BPF_ABS, s) => write!(f, "r0 = *(u{} *)skb[{imm}]", size_name(s)),
            (BPF_IND, s) => write!(f, "r0 = *(u{} *)skb[r{src} + {imm}]", size_name(s)),
            _ => invalid(f),
        },
        BPF_JMP | BPF_JMP32 => {
            let jmp32 = class(code) == BPF_JMP32;
            match op(code) {
                BPF_JA if jmp32 => write!(f, "gotol pc{imm:+}"),
                BPF_JA => write!(f, "goto pc{off:+}"),
                BPF_EXIT if !jmp32 => write!(f, "exit"),
                BPF_CALL if !jmp32 && source(code) == BPF_X => write!(f, "callx r{dst}"),
                BPF_CALL if !jmp32 => match src {
                    BPF_PSEUDO_CALL => write!(f, "call pc{imm:+}"),
                    BPF_PSEUDO_KFUNC_CALL => match names.kfunc(imm) {
                        Some(n) => write!(f, "call {n}#{imm}"),
                        None => write!(f, "call kfunc#{imm}"),
                    },
                    _ => match names.helper(imm) {
                        Some(n) => write!(f, "call {n}#{imm}"),
                        None => write!(f, "call helper#{imm}"),
                    },
                },
                BPF_CALL | BPF_EXIT => invalid(f),
                op => {
                    let r = if jmp32 { 'w' } else { 'r' };
                    let sym = jmp_sym(op);
                    if source(code) == BPF_X {
                        write!(f, "if {r}{dst} {sym} {r}{src} goto pc{off:+}")
                    } else {
                        write!(f, "if {r}{dst} {sym} {:#x} goto pc{off:+}", imm as u32)
                    }
                }
            }
        }
        _ => invalid(f),
    }
}

/// An instruction that the uBPF text syntax cannot express exactly.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("instruction {pc} ({insn:?}) has no exact uBPF text form")]
pub struct Unrepresentable {
    /// Slot index of the instruction.
    pub pc: usize,
    /// The instruction.
    pub insn: Insn,
}

/// Writes a program in the uBPF syntax that [`crate::asm::assemble`] reads back
/// into exactly the same slots (jumps as relative offsets, one line each).
pub fn to_asm(insns: &[Insn]) -> Result<String, Unrepresentable> {
    let mut out = String::new();
    let mut pc = 0;
    while pc < insns.len() {
        let n = slots(insns[pc]).min(insns.len() - pc);
        let text = ubpf_text(insns, pc);
        let exact = text
            .as_deref()
            .and_then(encode_line)
            .is_some_and(|enc| enc[..] == insns[pc..pc + n]);
        match text {
            Some(t) if exact => {
                let _ = writeln!(out, "{t}");
            }
            _ => {
                return Err(Unrepresentable {
                    pc,
                    insn: insns[pc],
                })
            }
        }
        pc += n;
    }
    Ok(out)
}

fn ubpf_text(insns: &[Insn], pc: usize) -> Option<String> {
    let i = insns[pc];
    let (code, dst, src, off, imm) = (i.code, i.dst, i.src, i.off, i.imm);
    let sz = |c: u8| match size(c) {
        BPF_B => "b",
        BPF_H => "h",
        BPF_W => "w",
        _ => "dw",
    };
    let m = |r: u8| format!("[%r{r}{off:+}]");
    Some(match class(code) {
        BPF_ALU | BPF_ALU64 => {
            let w = if class(code) == BPF_ALU64 { "" } else { "32" };
            match op(code) {
                BPF_END => match (class(code), source(code)) {
                    (BPF_ALU64, _) => format!("bswap{imm} %r{dst}"),
                    (_, BPF_X) => format!("be{imm} %r{dst}"),
                    _ => format!("le{imm} %r{dst}"),
                },
                BPF_NEG => format!("neg{w} %r{dst}"),
                BPF_MOV if off != 0 => {
                    format!(
                        "movsx{off}{} %r{dst}, %r{src}",
                        if w.is_empty() { "64" } else { "32" }
                    )
                }
                op => {
                    let name = match op {
                        BPF_ADD => "add",
                        BPF_SUB => "sub",
                        BPF_MUL => "mul",
                        BPF_DIV if off == 1 => "sdiv",
                        BPF_DIV => "div",
                        BPF_OR => "or",
                        BPF_AND => "and",
                        BPF_LSH => "lsh",
                        BPF_RSH => "rsh",
                        BPF_MOD if off == 1 => "smod",
                        BPF_MOD => "mod",
                        BPF_XOR => "xor",
                        BPF_MOV => "mov",
                        BPF_ARSH => "arsh",
                        _ => return None,
                    };
                    if source(code) == BPF_X {
                        format!("{name}{w} %r{dst}, %r{src}")
                    } else {
                        format!("{name}{w} %r{dst}, {imm}")
                    }
                }
            }
        }
        BPF_LDX if mode(code) == BPF_MEMSX => format!("ldxs{} %r{dst}, {}", sz(code), m(src)),
        BPF_LDX => format!("ldx{} %r{dst}, {}", sz(code), m(src)),
        BPF_ST => format!("st{} {}, {imm}", sz(code), m(dst)),
        BPF_STX if mode(code) == BPF_ATOMIC => {
            let w = if size(code) == BPF_W { "32" } else { "" };
            let (name, _) = ATOMIC_OPS
                .iter()
                .find(|(_, v)| *v == imm || *v == imm & !BPF_FETCH)?;
            let fetch = if imm & BPF_FETCH != 0 && imm != BPF_XCHG && imm != BPF_CMPXCHG {
                "fetch "
            } else {
                ""
            };
            format!("lock {fetch}{name}{w} {}, %r{src}", m(dst))
        }
        BPF_STX => format!("stx{} {}, %r{src}", sz(code), m(dst)),
        BPF_LD => {
            let hi = insns.get(pc + 1)?.imm;
            let v = (imm as u32 as u64) | ((hi as u32 as u64) << 32);
            match src {
                BPF_PSEUDO_NONE => format!("lddw %r{dst}, {v:#x}"),
                BPF_PSEUDO_MAP_FD if hi == 0 => format!("ldmapfd %r{dst}, {imm}"),
                BPF_PSEUDO_MAP_VALUE => format!("ldmapvalue %r{dst}, {imm}, {hi}"),
                _ => format!("ldpseudo %r{dst}, {src}, {imm}, {hi}"),
            }
        }
        BPF_JMP | BPF_JMP32 => {
            let w = if class(code) == BPF_JMP32 { "32" } else { "" };
            match op(code) {
                BPF_JA if w.is_empty() => format!("ja {off:+}"),
                BPF_JA => format!("ja32 {imm:+}"),
                BPF_EXIT => "exit".to_string(),
                BPF_CALL if source(code) == BPF_X => format!("callx %r{dst}"),
                BPF_CALL => match src {
                    BPF_PSEUDO_CALL => format!("call local {imm:+}"),
                    BPF_PSEUDO_KFUNC_CALL => format!("call kfunc {imm}"),
                    _ => format!("call {imm}"),
                },
                op => {
                    let (name, _) = JMP_OPS.iter().find(|(_, v)| *v == op)?;
                    if source(code) == BPF_X {
                        format!("{name}{w} %r{dst}, %r{src}, {off:+}")
                    } else {
                        format!("{name}{w} %r{dst}, {imm}, {off:+}")
                    }
                }
            }
        }
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::asm::assemble;
    use proptest::prelude::*;

    struct N;
    impl Names for N {
        fn helper(&self, id: i32) -> Option<String> {
            (id == 1).then(|| "bpf_map_lookup_elem".into())
        }
        fn kfunc(&self, id: i32) -> Option<String> {
            (id == 7).then(|| "bpf_oom_kill_process".into())
        }
        fn map(&self, i: i32) -> Option<String> {
            (i == 0).then(|| "counters".into())
        }
    }

    #[test]
    fn kernel_style() {
        let src = "mov32 %r0, 1\nldxdw %r0, [%r1+8]\nstxw [%r10-4], %r1\nstb [%r10-1], 7\n\
                   jgt32 %r1, 3, +2\nja32 +1\nsdiv %r1, %r2\nmovsx1664 %r1, %r2\nbe16 %r3\n\
                   lock fetch add [%r10-8], %r1\nlock cmpxchg32 [%r10-8], %r2\nlock or [%r10-8], %r1\n\
                   lddw %r1, 0x1122334455667788\nldmapfd %r1, 0\nldmapvalue %r2, 1, 16\ncall 1\n\
                   call kfunc 7\ncall local -3\ncallx %r4\nldxsb %r0, [%r1-2]\nneg %r0\nexit";
        let p = assemble(src).expect("asm");
        let got = disassemble_with(&p, &N);
        let want = [
            "   0: w0 = 1",
            "   1: r0 = *(u64 *)(r1 +8)",
            "   2: *(u32 *)(r10 -4) = r1",
            "   3: *(u8 *)(r10 -1) = 7",
            "   4: if w1 > 0x3 goto pc+2",
            "   5: gotol pc+1",
            "   6: r1 s/= r2",
            "   7: r1 = (s16)r2",
            "   8: r3 = be16 r3",
            "   9: r1 = atomic64_fetch_add((u64 *)(r10 -8), r1)",
            "  10: r0 = atomic_cmpxchg((u32 *)(r10 -8), r0, w2)",
            "  11: lock *(u64 *)(r10 -8) |= r1",
            "  12: r1 = 0x1122334455667788 ll",
            "  14: r1 = map[counters]",
            "  16: r2 = map[id:1][0]+16",
            "  18: call bpf_map_lookup_elem#1",
            "  19: call bpf_oom_kill_process#7",
            "  20: call pc-3",
            "  21: callx r4",
            "  22: r0 = *(s8 *)(r1 -2)",
            "  23: r0 = -r0",
            "  24: exit",
        ];
        assert_eq!(got, want);
        assert_eq!(to_asm(&p).map(|t| assemble(&t)), Ok(Ok(p)));
        assert_eq!(
            disassemble(&[Insn::new(0xff, 1, 2, 3, 4)]),
            ["   0: invalid insn code=0xff dst=r1 src=r2 off=3 imm=4"]
        );
    }

    #[test]
    fn closure_names() {
        let names = |k: IdKind, id: i32| {
            (k == IdKind::Helper && id == 5).then(|| "bpf_ktime_get_ns".to_string())
        };
        let p = assemble("call 5\ncall 6").expect("asm");
        assert_eq!(
            disassemble_with(&p, &names),
            ["   0: call bpf_ktime_get_ns#5", "   1: call helper#6"]
        );
    }

    #[test]
    fn unrepresentable() {
        let bad = [Insn::new(0x07, 1, 3, 0, 4)]; // add imm with a stray src
        assert_eq!(
            to_asm(&bad),
            Err(Unrepresentable {
                pc: 0,
                insn: bad[0]
            })
        );
    }

    proptest! {
        /// Every instruction that has a uBPF form re-assembles to itself, and
        /// the kernel-style disassembler never panics on any bit pattern.
        #[test]
        fn round_trip(raw in proptest::collection::vec(any::<[u8; 8]>(), 1..8)) {
            let insns: Vec<Insn> = raw.iter().map(|b| Insn::from_bytes(*b)).collect();
            let _ = disassemble(&insns);
            if let Ok(text) = to_asm(&insns) {
                prop_assert_eq!(assemble(&text).ok(), Some(insns));
            }
        }
    }

    #[test]
    fn round_trip_every_conformance_form() {
        for src in [
            "add32 %r1, %r2",
            "arsh %r1, 3",
            "le16 %r1",
            "swap64 %r2",
            "lock xchg [%r1+0], %r2",
            "lock fetch and32 [%r1-4], %r2",
            "jset32 %r1, 0xff, -4",
            "ldxsw %r1, [%r2+0]",
            "stdw [%r1+8], -1",
            "mod32 %r1, 0",
            "smod32 %r1, -1",
            "movsx832 %r1, %r2",
            "rsh32 %r1, %r2",
            "ldpseudo %r1, 4, 5, 0",
        ] {
            let p = assemble(src).expect(src);
            assert_eq!(
                to_asm(&p).ok().and_then(|t| assemble(&t).ok()),
                Some(p),
                "{src}"
            );
        }
    }
}
