//! Load-time decoding: raw slots become fixed-size [`D`] records with the
//! operation fully resolved (class, width, operand form, signedness), jump
//! and call targets as absolute indices, immediates pre-extended to the
//! operand width, and map references turned into constant addresses.

use bpfoom_insn::opcode::*;
use bpfoom_insn::Insn;
use thiserror::Error;

use crate::maps::Map;

/// Why a program cannot be loaded into the VM.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("instruction {pc}: {kind}")]
pub struct LoadError {
    /// Slot index of the offending instruction.
    pub pc: usize,
    /// What is wrong.
    pub kind: LoadErrorKind,
}

/// The kinds of [`LoadError`].
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum LoadErrorKind {
    /// The program has no instructions.
    #[error("empty program")]
    Empty,
    /// Unknown or malformed opcode/field combination.
    #[error("invalid instruction {0:?}")]
    Invalid(Insn),
    /// Register number above 10.
    #[error("invalid register r{0}")]
    BadRegister(u8),
    /// A jump or call lands outside the program or inside an `ld_imm64`.
    #[error("jump or call target {0} is invalid")]
    BadTarget(i64),
    /// `ld_imm64` is missing its second slot.
    #[error("incomplete ld_imm64")]
    TruncatedLdImm64,
    /// The JIT could not compile the program (feature `jit`).
    #[error("JIT: {0}")]
    Jit(String),
    /// A fault-safe (`PROBE_MEM`) index names no `ldx` instruction.
    #[error("fault-safe load index names no ldx instruction")]
    NotALoad,
    /// A map reference names a map that does not exist or has the wrong kind.
    #[error("bad map reference (map {map}, offset {off})")]
    BadMap {
        /// Map index.
        map: i32,
        /// Value offset.
        off: i32,
    },
}

/// Operation of a decoded instruction. `I` = immediate operand, `R` = register.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
#[rustfmt::skip]
#[allow(missing_docs)]
pub(crate) enum Op {
    Add64I, Add64R, Sub64I, Sub64R, Mul64I, Mul64R, Div64I, Div64R, SDiv64I, SDiv64R, Or64I, Or64R,
    And64I, And64R, Lsh64I, Lsh64R, Rsh64I, Rsh64R, Neg64, Mod64I, Mod64R, SMod64I, SMod64R, Xor64I,
    Xor64R, Mov64I, Mov64R, Arsh64I, Arsh64R, Movsx64B, Movsx64H, Movsx64W, Bswap16, Bswap32, Bswap64,
    Add32I, Add32R, Sub32I, Sub32R, Mul32I, Mul32R, Div32I, Div32R, SDiv32I, SDiv32R, Or32I, Or32R,
    And32I, And32R, Lsh32I, Lsh32R, Rsh32I, Rsh32R, Neg32, Mod32I, Mod32R, SMod32I, SMod32R, Xor32I,
    Xor32R, Mov32I, Mov32R, Arsh32I, Arsh32R, Movsx32B, Movsx32H, Le16, Le32, Le64, LdxB, LdxH,
    LdxW, LdxDW, LdxSB, LdxSH, LdxSW, StB, StH, StW, StDW, StxB, StxH, StxW, StxDW, Atomic32, Atomic64,
    Ja, Jeq64I, Jeq64R, Jgt64I, Jgt64R, Jge64I, Jge64R, Jset64I, Jset64R, Jne64I, Jne64R, Jsgt64I,
    Jsgt64R, Jsge64I, Jsge64R, Jlt64I, Jlt64R, Jle64I, Jle64R, Jslt64I, Jslt64R, Jsle64I, Jsle64R,
    Jeq32I, Jeq32R, Jgt32I, Jgt32R, Jge32I, Jge32R, Jset32I, Jset32R, Jne32I, Jne32R, Jsgt32I, Jsgt32R,
    Jsge32I, Jsge32R, Jlt32I, Jlt32R, Jle32I, Jle32R, Jslt32I, Jslt32R, Jsle32I, Jsle32R,
    /// `ld_imm64`: loads `imm` and skips the second slot.
    LdDw, CallHelper, CallKfunc, CallLocal, Callx, Exit,
    /// Second slot of an `ld_imm64`; never a jump target, never reached.
    Hole,
    /// Sentinel after the last instruction: running into it is an error.
    FellOff,
}

