//! bpfoom-vm: an exact, pre-decoded eBPF interpreter for verified policies.
//!
//! # Why in-house
//! bpfoom runs BPF OOM policies in user space against host-owned models of
//! kernel objects. Existing Rust interpreters (rbpf and its descendants) give
//! one flat memory slice per run and helper functions as plain `fn` pointers:
//! they cannot check every load and store against a per-region table with
//! read-only/read-write rights (stack frames, context, map values, ring-buffer
//! records, host objects), they have no kfunc dispatch with embedder state and
//! access to VM memory, and they lack the map set policies use (hash, LRU hash,
//! ring buffer, global data with stable value addresses). This crate provides
//! exactly that, and is differentially tested against the running kernel.
//!
//! # Model
//! * [`Vm::new`] creates the maps from [`MapSpec`]s; [`Vm::load`] decodes a
//!   relocated program once (jump targets, immediates, call targets, map
//!   references all resolved) into a [`ProgId`]. All programs of a `Vm` share
//!   its maps, like the programs of one BPF object.
//! * [`Vm::run`] runs a program with `r1` pointing at a read-only copy of a
//!   `u64` context array (the struct_ops `BPF_PROG` convention);
//!   [`Vm::run_with_args`] sets `r1..r5` directly.
//! * Program addresses are real addresses of VM-owned memory, but every access
//!   is checked against the region table ([`mem`]) and fails with
//!   [`VmError::Memory`] instead of undefined behaviour. Execution stops with
//!   [`VmError::Budget`] when the number of executed instructions exceeds the
//!   budget, checked at backward jumps and local calls (the only places where
//!   code can be revisited), so straight-line code pays nothing.
//! * [`Vm::last_run_insns`] is the exact number of instructions the last run
//!   executed (`ld_imm64` counts once; an instruction that faulted counts).
//!   It is summed per straight-line run when control leaves it, not per
//!   instruction.
//! * With the cargo feature `jit`, `Vm::set_backend(ExecBackend::Jit)` makes later
//!   loads compile to native code with Cranelift (module `jit`): the same
//!   region checks, budget, instruction count, fault-safe loads and host
//!   calls, and the same conformance and kernel differential tests
//!   (`cargo test -p bpfoom-vm --features jit --release`). Numbers: `crates/bpfoom-vm/BENCH.md`.
//! * Helpers and kfuncs go first to the embedder's [`CallHandler`]; helpers it does
//!   not handle (it returns [`CallError::Unsupported`]) fall back to the
//!   built-ins in [`helpers`]: map lookup/update/delete, ktime, prandom,
//!   trace_printk (into [`Env::trace`]), smp id and the ring-buffer helpers.
//! * Semantics follow RFC 9669 and Linux, including division by zero (quotient
//!   0, remainder = dividend), `INT_MIN / -1`, sign-extending moves and loads,
//!   byte swaps, all atomics, and bpf-to-bpf calls with up to 8 frames of 512
//!   stack bytes each. A uBPF-style `callx %rN` calls the helper whose id is in
//!   `rN` (the kernel verifier rejects `callx`; it exists for conformance).
//!
//! # Example
//! ```
//! use bpfoom_vm::{MapKind, MapSpec, Vm};
//!
//! let counters = MapSpec {
//!     name: "counters".into(),
//!     kind: MapKind::Array,
//!     key_size: 4,
//!     value_size: 8,
//!     max_entries: 1,
//!     ..Default::default()
//! };
//! let mut vm = Vm::new(vec![counters]).unwrap();
//! // counters[0] += ctx[0]; return ctx[0] * 2
//! let prog = bpfoom_insn::assemble(
//!     "ldxdw %r6, [%r1+0]\n\
//!      ldmapvalue %r2, 0, 0\n\
//!      lock add [%r2+0], %r6\n\
//!      mov %r0, %r6\n\
//!      mul %r0, 2\n\
//!      exit",
//! )
//! .unwrap();
//! let id = vm.load(&prog).unwrap();
//! assert_eq!(vm.run(id, &[21], &mut ()).unwrap(), 42);
//! let counters = vm.map(vm.map_index("counters").unwrap()).unwrap();
//! assert_eq!(counters.get(&0u32.to_le_bytes()).unwrap(), Some(&21u64.to_le_bytes()[..]));
//! ```

mod decode;
pub mod helpers;
mod interp;
#[cfg(feature = "jit")]
mod jit;
#[cfg(feature = "kernel")]
pub mod linux;
pub mod maps;
pub mod mem;

