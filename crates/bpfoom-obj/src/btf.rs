//! BTF: the type section clang emits with `-g` (format of Linux `Documentation/bpf/btf.rst`).
//!
//! Types are decoded into owned Rust values with their names resolved, so the same [`Btf`] can
//! also be built in memory (for the host's synthetic kernel types) and both sides of a CO-RE
//! relocation are handled by one matching algorithm.

use crate::error::ObjError;

const BTF_MAGIC: u16 = 0xeb9f;
/// Longest modifier/typedef/array chain followed before a type graph is declared cyclic.
pub(crate) const MAX_CHAIN: usize = 32;

/// One BTF type; its id is its index in [`Btf::types`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BtfType {
    /// Type name; empty for anonymous types.
    pub name: String,
    /// Kind-specific data.
    pub kind: BtfKind,
}

/// A struct or union member.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Member {
    /// Member name; empty for anonymous members.
    pub name: String,
    /// Member type id.
    pub ty: u32,
    /// Offset from the start of the aggregate in bits.
    pub bit_offset: u32,
    /// Bitfield width in bits, 0 for a plain member.
    pub bitfield_size: u32,
}

/// One enumerator.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EnumValue {
    /// Enumerator name.
    pub name: String,
    /// Its value (sign-extended from 32 bits for signed `ENUM`).
    pub value: i64,
}

/// A function prototype parameter.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Param {
    /// Parameter name (may be empty).
    pub name: String,
    /// Parameter type id; 0 with an empty name marks a trailing `...`.
    pub ty: u32,
}

/// A variable placed in a data section.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DatasecVar {
    /// The `VAR` type id.
    pub ty: u32,
    /// Byte offset inside the section.
    pub offset: u32,
    /// Size in bytes.
    pub size: u32,
}

/// The kinds of BTF types.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BtfKind {
    /// Type id 0.
    Void,
    /// Integer.
    Int {
        /// Size in bytes.
        size: u32,
        /// Whether the integer is signed.
        signed: bool,
        /// Whether it is `char`.
        char: bool,
        /// Whether it is `_Bool`.
        bool: bool,
        /// Bit offset of the value inside the storage.
        offset: u8,
        /// Number of value bits.
        bits: u8,
    },
    /// Pointer to a type.
    Ptr(u32),
    /// Fixed-size array.
    Array {
        /// Element type.
        elem: u32,
        /// Index type.
        index: u32,
        /// Element count.
        len: u32,
    },
    /// Structure.
    Struct {
        /// Size in bytes.
        size: u32,
        /// Members in declaration order.
        members: Vec<Member>,
    },
    /// Union.
    Union {
        /// Size in bytes.
        size: u32,
        /// Members in declaration order.
        members: Vec<Member>,
    },
    /// Enumeration (`ENUM` or `ENUM64`).
    Enum {
        /// Size in bytes.
        size: u32,
        /// Whether values are signed.
        signed: bool,
        /// Whether the type was encoded as `ENUM64`.
        is64: bool,
        /// Enumerators.
        values: Vec<EnumValue>,
    },
    /// Forward declaration.
    Fwd {
        /// `union` rather than `struct`.
        union: bool,
    },
    /// Typedef of a type.
    Typedef(u32),
    /// `volatile` of a type.
    Volatile(u32),
    /// `const` of a type.
    Const(u32),
    /// `restrict` of a type.
    Restrict(u32),
    /// `btf_type_tag` on a type.
    TypeTag(u32),
    /// Function (name plus prototype).
    Func {
        /// The `FUNC_PROTO` type id.
        proto: u32,
        /// Linkage: 0 static, 1 global, 2 extern.
        linkage: u32,
    },
    /// Function prototype.
    FuncProto {
        /// Return type (0 = void).
        ret: u32,
        /// Parameters.
        params: Vec<Param>,
    },
    /// Variable.
    Var {
        /// Variable type.
        ty: u32,
        /// Linkage: 0 static, 1 global, 2 extern.
        linkage: u32,
    },
    /// Data section listing variables.
    Datasec {
        /// Section size in bytes.
        size: u32,
        /// Variables placed in the section.
        vars: Vec<DatasecVar>,
    },
    /// Floating point.
    Float {
        /// Size in bytes.
        size: u32,
    },
    /// `btf_decl_tag` attached to a type or one of its members/params.
    DeclTag {
        /// Tagged type.
        ty: u32,
        /// Member/param index, or -1 for the type itself.
        component: i32,
    },
}

