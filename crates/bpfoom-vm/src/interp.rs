//! The dispatch loop over pre-decoded instructions.

use crate::decode::{Op::*, D};
use crate::mem::MAX_FRAMES;
use crate::{helpers, Env, Host, HostError, VmError};

#[derive(Clone, Copy, Default)]
struct Frame {
    ret: usize,
    saved: [u64; 4],
}

/// Helper dispatch, kept out of line so the hot loop keeps its registers.
#[inline(never)]
fn call_helper<H: Host + ?Sized>(
    env: &mut Env,
    host: &mut H,
    id: u32,
    args: [u64; 5],
) -> Result<u64, HostError> {
    match host.helper(id, args, env) {
        Err(HostError::Unsupported) => {
            helpers::call(env, id, args).unwrap_or(Err(HostError::Unsupported))
        }
        other => other,
    }
}

/// Executes an atomic instruction on `[addr, addr+len)`; returns the old value
/// and the register that receives it, if any.
#[inline(never)]
fn exec_atomic(
    env: &mut Env,
    addr: u64,
    wide: bool,
    aop: i32,
    src_val: u64,
    r0: u64,
    src: usize,
) -> Result<(u64, Option<usize>), crate::MemError> {
    let len = if wide { 8 } else { 4 };
    let p = env.mem.translate(addr, len, true)?;
    // SAFETY: `translate` checked `len` writable bytes at `p` inside a live VM
    // allocation; the VM is single-threaded while running, so a plain
    // read-modify-write is atomic with respect to the program.
    let old = unsafe {
        if wide {
            (p as *const u64).read_unaligned()
        } else {
            (p as *const u32).read_unaligned() as u64
        }
    };
    let (new, fetch_into) = atomic(aop, old, src_val, r0, wide, src);
    // SAFETY: same range as the read above.
    unsafe {
        if wide {
            (p as *mut u64).write_unaligned(new)
        } else {
            (p as *mut u32).write_unaligned(new as u32)
        }
    }
    Ok((old, fetch_into))
}

#[inline(always)]
fn div64(a: u64, b: u64) -> u64 {
    a.checked_div(b).unwrap_or(0)
}
#[inline(always)]
fn mod64(a: u64, b: u64) -> u64 {
    a.checked_rem(b).unwrap_or(a)
}
#[inline(always)]
fn sdiv64(a: u64, b: u64) -> u64 {
    if b == 0 {
        0
    } else {
        (a as i64).wrapping_div(b as i64) as u64
    }
}
#[inline(always)]
fn smod64(a: u64, b: u64) -> u64 {
    if b == 0 {
        a
    } else {
        (a as i64).wrapping_rem(b as i64) as u64
    }
}
#[inline(always)]
fn div32(a: u64, b: u64) -> u64 {
    (a as u32).checked_div(b as u32).unwrap_or(0) as u64
}
#[inline(always)]
fn mod32(a: u64, b: u64) -> u64 {
    (a as u32).checked_rem(b as u32).unwrap_or(a as u32) as u64
}
#[inline(always)]
fn sdiv32(a: u64, b: u64) -> u64 {
    if b as u32 == 0 {
        0
    } else {
        (a as i32).wrapping_div(b as i32) as u32 as u64
    }
}
#[inline(always)]
fn smod32(a: u64, b: u64) -> u64 {
    if b as u32 == 0 {
        a as u32 as u64
    } else {
        (a as i32).wrapping_rem(b as i32) as u32 as u64
    }
}