use std::time::Instant;

use bpfoom_insn::Insn;
use thiserror::Error;

pub use decode::{LoadError, LoadErrorKind};
pub use maps::{Map, MapError, MapKind, MapSpec, BPF_ANY, BPF_EXIST, BPF_NOEXIST};
pub use mem::{MemError, Memory, ObjId, Perm, MAX_FRAMES, STACK_FRAME_SIZE};

/// Default instruction budget of one run.
pub const DEFAULT_BUDGET: u64 = 10_000_000;

/// A failure of a host call.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum CallError {
    /// The host does not implement this helper/kfunc id.
    #[error("not implemented")]
    Unsupported,
    /// An argument is invalid (bad map handle, bad record pointer, ...).
    #[error("bad argument: {0}")]
    BadArgument(String),
    /// An argument pointed outside VM memory.
    #[error(transparent)]
    Memory(#[from] MemError),
    /// The host failed for its own reasons.
    #[error("{0}")]
    Failed(String),
}

/// Why a run stopped without returning.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum VmError {
    /// No program with this id.
    #[error("no program with id {0}")]
    NoProgram(usize),
    /// A load or store outside the regions handed out.
    #[error("instruction {pc}: memory fault: {source}")]
    Memory {
        /// Faulting instruction.
        pc: usize,
        /// The refused access.
        source: MemError,
    },
    /// The instruction budget ran out.
    #[error("instruction budget {budget} exhausted at instruction {pc}")]
    Budget {
        /// Instruction being executed.
        pc: usize,
        /// The budget of the run.
        budget: u64,
    },
    /// A local call would exceed [`MAX_FRAMES`].
    #[error("instruction {pc}: call depth exceeds {MAX_FRAMES} frames")]
    CallDepth {
        /// The call instruction.
        pc: usize,
    },
    /// A helper call failed or is unknown.
    #[error("instruction {pc}: helper {id}: {source}")]
    Helper {
        /// The call instruction.
        pc: usize,
        /// Helper id.
        id: u32,
        /// The call handler's failure.
        source: CallError,
    },
    /// A kfunc call failed or is unknown.
    #[error("instruction {pc}: kfunc {id}: {source}")]
    Kfunc {
        /// The call instruction.
        pc: usize,
        /// Kfunc id.
        id: u32,
        /// The call handler's failure.
        source: CallError,
    },
    /// Execution ran past the last instruction.
    #[error("instruction {pc}: fell off the end of the program")]
    FellOff {
        /// Index past the end.
        pc: usize,
    },
}

/// The embedder's implementation of helpers and kfuncs, with its own state.
///
/// Both methods receive `r1..r5` and the VM's [`Env`] (memory, maps, trace
/// sink), so they can read `__str` arguments, write through pointers and
/// register or remove host objects. Return [`CallError::Unsupported`] for ids
/// you do not implement (helpers then fall back to the VM's built-ins).
///
/// It only answers calls, so it is named for that: the machine model an
/// embedder runs against (cgroups, tasks) is `bpfoom_engine::Host`.
pub trait CallHandler {
    /// A helper call (`call` with `src = 0`), Linux numbering.
    fn helper(&mut self, id: u32, args: [u64; 5], env: &mut Env) -> Result<u64, CallError> {
        let _ = (id, args, env);
        Err(CallError::Unsupported)
    }
    /// A kfunc call (`call` with `src = BPF_PSEUDO_KFUNC_CALL`), id from bpfoom-abi.
    fn kfunc(&mut self, id: u32, args: [u64; 5], env: &mut Env) -> Result<u64, CallError> {
        let _ = (id, args, env);
        Err(CallError::Unsupported)
    }
}

/// A host with no helpers or kfuncs of its own.
impl CallHandler for () {}

/// Everything a running program and the host calls can touch.
pub struct Env {
    pub(crate) mem: Memory,
    pub(crate) maps: Vec<Map>,
    pub(crate) trace: String,
    rng: u64,
    pub(crate) epoch: Instant,
    pub(crate) frames: Vec<interp::Frame>,
    /// `bpf_spin_lock`s taken and not yet released in this run.
    pub(crate) held_locks: Vec<u64>,
}

