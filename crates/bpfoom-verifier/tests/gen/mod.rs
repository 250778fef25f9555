//! Generated context-free programs (ALU, jumps, bounded loops, stack and
//! stack pointers; registers r0 and r2-r9) and a concrete runner for them.
//! The generator is shared by the kernel differential test and the
//! soundness test; the runner ([`runs_safely`], bpfoom's own rules) only
//! classifies the kernel differential's disagreements: soundness is checked
//! by executing on bpfoom-vm (`prop.rs`).
#![allow(dead_code)]

use bpfoom_insn::opcode::*;
use bpfoom_insn::Insn;

/// The tests' one generator (bpfoom-testutil), with the picks below.
pub use bpfoom_testutil::Rng;

/// Registers and immediates for generated programs.
pub trait Picks {
    /// A register the programs may use.
    fn reg(&mut self) -> u8;
    /// An immediate, biased towards interesting values.
    fn imm(&mut self) -> i32;
}

impl Picks for Rng {
    fn reg(&mut self) -> u8 {
        self.pick(&[0u8, 2, 3, 4, 5, 6, 7, 8, 9])
    }
    fn imm(&mut self) -> i32 {
        match self.below(4) {
            0 => self.below(8) as i32,
            1 => self.below(100) as i32 - 50,
            2 => self.pick(&[0, 1, -1, 255, 4096, i32::MAX, i32::MIN]),
            _ => self.next_u64() as i32,
        }
    }
}

/// No div/mod: bpfoom folds and bounds them, the kernel makes their results
/// unknown, so a later branch the kernel cannot decide is dead for bpfoom and
/// the verdicts differ on paths that can never run (bpfoom being more
/// precise, not less safe). Division by an immediate zero is generated apart.
const ALU: [u8; 10] = [
    BPF_ADD, BPF_SUB, BPF_MUL, BPF_OR, BPF_AND, BPF_LSH, BPF_RSH, BPF_XOR, BPF_MOV, BPF_ARSH,
];
const JMP: [u8; 11] = [
    BPF_JEQ, BPF_JGT, BPF_JGE, BPF_JSET, BPF_JNE, BPF_JSGT, BPF_JSGE, BPF_JLT, BPF_JLE, BPF_JSLT,
    BPF_JSLE,
];
const SIZES: [u8; 4] = [BPF_B, BPF_H, BPF_W, BPF_DW];

