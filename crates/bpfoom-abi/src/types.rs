//! The synthetic BTF of bpfoom's host kernel.
//!
//! Policies are compiled against `bpf_oom.h`, whose kernel structs carry
//! `preserve_access_index`; the loader rewrites every field access against the
//! layouts defined here (CO-RE), the verifier allows loads only at these field
//! offsets, and the engine lays host objects out with them. The layouts are not
//! the real kernel's: they hold exactly the fields bpfoom exposes, in C layout,
//! which is what makes a policy portable (it never hard-codes an offset).
//!
//! [`HostTypes::btf`] encodes the set as a raw `.BTF` blob, so any BTF consumer
//! (ours, `bpftool btf dump`) can read it.

use std::collections::HashMap;
use std::sync::OnceLock;

use crate::struct_ops::Form;

/// Index of a type in [`HostTypes`]; 0 is `void`, as in BTF.
pub type TypeId = u32;

/// One type, in BTF's vocabulary.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Type {
    /// `void` (id 0 only).
    Void,
    /// An integer (also `char` and `_Bool`).
    Int {
        /// C name.
        name: String,
        /// Size in bytes.
        size: u32,
        /// Signedness.
        signed: bool,
        /// A `_Bool`.
        is_bool: bool,
    },
    /// A pointer.
    Ptr(TypeId),
    /// A fixed-length array.
    Array {
        /// Element type.
        elem: TypeId,
        /// Number of elements.
        len: u32,
    },
    /// A struct.
    Struct(Composite),
    /// A union.
    Union(Composite),
    /// An enum (BTF_KIND_ENUM, or ENUM64 when a value needs it).
    Enum {
        /// C name.
        name: String,
        /// Size in bytes.
        size: u32,
        /// Enumerators.
        values: Vec<(String, i64)>,
    },
    /// A typedef.
    Typedef {
        /// C name.
        name: String,
        /// Aliased type.
        target: TypeId,
    },
    /// A `const` qualifier.
    Const(TypeId),
    /// A function prototype (the type of a struct_ops callback member's pointee).
    FuncProto {
        /// Return type.
        ret: TypeId,
        /// Parameters: name and type.
        params: Vec<(String, TypeId)>,
    },
}

/// Struct or union body.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Composite {
    /// C name (empty for anonymous).
    pub name: String,
    /// Size in bytes.
    pub size: u32,
    /// Members in declaration order.
    pub members: Vec<Member>,
}

/// One struct/union member.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Member {
    /// Field name.
    pub name: String,
    /// Field type.
    pub ty: TypeId,
    /// Byte offset from the start of the enclosing type.
    pub offset: u32,
}

/// `mm->rss_stat[]` indexes (the kernel's anonymous `MM_*` enum), in order.
pub const MM_COUNTERS: [&str; 4] = [
    "MM_FILEPAGES",
    "MM_ANONPAGES",
    "MM_SWAPENTS",
    "MM_SHMEMPAGES",
];

/// The host's type set. Built once; see [`HostTypes::get`].
#[derive(Debug)]
pub struct HostTypes {
    types: Vec<Type>,
    by_name: HashMap<String, Vec<TypeId>>,
    /// Older upstream prototypes bpfoom also runs: (ops, member, form,
    /// `FuncProto` id).
    alt_protos: Vec<(&'static str, &'static str, Form, TypeId)>,
}

impl Type {
    /// The type's own name, if it has one.
    pub fn name(&self) -> Option<&str> {
        match self {
            Type::Int { name, .. } | Type::Enum { name, .. } | Type::Typedef { name, .. } => {
                Some(name)
            }
            Type::Struct(c) | Type::Union(c) if !c.name.is_empty() => Some(&c.name),
            _ => None,
        }
    }
}