/// A decoded instruction: 16 bytes, everything the interpreter needs.
#[derive(Clone, Copy, Debug)]
pub(crate) struct D {
    pub op: Op,
    pub dst: u8,
    pub src: u8,
    /// A load that reads 0 instead of faulting (the kernel's `BPF_PROBE_MEM`).
    pub probe: bool,
    /// Memory offset, or absolute target index of a jump/local call.
    pub off: i32,
    /// Immediate extended to the operation's width; helper/kfunc id;
    /// atomic operation.
    pub imm: u64,
}

use Op::*;

// Tables indexed by `op >> 4`; `None` marks ops without that form.
type Row = [Option<Op>; 16];
#[rustfmt::skip]
const ALU64: [Row; 2] = [
    [
        Some(Add64I), Some(Sub64I), Some(Mul64I), Some(Div64I), Some(Or64I), Some(And64I), Some(Lsh64I), Some(Rsh64I),
        Some(Neg64), Some(Mod64I), Some(Xor64I), Some(Mov64I), Some(Arsh64I), None, None, None,
    ],
    [
        Some(Add64R), Some(Sub64R), Some(Mul64R), Some(Div64R), Some(Or64R), Some(And64R), Some(Lsh64R), Some(Rsh64R),
        None, Some(Mod64R), Some(Xor64R), Some(Mov64R), Some(Arsh64R), None, None, None,
    ],
];
#[rustfmt::skip]
const ALU32: [Row; 2] = [
    [
        Some(Add32I), Some(Sub32I), Some(Mul32I), Some(Div32I), Some(Or32I), Some(And32I), Some(Lsh32I), Some(Rsh32I),
        Some(Neg32), Some(Mod32I), Some(Xor32I), Some(Mov32I), Some(Arsh32I), None, None, None,
    ],
    [
        Some(Add32R), Some(Sub32R), Some(Mul32R), Some(Div32R), Some(Or32R), Some(And32R), Some(Lsh32R), Some(Rsh32R),
        None, Some(Mod32R), Some(Xor32R), Some(Mov32R), Some(Arsh32R), None, None, None,
    ],
];
#[rustfmt::skip]
const JMP64: [Row; 2] = [
    [
        None, Some(Jeq64I), Some(Jgt64I), Some(Jge64I), Some(Jset64I), Some(Jne64I), Some(Jsgt64I), Some(Jsge64I),
        None, None, Some(Jlt64I), Some(Jle64I), Some(Jslt64I), Some(Jsle64I), None, None,
    ],
    [
        None, Some(Jeq64R), Some(Jgt64R), Some(Jge64R), Some(Jset64R), Some(Jne64R), Some(Jsgt64R), Some(Jsge64R),
        None, None, Some(Jlt64R), Some(Jle64R), Some(Jslt64R), Some(Jsle64R), None, None,
    ],
];
#[rustfmt::skip]
const JMP32: [Row; 2] = [
    [
        None, Some(Jeq32I), Some(Jgt32I), Some(Jge32I), Some(Jset32I), Some(Jne32I), Some(Jsgt32I), Some(Jsge32I),
        None, None, Some(Jlt32I), Some(Jle32I), Some(Jslt32I), Some(Jsle32I), None, None,
    ],
    [
        None, Some(Jeq32R), Some(Jgt32R), Some(Jge32R), Some(Jset32R), Some(Jne32R), Some(Jsgt32R), Some(Jsge32R),
        None, None, Some(Jlt32R), Some(Jle32R), Some(Jslt32R), Some(Jsle32R), None, None,
    ],
];

fn signed_variant(op: Op) -> Option<Op> {
    Some(match op {
        Div64I => SDiv64I,
        Div64R => SDiv64R,
        Mod64I => SMod64I,
        Mod64R => SMod64R,
        Div32I => SDiv32I,
        Div32R => SDiv32R,
        Mod32I => SMod32I,
        Mod32R => SMod32R,
        _ => return None,
    })
}

