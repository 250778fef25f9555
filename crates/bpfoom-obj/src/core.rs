//! CO-RE: rewriting `preserve_access_index` accesses against the host's type layout.
//!
//! Follows libbpf's documented algorithm (`Documentation/bpf/llvm_reloc.rst`, libbpf's
//! `relo_core.c` comments): the access string `0:1:2` is an array index on the root type, then
//! member or element indexes; candidates are host types of the same kind whose names match once
//! a `___flavor` suffix is stripped; fields are matched by name, looking through anonymous
//! struct/union members; the instruction's `imm`/`off` is checked against the locally computed
//! value and replaced with the host's.

use crate::btf::{Btf, BtfKind, MAX_CHAIN};
use crate::btf_ext::RawCoreRelo;
use bpfoom_insn::opcode::{self as op, BPF_DW, BPF_ST, BPF_STX};
use bpfoom_insn::Insn;

/// CO-RE relocation kinds (values of `enum bpf_core_relo_kind`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CoreKind {
    /// Field byte offset.
    FieldByteOffset,
    /// Field byte size.
    FieldByteSize,
    /// Field existence.
    FieldExists,
    /// Field signedness.
    FieldSigned,
    /// Bitfield left shift for extraction into a u64.
    FieldLshiftU64,
    /// Bitfield right shift for extraction into a u64.
    FieldRshiftU64,
    /// Local BTF type id.
    TypeIdLocal,
    /// Target BTF type id.
    TypeIdTarget,
    /// Type existence.
    TypeExists,
    /// Type size.
    TypeSize,
    /// Enumerator existence.
    EnumvalExists,
    /// Enumerator value.
    EnumvalValue,
    /// Type layout match.
    TypeMatches,
}

impl CoreKind {
    fn from_raw(k: u32) -> Option<CoreKind> {
        use CoreKind::*;
        Some(match k {
            0 => FieldByteOffset,
            1 => FieldByteSize,
            2 => FieldExists,
            3 => FieldSigned,
            4 => FieldLshiftU64,
            5 => FieldRshiftU64,
            6 => TypeIdLocal,
            7 => TypeIdTarget,
            8 => TypeExists,
            9 => TypeSize,
            10 => EnumvalExists,
            11 => EnumvalValue,
            12 => TypeMatches,
            _ => return None,
        })
    }

    /// libbpf's short name for the kind (as in its debug output).
    pub fn name(self) -> &'static str {
        use CoreKind::*;
        match self {
            FieldByteOffset => "byte_off",
            FieldByteSize => "byte_sz",
            FieldExists => "field_exists",
            FieldSigned => "signed",
            FieldLshiftU64 => "lshift_u64",
            FieldRshiftU64 => "rshift_u64",
            TypeIdLocal => "local_type_id",
            TypeIdTarget => "target_type_id",
            TypeExists => "type_exists",
            TypeSize => "type_size",
            EnumvalExists => "enumval_exists",
            EnumvalValue => "enumval_value",
            TypeMatches => "type_matches",
        }
    }

    fn is_field(self) -> bool {
        use CoreKind::*;
        matches!(
            self,
            FieldByteOffset
                | FieldByteSize
                | FieldExists
                | FieldSigned
                | FieldLshiftU64
                | FieldRshiftU64
        )
    }

    fn is_enumval(self) -> bool {
        matches!(self, CoreKind::EnumvalExists | CoreKind::EnumvalValue)
    }

    /// Kinds that evaluate to 0 rather than poisoning when nothing matches on the host.
    fn zero_when_missing(self) -> bool {
        matches!(
            self,
            CoreKind::FieldExists
                | CoreKind::TypeExists
                | CoreKind::EnumvalExists
                | CoreKind::TypeMatches
        )
    }
}

impl std::fmt::Display for CoreKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// What a CO-RE relocation resolved to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CoreOutcome {
    /// The instruction now carries `target` (it carried `local`).
    Value {
        /// Value computed against the object's own BTF.
        local: u64,
        /// Value computed against the host.
        target: u64,
    },
    /// Nothing matched on the host: the instruction was replaced by a poison call.
    Poisoned {
        /// Why nothing matched.
        reason: String,
    },
}