impl Env {
    /// VM memory: read/write program-visible addresses, host objects.
    pub fn memory(&mut self) -> &mut Memory {
        &mut self.mem
    }
    /// The maps, in the object's map order.
    pub fn maps(&self) -> &[Map] {
        &self.maps
    }
    /// One map, mutable (lookups update LRU state, so even reads need `&mut`).
    pub fn map_mut(&mut self, idx: usize) -> Option<&mut Map> {
        self.maps.get_mut(idx)
    }
    /// Index of the map with this name.
    pub fn map_index(&self, name: &str) -> Option<usize> {
        self.maps.iter().position(|m| m.spec().name == name)
    }
    /// Text written by `bpf_trace_printk` so far.
    pub fn trace(&self) -> &str {
        &self.trace
    }
    /// Takes and clears the `bpf_trace_printk` output.
    pub fn take_trace(&mut self) -> String {
        std::mem::take(&mut self.trace)
    }
    /// Reseeds `bpf_get_prandom_u32` (for reproducible runs).
    pub fn seed_random(&mut self, seed: u64) {
        self.rng = seed | 1;
    }
    pub(crate) fn next_random(&mut self) -> u32 {
        // xorshift64*: cheap, good enough for a policy's sampling decisions.
        self.rng ^= self.rng >> 12;
        self.rng ^= self.rng << 25;
        self.rng ^= self.rng >> 27;
        (self.rng.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 32) as u32
    }
}

/// How [`Vm::load_with`] loads a program.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LoadOptions {
    /// Slot indexes of `ldx` instructions that never fault: a load at one
    /// of them that touches no readable region writes 0 to its destination
    /// register and the program goes on, as the kernel's `BPF_PROBE_MEM`
    /// loads through pointers walked from kernel objects
    /// (`task->real_parent->pid` with a NULL `real_parent`). The verifier
    /// reports these (loads through `PTR_TO_BTF_ID`); every other access
    /// keeps the strict check. An index that names no `ldx` is a
    /// [`LoadErrorKind::NotALoad`] error.
    pub probe_mem: Vec<usize>,
}

/// What executes the programs a [`Vm`] loads (named a backend, not an engine:
/// `bpfoom_engine::Engine` is the policy chain driver built on top of the VM).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ExecBackend {
    /// The pre-decoded threaded interpreter.
    #[default]
    Interpreter,
    /// Native code from Cranelift (cargo feature `jit`), with the
    /// interpreter's semantics, checks, budget and instruction count.
    #[cfg(feature = "jit")]
    Jit,
}

/// A loaded program.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ProgId(usize);

/// A program in its executable forms.
struct Prog {
    code: Vec<interp::Threaded>,
    #[cfg(feature = "jit")]
    native: Option<jit::Compiled>,
}

/// A set of programs sharing maps, memory and host objects.
pub struct Vm {
    progs: Vec<Prog>,
    backend: ExecBackend,
    #[cfg(feature = "jit")]
    jit: Option<jit::Jit>,
    env: Env,
    budget: u64,
    last_insns: u64,
}

impl Vm {
    /// Creates a VM with these maps (index `i` is map `i` for `ld_imm64` references).
    pub fn new(maps: Vec<MapSpec>) -> Result<Self, MapError> {
        let maps = maps
            .into_iter()
            .map(Map::new)
            .collect::<Result<Vec<_>, _>>()?;
        let mut mem = Memory::new();
        for (i, m) in maps.iter().enumerate() {
            if let Some(r) = m.region(i) {
                mem.add_region(r);
            }
        }
        let epoch = Instant::now();
        let seed = epoch.elapsed().as_nanos() as u64 ^ (&mem as *const Memory as u64);
        Ok(Self {
            progs: Vec::new(),
            env: Env {
                mem,
                maps,
                trace: String::new(),
                rng: seed | 1,
                epoch,
                frames: Vec::with_capacity(MAX_FRAMES),
                held_locks: Vec::new(),
            },
            budget: DEFAULT_BUDGET,
            last_insns: 0,
            backend: ExecBackend::default(),
            #[cfg(feature = "jit")]
            jit: None,
        })
    }

    /// Decodes a relocated program for execution.
    pub fn load(&mut self, insns: &[Insn]) -> Result<ProgId, LoadError> {
        self.load_with(insns, &LoadOptions::default())
    }

    /// [`Vm::load`] with options (fault-safe loads).
    pub fn load_with(&mut self, insns: &[Insn], opts: &LoadOptions) -> Result<ProgId, LoadError> {
        let code = decode::decode(insns, &self.env.maps, &opts.probe_mem)?;
        #[cfg(feature = "jit")]
        let native = match self.backend {
            ExecBackend::Jit => Some(self.compile(&code)?),
            ExecBackend::Interpreter => None,
        };
        self.progs.push(Prog {
            code: interp::thread(code),
            #[cfg(feature = "jit")]
            native,
        });
        Ok(ProgId(self.progs.len() - 1))
    }

