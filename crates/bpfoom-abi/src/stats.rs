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
    /// Key in cgroup v2 `memory.stat` / `memory.events`, if v2 has it.
    pub v2: Option<&'static str>,
    /// Key in cgroup v1 `memory.stat` / `memory.oom_control`, if v1 has it.
    pub v1: Option<&'static str>,
}

macro_rules! table {
    ($(#[$m:meta])* $vis:vis static $table:ident = [$(($name:ident, $v2:expr, $v1:expr)),* $(,)?];) => {
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
    ///
    /// The node items follow the newest upstream tree that carries the BPF OOM
    /// series: Linux 6.18's order with the pgsteal/pgscan/pgrefill counters
    /// that "mm: move pgscan and pgsteal to node stats" moved out of
    /// `enum vm_event_item` (inserted after `PGDEMOTE_PROACTIVE`, as upstream
    /// does). The `*_BASE` aliases of the kernel enum are left out: they
    /// duplicate the first member of their group. Items with no cgroupfs
    /// counter (`v2`/`v1` `None`) make the kfunc return 0 on real hosts.
    pub static PAGE_STATE = [
        (NR_INACTIVE_ANON, Some("inactive_anon"), Some("inactive_anon")),
        (NR_ACTIVE_ANON, Some("active_anon"), Some("active_anon")),
        (NR_INACTIVE_FILE, Some("inactive_file"), Some("inactive_file")),
        (NR_ACTIVE_FILE, Some("active_file"), Some("active_file")),
        (NR_UNEVICTABLE, Some("unevictable"), Some("unevictable")),
        (NR_SLAB_RECLAIMABLE_B, Some("slab_reclaimable"), None),
        (NR_SLAB_UNRECLAIMABLE_B, Some("slab_unreclaimable"), None),
        (NR_ISOLATED_ANON, None, None),
        (NR_ISOLATED_FILE, None, None),
        (WORKINGSET_NODES, None, None),
        (WORKINGSET_REFAULT_ANON, Some("workingset_refault_anon"), Some("workingset_refault_anon")),
        (WORKINGSET_REFAULT_FILE, Some("workingset_refault_file"), Some("workingset_refault_file")),
        (WORKINGSET_ACTIVATE_ANON, Some("workingset_activate_anon"), None),
        (WORKINGSET_ACTIVATE_FILE, Some("workingset_activate_file"), None),
        (WORKINGSET_RESTORE_ANON, Some("workingset_restore_anon"), None),
        (WORKINGSET_RESTORE_FILE, Some("workingset_restore_file"), None),
        (WORKINGSET_NODERECLAIM, Some("workingset_nodereclaim"), None),
        (NR_ANON_MAPPED, Some("anon"), Some("rss")),
        (NR_FILE_MAPPED, Some("file_mapped"), Some("mapped_file")),
        (NR_FILE_PAGES, Some("file"), Some("cache")),
        (NR_FILE_DIRTY, Some("file_dirty"), Some("dirty")),
        (NR_WRITEBACK, Some("file_writeback"), Some("writeback")),
        (NR_SHMEM, Some("shmem"), Some("shmem")),
        (NR_SHMEM_THPS, Some("shmem_thp"), None),
        (NR_SHMEM_PMDMAPPED, None, None),
        (NR_FILE_THPS, Some("file_thp"), None),
        (NR_FILE_PMDMAPPED, None, None),
        (NR_ANON_THPS, Some("anon_thp"), Some("rss_huge")),
        (NR_VMSCAN_WRITE, None, None),
        (NR_VMSCAN_IMMEDIATE, None, None),
        (NR_DIRTIED, None, None),
        (NR_WRITTEN, None, None),
        (NR_THROTTLED_WRITTEN, None, None),
        (NR_KERNEL_MISC_RECLAIMABLE, None, None),
        (NR_FOLL_PIN_ACQUIRED, None, None),
        (NR_FOLL_PIN_RELEASED, None, None),
        (NR_KERNEL_STACK_KB, Some("kernel_stack"), None),
        (NR_PAGETABLE, Some("pagetables"), None),
        (NR_SECONDARY_PAGETABLE, Some("sec_pagetables"), None),
        (NR_IOMMU_PAGES, None, None),
        (NR_SWAPCACHE, Some("swapcached"), Some("swapcached")),
        (PGPROMOTE_SUCCESS, Some("pgpromote_success"), None),
        (PGPROMOTE_CANDIDATE, None, None),
        (PGPROMOTE_CANDIDATE_NRL, None, None),
        (PGDEMOTE_KSWAPD, Some("pgdemote_kswapd"), None),
        (PGDEMOTE_DIRECT, Some("pgdemote_direct"), None),
        (PGDEMOTE_KHUGEPAGED, Some("pgdemote_khugepaged"), None),
        (PGDEMOTE_PROACTIVE, Some("pgdemote_proactive"), None),
        (PGSTEAL_KSWAPD, Some("pgsteal_kswapd"), None),
        (PGSTEAL_DIRECT, Some("pgsteal_direct"), None),
        (PGSTEAL_KHUGEPAGED, Some("pgsteal_khugepaged"), None),
        (PGSTEAL_PROACTIVE, Some("pgsteal_proactive"), None),
        (PGSTEAL_ANON, Some("pgsteal_anon"), None),
        (PGSTEAL_FILE, Some("pgsteal_file"), None),
        (PGSCAN_KSWAPD, Some("pgscan_kswapd"), None),
        (PGSCAN_DIRECT, Some("pgscan_direct"), None),
        (PGSCAN_KHUGEPAGED, Some("pgscan_khugepaged"), None),
        (PGSCAN_PROACTIVE, Some("pgscan_proactive"), None),
        (PGSCAN_ANON, Some("pgscan_anon"), None),
        (PGSCAN_FILE, Some("pgscan_file"), None),
        (PGREFILL, Some("pgrefill"), None),
        (NR_HUGETLB, Some("hugetlb"), None),
        (NR_BALLOON_PAGES, None, None),
        (NR_KERNEL_FILE_PAGES, None, None),
        (MEMCG_SWAP, Some("swap"), Some("swap")),
        (MEMCG_SOCK, Some("sock"), None),
        (MEMCG_PERCPU_B, Some("percpu"), None),
        (MEMCG_VMALLOC, Some("vmalloc"), None),
        (MEMCG_KMEM, Some("kernel"), None),
        (MEMCG_ZSWAP_B, Some("zswap"), None),
        (MEMCG_ZSWAPPED, Some("zswapped"), None),
    ];
}

/// Number of `enum node_stat_item` members in [`PAGE_STATE`]: the first
/// `enum memcg_stat_item` value (`NR_VM_NODE_STAT_ITEMS` in the kernel).
pub const NR_VM_NODE_STAT_ITEMS: u32 = 64;

table! {
    /// `bpf_mem_cgroup_vm_events` indexes (`enum vm_event_item`): the events
    /// a memcg counts (the kernel's `memcg_vm_event_stat`), in the kernel's
    /// relative order. Values are bpfoom's own; a policy that needs the same
    /// object to run on a real kernel uses `bpf_core_enum_value()`.
    pub static VM_EVENTS = [
        (PGPGIN, Some("pgpgin"), Some("pgpgin")),
        (PGPGOUT, Some("pgpgout"), Some("pgpgout")),
        (PSWPIN, Some("pswpin"), None),
        (PSWPOUT, Some("pswpout"), None),
        (PGACTIVATE, Some("pgactivate"), None),
        (PGDEACTIVATE, Some("pgdeactivate"), None),
        (PGLAZYFREE, Some("pglazyfree"), None),
        (PGFAULT, Some("pgfault"), Some("pgfault")),
        (PGMAJFAULT, Some("pgmajfault"), Some("pgmajfault")),
        (PGLAZYFREED, Some("pglazyfreed"), None),
        (ZSWPIN, Some("zswpin"), None),
        (ZSWPOUT, Some("zswpout"), None),
        (ZSWPWB, Some("zswpwb"), None),
        (THP_FAULT_ALLOC, Some("thp_fault_alloc"), None),
        (THP_COLLAPSE_ALLOC, Some("thp_collapse_alloc"), None),
        (THP_SWPOUT, Some("thp_swpout"), None),
        (THP_SWPOUT_FALLBACK, Some("thp_swpout_fallback"), None),
    ];
}

table! {
    /// `bpf_mem_cgroup_memory_events` indexes (`enum memcg_memory_event`),
    /// from `memory.events` (v2) or `memory.oom_control`/`memory.failcnt` (v1).
    pub static MEMORY_EVENTS = [
        (MEMCG_LOW, Some("low"), None),
        (MEMCG_HIGH, Some("high"), None),
        (MEMCG_MAX, Some("max"), Some("failcnt")),
        (MEMCG_OOM, Some("oom"), None),
        (MEMCG_OOM_KILL, Some("oom_kill"), Some("oom_kill")),
        (MEMCG_OOM_GROUP_KILL, Some("oom_group_kill"), None),
        (MEMCG_SWAP_HIGH, Some("swap_high"), None),
        (MEMCG_SWAP_MAX, Some("swap_max"), None),
        (MEMCG_SWAP_FAIL, Some("swap_fail"), None),
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
            by_name(PAGE_STATE, "NR_FILE_PAGES").and_then(|s| s.v2),
            Some("file")
        );
        assert_eq!(
            by_name(PAGE_STATE, "MEMCG_SWAP").map(|s| s.value),
            Some(NR_VM_NODE_STAT_ITEMS)
        );
    }
}
