//! Reading an attached instance's maps back, decoded by the object's BTF
//! (`bpfoom maps`), the way `bpftool map dump` prints a map with BTF:
//!
//! | BTF type | JSON |
//! |---|---|
//! | integer | a number (a string when wider than 64 bits); `bool` as `true`/`false` |
//! | bitfield member | the bitfield's value |
//! | enum | the enumerator's name, or the number when no enumerator matches |
//! | struct | an object by member name; members of anonymous struct/union members are named directly, as in C (and as [`crate::mapvalue`] accepts them) |
//! | union | an object with every member (the bytes read as each), as bpftool does |
//! | array | a list; `char[N]` holding text up to a NUL is a string |
//! | pointer | a hex string (`"0xffff..."`) |
//! | float | a number |
//! | global data (`DATASEC`) | an object by variable name |
//!
//! Keys and values of maps declared without BTF types are numbers when they
//! are 1 to 8 bytes wide (little endian, as the VM stores them) and lists of
//! hex bytes otherwise (bpftool's unformatted form). The dump is the exact
//! shape [`crate::mapvalue`] takes as input, so an entry printed here can be
//! written back into a config's `maps` table unchanged.

use bpfoom_obj::{Btf, BtfKind, MapDef, MapKind as ObjMapKind, Member};
use bpfoom_vm::Vm;
use serde::Serialize;
use serde_json::{json, Value};

use crate::mapvalue::{is_char, type_name};

/// Deepest nesting decoded (BTF can chain typedefs; this bounds recursion).
const MAX_DEPTH: usize = 32;

/// What an instance keeps of its object to decode its maps later.
#[derive(Clone, Debug)]
pub(crate) struct MapTypes {
    pub btf: Btf,
    pub maps: Vec<MapDef>,
}

/// One instance's maps, as `bpfoom maps` prints them.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct InstanceMaps {
    /// Instance name.
    pub policy: String,
    /// `bpf_oom_ops` or `bpf_psi_ops`.
    pub kind: String,
    /// Attach point.
    pub cgroup: String,
    /// The maps in the object's order (global data sections included).
    pub maps: Vec<MapDump>,
}

/// One map and its entries.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct MapDump {
    /// Map name (`.bss`, `.rodata`, ... for global data).
    pub name: String,
    /// `hash`, `array`, `percpu_array`, `lru_hash`, `ringbuf` or `global_data`.
    #[serde(rename = "type")]
    pub map_type: String,
    /// The key's C type (`u32`, `struct key`), or its size (`8 bytes`)
    /// without BTF; absent for ring buffers and global data.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key_type: Option<String>,
    /// The value's C type, or its size without BTF; absent for ring buffers.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value_type: Option<String>,
    /// `max_entries` (a ring buffer's size in bytes).
    pub max_entries: u32,
    /// Ring buffers only: submitted records the daemon has not read yet
    /// (records are read after every program call, so normally 0).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pending: Option<usize>,
    /// The entries, sorted by key bytes (array maps: every index). Global
    /// data has one entry whose key is 0 and whose value names the variables.
    pub entries: Vec<DumpEntry>,
}

/// One key/value pair.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct DumpEntry {
    /// The decoded key.
    pub key: Value,
    /// The decoded value.
    pub value: Value,
}

fn map_type(def: &MapDef) -> &'static str {
    if def.initial.is_some() {
        return "global_data";
    }
    match def.kind {
        ObjMapKind::Hash => "hash",
        ObjMapKind::Array => "array",
        ObjMapKind::PercpuArray => "percpu_array",
        ObjMapKind::LruHash => "lru_hash",
        ObjMapKind::Ringbuf => "ringbuf",
    }
}

