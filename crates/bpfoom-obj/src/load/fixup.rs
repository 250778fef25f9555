//! BTF fix-ups clang leaves to the linker, done from the ELF as libbpf does.

use super::elf::Elf;
use crate::btf::{Btf, BtfKind};

/// clang leaves DATASEC sizes and variable offsets for the linker; take them from the ELF,
/// as libbpf does.
pub(super) fn fixup_datasecs(btf: &mut Btf, elf: &Elf<'_>) {
    let ids: Vec<u32> = (0..btf.len() as u32)
        .filter(|&i| {
            matches!(
                btf.type_by_id(i).map(|t| &t.kind),
                Some(BtfKind::Datasec { .. })
            )
        })
        .collect();
    for id in ids {
        let Some(t) = btf.type_by_id(id) else {
            continue;
        };
        let Some((sec_idx, sec)) = elf.by_name(&t.name) else {
            continue;
        };
        let BtfKind::Datasec { vars, .. } = &t.kind else {
            continue;
        };
        let offsets: Vec<Option<u32>> = vars
            .iter()
            .map(|v| {
                let var_name = &btf.type_by_id(v.ty)?.name;
                let sym = elf
                    .symbols
                    .iter()
                    .find(|s| s.shndx == sec_idx && &s.name == var_name)?;
                u32::try_from(sym.value).ok()
            })
            .collect();
        let size = u32::try_from(sec.size).unwrap_or(u32::MAX);
        if let Some(BtfKind::Datasec { size: s, vars }) = btf.type_mut(id).map(|t| &mut t.kind) {
            *s = size;
            for (v, off) in vars.iter_mut().zip(offsets) {
                if let Some(off) = off {
                    v.offset = off;
                }
            }
        }
    }
}
