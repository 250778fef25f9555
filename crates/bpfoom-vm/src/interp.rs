//! Threaded execution of pre-decoded instructions.
//!
//! Every operation is its own handler function, stored next to its decoded
//! instruction. A straight-line handler ends by calling the next
//! instruction's handler in tail position, which the optimiser turns into an
//! indirect jump: each handler then has its own dispatch branch, which the CPU
//! predicts better than the single branch of a `match` loop (1.4x to 1.5x
//! faster than the `match` loop it replaced on ALU code; see `crates/bpfoom-vm/BENCH.md`).
//! Jumps, calls, exits and every 32nd instruction return to the driver loop
//! instead, so the native stack depth stays bounded even where no tail call
//! is made (debug builds).

use crate::decode::{Op, D};
use crate::mem::MAX_FRAMES;
use crate::{helpers, CallError, CallHandler, Env, VmError};

/// A caller's state saved by a local call.
#[derive(Clone, Copy, Default)]
pub(crate) struct Frame {
    ret: usize,
    saved: [u64; 4],
}

/// Helper dispatch: the host first, then the VM's built-ins.
#[inline(never)]
pub(crate) fn call_helper(
    env: &mut Env,
    host: &mut dyn CallHandler,
    id: u32,
    args: [u64; 5],
) -> Result<u64, CallError> {
    match host.helper(id, args, env) {
        Err(CallError::Unsupported) => {
            helpers::call(env, id, args).unwrap_or(Err(CallError::Unsupported))
        }
        other => other,
    }
}

/// Executes an atomic instruction on `[addr, addr+len)`; returns the old value
/// and the register that receives it, if any.
#[inline(never)]
pub(crate) fn exec_atomic(
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

/// A handler: runs the instruction `t` at `pc` (and possibly its successors)
/// and returns the next index for the driver, or [`STOP`]. The caller has
/// already bounds-checked `pc` to fetch `t`, so the handler need not.
pub(crate) type Handler = for<'a, 'b> fn(&'b mut Cpu<'a>, usize, &'a Threaded) -> usize;

/// Returned by a handler when the run is over (result in `r0` or `err`).
const STOP: usize = usize::MAX;

/// Straight-line chains return to the driver at multiples of this index.
const CHAIN: usize = 32;

/// A decoded instruction with its handler.
#[derive(Clone, Copy)]
pub(crate) struct Threaded {
    h: Handler,
    d: D,
}

/// Pairs decoded instructions with their handlers.
pub(crate) fn thread(code: Vec<D>) -> Vec<Threaded> {
    code.into_iter()
        .map(|d| Threaded {
            h: handler(d.op),
            d,
        })
        .collect()
}

/// Execution state shared by the handlers of one run.
pub(crate) struct Cpu<'a> {
    r: [u64; 16],
    code: &'a [Threaded],
    env: &'a mut Env,
    host: &'a mut dyn CallHandler,
    /// Instructions executed before the current straight-line run, counted
    /// when control leaves a run (taken jump, call, exit, fault) rather than
    /// per instruction. `ld_imm64` spans two slots and subtracts one itself.
    count: u64,
    /// First slot of the current straight-line run.
    start: usize,
    budget: u64,
    err: Option<VmError>,
}

impl Cpu<'_> {
    /// Control leaves the current run before slot `end` and resumes at `to`.
    #[inline(always)]
    fn leave(&mut self, end: usize, to: usize) {
        self.count = self.count.wrapping_add(end.wrapping_sub(self.start) as u64);
        self.start = to;
    }

    /// Stops the run with `e`, raised by the instruction at `pc` (counted).
    #[cold]
    fn fail(&mut self, pc: usize, e: VmError) -> usize {
        self.leave(pc + 1, pc + 1);
        self.fail_counted(e)
    }

    /// Stops the run with `e`; the count is already settled.
    #[cold]
    fn fail_counted(&mut self, e: VmError) -> usize {
        self.err = Some(e);
        STOP
    }

    /// Budget check at a back-edge or call: only there can execution revisit
    /// code, so the count exceeds the budget by at most a few straight runs.
    #[inline(always)]
    fn over_budget(&mut self, pc: usize) -> Option<usize> {
        (self.count > self.budget).then(|| {
            self.fail_counted(VmError::Budget {
                pc,
                budget: self.budget,
            })
        })
    }

    /// A taken jump from `pc` to `t`.
    #[inline(always)]
    fn jump(&mut self, pc: usize, t: usize) -> usize {
        self.leave(pc + 1, t);
        if t <= pc {
            if let Some(stop) = self.over_budget(pc) {
                return stop;
            }
        }
        t
    }
}

