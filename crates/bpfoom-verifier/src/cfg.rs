//! Structural checks before abstract interpretation: valid encodings, jump
//! targets, function boundaries, reachability; plus the facts the
//! interpreter needs (prune points, register liveness).

use bpfoom_abi::{helpers, kfuncs};
use bpfoom_insn::opcode::*;
use bpfoom_insn::Insn;

use crate::RejectKind;

/// A structural failure: instruction, kind, reason.
pub(crate) type CfgError = (usize, RejectKind, String);

/// What the structural pass learned.
pub(crate) struct Cfg {
    /// Instructions where states are remembered for pruning.
    pub prune: Vec<bool>,
    /// Registers that may be read before written, from each instruction on.
    pub live_in: Vec<u16>,
    /// First instruction of every function (the program, called
    /// subprograms, callbacks), ascending: Linux's `subprog_info[].start`.
    pub subprogs: Vec<usize>,
}

/// Checks one instruction's encoding (fields the opcode does not use must be zero).
fn check_encoding(insns: &[Insn], pc: usize) -> Result<(), String> {
    let i = insns[pc];
    let bad = || format!("invalid instruction encoding (code {:#04x})", i.code);
    if i.dst > 10 || i.src > 10 {
        return Err(format!(
            "invalid register number (dst r{}, src r{})",
            i.dst, i.src
        ));
    }
    let (class, op, src_x) = (class(i.code), op(i.code), source(i.code) == BPF_X);
    match class {
        BPF_LD => {
            if i.code != LD_IMM64 {
                return Err(format!(
                    "unknown opcode {:#04x} (BPF_LD_[ABS|IND] are not allowed)",
                    i.code
                ));
            }
            let Some(n) = insns.get(pc + 1) else {
                return Err("invalid ld_imm64: missing second slot".into());
            };
            if n.code != 0 || n.dst != 0 || n.src != 0 || n.off != 0 || i.off != 0 {
                return Err("invalid ld_imm64: reserved fields must be zero".into());
            }
            match i.src {
                BPF_PSEUDO_NONE | BPF_PSEUDO_MAP_VALUE | BPF_PSEUDO_BTF_ID => {}
                BPF_PSEUDO_MAP_FD if n.imm == 0 => {}
                BPF_PSEUDO_FUNC if n.imm == 0 => {}
                _ => return Err(format!("invalid ld_imm64 source {}", i.src)),
            }
        }
        BPF_LDX => {
            let m = mode(i.code);
            if !(m == BPF_MEM || (m == BPF_MEMSX && size(i.code) != BPF_DW)) || i.imm != 0 {
                return Err(bad());
            }
        }
        BPF_ST => {
            if mode(i.code) != BPF_MEM || i.src != 0 {
                return Err(bad());
            }
        }
        BPF_STX => match mode(i.code) {
            BPF_MEM if i.imm == 0 => {}
            BPF_ATOMIC if matches!(size(i.code), BPF_W | BPF_DW) => {
                let base = i.imm & !BPF_FETCH;
                let ok = matches!(base, 0x00 | 0x40 | 0x50 | 0xa0)
                    || i.imm == BPF_XCHG
                    || i.imm == BPF_CMPXCHG;
                if !ok {
                    return Err(format!("invalid atomic operation {:#x}", i.imm));
                }
            }
            _ => return Err(bad()),
        },
        BPF_ALU | BPF_ALU64 => {
            let off_ok = match op {
                BPF_DIV | BPF_MOD => i.off == 0 || i.off == 1,
                BPF_MOV if src_x => {
                    i.off == 0 || i.off == 8 || i.off == 16 || (i.off == 32 && class == BPF_ALU64)
                }
                _ => i.off == 0,
            };
            let fields_ok = match op {
                BPF_NEG => !src_x && i.src == 0 && i.imm == 0,
                BPF_END => {
                    i.src == 0 && matches!(i.imm, 16 | 32 | 64) && !(class == BPF_ALU64 && src_x)
                }
                BPF_ADD | BPF_SUB | BPF_MUL | BPF_DIV | BPF_OR | BPF_AND | BPF_LSH | BPF_RSH
                | BPF_MOD | BPF_XOR | BPF_MOV | BPF_ARSH => {
                    if src_x {
                        i.imm == 0
                    } else {
                        i.src == 0
                    }
                }
                _ => return Err(format!("unknown opcode {:#04x}", i.code)),
            };
            if !off_ok || !fields_ok {
                return Err(bad());
            }
        }
        BPF_JMP | BPF_JMP32 => match op {
            BPF_JA => {
                let ok = !src_x && i.src == 0 && i.dst == 0;
                let ok = ok
                    && if class == BPF_JMP {
                        i.imm == 0
                    } else {
                        i.off == 0
                    };
                if !ok {
                    return Err(bad());
                }
            }
            BPF_CALL if class == BPF_JMP => {
                if src_x || i.dst != 0 || i.off != 0 || i.src > BPF_PSEUDO_KFUNC_CALL {
                    return Err(bad());
                }
            }
            BPF_EXIT if class == BPF_JMP => {
                if i.code != EXIT || i.dst != 0 || i.src != 0 || i.off != 0 || i.imm != 0 {
                    return Err(bad());
                }
            }
            BPF_JEQ | BPF_JGT | BPF_JGE | BPF_JSET | BPF_JNE | BPF_JSGT | BPF_JSGE | BPF_JLT
            | BPF_JLE | BPF_JSLT | BPF_JSLE => {
                if (src_x && i.imm != 0) || (!src_x && i.src != 0) {
                    return Err(bad());
                }
            }
            _ => return Err(format!("unknown opcode {:#04x}", i.code)),
        },
        _ => return Err(format!("unknown opcode {:#04x}", i.code)),
    }
    Ok(())
}

