//! A kernel-style verifier for bpfoom's BPF OOM and PSI policies.
//!
//! The promise that makes BPF policies acceptable where kernel modules are
//! not is static safety: a policy cannot touch memory outside safe areas,
//! cannot loop forever, cannot dereference a NULL pointer, cannot leak a
//! reference, and cannot write the read-only `struct oom_control`. Linux
//! keeps that promise with its verifier; bpfoom runs policies in userspace,
//! so it must keep it itself.
//!
//! # Why in-house
//! No Rust crate checks BPF programs against BTF-typed struct_ops contexts
//! (typed kernel pointers, kfunc flags such as ACQUIRE/RELEASE/TRUSTED_ARGS,
//! open-coded iterators, RCU sections); existing Rust BPF tooling either
//! leaves verification to the kernel or checks only memory-safety of the
//! classic ALU/stack subset. Loading the program into the running kernel's
//! verifier is no substitute either: the kernel knows neither `bpf_oom_ops`
//! (unmerged upstream) nor bpfoom's host types. This crate is written from the
//! kernel's documentation (`Documentation/bpf/verifier.rst`, `kfuncs.rst`),
//! not from its source.
//!
//! # How it works
//! [`verify`] first runs structural checks (valid encodings, jump targets,
//! function boundaries, no unreachable code, no fall-through off the end),
//! then a path-sensitive abstract interpretation: every register holds a
//! type (scalar with tnum and 64/32-bit signed/unsigned bounds, context,
//! stack, map value, map reference, typed kernel object with trust level,
//! sized memory) and ids for NULL-check and bounds propagation; the stack
//! is tracked per byte with spilled registers and iterator slots.
//! Conditional jumps refine bounds and resolve NULL checks; impossible
//! branches are not explored. States are remembered at jump targets and
//! pruned when an earlier, fully explored state covers them (liveness-aware),
//! which also lets open-coded iterator loops converge. A budget of processed
//! instructions bounds the work.
//!
//! Loops: bounded loops are explored iteration by iteration (an identical
//! state at a loop head is an "infinite loop"); open-coded iterator loops
//! converge because, at `bpf_iter_*_next`, a state covered by an ancestor in
//! the same loop (iterator depth ignored) is pruned, and scalars that keep
//! changing around the loop are joined, then widened to unknown.
//!
//! The callback's arguments are typed from the prototype of the upstream
//! revision the object declares ([`Hook::form`]): the newest form's, or
//! upstream v3's `handle_out_of_memory(struct oom_control *oc, struct
//! bpf_struct_ops_link *link)`, where `link` is a trusted read-only object
//! and `link->cgroup` a trusted pointer that may be NULL, as `oc->memcg`.
//!
//! # Privileged semantics, as Linux gives struct_ops programs
//! struct_ops programs are loaded with CAP_SYS_ADMIN, so Linux verifies them
//! with `allow_ptr_leaks` and `allow_uninit_stack`; bpfoom does the same:
//! pointers may be compared with anything (only 64-bit NULL tests refine),
//! subtracted from each other, negated, copied with 32-bit or sign-extending
//! moves (the result is a number), stored into map values and memory; a
//! released reference becomes an unknown scalar in every register and spill
//! slot; uninitialised stack reads as an unknown scalar, and helpers and
//! kfuncs may read uninitialised or pointer-holding stack bytes. Partial
//! spills and fills of pointers, 32-bit pointer arithmetic and stores into
//! kernel objects stay refused, as in Linux. Kfunc arguments follow Linux's
//! classes: a plain `const char *` is memory of `sizeof(*arg)` bytes,
//! `__str` a constant string in read-only data, `__nullable` allows NULL;
//! KF_TRUSTED_ARGS / KF_RCU / release arguments need trusted (or, for
//! KF_RCU, RCU) pointers; inside an RCU read section (always, in a
//! non-sleepable program) the fields Linux lists as RCU-safe
//! (`task->real_parent`, `task->group_leader`, `cgroup->kn`, `css->cgroup`)
//! give RCU pointers; RCU sections do not nest. Global (non-static,
//! noinline) functions are verified once, on their own, against their BTF
//! prototype ([`verify_with_globals`], which [`verify_object`] uses): integer
//! parameters are unknown scalars, `__arg_ctx` the context, `__arg_trusted`
//! (with `__arg_nullable`) trusted kernel objects, every other pointer memory
//! of the pointee's size that may be NULL unless `__arg_nonnull`; callers must
//! pass matching arguments and get an unknown scalar back; void global
//! functions are refused, as in Linux.
//!
//! The stack limit across calls is Linux's `check_max_stack_depth()`
//! (module `stack_depth`): every stack access on any path raises its
//! function's depth (rounded up to 8 bytes), whenever it happens; once the
//! program and its global functions are verified, the static call graph is
//! walked from the entry (calls of static and global functions, and
//! `bpf_loop` callbacks where they are passed), each frame rounded as
//! `round_up_stack_depth()` does (16 bytes with the JIT, the default of
//! [`Options::jit`]; 32-byte steps and at least 32 for the interpreter),
//! and a chain may add up to 512 bytes in at most 8 frames: "combined stack
//! size of N calls is M. Too large".
//!
//! Callbacks and locks follow Linux too (modules `callbacks` and
//! `spin_lock`): a `bpf_loop` callback is a static subprogram entered in a
//! new frame with r1 an unknown scalar and r2 the caller's context pointer,
//! must return 0 or 1, and returns to its call instruction, which runs
//! again, so the callback is explored as if called any number of times (the
//! call is a loop head like an iterator's next); a `bpf_spin_lock` must
//! point at the one `struct bpf_spin_lock` of a map value, only one is held,
//! nothing but `bpf_spin_unlock` and static subprograms is called while it
//! is, the main program never exits holding it, and the lock field is never
//! accessed directly. The helpers and kfuncs of `bpf_oom.h` (numbers and
//! task iterators, probe reads, `bpf_strncmp`, the current task, ...) are
//! checked against their Linux prototypes and flags; each has accepting and
//! rejecting twins (`tests/parity/k5_*.c`).
//!
//! The kernel-parity test (`tests/parity.rs`, corpus in `tests/parity/`)
//! loads each twin program into the running kernel as root and fails on any
//! verdict that differs from bpfoom's.
//!
//! # Messages
//! Rejections use Linux's words where Linux has them, with what bpfoom
//! knows on top: a helper bpfoom does not provide is named from Linux's id
//! list (module `helper_names`), a reference leak gives the C line that
//! took the reference (`Unreleased reference id=2 alloc_insn=6
//! (policy.bpf.c:42: ...)`), and a CO-RE field access through a pointer to
//! another struct names both types and the callback's prototype (module
//! `explain`; when the offset happens to be valid such an access verifies,
//! as in Linux, and is listed in [`Report::warnings`]). With a log, each C
//! line is printed before its first instruction, as Linux does.
//!
//! # Differences from Linux that remain
//! Every parity case agrees with the kernel (the test fails otherwise), and
//! where the kernel gives up on a program's size or complexity bpfoom gives
//! up with the kernel's words ("BPF program is too large. Processed 1000001
//! insn", "The sequence of 8193 jumps is too complex."), which the parity
//! test checks too. What is still done differently, and why no case shows
//! it:
//! - Pruning uses Linux's precision marks (module `precision`: decided
//!   branches, scalars added to pointers, helper sizes, callback return
//!   values and constant array keys are traced back through the path and its
//!   remembered states) where Linux needs them to keep a loop exact: at an
//!   open-coded iterator's next call the next round's imprecise scalars are
//!   widened to unknown, precise ones keep their values, so
//!   `iter_css_task_count`, `iter_css_acquire_task_iter`,
//!   `prec_iter_count_then_index` and `iter_css_rcu` are counted out round
//!   by round and rejected as by the kernel (at the same limit); a scalar
//!   used after such a loop as a map-value index, a stack offset or a helper
//!   size keeps its exact values (the `prec_*` twins). Ordinary pruning
//!   still compares every scalar by range (Linux ignores imprecise ones
//!   outside loops), which never accepts more; it can process more
//!   instructions than the kernel (`k5_loop_sum`: 210 against 87) or fewer
//!   (`loop_comm_count`: 15k against 951k). Linked scalar copies are not
//!   traced through a conditional jump (Linux's `bt_sync_linked_regs`),
//!   which can only widen more, never less.
//! - Remembered states that keep failing to prune are forgotten as Linux's
//!   `is_state_visited()` does for unfinished (looping) states: after
//!   `hits * 64 + 64` misses at an iterator's next call or a callback call,
//!   `hits * 3 + 3` elsewhere, a miss counted only where a new state may be
//!   remembered. A finished state is kept longer than Linux keeps it (after
//!   `hits * 3 + 256` misses, counted on every visit; Linux: `hits * 3 + 3`)
//!   because the range comparison above prunes less per state. At most 64
//!   states are remembered per instruction (outside iterator and callback
//!   loop heads) and 65536 in all; Linux has no such caps for privileged
//!   programs (64 per instruction is its unprivileged limit). These only
//!   change how much work is done, never a verdict short of the limits.
//! - `handle_out_of_memory` must return 0..=2 (bpfoom's contract; callbacks
//!   of other ranges as declared in `bpfoom_abi::struct_ops`), checked on
//!   the low 32 bits (the callbacks return `int`). Linux checks no return
//!   range for struct_ops callbacks returning `int` (`check_return_code()`),
//!   so it also sets no precision mark there; bpfoom marks the return value
//!   precise only when the instruction that made it does not bound it by
//!   itself, so `return n & 1` after a counting loop converges as in Linux
//!   (`prec_iter_count_unused`). The parity wrapper returns `r & 1`, so no
//!   twin shows the range itself.
//! - A `_Bool` field of a host object loads as 0 or 1 (bpfoom owns the host
//!   objects and only stores 0 or 1 there). Linux would see 0..=255, but
//!   without the return-range rule above it never needs more; bpfoom's rule
//!   would otherwise reject `return m->oom_group ? 1 : 0;`, which clang
//!   compiles to a plain byte load. div/mod and stack bytes are tracked more
//!   exactly than Linux.
//! - A plain `const char *` kfunc argument is checked for read access only,
//!   so a string literal in `.rodata` is accepted; no kfunc of this
//!   machine's kernel that a syscall program may call has such an argument,
//!   so the parity test cannot settle whether Linux also asks for write
//!   access there.
//! - `PTR_TO_MAP_KEY` does not exist: no helper bpfoom offers produces it.
//! - Stack frames are rounded for the JIT unless [`Options::jit`] is off
//!   (the parity test follows the running kernel's `bpf_jit_enable`); the
//!   interpreter's rounding is tested in the corpus only, since switching
//!   the kernel's JIT off is not the test's to do.
//! - The css_task iterator's element is trusted unless
//!   [`Options::iter_next_trusted`] is off. Mainline Linux trusts it; some
//!   builds give an untrusted pointer (the 6.18.44 build CI runs on, found
//!   when `iter_elem_acquire` and `iter_css_task_count` began to disagree
//!   with it). The parity test asks the running kernel which rule it
//!   follows and verifies every case with that rule; the corpus and the
//!   upstream selftest policies check the mainline one.
//!
//! The generated-program differential test (`tests/differential.rs`) loads
//! ALU/jump/stack programs into the running kernel and checks that the
//! verdicts agree.