impl HostTypes {
    /// The host type set (built on first use).
    pub fn get() -> &'static HostTypes {
        static HOST: OnceLock<HostTypes> = OnceLock::new();
        HOST.get_or_init(build)
    }

    /// All types, indexed by [`TypeId`].
    pub fn types(&self) -> &[Type] {
        &self.types
    }

    /// The type with this id.
    pub fn ty(&self, id: TypeId) -> Option<&Type> {
        self.types.get(id as usize)
    }

    /// Ids of all named types called `name`, in id order.
    pub fn named(&self, name: &str) -> &[TypeId] {
        self.by_name.get(name).map(Vec::as_slice).unwrap_or(&[])
    }

    /// The struct called `name`.
    pub fn struct_id(&self, name: &str) -> Option<TypeId> {
        self.named(name)
            .iter()
            .copied()
            .find(|&id| matches!(self.ty(id), Some(Type::Struct(_))))
    }

    /// Follows typedefs and qualifiers to the underlying type.
    pub fn resolve(&self, mut id: TypeId) -> TypeId {
        // Bounded: the set is built acyclic, but never trust a loop.
        for _ in 0..32 {
            match self.ty(id) {
                Some(Type::Typedef { target, .. }) | Some(Type::Const(target)) => id = *target,
                _ => break,
            }
        }
        id
    }

    /// Size in bytes of a type (`None` for void and function prototypes).
    pub fn size_of(&self, id: TypeId) -> Option<u32> {
        match self.ty(self.resolve(id))? {
            Type::Int { size, .. } | Type::Enum { size, .. } => Some(*size),
            Type::Ptr(_) => Some(8),
            Type::Array { elem, len } => self.size_of(*elem)?.checked_mul(*len),
            Type::Struct(c) | Type::Union(c) => Some(c.size),
            _ => None,
        }
    }

    /// A struct or union's member called `name` (direct members only).
    pub fn member(&self, composite: TypeId, name: &str) -> Option<&Member> {
        match self.ty(self.resolve(composite))? {
            Type::Struct(c) | Type::Union(c) => c.members.iter().find(|m| m.name == name),
            _ => None,
        }
    }

    /// Byte offset of a dotted field path inside struct `name`, e.g.
    /// `offset_of("mem_cgroup", "css.cgroup")`. For laying out host objects.
    pub fn offset_of(&self, name: &str, path: &str) -> Option<u32> {
        let mut ty = self.struct_id(name)?;
        let mut off = 0;
        for part in path.split('.') {
            let m = self.member(ty, part)?;
            off += m.offset;
            ty = m.ty;
        }
        Some(off)
    }

    /// The members of a struct `name` as (name, offset, size) for quick listing.
    pub fn layout(&self, name: &str) -> Option<Vec<(&str, u32, u32)>> {
        match self.ty(self.struct_id(name)?)? {
            Type::Struct(c) => Some(
                c.members
                    .iter()
                    .map(|m| (m.name.as_str(), m.offset, self.size_of(m.ty).unwrap_or(0)))
                    .collect(),
            ),
            _ => None,
        }
    }

    /// The `FuncProto` of struct_ops callback `ops.member` in `form`: the
    /// member's own pointee for [`Form::Newest`], an older upstream
    /// revision's prototype otherwise (`None` where that revision's member
    /// is not one bpfoom runs).
    pub fn callback_proto(&self, ops: &str, member: &str, form: Form) -> Option<TypeId> {
        if form != Form::Newest {
            return self
                .alt_protos
                .iter()
                .find(|(o, m, f, _)| *o == ops && *m == member && *f == form)
                .map(|a| a.3);
        }
        let m = self.member(self.struct_id(ops)?, member)?;
        match self.ty(self.resolve(m.ty))? {
            Type::Ptr(p) => {
                let p = self.resolve(*p);
                matches!(self.ty(p), Some(Type::FuncProto { .. })).then_some(p)
            }
            _ => None,
        }
    }

    /// Encodes the set as raw BTF (header, type section, string section),
    /// little endian, version 1. Type ids are preserved.
    pub fn btf(&self) -> Vec<u8> {
        encode_btf(&self.types)
    }
}

/// Builds types and computes C layouts.
struct Builder {
    types: Vec<Type>,
}