impl BtfKind {
    /// Short kind name as bpftool prints it.
    pub fn name(&self) -> &'static str {
        match self {
            BtfKind::Void => "VOID",
            BtfKind::Int { .. } => "INT",
            BtfKind::Ptr(_) => "PTR",
            BtfKind::Array { .. } => "ARRAY",
            BtfKind::Struct { .. } => "STRUCT",
            BtfKind::Union { .. } => "UNION",
            BtfKind::Enum { .. } => "ENUM",
            BtfKind::Fwd { .. } => "FWD",
            BtfKind::Typedef(_) => "TYPEDEF",
            BtfKind::Volatile(_) => "VOLATILE",
            BtfKind::Const(_) => "CONST",
            BtfKind::Restrict(_) => "RESTRICT",
            BtfKind::TypeTag(_) => "TYPE_TAG",
            BtfKind::Func { .. } => "FUNC",
            BtfKind::FuncProto { .. } => "FUNC_PROTO",
            BtfKind::Var { .. } => "VAR",
            BtfKind::Datasec { .. } => "DATASEC",
            BtfKind::Float { .. } => "FLOAT",
            BtfKind::DeclTag { .. } => "DECL_TAG",
        }
    }

    /// Members of a struct or union.
    pub fn members(&self) -> Option<&[Member]> {
        match self {
            BtfKind::Struct { members, .. } | BtfKind::Union { members, .. } => Some(members),
            _ => None,
        }
    }

    /// Type ids this type refers to (used for bounds checking).
    fn refs(&self) -> Vec<u32> {
        match self {
            BtfKind::Ptr(t)
            | BtfKind::Typedef(t)
            | BtfKind::Volatile(t)
            | BtfKind::Const(t)
            | BtfKind::Restrict(t)
            | BtfKind::TypeTag(t)
            | BtfKind::Var { ty: t, .. }
            | BtfKind::DeclTag { ty: t, .. }
            | BtfKind::Func { proto: t, .. } => vec![*t],
            BtfKind::Array { elem, index, .. } => vec![*elem, *index],
            BtfKind::Struct { members, .. } | BtfKind::Union { members, .. } => {
                members.iter().map(|m| m.ty).collect()
            }
            BtfKind::FuncProto { ret, params } => std::iter::once(*ret)
                .chain(params.iter().map(|p| p.ty))
                .collect(),
            BtfKind::Datasec { vars, .. } => vars.iter().map(|v| v.ty).collect(),
            BtfKind::Void
            | BtfKind::Int { .. }
            | BtfKind::Enum { .. }
            | BtfKind::Fwd { .. }
            | BtfKind::Float { .. } => Vec::new(),
        }
    }
}

/// A parsed (or built) set of BTF types plus its string section.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Btf {
    types: Vec<BtfType>,
    strings: Vec<u8>,
}

/// Little-endian bounds-checked reader used by the BTF and BTF.ext parsers.
pub(crate) struct Reader<'a> {
    pub(crate) data: &'a [u8],
    pub(crate) pos: usize,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(data: &'a [u8], pos: usize) -> Self {
        Self { data, pos }
    }
    pub(crate) fn bytes(&mut self, n: usize) -> Option<&'a [u8]> {
        let end = self.pos.checked_add(n)?;
        let s = self.data.get(self.pos..end)?;
        self.pos = end;
        Some(s)
    }
    pub(crate) fn u32(&mut self) -> Option<u32> {
        let b = self.bytes(4)?;
        Some(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }
    pub(crate) fn u16(&mut self) -> Option<u16> {
        let b = self.bytes(2)?;
        Some(u16::from_le_bytes([b[0], b[1]]))
    }
}

/// Reads a NUL-terminated string at `off` in a string table.
pub(crate) fn c_str(strings: &[u8], off: u32) -> Option<&str> {
    let rest = strings.get(off as usize..)?;
    let end = rest.iter().position(|&b| b == 0)?;
    std::str::from_utf8(&rest[..end]).ok()
}

impl Btf {
    /// Builds a BTF set from types (index 0 must be [`BtfKind::Void`]; one is inserted if the
    /// list is empty) and checks that every reference is in bounds and acyclic.
    pub fn from_types(mut types: Vec<BtfType>) -> Result<Btf, ObjError> {
        if types.first().map(|t| &t.kind) != Some(&BtfKind::Void) {
            types.insert(
                0,
                BtfType {
                    name: String::new(),
                    kind: BtfKind::Void,
                },
            );
        }
        let btf = Btf {
            types,
            strings: vec![0],
        };
        btf.validate(&vec![0; btf.types.len()])?;
        Ok(btf)
    }