/// Returned by `Exit` when a callback's frame returns to `bpf_loop`.
const RET_TO_LOOP: usize = usize::MAX - 1;

/// `bpf_loop(nr_loops, callback_fn, callback_ctx, flags)` at `pc`, as Linux
/// runs it: `-EINVAL` for flags, `-E2BIG` above `BPF_MAX_LOOPS`, otherwise
/// `callback_fn(i, callback_ctx)` for i = 0.. until it returns non-zero
/// (result i + 1) or nr_loops calls are made (result nr_loops). Each call is
/// a bpf-to-bpf call in a new frame (so it counts toward the frame limit),
/// and the budget is checked before each, as at any other call.
fn loop_call(c: &mut Cpu<'_>, pc: usize) -> usize {
    let (nr, func, ctx, flags) = (c.r[1] as u32 as u64, c.r[2], c.r[3], c.r[4]);
    let errno = |e: i32| (-i64::from(e)) as u64;
    if flags != 0 {
        c.r[0] = errno(libc::EINVAL);
        return next(c, pc + 1);
    }
    if nr > helpers::MAX_LOOPS {
        c.r[0] = errno(libc::E2BIG);
        return next(c, pc + 1);
    }
    let code = c.code;
    let entry = helpers::func_of_handle(func)
        .filter(|&t| t < code.len() && !matches!(code[t].d.op, Op::Hole | Op::FellOff));
    let Some(entry) = entry else {
        let source = CallError::BadArgument(format!("{func:#x} is not a function"));
        return c.fail(
            pc,
            VmError::Helper {
                pc,
                id: helpers::ids::LOOP,
                source,
            },
        );
    };
    c.leave(pc + 1, entry);
    let mut i = 0;
    while i < nr {
        if c.env.frames.len() + 1 >= MAX_FRAMES {
            return c.fail_counted(VmError::CallDepth { pc });
        }
        if let Some(stop) = c.over_budget(pc) {
            return stop;
        }
        let r = &c.r;
        c.env.frames.push(Frame {
            ret: RET_TO_LOOP,
            saved: [r[6], r[7], r[8], r[9]],
        });
        c.r[10] = c.env.mem.frame_pointer(c.env.frames.len());
        c.r[1] = i;
        c.r[2] = ctx;
        c.start = entry;
        let mut p = entry;
        loop {
            let t = &code[p];
            p = (t.h)(c, p, t);
            if p == STOP {
                return STOP;
            }
            if p == RET_TO_LOOP {
                break;
            }
        }
        i += 1;
        if c.r[0] != 0 {
            break;
        }
    }
    c.r[0] = i;
    c.start = pc + 1;
    next(c, pc + 1)
}

/// Continues with the instruction at `pc`: a tail call, or back to the driver.
#[inline(always)]
fn next(c: &mut Cpu<'_>, pc: usize) -> usize {
    if pc.is_multiple_of(CHAIN) {
        return pc;
    }
    let code = c.code;
    let t = &code[pc];
    (t.h)(c, pc, t)
}

/// Forwards to a possibly unsized host through a sized value, so handlers
/// can hold it as `&mut dyn CallHandler`.
pub(crate) struct DynHandler<'h, H: ?Sized>(pub(crate) &'h mut H);

impl<H: CallHandler + ?Sized> CallHandler for DynHandler<'_, H> {
    fn helper(&mut self, id: u32, args: [u64; 5], env: &mut Env) -> Result<u64, CallError> {
        self.0.helper(id, args, env)
    }
    fn kfunc(&mut self, id: u32, args: [u64; 5], env: &mut Env) -> Result<u64, CallError> {
        self.0.kfunc(id, args, env)
    }
}

