//! BPF map types bpfoom implements.
//!
//! One enum for the loader, the verifier and the VM: the map type numbers are
//! Linux UAPI (`enum bpf_map_type`), so they live with the rest of the ABI
//! rather than in the ELF loader, which lets the VM use them without depending
//! on the loader. `bpfoom_obj::MapKind` and `bpfoom_vm::MapKind` are this type.
//! Global data sections (`.data`, `.rodata`, `.bss`) are one-entry
//! [`MapKind::Array`]s, as in libbpf.

/// Supported map types (Linux `enum bpf_map_type` values in [`MapKind::linux_id`]).
///
/// The default is [`MapKind::Array`], the kind of global-data sections.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum MapKind {
    /// `BPF_MAP_TYPE_HASH`.
    Hash,
    /// `BPF_MAP_TYPE_ARRAY` (also global data sections).
    #[default]
    Array,
    /// `BPF_MAP_TYPE_PERCPU_ARRAY`.
    PercpuArray,
    /// `BPF_MAP_TYPE_LRU_HASH`.
    LruHash,
    /// `BPF_MAP_TYPE_RINGBUF`.
    Ringbuf,
}

impl MapKind {
    /// Every kind, in Linux number order.
    pub const ALL: [MapKind; 5] = [
        MapKind::Hash,
        MapKind::Array,
        MapKind::PercpuArray,
        MapKind::LruHash,
        MapKind::Ringbuf,
    ];

    /// From a Linux map type number ([`MapKind::linux_id`] is the one table
    /// of the numbers).
    pub fn from_linux(id: u32) -> Option<MapKind> {
        MapKind::ALL.into_iter().find(|k| k.linux_id() == id)
    }

    /// The Linux map type number.
    pub const fn linux_id(self) -> u32 {
        match self {
            MapKind::Hash => 1,
            MapKind::Array => 2,
            MapKind::PercpuArray => 6,
            MapKind::LruHash => 9,
            MapKind::Ringbuf => 27,
        }
    }

    /// Lower-case name as bpftool prints it.
    pub fn name(self) -> &'static str {
        match self {
            MapKind::Hash => "hash",
            MapKind::Array => "array",
            MapKind::PercpuArray => "percpu_array",
            MapKind::LruHash => "lru_hash",
            MapKind::Ringbuf => "ringbuf",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn map_kinds_round_trip() {
        for k in MapKind::ALL {
            assert_eq!(MapKind::from_linux(k.linux_id()), Some(k));
        }
        assert_eq!(MapKind::from_linux(12), None);
        assert_eq!(MapKind::from_linux(0), None);
        let ids: Vec<u32> = MapKind::ALL.iter().map(|k| k.linux_id()).collect();
        assert_eq!(ids, [1, 2, 6, 9, 27]);
    }
}
