//! Typed map entries and global variables, laid out from the object's BTF.
//!
//! A daemon config, a scenario or the `bpfoom attach` command line hands a
//! policy map entries (`prefs[cgroup] = { preference = 2 }`) and tunables
//! (`threshold_us = 100000`). A [`MapValue`] is what the user wrote; [`encode`]
//! turns it into the bytes the map (or the `.rodata`/`.data`/`.bss` variable)
//! holds, following the BTF type clang emitted for the map's `__type(key, ..)`
//! / `__type(value, ..)` or for the variable, the way libbpf's skeletons
//! would lay out a C initialiser:
//!
//! | BTF type | accepted values |
//! |---|---|
//! | integer, enum | an integer within the type's width and signedness; a string is a cgroup path, replaced by the cgroup's id (through the caller's resolver) |
//! | enum | also the name of an enumerator |
//! | `bool` (`_Bool`) | `true`/`false`, 0 or 1 |
//! | bitfield member | an integer within the bitfield's width |
//! | struct | a table of members by name; members not given are zero; members of anonymous struct/union members are named directly, as in C |
//! | union | a table naming one member |
//! | array | a list of at most `len` elements (the rest are zero) |
//! | `char[N]` | also a string, stored NUL-terminated (at most N-1 bytes) |
//! | pointer, float, function | refused: nothing a configuration can set |
//!
//! Implicit padding (bytes no member covers) is zero. In a map **key** it is
//! refused ([`MapValueError::Padding`]): a hash map compares whole keys, so
//! the bytes a policy leaves in its own key's padding decide whether it finds
//! the entry, and no configuration can know them. Kernel practice is the
//! same advice: declare the padding as a named member and zero it.
//!
//! Maps declared without BTF key/value types (`__uint(key_size, 8)`) take
//! integers and cgroup paths of their byte size (1 to 8 bytes), unsigned.

use std::collections::BTreeMap;
use std::fmt;

use bpfoom_obj::{Btf, BtfKind, Member};
use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::ser::{SerializeMap, SerializeSeq, Serializer};
use serde::{Deserialize, Serialize};

/// Deepest nesting of structs and arrays followed (BTF can be cyclic only
/// through pointers, which are refused, but a hostile object could chain
/// typedefs; this bounds the recursion either way).
const MAX_DEPTH: usize = 32;

/// A value as the user wrote it, before it meets a BTF type.
///
/// Serialized untagged (a JSON/TOML integer, boolean, string, table or list),
/// which is also the daemon's wire format for attach options.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MapValue {
    /// An integer (TOML integers are `i64`; JSON and the command line also
    /// reach `u64`).
    Int(i128),
    /// `true` / `false`.
    Bool(bool),
    /// A cgroup path (for integer types), an enumerator name (enums) or
    /// text (`char[N]`).
    Str(String),
    /// Struct or union members by name.
    Struct(BTreeMap<String, MapValue>),
    /// Array elements in order.
    Array(Vec<MapValue>),
}

impl MapValue {
    /// What kind of value this is, for error messages.
    pub fn kind_name(&self) -> &'static str {
        match self {
            MapValue::Int(_) => "an integer",
            MapValue::Bool(_) => "a boolean",
            MapValue::Str(_) => "a string",
            MapValue::Struct(_) => "a table",
            MapValue::Array(_) => "a list",
        }
    }
}

impl From<u64> for MapValue {
    fn from(v: u64) -> Self {
        MapValue::Int(v.into())
    }
}

impl From<i64> for MapValue {
    fn from(v: i64) -> Self {
        MapValue::Int(v.into())
    }
}

impl From<&str> for MapValue {
    fn from(v: &str) -> Self {
        MapValue::Str(v.into())
    }
}

impl fmt::Display for MapValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MapValue::Int(n) => write!(f, "{n}"),
            MapValue::Bool(b) => write!(f, "{b}"),
            MapValue::Str(s) => write!(f, "{s:?}"),
            MapValue::Struct(m) => {
                f.write_str("{ ")?;
                for (i, (k, v)) in m.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{k} = {v}")?;
                }
                f.write_str(" }")
            }
            MapValue::Array(a) => {
                f.write_str("[")?;
                for (i, v) in a.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{v}")?;
                }
                f.write_str("]")
            }
        }
    }
}

impl Serialize for MapValue {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            MapValue::Int(n) => {
                if let Ok(v) = i64::try_from(*n) {
                    s.serialize_i64(v)
                } else if let Ok(v) = u64::try_from(*n) {
                    s.serialize_u64(v)
                } else {
                    s.serialize_i128(*n)
                }
            }
            MapValue::Bool(b) => s.serialize_bool(*b),
            MapValue::Str(v) => s.serialize_str(v),
            MapValue::Struct(m) => {
                let mut map = s.serialize_map(Some(m.len()))?;
                for (k, v) in m {
                    map.serialize_entry(k, v)?;
                }
                map.end()
            }
            MapValue::Array(a) => {
                let mut seq = s.serialize_seq(Some(a.len()))?;
                for v in a {
                    seq.serialize_element(v)?;
                }
                seq.end()
            }
        }
    }
}