/// Executes `code` from index 0 with `r1..r5 = args`.
pub(crate) fn exec<H: CallHandler + ?Sized>(
    code: &[Threaded],
    env: &mut Env,
    host: &mut H,
    args: [u64; 5],
    budget: u64,
) -> (Result<u64, VmError>, u64) {
    let mut host = DynHandler(host);
    // Reused across runs so a run allocates and zeroes nothing.
    env.frames.clear();
    let mut r = [0u64; 16];
    r[1..6].copy_from_slice(&args);
    r[10] = env.mem.frame_pointer(0);
    let mut c = Cpu {
        r,
        code,
        env,
        host: &mut host,
        count: 0,
        start: 0,
        budget,
        err: None,
    };
    let mut pc = 0;
    loop {
        let code = c.code;
        let t = &code[pc];
        pc = (t.h)(&mut c, pc, t);
        if pc == STOP {
            let r = match c.err.take() {
                Some(e) => Err(e),
                None => Ok(c.r[0]),
            };
            return (r, c.count);
        }
    }
}

macro_rules! alu {
    ($name:ident, |$a:tt, $b:tt, $i:tt| $e:expr) => {
        pub(super) fn $name<'a>(c: &mut Cpu<'a>, pc: usize, t: &'a Threaded) -> usize {
            let d = t.d;
            let dst = (d.dst & 15) as usize;
            let ($a, $b, $i) = (c.r[dst], c.r[(d.src & 15) as usize], d.imm);
            c.r[dst] = $e;
            next(c, pc + 1)
        }
    };
}

macro_rules! jmp {
    ($name:ident, |$a:tt, $b:tt, $i:tt| $e:expr) => {
        pub(super) fn $name<'a>(c: &mut Cpu<'a>, pc: usize, t: &'a Threaded) -> usize {
            let d = t.d;
            let ($a, $b, $i) = (c.r[(d.dst & 15) as usize], c.r[(d.src & 15) as usize], d.imm);
            if $e {
                c.jump(pc, d.off as usize)
            } else {
                next(c, pc + 1)
            }
        }
    };
}

macro_rules! load {
    ($name:ident, $ty:ty, |$v:ident| $e:expr) => {
        pub(super) fn $name<'a>(c: &mut Cpu<'a>, pc: usize, t: &'a Threaded) -> usize {
            let d = t.d;
            let a = c.r[(d.src & 15) as usize].wrapping_add(d.off as i64 as u64);
            let Some(p) = c.env.mem.fast(a, size_of::<$ty>() as u64, false) else {
                return slow_access(c, pc, a, size_of::<$ty>() as u64, false);
            };
            // SAFETY: `fast` checked that `size_of::<$ty>()` bytes at `p` lie
            // inside a live VM-owned allocation; unaligned reads are allowed.
            let $v = unsafe { (p as *const $ty).read_unaligned() };
            c.r[(d.dst & 15) as usize] = $e;
            next(c, pc + 1)
        }
    };
}

macro_rules! store {
    ($name:ident, $ty:ty, |$d:ident, $b:ident| $e:expr) => {
        pub(super) fn $name<'a>(c: &mut Cpu<'a>, pc: usize, t: &'a Threaded) -> usize {
            let $d = t.d;
            let a = c.r[($d.dst & 15) as usize].wrapping_add($d.off as i64 as u64);
            let $b = c.r[($d.src & 15) as usize];
            let Some(p) = c.env.mem.fast(a, size_of::<$ty>() as u64, true) else {
                return slow_access(c, pc, a, size_of::<$ty>() as u64, true);
            };
            // SAFETY: `fast` checked that the bytes at `p` lie inside a live,
            // writable VM-owned allocation; unaligned writes are allowed.
            unsafe { (p as *mut $ty).write_unaligned(($e as $ty).to_le()) };
            next(c, pc + 1)
        }
    };
}

/// A load or store that missed the fast region check: search all regions.
/// On success the region is now cached, so re-running the instruction takes
/// the fast path. A fault-safe load that faults reads 0 (the kernel's
/// `BPF_PROBE_MEM`); any other fault stops the run.
#[cold]
#[inline(never)]
fn slow_access(c: &mut Cpu<'_>, pc: usize, addr: u64, len: u64, write: bool) -> usize {
    let code = c.code;
    let t = &code[pc];
    match c.env.mem.translate_slow(addr, len, write) {
        Ok(_) => (t.h)(c, pc, t),
        Err(_) if t.d.probe => {
            c.r[(t.d.dst & 15) as usize] = 0;
            next(c, pc + 1)
        }
        Err(source) => c.fail(pc, VmError::Memory { pc, source }),
    }
}