/// Record of one applied CO-RE relocation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CoreReloc {
    /// ELF section of the instruction.
    pub section: String,
    /// Instruction index inside that section.
    pub insn: usize,
    /// Relocation kind.
    pub kind: CoreKind,
    /// Local root type id in the object's BTF.
    pub type_id: u32,
    /// Local root type name.
    pub type_name: String,
    /// Raw access string, e.g. `0:1:2`.
    pub access: String,
    /// Readable access, e.g. `oom_control.memcg` or `oom_constraint::CONSTRAINT_MEMCG`.
    pub spec: String,
    /// The result.
    pub outcome: CoreOutcome,
}

/// A resolved field: where it is and what it is.
struct Field {
    bit_offset: u64,
    /// Type id of the field (member type, or element type for an index access).
    ty: u32,
    bitfield_size: u32,
}

/// One high-level step of a field access after the root index.
enum Step {
    Member(String),
    Index(u32),
}

/// Local side of a relocation, parsed once.
struct LocalSpec {
    /// First access index (pointer arithmetic on the root).
    first: u32,
    steps: Vec<Step>,
    field: Option<Field>,
    /// Enumerator name for enumval kinds.
    enumerator: Option<(String, i64)>,
    text: String,
}

/// Computed relocation: values before and after, plus load-size information.
struct Resolution {
    local: u64,
    target: Option<u64>,
    poison_reason: String,
    /// Local and host field sizes, for load/store size adjustment (byte offset kind only).
    sizes: Option<(u32, u32)>,
    size_adjust_ok: bool,
    /// Check the instruction carries `local`. Off for bitfields: clang sizes their storage by
    /// the record's alignment while libbpf (and we) use the member type, so values differ.
    validate: bool,
}

/// libbpf's "essential" name: the name with a trailing `___flavor` removed.
pub(crate) fn essential_name(name: &str) -> &str {
    let b = name.as_bytes();
    if b.len() >= 5 {
        for i in (0..=b.len() - 5).rev() {
            if b[i] != b'_' && &b[i + 1..i + 4] == b"___" && b[i + 4] != b'_' {
                return &name[..=i];
            }
        }
    }
    name
}

fn same_kind_family(a: &BtfKind, b: &BtfKind) -> bool {
    std::mem::discriminant(a) == std::mem::discriminant(b)
}

fn is_composite(btf: &Btf, id: u32) -> bool {
    matches!(
        btf.type_by_id(id).map(|t| &t.kind),
        Some(BtfKind::Struct { .. } | BtfKind::Union { .. })
    )
}

/// Bit offset of element `idx` of `size`-byte elements (saturating: hostile input must not
/// overflow; an absurd offset is rejected when patched).
fn elem_bits(idx: u32, size: u32) -> u64 {
    (u64::from(idx) * u64::from(size)).saturating_mul(8)
}

fn parse_access(access: &str) -> Result<Vec<u32>, String> {
    let idx: Result<Vec<u32>, _> = access.split(':').map(str::parse::<u32>).collect();
    match idx {
        Ok(v) if !v.is_empty() && v.len() <= MAX_CHAIN => Ok(v),
        _ => Err(format!("bad access string \"{access}\"")),
    }
}

fn type_label(btf: &Btf, id: u32) -> String {
    btf.type_by_id(id)
        .map(|t| t.name.clone())
        .unwrap_or_default()
}