impl<'de> Deserialize<'de> for MapValue {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = MapValue;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an integer, a boolean, a string (cgroup path), a table or a list")
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<MapValue, E> {
                Ok(MapValue::Bool(v))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<MapValue, E> {
                Ok(MapValue::Int(v.into()))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<MapValue, E> {
                Ok(MapValue::Int(v.into()))
            }
            fn visit_i128<E: de::Error>(self, v: i128) -> Result<MapValue, E> {
                Ok(MapValue::Int(v))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<MapValue, E> {
                Err(E::custom(format!(
                    "{v} is a float: map entries and globals take integers"
                )))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<MapValue, E> {
                Ok(MapValue::Str(v.into()))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut a: A) -> Result<MapValue, A::Error> {
                let mut out = Vec::new();
                while let Some(v) = a.next_element()? {
                    out.push(v);
                }
                Ok(MapValue::Array(out))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut a: A) -> Result<MapValue, A::Error> {
                let mut out = BTreeMap::new();
                while let Some((k, v)) = a.next_entry::<String, MapValue>()? {
                    if out.insert(k.clone(), v).is_some() {
                        return Err(de::Error::custom(format!("field {k} given twice")));
                    }
                }
                Ok(MapValue::Struct(out))
            }
        }
        d.deserialize_any(V)
    }
}

/// Why a value does not fit its BTF type. `path` names the place inside the
/// entry (`value.preference`, `key`, `protected[2]`).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum MapValueError {
    /// A struct member name the type does not have.
    #[error("{path}: {ty} has no field {field} (fields: {known})")]
    UnknownField {
        /// Where.
        path: String,
        /// The struct or union.
        ty: String,
        /// The name given.
        field: String,
        /// The names it has, comma separated.
        known: String,
    },
    /// An integer outside the range of the field's width and signedness.
    #[error("{path}: {value} is out of range for {ty} ({min}..={max})")]
    OutOfRange {
        /// Where.
        path: String,
        /// The field's type (`u8`, `int:3` for a bitfield).
        ty: String,
        /// The value given.
        value: i128,
        /// Smallest value the field holds.
        min: i128,
        /// Largest value the field holds.
        max: i128,
    },
    /// A value of the wrong kind (a table for an integer, a number for a
    /// struct, anything for a pointer).
    #[error("{path}: {ty} takes {expected}, not {got}")]
    WrongKind {
        /// Where.
        path: String,
        /// The field's type.
        ty: String,
        /// What it accepts.
        expected: String,
        /// What was given.
        got: &'static str,
    },
    /// Implicit padding in a map key (see the module docs).
    #[error(
        "{path}: {ty} has {size} byte(s) of implicit padding at offset {offset}; a hash map \
         compares whole keys, so declare the padding as a named member (set to 0)"
    )]
    Padding {
        /// Where.
        path: String,
        /// The key type.
        ty: String,
        /// First padding byte.
        offset: u32,
        /// Length of that hole.
        size: u32,
    },
    /// Text longer than its `char[N]`, or a list longer than its array.
    #[error("{path}: {ty} holds at most {max} {what}, {given} given")]
    TooLong {
        /// Where.
        path: String,
        /// The array type.
        ty: String,
        /// "bytes of text" or "elements".
        what: &'static str,
        /// The limit.
        max: usize,
        /// What was given.
        given: usize,
    },
    /// A name that is not an enumerator of the enum.
    #[error("{path}: {ty} has no enumerator {name} (enumerators: {known})")]
    UnknownEnumerator {
        /// Where.
        path: String,
        /// The enum.
        ty: String,
        /// The name given.
        name: String,
        /// Its enumerators, comma separated.
        known: String,
    },
    /// A cgroup path the resolver does not know.
    #[error("{path}: cgroup {cgroup}: {source}")]
    Cgroup {
        /// Where.
        path: String,
        /// The path given.
        cgroup: String,
        /// The resolver's explanation.
        #[source]
        source: CgroupLookupError,
    },
    /// The BTF type cannot hold a configured value (no size, or a size
    /// other than the map's).
    #[error("{path}: {reason}")]
    Layout {
        /// Where.
        path: String,
        /// What is wrong.
        reason: String,
    },
}

impl MapValueError {
    /// Where in the entry the error is (`key`, `value.preference`, ...).
    pub fn path(&self) -> &str {
        match self {
            MapValueError::UnknownField { path, .. }
            | MapValueError::OutOfRange { path, .. }
            | MapValueError::WrongKind { path, .. }
            | MapValueError::Padding { path, .. }
            | MapValueError::TooLong { path, .. }
            | MapValueError::UnknownEnumerator { path, .. }
            | MapValueError::Cgroup { path, .. }
            | MapValueError::Layout { path, .. } => path,
        }
    }
}

/// Turns a cgroup path into its cgroup id (`kn->id`, what
/// `bpf_cgroup_from_id` takes); `Err` explains why it cannot.
pub type CgroupResolver<'a> = dyn FnMut(&str) -> Result<u64, CgroupLookupError> + 'a;

/// Why a [`CgroupResolver`] has no id for a path.
#[derive(Clone, Debug, thiserror::Error)]
pub enum CgroupLookupError {
    /// The caller has no cgroup hierarchy at all ([`no_cgroups`]).
    #[error("no cgroup hierarchy to resolve {path} in")]
    NoHierarchy {
        /// The path given.
        path: String,
    },
    /// The hierarchy has no cgroup at the path.
    #[error("no such cgroup")]
    NotFound,
    /// The host's own lookup failed; its error says why (the engine does
    /// not know the host's error types, and the `Arc` keeps
    /// [`MapValueError`] cloneable).
    #[error(transparent)]
    Host(std::sync::Arc<dyn std::error::Error + Send + Sync>),
}

impl CgroupLookupError {
    /// Wraps a host's lookup error.
    pub fn host(e: impl std::error::Error + Send + Sync + 'static) -> Self {
        CgroupLookupError::Host(std::sync::Arc::new(e))
    }
}

/// Host errors have no equality of their own: two are equal only when they
/// are the same error, which is what comparing [`MapValueError`]s needs.
impl PartialEq for CgroupLookupError {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (Self::NoHierarchy { path: a }, Self::NoHierarchy { path: b }) => a == b,
            (Self::NotFound, Self::NotFound) => true,
            (Self::Host(a), Self::Host(b)) => std::sync::Arc::ptr_eq(a, b),
            _ => false,
        }
    }
}

impl Eq for CgroupLookupError {}

/// A resolver for callers that have no cgroups: every path is an error.
pub fn no_cgroups(path: &str) -> Result<u64, CgroupLookupError> {
    Err(CgroupLookupError::NoHierarchy { path: path.into() })
}