/// One generated program: a body of random instructions, then `exit`.
pub fn generate(rng: &mut Rng) -> Vec<Insn> {
    let len = 4 + rng.below(24) as usize;
    let mut v: Vec<Insn> = Vec::new();
    // Usually initialise a few registers so that more programs get past the first read.
    for r in [0u8, 2, 3, 4, 5, 6, 7, 8, 9] {
        if rng.below(16) != 0 {
            v.push(Insn::new(BPF_ALU64 | BPF_MOV | BPF_K, r, 0, 0, rng.imm()));
        }
    }
    for slot in 1..=8i16 {
        if rng.below(3) != 0 {
            v.push(Insn::new(
                BPF_ST | BPF_MEM | BPF_DW,
                10,
                0,
                -8 * slot,
                rng.imm(),
            ));
        }
    }
    let body_start = v.len();
    while v.len() < body_start + len {
        let here = v.len();
        let left = (body_start + len - here) as i64;
        match rng.below(12) {
            0..=3 => {
                let class = if rng.below(3) == 0 {
                    BPF_ALU
                } else {
                    BPF_ALU64
                };
                let op = ALU[rng.below(ALU.len() as u64) as usize];
                let dst = rng.reg();
                let mut imm = rng.imm();
                if matches!(op, BPF_LSH | BPF_RSH | BPF_ARSH) && rng.below(8) != 0 {
                    imm = rng.below(if class == BPF_ALU { 32 } else { 64 }) as i32;
                }
                if rng.below(40) == 0 {
                    v.push(Insn::new(class | BPF_DIV | BPF_K, dst, 0, 0, 0));
                } else if rng.below(2) == 0 {
                    v.push(Insn::new(class | op | BPF_K, dst, 0, 0, imm));
                } else {
                    v.push(Insn::new(class | op | BPF_X, dst, rng.reg(), 0, 0));
                }
            }
            4 => {
                let dst = rng.reg();
                let class = if rng.below(2) == 0 {
                    BPF_ALU
                } else {
                    BPF_ALU64
                };
                v.push(Insn::new(class | BPF_NEG, dst, 0, 0, 0));
            }
            5 | 6 => {
                let size = SIZES[rng.below(4) as usize];
                let n = size_bytes(size) as i64;
                let off = -(n * (1 + rng.below(8) as i64));
                if rng.below(2) == 0 {
                    v.push(Insn::new(
                        BPF_ST | BPF_MEM | size,
                        10,
                        0,
                        off as i16,
                        rng.imm(),
                    ));
                } else {
                    v.push(Insn::new(
                        BPF_STX | BPF_MEM | size,
                        10,
                        rng.reg(),
                        off as i16,
                        0,
                    ));
                }
            }
            7 => {
                let size = SIZES[rng.below(4) as usize];
                let n = size_bytes(size) as i64;
                let off = -(n * (1 + rng.below(8) as i64));
                v.push(Insn::new(
                    BPF_LDX | BPF_MEM | size,
                    rng.reg(),
                    10,
                    off as i16,
                    0,
                ));
            }
            8 => {
                // Forward conditional jump (never past the final exit).
                let class = if rng.below(3) == 0 {
                    BPF_JMP32
                } else {
                    BPF_JMP
                };
                let op = JMP[rng.below(JMP.len() as u64) as usize];
                let off = 1 + rng.below(left.clamp(1, 4) as u64) as i16;
                let off = off.min(left as i16);
                if rng.below(2) == 0 {
                    v.push(Insn::new(class | op | BPF_K, rng.reg(), 0, off, rng.imm()));
                } else {
                    // A register compared with itself only through JSET: bpfoom
                    // decides `r < r` and the like, the kernel explores both ways.
                    let (d, mut r) = (rng.reg(), rng.reg());
                    while r == d && op != BPF_JSET {
                        r = rng.reg();
                    }
                    v.push(Insn::new(class | op | BPF_X, d, r, off, 0));
                }
            }
            10 => {
                // Look up the one array map's value (key 0), then one access
                // at an offset bounded by a mask or a branch.
                v.push(Insn::new(BPF_ST | BPF_MEM | BPF_W, 10, 0, -4, 0));
                v.push(Insn::new(LD_IMM64, 1, BPF_PSEUDO_MAP_FD, 0, 0));
                v.push(Insn::new(0, 0, 0, 0, 0));
                v.push(Insn::new(BPF_ALU64 | BPF_MOV | BPF_X, 2, 10, 0, 0));
                v.push(Insn::new(BPF_ALU64 | BPF_ADD | BPF_K, 2, 0, 0, -4));
                v.push(Insn::new(CALL, 0, 0, 0, 1));
                v.push(Insn::new(BPF_JMP | BPF_JEQ | BPF_K, 0, 0, 5, 0));
                v.push(Insn::new(
                    BPF_ALU64 | BPF_MOV | BPF_X,
                    6,
                    [6u8, 8, 9][rng.below(3) as usize],
                    0,
                    0,
                ));
                if rng.below(2) == 0 {
                    let mask = [7, 15, 31, 56, 63, 127][rng.below(6) as usize];
                    v.push(Insn::new(BPF_ALU64 | BPF_AND | BPF_K, 6, 0, 0, mask));
                } else {
                    let class = if rng.below(2) == 0 {
                        BPF_JMP32
                    } else {
                        BPF_JMP
                    };
                    let op = [BPF_JGT, BPF_JGE, BPF_JSGT][rng.below(3) as usize];
                    v.push(Insn::new(class | op | BPF_K, 6, 0, 3, rng.below(70) as i32));
                }
                v.push(Insn::new(BPF_ALU64 | BPF_MOV | BPF_X, 7, 0, 0, 0));
                v.push(Insn::new(BPF_ALU64 | BPF_ADD | BPF_X, 7, 6, 0, 0));
                let size = SIZES[rng.below(4) as usize];
                let off = rng.below(72) as i16 - 4;
                if rng.below(2) == 0 {
                    v.push(Insn::new(BPF_ST | BPF_MEM | size, 7, 0, off, rng.imm()));
                } else {
                    v.push(Insn::new(BPF_LDX | BPF_MEM | size, 8, 7, off, 0));
                }
                v.push(Insn::new(BPF_ALU64 | BPF_MOV | BPF_K, 7, 0, 0, 0));
                // The call clobbered r1-r5 and left the value pointer in r0:
                // usually give them numbers again.
                for r in [0u8, 2, 3, 4, 5] {
                    if rng.below(4) != 0 {
                        v.push(Insn::new(BPF_ALU64 | BPF_MOV | BPF_K, r, 0, 0, rng.imm()));
                    }
                }
            }
            9 if rng.below(2) == 0 => {
                // A stack pointer with a variable offset bounded by a mask or
                // a branch, one access through it, then the pointer is dropped
                // (bpfoom and the kernel differ on pointer leaks by design).
                let (idx, ptr) = (6u8, 7u8);
                v.push(Insn::new(BPF_ALU64 | BPF_MOV | BPF_X, idx, rng.reg(), 0, 0));
                if rng.below(2) == 0 {
                    let mask = [7, 15, 31, 63, 255, 0x1ff][rng.below(6) as usize];
                    v.push(Insn::new(BPF_ALU64 | BPF_AND | BPF_K, idx, 0, 0, mask));
                } else {
                    // if idx > bound: skip the access (jump over the 5 insns below).
                    let class = if rng.below(2) == 0 {
                        BPF_JMP32
                    } else {
                        BPF_JMP
                    };
                    let op = [BPF_JGT, BPF_JGE, BPF_JSGT][rng.below(3) as usize];
                    v.push(Insn::new(
                        class | op | BPF_K,
                        idx,
                        0,
                        5,
                        rng.below(80) as i32,
                    ));
                }
                v.push(Insn::new(BPF_ALU64 | BPF_MOV | BPF_X, ptr, 10, 0, 0));
                v.push(Insn::new(BPF_ALU64 | BPF_ADD | BPF_X, ptr, idx, 0, 0));
                v.push(Insn::new(
                    BPF_ALU64 | BPF_ADD | BPF_K,
                    ptr,
                    0,
                    0,
                    -(8 * (1 + rng.below(12) as i32)),
                ));
                let size = SIZES[rng.below(4) as usize];
                if rng.below(2) == 0 {
                    v.push(Insn::new(BPF_ST | BPF_MEM | size, ptr, 0, 0, rng.imm()));
                } else {
                    v.push(Insn::new(BPF_LDX | BPF_MEM | size, rng.reg(), ptr, 0, 0));
                }
                v.push(Insn::new(BPF_ALU64 | BPF_MOV | BPF_K, ptr, 0, 0, 0));
            }
            9 => {
                // Spill and fill a stack pointer, then use it.
                let off = -8 * (1 + rng.below(8) as i16);
                v.push(Insn::new(BPF_ALU64 | BPF_MOV | BPF_X, 7, 10, 0, 0));
                v.push(Insn::new(BPF_ALU64 | BPF_ADD | BPF_K, 7, 0, 0, -64));
                v.push(Insn::new(BPF_STX | BPF_MEM | BPF_DW, 10, 7, off, 0));
                v.push(Insn::new(BPF_LDX | BPF_MEM | BPF_DW, 8, 10, off, 0));
                v.push(Insn::new(
                    BPF_ST | BPF_MEM | BPF_W,
                    8,
                    0,
                    4 * rng.below(16) as i16,
                    rng.imm(),
                ));
                v.push(Insn::new(BPF_ALU64 | BPF_MOV | BPF_K, 7, 0, 0, 0));
                v.push(Insn::new(BPF_ALU64 | BPF_MOV | BPF_K, 8, 0, 0, 1));
            }
            _ => {
                // A counted loop: r9 counts to a small bound around a short body.
                let bound = 1 + rng.below(20) as i32;
                v.push(Insn::new(BPF_ALU64 | BPF_MOV | BPF_K, 9, 0, 0, 0));
                let head = v.len();
                let body = rng.below(3);
                for _ in 0..body {
                    let r = [0u8, 2, 3, 4][rng.below(4) as usize];
                    v.push(Insn::new(BPF_ALU64 | BPF_ADD | BPF_X, r, 9, 0, 0));
                }
                v.push(Insn::new(BPF_ALU64 | BPF_ADD | BPF_K, 9, 0, 0, 1));
                let back = head as i64 - v.len() as i64 - 1;
                let op = if rng.below(8) == 0 { BPF_JNE } else { BPF_JLT };
                v.push(Insn::new(BPF_JMP | op | BPF_K, 9, 0, back as i16, bound));
            }
        }
    }
    v.push(Insn::new(EXIT, 0, 0, 0, 0));
    v
}