fn parse_local(btf: &Btf, kind: CoreKind, root: u32, access: &str) -> Result<LocalSpec, String> {
    let raw = parse_access(access)?;
    let root_name = type_label(btf, root);
    let mut spec = LocalSpec {
        first: raw[0],
        steps: Vec::new(),
        field: None,
        enumerator: None,
        text: root_name.clone(),
    };
    let t = btf.skip_mods_and_typedefs(root);
    if kind.is_enumval() {
        let Some(BtfKind::Enum { values, .. }) = btf.type_by_id(t).map(|t| &t.kind) else {
            return Err("enumerator relocation on a non-enum type".into());
        };
        let e = values
            .get(raw[0] as usize)
            .filter(|_| raw.len() == 1)
            .ok_or_else(|| format!("enumerator index {} out of range", raw[0]))?;
        spec.text = format!("{root_name}::{}", e.name);
        spec.enumerator = Some((e.name.clone(), e.value));
        return Ok(spec);
    }
    if !kind.is_field() {
        if raw != [0] {
            return Err(format!("type relocation with access \"{access}\""));
        }
        return Ok(spec);
    }
    let root_size = btf.size_of(t).ok_or("root type has no size")?;
    let mut bit_offset = elem_bits(raw[0], root_size);
    let mut cur = t;
    let mut field = Field {
        bit_offset,
        ty: t,
        bitfield_size: 0,
    };
    for &i in &raw[1..] {
        let ct = btf.skip_mods_and_typedefs(cur);
        match &btf.type_by_id(ct).ok_or("dangling type")?.kind {
            k @ (BtfKind::Struct { .. } | BtfKind::Union { .. }) => {
                let m = k
                    .members()
                    .and_then(|m| m.get(i as usize))
                    .ok_or_else(|| format!("member index {i} out of range"))?;
                bit_offset = bit_offset.saturating_add(u64::from(m.bit_offset));
                cur = m.ty;
                field = Field {
                    bit_offset,
                    ty: m.ty,
                    bitfield_size: m.bitfield_size,
                };
                // Anonymous members are only a local path detail: the host is searched by name.
                if !m.name.is_empty() {
                    spec.text.push('.');
                    spec.text.push_str(&m.name);
                    spec.steps.push(Step::Member(m.name.clone()));
                }
            }
            BtfKind::Array { elem, .. } => {
                let sz = btf.size_of(*elem).ok_or("array element has no size")?;
                bit_offset = bit_offset.saturating_add(elem_bits(i, sz));
                cur = *elem;
                field = Field {
                    bit_offset,
                    ty: *elem,
                    bitfield_size: 0,
                };
                spec.text.push_str(&format!("[{i}]"));
                spec.steps.push(Step::Index(i));
            }
            other => return Err(format!("cannot access into {}", other.name())),
        }
    }
    spec.field = Some(field);
    Ok(spec)
}

/// Whether two field types can be relocated into each other (libbpf's field compatibility).
fn fields_compat(local: &Btf, mut l: u32, target: &Btf, mut t: u32) -> bool {
    for _ in 0..MAX_CHAIN {
        l = local.skip_mods_and_typedefs(l);
        t = target.skip_mods_and_typedefs(t);
        if is_composite(local, l) && is_composite(target, t) {
            return true;
        }
        let (Some(lt), Some(tt)) = (local.type_by_id(l), target.type_by_id(t)) else {
            return false;
        };
        if !same_kind_family(&lt.kind, &tt.kind) {
            return false;
        }
        match (&lt.kind, &tt.kind) {
            (BtfKind::Array { elem: le, .. }, BtfKind::Array { elem: te, .. }) => {
                l = *le;
                t = *te;
            }
            (
                BtfKind::Fwd { .. }
                | BtfKind::Ptr(_)
                | BtfKind::Float { .. }
                | BtfKind::Int { .. }
                | BtfKind::Enum { .. },
                _,
            ) => return true,
            _ => return false,
        }
    }
    false
}

/// Finds member `name` in composite `id`, descending into anonymous struct/union members.
fn find_member(btf: &Btf, id: u32, name: &str, base: u64, depth: usize) -> Option<Field> {
    if depth > MAX_CHAIN {
        return None;
    }
    let members = btf
        .type_by_id(btf.skip_mods_and_typedefs(id))?
        .kind
        .members()?;
    for m in members {
        let off = base + u64::from(m.bit_offset);
        if m.name.is_empty() {
            if let Some(f) = find_member(btf, m.ty, name, off, depth + 1) {
                return Some(f);
            }
        } else if m.name == name {
            return Some(Field {
                bit_offset: off,
                ty: m.ty,
                bitfield_size: m.bitfield_size,
            });
        }
    }
    None
}

fn match_field(local: &Btf, spec: &LocalSpec, target: &Btf, root: u32) -> Option<Field> {
    let t = target.skip_mods_and_typedefs(root);
    let root_size = target.size_of(t)?;
    let mut field = Field {
        bit_offset: elem_bits(spec.first, root_size),
        ty: t,
        bitfield_size: 0,
    };
    for step in &spec.steps {
        match step {
            Step::Member(name) => {
                let f = find_member(target, field.ty, essential_name(name), field.bit_offset, 0)?;
                field = f;
            }
            Step::Index(i) => {
                let at = target.skip_mods_and_typedefs(field.ty);
                let BtfKind::Array { elem, len, .. } = target.type_by_id(at)?.kind else {
                    return None;
                };
                // A zero-length trailing array is a flexible array: any index is allowed.
                if len != 0 && *i >= len {
                    return None;
                }
                let sz = target.size_of(elem)?;
                field = Field {
                    bit_offset: field.bit_offset.saturating_add(elem_bits(*i, sz)),
                    ty: elem,
                    bitfield_size: 0,
                };
            }
        }
    }
    // The leaf types must be compatible, like libbpf's per-member check.
    let lf = spec.field.as_ref()?;
    if !spec.steps.is_empty() && !fields_compat(local, lf.ty, target, field.ty) {
        return None;
    }
    Some(field)
}