/// Whether the encoded value is a map key (padding refused) or not.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// A map key.
    Key,
    /// A map value or a global variable.
    Value,
}

/// Encodes `value` as BTF type `ty` of `btf`. `path` names the entry in
/// errors (`key`, `value`, a variable name).
pub fn encode(
    btf: &Btf,
    ty: u32,
    value: &MapValue,
    role: Role,
    path: &str,
    resolve: &mut CgroupResolver<'_>,
) -> Result<Vec<u8>, MapValueError> {
    let size = btf.size_of(ty).ok_or_else(|| MapValueError::Layout {
        path: path.into(),
        reason: format!("{} has no size", type_name(btf, ty)),
    })?;
    if role == Role::Key {
        let mut covered = vec![false; size as usize];
        coverage(btf, ty, 0, &mut covered, 0);
        if let Some(start) = covered.iter().position(|c| !c) {
            let len = covered[start..].iter().take_while(|c| !**c).count();
            return Err(MapValueError::Padding {
                path: path.into(),
                ty: type_name(btf, ty),
                offset: start as u32,
                size: len as u32,
            });
        }
    }
    let mut buf = vec![0u8; size as usize];
    let mut enc = Encoder { btf, resolve };
    enc.write(ty, 0, value, path, &mut buf, 0)?;
    Ok(buf)
}

/// Encodes an integer or cgroup path for a map without BTF types: an
/// unsigned integer of `size` bytes (1 to 8).
pub fn encode_untyped(
    size: u32,
    value: &MapValue,
    path: &str,
    resolve: &mut CgroupResolver<'_>,
) -> Result<Vec<u8>, MapValueError> {
    if !(1..=8).contains(&size) {
        return Err(MapValueError::Layout {
            path: path.into(),
            reason: format!(
                "the map declares no BTF type and is {size} bytes wide: only 1..=8 byte \
                 integers can be set without BTF (declare it with __type)"
            ),
        });
    }
    let ty = format!("{size}-byte integer");
    let n = match value {
        MapValue::Int(n) => *n,
        MapValue::Str(p) => cgroup_id(p, path, resolve)?.into(),
        other => {
            return Err(MapValueError::WrongKind {
                path: path.into(),
                ty,
                expected: "an integer or a cgroup path".into(),
                got: other.kind_name(),
            })
        }
    };
    let max = (1i128 << (size * 8)) - 1;
    if !(0..=max).contains(&n) {
        return Err(MapValueError::OutOfRange {
            path: path.into(),
            ty,
            value: n,
            min: 0,
            max,
        });
    }
    Ok((n as u128).to_le_bytes()[..size as usize].to_vec())
}

fn cgroup_id(p: &str, path: &str, resolve: &mut CgroupResolver<'_>) -> Result<u64, MapValueError> {
    resolve(p).map_err(|source| MapValueError::Cgroup {
        path: path.into(),
        cgroup: p.into(),
        source,
    })
}

/// A C-like name of a type for messages: `u32`, `struct oomd_policy`,
/// `char[16]`, `enum pref`.
pub fn type_name(btf: &Btf, ty: u32) -> String {
    let mut id = ty;
    for _ in 0..MAX_DEPTH {
        let Some(t) = btf.type_by_id(id) else {
            return format!("type #{id}");
        };
        let named = |kw: &str| {
            if t.name.is_empty() {
                format!("anonymous {kw}")
            } else {
                format!("{kw} {}", t.name)
            }
        };
        return match &t.kind {
            BtfKind::Void => "void".into(),
            BtfKind::Int { .. } | BtfKind::Float { .. } | BtfKind::Typedef(_) => t.name.clone(),
            BtfKind::Struct { .. } => named("struct"),
            BtfKind::Union { .. } => named("union"),
            BtfKind::Enum { .. } => named("enum"),
            BtfKind::Fwd { union } => named(if *union { "union" } else { "struct" }),
            BtfKind::Ptr(to) => format!("{} *", type_name(btf, *to)),
            BtfKind::Array { elem, len, .. } => {
                // C order: the outer dimension first (`char[4][16]`).
                let mut dims = format!("[{len}]");
                let mut inner = *elem;
                for _ in 0..MAX_DEPTH {
                    let id = btf.skip_mods_and_typedefs(inner);
                    match btf.type_by_id(id).map(|t| &t.kind) {
                        Some(BtfKind::Array { elem, len, .. }) => {
                            dims.push_str(&format!("[{len}]"));
                            inner = *elem;
                        }
                        _ => break,
                    }
                }
                format!("{}{dims}", type_name(btf, inner))
            }
            BtfKind::Volatile(n)
            | BtfKind::Const(n)
            | BtfKind::Restrict(n)
            | BtfKind::TypeTag(n)
            | BtfKind::Var { ty: n, .. } => {
                id = *n;
                continue;
            }
            BtfKind::Func { .. } | BtfKind::FuncProto { .. } => "a function".into(),
            BtfKind::Datasec { .. } => format!("section {}", t.name),
            BtfKind::DeclTag { .. } => "a declaration tag".into(),
        };
    }
    format!("type #{ty}")
}

/// A type with its members, one level deep, for `bpfoom inspect`: what a
/// configuration writes for it (`struct oomd_policy { u8 preference; u8
/// recursive_kill; u64 last_pgscan; }`, `u64`, `char[16]`).
pub fn describe(btf: &Btf, ty: u32) -> String {
    let name = type_name(btf, ty);
    let id = btf.skip_mods_and_typedefs(ty);
    let Some(members) = btf.type_by_id(id).and_then(|t| t.kind.members()) else {
        return name;
    };
    let mut out = format!("{name} {{");
    for m in members {
        let field = if m.name.is_empty() {
            describe(btf, m.ty)
        } else {
            format!("{} {}", type_name(btf, m.ty), m.name)
        };
        out.push(' ');
        out.push_str(&field);
        if m.bitfield_size > 0 {
            out.push_str(&format!(":{}", m.bitfield_size));
        }
        out.push(';');
    }
    out.push_str(" }");
    out
}