/// Every map of `vm`, decoded with `types`.
pub(crate) fn dump_vm(types: &MapTypes, vm: &Vm) -> Vec<MapDump> {
    let btf = &types.btf;
    let mut out = Vec::new();
    for (idx, def) in types.maps.iter().enumerate() {
        let Some(map) = vm.map(idx) else { continue };
        let kind = map_type(def);
        let ty_name = |ty: Option<u32>, size: u32| match ty {
            Some(t) => type_name(btf, t),
            None => format!("{size} bytes"),
        };
        let mut dump = MapDump {
            name: def.name.clone(),
            map_type: kind.into(),
            key_type: None,
            value_type: None,
            max_entries: def.max_entries,
            pending: None,
            entries: Vec::new(),
        };
        match kind {
            "ringbuf" => dump.pending = Some(map.ringbuf_len()),
            "global_data" => {
                dump.value_type = Some(ty_name(def.value_type, def.value_size));
                if let Ok(Some(v)) = map.get(&0u32.to_le_bytes()) {
                    dump.entries.push(DumpEntry {
                        key: json!(0),
                        value: decode_or_raw(btf, def.value_type, v),
                    });
                }
            }
            _ => {
                dump.key_type = Some(ty_name(def.key_type, def.key_size));
                dump.value_type = Some(ty_name(def.value_type, def.value_size));
                let mut keys = map.keys();
                keys.sort();
                for k in keys {
                    if let Ok(Some(v)) = map.get(&k) {
                        dump.entries.push(DumpEntry {
                            key: decode_or_raw(btf, def.key_type, &k),
                            value: decode_or_raw(btf, def.value_type, v),
                        });
                    }
                }
            }
        }
        out.push(dump);
    }
    out
}

fn decode_or_raw(btf: &Btf, ty: Option<u32>, bytes: &[u8]) -> Value {
    match ty {
        Some(t) if btf.size_of(t).is_some_and(|s| s as usize <= bytes.len()) => {
            decode(btf, t, bytes)
        }
        _ => decode_untyped(bytes),
    }
}

/// Decodes `bytes` without a type: a little-endian unsigned number when 1
/// to 8 bytes wide, otherwise a list of hex bytes.
pub fn decode_untyped(bytes: &[u8]) -> Value {
    if (1..=8).contains(&bytes.len()) {
        let mut b = [0u8; 8];
        b[..bytes.len()].copy_from_slice(bytes);
        return json!(u64::from_le_bytes(b));
    }
    hex_bytes(bytes)
}

fn hex_bytes(bytes: &[u8]) -> Value {
    Value::Array(
        bytes
            .iter()
            .map(|b| Value::String(format!("{b:#04x}")))
            .collect(),
    )
}

/// Decodes `bytes` as BTF type `ty` of `btf` (see the module docs).
/// Bytes missing at the end read as zero, never as a panic.
pub fn decode(btf: &Btf, ty: u32, bytes: &[u8]) -> Value {
    decode_at(btf, ty, bytes, 0, 0)
}

/// Little-endian unsigned integer of `len` bytes at `off` (missing bytes 0).
fn read_uint(bytes: &[u8], off: usize, len: usize) -> u128 {
    let mut b = [0u8; 16];
    for (i, slot) in b.iter_mut().enumerate().take(len.min(16)) {
        *slot = bytes.get(off + i).copied().unwrap_or(0);
    }
    u128::from_le_bytes(b)
}

fn number(v: i128) -> Value {
    if let Ok(u) = u64::try_from(v) {
        json!(u)
    } else if let Ok(i) = i64::try_from(v) {
        json!(i)
    } else {
        Value::String(v.to_string())
    }
}

/// Sign-extends the low `bits` of `raw`.
fn signed(raw: u128, bits: u32) -> i128 {
    if bits == 0 || bits >= 128 {
        return raw as i128;
    }
    let shift = 128 - bits;
    ((raw << shift) as i128) >> shift
}

fn mask(raw: u128, bits: u32) -> u128 {
    if bits >= 128 {
        raw
    } else {
        raw & ((1u128 << bits) - 1)
    }
}