impl Builder {
    fn add(&mut self, t: Type) -> TypeId {
        self.types.push(t);
        (self.types.len() - 1) as TypeId
    }
    fn int(&mut self, name: &str, size: u32, signed: bool) -> TypeId {
        self.add(Type::Int {
            name: name.into(),
            size,
            signed,
            is_bool: false,
        })
    }
    fn typedef(&mut self, name: &str, target: TypeId) -> TypeId {
        self.add(Type::Typedef {
            name: name.into(),
            target,
        })
    }
    fn ptr(&mut self, to: TypeId) -> TypeId {
        self.add(Type::Ptr(to))
    }
    fn array(&mut self, elem: TypeId, len: u32) -> TypeId {
        self.add(Type::Array { elem, len })
    }
    /// Reserves a struct id so that pointers to it can exist before its body.
    fn declare(&mut self, name: &str) -> TypeId {
        self.add(Type::Struct(Composite {
            name: name.into(),
            size: 0,
            members: vec![],
        }))
    }
    fn align_of(&self, id: TypeId) -> u32 {
        match &self.types[id as usize] {
            Type::Int { size, .. } | Type::Enum { size, .. } => *size,
            Type::Ptr(_) => 8,
            Type::Array { elem, .. } => self.align_of(*elem),
            Type::Struct(c) | Type::Union(c) => c
                .members
                .iter()
                .map(|m| self.align_of(m.ty))
                .max()
                .unwrap_or(1),
            Type::Typedef { target, .. } | Type::Const(target) => self.align_of(*target),
            Type::Void | Type::FuncProto { .. } => 1,
        }
    }
    fn size_of(&self, id: TypeId) -> u32 {
        match &self.types[id as usize] {
            Type::Int { size, .. } | Type::Enum { size, .. } => *size,
            Type::Ptr(_) => 8,
            Type::Array { elem, len } => self.size_of(*elem) * len,
            Type::Struct(c) | Type::Union(c) => c.size,
            Type::Typedef { target, .. } | Type::Const(target) => self.size_of(*target),
            Type::Void | Type::FuncProto { .. } => 0,
        }
    }
    /// Gives a declared struct its body, laid out by the C rules.
    fn define(&mut self, id: TypeId, fields: &[(&str, TypeId)]) {
        let mut off = 0u32;
        let mut align = 1u32;
        let mut members = Vec::with_capacity(fields.len());
        for &(name, ty) in fields {
            let a = self.align_of(ty);
            align = align.max(a);
            off = off.next_multiple_of(a);
            members.push(Member {
                name: name.into(),
                ty,
                offset: off,
            });
            off += self.size_of(ty);
        }
        let size = off.next_multiple_of(align);
        if let Type::Struct(c) = &mut self.types[id as usize] {
            c.size = size;
            c.members = members;
        }
    }
    fn strukt(&mut self, name: &str, fields: &[(&str, TypeId)]) -> TypeId {
        let id = self.declare(name);
        self.define(id, fields);
        id
    }
    fn enumeration(
        &mut self,
        name: &str,
        values: impl IntoIterator<Item = (String, i64)>,
    ) -> TypeId {
        self.add(Type::Enum {
            name: name.into(),
            size: 4,
            values: values.into_iter().collect(),
        })
    }
}

