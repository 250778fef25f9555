//! Every kfunc a bpfoom policy may call.
//!
//! Names, parameter order and flags follow upstream (`mm/bpf_memcontrol.c`,
//! the "mm: BPF OOM" series, the generic cgroup/task kfuncs). The three
//! entries marked `extension` are bpfoom's own answers to upstream review.
//! The `id` stands in for the kernel's BTF id: the loader writes it into the
//! call instruction's `imm`, the verifier and the VM key on it. [`KfuncId`]
//! is the same list as an enum, generated with the table by one macro.

use crate::Scope;

/// Returns an acquired reference that must be released.
pub const KF_ACQUIRE: u32 = 1 << 0;
/// Releases the reference passed as its first pointer argument.
pub const KF_RELEASE: u32 = 1 << 1;
/// May return NULL: the program must check before use.
pub const KF_RET_NULL: u32 = 1 << 2;
/// Pointer arguments must be trusted (not walked from another object).
pub const KF_TRUSTED_ARGS: u32 = 1 << 4;
/// May sleep: only sleepable programs, never inside an RCU read section.
pub const KF_SLEEPABLE: u32 = 1 << 5;
/// Arguments may be RCU-protected pointers (not only trusted ones).
pub const KF_RCU: u32 = 1 << 7;
/// Constructor of an open-coded iterator.
pub const KF_ITER_NEW: u32 = 1 << 8;
/// Step of an open-coded iterator.
pub const KF_ITER_NEXT: u32 = 1 << 9;
/// Destructor of an open-coded iterator.
pub const KF_ITER_DESTROY: u32 = 1 << 10;
/// Must be called inside an RCU read section in sleepable programs.
pub const KF_RCU_PROTECTED: u32 = 1 << 11;

/// What a kfunc parameter accepts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Arg {
    /// Any scalar (the C type only fixes its width).
    Scalar,
    /// A pointer to the named kernel struct.
    Object {
        /// Struct name in [`crate::types::HostTypes`].
        ty: &'static str,
        /// `__nullable`: NULL is allowed.
        nullable: bool,
    },
    /// `__str`: a constant NUL-terminated string in read-only program memory.
    Str {
        /// NULL is allowed.
        nullable: bool,
    },
    /// A plain pointer to a scalar type without `__str` or a size argument
    /// (`const char *text`): as in Linux, memory of `sizeof(*arg)` bytes on
    /// the stack or in a writable map value.
    Mem {
        /// `sizeof(*arg)`.
        size: u32,
        /// `__nullable`: NULL is allowed.
        nullable: bool,
    },
    /// A pointer to an iterator slot on the stack (`struct bpf_iter_<name>`).
    Iter(&'static str),
}

/// What a kfunc returns.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ret {
    /// Nothing.
    Void,
    /// An integer of this many bytes.
    Scalar {
        /// Width in bytes.
        size: u8,
        /// Signedness.
        signed: bool,
    },
    /// A `bool`.
    Bool,
    /// A pointer to the named kernel struct.
    Object(&'static str),
    /// A pointer to `size` bytes of read-only memory (`int *`: Linux's
    /// `PTR_TO_MEM | MEM_RDONLY` for a pointer to a scalar type).
    Mem {
        /// Bytes the pointer covers.
        size: u32,
    },
}

/// One kfunc.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Kfunc {
    /// Stand-in for the BTF id (stable within a bpfoom version).
    pub id: u32,
    /// The same kfunc as an enum, for exhaustive dispatch.
    pub kind: KfuncId,
    /// Kernel name.
    pub name: &'static str,
    /// Parameters: C name and kind.
    pub params: &'static [(&'static str, Arg)],
    /// Return kind.
    pub ret: Ret,
    /// `KF_*` flags.
    pub flags: u32,
    /// Which programs may call it.
    pub scope: Scope,
    /// A bpfoom extension (not in upstream).
    pub extension: bool,
}

impl Kfunc {
    /// True when any of `flags` is set.
    pub const fn has(&self, flags: u32) -> bool {
        self.flags & flags != 0
    }
}

