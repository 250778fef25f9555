//! A Cranelift JIT for decoded programs (cargo feature `jit`).
//!
//! One native function per program, with the interpreter's semantics:
//!
//! * eBPF registers are Cranelift variables (machine registers after
//!   register allocation); bpf-to-bpf calls stay inside the function: a call
//!   saves its return site and r6-r9 in [`Ctx::frames`] and jumps, and `exit`
//!   in a subprogram restores them and dispatches on the return site through
//!   a jump table. This handles any control flow the decoder accepts.
//! * Every load and store is checked: inline against the stack and against
//!   the memory's last-hit region (read through a pointer, so the cache is
//!   shared with the Rust slow path), otherwise through [`mem_slow`], which
//!   searches every region, caches the hit and reports a fault. Fault-safe
//!   (`PROBE_MEM`) loads write 0 when it finds nothing.
//! * Helpers and kfuncs go through [`host_call`], atomics through
//!   [`atomic`]: `extern "C"` trampolines into the same Rust code the
//!   interpreter uses. A panic in the host is caught there and resumed after
//!   the generated code returned, never unwound through it.
//! * The executed-instruction count lives in a register, increased by the
//!   (compile-time) length of each straight-line run when control leaves it;
//!   the budget is checked against it at back-edges and local calls, like
//!   the interpreter, so both stop at the same instruction with the same count.
//! * Division and modulo by zero and `INT_MIN / -1` are selected around,
//!   never trapped.
//!
//! This is the crate's only module that runs generated code; its `unsafe`
//! blocks are the call into it, the trampolines' access to the run's
//! context, and releasing the code memory.

use std::any::Any;
use std::mem::offset_of;
use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};

use cranelift_codegen::ir::condcodes::IntCC;
use cranelift_codegen::ir::types::{I16, I32, I64, I8};
use cranelift_codegen::ir::{
    AbiParam, Block, BlockArg, InstBuilder, JumpTableData, MemFlagsData, SigRef, Type, Value,
};
use cranelift_codegen::settings::{self, Configurable};
use cranelift_codegen::Context;
use cranelift_frontend::{FunctionBuilder, FunctionBuilderContext, Variable};
use cranelift_jit::{JITBuilder, JITModule};
use cranelift_module::{default_libcall_names, Module};

use crate::decode::{is_cond_jump, Op, D};
use crate::interp::{call_helper, exec_atomic, DynHandler};
use crate::mem::{region_layout, Memory, MAX_FRAMES, STACK_FRAME_SIZE};
use crate::{CallHandler, Env, VmError};

/// Run status left in [`Ctx::status`] by generated code or a trampoline.
const OK: u64 = 0;
/// The error is in [`Ctx::err`] (or a host panic in [`Ctx::panic`]).
const ERR_SET: u64 = 1;
const ERR_BUDGET: u64 = 2;
const ERR_CALL_DEPTH: u64 = 3;
const ERR_FELL_OFF: u64 = 4;

/// Words per saved frame: return site, r6, r7, r8, r9.
const FRAME_WORDS: usize = 5;

/// The state of one run. Generated code reads and writes the fields up to
/// `frames` at fixed offsets; the rest is only touched by Rust.
#[repr(C)]
struct Ctx<'a> {
    /// The memory's last-hit [`crate::mem::Region`].
    hot: *const u8,
    budget: u64,
    count: u64,
    status: u64,
    pc: u64,
    args: [u64; 5],
    frames: [[u64; FRAME_WORDS]; MAX_FRAMES],
    env: *mut Env,
    host: &'a mut dyn CallHandler,
    err: Option<VmError>,
    panic: Option<Box<dyn Any + Send>>,
}

fn field(off: usize) -> i32 {
    off as i32
}

/// A compiled program: its own code memory and entry point.
pub(crate) struct Compiled {
    module: Option<JITModule>,
    entry: *const u8,
}

// SAFETY: the code memory is owned by this value, immutable once finalized
// and not tied to the thread that created it; it is only run through
// `&mut Vm`, never from two threads at once.
unsafe impl Send for Compiled {}

impl Drop for Compiled {
    fn drop(&mut self) {
        if let Some(m) = self.module.take() {
            // SAFETY: `entry` is the only pointer into this memory and it
            // dies with `self`; no run can be in progress (runs borrow the VM).
            unsafe { m.free_memory() };
        }
    }
}

/// The code generator of a VM (one module per program, so finalizing a
/// program never touches the others).
pub(crate) struct Jit {
    isa: cranelift_codegen::isa::OwnedTargetIsa,
    ctx: Context,
    fctx: FunctionBuilderContext,
}