fn build() -> HostTypes {
    use crate::stats;
    let mut b = Builder {
        types: vec![Type::Void],
    };
    let char_ = b.int("char", 1, true);
    let bool_ = b.add(Type::Int {
        name: "_Bool".into(),
        size: 1,
        signed: false,
        is_bool: true,
    });
    let short = b.int("short", 2, true);
    let int = b.int("int", 4, true);
    let uint = b.int("unsigned int", 4, false);
    let long = b.int("long", 8, true);
    let ulong = b.int("unsigned long", 8, false);
    let ull = b.int("unsigned long long", 8, false);
    let u64_ = b.typedef("u64", ull);
    let u32_ = b.typedef("u32", uint);
    let pid_t = b.typedef("pid_t", int);
    let gfp_t = b.typedef("gfp_t", uint);
    let cchar = b.add(Type::Const(char_));
    let cstr = b.ptr(cchar);
    let comm = b.array(char_, 16);
    let name64 = b.array(char_, 64);
    let void_ptr = b.ptr(0);

    let constraint = b.enumeration(
        "oom_constraint",
        stats::OOM_CONSTRAINTS
            .iter()
            .map(|&(n, v)| (n.to_string(), i64::from(v))),
    );
    // The stat enums end with the kernel's count member (e.g.
    // `NR_VM_NODE_STAT_ITEMS`), which policies use as a bound.
    let node = stats::NR_VM_NODE_STAT_ITEMS as usize;
    for (name, items, count) in [
        (
            "node_stat_item",
            &stats::PAGE_STATE[..node],
            "NR_VM_NODE_STAT_ITEMS",
        ),
        (
            "memcg_stat_item",
            &stats::PAGE_STATE[node..],
            "MEMCG_NR_STAT",
        ),
        ("vm_event_item", stats::VM_EVENTS, "NR_VM_EVENT_ITEMS"),
        (
            "memcg_memory_event",
            stats::MEMORY_EVENTS,
            "MEMCG_NR_MEMORY_EVENTS",
        ),
    ] {
        let end = items.last().map_or(0, |s| i64::from(s.value) + 1);
        b.enumeration(
            name,
            items
                .iter()
                .map(|s| (s.name.to_string(), i64::from(s.value)))
                .chain(std::iter::once((count.to_string(), end))),
        );
    }
    b.enumeration(
        "psi_res",
        stats::PSI_RESOURCES
            .iter()
            .map(|&(n, v, _)| (n.to_string(), i64::from(v))),
    );

    let cgroup = b.declare("cgroup");
    let cgroup_ptr = b.ptr(cgroup);
    let css = b.declare("cgroup_subsys_state");
    let css_ptr = b.ptr(css);
    let kn = b.declare("kernfs_node");
    let kn_ptr = b.ptr(kn);
    b.define(kn, &[("parent", kn_ptr), ("id", u64_)]);
    b.define(
        css,
        &[
            ("cgroup", cgroup_ptr),
            ("parent", css_ptr),
            ("id", int),
            ("flags", uint),
            ("serial_nr", u64_),
        ],
    );
    b.define(
        cgroup,
        &[
            ("self", css),
            ("flags", ulong),
            ("level", int),
            ("max_depth", int),
            ("nr_descendants", int),
            ("nr_dying_descendants", int),
            ("max_descendants", int),
            ("kn", kn_ptr),
        ],
    );
    let memcg = b.strukt(
        "mem_cgroup",
        &[
            ("css", css),
            ("oom_group", bool_),
            ("oom_kill_disable", int),
            ("under_oom", int),
        ],
    );
    let memcg_ptr = b.ptr(memcg);
    let signal = b.strukt(
        "signal_struct",
        &[("oom_score_adj", short), ("oom_score_adj_min", short)],
    );
    let signal_ptr = b.ptr(signal);
    // struct mm_struct as BPF readers see it since Linux 6.2: rss_stat is an
    // array of percpu_counter (its `count` is the folded value, in pages),
    // pgtables_bytes an atomic_long_t (bytes).
    let s64_ll = b.int("long long", 8, true);
    let s64_t = b.typedef("s64", s64_ll);
    let pcpu = b.strukt("percpu_counter", &[("count", s64_t)]);
    let rss_stat = b.array(pcpu, MM_COUNTERS.len() as u32);
    let atomic64 = b.strukt("", &[("counter", s64_t)]);
    let atomic64_t = b.typedef("atomic64_t", atomic64);
    let atomic_long_t = b.typedef("atomic_long_t", atomic64_t);
    let mm = b.strukt(
        "mm_struct",
        &[
            ("rss_stat", rss_stat),
            ("total_vm", ulong),
            ("pgtables_bytes", atomic_long_t),
        ],
    );
    let mm_ptr = b.ptr(mm);
    b.enumeration(
        "",
        MM_COUNTERS
            .iter()
            .enumerate()
            .map(|(i, n)| (n.to_string(), i as i64))
            .chain(std::iter::once((
                "NR_MM_COUNTERS".to_string(),
                MM_COUNTERS.len() as i64,
            ))),
    );
    let task = b.declare("task_struct");
    let task_ptr = b.ptr(task);
    b.define(
        task,
        &[
            ("__state", uint),
            ("flags", uint),
            ("pid", pid_t),
            ("tgid", pid_t),
            ("real_parent", task_ptr),
            ("group_leader", task_ptr),
            ("signal", signal_ptr),
            ("comm", comm),
            ("mm", mm_ptr),
        ],
    );
    let oc = b.strukt(
        "oom_control",
        &[
            ("memcg", memcg_ptr),
            ("gfp_mask", gfp_t),
            ("order", int),
            ("totalpages", ulong),
            ("chosen", task_ptr),
            ("chosen_points", long),
            ("constraint", constraint),
            ("bpf_memory_freed", bool_),
            ("bpf_handler_name", cstr),
        ],
    );
    let oc_ptr = b.ptr(oc);
    let psi = b.strukt("bpf_psi", &[("ops", void_ptr), ("cgroup_id", u64_)]);
    let psi_ptr = b.ptr(psi);
    let trig = b.strukt(
        "psi_trigger",
        &[
            ("state", uint),
            ("threshold", u64_),
            ("win", u64_),
            ("cgroup_id", u64_),
        ],
    );
    let trig_ptr = b.ptr(trig);
    // The fields of the kernel's link a policy may read: upstream v3 passes
    // the link to handle_out_of_memory and policies read its `cgroup` (the
    // attach point).
    let link = b.strukt(
        "bpf_struct_ops_link",
        &[("map", void_ptr), ("cgroup", cgroup_ptr)],
    );
    let link_ptr = b.ptr(link);
    let opaque3 = b.array(u64_, 3);
    b.strukt("bpf_iter_css", &[("__opaque", opaque3)]);
    let opaque1 = b.array(u64_, 1);
    b.strukt("bpf_iter_css_task", &[("__opaque", opaque1)]);
    b.strukt("bpf_iter_num", &[("__opaque", opaque1)]);
    b.strukt("bpf_iter_task", &[("__opaque", opaque3)]);
    // uapi: what a map value embeds for bpf_spin_lock()/bpf_spin_unlock().
    b.strukt("bpf_spin_lock", &[("val", u32_)]);

    // struct_ops types: function-pointer members typed by prototypes.
    let proto = |b: &mut Builder, ret: TypeId, params: &[(&str, TypeId)]| {
        let p = b.add(Type::FuncProto {
            ret,
            params: params.iter().map(|&(n, t)| (n.to_string(), t)).collect(),
        });
        b.ptr(p)
    };
    let oom_cb = proto(&mut b, int, &[("oc", oc_ptr), ("cgrp", cgroup_ptr)]);
    let off_cb = proto(&mut b, 0, &[("cgrp", cgroup_ptr), ("cgroup_id", u64_)]);
    b.strukt(
        "bpf_oom_ops",
        &[
            ("handle_out_of_memory", oom_cb),
            ("handle_cgroup_offline", off_cb),
            ("name", name64),
        ],
    );
    let init_cb = proto(&mut b, int, &[("psi", psi_ptr)]);
    let ev_cb = proto(&mut b, 0, &[("psi", psi_ptr), ("t", trig_ptr)]);
    let on_cb = proto(&mut b, 0, &[("psi", psi_ptr), ("cgroup_id", u64_)]);
    let offp_cb = proto(&mut b, 0, &[("psi", psi_ptr), ("cgroup_id", u64_)]);
    b.strukt(
        "bpf_psi_ops",
        &[
            ("init", init_cb),
            ("handle_psi_event", ev_cb),
            ("handle_cgroup_online", on_cb),
            ("handle_cgroup_offline", offp_cb),
            ("name", name64),
        ],
    );
    let _ = (u32_, memcg_ptr, s64_t);
    let mut alt_protos = Vec::new();

    // What a bpftool-made vmlinux.h must also give a policy (appended last so
    // the ids above stay as they are): the fixed-width typedefs, `bool`, and
    // the uapi enums that map definitions and kfunc flags use.
    let uchar = b.int("unsigned char", 1, false);
    let schar = b.int("signed char", 1, true);
    let ushort = b.int("unsigned short", 2, false);
    let k_u8 = b.typedef("__u8", uchar);
    let k_s8 = b.typedef("__s8", schar);
    let k_u16 = b.typedef("__u16", ushort);
    let k_s16 = b.typedef("__s16", short);
    let k_u32 = b.typedef("__u32", uint);
    let k_s32 = b.typedef("__s32", int);
    let k_u64 = b.typedef("__u64", ull);
    b.typedef("__s64", s64_ll);
    for (name, to) in [
        ("u8", k_u8),
        ("s8", k_s8),
        ("u16", k_u16),
        ("s16", k_s16),
        ("s32", k_s32),
        ("__be16", k_u16),
        ("__be32", k_u32),
        ("__be64", k_u64),
        ("__wsum", k_u32),
        ("bool", bool_),
    ] {
        b.typedef(name, to);
    }
    let consts = |v: &[(&str, i64)]| -> Vec<(String, i64)> {
        v.iter().map(|&(n, x)| (n.to_string(), x)).collect()
    };
    b.enumeration("", consts(&[("false", 0), ("true", 1)]));
    // The map types bpfoom implements, numbered by MapKind's one table.
    let map_types = std::iter::once(("BPF_MAP_TYPE_UNSPEC".to_string(), 0)).chain(
        crate::maps::MapKind::ALL.iter().map(|k| {
            let name = format!("BPF_MAP_TYPE_{}", k.name().to_ascii_uppercase());
            (name, i64::from(k.linux_id()))
        }),
    );
    b.enumeration("bpf_map_type", map_types);
    b.enumeration(
        "",
        consts(&[
            ("BPF_ANY", 0),
            ("BPF_NOEXIST", 1),
            ("BPF_EXIST", 2),
            ("BPF_F_LOCK", 4),
        ]),
    );
    b.enumeration(
        "",
        consts(&[("BPF_RB_NO_WAKEUP", 1), ("BPF_RB_FORCE_WAKEUP", 2)]),
    );
    b.enumeration(
        "bpf_cgroup_iter_order",
        consts(&[
            ("BPF_CGROUP_ITER_ORDER_UNSPEC", 0),
            ("BPF_CGROUP_ITER_SELF_ONLY", 1),
            ("BPF_CGROUP_ITER_DESCENDANTS_PRE", 2),
            ("BPF_CGROUP_ITER_DESCENDANTS_POST", 3),
            ("BPF_CGROUP_ITER_ANCESTORS_UP", 4),
        ]),
    );

    // Upstream v3's handle_out_of_memory, appended last so the ids above
    // stay as they are; anonymous, so a bpftool dump prints nothing for it.
    let v3_oom = b.add(Type::FuncProto {
        ret: int,
        params: vec![("oc".into(), oc_ptr), ("link".into(), link_ptr)],
    });
    alt_protos.push(("bpf_oom_ops", "handle_out_of_memory", Form::V3Link, v3_oom));

    let mut by_name: HashMap<String, Vec<TypeId>> = HashMap::new();
    for (id, t) in b.types.iter().enumerate() {
        if let Some(n) = t.name() {
            by_name.entry(n.to_string()).or_default().push(id as TypeId);
        }
    }
    HostTypes {
        types: b.types,
        by_name,
        alt_protos,
    }
}

