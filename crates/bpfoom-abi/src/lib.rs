//! The host "kernel" that bpfoom policies are written against, described once.
//!
//! Upstream, a BPF OOM policy is checked and relocated against the running
//! kernel's BTF. bpfoom runs policies in userspace, so it needs its own kernel:
//! this crate is that kernel's ABI, kept as data so that the loader (CO-RE),
//! the verifier (field access, kfunc prototypes) and the VM/engine (object
//! layout, kfunc dispatch) all read the same facts.
//!
//! - [`types`]: the synthetic BTF — layouts of `oom_control`, `task_struct`,
//!   `cgroup`, `mem_cgroup`, ... and the stat/event enums, with a BTF encoder.
//! - [`kfuncs`]: every kfunc a policy may call, with its id, prototype and flags.
//! - [`helpers`]: the subset of BPF helpers bpfoom implements.
//! - [`maps`]: the map types bpfoom implements.
//! - [`struct_ops`]: `bpf_oom_ops` and `bpf_psi_ops`, callback by callback.
//! - [`stats`]: stat/event index names and their cgroupfs keys.
//!
//! The C mirror of this crate is `bpf/include/bpf_oom.h`; tests keep the two in
//! step.

pub mod helpers;
pub mod kfuncs;
pub mod maps;
pub mod stats;
pub mod struct_ops;
pub mod types;

/// `handle_out_of_memory` return: the handler did not free memory.
pub const BPF_OOM_FAILED: i64 = 0;
/// `handle_out_of_memory` return: memory was freed (counts only if a
/// memory-releasing kfunc also set `oc->bpf_memory_freed`).
pub const BPF_OOM_PROCESSED: i64 = 1;
/// `handle_out_of_memory` return: memory will be freed soon; do nothing
/// destructive (bounded by the instance's backoff budget).
pub const BPF_OOM_BACKOFF: i64 = 2;

/// `bpf_out_of_memory` flag: wait for the OOM lock instead of failing with `-EBUSY`.
pub const BPF_OOM_FLAGS_WAIT_ON_OOM_LOCK: u64 = 1;
/// `bpf_psi_create_trigger` resource bit selecting the "full" (not "some") stall.
pub const BPF_PSI_FULL: u32 = 0x8000_0000;

/// Which program kinds may use a kfunc or implement a callback.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Scope {
    /// Any bpfoom program.
    Any,
    /// Only `bpf_oom_ops` programs.
    Oom,
    /// Only `bpf_psi_ops` programs.
    Psi,
}