/// Marks the bytes of `ty` (placed at byte `off`) that some scalar covers.
fn coverage(btf: &Btf, ty: u32, off: u32, covered: &mut [bool], depth: usize) {
    let id = btf.skip_mods_and_typedefs(ty);
    let mark = |covered: &mut [bool], from: u32, len: u32| {
        for b in covered.iter_mut().skip(from as usize).take(len as usize) {
            *b = true;
        }
    };
    let Some(t) = btf.type_by_id(id) else { return };
    if depth > MAX_DEPTH {
        mark(covered, off, btf.size_of(id).unwrap_or(0));
        return;
    }
    match &t.kind {
        BtfKind::Struct { members, .. } | BtfKind::Union { members, .. } => {
            for m in members {
                if m.bitfield_size > 0 {
                    let first = m.bit_offset / 8;
                    let last = (m.bit_offset + m.bitfield_size).div_ceil(8);
                    mark(covered, off + first, last - first);
                } else {
                    coverage(btf, m.ty, off + m.bit_offset / 8, covered, depth + 1);
                }
            }
        }
        BtfKind::Array { elem, len, .. } => {
            let stride = btf.size_of(*elem).unwrap_or(0);
            for i in 0..*len {
                coverage(btf, *elem, off + i * stride, covered, depth + 1);
            }
        }
        _ => mark(covered, off, btf.size_of(id).unwrap_or(0)),
    }
}

struct Encoder<'b, 'r, 'a> {
    btf: &'b Btf,
    resolve: &'r mut CgroupResolver<'a>,
}

/// A struct member found by name, possibly inside anonymous members:
/// its absolute bit offset within the searched struct.
struct Found<'m> {
    member: &'m Member,
    bit_offset: u32,
}

fn find_member<'m>(
    btf: &'m Btf,
    members: &'m [Member],
    name: &str,
    depth: usize,
) -> Option<Found<'m>> {
    for m in members {
        if m.name == name {
            return Some(Found {
                member: m,
                bit_offset: m.bit_offset,
            });
        }
        if m.name.is_empty() && depth < MAX_DEPTH {
            let inner = btf.skip_mods_and_typedefs(m.ty);
            if let Some(sub) = btf.type_by_id(inner).and_then(|t| t.kind.members()) {
                if let Some(f) = find_member(btf, sub, name, depth + 1) {
                    return Some(Found {
                        member: f.member,
                        bit_offset: m.bit_offset + f.bit_offset,
                    });
                }
            }
        }
    }
    None
}

/// The names a struct answers to (anonymous members' names flattened).
fn member_names(btf: &Btf, members: &[Member], out: &mut Vec<String>, depth: usize) {
    for m in members {
        if !m.name.is_empty() {
            out.push(m.name.clone());
        } else if depth < MAX_DEPTH {
            let inner = btf.skip_mods_and_typedefs(m.ty);
            if let Some(sub) = btf.type_by_id(inner).and_then(|t| t.kind.members()) {
                member_names(btf, sub, out, depth + 1);
            }
        }
    }
}

/// Two's complement bounds of a `bits`-wide integer.
fn bounds(bits: u32, signed: bool) -> (i128, i128) {
    let bits = bits.min(127);
    if signed {
        let half = 1i128 << (bits - 1).min(126);
        (-half, half - 1)
    } else if bits >= 127 {
        (0, i128::MAX)
    } else {
        (0, (1i128 << bits) - 1)
    }
}

/// Whether `ty` is a one-byte character type (`char[N]` reads as text).
pub(crate) fn is_char(btf: &Btf, ty: u32) -> bool {
    let id = btf.skip_mods_and_typedefs(ty);
    matches!(
        btf.type_by_id(id).map(|t| (&t.kind, t.name.as_str())),
        Some((
            BtfKind::Int {
                size: 1,
                char: true,
                ..
            },
            _
        )) | Some((
            BtfKind::Int { size: 1, .. },
            "char" | "signed char" | "unsigned char"
        ))
    )
}