const fn obj(ty: &'static str) -> Arg {
    Arg::Object {
        ty,
        nullable: false,
    }
}
const INT: Ret = Ret::Scalar {
    size: 4,
    signed: true,
};
const ULONG: Ret = Ret::Scalar {
    size: 8,
    signed: false,
};

/// Builds [`KfuncId`] and [`KFUNCS`] from one list, so a kfunc's name, id
/// and prototype cannot drift apart: the enum is what the engine matches on
/// exhaustively, the table is what the loader, verifier and VM read.
macro_rules! kfuncs {
    ($($name:ident($($p:ident: $a:expr),*) -> $r:expr, $flags:expr, $scope:ident, $ext:expr;)*) => {
        /// Every kfunc of [`KFUNCS`], one variant per entry, named exactly as
        /// the kernel names it (hence not camel case): matching on it
        /// exhaustively makes the compiler prove a dispatcher implements
        /// every kfunc of the table. The id is position + 1 (0 is never a
        /// kfunc).
        #[allow(non_camel_case_types)]
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum KfuncId {
            $(
                #[doc = concat!("`", stringify!($name), "`.")]
                $name,
            )*
        }

        impl KfuncId {
            /// Every variant, in id order (the order of [`KFUNCS`]).
            pub const ALL: &'static [KfuncId] = &[$(KfuncId::$name),*];

            /// The stand-in BTF id written into call instructions.
            pub const fn id(self) -> u32 {
                self as u32 + 1
            }

            /// The variant with stand-in BTF id `id`.
            pub fn from_id(id: u32) -> Option<Self> {
                Self::ALL.get((id as usize).checked_sub(1)?).copied()
            }

            /// Kernel name.
            pub const fn name(self) -> &'static str {
                match self {
                    $(KfuncId::$name => stringify!($name),)*
                }
            }

            /// The table entry.
            pub fn kfunc(self) -> &'static Kfunc {
                &KFUNCS[self as usize]
            }
        }

        /// The table, ordered by id (id = position + 1; 0 is never a kfunc).
        pub static KFUNCS: &[Kfunc] = &[$(Kfunc {
            id: KfuncId::$name.id(),
            kind: KfuncId::$name,
            name: stringify!($name),
            params: &[$((stringify!($p), $a)),*],
            ret: $r,
            flags: $flags,
            scope: Scope::$scope,
            extension: $ext,
        }),*];
    };
}