// Handlers are named after their `Op` variant.
#[allow(non_snake_case)]
mod ops {
    use super::*;

    alu!(Add64I, |a, _, i| a.wrapping_add(i));
    alu!(Add64R, |a, b, _| a.wrapping_add(b));
    alu!(Sub64I, |a, _, i| a.wrapping_sub(i));
    alu!(Sub64R, |a, b, _| a.wrapping_sub(b));
    alu!(Mul64I, |a, _, i| a.wrapping_mul(i));
    alu!(Mul64R, |a, b, _| a.wrapping_mul(b));
    alu!(Div64I, |a, _, i| div64(a, i));
    alu!(Div64R, |a, b, _| div64(a, b));
    alu!(SDiv64I, |a, _, i| sdiv64(a, i));
    alu!(SDiv64R, |a, b, _| sdiv64(a, b));
    alu!(Or64I, |a, _, i| a | i);
    alu!(Or64R, |a, b, _| a | b);
    alu!(And64I, |a, _, i| a & i);
    alu!(And64R, |a, b, _| a & b);
    alu!(Lsh64I, |a, _, i| a.wrapping_shl(i as u32));
    alu!(Lsh64R, |a, b, _| a.wrapping_shl(b as u32));
    alu!(Rsh64I, |a, _, i| a.wrapping_shr(i as u32));
    alu!(Rsh64R, |a, b, _| a.wrapping_shr(b as u32));
    alu!(Neg64, |a, _, _| a.wrapping_neg());
    alu!(Mod64I, |a, _, i| mod64(a, i));
    alu!(Mod64R, |a, b, _| mod64(a, b));
    alu!(SMod64I, |a, _, i| smod64(a, i));
    alu!(SMod64R, |a, b, _| smod64(a, b));
    alu!(Xor64I, |a, _, i| a ^ i);
    alu!(Xor64R, |a, b, _| a ^ b);
    alu!(Mov64I, |_, _, i| i);
    alu!(Mov64R, |_, b, _| b);
    alu!(Arsh64I, |a, _, i| (a as i64).wrapping_shr(i as u32) as u64);
    alu!(Arsh64R, |a, b, _| (a as i64).wrapping_shr(b as u32) as u64);
    alu!(Movsx64B, |_, b, _| b as i8 as i64 as u64);
    alu!(Movsx64H, |_, b, _| b as i16 as i64 as u64);
    alu!(Movsx64W, |_, b, _| b as i32 as i64 as u64);
    alu!(Bswap16, |a, _, _| (a as u16).swap_bytes() as u64);
    alu!(Bswap32, |a, _, _| (a as u32).swap_bytes() as u64);
    alu!(Bswap64, |a, _, _| a.swap_bytes());
    alu!(Add32I, |a, _, i| (a as u32).wrapping_add(i as u32) as u64);
    alu!(Add32R, |a, b, _| (a as u32).wrapping_add(b as u32) as u64);
    alu!(Sub32I, |a, _, i| (a as u32).wrapping_sub(i as u32) as u64);
    alu!(Sub32R, |a, b, _| (a as u32).wrapping_sub(b as u32) as u64);
    alu!(Mul32I, |a, _, i| (a as u32).wrapping_mul(i as u32) as u64);
    alu!(Mul32R, |a, b, _| (a as u32).wrapping_mul(b as u32) as u64);
    alu!(Div32I, |a, _, i| div32(a, i));
    alu!(Div32R, |a, b, _| div32(a, b));
    alu!(SDiv32I, |a, _, i| sdiv32(a, i));
    alu!(SDiv32R, |a, b, _| sdiv32(a, b));
    alu!(Or32I, |a, _, i| (a as u32 | i as u32) as u64);
    alu!(Or32R, |a, b, _| (a as u32 | b as u32) as u64);
    alu!(And32I, |a, _, i| (a as u32 & i as u32) as u64);
    alu!(And32R, |a, b, _| (a as u32 & b as u32) as u64);
    alu!(Lsh32I, |a, _, i| (a as u32).wrapping_shl(i as u32) as u64);
    alu!(Lsh32R, |a, b, _| (a as u32).wrapping_shl(b as u32) as u64);
    alu!(Rsh32I, |a, _, i| (a as u32).wrapping_shr(i as u32) as u64);
    alu!(Rsh32R, |a, b, _| (a as u32).wrapping_shr(b as u32) as u64);
    alu!(Neg32, |a, _, _| (a as u32).wrapping_neg() as u64);
    alu!(Mod32I, |a, _, i| mod32(a, i));
    alu!(Mod32R, |a, b, _| mod32(a, b));
    alu!(SMod32I, |a, _, i| smod32(a, i));
    alu!(SMod32R, |a, b, _| smod32(a, b));
    alu!(Xor32I, |a, _, i| (a as u32 ^ i as u32) as u64);
    alu!(Xor32R, |a, b, _| (a as u32 ^ b as u32) as u64);
    alu!(Mov32I, |_, _, i| i as u32 as u64);
    alu!(Mov32R, |_, b, _| b as u32 as u64);
    alu!(Arsh32I, |a, _, i| (a as i32).wrapping_shr(i as u32) as u32
        as u64);
    alu!(Arsh32R, |a, b, _| (a as i32).wrapping_shr(b as u32) as u32
        as u64);
    alu!(Movsx32B, |_, b, _| b as i8 as i32 as u32 as u64);
    alu!(Movsx32H, |_, b, _| b as i16 as i32 as u32 as u64);
    alu!(Le16, |a, _, _| a as u16 as u64);
    alu!(Le32, |a, _, _| a as u32 as u64);
    alu!(Le64, |a, _, _| a);