/// Registers read and written by an instruction (bit masks).
fn use_def(i: Insn) -> (u16, u16) {
    let (d, s) = (1u16 << i.dst.min(10), 1u16 << i.src.min(10));
    let args = |n: usize| ((1u16 << (n.min(5) + 1)) - 1) & !1;
    const CALLER_SAVED: u16 = 0b11_1111;
    match class(i.code) {
        BPF_LD => (0, d),
        BPF_LDX => (s, d),
        BPF_ST => (d, 0),
        BPF_STX if mode(i.code) == BPF_ATOMIC => {
            if i.imm == BPF_CMPXCHG {
                (d | s | 1, 1)
            } else if i.imm & BPF_FETCH != 0 {
                (d | s, s)
            } else {
                (d | s, 0)
            }
        }
        BPF_STX => (d | s, 0),
        BPF_ALU | BPF_ALU64 => {
            let x = if source(i.code) == BPF_X { s } else { 0 };
            if op(i.code) == BPF_MOV {
                (x, d)
            } else {
                (d | x, d)
            }
        }
        _ => match op(i.code) {
            BPF_JA => (0, 0),
            BPF_EXIT => (1, 0),
            BPF_CALL => {
                let n = match i.src {
                    BPF_PSEUDO_HELPER => helpers::by_id(i.imm as u32).map_or(5, |h| h.args.len()),
                    BPF_PSEUDO_KFUNC_CALL => {
                        kfuncs::by_id(i.imm as u32).map_or(5, |k| k.params.len())
                    }
                    _ => 5,
                };
                (args(n), CALLER_SAVED)
            }
            _ => (d | if source(i.code) == BPF_X { s } else { 0 }, 0),
        },
    }
}