kfuncs! {
    bpf_oom_kill_process(oc: obj("oom_control"), task: obj("task_struct"), message__str: Arg::Str { nullable: false })
        -> INT, KF_SLEEPABLE | KF_TRUSTED_ARGS, Oom, false;
    bpf_task_is_oom_victim(task: obj("task_struct")) -> Ret::Bool, 0, Any, false;
    // Takes the OOM lock (a mutex) and runs the whole chain: it sleeps.
    bpf_out_of_memory(memcg__nullable: Arg::Object { ty: "mem_cgroup", nullable: true }, order: Arg::Scalar,
        flags: Arg::Scalar, constraint_text__nullable: Arg::Mem { size: 1, nullable: true })
        -> INT, KF_SLEEPABLE | KF_TRUSTED_ARGS, Psi, false;
    bpf_psi_create_trigger(psi: obj("bpf_psi"), cgroup_id: Arg::Scalar, resource: Arg::Scalar,
        threshold_us: Arg::Scalar, window_us: Arg::Scalar) -> INT, KF_TRUSTED_ARGS, Psi, false;
    bpf_get_root_mem_cgroup() -> Ret::Object("mem_cgroup"), KF_ACQUIRE | KF_RET_NULL, Any, false;
    bpf_get_mem_cgroup(css: obj("cgroup_subsys_state")) -> Ret::Object("mem_cgroup"),
        KF_ACQUIRE | KF_RET_NULL | KF_RCU, Any, false;
    bpf_put_mem_cgroup(memcg: obj("mem_cgroup")) -> Ret::Void, KF_RELEASE, Any, false;
    bpf_mem_cgroup_usage(memcg: obj("mem_cgroup")) -> ULONG, 0, Any, false;
    bpf_mem_cgroup_page_state(memcg: obj("mem_cgroup"), idx: Arg::Scalar) -> ULONG, 0, Any, false;
    bpf_mem_cgroup_vm_events(memcg: obj("mem_cgroup"), event: Arg::Scalar) -> ULONG, 0, Any, false;
    bpf_mem_cgroup_memory_events(memcg: obj("mem_cgroup"), event: Arg::Scalar) -> ULONG, 0, Any, false;
    bpf_mem_cgroup_flush_stats(memcg: obj("mem_cgroup")) -> Ret::Void, KF_SLEEPABLE, Any, false;
    bpf_cgroup_from_id(cgid: Arg::Scalar) -> Ret::Object("cgroup"), KF_ACQUIRE | KF_RET_NULL, Any, false;
    bpf_cgroup_release(cgrp: obj("cgroup")) -> Ret::Void, KF_RELEASE, Any, false;
    bpf_task_acquire(p: obj("task_struct")) -> Ret::Object("task_struct"),
        KF_ACQUIRE | KF_RCU | KF_RET_NULL, Any, false;
    bpf_task_release(p: obj("task_struct")) -> Ret::Void, KF_RELEASE, Any, false;
    bpf_task_from_pid(pid: Arg::Scalar) -> Ret::Object("task_struct"), KF_ACQUIRE | KF_RET_NULL, Any, false;
    bpf_rcu_read_lock() -> Ret::Void, 0, Any, false;
    bpf_rcu_read_unlock() -> Ret::Void, 0, Any, false;
    bpf_iter_css_new(it: Arg::Iter("css"), start: obj("cgroup_subsys_state"), flags: Arg::Scalar)
        -> INT, KF_ITER_NEW | KF_TRUSTED_ARGS | KF_RCU_PROTECTED, Any, false;
    bpf_iter_css_next(it: Arg::Iter("css")) -> Ret::Object("cgroup_subsys_state"),
        KF_ITER_NEXT | KF_RET_NULL, Any, false;
    bpf_iter_css_destroy(it: Arg::Iter("css")) -> Ret::Void, KF_ITER_DESTROY, Any, false;
    bpf_iter_css_task_new(it: Arg::Iter("css_task"), css: obj("cgroup_subsys_state"), flags: Arg::Scalar)
        -> INT, KF_ITER_NEW | KF_TRUSTED_ARGS, Any, false;
    bpf_iter_css_task_next(it: Arg::Iter("css_task")) -> Ret::Object("task_struct"),
        KF_ITER_NEXT | KF_RET_NULL, Any, false;
    bpf_iter_css_task_destroy(it: Arg::Iter("css_task")) -> Ret::Void, KF_ITER_DESTROY, Any, false;
    // Generic kfuncs real policies use (kernel/bpf/helpers.c, kernel/bpf/task_iter.c).
    bpf_iter_num_new(it: Arg::Iter("num"), start: Arg::Scalar, end: Arg::Scalar) -> INT, KF_ITER_NEW, Any, false;
    bpf_iter_num_next(it: Arg::Iter("num")) -> Ret::Mem { size: 4 }, KF_ITER_NEXT | KF_RET_NULL, Any, false;
    bpf_iter_num_destroy(it: Arg::Iter("num")) -> Ret::Void, KF_ITER_DESTROY, Any, false;
    bpf_iter_task_new(it: Arg::Iter("task"), task__nullable: Arg::Object { ty: "task_struct", nullable: true },
        flags: Arg::Scalar) -> INT, KF_ITER_NEW | KF_TRUSTED_ARGS | KF_RCU_PROTECTED, Any, false;
    bpf_iter_task_next(it: Arg::Iter("task")) -> Ret::Object("task_struct"), KF_ITER_NEXT | KF_RET_NULL, Any, false;
    bpf_iter_task_destroy(it: Arg::Iter("task")) -> Ret::Void, KF_ITER_DESTROY, Any, false;
    bpf_task_under_cgroup(task: obj("task_struct"), ancestor: obj("cgroup"))
        -> Ret::Scalar { size: 8, signed: true }, KF_RCU, Any, false;
    bpf_cgroup_ancestor(cgrp: obj("cgroup"), level: Arg::Scalar) -> Ret::Object("cgroup"),
        KF_ACQUIRE | KF_RCU | KF_RET_NULL, Any, false;
    bpf_oom_kill_cgroup(oc: obj("oom_control"), cgrp: obj("cgroup"), message__str: Arg::Str { nullable: false })
        -> INT, KF_SLEEPABLE | KF_TRUSTED_ARGS, Oom, true;
    bpf_mem_cgroup_raise_limit(oc: obj("oom_control"), memcg: obj("mem_cgroup"), bytes: Arg::Scalar)
        -> INT, KF_SLEEPABLE | KF_TRUSTED_ARGS, Oom, true;
    bpf_oom_badness(task: obj("task_struct"), totalpages: Arg::Scalar)
        -> Ret::Scalar { size: 8, signed: true }, 0, Any, true;
}