/// Decodes a program against the VM's maps; the loads at slot indexes
/// `probe` are fault-safe.
pub(crate) fn decode(insns: &[Insn], maps: &[Map], probe: &[usize]) -> Result<Vec<D>, LoadError> {
    if insns.is_empty() {
        return Err(LoadError {
            pc: 0,
            kind: LoadErrorKind::Empty,
        });
    }
    let n = insns.len();
    let mut out = Vec::with_capacity(n + 1);
    let mut is_hole = vec![false; n];
    let mut pc = 0;
    while pc < n {
        let i = insns[pc];
        let err = |kind| LoadError { pc, kind };
        for r in [i.dst, i.src] {
            if r > 10 && !(i.code == LD_IMM64 || i.code == CALL) {
                return Err(err(LoadErrorKind::BadRegister(r)));
            }
        }
        if i.code == LD_IMM64 {
            let next = *insns
                .get(pc + 1)
                .ok_or(err(LoadErrorKind::TruncatedLdImm64))?;
            if next.code != 0
                || next.dst != 0
                || next.src != 0
                || next.off != 0
                || i.off != 0
                || i.dst > 10
            {
                return Err(err(LoadErrorKind::Invalid(i)));
            }
            let value = match i.src {
                BPF_PSEUDO_NONE => (i.imm as u32 as u64) | ((next.imm as u32 as u64) << 32),
                BPF_PSEUDO_MAP_FD if next.imm == 0 => {
                    maps.get(i.imm as usize)
                        .ok_or(err(LoadErrorKind::BadMap { map: i.imm, off: 0 }))?;
                    crate::helpers::map_handle(i.imm as usize)
                }
                // A callback: an opaque handle naming its first instruction,
                // which `bpf_loop` turns back into a call target.
                BPF_PSEUDO_FUNC if next.imm == 0 => {
                    let t = pc as i64 + i64::from(i.imm) + 1;
                    if t < 0 || t >= n as i64 {
                        return Err(err(LoadErrorKind::BadTarget(t)));
                    }
                    crate::helpers::func_handle(t as usize)
                }
                BPF_PSEUDO_MAP_VALUE => {
                    let bad = || {
                        err(LoadErrorKind::BadMap {
                            map: i.imm,
                            off: next.imm,
                        })
                    };
                    let m = maps.get(i.imm as usize).ok_or_else(bad)?;
                    let base = m.array_base().ok_or_else(bad)?;
                    if next.imm < 0 || next.imm as u32 >= m.spec().value_size {
                        return Err(bad());
                    }
                    base + next.imm as u64
                }
                _ => return Err(err(LoadErrorKind::Invalid(i))),
            };
            out.push(D {
                op: LdDw,
                dst: i.dst,
                src: 0,
                probe: false,
                off: 0,
                imm: value,
            });
            out.push(D {
                op: Hole,
                dst: 0,
                src: 0,
                probe: false,
                off: 0,
                imm: 0,
            });
            is_hole[pc + 1] = true;
            pc += 2;
            continue;
        }
        out.push(decode_one(i, pc).ok_or(err(LoadErrorKind::Invalid(i)))?);
        pc += 1;
    }
    out.push(D {
        op: FellOff,
        dst: 0,
        src: 0,
        probe: false,
        off: 0,
        imm: 0,
    });

    for &pc in probe {
        match out.get_mut(pc) {
            Some(d) if (LdxB as u8..=LdxSW as u8).contains(&(d.op as u8)) => d.probe = true,
            _ => {
                return Err(LoadError {
                    pc,
                    kind: LoadErrorKind::NotALoad,
                })
            }
        }
    }
    // Resolve relative targets to absolute slot indexes.
    for (pc, d) in out.iter_mut().enumerate() {
        let rel = match d.op {
            Ja | CallLocal => d.imm as i64,
            op if is_cond_jump(op) => d.off as i64,
            _ => continue,
        };
        let t = pc as i64 + 1 + rel;
        if t < 0 || t >= n as i64 || is_hole[t as usize] {
            return Err(LoadError {
                pc,
                kind: LoadErrorKind::BadTarget(t),
            });
        }
        d.off = t as i32;
    }
    Ok(out)
}

pub(crate) fn is_cond_jump(op: Op) -> bool {
    (Jeq64I as u8..=Jsle32R as u8).contains(&(op as u8))
}