/// Field value for a kind; also returns the field byte size.
fn field_value(btf: &Btf, kind: CoreKind, f: &Field) -> Result<(u64, u32), String> {
    let mt = btf.skip_mods_and_typedefs(f.ty);
    let size = btf.size_of(mt).ok_or("field has no size")?;
    let bit_sz = if f.bitfield_size > 0 {
        f.bitfield_size
    } else {
        size.saturating_mul(8)
    };
    let mut byte_sz = size;
    let mut byte_off = f.bit_offset / 8;
    if f.bitfield_size > 0 {
        if byte_sz == 0 || byte_sz > 8 {
            return Err("unsupported bitfield storage size".into());
        }
        byte_off = f.bit_offset / 8 / u64::from(byte_sz) * u64::from(byte_sz);
        while f.bit_offset.saturating_add(u64::from(bit_sz)) - byte_off * 8 > u64::from(byte_sz) * 8
        {
            if byte_sz >= 8 {
                return Err("bitfield spans more than 8 bytes".into());
            }
            byte_sz *= 2;
            byte_off = f.bit_offset / 8 / u64::from(byte_sz) * u64::from(byte_sz);
        }
    }
    let v = match kind {
        CoreKind::FieldByteOffset => byte_off,
        CoreKind::FieldByteSize => u64::from(byte_sz),
        CoreKind::FieldExists => 1,
        CoreKind::FieldSigned => u64::from(match &btf.type_by_id(mt).map(|t| &t.kind) {
            Some(BtfKind::Int { signed, .. }) => *signed,
            Some(BtfKind::Enum { signed, .. }) => *signed,
            _ => false,
        }),
        CoreKind::FieldLshiftU64 => {
            64u64.saturating_sub(f.bit_offset.saturating_add(u64::from(bit_sz)) - byte_off * 8)
        }
        CoreKind::FieldRshiftU64 => 64u64.saturating_sub(u64::from(bit_sz)),
        _ => return Err("not a field relocation".into()),
    };
    Ok((v, byte_sz))
}

/// libbpf's type compatibility for type-based relocations (names already matched at the root).
fn types_compat(local: &Btf, l: u32, target: &Btf, t: u32, depth: usize) -> bool {
    if depth > MAX_CHAIN {
        return false;
    }
    let l = local.skip_mods_and_typedefs(l);
    let t = target.skip_mods_and_typedefs(t);
    let (Some(lt), Some(tt)) = (local.type_by_id(l), target.type_by_id(t)) else {
        return false;
    };
    if !same_kind_family(&lt.kind, &tt.kind) {
        return false;
    }
    match (&lt.kind, &tt.kind) {
        (BtfKind::Ptr(a), BtfKind::Ptr(b)) => types_compat(local, *a, target, *b, depth + 1),
        (BtfKind::Array { elem: a, .. }, BtfKind::Array { elem: b, .. }) => {
            types_compat(local, *a, target, *b, depth + 1)
        }
        (
            BtfKind::FuncProto {
                ret: lr,
                params: lp,
            },
            BtfKind::FuncProto {
                ret: tr,
                params: tp,
            },
        ) => {
            lp.len() == tp.len()
                && types_compat(local, *lr, target, *tr, depth + 1)
                && lp
                    .iter()
                    .zip(tp)
                    .all(|(a, b)| types_compat(local, a.ty, target, b.ty, depth + 1))
        }
        _ => true,
    }
}

