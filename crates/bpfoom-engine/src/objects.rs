//! Kernel objects as programs see them: host state laid out in VM memory
//! with the synthetic BTF's offsets (bpfoom-abi `types`), so a CO-RE
//! relocated field load is a plain load.
//!
//! Objects are materialized on demand during one program run and dropped
//! after it: a program cannot keep a kernel pointer across runs (the verifier
//! forbids storing pointers in maps), so every run sees fresh state.
//! Pointer fields a program may walk without a NULL check (`task->signal`,
//! `css->cgroup`, `cgroup->kn`) always point at a live object.

use std::collections::HashMap;
use std::sync::OnceLock;

use bpfoom_abi::types::HostTypes;
use bpfoom_vm::{Memory, ObjId, Perm};

use crate::host::{CgroupId, Host, Pid};

/// What an object stands for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Key {
    /// `struct cgroup` (its `self` css is at offset 0).
    Cgroup(CgroupId),
    /// `struct mem_cgroup` (its `css` is at offset 0).
    Memcg(CgroupId),
    /// `struct kernfs_node`.
    Kn(CgroupId),
    /// `struct task_struct`.
    Task(Pid),
    /// `struct signal_struct`.
    Signal(Pid),
    /// `struct mm_struct` of a process that has one (not a kernel thread,
    /// not exiting: `task->mm` is NULL for those, as in the kernel).
    Mm(Pid),
    /// Anything else the engine creates itself (oom_control, bpf_psi,
    /// psi_trigger, bpf_struct_ops_link, strings), numbered.
    Other(u32),
}

/// Field offsets and struct sizes used to lay objects out.
pub(crate) struct Layout {
    pub cgroup_size: usize,
    pub memcg_size: usize,
    pub kn_size: usize,
    pub task_size: usize,
    pub signal_size: usize,
    pub mm_size: usize,
    /// Bytes between `mm->rss_stat[i]` and `[i + 1]`.
    pub percpu_counter_size: usize,
    pub oc_size: usize,
    pub psi_size: usize,
    pub trigger_size: usize,
    pub link_size: usize,
    off: HashMap<(&'static str, &'static str), usize>,
}

const FIELDS: &[(&str, &[&str])] = &[
    (
        "cgroup",
        &[
            "self.cgroup",
            "self.parent",
            "self.id",
            "self.serial_nr",
            "self",
            "level",
            "max_depth",
            "nr_descendants",
            "nr_dying_descendants",
            "max_descendants",
            "kn",
        ],
    ),
    (
        "mem_cgroup",
        &[
            "css",
            "css.cgroup",
            "css.parent",
            "css.id",
            "css.serial_nr",
            "oom_group",
        ],
    ),
    ("kernfs_node", &["parent", "id"]),
    (
        "task_struct",
        &[
            "flags",
            "pid",
            "tgid",
            "real_parent",
            "group_leader",
            "signal",
            "comm",
            "mm",
        ],
    ),
    ("mm_struct", &["rss_stat", "total_vm", "pgtables_bytes"]),
    ("percpu_counter", &["count"]),
    ("signal_struct", &["oom_score_adj", "oom_score_adj_min"]),
    (
        "oom_control",
        &[
            "memcg",
            "gfp_mask",
            "order",
            "totalpages",
            "chosen_points",
            "constraint",
            "bpf_memory_freed",
            "bpf_handler_name",
        ],
    ),
    ("bpf_psi", &["cgroup_id"]),
    ("psi_trigger", &["state", "threshold", "win", "cgroup_id"]),
    ("bpf_struct_ops_link", &["map", "cgroup"]),
];

impl Layout {
    /// The layout, computed once from the host types.
    pub(crate) fn get() -> &'static Layout {
        static L: OnceLock<Layout> = OnceLock::new();
        L.get_or_init(|| {
            let h = HostTypes::get();
            let size = |s: &str| {
                h.struct_id(s)
                    .and_then(|id| h.size_of(id))
                    .expect("bpfoom-abi defines every struct the engine lays out")
                    as usize
            };
            let mut off = HashMap::new();
            for (s, fields) in FIELDS {
                for f in *fields {
                    let o = h
                        .offset_of(s, f)
                        .expect("bpfoom-abi defines every field the engine writes");
                    off.insert((*s, *f), o as usize);
                }
            }
            Layout {
                cgroup_size: size("cgroup"),
                memcg_size: size("mem_cgroup"),
                kn_size: size("kernfs_node"),
                task_size: size("task_struct"),
                signal_size: size("signal_struct"),
                mm_size: size("mm_struct"),
                percpu_counter_size: size("percpu_counter"),
                oc_size: size("oom_control"),
                psi_size: size("bpf_psi"),
                trigger_size: size("psi_trigger"),
                link_size: size("bpf_struct_ops_link"),
                off,
            }
        })
    }

    /// Offset of `s.f`; only the fields listed in `FIELDS` exist.
    pub(crate) fn off(&self, s: &'static str, f: &'static str) -> usize {
        self.off.get(&(s, f)).copied().unwrap_or(usize::MAX)
    }
}