const BTF_MAGIC: u16 = 0xeb9f;

fn encode_btf(types: &[Type]) -> Vec<u8> {
    let mut strs = vec![0u8];
    let mut name_off = |s: &str| -> u32 {
        if s.is_empty() {
            return 0;
        }
        let off = strs.len() as u32;
        strs.extend_from_slice(s.as_bytes());
        strs.push(0);
        off
    };
    let mut tsec: Vec<u8> = Vec::new();
    let put = |w: &mut Vec<u8>, v: u32| w.extend_from_slice(&v.to_le_bytes());
    // info word: vlen (bits 0-15), kind (bits 24-28), kind_flag (bit 31).
    let info = |kind: u32, vlen: usize| (kind << 24) | (vlen as u32 & 0xffff);
    for t in types.iter().skip(1) {
        match t {
            Type::Void => {}
            Type::Int {
                name,
                size,
                signed,
                is_bool,
            } => {
                put(&mut tsec, name_off(name));
                put(&mut tsec, info(1, 0));
                put(&mut tsec, *size);
                let enc = u32::from(*signed) | (u32::from(*is_bool) << 2);
                put(&mut tsec, (enc << 24) | (size * 8));
            }
            Type::Ptr(to) => {
                put(&mut tsec, 0);
                put(&mut tsec, info(2, 0));
                put(&mut tsec, *to);
            }
            Type::Array { elem, len } => {
                put(&mut tsec, 0);
                put(&mut tsec, info(3, 0));
                put(&mut tsec, 0);
                put(&mut tsec, *elem);
                // Index type: any int; BTF only requires it to exist. Use "int" (id 4).
                put(&mut tsec, int_id(types));
                put(&mut tsec, *len);
            }
            Type::Struct(c) | Type::Union(c) => {
                let kind = if matches!(t, Type::Struct(_)) { 4 } else { 5 };
                put(&mut tsec, name_off(&c.name));
                put(&mut tsec, info(kind, c.members.len()));
                put(&mut tsec, c.size);
                for m in &c.members {
                    put(&mut tsec, name_off(&m.name));
                    put(&mut tsec, m.ty);
                    put(&mut tsec, m.offset * 8);
                }
            }
            Type::Enum { name, size, values } => {
                put(&mut tsec, name_off(name));
                put(&mut tsec, info(6, values.len()) | (1 << 31));
                put(&mut tsec, *size);
                for (n, v) in values {
                    put(&mut tsec, name_off(n));
                    put(&mut tsec, *v as u32);
                }
            }
            Type::Typedef { name, target } => {
                put(&mut tsec, name_off(name));
                put(&mut tsec, info(8, 0));
                put(&mut tsec, *target);
            }
            Type::Const(to) => {
                put(&mut tsec, 0);
                put(&mut tsec, info(10, 0));
                put(&mut tsec, *to);
            }
            Type::FuncProto { ret, params } => {
                put(&mut tsec, 0);
                put(&mut tsec, info(13, params.len()));
                put(&mut tsec, *ret);
                for (n, ty) in params {
                    put(&mut tsec, name_off(n));
                    put(&mut tsec, *ty);
                }
            }
        }
    }
    let mut out = Vec::with_capacity(24 + tsec.len() + strs.len());
    out.extend_from_slice(&BTF_MAGIC.to_le_bytes());
    out.push(1); // version
    out.push(0); // flags
    for v in [
        24u32,
        0,
        tsec.len() as u32,
        tsec.len() as u32,
        strs.len() as u32,
    ] {
        out.extend_from_slice(&v.to_le_bytes());
    }
    out.extend_from_slice(&tsec);
    out.extend_from_slice(&strs);
    out
}