/// A simplified `bpf_core_type_matches`: same kinds, and every local member, enumerator or
/// parameter has a counterpart with a matching type on the host.
///
/// `budget` bounds the total work: hostile BTF could otherwise fan out exponentially.
fn types_match(local: &Btf, l: u32, target: &Btf, t: u32, depth: usize, budget: &mut u32) -> bool {
    if depth > MAX_CHAIN || *budget == 0 {
        return false;
    }
    *budget -= 1;
    let l = local.skip_mods_and_typedefs(l);
    let t = target.skip_mods_and_typedefs(t);
    let (Some(lt), Some(tt)) = (local.type_by_id(l), target.type_by_id(t)) else {
        return false;
    };
    if !same_kind_family(&lt.kind, &tt.kind) {
        return false;
    }
    match (&lt.kind, &tt.kind) {
        (BtfKind::Struct { members: lm, .. }, BtfKind::Struct { members: tm, .. })
        | (BtfKind::Union { members: lm, .. }, BtfKind::Union { members: tm, .. }) => {
            essential_name(&lt.name) == essential_name(&tt.name)
                && lm.iter().all(|m| {
                    tm.iter().any(|n| {
                        n.name == m.name
                            && types_match(local, m.ty, target, n.ty, depth + 1, budget)
                    })
                })
        }
        (BtfKind::Enum { values: lv, .. }, BtfKind::Enum { values: tv, .. }) => lv
            .iter()
            .all(|v| tv.iter().any(|w| essential_name(&v.name) == w.name)),
        (
            BtfKind::Int {
                size: a,
                signed: sa,
                ..
            },
            BtfKind::Int {
                size: b,
                signed: sb,
                ..
            },
        ) => a == b && sa == sb,
        (BtfKind::Ptr(a), BtfKind::Ptr(b)) => {
            // Pointees are compared by name only, which also stops recursion through lists.
            let (a, b) = (
                local.skip_mods_and_typedefs(*a),
                target.skip_mods_and_typedefs(*b),
            );
            match (local.type_by_id(a), target.type_by_id(b)) {
                (Some(x), Some(y)) if is_composite(local, a) => {
                    same_kind_family(&x.kind, &y.kind)
                        && essential_name(&x.name) == essential_name(&y.name)
                }
                _ => types_match(local, a, target, b, depth + 1, budget),
            }
        }
        (
            BtfKind::Array {
                elem: a, len: la, ..
            },
            BtfKind::Array {
                elem: b, len: lb, ..
            },
        ) => la == lb && types_match(local, *a, target, *b, depth + 1, budget),
        (
            BtfKind::FuncProto {
                ret: lr,
                params: lp,
            },
            BtfKind::FuncProto {
                ret: tr,
                params: tp,
            },
        ) => {
            lp.len() == tp.len()
                && types_match(local, *lr, target, *tr, depth + 1, budget)
                && lp
                    .iter()
                    .zip(tp)
                    .all(|(a, b)| types_match(local, a.ty, target, b.ty, depth + 1, budget))
        }
        (BtfKind::Float { size: a }, BtfKind::Float { size: b }) => a == b,
        _ => true,
    }
}

/// Local field size, host field size, and whether a load may be resized between them.
type SizeInfo = (u32, u32, bool);