impl Jit {
    /// A code generator for the host CPU.
    pub(crate) fn new() -> Result<Self, String> {
        let mut flags = settings::builder();
        for (k, v) in [("opt_level", "speed"), ("is_pic", "false")] {
            flags.set(k, v).map_err(|e| e.to_string())?;
        }
        let isa = cranelift_native::builder()
            .map_err(|e| e.to_string())?
            .finish(settings::Flags::new(flags))
            .map_err(|e| e.to_string())?;
        Ok(Self {
            isa,
            ctx: Context::new(),
            fctx: FunctionBuilderContext::new(),
        })
    }

    /// Compiles decoded `code` for the VM whose memory is `mem`.
    pub(crate) fn compile(&mut self, code: &[D], mem: &Memory) -> Result<Compiled, String> {
        // bpf_loop re-enters BPF code from a helper; only the interpreter's
        // driver can do that. Refused here rather than run wrongly.
        if let Some(pc) = code.iter().position(|d| {
            d.op == crate::decode::Op::CallHelper && d.imm == u64::from(crate::helpers::ids::LOOP)
        }) {
            return Err(format!(
                "instruction {pc}: bpf_loop needs the interpreter (ExecBackend::Interpreter)"
            ));
        }
        let mut module = JITModule::new(JITBuilder::with_isa(
            self.isa.clone(),
            default_libcall_names(),
        ));
        let entry = self.define(&mut module, code, mem);
        match entry {
            Ok(entry) => Ok(Compiled {
                module: Some(module),
                entry,
            }),
            Err(e) => {
                // SAFETY: nothing from this module was handed out.
                unsafe { module.free_memory() };
                Err(e)
            }
        }
    }

    fn define(
        &mut self,
        module: &mut JITModule,
        code: &[D],
        mem: &Memory,
    ) -> Result<*const u8, String> {
        let mut sig = module.make_signature();
        sig.params.push(AbiParam::new(I64));
        sig.returns.push(AbiParam::new(I64));
        let id = module
            .declare_anonymous_function(&sig)
            .map_err(|e| e.to_string())?;
        self.ctx.clear();
        self.ctx.func.signature = sig;
        let call_sig = |n: usize| {
            let mut s = module.make_signature();
            s.params.extend((0..n).map(|_| AbiParam::new(I64)));
            s.returns.push(AbiParam::new(I64));
            s
        };
        let sigs = (call_sig(6), call_sig(9), call_sig(7));
        let mut b = FunctionBuilder::new(&mut self.ctx.func, &mut self.fctx);
        let sigs = (
            b.import_signature(sigs.0),
            b.import_signature(sigs.1),
            b.import_signature(sigs.2),
        );
        build(b, code, mem, sigs, module.isa().frontend_config());
        let r = module
            .define_function(id, &mut self.ctx)
            .map_err(|e| format!("{e:?}"));
        module.clear_context(&mut self.ctx);
        r?;
        module.finalize_definitions().map_err(|e| e.to_string())?;
        Ok(module.get_finalized_function(id))
    }
}