mod callbacks;
mod calls;
mod cfg;
mod check;
mod explain;
mod helper_mem;
mod helper_names;
mod mem;
pub mod object;
mod precision;
pub mod scalar;
mod spin_lock;
mod stack_depth;
mod state;
pub mod tnum;

use std::fmt;
use std::time::Duration;

pub use bpfoom_insn::Insn;
pub use object::{verify_object, ProgramReport};

/// Which struct_ops callback a program implements.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Hook<'a> {
    /// struct_ops type, e.g. `bpf_oom_ops`.
    pub ops: &'a str,
    /// Callback member, e.g. `handle_out_of_memory`.
    pub member: &'a str,
    /// The upstream revision of the callback's prototype the program was
    /// written for (the loader's [`bpfoom_obj::Callback::form`]): its
    /// arguments are typed from that revision's prototype.
    pub form: bpfoom_obj::Form,
}

/// Kinds of maps a program may reference: the loader's (and the VM's) one
/// map-kind type.
pub use bpfoom_obj::MapKind;

/// A map as the verifier needs to know it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MapInfo {
    /// Name for messages (`.rodata`, `victims`, ...).
    pub name: String,
    /// Map type.
    pub kind: MapKind,
    /// Key size in bytes.
    pub key_size: u32,
    /// Value size in bytes.
    pub value_size: u32,
    /// Maximum entries.
    pub max_entries: u32,
    /// Programs may not write it (`.rodata`).
    pub read_only: bool,
    /// Initial contents of the (single) value, for read-only data: loads
    /// from it become constants and `__str` arguments are checked for a NUL.
    pub initial: Option<Vec<u8>>,
    /// Byte offset of the value's `struct bpf_spin_lock`, when its BTF has
    /// exactly one (what `bpf_spin_lock()` must point at).
    pub spin_lock_off: Option<u32>,
}