/// Resolves one relocation against `target`.
fn resolve(
    local: &Btf,
    target: &Btf,
    kind: CoreKind,
    root: u32,
    spec: &LocalSpec,
) -> Result<Resolution, String> {
    let local_root = local.type_by_id(root).ok_or("dangling local type id")?;
    // The local value: what clang compiled in, used to validate the instruction.
    let (local_val, local_size) = if kind.is_field() {
        let f = spec
            .field
            .as_ref()
            .ok_or("field relocation without a field")?;
        let (v, s) = field_value(local, kind, f)?;
        (v, Some((s, f.ty)))
    } else if kind.is_enumval() {
        let (_, v) = spec.enumerator.as_ref().ok_or("missing enumerator")?;
        (
            if kind == CoreKind::EnumvalExists {
                1
            } else {
                *v as u64
            },
            None,
        )
    } else {
        let v = match kind {
            CoreKind::TypeIdLocal | CoreKind::TypeIdTarget => u64::from(root),
            CoreKind::TypeSize => u64::from(local.size_of(root).ok_or("type has no size")?),
            _ => 1,
        };
        (v, None)
    };
    let mut res = Resolution {
        local: local_val,
        target: None,
        poison_reason: String::new(),
        sizes: None,
        size_adjust_ok: true,
        validate: spec.field.as_ref().is_none_or(|f| f.bitfield_size == 0),
    };
    if kind == CoreKind::TypeIdLocal {
        res.target = Some(local_val);
        return Ok(res);
    }
    let name = essential_name(&local_root.name);
    if name.is_empty() {
        return Err("anonymous local type cannot be relocated".into());
    }
    // (value, field sizes local/host and whether a load may change size)
    let mut found: Option<(u64, Option<SizeInfo>)> = None;
    for (cand, tt) in target.types().iter().enumerate() {
        let cand = cand as u32;
        if essential_name(&tt.name) != name || !same_kind_family(&local_root.kind, &tt.kind) {
            continue;
        }
        let val = if kind.is_field() {
            let Some(f) = match_field(local, spec, target, cand) else {
                continue;
            };
            let (v, sz) = field_value(target, kind, &f)?;
            let (lsz, lty) = local_size.unwrap_or((sz, f.ty));
            let adjust_ok = lsz == sz || size_adjust_allowed(local, lty, target, f.ty);
            (v, Some((lsz, sz, adjust_ok)))
        } else if kind.is_enumval() {
            let Some(BtfKind::Enum { values, .. }) = target
                .type_by_id(target.skip_mods_and_typedefs(cand))
                .map(|t| &t.kind)
            else {
                continue;
            };
            let (ename, _) = spec.enumerator.as_ref().ok_or("missing enumerator")?;
            let Some(e) = values.iter().find(|v| v.name == essential_name(ename)) else {
                continue;
            };
            (
                if kind == CoreKind::EnumvalExists {
                    1
                } else {
                    e.value as u64
                },
                None,
            )
        } else if kind == CoreKind::TypeMatches {
            if !types_match(local, root, target, cand, 0, &mut 10_000) {
                continue;
            }
            (1, None)
        } else {
            if !types_compat(local, root, target, cand, 0) {
                continue;
            }
            let v = match kind {
                CoreKind::TypeIdTarget => u64::from(cand),
                CoreKind::TypeSize => u64::from(target.size_of(cand).ok_or("type has no size")?),
                _ => 1,
            };
            (v, None)
        };
        match &found {
            None => found = Some(val),
            Some((prev, _)) if *prev != val.0 && kind != CoreKind::TypeIdTarget => {
                return Err(format!(
                    "ambiguous: host candidates give {prev} and {} (type id {cand})",
                    val.0
                ));
            }
            Some(_) => {}
        }
    }
    match found {
        Some((v, sizes)) => {
            res.target = Some(v);
            if let Some((l, t, ok)) = sizes {
                res.sizes = Some((l, t));
                res.size_adjust_ok = ok;
            }
        }
        None if kind.zero_when_missing() => res.target = Some(0),
        None => res.poison_reason = format!("`{}` not found on the host", spec.text),
    }
    Ok(res)
}

/// libbpf allows changing a load's size only for pointers and unsigned integers.
fn size_adjust_allowed(local: &Btf, l: u32, target: &Btf, t: u32) -> bool {
    let lk = local
        .type_by_id(local.skip_mods_and_typedefs(l))
        .map(|t| &t.kind);
    let tk = target
        .type_by_id(target.skip_mods_and_typedefs(t))
        .map(|t| &t.kind);
    matches!(
        (lk, tk),
        (Some(BtfKind::Ptr(_)), Some(BtfKind::Ptr(_)))
            | (
                Some(BtfKind::Int { signed: false, .. }),
                Some(BtfKind::Int { signed: false, .. })
            )
    )
}

fn poison(insns: &mut [Insn], idx: usize) {
    let call = Insn::new(op::CALL, 0, 0, 0, crate::CORE_POISON_HELPER);
    let wide = insns[idx].code == op::LD_IMM64;
    insns[idx] = call;
    if wide {
        if let Some(next) = insns.get_mut(idx + 1) {
            *next = call;
        }
    }
}

fn size_code(bytes: u32) -> Option<u8> {
    Some(match bytes {
        1 => op::BPF_B,
        2 => op::BPF_H,
        4 => op::BPF_W,
        8 => BPF_DW,
        _ => return None,
    })
}