/// A concrete value in the generated programs' world.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum V {
    Uninit,
    Num(u64),
    /// A pointer to the stack at `fp + off`.
    Fp(i64),
    /// The array map (from `ld_imm64`).
    MapPtr,
    /// A pointer into the map's value at `off`.
    Map(i64),
}

/// Value size of the one array map the generated programs use (map index 0,
/// key size 4, one entry, zero-initialised).
pub const MAP_VALUE_SIZE: i64 = 64;

/// Runs a generated program (it has no inputs: its one execution is the only
/// one) and reports whether it stays within bpfoom's rules: no uninitialised
/// register or stack reads, aligned in-bounds stack accesses, pointers only
/// moved, offset, spilled whole and dereferenced, a number returned; map
/// value accesses within the value.
/// A value as a number: pointers are given fixed, distinct addresses
/// (privileged programs may compare and compute with them).
fn addr(v: V) -> Option<u64> {
    match v {
        V::Num(n) => Some(n),
        V::Fp(p) => Some((0x7fff_0000_0200_i64 + p) as u64),
        V::Map(p) => Some((0x5555_0000_0000_i64 + p) as u64),
        V::MapPtr => Some(0x4444_0000_0000),
        V::Uninit => None,
    }
}

pub fn runs_safely(insns: &[Insn]) -> bool {
    use bpfoom_verifier::scalar::{eval_alu, Cmp};
    let mut r = [V::Uninit; 11];
    r[10] = V::Fp(0);
    let mut mem: [Option<u8>; 512] = [None; 512];
    let mut spilled: Vec<(i64, V)> = Vec::new(); // (slot offset, spilled pointer)
    let mut value = [0u8; MAP_VALUE_SIZE as usize];
    let (mut pc, mut steps) = (0usize, 0u32);
    loop {
        steps += 1;
        let Some(&i) = insns.get(pc) else {
            return false;
        };
        if steps > 200_000 {
            return false;
        }
        let (cls, o) = (class(i.code), op(i.code));
        let x = source(i.code) == BPF_X;
        match cls {
            BPF_ALU | BPF_ALU64 => {
                let w = if cls == BPF_ALU64 { 64 } else { 32 };
                let src = if x {
                    r[i.src as usize]
                } else if w == 64 {
                    V::Num(i.imm as i64 as u64)
                } else {
                    V::Num(u64::from(i.imm as u32))
                };
                if src == V::Uninit {
                    return false;
                }
                let dst = r[i.dst as usize];
                r[i.dst as usize] = match (o, dst, src) {
                    (BPF_MOV, _, V::Num(n)) => V::Num(if w == 32 { n & 0xffff_ffff } else { n }),
                    (BPF_MOV, _, p @ (V::Fp(_) | V::Map(_) | V::MapPtr)) if w == 64 => p,
                    (BPF_ADD, V::Map(p), V::Num(n)) if w == 64 => V::Map(p.wrapping_add(n as i64)),
                    (BPF_SUB, V::Map(p), V::Num(n)) if w == 64 => V::Map(p.wrapping_sub(n as i64)),
                    (BPF_SUB, V::Fp(p), V::Num(n)) if w == 64 => V::Fp(p.wrapping_sub(n as i64)),
                    (BPF_SUB, V::Map(a), V::Map(b)) | (BPF_SUB, V::Fp(a), V::Fp(b)) if w == 64 => {
                        V::Num(a.wrapping_sub(b) as u64)
                    }
                    (BPF_NEG, d, _) if addr(d).is_some() => {
                        let n = addr(d).unwrap_or(0);
                        V::Num(eval_alu(BPF_SUB, 0, n, w, false).unwrap_or(0))
                    }
                    (BPF_ADD, V::Fp(p), V::Num(n)) if w == 64 => V::Fp(p.wrapping_add(n as i64)),
                    (BPF_MOV, _, p) => match addr(p) {
                        Some(n) => V::Num(if w == 32 { n & 0xffff_ffff } else { n }),
                        None => return false,
                    },
                    (_, d, s) if addr(d).is_some() && addr(s).is_some() => {
                        // Privileged: pointers used as numbers are addresses.
                        let (a, b) = (addr(d).unwrap_or(0), addr(s).unwrap_or(0));
                        let b = if matches!(o, BPF_LSH | BPF_RSH | BPF_ARSH) {
                            b & u64::from(w - 1)
                        } else {
                            b
                        };
                        match eval_alu(o, a, b, w, i.off == 1) {
                            Some(v) => V::Num(v),
                            None => return false,
                        }
                    }
                    (_, V::Num(a), V::Num(b)) => {
                        // Register shift amounts wrap at run time (x86 masks them).
                        let b = if matches!(o, BPF_LSH | BPF_RSH | BPF_ARSH) {
                            b & u64::from(w - 1)
                        } else {
                            b
                        };
                        match eval_alu(o, a, b, w, i.off == 1) {
                            Some(v) => V::Num(v),
                            None => return false,
                        }
                    }
                    _ => return false,
                };
                pc += 1;
            }
            BPF_LD => {
                let hi = insns.get(pc + 1).map_or(0, |n| n.imm as u32 as u64);
                r[i.dst as usize] = match i.src {
                    BPF_PSEUDO_NONE => V::Num(u64::from(i.imm as u32) | (hi << 32)),
                    BPF_PSEUDO_MAP_FD => V::MapPtr,
                    _ => return false,
                };
                pc += 2;
            }
            BPF_ST | BPF_STX | BPF_LDX
                if matches!(
                    if cls == BPF_LDX {
                        r[i.src as usize]
                    } else {
                        r[i.dst as usize]
                    },
                    V::Map(_)
                ) =>
            {
                let n = size_bytes(size(i.code)) as i64;
                let (V::Map(p) | V::Fp(p)) = (if cls == BPF_LDX {
                    r[i.src as usize]
                } else {
                    r[i.dst as usize]
                }) else {
                    return false;
                };
                let a = p + i64::from(i.off);
                if a < 0 || a + n > MAP_VALUE_SIZE {
                    return false;
                }
                if cls == BPF_LDX {
                    let mut v = 0u64;
                    for k in (0..n).rev() {
                        v = (v << 8) | u64::from(value[(a + k) as usize]);
                    }
                    r[i.dst as usize] = V::Num(v);
                } else {
                    let val = if cls == BPF_ST {
                        V::Num(i.imm as i64 as u64)
                    } else {
                        r[i.src as usize]
                    };
                    // Privileged: a pointer is stored as its address.
                    let Some(v) = addr(val) else { return false };
                    for k in 0..n {
                        value[(a + k) as usize] = (v >> (8 * k)) as u8;
                    }
                }
                pc += 1;
            }
            BPF_ST | BPF_STX | BPF_LDX => {
                let n = size_bytes(size(i.code)) as i64;
                let base = if cls == BPF_LDX {
                    r[i.src as usize]
                } else {
                    r[i.dst as usize]
                };
                let V::Fp(p) = base else { return false };
                let a = p + i64::from(i.off);
                if a < -512 || a + n > 0 || a % n != 0 {
                    return false;
                }
                let at = |k: i64| (512 + a + k) as usize;
                let overlaps = |s: i64| a < s + 8 && s < a + n;
                if cls == BPF_LDX {
                    if let Some(&(s, t)) = spilled.iter().find(|&&(s, _)| overlaps(s)) {
                        if n != 8 || s != a {
                            return false;
                        }
                        r[i.dst as usize] = t;
                    } else {
                        let mut v = 0u64;
                        for k in (0..n).rev() {
                            // Privileged: uninitialised stack reads some
                            // number (the VM's stack starts zeroed).
                            let b = mem[at(k)].unwrap_or(0);
                            v = (v << 8) | u64::from(b);
                        }
                        r[i.dst as usize] = V::Num(v);
                    }
                } else {
                    let val = if cls == BPF_ST {
                        V::Num(i.imm as i64 as u64)
                    } else {
                        r[i.src as usize]
                    };
                    spilled.retain(|&(s, _)| !overlaps(s));
                    match val {
                        V::Uninit => return false,
                        p @ (V::Fp(_) | V::Map(_) | V::MapPtr) => {
                            if n != 8 {
                                return false;
                            }
                            spilled.push((a, p));
                        }
                        V::Num(v) => {
                            for k in 0..n {
                                mem[at(k)] = Some((v >> (8 * k)) as u8);
                            }
                        }
                    }
                }
                pc += 1;
            }
            // Privileged: a pointer returned is its address.
            _ if o == BPF_EXIT => return addr(r[0]).is_some(),
            _ if o == BPF_CALL => {
                // Only bpf_map_lookup_elem(map, &key) with key 0 on the stack.
                let V::Fp(k) = r[2] else { return false };
                if i.imm != 1 || r[1] != V::MapPtr || k < -512 || k + 4 > 0 {
                    return false;
                }
                // Privileged: the key may be uninitialised or hold a spilled
                // pointer; any key of an array of one entry is found or not.
                r[0] = V::Map(0);
                for reg in &mut r[1..=5] {
                    *reg = V::Uninit;
                }
                pc += 1;
            }
            _ if o == BPF_JA => pc = (pc as i64 + i64::from(i.off) + 1) as usize,
            _ => {
                let w = if cls == BPF_JMP32 { 32 } else { 64 };
                // Privileged: pointers compare as their addresses.
                let num = addr;
                let ptr = |v: V| matches!(v, V::Fp(_) | V::Map(_) | V::MapPtr);
                if ptr(r[i.dst as usize])
                    && !x
                    && i.imm == 0
                    && matches!(o, BPF_JEQ | BPF_JNE)
                    && w == 64
                {
                    // A pointer is never NULL here (the lookup's key exists).
                    pc = if o == BPF_JNE {
                        (pc as i64 + i64::from(i.off) + 1) as usize
                    } else {
                        pc + 1
                    };
                    continue;
                }
                let a = num(r[i.dst as usize]);
                let b = if x {
                    num(r[i.src as usize])
                } else {
                    Some(i.imm as i64 as u64)
                };
                let (Some(a), Some(b), Some(c)) = (a, b, Cmp::from_op(o)) else {
                    return false;
                };
                let m = if w == 32 { 0xffff_ffff } else { u64::MAX };
                pc = if c.eval(a & m, b & m, w) {
                    (pc as i64 + i64::from(i.off) + 1) as usize
                } else {
                    pc + 1
                };
            }
        }
    }
}