/// A source position for an instruction (from BTF line info).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SourceLine {
    /// First instruction this line covers.
    pub insn: usize,
    /// Source file.
    pub file: String,
    /// 1-based line.
    pub line: u32,
    /// The line's text.
    pub text: String,
}

/// One program to verify.
#[derive(Clone, Copy, Debug)]
pub struct ProgramInput<'a> {
    /// Program name for messages.
    pub name: &'a str,
    /// Relocated instructions (bpfoom's relocation conventions).
    pub insns: &'a [Insn],
    /// The callback it implements: gives argument types, return range, kfunc scope.
    pub hook: Hook<'a>,
    /// Loaded from a `struct_ops.s/` section: may call sleepable kfuncs.
    pub sleepable: bool,
    /// Maps, indexed by the `imm` of map references.
    pub maps: &'a [MapInfo],
    /// Line info, sorted by instruction (may be empty).
    pub line_info: &'a [SourceLine],
    /// The CO-RE field accesses the loader relocated, sorted by instruction
    /// (may be empty): what the program meant to access, so that an access
    /// through a pointer to another type can be explained.
    pub core_access: &'a [CoreAccess],
}

/// A CO-RE field access of the program (from its relocations).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CoreAccess {
    /// The relocated instruction.
    pub insn: usize,
    /// The struct (or union) the access starts from, as the program
    /// declared it (e.g. `mem_cgroup`; a `___flavor` suffix is kept).
    pub root: String,
    /// The access, e.g. `mem_cgroup.oom_group`.
    pub spec: String,
}