    /// Parses a `.BTF` section.
    pub fn parse(data: &[u8]) -> Result<Btf, ObjError> {
        let err = |offset: usize, reason: &str| ObjError::Btf {
            offset,
            type_id: None,
            reason: reason.to_string(),
        };
        let mut r = Reader::new(data, 0);
        let magic = r.u16().ok_or_else(|| err(0, "truncated header"))?;
        if magic != BTF_MAGIC {
            return Err(err(
                0,
                &format!("bad magic {magic:#06x} (big-endian BTF is not supported)"),
            ));
        }
        let hdr = r.bytes(2).ok_or_else(|| err(2, "truncated header"))?;
        if hdr[0] != 1 {
            return Err(err(2, &format!("unsupported BTF version {}", hdr[0])));
        }
        let fields: Option<[u32; 5]> =
            (|| Some([r.u32()?, r.u32()?, r.u32()?, r.u32()?, r.u32()?]))();
        let [hdr_len, type_off, type_len, str_off, str_len] =
            fields.ok_or_else(|| err(4, "truncated header"))?;
        let hdr_len = hdr_len as usize;
        if hdr_len < 24 || hdr_len > data.len() {
            return Err(err(4, &format!("bad header length {hdr_len}")));
        }
        let section = |off: u32, len: u32, what: &str| {
            let start = hdr_len.checked_add(off as usize);
            let end = start.and_then(|s| s.checked_add(len as usize));
            match (start, end) {
                (Some(s), Some(e)) if e <= data.len() => Ok(&data[s..e]),
                _ => Err(err(hdr_len, &format!("{what} section out of bounds"))),
            }
        };
        let type_data = section(type_off, type_len, "type")?;
        let strings = section(str_off, str_len, "string")?;
        if strings.first().is_some_and(|&b| b != 0) || strings.last().is_some_and(|&b| b != 0) {
            return Err(err(
                hdr_len + str_off as usize,
                "string section not NUL-delimited",
            ));
        }
        let base = hdr_len + type_off as usize;
        let mut types = vec![BtfType {
            name: String::new(),
            kind: BtfKind::Void,
        }];
        let mut offsets = vec![0usize];
        let mut r = Reader::new(type_data, 0);
        while r.pos < type_data.len() {
            let at = base + r.pos;
            offsets.push(at);
            let id = u32::try_from(types.len()).map_err(|_| err(at, "too many types"))?;
            types.push(parse_type(&mut r, strings).map_err(|reason| ObjError::Btf {
                offset: at,
                type_id: Some(id),
                reason,
            })?);
        }
        let btf = Btf {
            types,
            strings: strings.to_vec(),
        };
        btf.validate(&offsets)?;
        Ok(btf)
    }

    fn validate(&self, offsets: &[usize]) -> Result<(), ObjError> {
        let n = self.types.len();
        for (id, t) in self.types.iter().enumerate() {
            let bad = |reason: String| ObjError::Btf {
                offset: offsets.get(id).copied().unwrap_or(0),
                type_id: Some(id as u32),
                reason,
            };
            if let Some(r) = t.kind.refs().into_iter().find(|&r| r as usize >= n) {
                return Err(bad(format!(
                    "{} refers to missing type id {r}",
                    t.kind.name()
                )));
            }
            // Value-like chains (typedef, modifiers, arrays, vars) must end within a bound,
            // otherwise sizing the type would never terminate.
            let mut cur = id as u32;
            let mut steps = 0;
            while let Some(next) = self.chain_next(cur) {
                steps += 1;
                if steps > MAX_CHAIN {
                    return Err(bad("type chain loops or is too deep".into()));
                }
                cur = next;
            }
        }
        Ok(())
    }

    fn chain_next(&self, id: u32) -> Option<u32> {
        match &self.types.get(id as usize)?.kind {
            BtfKind::Typedef(t)
            | BtfKind::Volatile(t)
            | BtfKind::Const(t)
            | BtfKind::Restrict(t)
            | BtfKind::TypeTag(t)
            | BtfKind::Var { ty: t, .. } => Some(*t),
            BtfKind::Array { elem, .. } => Some(*elem),
            _ => None,
        }
    }

    /// All types; the index of each is its type id.
    pub fn types(&self) -> &[BtfType] {
        &self.types
    }

    /// Number of types including `void` (id 0).
    pub fn len(&self) -> usize {
        self.types.len()
    }

    /// Whether the set holds only `void`.
    pub fn is_empty(&self) -> bool {
        self.types.len() <= 1
    }

    /// The type with this id.
    pub fn type_by_id(&self, id: u32) -> Option<&BtfType> {
        self.types.get(id as usize)
    }