fn decode_at(btf: &Btf, ty: u32, bytes: &[u8], off: usize, depth: usize) -> Value {
    let id = btf.skip_mods_and_typedefs(ty);
    let Some(t) = btf.type_by_id(id) else {
        return Value::Null;
    };
    if depth > MAX_DEPTH {
        let size = btf.size_of(id).unwrap_or(0) as usize;
        return hex_bytes(bytes.get(off..off + size).unwrap_or(&[]));
    }
    match &t.kind {
        BtfKind::Int {
            size,
            signed: s,
            bool: b,
            offset,
            bits,
            ..
        } => {
            let raw = read_uint(bytes, off, *size as usize) >> offset;
            let raw = mask(raw, u32::from(*bits));
            if *b {
                return Value::Bool(raw != 0);
            }
            if *s {
                number(signed(raw, u32::from(*bits)))
            } else {
                number(raw as i128)
            }
        }
        BtfKind::Enum {
            size,
            signed: s,
            values,
            ..
        } => {
            let raw = read_uint(bytes, off, *size as usize);
            let v = if *s {
                signed(raw, size * 8)
            } else {
                raw as i128
            };
            match values.iter().find(|e| {
                // ENUM stores 32-bit values sign-extended; compare in the
                // enum's own width.
                mask(e.value as u128, size * 8) == mask(v as u128, size * 8)
            }) {
                Some(e) => Value::String(e.name.clone()),
                None => number(v),
            }
        }
        BtfKind::Ptr(_) => Value::String(format!("{:#x}", read_uint(bytes, off, 8) as u64)),
        BtfKind::Float { size } => match size {
            4 => json!(f32::from_bits(read_uint(bytes, off, 4) as u32)),
            8 => json!(f64::from_bits(read_uint(bytes, off, 8) as u64)),
            _ => hex_bytes(bytes.get(off..off + *size as usize).unwrap_or(&[])),
        },
        BtfKind::Struct { members, .. } | BtfKind::Union { members, .. } => {
            let mut obj = serde_json::Map::new();
            members_into(btf, members, bytes, off, depth, &mut obj);
            Value::Object(obj)
        }
        BtfKind::Array { elem, len, .. } => {
            let stride = btf.size_of(*elem).unwrap_or(0) as usize;
            if is_char(btf, *elem) {
                let raw = bytes
                    .get(off..off + *len as usize)
                    .unwrap_or(bytes.get(off..).unwrap_or(&[]));
                let text = raw.split(|b| *b == 0).next().unwrap_or(&[]);
                let tail_zero = raw[text.len()..].iter().all(|b| *b == 0);
                if let (Ok(s), true) = (std::str::from_utf8(text), tail_zero) {
                    if !s.chars().any(char::is_control) {
                        return Value::String(s.into());
                    }
                }
            }
            Value::Array(
                (0..*len as usize)
                    .map(|i| decode_at(btf, *elem, bytes, off + i * stride, depth + 1))
                    .collect(),
            )
        }
        BtfKind::Datasec { vars, .. } => {
            let mut obj = serde_json::Map::new();
            for v in vars {
                let name = btf
                    .type_by_id(v.ty)
                    .map(|t| t.name.clone())
                    .unwrap_or_default();
                let inner = match btf.type_by_id(v.ty).map(|t| &t.kind) {
                    Some(BtfKind::Var { ty, .. }) => *ty,
                    _ => v.ty,
                };
                obj.insert(
                    name,
                    decode_at(btf, inner, bytes, off + v.offset as usize, depth + 1),
                );
            }
            Value::Object(obj)
        }
        BtfKind::Var { ty, .. } => decode_at(btf, *ty, bytes, off, depth + 1),
        // Nothing else has a value to show (void, functions, forward
        // declarations); modifiers were skipped above.
        _ => Value::Null,
    }
}