/// Verification options.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Options {
    /// 0: no log; 1: every processed instruction; 2: also the register state after each.
    pub log_level: u32,
    /// Budget of processed instructions (the kernel's 1,000,000 by default).
    pub max_insns: u64,
    /// Round stack frames as Linux does for a program with the JIT
    /// requested (16 bytes; the default, as on a kernel with
    /// `net.core.bpf_jit_enable=1`, x86-64's usual setting) or for the
    /// interpreter (32-byte steps, every frame at least 32 bytes) before the
    /// 512-byte limit of a call chain is checked.
    pub jit: bool,
    /// The element `bpf_iter_css_task_next` returns (the next of an
    /// iterator that needs no RCU section) is a trusted pointer: the rule of
    /// mainline Linux since 6.12 ("bpf: Make the pointer returned by iter
    /// next method valid") and the one the BPF OOM selftests are written
    /// against (they pass it to `bpf_task_acquire`), so the default. `false`
    /// gives an untrusted pointer (readable, never passed where trust is
    /// required), as some kernel builds do: the 6.18.44 build this project's
    /// CI runs on is one. The kernel-parity test asks the running kernel
    /// which rule it follows (`bpfoom_testutil::kernel::iter_next_trusted`)
    /// and verifies with that, as it does for `jit`.
    pub iter_next_trusted: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            log_level: 0,
            max_insns: 1_000_000,
            jit: true,
            iter_next_trusted: true,
        }
    }
}

/// A successful verification.
#[derive(Clone, Debug)]
pub struct Report {
    /// Instructions processed over all explored paths.
    pub insns_processed: u64,
    /// States remembered for pruning.
    pub states: u64,
    /// Most states held at once (remembered plus pending branches).
    pub peak_states: u64,
    /// Wall time spent.
    pub time: Duration,
    /// Indexes of the loads through kernel-object pointers (Linux's
    /// `BPF_PROBE_MEM`): at run time a fault there must read 0, because a
    /// walked pointer (`task->real_parent`, the root's `css.parent`) may be
    /// NULL without a check.
    pub probe_mem: Vec<usize>,
    /// What verified but is probably a mistake, one sentence each (`insn N:
    /// ...`): a CO-RE field access through a pointer to another struct
    /// than the program meant, which the offset check (Linux's too) lets
    /// through when the offset happens to be valid.
    pub warnings: Vec<String>,
    /// The log (empty unless `log_level > 0`).
    pub log: String,
}

/// The rule a rejected program broke.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RejectKind {
    /// Bad control flow: jumps out of range, unreachable code, fall-through off the end.
    Structure,
    /// An invalid instruction encoding or unknown opcode.
    InvalidInsn,
    /// Reading a register that holds nothing (or whose reference was released).
    UninitRegister,
    /// A write to the frame pointer r10.
    FramePointer,
    /// A load or store outside what the pointer allows.
    InvalidMemAccess,
    /// A store into read-only memory (context, kernel objects, `.rodata`).
    ReadOnly,
    /// Using a pointer that may be NULL without checking it.
    NullDeref,
    /// Forbidden arithmetic on a pointer.
    PointerArith,
    /// A pointer value escaping (into a map, as a return value, by comparison).
    PointerLeak,
    /// Stack misuse: uninitialised read, bad spill, out of bounds.
    Stack,
    /// A bad helper/kfunc/function call or argument.
    Call,
    /// An untrusted (walked) pointer where a trusted one is required.
    Trust,
    /// A kfunc not available to this struct_ops type.
    Scope,
    /// A sleepable kfunc in a non-sleepable program or an RCU section.
    Sleepable,
    /// RCU read lock misuse.
    Rcu,
    /// Reference leaks, use after release, double release, iterator misuse.
    Reference,
    /// The return value is not allowed for the callback.
    ReturnValue,
    /// A loop that provably never ends.
    InfiniteLoop,
    /// Over the processed-instruction budget or too many pending branches.
    TooComplex,
}

