//! The BPF helpers bpfoom implements, with Linux's numbering and prototypes.
//!
//! Policies call helpers through `<bpf/bpf_helper_defs.h>`, which hard-codes
//! the Linux ids, so the ids here must be the kernel's.

/// What a helper argument accepts (kernel `ARG_*` names).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Arg {
    /// `ARG_CONST_MAP_PTR`: a map reference from `ld_imm64`.
    ConstMapPtr,
    /// `ARG_PTR_TO_MAP_KEY`: readable memory of the map's key size.
    MapKey,
    /// `ARG_PTR_TO_MAP_VALUE`: readable memory of the map's value size.
    MapValue,
    /// `ARG_PTR_TO_MEM | MEM_RDONLY`: readable memory, size in the next argument.
    ReadMem,
    /// `ARG_CONST_SIZE`: a known, positive size of the previous memory argument.
    ConstSize,
    /// `ARG_CONST_SIZE_OR_ZERO`: as above, zero allowed.
    ConstSizeOrZero,
    /// `ARG_CONST_ALLOC_SIZE_OR_ZERO`: a constant size for an allocation.
    ConstAllocSizeOrZero,
    /// `ARG_PTR_TO_ALLOC_MEM | OBJ_RELEASE`: a ring buffer record, released by the call.
    ReleaseRingbufRecord,
    /// `ARG_ANYTHING`: any initialised value (a pointer too: privileged loaders).
    Anything,
    /// `ARG_PTR_TO_UNINIT_MEM`: memory the helper writes, size in the next
    /// argument (the bytes need not be initialised before the call).
    UninitMem,
    /// `ARG_PTR_TO_CONST_STR`: a NUL-terminated string at a constant offset
    /// in read-only global data (`.rodata`).
    ConstStr,
    /// `ARG_PTR_TO_SPIN_LOCK`: the `struct bpf_spin_lock` field of a map value.
    SpinLock,
    /// `ARG_PTR_TO_FUNC`: a static subprogram (`ld_imm64` with `BPF_PSEUDO_FUNC`).
    Func,
    /// `ARG_PTR_TO_STACK_OR_NULL`: a pointer into the stack, or NULL.
    StackOrNull,
}

/// What a helper returns.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ret {
    /// `RET_INTEGER`.
    Integer,
    /// `RET_VOID`.
    Void,
    /// `RET_PTR_TO_MAP_VALUE_OR_NULL`.
    MapValueOrNull,
    /// `RET_PTR_TO_ALLOC_MEM_OR_NULL`: a ring buffer record (an acquired
    /// reference) of the size passed in the second argument.
    RingbufRecordOrNull,
    /// `RET_PTR_TO_BTF_ID_TRUSTED`: a trusted, never-NULL pointer to the
    /// named kernel struct (no reference is taken).
    TrustedObject(&'static str),
}

/// One helper.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Helper {
    /// Linux helper id (`BPF_FUNC_*`).
    pub id: u32,
    /// Linux name without the `bpf_` prefix, as in `BPF_FUNC_<name>`.
    pub name: &'static str,
    /// Arguments r1.. in order.
    pub args: &'static [Arg],
    /// Return kind.
    pub ret: Ret,
}

use Arg::*;

