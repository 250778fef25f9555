//! `.struct_ops` / `.struct_ops.link` variables: the instances a policy declares, their
//! callbacks resolved to programs.

use super::elf::{Elf, Rel};
use super::reloc::R_BPF_64_ABS64;
use crate::btf::{Btf, BtfKind};
use crate::error::ObjError;
use crate::{Callback, Program, StructOpsInstance};
use bpfoom_abi::struct_ops::Form;
use std::collections::HashMap;

pub(super) fn struct_ops(
    elf: &Elf<'_>,
    btf: &Btf,
    sec_idx: usize,
    link: bool,
    programs: &[Program],
    prog_at: &HashMap<(usize, usize), usize>,
) -> Result<Vec<StructOpsInstance>, ObjError> {
    let sec = &elf.sections[sec_idx];
    let err = |var: &str, reason: String| ObjError::StructOps {
        section: sec.name.clone(),
        var: var.to_string(),
        reason,
    };
    let vars = btf
        .datasec_vars(&sec.name)
        .ok_or_else(|| err("", "no BTF DATASEC describes the section".into()))?;
    let rels: &[Rel] = elf.rels.get(&sec_idx).map(Vec::as_slice).unwrap_or(&[]);
    let mut used = vec![false; rels.len()];
    let mut out = Vec::new();
    for v in vars {
        let var_t = btf
            .type_by_id(v.ty)
            .ok_or_else(|| err("", format!("dangling type id {}", v.ty)))?;
        let var = var_t.name.as_str();
        let BtfKind::Var { ty, .. } = var_t.kind else {
            return Err(err(var, "DATASEC entry is not a variable".into()));
        };
        let type_id = btf.skip_mods_and_typedefs(ty);
        let st = btf
            .type_by_id(type_id)
            .ok_or_else(|| err(var, "dangling type".into()))?;
        let BtfKind::Struct { members, .. } = &st.kind else {
            return Err(err(
                var,
                format!("type is {}, not a struct", st.kind.name()),
            ));
        };
        let start = v.offset as usize;
        let data = start
            .checked_add(v.size as usize)
            .and_then(|end| sec.data.get(start..end))
            .ok_or_else(|| err(var, "variable outside the section data".into()))?;
        let older = crate::abi_form::check(btf, var, type_id)?;
        let mut inst = StructOpsInstance {
            var: var.to_string(),
            section: sec.name.clone(),
            link,
            type_name: st.name.clone(),
            type_id,
            name: None,
            callbacks: Vec::new(),
            data: data.to_vec(),
        };
        for m in members {
            let moff = (m.bit_offset / 8) as usize;
            let mt = btf.skip_mods_and_typedefs(m.ty);
            match btf.type_by_id(mt).map(|t| &t.kind) {
                Some(BtfKind::Array { .. }) if m.name == "name" => {
                    let size = btf.size_of(mt).unwrap_or(0) as usize;
                    let bytes = data.get(moff..moff.saturating_add(size)).unwrap_or(&[]);
                    let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
                    inst.name = Some(String::from_utf8_lossy(&bytes[..end]).into_owned());
                }
                Some(BtfKind::Ptr(_)) => {
                    let at = (start + moff) as u64;
                    let Some(ri) = rels.iter().position(|r| r.offset == at) else {
                        continue;
                    };
                    used[ri] = true;
                    let r = rels[ri];
                    let bad = |reason: String| err(var, format!("member `{}`: {reason}", m.name));
                    let sym = elf
                        .symbols
                        .get(r.sym)
                        .filter(|_| r.sym != 0)
                        .ok_or_else(|| bad("dangling symbol".into()))?;
                    if r.rtype != R_BPF_64_ABS64 {
                        return Err(bad(format!("relocation type {}", r.rtype)));
                    }
                    let addend = data
                        .get(moff..moff + 8)
                        .map(|b| u64::from_le_bytes(b.try_into().unwrap_or([0; 8])))
                        .unwrap_or(0);
                    let insn = (sym.value.wrapping_add(addend) / 8) as usize;
                    let p = *prog_at.get(&(sym.shndx, insn)).ok_or_else(|| {
                        bad(format!("`{}` is not a struct_ops program", sym.name))
                    })?;
                    inst.callbacks.push(Callback {
                        member: m.name.clone(),
                        program: p,
                        program_name: programs[p].name.clone(),
                        form: older
                            .iter()
                            .find(|(member, _)| *member == m.name)
                            .map_or(Form::Newest, |o| o.1),
                    });
                    // Function pointers are resolved through programs; the slot holds no data.
                    if let Some(slot) = inst.data.get_mut(moff..moff + 8) {
                        slot.fill(0);
                    }
                }
                _ => {}
            }
        }
        out.push(inst);
    }
    if let Some(ri) = used.iter().position(|u| !u) {
        return Err(err(
            "",
            format!(
                "relocation at byte offset {} against `{}` does not land on a callback member",
                rels[ri].offset,
                elf.sym_name(rels[ri].sym)
            ),
        ));
    }
    Ok(out)
}