    /// Mutable access for fix-ups done while loading (datasec sizes, var offsets).
    pub(crate) fn type_mut(&mut self, id: u32) -> Option<&mut BtfType> {
        self.types.get_mut(id as usize)
    }

    /// A string from the string section by offset (file names and source lines of line info).
    pub fn string_at(&self, off: u32) -> Option<&str> {
        c_str(&self.strings, off)
    }

    /// First type id with this name whose kind satisfies `pred`.
    pub fn find(&self, name: &str, pred: impl Fn(&BtfKind) -> bool) -> Option<u32> {
        self.types
            .iter()
            .position(|t| t.name == name && pred(&t.kind))
            .map(|i| i as u32)
    }

    /// First struct with this name.
    pub fn find_struct(&self, name: &str) -> Option<u32> {
        self.find(name, |k| matches!(k, BtfKind::Struct { .. }))
    }

    /// First function (`FUNC`) with this name.
    pub fn find_func(&self, name: &str) -> Option<u32> {
        self.find(name, |k| matches!(k, BtfKind::Func { .. }))
    }

    /// Follows typedefs and cv/type-tag modifiers to the underlying type id.
    pub fn skip_mods_and_typedefs(&self, mut id: u32) -> u32 {
        for _ in 0..=MAX_CHAIN {
            match self.types.get(id as usize).map(|t| &t.kind) {
                Some(
                    BtfKind::Typedef(t)
                    | BtfKind::Volatile(t)
                    | BtfKind::Const(t)
                    | BtfKind::Restrict(t)
                    | BtfKind::TypeTag(t),
                ) => id = *t,
                _ => return id,
            }
        }
        id
    }

    /// Size in bytes of a type, if it has one (`void`, functions and forward declarations
    /// do not).
    pub fn size_of(&self, id: u32) -> Option<u32> {
        let mut id = id;
        let mut mult: u32 = 1;
        for _ in 0..=MAX_CHAIN {
            let size = match &self.types.get(id as usize)?.kind {
                BtfKind::Int { size, .. }
                | BtfKind::Struct { size, .. }
                | BtfKind::Union { size, .. }
                | BtfKind::Enum { size, .. }
                | BtfKind::Float { size }
                | BtfKind::Datasec { size, .. } => *size,
                BtfKind::Ptr(_) => 8,
                BtfKind::Array { elem, len, .. } => {
                    mult = mult.checked_mul(*len)?;
                    id = *elem;
                    continue;
                }
                BtfKind::Typedef(t)
                | BtfKind::Volatile(t)
                | BtfKind::Const(t)
                | BtfKind::Restrict(t)
                | BtfKind::TypeTag(t)
                | BtfKind::Var { ty: t, .. } => {
                    id = *t;
                    continue;
                }
                _ => return None,
            };
            return size.checked_mul(mult);
        }
        None
    }

    /// The prototype of a `FUNC` type: (return type, parameters).
    pub fn func_proto(&self, func_id: u32) -> Option<(u32, &[Param])> {
        let BtfKind::Func { proto, .. } = self.type_by_id(func_id)?.kind else {
            return None;
        };
        match &self.type_by_id(proto)?.kind {
            BtfKind::FuncProto { ret, params } => Some((*ret, params)),
            _ => None,
        }
    }

    /// The `DATASEC` type describing an ELF section, if any.
    pub fn datasec(&self, section: &str) -> Option<u32> {
        self.find(section, |k| matches!(k, BtfKind::Datasec { .. }))
    }

    /// The variables of the `DATASEC` describing an ELF section.
    pub fn datasec_vars(&self, section: &str) -> Option<&[DatasecVar]> {
        match &self.type_by_id(self.datasec(section)?)?.kind {
            BtfKind::Datasec { vars, .. } => Some(vars),
            _ => None,
        }
    }
}