/// Runs a compiled program with `r1..r5 = args`; returns the result and the
/// number of instructions executed.
pub(crate) fn exec<H: CallHandler + ?Sized>(
    c: &Compiled,
    env: &mut Env,
    host: &mut H,
    args: [u64; 5],
    budget: u64,
) -> (Result<u64, VmError>, u64) {
    let mut host = DynHandler(host);
    let env: *mut Env = env;
    let mut ctx = Ctx {
        // SAFETY: `env` comes from a live `&mut Env`; this only takes the
        // address of a field.
        hot: unsafe { (&raw const (*env).mem.hot).cast() },
        budget,
        count: 0,
        status: OK,
        pc: 0,
        args,
        frames: [[0; FRAME_WORDS]; MAX_FRAMES],
        env,
        host: &mut host,
        err: None,
        panic: None,
    };
    // SAFETY: `entry` was produced by `Jit::compile` for this VM (whose
    // memory layout it embeds) with signature `extern "C" fn(*mut Ctx) ->
    // u64`, and its module is alive (it is dropped only with the VM). The
    // generated code only dereferences addresses that passed a region check
    // or came from `mem_slow`, and `ctx` outlives the call.
    let r0 = unsafe {
        let f: unsafe extern "C" fn(*mut Ctx<'_>) -> u64 = std::mem::transmute(c.entry);
        f(&mut ctx)
    };
    if let Some(p) = ctx.panic.take() {
        resume_unwind(p);
    }
    let pc = ctx.pc as usize;
    let r = match ctx.status {
        OK => Ok(r0),
        ERR_BUDGET => Err(VmError::Budget { pc, budget }),
        ERR_CALL_DEPTH => Err(VmError::CallDepth { pc }),
        ERR_FELL_OFF => Err(VmError::FellOff { pc }),
        _ => Err(ctx.err.take().unwrap_or(VmError::FellOff { pc })),
    };
    (r, ctx.count)
}

/// The run's context from the pointer generated code passes.
///
/// # Safety
/// `ctx` must be the pointer `exec` passed to the generated code, which is
/// live and not otherwise borrowed while a trampoline runs.
unsafe fn context<'c, 'a>(ctx: *mut Ctx<'a>) -> (&'c mut Ctx<'a>, &'c mut Env) {
    // SAFETY: guaranteed by the caller; `env` was derived from the run's
    // `&mut Env`, and generated code reads only the hot region through it,
    // never while a trampoline runs.
    unsafe {
        let c = &mut *ctx;
        let env = &mut *c.env;
        (c, env)
    }
}

/// Slow path of a load or store: every region. Returns the host pointer, or
/// 0 after recording a fault (not for a fault-safe load, which reads 0).
extern "C" fn mem_slow(
    ctx: *mut Ctx<'_>,
    addr: u64,
    len: u64,
    write: u64,
    pc: u64,
    probe: u64,
) -> u64 {
    // SAFETY: called only by generated code with its context argument.
    let (c, env) = unsafe { context(ctx) };
    match env.mem.translate_slow(addr, len, write != 0) {
        Ok(p) => p as u64,
        Err(_) if probe != 0 => 0,
        Err(source) => {
            c.err = Some(VmError::Memory {
                pc: pc as usize,
                source,
            });
            c.status = ERR_SET;
            0
        }
    }
}

/// A helper (`kfunc == 0`) or kfunc call.
#[allow(clippy::too_many_arguments)] // the generated code passes r1-r5 in registers
extern "C" fn host_call(
    ctx: *mut Ctx<'_>,
    kfunc: u64,
    id: u64,
    pc: u64,
    a1: u64,
    a2: u64,
    a3: u64,
    a4: u64,
    a5: u64,
) -> u64 {
    // SAFETY: called only by generated code with its context argument.
    let (c, env) = unsafe { context(ctx) };
    let (id, pc, args) = (id as u32, pc as usize, [a1, a2, a3, a4, a5]);
    let host = &mut *c.host;
    let r = catch_unwind(AssertUnwindSafe(|| {
        if kfunc != 0 {
            host.kfunc(id, args, env)
        } else {
            call_helper(env, host, id, args)
        }
    }));
    match r {
        Ok(Ok(v)) => return v,
        Ok(Err(source)) if kfunc != 0 => c.err = Some(VmError::Kfunc { pc, id, source }),
        Ok(Err(source)) => c.err = Some(VmError::Helper { pc, id, source }),
        Err(p) => c.panic = Some(p),
    }
    c.status = ERR_SET;
    0
}

/// An atomic read-modify-write; returns the old value.
extern "C" fn atomic(
    ctx: *mut Ctx<'_>,
    addr: u64,
    wide: u64,
    aop: u64,
    src_val: u64,
    r0: u64,
    pc: u64,
) -> u64 {
    // SAFETY: called only by generated code with its context argument.
    let (c, env) = unsafe { context(ctx) };
    match exec_atomic(env, addr, wide != 0, aop as i32, src_val, r0, 0) {
        Ok((old, _)) => old,
        Err(source) => {
            c.err = Some(VmError::Memory {
                pc: pc as usize,
                source,
            });
            c.status = ERR_SET;
            0
        }
    }
}

/// IR generation for one program.
struct Emit<'a> {
    b: FunctionBuilder<'a>,
    regs: [Variable; 11],
    count: Variable,
    depth: Variable,
    ctx: Value,
    hot: Value,
    budget: Value,
    /// `mem_slow`, `host_call`, `atomic`.
    sigs: (SigRef, SigRef, SigRef),
    stack: (u64, u64, u64),
    stack_top: u64,
}

/// Accesses that cannot trap: the run's context, the region cache, and
/// program accesses after their check. Program accesses may be unaligned.
fn flags() -> MemFlagsData {
    MemFlagsData::new().with_notrap()
}