    load!(LdxB, u8, |v| v as u64);
    load!(LdxH, u16, |v| u16::from_le(v) as u64);
    load!(LdxW, u32, |v| u32::from_le(v) as u64);
    load!(LdxDW, u64, |v| u64::from_le(v));
    load!(LdxSB, i8, |v| v as i64 as u64);
    load!(LdxSH, i16, |v| i16::from_le(v) as i64 as u64);
    load!(LdxSW, i32, |v| i32::from_le(v) as i64 as u64);
    store!(StB, u8, |d, _b| d.imm);
    store!(StH, u16, |d, _b| d.imm);
    store!(StW, u32, |d, _b| d.imm);
    store!(StDW, u64, |d, _b| d.imm);
    store!(StxB, u8, |_d, b| b);
    store!(StxH, u16, |_d, b| b);
    store!(StxW, u32, |_d, b| b);
    store!(StxDW, u64, |_d, b| b);

    fn atomic_op(c: &mut Cpu<'_>, pc: usize, t: &Threaded, wide: bool) -> usize {
        let d = t.d;
        let src = (d.src & 15) as usize;
        let addr = c.r[(d.dst & 15) as usize].wrapping_add(d.off as i64 as u64);
        match exec_atomic(c.env, addr, wide, d.imm as i32, c.r[src], c.r[0], src) {
            Ok((old, into)) => {
                if let Some(reg) = into {
                    c.r[reg] = old;
                }
                next(c, pc + 1)
            }
            Err(source) => c.fail(pc, VmError::Memory { pc, source }),
        }
    }
    pub(super) fn Atomic32<'a>(c: &mut Cpu<'a>, pc: usize, t: &'a Threaded) -> usize {
        atomic_op(c, pc, t, false)
    }
    pub(super) fn Atomic64<'a>(c: &mut Cpu<'a>, pc: usize, t: &'a Threaded) -> usize {
        atomic_op(c, pc, t, true)
    }

    pub(super) fn Ja<'a>(c: &mut Cpu<'a>, pc: usize, t: &'a Threaded) -> usize {
        let t = t.d.off as usize;
        c.jump(pc, t)
    }
    jmp!(Jeq64I, |a, _, i| a == i);
    jmp!(Jeq64R, |a, b, _| a == b);
    jmp!(Jgt64I, |a, _, i| a > i);
    jmp!(Jgt64R, |a, b, _| a > b);
    jmp!(Jge64I, |a, _, i| a >= i);
    jmp!(Jge64R, |a, b, _| a >= b);
    jmp!(Jset64I, |a, _, i| a & i != 0);
    jmp!(Jset64R, |a, b, _| a & b != 0);
    jmp!(Jne64I, |a, _, i| a != i);
    jmp!(Jne64R, |a, b, _| a != b);
    jmp!(Jsgt64I, |a, _, i| (a as i64) > (i as i64));
    jmp!(Jsgt64R, |a, b, _| (a as i64) > (b as i64));
    jmp!(Jsge64I, |a, _, i| (a as i64) >= (i as i64));
    jmp!(Jsge64R, |a, b, _| (a as i64) >= (b as i64));
    jmp!(Jlt64I, |a, _, i| a < i);
    jmp!(Jlt64R, |a, b, _| a < b);
    jmp!(Jle64I, |a, _, i| a <= i);
    jmp!(Jle64R, |a, b, _| a <= b);
    jmp!(Jslt64I, |a, _, i| (a as i64) < (i as i64));
    jmp!(Jslt64R, |a, b, _| (a as i64) < (b as i64));
    jmp!(Jsle64I, |a, _, i| (a as i64) <= (i as i64));
    jmp!(Jsle64R, |a, b, _| (a as i64) <= (b as i64));
    jmp!(Jeq32I, |a, _, i| a as u32 == i as u32);
    jmp!(Jeq32R, |a, b, _| a as u32 == b as u32);
    jmp!(Jgt32I, |a, _, i| a as u32 > i as u32);
    jmp!(Jgt32R, |a, b, _| a as u32 > b as u32);
    jmp!(Jge32I, |a, _, i| a as u32 >= i as u32);
    jmp!(Jge32R, |a, b, _| a as u32 >= b as u32);
    jmp!(Jset32I, |a, _, i| a as u32 & i as u32 != 0);
    jmp!(Jset32R, |a, b, _| a as u32 & b as u32 != 0);
    jmp!(Jne32I, |a, _, i| a as u32 != i as u32);
    jmp!(Jne32R, |a, b, _| a as u32 != b as u32);
    jmp!(Jsgt32I, |a, _, i| (a as i32) > (i as i32));
    jmp!(Jsgt32R, |a, b, _| (a as i32) > (b as i32));
    jmp!(Jsge32I, |a, _, i| (a as i32) >= (i as i32));
    jmp!(Jsge32R, |a, b, _| (a as i32) >= (b as i32));
    jmp!(Jlt32I, |a, _, i| (a as u32) < (i as u32));
    jmp!(Jlt32R, |a, b, _| (a as u32) < (b as u32));
    jmp!(Jle32I, |a, _, i| a as u32 <= i as u32);
    jmp!(Jle32R, |a, b, _| a as u32 <= b as u32);
    jmp!(Jslt32I, |a, _, i| (a as i32) < (i as i32));
    jmp!(Jslt32R, |a, b, _| (a as i32) < (b as i32));
    jmp!(Jsle32I, |a, _, i| (a as i32) <= (i as i32));
    jmp!(Jsle32R, |a, b, _| (a as i32) <= (b as i32));

    pub(super) fn LdDw<'a>(c: &mut Cpu<'a>, pc: usize, t: &'a Threaded) -> usize {
        let d = t.d;
        c.r[(d.dst & 15) as usize] = d.imm;
        // Two slots, one instruction.
        c.count = c.count.wrapping_sub(1);
        next(c, pc + 2)
    }

    fn helper_call(c: &mut Cpu<'_>, pc: usize, id: u32) -> usize {
        if id == helpers::ids::LOOP {
            return loop_call(c, pc);
        }
        let args = [c.r[1], c.r[2], c.r[3], c.r[4], c.r[5]];
        match call_helper(c.env, c.host, id, args) {
            Ok(v) => {
                c.r[0] = v;
                next(c, pc + 1)
            }
            Err(source) => c.fail(pc, VmError::Helper { pc, id, source }),
        }
    }
    pub(super) fn CallHelper<'a>(c: &mut Cpu<'a>, pc: usize, t: &'a Threaded) -> usize {
        let id = t.d.imm as u32;
        helper_call(c, pc, id)
    }
    pub(super) fn Callx<'a>(c: &mut Cpu<'a>, pc: usize, t: &'a Threaded) -> usize {
        let id = c.r[(t.d.dst & 15) as usize] as u32;
        helper_call(c, pc, id)
    }
    pub(super) fn CallKfunc<'a>(c: &mut Cpu<'a>, pc: usize, t: &'a Threaded) -> usize {
        let id = t.d.imm as u32;
        let args = [c.r[1], c.r[2], c.r[3], c.r[4], c.r[5]];
        match c.host.kfunc(id, args, c.env) {
            Ok(v) => {
                c.r[0] = v;
                next(c, pc + 1)
            }
            Err(source) => c.fail(pc, VmError::Kfunc { pc, id, source }),
        }
    }
    pub(super) fn CallLocal<'a>(c: &mut Cpu<'a>, pc: usize, t: &'a Threaded) -> usize {
        let d = t.d;
        // Frame 0 is the main program; `frames` holds the callers of the rest.
        if c.env.frames.len() + 1 >= MAX_FRAMES {
            return c.fail(pc, VmError::CallDepth { pc });
        }
        c.leave(pc + 1, d.off as usize);
        if let Some(stop) = c.over_budget(pc) {
            return stop;
        }
        let r = &c.r;
        c.env.frames.push(Frame {
            ret: pc + 1,
            saved: [r[6], r[7], r[8], r[9]],
        });
        c.r[10] = c.env.mem.frame_pointer(c.env.frames.len());
        d.off as usize
    }
    pub(super) fn Exit<'a>(c: &mut Cpu<'a>, pc: usize, _t: &'a Threaded) -> usize {
        let Some(f) = c.env.frames.pop() else {
            c.leave(pc + 1, pc + 1);
            return STOP;
        };
        c.leave(pc + 1, f.ret);
        c.r[6..10].copy_from_slice(&f.saved);
        c.r[10] = c.env.mem.frame_pointer(c.env.frames.len());
        f.ret
    }
    // Neither is an instruction, so neither is counted.
    pub(super) fn Hole<'a>(c: &mut Cpu<'a>, pc: usize, _t: &'a Threaded) -> usize {
        c.leave(pc, pc);
        c.fail_counted(VmError::FellOff { pc })
    }
    pub(super) fn FellOff<'a>(c: &mut Cpu<'a>, pc: usize, _t: &'a Threaded) -> usize {
        c.leave(pc, pc);
        c.fail_counted(VmError::FellOff { pc })
    }
}