/// Writes `size` little-endian bytes of `v` at `off`; ignores fields that
/// would not fit (impossible for the fixed layouts, but never panic).
pub(crate) fn put(buf: &mut [u8], off: usize, size: usize, v: u64) {
    if let Some(dst) = off.checked_add(size).and_then(|end| buf.get_mut(off..end)) {
        dst.copy_from_slice(&v.to_le_bytes()[..size]);
    }
}

/// The objects of one run.
#[derive(Default)]
pub(crate) struct Objects {
    map: HashMap<Key, (ObjId, u64)>,
    rev: HashMap<u64, Key>,
    next_other: u32,
}

impl Objects {
    /// The key of the object starting exactly at `addr`.
    pub(crate) fn key_at(&self, addr: u64) -> Option<Key> {
        self.rev.get(&addr).copied()
    }

    fn alloc(&mut self, mem: &mut Memory, key: Key, size: usize) -> (ObjId, u64) {
        let id = mem.add_object(&vec![0; size], Perm::ReadOnly);
        let addr = mem.object_addr(id).unwrap_or(0);
        self.map.insert(key, (id, addr));
        self.rev.insert(addr, key);
        (id, addr)
    }

    /// Registers an engine-made object with these bytes.
    pub(crate) fn add_other(&mut self, mem: &mut Memory, bytes: &[u8]) -> (Key, ObjId, u64) {
        self.next_other += 1;
        let key = Key::Other(self.next_other);
        let (id, addr) = self.alloc(mem, key, bytes.len());
        if let Some(b) = mem.object_mut(id) {
            b.copy_from_slice(bytes);
        }
        (key, id, addr)
    }