impl Emit<'_> {
    fn get(&mut self, r: u8) -> Value {
        self.b.use_var(self.regs[(r as usize).min(10)])
    }
    fn set(&mut self, r: u8, v: Value) {
        self.b.def_var(self.regs[(r as usize).min(10)], v);
    }
    fn konst(&mut self, v: u64) -> Value {
        self.b.ins().iconst(I64, v as i64)
    }
    fn ctx_load(&mut self, off: usize) -> Value {
        let ctx = self.ctx;
        self.b.ins().load(I64, flags(), ctx, field(off))
    }
    fn ctx_store(&mut self, off: usize, v: Value) {
        let ctx = self.ctx;
        self.b.ins().store(flags(), v, ctx, field(off));
    }

    /// Adds `k` instructions to the count.
    fn settle(&mut self, k: u64) {
        if k > 0 {
            let c = self.b.use_var(self.count);
            let c = self.b.ins().iadd_imm_s(c, k as i64);
            self.b.def_var(self.count, c);
        }
    }

    /// Ends the run: stores the count (plus `k`) and, unless a trampoline
    /// already recorded the error, the status and pc.
    fn stop(&mut self, status: Option<u64>, pc: usize, k: u64) {
        let c = self.b.use_var(self.count);
        let c = self.b.ins().iadd_imm_s(c, k as i64);
        self.ctx_store(offset_of!(Ctx<'static>, count), c);
        if let Some(s) = status {
            let s = self.konst(s);
            self.ctx_store(offset_of!(Ctx<'static>, status), s);
            let p = self.konst(pc as u64);
            self.ctx_store(offset_of!(Ctx<'static>, pc), p);
        }
        let zero = self.konst(0);
        self.b.ins().return_(&[zero]);
    }

    /// Branches to a stop when `bad` holds, else continues in a new block.
    fn stop_if(&mut self, bad: Value, status: Option<u64>, pc: usize, k: u64) {
        let (err, ok) = (self.b.create_block(), self.b.create_block());
        self.b.set_cold_block(err);
        self.b.ins().brif(bad, err, &[], ok, &[]);
        self.b.switch_to_block(err);
        self.stop(status, pc, k);
        self.b.switch_to_block(ok);
    }

    /// Stops when a trampoline reported an error.
    fn check_status(&mut self, pc: usize, k: u64) {
        let s = self.ctx_load(offset_of!(Ctx<'static>, status));
        self.stop_if(s, None, pc, k);
    }

    fn budget_check(&mut self, pc: usize) {
        let c = self.b.use_var(self.count);
        let over = self
            .b
            .ins()
            .icmp(IntCC::UnsignedGreaterThan, c, self.budget);
        self.stop_if(over, Some(ERR_BUDGET), pc, 0);
    }

    fn call(&mut self, sig: SigRef, f: usize, args: &[Value]) -> Value {
        let f = self.konst(f as u64);
        let inst = self.b.ins().call_indirect(sig, f, args);
        self.b.inst_results(inst)[0]
    }

    /// Checks `[addr, addr+size)` and returns the block (with the host
    /// pointer as its parameter) where the access happens, and the block
    /// after it. A fault-safe load that faults sets `probe_dst` to 0 and
    /// goes straight to the block after.
    fn access(
        &mut self,
        pc: usize,
        k: u64,
        addr: Value,
        size: u64,
        write: bool,
        probe_dst: Option<u8>,
    ) -> (Block, Value, Block) {
        let b = &mut self.b;
        let (at, hot_blk, slow, fail, cont) = (
            b.create_block(),
            b.create_block(),
            b.create_block(),
            b.create_block(),
            b.create_block(),
        );
        let p = b.append_block_param(at, I64);
        b.set_cold_block(slow);
        b.set_cold_block(fail);
        // The stack: a constant range; 4 KiB, so `len - size` cannot wrap.
        let (start, len, base) = self.stack;
        let o = b.ins().iadd_imm_s(addr, start.wrapping_neg() as i64);
        let inside = b
            .ins()
            .icmp_imm_s(IntCC::UnsignedLessThanOrEqual, o, (len - size) as i64);
        let sp = b.ins().iadd_imm_s(o, base as i64);
        b.ins()
            .brif(inside, at, &[BlockArg::Value(sp)], hot_blk, &[]);
        // The last-hit region.
        b.switch_to_block(hot_blk);
        let hot = self.hot;
        let hs = b.ins().load(I64, flags(), hot, region_layout::START);
        let hl = b.ins().load(I64, flags(), hot, region_layout::LEN);
        let o = b.ins().isub(addr, hs);
        let c1 = b.ins().icmp(IntCC::UnsignedLessThan, o, hl);
        let rest = b.ins().isub(hl, o);
        let c2 = b
            .ins()
            .icmp_imm_s(IntCC::UnsignedGreaterThanOrEqual, rest, size as i64);
        let mut fits = b.ins().band(c1, c2);
        if write {
            let w = b.ins().load(I8, flags(), hot, region_layout::WRITABLE);
            let w = b.ins().icmp_imm_s(IntCC::NotEqual, w, 0);
            fits = b.ins().band(fits, w);
        }
        let hb = b.ins().load(I64, flags(), hot, region_layout::BASE);
        let hp = b.ins().iadd(hb, o);
        b.ins().brif(fits, at, &[BlockArg::Value(hp)], slow, &[]);
        // Everything else, in Rust.
        b.switch_to_block(slow);
        let args = [
            self.ctx,
            addr,
            self.konst(size),
            self.konst(write as u64),
            self.konst(pc as u64),
            self.konst(probe_dst.is_some() as u64),
        ];
        let sp = self.call(self.sigs.0, mem_slow as *const () as usize, &args);
        self.b.ins().brif(sp, at, &[BlockArg::Value(sp)], fail, &[]);
        self.b.switch_to_block(fail);
        match probe_dst {
            Some(dst) => {
                let zero = self.konst(0);
                self.set(dst, zero);
                self.b.ins().jump(cont, &[]);
            }
            None => self.stop(None, pc, k),
        }
        self.b.switch_to_block(at);
        (at, p, cont)
    }

    fn load(&mut self, pc: usize, k: u64, d: &D, ty: Type, signed: bool) {
        let a = self.get(d.src);
        let addr = self.b.ins().iadd_imm_s(a, d.off as i64);
        let probe = d.probe.then_some(d.dst);
        let (_, p, cont) = self.access(pc, k, addr, ty.bytes() as u64, false, probe);
        let v = self.b.ins().load(ty, flags(), p, 0);
        let v = match (ty == I64, signed) {
            (true, _) => v,
            (false, true) => self.b.ins().sextend(I64, v),
            (false, false) => self.b.ins().uextend(I64, v),
        };
        self.set(d.dst, v);
        self.b.ins().jump(cont, &[]);
        self.b.switch_to_block(cont);
    }

    fn store(&mut self, pc: usize, k: u64, d: &D, ty: Type, v: Value) {
        let a = self.get(d.dst);
        let addr = self.b.ins().iadd_imm_s(a, d.off as i64);
        let (_, p, cont) = self.access(pc, k, addr, ty.bytes() as u64, true, None);
        let v = if ty == I64 {
            v
        } else {
            self.b.ins().ireduce(ty, v)
        };
        self.b.ins().store(flags(), v, p, 0);
        self.b.ins().jump(cont, &[]);
        self.b.switch_to_block(cont);
    }

    /// `a / b` or `a % b` at width `ty`, with Linux's results for a zero
    /// divisor and `MIN / -1` (which would trap in hardware).
    fn divide(&mut self, ty: Type, a: Value, b: Value, signed: bool, rem: bool) -> Value {
        let ins = self.b.ins();
        let zero = ins.icmp_imm_s(IntCC::Equal, b, 0);
        let one = self.b.ins().iconst(ty, 1);
        if !signed {
            let safe = self.b.ins().select(zero, one, b);
            return if rem {
                let r = self.b.ins().urem(a, safe);
                self.b.ins().select(zero, a, r)
            } else {
                let q = self.b.ins().udiv(a, safe);
                let z = self.b.ins().iconst(ty, 0);
                self.b.ins().select(zero, z, q)
            };
        }
        let minus1 = self.b.ins().icmp_imm_s(IntCC::Equal, b, -1);
        let special = self.b.ins().bor(zero, minus1);
        let safe = self.b.ins().select(special, one, b);
        let z = self.b.ins().iconst(ty, 0);
        if rem {
            // x % -1 == 0; x % 0 == x.
            let r = self.b.ins().srem(a, safe);
            let r = self.b.ins().select(minus1, z, r);
            self.b.ins().select(zero, a, r)
        } else {
            // x / -1 == -x (wrapping); x / 0 == 0.
            let q = self.b.ins().sdiv(a, safe);
            let neg = self.b.ins().ineg(a);
            let q = self.b.ins().select(minus1, neg, q);
            self.b.ins().select(zero, z, q)
        }
    }

    /// An ALU operation; `None` when `op` is not one.
    fn alu(&mut self, d: &D) -> Option<Value> {
        use Op::*;
        let (a, reg_b) = (self.get(d.dst), self.get(d.src));
        let imm = self.konst(d.imm);
        let is_r = matches!(
            d.op,
            Add64R
                | Sub64R
                | Mul64R
                | Div64R
                | SDiv64R
                | Or64R
                | And64R
                | Lsh64R
                | Rsh64R
                | Mod64R
                | SMod64R
                | Xor64R
                | Mov64R
                | Arsh64R
                | Add32R
                | Sub32R
                | Mul32R
                | Div32R
                | SDiv32R
                | Or32R
                | And32R
                | Lsh32R
                | Rsh32R
                | Mod32R
                | SMod32R
                | Xor32R
                | Mov32R
                | Arsh32R
        );
        let bv = if is_r { reg_b } else { imm };
        let i = self.b.ins();
        Some(match d.op {
            Add64I | Add64R => i.iadd(a, bv),
            Sub64I | Sub64R => i.isub(a, bv),
            Mul64I | Mul64R => i.imul(a, bv),
            Div64I | Div64R => self.divide(I64, a, bv, false, false),
            SDiv64I | SDiv64R => self.divide(I64, a, bv, true, false),
            Mod64I | Mod64R => self.divide(I64, a, bv, false, true),
            SMod64I | SMod64R => self.divide(I64, a, bv, true, true),
            Or64I | Or64R => i.bor(a, bv),
            And64I | And64R => i.band(a, bv),
            Xor64I | Xor64R => i.bxor(a, bv),
            Lsh64I | Lsh64R => i.ishl(a, bv),
            Rsh64I | Rsh64R => i.ushr(a, bv),
            Arsh64I | Arsh64R => i.sshr(a, bv),
            Neg64 => i.ineg(a),
            Mov64I | Mov64R => bv,
            Movsx64B | Movsx64H | Movsx64W => {
                let t = [I8, I16, I32][d.op as usize - Movsx64B as usize];
                let n = i.ireduce(t, reg_b);
                self.b.ins().sextend(I64, n)
            }
            Bswap16 | Bswap32 => {
                let t = if d.op == Bswap16 { I16 } else { I32 };
                let n = i.ireduce(t, a);
                let s = self.b.ins().bswap(n);
                self.b.ins().uextend(I64, s)
            }
            Bswap64 => i.bswap(a),
            Le16 => i.band_imm_u(a, 0xffff),
            Le32 => {
                let n = i.ireduce(I32, a);
                self.b.ins().uextend(I64, n)
            }
            Le64 => a,
            Movsx32B | Movsx32H => {
                let t = if d.op == Movsx32B { I8 } else { I16 };
                let n = i.ireduce(t, reg_b);
                let n = self.b.ins().sextend(I32, n);
                self.b.ins().uextend(I64, n)
            }
            op if (Add32I as u8..=Arsh32R as u8).contains(&(op as u8)) => {
                let a = i.ireduce(I32, a);
                let bv = self.b.ins().ireduce(I32, bv);
                let r = self.alu32(op, a, bv);
                self.b.ins().uextend(I64, r)
            }
            _ => return None,
        })
    }

    /// A 32-bit ALU operation on 32-bit operands.
    fn alu32(&mut self, op: Op, a: Value, b: Value) -> Value {
        use Op::*;
        let i = self.b.ins();
        match op {
            Add32I | Add32R => i.iadd(a, b),
            Sub32I | Sub32R => i.isub(a, b),
            Mul32I | Mul32R => i.imul(a, b),
            Div32I | Div32R => self.divide(I32, a, b, false, false),
            SDiv32I | SDiv32R => self.divide(I32, a, b, true, false),
            Mod32I | Mod32R => self.divide(I32, a, b, false, true),
            SMod32I | SMod32R => self.divide(I32, a, b, true, true),
            Or32I | Or32R => i.bor(a, b),
            And32I | And32R => i.band(a, b),
            Xor32I | Xor32R => i.bxor(a, b),
            Lsh32I | Lsh32R => i.ishl(a, b),
            Rsh32I | Rsh32R => i.ushr(a, b),
            Arsh32I | Arsh32R => i.sshr(a, b),
            Neg32 => i.ineg(a),
            // Mov32I, Mov32R.
            _ => b,
        }
    }

    /// The condition of a conditional jump.
    fn condition(&mut self, d: &D) -> Value {
        use Op::*;
        let idx = d.op as u8 - Jeq64I as u8;
        let (wide, reg) = (idx < 22, idx % 2 == 1);
        let mut a = self.get(d.dst);
        let mut b = if reg {
            self.get(d.src)
        } else {
            self.konst(d.imm)
        };
        if !wide {
            a = self.b.ins().ireduce(I32, a);
            b = self.b.ins().ireduce(I32, b);
        }
        let cc = match (idx % 22) / 2 {
            0 => IntCC::Equal,
            1 => IntCC::UnsignedGreaterThan,
            2 => IntCC::UnsignedGreaterThanOrEqual,
            3 => {
                let x = self.b.ins().band(a, b);
                return self.b.ins().icmp_imm_s(IntCC::NotEqual, x, 0);
            }
            4 => IntCC::NotEqual,
            5 => IntCC::SignedGreaterThan,
            6 => IntCC::SignedGreaterThanOrEqual,
            7 => IntCC::UnsignedLessThan,
            8 => IntCC::UnsignedLessThanOrEqual,
            9 => IntCC::SignedLessThan,
            _ => IntCC::SignedLessThanOrEqual,
        };
        self.b.ins().icmp(cc, a, b)
    }

    fn frame_pointer(&mut self, depth: Value) -> Value {
        let off = self.b.ins().imul_imm_s(depth, STACK_FRAME_SIZE as i64);
        let top = self.konst(self.stack_top);
        self.b.ins().isub(top, off)
    }

    /// Address of word `w` of saved frame `depth`.
    fn frame_slot(&mut self, depth: Value) -> Value {
        let off = self.b.ins().imul_imm_s(depth, (FRAME_WORDS * 8) as i64);
        let base = self
            .b
            .ins()
            .iadd_imm_s(self.ctx, offset_of!(Ctx<'static>, frames) as i64);
        self.b.ins().iadd(base, off)
    }
}

/// Generates the function for `code` (decoded, with its `FellOff` sentinel).
fn build(
    b: FunctionBuilder<'_>,
    code: &[D],
    mem: &Memory,
    sigs: (SigRef, SigRef, SigRef),
    target: cranelift_codegen::isa::TargetFrontendConfig,
) {
    use Op::*;
    let n = code.len();
    // Straight-line runs start at jump and call targets, after control
    // transfers, and at the sentinel.
    let mut leader = vec![false; n];
    leader[0] = true;
    leader[n - 1] = true;
    let mut sites = Vec::new();
    for (pc, d) in code.iter().enumerate() {
        let transfer = matches!(d.op, Ja | CallLocal | Exit) || is_cond_jump(d.op);
        if transfer {
            leader[(pc + 1).min(n - 1)] = true;
        }
        if matches!(d.op, Ja | CallLocal) || is_cond_jump(d.op) {
            leader[d.off as usize] = true;
        }
        if d.op == CallLocal {
            sites.push(pc + 1);
        }
    }
    let mut e = Emit {
        b,
        regs: [Variable::from_u32(0); 11],
        count: Variable::from_u32(0),
        depth: Variable::from_u32(0),
        ctx: Value::from_u32(0),
        hot: Value::from_u32(0),
        budget: Value::from_u32(0),
        sigs,
        stack: mem.stack_region(),
        stack_top: mem.frame_pointer(0),
    };
    for r in &mut e.regs {
        *r = e.b.declare_var(I64);
    }
    e.count = e.b.declare_var(I64);
    e.depth = e.b.declare_var(I64);
    let blocks: Vec<Option<Block>> = leader
        .iter()
        .map(|&l| l.then(|| e.b.create_block()))
        .collect();
    let block = |pc: usize| blocks[pc].unwrap_or_else(|| unreachable!("{pc} is a leader"));

    let entry = e.b.create_block();
    e.b.append_block_params_for_function_params(entry);
    e.b.switch_to_block(entry);
    e.ctx = e.b.block_params(entry)[0];
    e.hot = e.ctx_load(offset_of!(Ctx<'static>, hot));
    e.budget = e.ctx_load(offset_of!(Ctx<'static>, budget));
    let zero = e.konst(0);
    for r in [0, 6, 7, 8, 9] {
        e.set(r, zero);
    }
    for r in 1..=5u8 {
        let v = e.ctx_load(offset_of!(Ctx<'static>, args) + 8 * (r as usize - 1));
        e.set(r, v);
    }
    let top = e.konst(e.stack_top);
    e.set(10, top);
    e.b.def_var(e.count, zero);
    e.b.def_var(e.depth, zero);
    e.b.ins().jump(block(0), &[]);

    let (mut k, mut live) = (0u64, false);
    let mut pc = 0;
    while pc < n {
        if leader[pc] {
            if live {
                e.settle(k);
                e.b.ins().jump(block(pc), &[]);
            }
            e.b.switch_to_block(block(pc));
            (k, live) = (0, true);
        }
        if !live {
            pc += 1;
            continue;
        }
        let d = code[pc];
        if d.op != FellOff && d.op != Hole {
            k += 1;
        }
        // The ALU operations come first in `Op`.
        if d.op as u8 <= Le64 as u8 {
            if let Some(v) = e.alu(&d) {
                e.set(d.dst, v);
            }
            pc += 1;
            continue;
        }
        match d.op {
            LdDw => {
                let v = e.konst(d.imm);
                e.set(d.dst, v);
                pc += 2;
                continue;
            }
            LdxB | LdxH | LdxW | LdxDW | LdxSB | LdxSH | LdxSW => {
                let (ty, signed) = match d.op {
                    LdxB => (I8, false),
                    LdxH => (I16, false),
                    LdxW => (I32, false),
                    LdxDW => (I64, false),
                    LdxSB => (I8, true),
                    LdxSH => (I16, true),
                    _ => (I32, true),
                };
                e.load(pc, k, &d, ty, signed);
            }
            StB | StH | StW | StDW | StxB | StxH | StxW | StxDW => {
                let ty = [I8, I16, I32, I64][(d.op as usize - StB as usize) % 4];
                let v = if (d.op as u8) < StxB as u8 {
                    e.konst(d.imm)
                } else {
                    e.get(d.src)
                };
                e.store(pc, k, &d, ty, v);
            }
            Atomic32 | Atomic64 => {
                let a = e.get(d.dst);
                let addr = e.b.ins().iadd_imm_s(a, d.off as i64);
                let args = [
                    e.ctx,
                    addr,
                    e.konst((d.op == Atomic64) as u64),
                    e.konst(d.imm),
                    e.get(d.src),
                    e.get(0),
                    e.konst(pc as u64),
                ];
                let old = e.call(e.sigs.2, atomic as *const () as usize, &args);
                e.check_status(pc, k);
                let aop = d.imm as i32;
                if aop == bpfoom_insn::opcode::BPF_CMPXCHG {
                    e.set(0, old);
                } else if aop & bpfoom_insn::opcode::BPF_FETCH != 0 {
                    e.set(d.src, old);
                }
            }
            CallHelper | CallKfunc | Callx => {
                let id = if d.op == Callx {
                    let r = e.get(d.dst);
                    e.b.ins().band_imm_u(r, 0xffff_ffff)
                } else {
                    e.konst(d.imm & 0xffff_ffff)
                };
                let mut args = vec![e.ctx, e.konst((d.op == CallKfunc) as u64), id];
                args.push(e.konst(pc as u64));
                for r in 1..=5 {
                    args.push(e.get(r));
                }
                let v = e.call(e.sigs.1, host_call as *const () as usize, &args);
                e.check_status(pc, k);
                e.set(0, v);
            }
            Ja => {
                e.settle(k);
                let t = d.off as usize;
                if t <= pc {
                    e.budget_check(pc);
                }
                e.b.ins().jump(block(t), &[]);
                live = false;
            }
            op if is_cond_jump(op) => {
                e.settle(k);
                let cond = e.condition(&d);
                let t = d.off as usize;
                if t > pc {
                    e.b.ins().brif(cond, block(t), &[], block(pc + 1), &[]);
                } else {
                    let back = e.b.create_block();
                    e.b.ins().brif(cond, back, &[], block(pc + 1), &[]);
                    e.b.switch_to_block(back);
                    e.budget_check(pc);
                    e.b.ins().jump(block(t), &[]);
                }
                live = false;
            }
            CallLocal => {
                let depth = e.b.use_var(e.depth);
                let full = e.b.ins().icmp_imm_s(
                    IntCC::UnsignedGreaterThanOrEqual,
                    depth,
                    MAX_FRAMES as i64 - 1,
                );
                e.stop_if(full, Some(ERR_CALL_DEPTH), pc, k);
                e.settle(k);
                e.budget_check(pc);
                let slot = e.frame_slot(depth);
                let site = sites.iter().position(|&s| s == pc + 1).unwrap_or(0);
                let site = e.konst(site as u64);
                e.b.ins().store(flags(), site, slot, 0);
                for (w, r) in (6..=9u8).enumerate() {
                    let v = e.get(r);
                    e.b.ins().store(flags(), v, slot, 8 * (w as i32 + 1));
                }
                let depth = e.b.ins().iadd_imm_s(depth, 1);
                e.b.def_var(e.depth, depth);
                let fp = e.frame_pointer(depth);
                e.set(10, fp);
                e.b.ins().jump(block(d.off as usize), &[]);
                live = false;
            }
            Exit => {
                e.settle(k);
                if sites.is_empty() {
                    e.stop_ok();
                } else {
                    let depth = e.b.use_var(e.depth);
                    let (done, pop) = (e.b.create_block(), e.b.create_block());
                    e.b.ins().brif(depth, pop, &[], done, &[]);
                    e.b.switch_to_block(done);
                    e.stop_ok();
                    e.b.switch_to_block(pop);
                    let depth = e.b.ins().iadd_imm_s(depth, -1);
                    e.b.def_var(e.depth, depth);
                    let slot = e.frame_slot(depth);
                    let site = e.b.ins().load(I64, flags(), slot, 0);
                    for (w, r) in (6..=9u8).enumerate() {
                        let v = e.b.ins().load(I64, flags(), slot, 8 * (w as i32 + 1));
                        e.set(r, v);
                    }
                    let fp = e.frame_pointer(depth);
                    e.set(10, fp);
                    let site = e.b.ins().ireduce(I32, site);
                    let calls: Vec<_> = sites
                        .iter()
                        .map(|&s| e.b.func.dfg.block_call(block(s), &[]))
                        .collect();
                    // Each entry needs its own argument list: SSA construction
                    // appends to them separately.
                    let default = e.b.func.dfg.block_call(block(sites[0]), &[]);
                    let jt = e.b.create_jump_table(JumpTableData::new(default, &calls));
                    e.b.ins().br_table(site, jt);
                }
                live = false;
            }
            FellOff | Hole => {
                e.stop(Some(ERR_FELL_OFF), pc, k);
                live = false;
            }
            _ => unreachable!("every operation is handled"),
        }
        pc += 1;
    }
    e.b.seal_all_blocks();
    e.b.finalize(target);
}

impl Emit<'_> {
    /// A normal end of the run: the count is settled, `r0` is the result.
    fn stop_ok(&mut self) {
        let c = self.b.use_var(self.count);
        self.ctx_store(offset_of!(Ctx<'static>, count), c);
        let r0 = self.get(0);
        self.b.ins().return_(&[r0]);
    }
}