/// Runs every structural check and computes prune points and liveness.
pub(crate) fn analyze(insns: &[Insn]) -> Result<Cfg, CfgError> {
    let n = insns.len();
    if n == 0 {
        return Err((
            0,
            RejectKind::Structure,
            "the program has no instructions".into(),
        ));
    }
    if n > 1_000_000 {
        return Err((
            0,
            RejectKind::Structure,
            format!("program of {n} instructions is too large"),
        ));
    }
    let mut second = vec![false; n];
    let mut pc = 0;
    while pc < n {
        check_encoding(insns, pc).map_err(|r| (pc, RejectKind::InvalidInsn, r))?;
        if insns[pc].code == LD_IMM64 {
            second[pc + 1] = true;
            pc += 2;
        } else {
            pc += 1;
        }
    }
    let target_ok = |from: usize, t: i64| -> Result<usize, CfgError> {
        if t < 0 || t >= n as i64 {
            return Err((
                from,
                RejectKind::Structure,
                format!("jump out of range from insn {from} to {t}"),
            ));
        }
        if second[t as usize] {
            return Err((
                from,
                RejectKind::Structure,
                format!("jump into the middle of ld_imm64 insn {t}"),
            ));
        }
        Ok(t as usize)
    };
    let mut subprogs = vec![0usize];
    for (pc, i) in insns.iter().enumerate() {
        if !second[pc] && i.code == CALL && i.src == BPF_PSEUDO_CALL {
            subprogs.push(target_ok(pc, pc as i64 + i64::from(i.imm) + 1)?);
        }
        // A callback (`ld_imm64` of a function) starts a subprogram too.
        if !second[pc] && i.code == LD_IMM64 && i.src == BPF_PSEUDO_FUNC {
            subprogs.push(target_ok(pc, pc as i64 + i64::from(i.imm) + 1)?);
        }
    }
    subprogs.sort_unstable();
    subprogs.dedup();
    let cfg_sub = |pc: usize| subprogs[subprogs.partition_point(|&s| s <= pc) - 1];
    let mut succs: Vec<Vec<usize>> = vec![Vec::new(); n];
    let mut prune = vec![false; n];
    for pc in 0..n {
        if second[pc] {
            continue;
        }
        let i = insns[pc];
        let (cls, o) = (class(i.code), op(i.code));
        let mut next = Vec::with_capacity(2);
        let jumps = matches!(cls, BPF_JMP | BPF_JMP32);
        if jumps && o == BPF_EXIT {
            // no successor
        } else if jumps && o == BPF_JA {
            let rel = if cls == BPF_JMP {
                i64::from(i.off)
            } else {
                i64::from(i.imm)
            };
            next.push(target_ok(pc, pc as i64 + rel + 1)?);
        } else if jumps && o != BPF_CALL {
            next.push(pc + 1);
            next.push(target_ok(pc, pc as i64 + i64::from(i.off) + 1)?);
        } else {
            next.push(pc + if i.code == LD_IMM64 { 2 } else { 1 });
        }
        for (k, &t) in next.iter().enumerate() {
            let fallthrough = k == 0 && !(jumps && o == BPF_JA);
            if t >= n {
                return Err((pc, RejectKind::Structure, "the last instruction falls through off the end of the program (not an exit or jump)".into()));
            }
            if cfg_sub(t) != cfg_sub(pc) {
                let r = if fallthrough {
                    format!("insn {pc} falls through into the next function at insn {t}")
                } else {
                    format!("jump out of range from insn {pc} to {t} (into another function)")
                };
                return Err((pc, RejectKind::Structure, r));
            }
            if jumps {
                prune[t] = true;
            }
        }
        succs[pc] = next;
    }
    // Reachability from the entry, entering functions at their calls.
    let mut seen = vec![false; n];
    let mut work = vec![0usize];
    while let Some(pc) = work.pop() {
        if std::mem::replace(&mut seen[pc], true) {
            continue;
        }
        work.extend(&succs[pc]);
        let i = insns[pc];
        if (i.code == CALL && i.src == BPF_PSEUDO_CALL)
            || (i.code == LD_IMM64 && i.src == BPF_PSEUDO_FUNC)
        {
            work.push((pc as i64 + i64::from(i.imm) + 1) as usize);
        }
    }
    if let Some(pc) = (0..n).find(|&pc| !second[pc] && !seen[pc]) {
        return Err((pc, RejectKind::Structure, format!("unreachable insn {pc}")));
    }
    // Liveness: backward fixpoint.
    let ud: Vec<(u16, u16)> = insns.iter().map(|&i| use_def(i)).collect();
    let mut live_in = vec![0u16; n];
    loop {
        let mut changed = false;
        for pc in (0..n).rev() {
            if second[pc] {
                continue;
            }
            let out = succs[pc].iter().fold(0u16, |a, &s| a | live_in[s]);
            let v = ud[pc].0 | (out & !ud[pc].1) | (1 << 10);
            if v != live_in[pc] {
                live_in[pc] = v;
                changed = true;
            }
        }
        if !changed {
            break;
        }
    }
    Ok(Cfg {
        prune,
        live_in,
        subprogs,
    })
}