/// Writes the resolved value into the instruction, validating it carried the local value.
fn patch(insns: &mut [Insn], idx: usize, kind: CoreKind, res: &Resolution) -> Result<(), String> {
    let Some(new) = res.target else {
        poison(insns, idx);
        return Ok(());
    };
    let insn = insns[idx];
    let class = insn.class();
    match class {
        op::BPF_ALU | op::BPF_ALU64 if op::source(insn.code) == op::BPF_K => {
            if res.validate && insn.imm as u32 as u64 != res.local & 0xffff_ffff {
                return Err(format!(
                    "instruction imm {} is not the local value {}",
                    insn.imm, res.local
                ));
            }
            insns[idx].imm = i32::try_from(new)
                .or_else(|_| u32::try_from(new).map(|v| v as i32))
                .map_err(|_| format!("value {new} does not fit a 32-bit immediate"))?;
        }
        op::BPF_LDX | BPF_ST | BPF_STX if op::mode(insn.code) == op::BPF_MEM => {
            if res.validate && i64::from(insn.off) != res.local as i64 {
                return Err(format!(
                    "instruction offset {} is not the local value {}",
                    insn.off, res.local
                ));
            }
            insns[idx].off =
                i16::try_from(new).map_err(|_| format!("offset {new} does not fit 16 bits"))?;
            if let (CoreKind::FieldByteOffset, Some((lsz, tsz))) = (kind, res.sizes) {
                let access = op::size_bytes(op::size(insn.code)) as u32;
                if lsz != tsz {
                    if access != lsz {
                        return Err(format!(
                            "access size {access} differs from the local field size {lsz}"
                        ));
                    }
                    let code = size_code(tsz)
                        .filter(|_| res.size_adjust_ok)
                        .ok_or_else(|| {
                            format!("cannot adjust access size {lsz} to host field size {tsz}")
                        })?;
                    insns[idx].code = (insn.code & !0x18) | code;
                }
            }
        }
        op::BPF_LD if insn.code == op::LD_IMM64 && idx + 1 < insns.len() => {
            let old = u64::from(insn.imm as u32) | (u64::from(insns[idx + 1].imm as u32) << 32);
            if res.validate && old != res.local {
                return Err(format!(
                    "ld_imm64 value {old} is not the local value {}",
                    res.local
                ));
            }
            insns[idx].imm = new as u32 as i32;
            insns[idx + 1].imm = (new >> 32) as u32 as i32;
        }
        _ => {
            return Err(format!(
                "cannot patch instruction with opcode {:#04x}",
                insn.code
            ))
        }
    }
    Ok(())
}