impl Encoder<'_, '_, '_> {
    /// Writes `v` as type `ty` at byte `off` of `buf`.
    fn write(
        &mut self,
        ty: u32,
        off: u32,
        v: &MapValue,
        path: &str,
        buf: &mut [u8],
        depth: usize,
    ) -> Result<(), MapValueError> {
        let btf = self.btf;
        let name = type_name(btf, ty);
        let id = btf.skip_mods_and_typedefs(ty);
        let wrong = |expected: &str| MapValueError::WrongKind {
            path: path.into(),
            ty: name.clone(),
            expected: expected.into(),
            got: v.kind_name(),
        };
        if depth > MAX_DEPTH {
            return Err(MapValueError::Layout {
                path: path.into(),
                reason: format!("{name} nests deeper than {MAX_DEPTH} levels"),
            });
        }
        let t = btf.type_by_id(id).ok_or_else(|| MapValueError::Layout {
            path: path.into(),
            reason: format!("type #{id} does not exist"),
        })?;
        match &t.kind {
            BtfKind::Int {
                size,
                signed,
                bool: is_bool,
                ..
            } => {
                let n = match v {
                    MapValue::Bool(b) if *is_bool => i128::from(*b),
                    MapValue::Int(n) => *n,
                    MapValue::Str(p) if !*is_bool => cgroup_id(p, path, self.resolve)?.into(),
                    _ if *is_bool => return Err(wrong("true, false, 0 or 1")),
                    _ => return Err(wrong("an integer or a cgroup path")),
                };
                let (min, max) = if *is_bool {
                    (0, 1)
                } else {
                    bounds(size * 8, *signed)
                };
                self.put_int(n, min, max, off * 8, size * 8, &name, path, buf)
            }
            BtfKind::Enum {
                size,
                signed,
                values,
                ..
            } => {
                let n = match v {
                    MapValue::Int(n) => *n,
                    MapValue::Str(s) => match values.iter().find(|e| e.name == *s) {
                        Some(e) => e.value.into(),
                        None => {
                            return Err(MapValueError::UnknownEnumerator {
                                path: path.into(),
                                ty: name,
                                name: s.clone(),
                                known: values
                                    .iter()
                                    .map(|e| e.name.as_str())
                                    .collect::<Vec<_>>()
                                    .join(", "),
                            })
                        }
                    },
                    _ => return Err(wrong("an integer or an enumerator name")),
                };
                let (min, max) = bounds(size * 8, *signed);
                self.put_int(n, min, max, off * 8, size * 8, &name, path, buf)
            }
            BtfKind::Struct { members, .. } | BtfKind::Union { members, .. } => {
                let MapValue::Struct(fields) = v else {
                    return Err(wrong("a table of fields"));
                };
                let union = matches!(t.kind, BtfKind::Union { .. });
                if union && fields.len() > 1 {
                    return Err(MapValueError::WrongKind {
                        path: path.into(),
                        ty: name,
                        expected: "one member (it is a union)".into(),
                        got: "several",
                    });
                }
                for (field, fv) in fields {
                    let sub = format!("{path}.{field}");
                    let Some(found) = find_member(btf, members, field, 0) else {
                        let mut known = Vec::new();
                        member_names(btf, members, &mut known, 0);
                        return Err(MapValueError::UnknownField {
                            path: path.into(),
                            ty: name,
                            field: field.clone(),
                            known: known.join(", "),
                        });
                    };
                    let m = found.member;
                    if m.bitfield_size > 0 {
                        let fid = btf.skip_mods_and_typedefs(m.ty);
                        let signed = match btf.type_by_id(fid).map(|t| &t.kind) {
                            Some(BtfKind::Int { signed, .. } | BtfKind::Enum { signed, .. }) => {
                                *signed
                            }
                            _ => false,
                        };
                        let bname = format!("{}:{}", type_name(btf, m.ty), m.bitfield_size);
                        let n = match fv {
                            MapValue::Int(n) => *n,
                            MapValue::Bool(b) => i128::from(*b),
                            other => {
                                return Err(MapValueError::WrongKind {
                                    path: sub,
                                    ty: bname,
                                    expected: "an integer".into(),
                                    got: other.kind_name(),
                                })
                            }
                        };
                        let (min, max) = bounds(m.bitfield_size, signed);
                        self.put_int(
                            n,
                            min,
                            max,
                            off * 8 + found.bit_offset,
                            m.bitfield_size,
                            &bname,
                            &sub,
                            buf,
                        )?;
                    } else {
                        self.write(m.ty, off + found.bit_offset / 8, fv, &sub, buf, depth + 1)?;
                    }
                }
                Ok(())
            }
            BtfKind::Array { elem, len, .. } => {
                let stride = btf.size_of(*elem).unwrap_or(0);
                match v {
                    MapValue::Str(s) if is_char(btf, *elem) => {
                        let max = (*len as usize).saturating_sub(1);
                        if s.len() > max {
                            return Err(MapValueError::TooLong {
                                path: path.into(),
                                ty: name,
                                what: "bytes of text",
                                max,
                                given: s.len(),
                            });
                        }
                        let start = off as usize;
                        buf[start..start + s.len()].copy_from_slice(s.as_bytes());
                        Ok(())
                    }
                    MapValue::Array(items) => {
                        if items.len() > *len as usize {
                            return Err(MapValueError::TooLong {
                                path: path.into(),
                                ty: name,
                                what: "elements",
                                max: *len as usize,
                                given: items.len(),
                            });
                        }
                        for (i, item) in items.iter().enumerate() {
                            let sub = format!("{path}[{i}]");
                            self.write(*elem, off + i as u32 * stride, item, &sub, buf, depth + 1)?;
                        }
                        Ok(())
                    }
                    _ if is_char(btf, *elem) => Err(wrong("a string or a list")),
                    _ => Err(wrong("a list")),
                }
            }
            BtfKind::Ptr(_) => Err(wrong("nothing (pointers are not configurable)")),
            _ => Err(wrong("nothing (not a configurable type)")),
        }
    }

    /// Range-checks `n` and stores its low `bits` bits at bit `bit_off`.
    #[allow(clippy::too_many_arguments)]
    fn put_int(
        &self,
        n: i128,
        min: i128,
        max: i128,
        bit_off: u32,
        bits: u32,
        ty: &str,
        path: &str,
        buf: &mut [u8],
    ) -> Result<(), MapValueError> {
        if !(min..=max).contains(&n) {
            return Err(MapValueError::OutOfRange {
                path: path.into(),
                ty: ty.into(),
                value: n,
                min,
                max,
            });
        }
        let raw = n as u128;
        for i in 0..bits {
            let bit = bit_off + i;
            let Some(byte) = buf.get_mut((bit / 8) as usize) else {
                return Err(MapValueError::Layout {
                    path: path.into(),
                    reason: format!("{ty} lies outside its container"),
                });
            };
            let mask = 1u8 << (bit % 8);
            if (raw >> i.min(127)) & 1 == 1 {
                *byte |= mask;
            } else {
                *byte &= !mask;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use bpfoom_obj::{BtfType, EnumValue};

    fn int(name: &str, size: u32, signed: bool) -> BtfType {
        BtfType {
            name: name.into(),
            kind: BtfKind::Int {
                size,
                signed,
                char: false,
                bool: false,
                offset: 0,
                bits: (size * 8) as u8,
            },
        }
    }

    fn member(name: &str, ty: u32, bit_offset: u32) -> Member {
        Member {
            name: name.into(),
            ty,
            bit_offset,
            bitfield_size: 0,
        }
    }

    fn ty(name: &str, kind: BtfKind) -> BtfType {
        BtfType {
            name: name.into(),
            kind,
        }
    }

    // Type ids, in the order `btf()` lists them.
    const U8: u32 = 1;
    const U32: u32 = 2;
    const U64: u32 = 3;
    const S32: u32 = 4;
    const BOOL: u32 = 5;
    const POLICY: u32 = 7;
    const NAMED: u32 = 9;
    const PREF: u32 = 10;
    const PTR: u32 = 11;
    const BITS: u32 = 12;
    const ANON: u32 = 14;
    const U64T: u32 = 15;
    const FWD: u32 = 16;
    const UNION: u32 = 13;

    /// Test types, shared with the dump tests (decode is encode's inverse).
    pub(crate) fn btf() -> Btf {
        Btf::from_types(vec![
            ty("", BtfKind::Void),
            int("u8", 1, false),
            int("u32", 4, false),
            int("u64", 8, false),
            int("s32", 4, true),
            ty(
                "bool",
                BtfKind::Int {
                    size: 1,
                    signed: false,
                    char: false,
                    bool: true,
                    offset: 0,
                    bits: 8,
                },
            ),
            ty(
                "char",
                BtfKind::Int {
                    size: 1,
                    signed: true,
                    char: true,
                    bool: false,
                    offset: 0,
                    bits: 8,
                },
            ),
            // 7: upstream test_oomd's preference record: implicit padding 2..8.
            ty(
                "oomd_policy",
                BtfKind::Struct {
                    size: 16,
                    members: vec![
                        member("preference", U8, 0),
                        member("recursive_kill", U8, 8),
                        member("last_pgscan", U64, 64),
                    ],
                },
            ),
            // 8: char[8]
            ty(
                "",
                BtfKind::Array {
                    elem: 6,
                    index: U32,
                    len: 8,
                },
            ),
            // 9: struct named { char name[8]; u32 ids[2] (via 17) }
            ty(
                "named",
                BtfKind::Struct {
                    size: 16,
                    members: vec![member("name", 8, 0), member("ids", 17, 64)],
                },
            ),
            ty(
                "pref",
                BtfKind::Enum {
                    size: 4,
                    signed: false,
                    is64: false,
                    values: ["PREF_NONE", "PREF_AVOID", "PREF_OMIT"]
                        .iter()
                        .enumerate()
                        .map(|(i, n)| EnumValue {
                            name: (*n).into(),
                            value: i as i64,
                        })
                        .collect(),
                },
            ),
            ty("", BtfKind::Ptr(POLICY)),
            // 12: struct bits { u32 a:3; u32 b:5; s32 c:4; }
            ty(
                "bits",
                BtfKind::Struct {
                    size: 4,
                    members: vec![
                        Member {
                            bitfield_size: 3,
                            ..member("a", U32, 0)
                        },
                        Member {
                            bitfield_size: 5,
                            ..member("b", U32, 3)
                        },
                        Member {
                            bitfield_size: 4,
                            ..member("c", S32, 8)
                        },
                    ],
                },
            ),
            // 13: union { u32 x; u64 y; }
            ty(
                "",
                BtfKind::Union {
                    size: 8,
                    members: vec![member("x", U32, 0), member("y", U64, 0)],
                },
            ),
            // 14: struct anon { union { x; y; }; u64 z; struct oomd_policy *p; }
            ty(
                "anon",
                BtfKind::Struct {
                    size: 24,
                    members: vec![
                        member("", UNION, 0),
                        member("z", U64, 64),
                        member("p", PTR, 128),
                    ],
                },
            ),
            ty("__u64", BtfKind::Typedef(U64)),
            ty("opaque", BtfKind::Fwd { union: false }),
            // 17: u32[2]
            ty(
                "",
                BtfKind::Array {
                    elem: U32,
                    index: U32,
                    len: 2,
                },
            ),
            // 18: char[3][8]
            ty(
                "",
                BtfKind::Array {
                    elem: 8,
                    index: U32,
                    len: 3,
                },
            ),
        ])
        .unwrap()
    }

    fn cgroups(path: &str) -> Result<u64, CgroupLookupError> {
        match path {
            "/job/a" => Ok(0x1234),
            _ => Err(CgroupLookupError::NotFound),
        }
    }

    fn enc(ty: u32, v: MapValue, role: Role) -> Result<Vec<u8>, MapValueError> {
        encode(&btf(), ty, &v, role, "value", &mut cgroups)
    }

    fn table(fields: &[(&str, MapValue)]) -> MapValue {
        MapValue::Struct(
            fields
                .iter()
                .map(|(k, v)| ((*k).to_string(), v.clone()))
                .collect(),
        )
    }

    #[test]
    fn integers_by_width_and_sign() {
        assert_eq!(enc(U8, 255u64.into(), Role::Value), Ok(vec![255]));
        assert_eq!(enc(U32, 7u64.into(), Role::Key), Ok(vec![7, 0, 0, 0]));
        assert_eq!(
            enc(S32, (-2i64).into(), Role::Value),
            Ok(vec![0xfe, 0xff, 0xff, 0xff])
        );
        assert_eq!(enc(U64T, u64::MAX.into(), Role::Value), Ok(vec![0xff; 8]));
        let e = enc(U8, 256u64.into(), Role::Value).unwrap_err();
        assert_eq!(
            e,
            MapValueError::OutOfRange {
                path: "value".into(),
                ty: "u8".into(),
                value: 256,
                min: 0,
                max: 255
            }
        );
        assert!(
            e.to_string()
                .contains("256 is out of range for u8 (0..=255)"),
            "{e}"
        );
        assert!(matches!(
            enc(U32, (-1i64).into(), Role::Value),
            Err(MapValueError::OutOfRange { min: 0, .. })
        ));
        assert!(matches!(
            enc(S32, MapValue::Int(1 << 31), Role::Value),
            Err(MapValueError::OutOfRange {
                max: 2147483647,
                ..
            })
        ));
        // The typedef's own name is the one the user wrote in C.
        assert!(matches!(
            enc(U64T, MapValue::Int(-1), Role::Value),
            Err(MapValueError::OutOfRange { ty, .. }) if ty == "__u64"
        ));
    }

    #[test]
    fn cgroup_paths_become_ids() {
        assert_eq!(
            enc(U64, "/job/a".into(), Role::Key),
            Ok(0x1234u64.to_le_bytes().to_vec())
        );
        let e = enc(U64, "/nope".into(), Role::Key).unwrap_err();
        assert_eq!(
            e,
            MapValueError::Cgroup {
                path: "value".into(),
                cgroup: "/nope".into(),
                source: CgroupLookupError::NotFound,
            }
        );
        assert_eq!(e.to_string(), "value: cgroup /nope: no such cgroup");
        // An id that does not fit the field is out of range, not truncated.
        assert!(matches!(
            enc(U8, "/job/a".into(), Role::Value),
            Err(MapValueError::OutOfRange { value: 0x1234, .. })
        ));
        let e = encode(
            &btf(),
            U64,
            &"/job/a".into(),
            Role::Key,
            "key",
            &mut no_cgroups,
        );
        assert!(matches!(e, Err(MapValueError::Cgroup { .. })));
    }

    #[test]
    fn structs_by_field_name() {
        let v = table(&[
            ("preference", 2u64.into()),
            ("last_pgscan", 0x0102u64.into()),
        ]);
        let b = enc(POLICY, v, Role::Value).unwrap();
        assert_eq!(b, [2, 0, 0, 0, 0, 0, 0, 0, 2, 1, 0, 0, 0, 0, 0, 0]);
        let e = enc(POLICY, table(&[("prefrence", 2u64.into())]), Role::Value).unwrap_err();
        assert_eq!(
            e,
            MapValueError::UnknownField {
                path: "value".into(),
                ty: "struct oomd_policy".into(),
                field: "prefrence".into(),
                known: "preference, recursive_kill, last_pgscan".into()
            }
        );
        let e = enc(POLICY, table(&[("preference", 300u64.into())]), Role::Value).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("value.preference: 300 is out of range for u8"),
            "{e}"
        );
    }

    #[test]
    fn wrong_kinds() {
        let e = enc(POLICY, 2u64.into(), Role::Value).unwrap_err();
        assert_eq!(
            e,
            MapValueError::WrongKind {
                path: "value".into(),
                ty: "struct oomd_policy".into(),
                expected: "a table of fields".into(),
                got: "an integer"
            }
        );
        assert!(matches!(
            enc(U32, table(&[]), Role::Value),
            Err(MapValueError::WrongKind { got: "a table", .. })
        ));
        assert!(matches!(
            enc(U32, MapValue::Bool(true), Role::Value),
            Err(MapValueError::WrongKind {
                got: "a boolean",
                ..
            })
        ));
        let e = enc(ANON, table(&[("p", 0u64.into())]), Role::Value).unwrap_err();
        assert!(
            matches!(&e, MapValueError::WrongKind { path, ty, .. }
                if path == "value.p" && ty == "struct oomd_policy *"),
            "{e:?}"
        );
        assert!(matches!(
            enc(
                UNION,
                table(&[("x", 1u64.into()), ("y", 2u64.into())]),
                Role::Value
            ),
            Err(MapValueError::WrongKind { got: "several", .. })
        ));
        assert!(matches!(
            enc(17, 3u64.into(), Role::Value),
            Err(MapValueError::WrongKind {
                got: "an integer",
                ..
            })
        ));
    }

    #[test]
    fn key_padding_is_refused_value_padding_is_zero() {
        let v = table(&[("preference", 1u64.into())]);
        let e = enc(POLICY, v.clone(), Role::Key).unwrap_err();
        assert_eq!(
            e,
            MapValueError::Padding {
                path: "value".into(),
                ty: "struct oomd_policy".into(),
                offset: 2,
                size: 6
            }
        );
        assert!(enc(POLICY, v, Role::Value).is_ok());
        // Bitfields cover the bytes they touch; the unused tail is padding.
        assert!(matches!(
            enc(BITS, table(&[]), Role::Key),
            Err(MapValueError::Padding {
                offset: 2,
                size: 2,
                ..
            })
        ));
        assert!(enc(U64, 1u64.into(), Role::Key).is_ok());
    }

    #[test]
    fn enums_by_value_or_name() {
        assert_eq!(
            enc(PREF, "PREF_OMIT".into(), Role::Value),
            Ok(vec![2, 0, 0, 0])
        );
        assert_eq!(enc(PREF, 1u64.into(), Role::Value), Ok(vec![1, 0, 0, 0]));
        let e = enc(PREF, "PREF_PREFER".into(), Role::Value).unwrap_err();
        assert_eq!(
            e,
            MapValueError::UnknownEnumerator {
                path: "value".into(),
                ty: "enum pref".into(),
                name: "PREF_PREFER".into(),
                known: "PREF_NONE, PREF_AVOID, PREF_OMIT".into()
            }
        );
    }

    #[test]
    fn bools() {
        assert_eq!(enc(BOOL, MapValue::Bool(true), Role::Value), Ok(vec![1]));
        assert_eq!(enc(BOOL, 0u64.into(), Role::Value), Ok(vec![0]));
        assert!(matches!(
            enc(BOOL, 2u64.into(), Role::Value),
            Err(MapValueError::OutOfRange { max: 1, .. })
        ));
        assert!(matches!(
            enc(BOOL, "/job/a".into(), Role::Value),
            Err(MapValueError::WrongKind { .. })
        ));
    }

    #[test]
    fn bitfields() {
        let v = table(&[
            ("a", 5u64.into()),
            ("b", 31u64.into()),
            ("c", (-3i64).into()),
        ]);
        let b = enc(BITS, v, Role::Value).unwrap();
        let word = u32::from_le_bytes(b.try_into().unwrap());
        assert_eq!(word & 7, 5);
        assert_eq!((word >> 3) & 31, 31);
        assert_eq!((word >> 8) & 15, 0b1101); // -3 in 4 bits
        let e = enc(BITS, table(&[("a", 8u64.into())]), Role::Value).unwrap_err();
        assert_eq!(
            e,
            MapValueError::OutOfRange {
                path: "value.a".into(),
                ty: "u32:3".into(),
                value: 8,
                min: 0,
                max: 7
            }
        );
        assert!(matches!(
            enc(BITS, table(&[("c", 8u64.into())]), Role::Value),
            Err(MapValueError::OutOfRange {
                min: -8,
                max: 7,
                ..
            })
        ));
    }

    #[test]
    fn arrays_and_text() {
        let v = table(&[
            ("name", "sshd".into()),
            ("ids", MapValue::Array(vec![1u64.into(), 2u64.into()])),
        ]);
        let b = enc(NAMED, v, Role::Value).unwrap();
        assert_eq!(&b[..8], b"sshd\0\0\0\0");
        assert_eq!(&b[8..], [1, 0, 0, 0, 2, 0, 0, 0]);
        let e = enc(
            NAMED,
            table(&[("name", "systemd-oomd".into())]),
            Role::Value,
        )
        .unwrap_err();
        assert_eq!(
            e,
            MapValueError::TooLong {
                path: "value.name".into(),
                ty: "char[8]".into(),
                what: "bytes of text",
                max: 7,
                given: 12
            }
        );
        let three = MapValue::Array(vec![1u64.into(), 2u64.into(), 3u64.into()]);
        assert!(matches!(
            enc(NAMED, table(&[("ids", three)]), Role::Value),
            Err(MapValueError::TooLong {
                what: "elements",
                max: 2,
                given: 3,
                ..
            })
        ));
        let e = enc(
            NAMED,
            table(&[("ids", MapValue::Array(vec![1u64.into(), (-1i64).into()]))]),
            Role::Value,
        )
        .unwrap_err();
        assert!(matches!(&e, MapValueError::OutOfRange { path, .. } if path == "value.ids[1]"));
    }

    #[test]
    fn anonymous_members_are_named_directly() {
        let b = enc(
            ANON,
            table(&[("y", 9u64.into()), ("z", 1u64.into())]),
            Role::Value,
        )
        .unwrap();
        assert_eq!(b[0], 9);
        assert_eq!(b[8], 1);
        let e = enc(ANON, table(&[("w", 1u64.into())]), Role::Value).unwrap_err();
        assert!(
            matches!(&e, MapValueError::UnknownField { known, .. } if known == "x, y, z, p"),
            "{e:?}"
        );
    }

    #[test]
    fn layout_errors() {
        assert!(matches!(
            enc(FWD, 1u64.into(), Role::Value),
            Err(MapValueError::Layout { .. })
        ));
        assert_eq!(
            encode_untyped(4, &9u64.into(), "key", &mut cgroups),
            Ok(vec![9, 0, 0, 0])
        );
        assert_eq!(
            encode_untyped(8, &"/job/a".into(), "key", &mut cgroups),
            Ok(0x1234u64.to_le_bytes().to_vec())
        );
        assert!(matches!(
            encode_untyped(2, &70000u64.into(), "value", &mut cgroups),
            Err(MapValueError::OutOfRange { max: 65535, .. })
        ));
        assert!(matches!(
            encode_untyped(16, &1u64.into(), "value", &mut cgroups),
            Err(MapValueError::Layout { .. })
        ));
        assert!(matches!(
            encode_untyped(8, &table(&[]), "value", &mut cgroups),
            Err(MapValueError::WrongKind { .. })
        ));
    }

    #[test]
    fn descriptions_name_the_fields() {
        let b = btf();
        assert_eq!(
            describe(&b, POLICY),
            "struct oomd_policy { u8 preference; u8 recursive_kill; u64 last_pgscan; }"
        );
        assert_eq!(
            describe(&b, BITS),
            "struct bits { u32 a:3; u32 b:5; s32 c:4; }"
        );
        assert_eq!(
            describe(&b, ANON),
            "struct anon { anonymous union { u32 x; u64 y; }; u64 z; struct oomd_policy * p; }"
        );
        assert_eq!(describe(&b, U64T), "__u64");
        assert_eq!(
            describe(&b, NAMED),
            "struct named { char[8] name; u32[2] ids; }"
        );
        assert_eq!(describe(&b, 18), "char[3][8]");
        // A list of strings for a char[3][8].
        let v = MapValue::Array(vec!["sshd".into(), "init".into()]);
        let bytes = enc(18, v, Role::Value).unwrap();
        assert_eq!(&bytes[..8], b"sshd\0\0\0\0");
        assert_eq!(&bytes[8..12], b"init");
        assert_eq!(&bytes[16..], [0; 8]);
    }

    #[test]
    fn serde_round_trip_untagged() {
        let v = table(&[
            ("a", MapValue::Int(u64::MAX.into())),
            ("b", MapValue::Array(vec![(-1i64).into(), "/x".into()])),
            ("c", MapValue::Bool(false)),
        ]);
        let j = serde_json::to_string(&v).unwrap();
        assert_eq!(j, r#"{"a":18446744073709551615,"b":[-1,"/x"],"c":false}"#);
        assert_eq!(serde_json::from_str::<MapValue>(&j).unwrap(), v);
        assert!(serde_json::from_str::<MapValue>("1.5").is_err());
        assert!(serde_json::from_str::<MapValue>(r#"{"a":1,"a":2}"#).is_err());
        assert_eq!(
            v.to_string(),
            r#"{ a = 18446744073709551615, b = [-1, "/x"], c = false }"#
        );
    }
}