/// The helpers bpfoom programs may call.
pub static HELPERS: &[Helper] = &[
    Helper {
        id: 1,
        name: "map_lookup_elem",
        args: &[ConstMapPtr, MapKey],
        ret: Ret::MapValueOrNull,
    },
    Helper {
        id: 2,
        name: "map_update_elem",
        args: &[ConstMapPtr, MapKey, MapValue, Anything],
        ret: Ret::Integer,
    },
    Helper {
        id: 3,
        name: "map_delete_elem",
        args: &[ConstMapPtr, MapKey],
        ret: Ret::Integer,
    },
    Helper {
        id: 5,
        name: "ktime_get_ns",
        args: &[],
        ret: Ret::Integer,
    },
    Helper {
        id: 6,
        name: "trace_printk",
        args: &[ReadMem, ConstSize, Anything, Anything, Anything],
        ret: Ret::Integer,
    },
    Helper {
        id: 7,
        name: "get_prandom_u32",
        args: &[],
        ret: Ret::Integer,
    },
    Helper {
        id: 8,
        name: "get_smp_processor_id",
        args: &[],
        ret: Ret::Integer,
    },
    // bpf_spin_lock(struct bpf_spin_lock *lock): one lock at a time, no
    // calls but the unlock while it is held, released before exit.
    Helper {
        id: 93,
        name: "spin_lock",
        args: &[SpinLock],
        ret: Ret::Void,
    },
    Helper {
        id: 94,
        name: "spin_unlock",
        args: &[SpinLock],
        ret: Ret::Void,
    },
    // bpf_probe_read_kernel(dst, size, unsafe_ptr): copies `size` bytes; a
    // fault zeroes `dst` and returns -EFAULT.
    Helper {
        id: 113,
        name: "probe_read_kernel",
        args: &[UninitMem, ConstSizeOrZero, Anything],
        ret: Ret::Integer,
    },
    // bpf_probe_read_kernel_str(dst, size, unsafe_ptr): the string with its
    // NUL (at most size - 1 bytes of it); returns the length copied
    // including the NUL, or -EFAULT with `dst` zeroed.
    Helper {
        id: 115,
        name: "probe_read_kernel_str",
        args: &[UninitMem, ConstSizeOrZero, Anything],
        ret: Ret::Integer,
    },
    Helper {
        id: 125,
        name: "ktime_get_boot_ns",
        args: &[],
        ret: Ret::Integer,
    },
    Helper {
        id: 130,
        name: "ringbuf_output",
        args: &[ConstMapPtr, ReadMem, ConstSizeOrZero, Anything],
        ret: Ret::Integer,
    },
    Helper {
        id: 131,
        name: "ringbuf_reserve",
        args: &[ConstMapPtr, ConstAllocSizeOrZero, Anything],
        ret: Ret::RingbufRecordOrNull,
    },
    Helper {
        id: 132,
        name: "ringbuf_submit",
        args: &[ReleaseRingbufRecord, Anything],
        ret: Ret::Void,
    },
    Helper {
        id: 133,
        name: "ringbuf_discard",
        args: &[ReleaseRingbufRecord, Anything],
        ret: Ret::Void,
    },
    Helper {
        id: 134,
        name: "ringbuf_query",
        args: &[ConstMapPtr, Anything],
        ret: Ret::Integer,
    },
    // In an OOM handler: the allocating task when the host knows it (see
    // bpf_oom.h for the stand-in otherwise).
    Helper {
        id: 158,
        name: "get_current_task_btf",
        args: &[],
        ret: Ret::TrustedObject("task_struct"),
    },
    // bpf_loop(nr_loops, callback_fn, callback_ctx, flags): calls
    // `long callback_fn(u64 index, void *ctx)` until it returns 1; returns
    // the number of calls, -E2BIG above 1 << 23 loops, -EINVAL for flags.
    Helper {
        id: 181,
        name: "loop",
        args: &[Anything, Func, StackOrNull, Anything],
        ret: Ret::Integer,
    },
    // bpf_strncmp(s1, s1_sz, s2): strncmp(s1, s2, s1_sz) against a
    // constant string; -1, 0 or 1.
    Helper {
        id: 182,
        name: "strncmp",
        args: &[ReadMem, ConstSize, ConstStr],
        ret: Ret::Integer,
    },
];

/// `BPF_MAX_LOOPS`: the most iterations `bpf_loop` and the numbers
/// iterator allow (8M).
pub const BPF_MAX_LOOPS: u64 = 1 << 23;

/// Looks a helper up by Linux id.
pub fn by_id(id: u32) -> Option<&'static Helper> {
    HELPERS.iter().find(|h| h.id == id)
}

/// Looks a helper up by name, with or without the `bpf_` prefix.
pub fn by_name(name: &str) -> Option<&'static Helper> {
    let name = name.strip_prefix("bpf_").unwrap_or(name);
    HELPERS.iter().find(|h| h.name == name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookups_and_size_pairs() {
        assert_eq!(by_id(1).map(|h| h.name), Some("map_lookup_elem"));
        assert_eq!(by_name("bpf_ringbuf_reserve").map(|h| h.id), Some(131));
        assert!(by_id(4).is_none());
        // Linux's BPF_FUNC_* numbers (include/uapi/linux/bpf.h).
        for (id, name) in [
            (93, "spin_lock"),
            (94, "spin_unlock"),
            (113, "probe_read_kernel"),
            (115, "probe_read_kernel_str"),
            (158, "get_current_task_btf"),
            (181, "loop"),
            (182, "strncmp"),
        ] {
            assert_eq!(by_id(id).map(|h| h.name), Some(name));
        }
        for h in HELPERS {
            assert!(h.args.len() <= 5);
            for (i, a) in h.args.iter().enumerate() {
                if matches!(a, ConstSize | ConstSizeOrZero) {
                    assert!(matches!(h.args[i - 1], ReadMem | UninitMem), "{}", h.name);
                }
            }
        }
    }
}