/// Why and where a program was rejected.
#[derive(Clone, Debug)]
pub struct Rejection {
    /// Program name.
    pub program: String,
    /// The broken rule.
    pub kind: RejectKind,
    /// Instruction index.
    pub insn: usize,
    /// Its disassembly.
    pub disasm: String,
    /// The C source line, when line info was given.
    pub source: Option<SourceLine>,
    /// Register state at the failure, kernel style.
    pub regs: String,
    /// One-sentence reason.
    pub reason: String,
    /// Instructions processed before the failure.
    pub insns_processed: u64,
    /// The full log when `log_level > 0`.
    pub log: String,
}

/// A verification failure.
#[derive(Clone, Debug, thiserror::Error)]
pub enum VerifyError {
    /// The struct_ops type or callback is not part of the host ABI.
    #[error("unknown struct_ops callback {ops}.{member}")]
    UnknownHook {
        /// struct_ops type name.
        ops: String,
        /// Member name.
        member: String,
    },
    /// The program breaks a safety rule.
    #[error("{0}")]
    Rejected(Box<Rejection>),
}

impl VerifyError {
    /// The rejection, if the program was rejected.
    pub fn rejection(&self) -> Option<&Rejection> {
        match self {
            VerifyError::Rejected(r) => Some(r),
            VerifyError::UnknownHook { .. } => None,
        }
    }
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if !self.log.is_empty() {
            writeln!(f, "{}", self.log.trim_end())?;
        }
        writeln!(f, "program {}: verification failed", self.program)?;
        if let Some(s) = &self.source {
            writeln!(f, "; {} @ {}:{}", s.text.trim(), s.file, s.line)?;
        }
        writeln!(f, "{}: {}", self.insn, self.disasm)?;
        if !self.regs.is_empty() {
            writeln!(f, "{}", self.regs)?;
        }
        writeln!(f, "{}", self.reason)?;
        write!(f, "processed {} insns", self.insns_processed)
    }
}

/// What a global function's parameter is, from its BTF prototype and
/// `__arg_*` tags (Linux's `btf_prepare_func_args()`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum GlobalArg {
    /// An integer or enum.
    Scalar,
    /// `__arg_ctx`: the program's context.
    Ctx,
    /// `__arg_trusted`: a trusted pointer to the named kernel struct.
    Trusted {
        /// Struct name in the host types.
        ty: String,
        /// `__arg_nullable`: NULL is allowed (and must be checked).
        nullable: bool,
    },
    /// A plain pointer: memory of `size` bytes (the pointee's size), NULL
    /// allowed (and to be checked) unless `__arg_nonnull`.
    Mem {
        /// Bytes.
        size: u32,
        /// May be NULL.
        nullable: bool,
    },
    /// A parameter Linux cannot type (e.g. `void *` without a tag): every
    /// call is refused with this reason.
    Unsupported(String),
}

/// A global (non-static) subprogram. Linux verifies it once, on its own,
/// against its BTF prototype; callers only have to match the prototype and
/// get an unknown scalar back.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GlobalFunc {
    /// First instruction.
    pub insn: usize,
    /// Function name for messages.
    pub name: String,
    /// Parameters, in order.
    pub params: Vec<GlobalArg>,
    /// Returns `void` (Linux refuses every call of such a global function).
    pub returns_void: bool,
}

/// Verifies one program.
pub fn verify(input: &ProgramInput<'_>, opts: &Options) -> Result<Report, VerifyError> {
    check::Verifier::run(input, &[], opts)
}

/// Verifies one program whose global subprograms are `globals` (from the
/// object's BTF): each called one is verified once against its prototype.
pub fn verify_with_globals(
    input: &ProgramInput<'_>,
    globals: &[GlobalFunc],
    opts: &Options,
) -> Result<Report, VerifyError> {
    check::Verifier::run(input, globals, opts)
}