/// Resolves and applies one raw relocation to a section's instructions.
pub(crate) fn apply(
    local: &Btf,
    target: &Btf,
    section: &str,
    insns: &mut [Insn],
    raw: &RawCoreRelo,
) -> Result<CoreReloc, crate::ObjError> {
    let idx = (raw.insn_off / 8) as usize;
    let access = local.string_at(raw.access_off).unwrap_or("").to_string();
    let kind = CoreKind::from_raw(raw.kind);
    let err = |reason: String| crate::ObjError::Core {
        section: section.to_string(),
        insn: idx,
        kind: kind.map_or_else(|| format!("kind {}", raw.kind), |k| k.name().to_string()),
        type_id: raw.type_id,
        access: access.clone(),
        reason,
    };
    let kind = kind.ok_or_else(|| err("unknown relocation kind".into()))?;
    if !raw.insn_off.is_multiple_of(8) || idx >= insns.len() {
        return Err(err("instruction offset out of range".into()));
    }
    let ty = local
        .type_by_id(raw.type_id)
        .ok_or_else(|| err("dangling type id".into()))?;
    let type_name = ty.name.clone();
    let spec = parse_local(local, kind, raw.type_id, &access).map_err(&err)?;
    let res = resolve(local, target, kind, raw.type_id, &spec).map_err(&err)?;
    patch(insns, idx, kind, &res).map_err(&err)?;
    let outcome = match res.target {
        Some(t) => CoreOutcome::Value {
            local: res.local,
            target: t,
        },
        None => CoreOutcome::Poisoned {
            reason: res.poison_reason,
        },
    };
    Ok(CoreReloc {
        section: section.to_string(),
        insn: idx,
        kind,
        type_id: raw.type_id,
        type_name,
        access,
        spec: spec.text,
        outcome,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::btf::{BtfType, Member};

    fn t(name: &str, kind: BtfKind) -> BtfType {
        BtfType {
            name: name.into(),
            kind,
        }
    }

    fn int(name: &str, size: u32, signed: bool) -> BtfType {
        let kind = BtfKind::Int {
            size,
            signed,
            char: false,
            bool: false,
            offset: 0,
            bits: 8 * size as u8,
        };
        t(name, kind)
    }

    fn member(name: &str, ty: u32, byte: u32) -> Member {
        Member {
            name: name.into(),
            ty,
            bit_offset: byte * 8,
            bitfield_size: 0,
        }
    }

    /// ids: 1 int, 2 long, 3 struct thing {int x; long y;}, 4 ptr to 3.
    fn local() -> Btf {
        Btf::from_types(vec![
            int("int", 4, true),
            int("long", 8, true),
            t(
                "thing",
                BtfKind::Struct {
                    size: 16,
                    members: vec![member("x", 1, 0), member("y", 2, 8)],
                },
            ),
            t("", BtfKind::Ptr(3)),
        ])
        .unwrap()
    }

    fn resolve_kind(
        local: &Btf,
        target: &Btf,
        kind: CoreKind,
        root: u32,
        access: &str,
    ) -> Option<u64> {
        let spec = parse_local(local, kind, root, access).unwrap();
        resolve(local, target, kind, root, &spec).unwrap().target
    }

    #[test]
    fn essential_names() {
        assert_eq!(essential_name("task_struct___v1"), "task_struct");
        assert_eq!(essential_name("a___b___c"), "a___b");
        assert_eq!(essential_name("____x"), "____x");
        assert_eq!(essential_name("x___"), "x___");
        assert_eq!(essential_name("plain"), "plain");
    }

    #[test]
    fn type_matches_requires_every_local_member() {
        let l = local();
        // Host: same members plus one more, reordered: matches.
        let wider = Btf::from_types(vec![
            int("long", 8, true),
            int("int", 4, true),
            t(
                "thing",
                BtfKind::Struct {
                    size: 24,
                    members: vec![member("y", 1, 0), member("z", 1, 8), member("x", 2, 16)],
                },
            ),
        ])
        .unwrap();
        assert_eq!(
            resolve_kind(&l, &wider, CoreKind::TypeMatches, 3, "0"),
            Some(1)
        );
        // Host lacking `y`, or with `x` of another size: no match (0, not poison).
        let missing = Btf::from_types(vec![
            int("int", 4, true),
            t(
                "thing",
                BtfKind::Struct {
                    size: 4,
                    members: vec![member("x", 1, 0)],
                },
            ),
        ])
        .unwrap();
        assert_eq!(
            resolve_kind(&l, &missing, CoreKind::TypeMatches, 3, "0"),
            Some(0)
        );
        let resized = Btf::from_types(vec![
            int("short", 2, true),
            int("long", 8, true),
            t(
                "thing",
                BtfKind::Struct {
                    size: 16,
                    members: vec![member("x", 1, 0), member("y", 2, 8)],
                },
            ),
        ])
        .unwrap();
        assert_eq!(
            resolve_kind(&l, &resized, CoreKind::TypeMatches, 3, "0"),
            Some(0)
        );
        assert_eq!(
            resolve_kind(&l, &resized, CoreKind::TypeExists, 3, "0"),
            Some(1)
        );
    }

    #[test]
    fn ambiguous_candidates_are_an_error() {
        let l = local();
        let two = Btf::from_types(vec![
            int("int", 4, true),
            t(
                "thing",
                BtfKind::Struct {
                    size: 8,
                    members: vec![member("x", 1, 0)],
                },
            ),
            t(
                "thing___other",
                BtfKind::Struct {
                    size: 8,
                    members: vec![member("x", 1, 4)],
                },
            ),
        ])
        .unwrap();
        let spec = parse_local(&l, CoreKind::FieldByteOffset, 3, "0:0").unwrap();
        let e = resolve(&l, &two, CoreKind::FieldByteOffset, 3, &spec)
            .err()
            .unwrap();
        assert!(e.contains("ambiguous"), "{e}");
    }

    #[test]
    fn field_kind_mismatch_is_no_candidate() {
        let l = local();
        // Host `y` is a struct, local `y` an integer: not compatible, so poisoned.
        let host = Btf::from_types(vec![
            t(
                "inner",
                BtfKind::Struct {
                    size: 8,
                    members: vec![],
                },
            ),
            t(
                "thing",
                BtfKind::Struct {
                    size: 8,
                    members: vec![member("y", 1, 0)],
                },
            ),
        ])
        .unwrap();
        assert_eq!(
            resolve_kind(&l, &host, CoreKind::FieldByteOffset, 3, "0:1"),
            None
        );
        assert_eq!(
            resolve_kind(&l, &host, CoreKind::FieldExists, 3, "0:1"),
            Some(0)
        );
    }

    #[test]
    fn bad_access_strings() {
        let l = local();
        for bad in ["", "0:", "x", "0:9", "0:0:0"] {
            assert!(
                parse_local(&l, CoreKind::FieldByteOffset, 3, bad).is_err(),
                "{bad:?}"
            );
        }
        assert!(parse_local(&l, CoreKind::TypeSize, 3, "1").is_err());
    }
}