fn int_id(types: &[Type]) -> u32 {
    types
        .iter()
        .position(|t| matches!(t, Type::Int { name, .. } if name == "int"))
        .unwrap_or(0) as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layouts_follow_c_rules() {
        let h = HostTypes::get();
        assert_eq!(h.offset_of("oom_control", "memcg"), Some(0));
        assert_eq!(h.offset_of("oom_control", "gfp_mask"), Some(8));
        assert_eq!(h.offset_of("oom_control", "order"), Some(12));
        assert_eq!(h.offset_of("oom_control", "totalpages"), Some(16));
        assert_eq!(h.offset_of("mem_cgroup", "css.cgroup"), Some(0));
        assert_eq!(
            h.offset_of("cgroup", "kn.id"),
            None,
            "kn is a pointer: no by-value path"
        );
        let kn = h.offset_of("cgroup", "kn").unwrap();
        assert_eq!(kn % 8, 0);
        let css = h.struct_id("cgroup_subsys_state").unwrap();
        assert_eq!(h.size_of(css), Some(32));
        assert_eq!(h.size_of(h.struct_id("bpf_iter_css").unwrap()), Some(24));
        let task = h.layout("task_struct").unwrap();
        let comm = task.iter().find(|f| f.0 == "comm").unwrap();
        assert_eq!(comm.2, 16);
    }

    #[test]
    fn every_struct_member_fits() {
        let h = HostTypes::get();
        for t in h.types() {
            if let Type::Struct(c) = t {
                for m in &c.members {
                    let sz = h.size_of(m.ty).unwrap();
                    assert!(m.offset + sz <= c.size, "{}.{}", c.name, m.name);
                }
            }
        }
    }

    #[test]
    fn btf_header_and_sections_are_consistent() {
        let btf = HostTypes::get().btf();
        assert_eq!(u16::from_le_bytes([btf[0], btf[1]]), BTF_MAGIC);
        let word = |i: usize| u32::from_le_bytes(btf[i..i + 4].try_into().unwrap()) as usize;
        let (hdr, type_off, type_len, str_off, str_len) =
            (word(4), word(8), word(12), word(16), word(20));
        assert_eq!(hdr, 24);
        assert_eq!(type_off, 0);
        assert_eq!(str_off, type_len);
        assert_eq!(hdr + str_off + str_len, btf.len());
        assert_eq!(
            btf[hdr + str_off],
            0,
            "string section starts with the empty string"
        );
    }
}
