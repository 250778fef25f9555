//! Map definitions: BTF-defined maps of `.maps` and one array map per global data section.

use super::elf::{Elf, SecKind};
use crate::btf::{Btf, BtfKind};
use crate::error::ObjError;
use crate::{MapDef, MapKind};
use object::elf;
use std::collections::HashMap;

pub(super) struct MapIndex {
    /// `.maps` variable offset -> map index.
    pub(super) btf_maps: HashMap<u64, usize>,
    /// Global data section index -> map index.
    pub(super) data: HashMap<usize, usize>,
}

fn btf_map(btf: &Btf, var_ty: u32, section: &str) -> Result<MapDef, ObjError> {
    let var = btf
        .type_by_id(var_ty)
        .map(|t| t.name.clone())
        .unwrap_or_default();
    let err = |reason: String| ObjError::Map {
        map: var.clone(),
        reason,
    };
    let BtfKind::Var { ty, .. } = btf
        .type_by_id(var_ty)
        .map(|t| &t.kind)
        .unwrap_or(&BtfKind::Void)
    else {
        return Err(err("`.maps` entry is not a variable".into()));
    };
    let st = btf.skip_mods_and_typedefs(*ty);
    let members = btf
        .type_by_id(st)
        .and_then(|t| match &t.kind {
            BtfKind::Struct { members, .. } => Some(members.clone()),
            _ => None,
        })
        .ok_or_else(|| err("map definition is not a struct".into()))?;
    let (mut kind, mut key_size, mut value_size, mut max_entries, mut flags) =
        (None, None, None, 0, 0);
    let (mut key_type, mut value_type) = (None, None);
    for m in &members {
        // Every map attribute is a pointer: `__uint(x, N)` to `int[N]`, `__type(x, T)` to `T`.
        let pointee = match btf
            .type_by_id(btf.skip_mods_and_typedefs(m.ty))
            .map(|t| &t.kind)
        {
            Some(BtfKind::Ptr(p)) => *p,
            _ => return Err(err(format!("attribute `{}` is not a pointer", m.name))),
        };
        let uint = || match btf
            .type_by_id(btf.skip_mods_and_typedefs(pointee))
            .map(|t| &t.kind)
        {
            Some(BtfKind::Array { len, .. }) => Ok(*len),
            _ => Err(err(format!("attribute `{}` is not __uint()", m.name))),
        };
        let sized = || {
            btf.size_of(pointee)
                .ok_or_else(|| err(format!("`{}` type has no size (type id {pointee})", m.name)))
        };
        match m.name.as_str() {
            "type" => {
                let t = uint()?;
                kind = Some(
                    MapKind::from_linux(t)
                        .ok_or_else(|| err(format!("unsupported map type {t}")))?,
                );
            }
            "max_entries" => max_entries = uint()?,
            "map_flags" => flags = uint()?,
            "key_size" => key_size = Some(uint()?),
            "value_size" => value_size = Some(uint()?),
            "key" => {
                key_size = Some(sized()?);
                key_type = Some(pointee);
            }
            "value" => {
                value_size = Some(sized()?);
                value_type = Some(pointee);
            }
            "pinning" | "numa_node" => {
                uint()?;
            }
            other => return Err(err(format!("unsupported map attribute `{other}`"))),
        }
    }
    let kind = kind.ok_or_else(|| err("missing map type".into()))?;
    let (key_size, value_size) = match kind {
        MapKind::Ringbuf => {
            if key_size.is_some() || value_size.is_some() {
                return Err(err("ring buffers take no key or value".into()));
            }
            if !max_entries.is_power_of_two() || max_entries % 4096 != 0 {
                return Err(err(format!(
                    "ring buffer size {max_entries} is not a power-of-2 multiple of 4096"
                )));
            }
            (0, 0)
        }
        _ => (
            key_size.ok_or_else(|| err("missing key size".into()))?,
            value_size.ok_or_else(|| err("missing value size".into()))?,
        ),
    };
    if kind != MapKind::Ringbuf && (key_size == 0 || value_size == 0 || max_entries == 0) {
        return Err(err(
            "key size, value size and max_entries must be non-zero".into()
        ));
    }
    Ok(MapDef {
        name: var,
        kind,
        key_size,
        value_size,
        max_entries,
        flags,
        key_type,
        value_type,
        initial: None,
        readonly: false,
        section: section.to_string(),
    })
}

pub(super) fn build_maps(elf: &Elf<'_>, btf: &Btf) -> Result<(Vec<MapDef>, MapIndex), ObjError> {
    let mut maps = Vec::new();
    let mut index = MapIndex {
        btf_maps: HashMap::new(),
        data: HashMap::new(),
    };
    if let Some((_, sec)) = elf
        .sections
        .iter()
        .enumerate()
        .find(|(_, s)| s.kind == SecKind::Maps)
    {
        let vars = btf
            .datasec_vars(".maps")
            .ok_or_else(|| ObjError::BadSection {
                section: ".maps".into(),
                reason: "no BTF DATASEC describes it".into(),
            })?;
        let mut vars = vars.to_vec();
        vars.sort_by_key(|v| v.offset);
        for v in vars {
            let map = btf_map(btf, v.ty, &sec.name)?;
            index.btf_maps.insert(u64::from(v.offset), maps.len());
            maps.push(map);
        }
    }
    for (i, sec) in elf.sections.iter().enumerate() {
        if sec.kind != SecKind::Data || sec.size == 0 {
            continue;
        }
        let size = u32::try_from(sec.size).map_err(|_| ObjError::BadSection {
            section: sec.name.clone(),
            reason: "too large for a map value".into(),
        })?;
        let initial = if sec.sh_type == elf::SHT_NOBITS {
            vec![0; size as usize]
        } else {
            sec.data.to_vec()
        };
        index.data.insert(i, maps.len());
        maps.push(MapDef {
            name: sec.name.clone(),
            kind: MapKind::Array,
            key_size: 4,
            value_size: size,
            max_entries: 1,
            flags: 0,
            key_type: None,
            value_type: btf.datasec(&sec.name),
            initial: Some(initial),
            readonly: sec.name.starts_with(".rodata"),
            section: sec.name.clone(),
        });
    }
    Ok((maps, index))
}
