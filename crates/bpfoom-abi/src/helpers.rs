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
    /// `ARG_ANYTHING`: any initialised scalar.
    Anything,
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
];

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
        for h in HELPERS {
            assert!(h.args.len() <= 5);
            for (i, a) in h.args.iter().enumerate() {
                if matches!(a, ConstSize | ConstSizeOrZero) {
                    assert_eq!(h.args[i - 1], ReadMem, "{}", h.name);
                }
            }
        }
    }
}