macro_rules! handler_of {
    ($($op:ident),* $(,)?) => {
        fn handler(op: Op) -> Handler {
            match op {
                $(Op::$op => ops::$op,)*
            }
        }
    };
}

handler_of!(
    Add64I, Add64R, Sub64I, Sub64R, Mul64I, Mul64R, Div64I, Div64R, SDiv64I, SDiv64R, Or64I, Or64R,
    And64I, And64R, Lsh64I, Lsh64R, Rsh64I, Rsh64R, Neg64, Mod64I, Mod64R, SMod64I, SMod64R,
    Xor64I, Xor64R, Mov64I, Mov64R, Arsh64I, Arsh64R, Movsx64B, Movsx64H, Movsx64W, Bswap16,
    Bswap32, Bswap64, Add32I, Add32R, Sub32I, Sub32R, Mul32I, Mul32R, Div32I, Div32R, SDiv32I,
    SDiv32R, Or32I, Or32R, And32I, And32R, Lsh32I, Lsh32R, Rsh32I, Rsh32R, Neg32, Mod32I, Mod32R,
    SMod32I, SMod32R, Xor32I, Xor32R, Mov32I, Mov32R, Arsh32I, Arsh32R, Movsx32B, Movsx32H, Le16,
    Le32, Le64, LdxB, LdxH, LdxW, LdxDW, LdxSB, LdxSH, LdxSW, StB, StH, StW, StDW, StxB, StxH,
    StxW, StxDW, Atomic32, Atomic64, Ja, Jeq64I, Jeq64R, Jgt64I, Jgt64R, Jge64I, Jge64R, Jset64I,
    Jset64R, Jne64I, Jne64R, Jsgt64I, Jsgt64R, Jsge64I, Jsge64R, Jlt64I, Jlt64R, Jle64I, Jle64R,
    Jslt64I, Jslt64R, Jsle64I, Jsle64R, Jeq32I, Jeq32R, Jgt32I, Jgt32R, Jge32I, Jge32R, Jset32I,
    Jset32R, Jne32I, Jne32R, Jsgt32I, Jsgt32R, Jsge32I, Jsge32R, Jlt32I, Jlt32R, Jle32I, Jle32R,
    Jslt32I, Jslt32R, Jsle32I, Jsle32R, LdDw, CallHelper, CallKfunc, CallLocal, Callx, Exit, Hole,
    FellOff,
);

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