    #[cfg(feature = "jit")]
    fn compile(&mut self, code: &[decode::D]) -> Result<jit::Compiled, LoadError> {
        let err = |e: String| LoadError {
            pc: 0,
            kind: LoadErrorKind::Jit(e),
        };
        let jit = match &mut self.jit {
            Some(j) => j,
            None => self.jit.insert(jit::Jit::new().map_err(err)?),
        };
        jit.compile(code, &self.env.mem).map_err(err)
    }

    /// Chooses the execution backend for programs loaded from now on (programs already
    /// loaded keep theirs).
    pub fn set_backend(&mut self, backend: ExecBackend) {
        self.backend = backend;
    }

    /// The execution backend for programs loaded from now on.
    pub fn backend(&self) -> ExecBackend {
        self.backend
    }

    /// Sets the instruction budget of each later run: a run stops with
    /// [`VmError::Budget`] at the first backward jump or local call after it
    /// has executed more than `budget` instructions.
    pub fn set_budget(&mut self, budget: u64) {
        self.budget = budget;
    }

    /// Runs a program with `r1` = address of a read-only copy of `ctx`.
    pub fn run<H: CallHandler + ?Sized>(
        &mut self,
        prog: ProgId,
        ctx: &[u64],
        host: &mut H,
    ) -> Result<u64, VmError> {
        let p = self.env.mem.set_ctx(ctx);
        self.run_with_args(prog, [p, 0, 0, 0, 0], host)
    }

    /// Runs a program with `r1..r5 = args` (e.g. a host object's address).
    pub fn run_with_args<H: CallHandler + ?Sized>(
        &mut self,
        prog: ProgId,
        args: [u64; 5],
        host: &mut H,
    ) -> Result<u64, VmError> {
        self.last_insns = 0;
        let p = self.progs.get(prog.0).ok_or(VmError::NoProgram(prog.0))?;
        let (res, insns) = match () {
            #[cfg(feature = "jit")]
            () if p.native.is_some() => match &p.native {
                Some(c) => jit::exec(c, &mut self.env, host, args, self.budget),
                None => unreachable!("checked by the guard"),
            },
            () => interp::exec(&p.code, &mut self.env, host, args, self.budget),
        };
        self.last_insns = insns;
        // A run stopped inside a locked region (budget, fault, host error:
        // what the kernel's verifier rules out but a userspace VM can still
        // hit) must not leave the lock taken for the next run.
        for addr in std::mem::take(&mut self.env.held_locks) {
            let _ = self.env.mem.write(addr, &[0; 4]);
        }
        // Records reserved but never submitted die with the run.
        for m in self.env.maps.iter_mut() {
            if let Some(ring) = m.ring_mut() {
                for addr in ring.abandon_pending() {
                    self.env.mem.remove_region(addr);
                }
            }
        }
        res
    }

    /// Instructions executed by the last run (successful or not): exact,
    /// with `ld_imm64` counted once and a faulting instruction included.
    pub fn last_run_insns(&self) -> u64 {
        self.last_insns
    }

    /// The shared environment (memory, maps, trace output).
    pub fn env(&self) -> &Env {
        &self.env
    }

    /// The shared environment, mutable.
    pub fn env_mut(&mut self) -> &mut Env {
        &mut self.env
    }

    /// Map `idx` (read-only access: [`Map::get`], [`Map::keys`]).
    pub fn map(&self, idx: usize) -> Option<&Map> {
        self.env.maps.get(idx)
    }

    /// Index of the map with this name.
    pub fn map_index(&self, name: &str) -> Option<usize> {
        self.env.map_index(name)
    }

    /// Map `idx`, mutable (for lookups, updates, ring-buffer reads from Rust).
    pub fn map_mut(&mut self, idx: usize) -> Option<&mut Map> {
        self.env.maps.get_mut(idx)
    }

    /// Registers a host object (see [`Memory::add_object`]); returns its id and address.
    pub fn add_object(&mut self, bytes: &[u8], perm: Perm) -> (ObjId, u64) {
        let id = self.env.mem.add_object(bytes, perm);
        let addr = self.env.mem.object_addr(id).unwrap_or(0);
        (id, addr)
    }
}