/// Executes `code` from index 0 with `r1..r5 = args`.
pub(crate) fn exec<H: Host + ?Sized>(
    code: &[D],
    env: &mut Env,
    host: &mut H,
    args: [u64; 5],
    budget: u64,
) -> Result<u64, VmError> {
    let mut r = [0u64; 16];
    r[1..6].copy_from_slice(&args);
    r[10] = env.mem.frame_pointer(0);
    let mut frames = [Frame::default(); MAX_FRAMES];
    let mut depth = 0usize;
    // Charged only on backward jumps (by distance) and local calls (by callee
    // size), which bounds the instructions executed without a per-insn cost.
    let mut left = budget.min(i64::MAX as u64) as i64;
    let mut pc = 0usize;

    macro_rules! mem_fault {
        ($e:expr) => {
            VmError::Memory {
                pc: pc - 1,
                source: $e,
            }
        };
    }
    macro_rules! load {
        ($d:ident, $ty:ty, $conv:expr) => {{
            let a = r[($d.src & 15) as usize].wrapping_add($d.off as i64 as u64);
            let p = env
                .mem
                .translate(a, size_of::<$ty>() as u64, false)
                .map_err(|e| mem_fault!(e))?;
            // SAFETY: `translate` checked that `size_of::<$ty>()` bytes at `p`
            // lie inside a live VM-owned allocation; unaligned reads are allowed.
            let v = unsafe { (p as *const $ty).read_unaligned() };
            r[($d.dst & 15) as usize] = $conv(v);
        }};
    }
    macro_rules! store {
        ($d:ident, $ty:ty, $val:expr) => {{
            let a = r[($d.dst & 15) as usize].wrapping_add($d.off as i64 as u64);
            let p = env
                .mem
                .translate(a, size_of::<$ty>() as u64, true)
                .map_err(|e| mem_fault!(e))?;
            // SAFETY: `translate` checked that the bytes at `p` lie inside a
            // live, writable VM-owned allocation; unaligned writes are allowed.
            unsafe { (p as *mut $ty).write_unaligned($val as $ty) };
        }};
    }
    macro_rules! jump {
        ($d:ident, $cond:expr) => {{
            if $cond {
                let t = $d.off as usize;
                if t < pc {
                    left -= (pc - t) as i64;
                    if left < 0 {
                        return Err(VmError::Budget { pc: pc - 1, budget });
                    }
                }
                pc = t;
            }
        }};
    }

    loop {
        let d = code[pc];
        pc += 1;
        let dst = (d.dst & 15) as usize;
        let src = (d.src & 15) as usize;
        let (a, b) = (r[dst], r[src]);
        let i = d.imm;
        match d.op {
            Add64I => r[dst] = a.wrapping_add(i),
            Add64R => r[dst] = a.wrapping_add(b),
            Sub64I => r[dst] = a.wrapping_sub(i),
            Sub64R => r[dst] = a.wrapping_sub(b),
            Mul64I => r[dst] = a.wrapping_mul(i),
            Mul64R => r[dst] = a.wrapping_mul(b),
            Div64I => r[dst] = div64(a, i),
            Div64R => r[dst] = div64(a, b),
            SDiv64I => r[dst] = sdiv64(a, i),
            SDiv64R => r[dst] = sdiv64(a, b),
            Or64I => r[dst] = a | i,
            Or64R => r[dst] = a | b,
            And64I => r[dst] = a & i,
            And64R => r[dst] = a & b,
            Lsh64I => r[dst] = a.wrapping_shl(i as u32),
            Lsh64R => r[dst] = a.wrapping_shl(b as u32),
            Rsh64I => r[dst] = a.wrapping_shr(i as u32),
            Rsh64R => r[dst] = a.wrapping_shr(b as u32),
            Neg64 => r[dst] = a.wrapping_neg(),
            Mod64I => r[dst] = mod64(a, i),
            Mod64R => r[dst] = mod64(a, b),
            SMod64I => r[dst] = smod64(a, i),
            SMod64R => r[dst] = smod64(a, b),
            Xor64I => r[dst] = a ^ i,
            Xor64R => r[dst] = a ^ b,
            Mov64I => r[dst] = i,
            Mov64R => r[dst] = b,
            LdDw => {
                r[dst] = i;
                pc += 1;
            }
            Arsh64I => r[dst] = (a as i64).wrapping_shr(i as u32) as u64,
            Arsh64R => r[dst] = (a as i64).wrapping_shr(b as u32) as u64,
            Movsx64B => r[dst] = b as i8 as i64 as u64,
            Movsx64H => r[dst] = b as i16 as i64 as u64,
            Movsx64W => r[dst] = b as i32 as i64 as u64,
            Bswap16 => r[dst] = (a as u16).swap_bytes() as u64,
            Bswap32 => r[dst] = (a as u32).swap_bytes() as u64,
            Bswap64 => r[dst] = a.swap_bytes(),
            Add32I => r[dst] = (a as u32).wrapping_add(i as u32) as u64,
            Add32R => r[dst] = (a as u32).wrapping_add(b as u32) as u64,
            Sub32I => r[dst] = (a as u32).wrapping_sub(i as u32) as u64,
            Sub32R => r[dst] = (a as u32).wrapping_sub(b as u32) as u64,
            Mul32I => r[dst] = (a as u32).wrapping_mul(i as u32) as u64,
            Mul32R => r[dst] = (a as u32).wrapping_mul(b as u32) as u64,
            Div32I => r[dst] = div32(a, i),
            Div32R => r[dst] = div32(a, b),
            SDiv32I => r[dst] = sdiv32(a, i),
            SDiv32R => r[dst] = sdiv32(a, b),
            Or32I => r[dst] = (a as u32 | i as u32) as u64,
            Or32R => r[dst] = (a as u32 | b as u32) as u64,
            And32I => r[dst] = (a as u32 & i as u32) as u64,
            And32R => r[dst] = (a as u32 & b as u32) as u64,
            Lsh32I => r[dst] = (a as u32).wrapping_shl(i as u32) as u64,
            Lsh32R => r[dst] = (a as u32).wrapping_shl(b as u32) as u64,
            Rsh32I => r[dst] = (a as u32).wrapping_shr(i as u32) as u64,
            Rsh32R => r[dst] = (a as u32).wrapping_shr(b as u32) as u64,
            Neg32 => r[dst] = (a as u32).wrapping_neg() as u64,
            Mod32I => r[dst] = mod32(a, i),
            Mod32R => r[dst] = mod32(a, b),
            SMod32I => r[dst] = smod32(a, i),
            SMod32R => r[dst] = smod32(a, b),
            Xor32I => r[dst] = (a as u32 ^ i as u32) as u64,
            Xor32R => r[dst] = (a as u32 ^ b as u32) as u64,
            Mov32I => r[dst] = i as u32 as u64,
            Mov32R => r[dst] = b as u32 as u64,
            Arsh32I => r[dst] = (a as i32).wrapping_shr(i as u32) as u32 as u64,
            Arsh32R => r[dst] = (a as i32).wrapping_shr(b as u32) as u32 as u64,
            Movsx32B => r[dst] = b as i8 as i32 as u32 as u64,
            Movsx32H => r[dst] = b as i16 as i32 as u32 as u64,
            Le16 => r[dst] = a as u16 as u64,
            Le32 => r[dst] = a as u32 as u64,
            Le64 => {}
            LdxB => load!(d, u8, |v: u8| v as u64),
            LdxH => load!(d, u16, |v: u16| u16::from_le(v) as u64),
            LdxW => load!(d, u32, |v: u32| u32::from_le(v) as u64),
            LdxDW => load!(d, u64, u64::from_le),
            LdxSB => load!(d, i8, |v: i8| v as i64 as u64),
            LdxSH => load!(d, i16, |v: i16| i16::from_le(v) as i64 as u64),
            LdxSW => load!(d, i32, |v: i32| i32::from_le(v) as i64 as u64),
            StB => store!(d, u8, i),
            StH => store!(d, u16, (i as u16).to_le()),
            StW => store!(d, u32, (i as u32).to_le()),
            StDW => store!(d, u64, i.to_le()),
            StxB => store!(d, u8, b),
            StxH => store!(d, u16, (b as u16).to_le()),
            StxW => store!(d, u32, (b as u32).to_le()),
            StxDW => store!(d, u64, b.to_le()),
            Atomic32 | Atomic64 => {
                let addr = a.wrapping_add(d.off as i64 as u64);
                let (old, into) = exec_atomic(env, addr, d.op == Atomic64, i as i32, b, r[0], src)
                    .map_err(|e| mem_fault!(e))?;
                if let Some(reg) = into {
                    r[reg] = old;
                }
            }
            Ja => jump!(d, true),
            Jeq64I => jump!(d, a == i),
            Jeq64R => jump!(d, a == b),
            Jgt64I => jump!(d, a > i),
            Jgt64R => jump!(d, a > b),
            Jge64I => jump!(d, a >= i),
            Jge64R => jump!(d, a >= b),
            Jset64I => jump!(d, a & i != 0),
            Jset64R => jump!(d, a & b != 0),
            Jne64I => jump!(d, a != i),
            Jne64R => jump!(d, a != b),
            Jsgt64I => jump!(d, (a as i64) > (i as i64)),
            Jsgt64R => jump!(d, (a as i64) > (b as i64)),
            Jsge64I => jump!(d, (a as i64) >= (i as i64)),
            Jsge64R => jump!(d, (a as i64) >= (b as i64)),
            Jlt64I => jump!(d, a < i),
            Jlt64R => jump!(d, a < b),
            Jle64I => jump!(d, a <= i),
            Jle64R => jump!(d, a <= b),
            Jslt64I => jump!(d, (a as i64) < (i as i64)),
            Jslt64R => jump!(d, (a as i64) < (b as i64)),
            Jsle64I => jump!(d, (a as i64) <= (i as i64)),
            Jsle64R => jump!(d, (a as i64) <= (b as i64)),
            Jeq32I => jump!(d, a as u32 == i as u32),
            Jeq32R => jump!(d, a as u32 == b as u32),
            Jgt32I => jump!(d, a as u32 > i as u32),
            Jgt32R => jump!(d, a as u32 > b as u32),
            Jge32I => jump!(d, a as u32 >= i as u32),
            Jge32R => jump!(d, a as u32 >= b as u32),
            Jset32I => jump!(d, a as u32 & i as u32 != 0),
            Jset32R => jump!(d, a as u32 & b as u32 != 0),
            Jne32I => jump!(d, a as u32 != i as u32),
            Jne32R => jump!(d, a as u32 != b as u32),
            Jsgt32I => jump!(d, (a as i32) > (i as i32)),
            Jsgt32R => jump!(d, (a as i32) > (b as i32)),
            Jsge32I => jump!(d, (a as i32) >= (i as i32)),
            Jsge32R => jump!(d, (a as i32) >= (b as i32)),
            Jlt32I => jump!(d, (a as u32) < (i as u32)),
            Jlt32R => jump!(d, (a as u32) < (b as u32)),
            Jle32I => jump!(d, a as u32 <= i as u32),
            Jle32R => jump!(d, a as u32 <= b as u32),
            Jslt32I => jump!(d, (a as i32) < (i as i32)),
            Jslt32R => jump!(d, (a as i32) < (b as i32)),
            Jsle32I => jump!(d, (a as i32) <= (i as i32)),
            Jsle32R => jump!(d, (a as i32) <= (b as i32)),
            CallHelper | Callx => {
                let id = if d.op == Callx { a as u32 } else { i as u32 };
                let args = [r[1], r[2], r[3], r[4], r[5]];
                r[0] = call_helper(env, host, id, args).map_err(|source| VmError::Helper {
                    pc: pc - 1,
                    id,
                    source,
                })?;
            }
            CallKfunc => {
                let id = i as u32;
                let args = [r[1], r[2], r[3], r[4], r[5]];
                r[0] = host.kfunc(id, args, env).map_err(|source| VmError::Kfunc {
                    pc: pc - 1,
                    id,
                    source,
                })?;
            }
            CallLocal => {
                // Frame 0 is the main program; `depth` counts callee frames.
                if depth + 1 >= MAX_FRAMES {
                    return Err(VmError::CallDepth { pc: pc - 1 });
                }
                left -= i as i64;
                if left < 0 {
                    return Err(VmError::Budget { pc: pc - 1, budget });
                }
                frames[depth] = Frame {
                    ret: pc,
                    saved: [r[6], r[7], r[8], r[9]],
                };
                depth += 1;
                r[10] = env.mem.frame_pointer(depth);
                pc = d.off as usize;
            }
            Exit => {
                if depth == 0 {
                    return Ok(r[0]);
                }
                depth -= 1;
                let f = frames[depth];
                r[6..10].copy_from_slice(&f.saved);
                r[10] = env.mem.frame_pointer(depth);
                pc = f.ret;
            }
            Hole | FellOff => return Err(VmError::FellOff { pc: pc - 1 }),
        }
    }
}

/// New memory value and the register that receives the old value, if any.
#[inline]
fn atomic(
    aop: i32,
    old: u64,
    src_val: u64,
    r0: u64,
    wide: bool,
    src: usize,
) -> (u64, Option<usize>) {
    use bpfoom_insn::opcode::*;
    let mask = if wide { u64::MAX } else { u32::MAX as u64 };
    let fetch = if aop & BPF_FETCH != 0 {
        Some(src)
    } else {
        None
    };
    match aop {
        BPF_XCHG => (src_val, Some(src)),
        BPF_CMPXCHG => (
            if (old & mask) == (r0 & mask) {
                src_val
            } else {
                old
            },
            Some(0),
        ),
        _ => {
            let v = match (aop & !BPF_FETCH) as u8 {
                BPF_ADD => old.wrapping_add(src_val),
                BPF_OR => old | src_val,
                BPF_AND => old & src_val,
                _ => old ^ src_val,
            };
            (v & mask, fetch)
        }
    }
}