fn members_into(
    btf: &Btf,
    members: &[Member],
    bytes: &[u8],
    off: usize,
    depth: usize,
    obj: &mut serde_json::Map<String, Value>,
) {
    for m in members {
        let at = off + (m.bit_offset / 8) as usize;
        if m.bitfield_size > 0 {
            let id = btf.skip_mods_and_typedefs(m.ty);
            let (size, is_signed) = match btf.type_by_id(id).map(|t| &t.kind) {
                Some(BtfKind::Int { size, signed, .. }) => (*size, *signed),
                Some(BtfKind::Enum { size, signed, .. }) => (*size, *signed),
                _ => (8, false),
            };
            // At most 64 value bits start within the first byte: 9 bytes
            // from the member's first byte always hold them.
            let _ = size;
            let raw = read_uint(bytes, at, 9) >> (m.bit_offset % 8);
            let raw = mask(raw, m.bitfield_size);
            let v = if is_signed {
                number(signed(raw, m.bitfield_size))
            } else {
                number(raw as i128)
            };
            obj.insert(m.name.clone(), v);
            continue;
        }
        if m.name.is_empty() {
            let inner = btf.skip_mods_and_typedefs(m.ty);
            if let Some(sub) = btf.type_by_id(inner).and_then(|t| t.kind.members()) {
                if depth < MAX_DEPTH {
                    members_into(btf, sub, bytes, at, depth + 1, obj);
                }
                continue;
            }
        }
        obj.insert(m.name.clone(), decode_at(btf, m.ty, bytes, at, depth + 1));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mapvalue::{encode, tests::btf, MapValue, Role};

    /// What a config writes, encoded, decodes to the same JSON: the dump is
    /// the inverse of the encoder for every type a config can set.
    #[test]
    fn decode_inverts_encode() {
        let btf = btf();
        let cases: &[(u32, &str)] = &[
            (1, "200"),
            (3, "18446744073709551615"),
            (4, "-7"),
            (5, "true"),
            (7, r#"{"last_pgscan":99,"preference":2,"recursive_kill":1}"#),
            (8, r#""abc""#),
            (9, r#"{"ids":[1,2],"name":"job"}"#),
            (10, r#""PREF_OMIT""#),
            (12, r#"{"a":5,"b":17,"c":-3}"#),
            (15, "42"),
            (18, r#"["a","bb","ccc"]"#),
        ];
        for (ty, text) in cases {
            let v: MapValue = serde_json::from_str(text).unwrap();
            let bytes = encode(&btf, *ty, &v, Role::Value, "v", &mut |_| Ok(0)).unwrap();
            let back = decode(&btf, *ty, &bytes);
            assert_eq!(back.to_string(), *text, "type {ty}");
        }
    }

    #[test]
    fn what_a_config_cannot_write_still_decodes() {
        let btf = btf();
        // An enum value no enumerator has is its number.
        assert_eq!(decode(&btf, 10, &7u32.to_le_bytes()), json!(7));
        // A union shows every member; anonymous members are flattened.
        let mut b = vec![0u8; 24];
        b[..8].copy_from_slice(&0x1_0000_0002u64.to_le_bytes());
        b[16..].copy_from_slice(&0xffff_8880_0000_1000u64.to_le_bytes());
        assert_eq!(
            decode(&btf, 14, &b),
            json!({"x": 2, "y": 0x1_0000_0002u64, "z": 0, "p": "0xffff888000001000"})
        );
        // char[N] that is not text is a list of numbers.
        assert_eq!(
            decode(&btf, 8, &[1, 2, 0, 0, 0, 0, 0, 9]),
            json!([1, 2, 0, 0, 0, 0, 0, 9])
        );
        // Short input reads as zeros instead of panicking.
        assert_eq!(decode(&btf, 3, &[1]), json!(1));
        assert_eq!(decode_untyped(&[1, 0, 0, 0]), json!(1));
        assert_eq!(decode_untyped(&[0; 9])[0], json!("0x00"));
    }
}