/// `bpf_iter_task_new` flags (kernel `enum bpf_iter_task_type`).
pub const BPF_TASK_ITER_ALL_PROCS: u32 = 0;
/// Every thread of every process.
pub const BPF_TASK_ITER_ALL_THREADS: u32 = 1;
/// Every thread of the given task's process.
pub const BPF_TASK_ITER_PROC_THREADS: u32 = 2;

/// Looks a kfunc up by kernel name.
pub fn by_name(name: &str) -> Option<&'static Kfunc> {
    KFUNCS.iter().find(|k| k.name == name)
}

/// Looks a kfunc up by id.
pub fn by_id(id: u32) -> Option<&'static Kfunc> {
    KFUNCS.get((id as usize).checked_sub(1)?)
}

/// The kfuncs that set `oc->bpf_memory_freed` when they succeed.
pub const MEMORY_RELEASING: &[&str] = &[
    "bpf_oom_kill_process",
    "bpf_oom_kill_cgroup",
    "bpf_mem_cgroup_raise_limit",
];

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::HostTypes;

    #[test]
    fn ids_are_dense_and_unique() {
        for (i, k) in KFUNCS.iter().enumerate() {
            assert_eq!(k.id as usize, i + 1);
            assert_eq!(by_id(k.id), Some(k));
            assert_eq!(by_name(k.name), Some(k));
            assert_eq!(k.kind.id(), k.id);
            assert_eq!(k.kind.name(), k.name);
            assert_eq!(KfuncId::from_id(k.id), Some(k.kind));
            assert_eq!(k.kind.kfunc(), k);
        }
        assert_eq!(KfuncId::ALL.len(), KFUNCS.len());
        assert_eq!(KfuncId::from_id(0), None);
        assert_eq!(KfuncId::from_id(KFUNCS.len() as u32 + 1), None);
        assert!(by_id(0).is_none());
        assert!(by_name("bpf_nope").is_none());
    }

    #[test]
    fn every_object_type_exists_on_the_host() {
        let h = HostTypes::get();
        for k in KFUNCS {
            for (_, a) in k.params {
                match a {
                    Arg::Object { ty, .. } => assert!(h.struct_id(ty).is_some(), "{ty}"),
                    Arg::Iter(n) => assert!(h.struct_id(&format!("bpf_iter_{n}")).is_some()),
                    _ => {}
                }
            }
            if let Ret::Object(ty) = k.ret {
                assert!(h.struct_id(ty).is_some(), "{ty}");
            }
        }
    }

    #[test]
    fn iterators_are_complete_and_flags_consistent() {
        for k in KFUNCS {
            if k.has(KF_ACQUIRE) {
                assert!(matches!(k.ret, Ret::Object(_)), "{}", k.name);
            }
            if k.has(KF_RELEASE) {
                assert!(
                    matches!(k.params.first(), Some((_, Arg::Object { .. }))),
                    "{}",
                    k.name
                );
            }
            if let Some(base) = k.name.strip_suffix("_new") {
                assert!(k.has(KF_ITER_NEW));
                assert!(by_name(&format!("{base}_next")).unwrap().has(KF_ITER_NEXT));
                assert!(by_name(&format!("{base}_destroy"))
                    .unwrap()
                    .has(KF_ITER_DESTROY));
            }
        }
        for name in MEMORY_RELEASING {
            assert_eq!(by_name(name).unwrap().scope, Scope::Oom);
        }
    }
}
