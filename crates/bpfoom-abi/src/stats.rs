//! Stat and event indexes a policy passes to the memcg kfuncs.
//!
//! Names follow the kernel's enums so upstream policies compile unchanged;
//! values are bpfoom's own (a policy never depends on them: it uses the names
//! from `bpf_oom.h`, whose values a test checks against these tables). Each entry
//! also says which cgroupfs key carries it, so host backends need no second
//! table. `v1` is the cgroup v1 `memory.stat` key where one exists.

/// One index of a stat or event enum.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StatIndex {
    /// Kernel enumerator name, e.g. `NR_FILE_PAGES`.
    pub name: &'static str,
    /// The value the policy passes (its position in the enum).
    pub value: u32,
    /// Key in cgroup v2 `memory.stat` / `memory.events`.
    pub v2: &'static str,
    /// Key in cgroup v1 `memory.stat` / `memory.oom_control`, if v1 has it.
    pub v1: Option<&'static str>,
}

macro_rules! table {
    ($(#[$m:meta])* $vis:vis static $table:ident = [$(($name:ident, $v2:literal, $v1:expr)),* $(,)?];) => {
        $(#[$m])* $vis static $table: &[StatIndex] = {
            #[allow(non_camel_case_types, clippy::upper_case_acronyms)]
            enum Pos { $($name),* }
            &[$(StatIndex { name: stringify!($name), value: Pos::$name as u32, v2: $v2, v1: $v1 }),*]
        };
    };
}

table! {
    /// `bpf_mem_cgroup_page_state` indexes: `enum node_stat_item` followed by
    /// `enum memcg_stat_item` (the kernel numbers the second after the first).
    pub static PAGE_STATE = [
        (NR_INACTIVE_ANON, "inactive_anon", Some("inactive_anon")),
        (NR_ACTIVE_ANON, "active_anon", Some("active_anon")),
        (NR_INACTIVE_FILE, "inactive_file", Some("inactive_file")),
        (NR_ACTIVE_FILE, "active_file", Some("active_file")),
        (NR_UNEVICTABLE, "unevictable", Some("unevictable")),
        (NR_SLAB_RECLAIMABLE_B, "slab_reclaimable", None),
        (NR_SLAB_UNRECLAIMABLE_B, "slab_unreclaimable", None),
        (WORKINGSET_REFAULT_ANON, "workingset_refault_anon", None),
        (WORKINGSET_REFAULT_FILE, "workingset_refault_file", None),
        (NR_ANON_MAPPED, "anon", Some("rss")),
        (NR_FILE_MAPPED, "file_mapped", Some("mapped_file")),
        (NR_FILE_PAGES, "file", Some("cache")),
        (NR_FILE_DIRTY, "file_dirty", Some("dirty")),
        (NR_WRITEBACK, "file_writeback", Some("writeback")),
        (NR_SHMEM, "shmem", Some("shmem")),
        (NR_SHMEM_THPS, "shmem_thp", None),
        (NR_FILE_THPS, "file_thp", None),
        (NR_ANON_THPS, "anon_thp", Some("rss_huge")),
        (NR_KERNEL_STACK_KB, "kernel_stack", None),
        (NR_PAGETABLE, "pagetables", None),
        (NR_SWAPCACHE, "swapcached", None),
        (MEMCG_SWAP, "swap", Some("swap")),
        (MEMCG_SOCK, "sock", None),
        (MEMCG_PERCPU_B, "percpu", None),
        (MEMCG_VMALLOC, "vmalloc", None),
        (MEMCG_KMEM, "kernel", None),
        (MEMCG_ZSWAP_B, "zswap", None),
    ];
}

table! {
    /// `bpf_mem_cgroup_vm_events` indexes (`enum vm_event_item`).
    pub static VM_EVENTS = [
        (PGPGIN, "pgpgin", Some("pgpgin")),
        (PGPGOUT, "pgpgout", Some("pgpgout")),
        (PSWPIN, "pswpin", None),
        (PSWPOUT, "pswpout", None),
        (PGFAULT, "pgfault", Some("pgfault")),
        (PGMAJFAULT, "pgmajfault", Some("pgmajfault")),
        (PGREFILL, "pgrefill", None),
        (PGSTEAL_KSWAPD, "pgsteal_kswapd", None),
        (PGSTEAL_DIRECT, "pgsteal_direct", None),
        (PGSTEAL_KHUGEPAGED, "pgsteal_khugepaged", None),
        (PGSCAN_KSWAPD, "pgscan_kswapd", None),
        (PGSCAN_DIRECT, "pgscan_direct", None),
        (PGSCAN_KHUGEPAGED, "pgscan_khugepaged", None),
        (PGSCAN_ANON, "pgscan_anon", None),
        (PGSCAN_FILE, "pgscan_file", None),
        (PGSTEAL_ANON, "pgsteal_anon", None),
        (PGSTEAL_FILE, "pgsteal_file", None),
        (PGACTIVATE, "pgactivate", None),
        (PGDEACTIVATE, "pgdeactivate", None),
        (PGLAZYFREE, "pglazyfree", None),
        (PGLAZYFREED, "pglazyfreed", None),
        (THP_FAULT_ALLOC, "thp_fault_alloc", None),
        (THP_COLLAPSE_ALLOC, "thp_collapse_alloc", None),
    ];
}

table! {
    /// `bpf_mem_cgroup_memory_events` indexes (`enum memcg_memory_event`),
    /// from `memory.events` (v2) or `memory.oom_control`/`memory.failcnt` (v1).
    pub static MEMORY_EVENTS = [
        (MEMCG_LOW, "low", None),
        (MEMCG_HIGH, "high", None),
        (MEMCG_MAX, "max", Some("failcnt")),
        (MEMCG_OOM, "oom", None),
        (MEMCG_OOM_KILL, "oom_kill", Some("oom_kill")),
        (MEMCG_OOM_GROUP_KILL, "oom_group_kill", None),
        (MEMCG_SWAP_HIGH, "swap_high", None),
        (MEMCG_SWAP_MAX, "swap_max", None),
        (MEMCG_SWAP_FAIL, "swap_fail", None),
    ];
}

/// PSI resources for `bpf_psi_create_trigger` (`enum psi_res`).
pub static PSI_RESOURCES: &[(&str, u32, &str)] = &[
    ("PSI_IO", 0, "io"),
    ("PSI_MEM", 1, "memory"),
    ("PSI_CPU", 2, "cpu"),
];

/// `enum oom_constraint`, the values of `oc->constraint`.
pub static OOM_CONSTRAINTS: &[(&str, u32)] = &[
    ("CONSTRAINT_NONE", 0),
    ("CONSTRAINT_CPUSET", 1),
    ("CONSTRAINT_MEMORY_POLICY", 2),
    ("CONSTRAINT_MEMCG", 3),
];

/// Looks an index up in one of the tables above by value.
pub fn by_value(table: &'static [StatIndex], value: u32) -> Option<&'static StatIndex> {
    table.get(value as usize).filter(|s| s.value == value)
}

/// Looks an index up in one of the tables above by kernel name.
pub fn by_name(table: &'static [StatIndex], name: &str) -> Option<&'static StatIndex> {
    table.iter().find(|s| s.name == name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_positions() {
        for t in [PAGE_STATE, VM_EVENTS, MEMORY_EVENTS] {
            for (i, s) in t.iter().enumerate() {
                assert_eq!(s.value as usize, i, "{}", s.name);
                assert_eq!(by_value(t, s.value), Some(s));
                assert_eq!(by_name(t, s.name), Some(s));
            }
            assert!(by_value(t, t.len() as u32).is_none());
        }
        assert_eq!(
            by_name(PAGE_STATE, "NR_FILE_PAGES").map(|s| s.v2),
            Some("file")
        );
    }
}