fn decode_one(i: Insn, _pc: usize) -> Option<D> {
    let (code, dst, src, off, imm) = (i.code, i.dst, i.src, i.off, i.imm);
    let d = |op, imm: u64, off: i32| {
        Some(D {
            op,
            dst,
            src,
            probe: false,
            off,
            imm,
        })
    };
    let sx = imm as i64 as u64;
    let zx = imm as u32 as u64;
    let x = (source(code) == BPF_X) as usize;
    match class(code) {
        c @ (BPF_ALU | BPF_ALU64) => {
            let is64 = c == BPF_ALU64;
            let o = op(code);
            if o == BPF_END {
                if src != 0 || off != 0 {
                    return None;
                }
                let op = match (is64, x, imm) {
                    (true, 0, 16) | (false, 1, 16) => Bswap16,
                    (true, 0, 32) | (false, 1, 32) => Bswap32,
                    (true, 0, 64) | (false, 1, 64) => Bswap64,
                    (false, 0, 16) => Le16,
                    (false, 0, 32) => Le32,
                    (false, 0, 64) => Le64,
                    _ => return None,
                };
                return d(op, 0, 0);
            }
            let mut op = (if is64 { ALU64 } else { ALU32 })[x][(o >> 4) as usize]?;
            match (o, off) {
                (_, 0) => {}
                (BPF_DIV | BPF_MOD, 1) => op = signed_variant(op)?,
                (BPF_MOV, 8 | 16 | 32) if x == 1 => {
                    op = match (is64, off) {
                        (true, 8) => Movsx64B,
                        (true, 16) => Movsx64H,
                        (true, 32) => Movsx64W,
                        (false, 8) => Movsx32B,
                        (false, 16) => Movsx32H,
                        _ => return None,
                    }
                }
                _ => return None,
            }
            if (x == 1 && imm != 0) || (x == 0 && src != 0) || (o == BPF_NEG && imm != 0) {
                return None;
            }
            d(op, if is64 { sx } else { zx }, 0)
        }
        BPF_LDX => {
            let op = match (mode(code), size(code)) {
                (BPF_MEM, BPF_B) => LdxB,
                (BPF_MEM, BPF_H) => LdxH,
                (BPF_MEM, BPF_W) => LdxW,
                (BPF_MEM, BPF_DW) => LdxDW,
                (BPF_MEMSX, BPF_B) => LdxSB,
                (BPF_MEMSX, BPF_H) => LdxSH,
                (BPF_MEMSX, BPF_W) => LdxSW,
                _ => return None,
            };
            (imm == 0).then_some(())?;
            d(op, 0, off as i32)
        }
        BPF_ST => {
            let op = match (mode(code), size(code)) {
                (BPF_MEM, BPF_B) => StB,
                (BPF_MEM, BPF_H) => StH,
                (BPF_MEM, BPF_W) => StW,
                (BPF_MEM, BPF_DW) => StDW,
                _ => return None,
            };
            (src == 0).then_some(())?;
            d(op, sx, off as i32)
        }
        BPF_STX => {
            let op = match (mode(code), size(code)) {
                (BPF_MEM, BPF_B) => StxB,
                (BPF_MEM, BPF_H) => StxH,
                (BPF_MEM, BPF_W) => StxW,
                (BPF_MEM, BPF_DW) => StxDW,
                (BPF_ATOMIC, BPF_W) => Atomic32,
                (BPF_ATOMIC, BPF_DW) => Atomic64,
                _ => return None,
            };
            if op == Atomic32 || op == Atomic64 {
                let ok = [
                    BPF_ADD as i32,
                    BPF_OR as i32,
                    BPF_AND as i32,
                    BPF_XOR as i32,
                ]
                .iter()
                .any(|&a| imm == a || imm == a | BPF_FETCH)
                    || imm == BPF_XCHG
                    || imm == BPF_CMPXCHG;
                ok.then_some(())?;
                return d(op, zx, off as i32);
            }
            (imm == 0).then_some(())?;
            d(op, 0, off as i32)
        }
        c @ (BPF_JMP | BPF_JMP32) => {
            let is64 = c == BPF_JMP;
            match op(code) {
                BPF_JA => {
                    (x == 0 && dst == 0 && src == 0).then_some(())?;
                    let rel = if is64 {
                        (imm == 0).then_some(off as i64)?
                    } else {
                        (off == 0).then_some(imm as i64)?
                    };
                    d(Ja, rel as u64, 0)
                }
                BPF_EXIT if is64 && x == 0 && dst == 0 && src == 0 && off == 0 && imm == 0 => {
                    d(Exit, 0, 0)
                }
                BPF_CALL if is64 && x == 1 => (src == 0 && off == 0 && imm == 0 && dst <= 10)
                    .then_some(D {
                        op: Callx,
                        dst,
                        src,
                        probe: false,
                        off: 0,
                        imm: 0,
                    }),
                BPF_CALL if is64 && dst == 0 && off == 0 => match src {
                    BPF_PSEUDO_HELPER => d(CallHelper, zx, 0),
                    BPF_PSEUDO_KFUNC_CALL => d(CallKfunc, zx, 0),
                    BPF_PSEUDO_CALL => d(CallLocal, sx, 0),
                    _ => None,
                },
                o => {
                    let op = (if is64 { JMP64 } else { JMP32 })[x][(o >> 4) as usize]?;
                    if (x == 1 && imm != 0) || (x == 0 && src != 0) {
                        return None;
                    }
                    d(op, if is64 { sx } else { zx }, off as i32)
                }
            }
        }
        _ => None,
    }
}