    /// Address of a host object, creating it (and what it points to) first.
    /// Cgroups and tasks that no longer exist become zeroed shells that
    /// still carry their id, so an offline handler can read it.
    pub(crate) fn ensure<H: Host + ?Sized>(&mut self, key: Key, host: &H, mem: &mut Memory) -> u64 {
        if let Some(&(_, addr)) = self.map.get(&key) {
            return addr;
        }
        let l = Layout::get();
        let size = match key {
            Key::Cgroup(_) => l.cgroup_size,
            Key::Memcg(_) => l.memcg_size,
            Key::Kn(_) => l.kn_size,
            Key::Task(_) => l.task_size,
            Key::Signal(_) => l.signal_size,
            Key::Mm(_) => l.mm_size,
            Key::Other(_) => return 0,
        };
        // Allocate before filling: objects point at themselves and at each other.
        let (id, addr) = self.alloc(mem, key, size);
        let mut b = vec![0u8; size];
        match key {
            Key::Cgroup(cg) => {
                let kn = self.ensure(Key::Kn(cg), host, mem);
                let parent = host
                    .parent(cg)
                    .map(|p| {
                        self.ensure(Key::Cgroup(p), host, mem) + l.off("cgroup", "self") as u64
                    })
                    .unwrap_or(0);
                let level = crate::host::ancestors(host, cg).len().saturating_sub(1);
                let alive = host.path(cg).is_some();
                let desc = if alive { host.nr_descendants(cg) } else { 0 };
                put(&mut b, l.off("cgroup", "self.cgroup"), 8, addr);
                put(&mut b, l.off("cgroup", "self.parent"), 8, parent);
                put(&mut b, l.off("cgroup", "self.id"), 4, cg);
                put(&mut b, l.off("cgroup", "self.serial_nr"), 8, cg);
                put(&mut b, l.off("cgroup", "level"), 4, level as u64);
                put(&mut b, l.off("cgroup", "max_depth"), 4, i32::MAX as u64);
                put(
                    &mut b,
                    l.off("cgroup", "max_descendants"),
                    4,
                    i32::MAX as u64,
                );
                put(&mut b, l.off("cgroup", "nr_descendants"), 4, desc);
                put(
                    &mut b,
                    l.off("cgroup", "nr_dying_descendants"),
                    4,
                    u64::from(host.dying_descendants(cg)),
                );
                put(&mut b, l.off("cgroup", "kn"), 8, kn);
            }
            Key::Memcg(cg) => {
                let cgrp = self.ensure(Key::Cgroup(cg), host, mem);
                let parent = host
                    .parent(cg)
                    .map(|p| {
                        self.ensure(Key::Memcg(p), host, mem) + l.off("mem_cgroup", "css") as u64
                    })
                    .unwrap_or(0);
                let info = host.memcg(cg);
                put(&mut b, l.off("mem_cgroup", "css.cgroup"), 8, cgrp);
                put(&mut b, l.off("mem_cgroup", "css.parent"), 8, parent);
                put(&mut b, l.off("mem_cgroup", "css.id"), 4, cg);
                put(&mut b, l.off("mem_cgroup", "css.serial_nr"), 8, cg);
                put(
                    &mut b,
                    l.off("mem_cgroup", "oom_group"),
                    1,
                    u64::from(info.is_some_and(|m| m.oom_group)),
                );
            }
            Key::Kn(cg) => {
                let parent = host
                    .parent(cg)
                    .map(|p| self.ensure(Key::Kn(p), host, mem))
                    .unwrap_or(0);
                put(&mut b, l.off("kernfs_node", "parent"), 8, parent);
                put(&mut b, l.off("kernfs_node", "id"), 8, cg);
            }
            Key::Task(pid) => {
                let signal = self.ensure(Key::Signal(pid), host, mem);
                let t = host.task(pid);
                put(&mut b, l.off("task_struct", "pid"), 4, pid as u32 as u64);
                let tgid = t.as_ref().map_or(pid, |t| t.tgid);
                put(&mut b, l.off("task_struct", "tgid"), 4, tgid as u32 as u64);
                put(
                    &mut b,
                    l.off("task_struct", "flags"),
                    4,
                    t.as_ref().map_or(0, |t| t.flags).into(),
                );
                put(&mut b, l.off("task_struct", "group_leader"), 8, addr);
                put(&mut b, l.off("task_struct", "signal"), 8, signal);
                let has_mm = t.as_ref().is_some_and(|t| {
                    t.flags & (crate::host::PF_KTHREAD | crate::host::PF_EXITING) == 0
                });
                if has_mm {
                    let mm = self.ensure(Key::Mm(pid), host, mem);
                    put(&mut b, l.off("task_struct", "mm"), 8, mm);
                }
                if let Some(t) = &t {
                    let comm = t.comm.as_bytes();
                    let n = comm.len().min(15);
                    let o = l.off("task_struct", "comm");
                    if let Some(dst) = b.get_mut(o..o + n) {
                        dst.copy_from_slice(&comm[..n]);
                    }
                }
            }
            Key::Signal(pid) => {
                let adj = host.task(pid).map_or(0, |t| t.oom_score_adj);
                put(
                    &mut b,
                    l.off("signal_struct", "oom_score_adj"),
                    2,
                    adj as u16 as u64,
                );
            }
            Key::Mm(pid) => {
                if let Some(t) = host.task(pid) {
                    let anon = t
                        .rss_pages
                        .saturating_sub(t.rss_file_pages)
                        .saturating_sub(t.rss_shmem_pages);
                    // Indexes of bpfoom_abi::types::MM_COUNTERS.
                    let counters = [t.rss_file_pages, anon, t.swap_pages, t.rss_shmem_pages];
                    let base = l.off("mm_struct", "rss_stat") + l.off("percpu_counter", "count");
                    for (i, v) in counters.into_iter().enumerate() {
                        put(&mut b, base + i * l.percpu_counter_size, 8, v);
                    }
                    put(&mut b, l.off("mm_struct", "total_vm"), 8, t.total_vm_pages);
                    // atomic_long_t's only member, `counter`, is at offset 0.
                    put(
                        &mut b,
                        l.off("mm_struct", "pgtables_bytes"),
                        8,
                        t.pgtables_pages.saturating_mul(crate::host::PAGE_SIZE),
                    );
                }
            }
            Key::Other(_) => {}
        }
        if let Some(dst) = mem.object_mut(id) {
            dst.copy_from_slice(&b);
        }
        addr
    }

    /// Removes every object from VM memory.
    pub(crate) fn clear(&mut self, mem: &mut Memory) {
        for (_, (id, _)) in self.map.drain() {
            mem.remove_object(id);
        }
        self.rev.clear();
    }
}