fn parse_type(r: &mut Reader<'_>, strings: &[u8]) -> Result<BtfType, String> {
    let trunc = || "truncated type".to_string();
    let name_off = r.u32().ok_or_else(trunc)?;
    let info = r.u32().ok_or_else(trunc)?;
    let size_type = r.u32().ok_or_else(trunc)?;
    let name = |off: u32| {
        c_str(strings, off)
            .map(str::to_owned)
            .ok_or_else(|| format!("bad string offset {off}"))
    };
    let type_name = name(name_off)?;
    let vlen = (info & 0xffff) as usize;
    let kind_id = (info >> 24) & 0x1f;
    let kind_flag = info >> 31 == 1;
    // Bound per-type allocations by what the remaining bytes can actually hold.
    let remaining = r.data.len().saturating_sub(r.pos);
    let need = |rec: usize| {
        if vlen.saturating_mul(rec) > remaining {
            Err(trunc())
        } else {
            Ok(())
        }
    };
    let kind = match kind_id {
        1 => {
            let v = r.u32().ok_or_else(trunc)?;
            let enc = (v >> 24) & 0x0f;
            BtfKind::Int {
                size: size_type,
                signed: enc & 1 != 0,
                char: enc & 2 != 0,
                bool: enc & 4 != 0,
                offset: ((v >> 16) & 0xff) as u8,
                bits: (v & 0xff) as u8,
            }
        }
        2 => BtfKind::Ptr(size_type),
        3 => {
            let elem = r.u32().ok_or_else(trunc)?;
            let index = r.u32().ok_or_else(trunc)?;
            let len = r.u32().ok_or_else(trunc)?;
            BtfKind::Array { elem, index, len }
        }
        4 | 5 => {
            need(12)?;
            let mut members = Vec::with_capacity(vlen);
            for _ in 0..vlen {
                let n = r.u32().ok_or_else(trunc)?;
                let ty = r.u32().ok_or_else(trunc)?;
                let off = r.u32().ok_or_else(trunc)?;
                let (bit_offset, bitfield_size) = if kind_flag {
                    (off & 0x00ff_ffff, off >> 24)
                } else {
                    (off, 0)
                };
                members.push(Member {
                    name: name(n)?,
                    ty,
                    bit_offset,
                    bitfield_size,
                });
            }
            if kind_id == 4 {
                BtfKind::Struct {
                    size: size_type,
                    members,
                }
            } else {
                BtfKind::Union {
                    size: size_type,
                    members,
                }
            }
        }
        6 | 19 => {
            let is64 = kind_id == 19;
            need(if is64 { 12 } else { 8 })?;
            let mut values = Vec::with_capacity(vlen);
            for _ in 0..vlen {
                let n = r.u32().ok_or_else(trunc)?;
                let lo = r.u32().ok_or_else(trunc)?;
                let value = if is64 {
                    let hi = r.u32().ok_or_else(trunc)?;
                    ((u64::from(hi) << 32) | u64::from(lo)) as i64
                } else if kind_flag {
                    i64::from(lo as i32)
                } else {
                    i64::from(lo)
                };
                values.push(EnumValue {
                    name: name(n)?,
                    value,
                });
            }
            BtfKind::Enum {
                size: size_type,
                signed: kind_flag,
                is64,
                values,
            }
        }
        7 => BtfKind::Fwd { union: kind_flag },
        8 => BtfKind::Typedef(size_type),
        9 => BtfKind::Volatile(size_type),
        10 => BtfKind::Const(size_type),
        11 => BtfKind::Restrict(size_type),
        12 => BtfKind::Func {
            proto: size_type,
            linkage: vlen as u32,
        },
        13 => {
            need(8)?;
            let mut params = Vec::with_capacity(vlen);
            for _ in 0..vlen {
                let n = r.u32().ok_or_else(trunc)?;
                let ty = r.u32().ok_or_else(trunc)?;
                params.push(Param { name: name(n)?, ty });
            }
            BtfKind::FuncProto {
                ret: size_type,
                params,
            }
        }
        14 => BtfKind::Var {
            ty: size_type,
            linkage: r.u32().ok_or_else(trunc)?,
        },
        15 => {
            need(12)?;
            let mut vars = Vec::with_capacity(vlen);
            for _ in 0..vlen {
                let ty = r.u32().ok_or_else(trunc)?;
                let offset = r.u32().ok_or_else(trunc)?;
                let size = r.u32().ok_or_else(trunc)?;
                vars.push(DatasecVar { ty, offset, size });
            }
            BtfKind::Datasec {
                size: size_type,
                vars,
            }
        }
        16 => BtfKind::Float { size: size_type },
        17 => BtfKind::DeclTag {
            ty: size_type,
            component: r.u32().ok_or_else(trunc)? as i32,
        },
        18 => BtfKind::TypeTag(size_type),
        k => return Err(format!("unknown BTF kind {k}")),
    };
    Ok(BtfType {
        name: type_name,
        kind,
    })
}

impl Btf {
    /// Parses the `.BTF` section of an eBPF ELF object, with data section sizes and variable
    /// offsets fixed up from the ELF (useful to build a [`crate::Target`] from a compiled object).
    pub fn from_object(bytes: &[u8]) -> Result<Btf, crate::error::ObjError> {
        crate::load::object_btf_of(bytes)
    }
}
