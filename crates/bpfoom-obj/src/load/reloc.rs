//! Relocation of code sections: calls, function addresses, maps, global data and kfuncs.

use super::elf::{Elf, Rel, SecKind, Symbol};
use super::maps::MapIndex;
use super::Target;
use crate::error::ObjError;
use crate::KFUNC_POISON_BASE;
use bpfoom_insn::opcode as op;
use bpfoom_insn::Insn;
use object::elf;
use std::collections::BTreeMap;

/// What a relocated instruction of a code section refers to.
#[derive(Clone, Debug)]
pub(super) enum Link {
    /// bpf-to-bpf call to (section, instruction index).
    Call(usize, usize),
    /// Address of a function (`ld_imm64` `BPF_PSEUDO_FUNC`).
    FuncAddr(usize, usize),
    /// Resolved kfunc.
    Kfunc(String, u32),
}

pub(super) struct Code {
    pub(super) insns: Vec<Insn>,
    pub(super) links: BTreeMap<usize, Link>,
}

pub(super) struct Ctx<'e, 'a> {
    pub(super) elf: &'e Elf<'a>,
    pub(super) target: &'e Target,
    pub(super) maps: &'e MapIndex,
}

const R_BPF_64_64: u32 = 1;
pub(super) const R_BPF_64_ABS64: u32 = 2;
const R_BPF_64_32: u32 = 10;

impl Ctx<'_, '_> {
    pub(super) fn relocate_code(&self, sec_idx: usize) -> Result<Code, ObjError> {
        let sec = &self.elf.sections[sec_idx];
        let insns = bpfoom_insn::decode_all(sec.data).ok_or_else(|| ObjError::BadSection {
            section: sec.name.clone(),
            reason: format!("size {} is not a multiple of 8", sec.data.len()),
        })?;
        let mut code = Code {
            insns,
            links: BTreeMap::new(),
        };
        let rels = self
            .elf
            .rels
            .get(&sec_idx)
            .map(Vec::as_slice)
            .unwrap_or(&[]);
        for r in rels {
            self.relocate_insn(sec_idx, &mut code, r)?;
        }
        // Calls and function references without a relocation stay inside this section.
        let mut i = 0;
        while i < code.insns.len() {
            let insn = code.insns[i];
            let wide = insn.code == op::LD_IMM64;
            if !code.links.contains_key(&i) {
                let local = if insn.code == op::CALL && insn.src == op::BPF_PSEUDO_CALL {
                    Some(Link::Call as fn(usize, usize) -> Link)
                } else if wide && insn.src == op::BPF_PSEUDO_FUNC {
                    Some(Link::FuncAddr as fn(usize, usize) -> Link)
                } else {
                    None
                };
                if let Some(make) = local {
                    let t = i as i64 + i64::from(insn.imm) + 1;
                    let t = usize::try_from(t)
                        .ok()
                        .filter(|&t| t < code.insns.len())
                        .ok_or_else(|| ObjError::BadCall {
                            section: sec.name.clone(),
                            insn: i,
                            reason: format!("relative target {} is outside the section", insn.imm),
                        })?;
                    code.links.insert(i, make(sec_idx, t));
                }
            }
            i += if wide { 2 } else { 1 };
        }
        Ok(code)
    }

    fn relocate_insn(&self, sec_idx: usize, code: &mut Code, r: &Rel) -> Result<(), ObjError> {
        let elf = self.elf;
        let sec = &elf.sections[sec_idx];
        let idx = (r.offset / 8) as usize;
        let err = |reason: String| ObjError::Reloc {
            section: sec.name.clone(),
            insn: idx,
            symbol: elf.sym_name(r.sym),
            reason,
        };
        if !r.offset.is_multiple_of(8) || idx >= code.insns.len() {
            return Err(err(format!("offset {:#x} is not an instruction", r.offset)));
        }
        let sym = elf
            .symbols
            .get(r.sym)
            .filter(|_| r.sym != 0)
            .ok_or_else(|| err("dangling symbol index".into()))?;
        let insn = code.insns[idx];
        let is_wide = insn.code == op::LD_IMM64 && idx + 1 < code.insns.len();
        match r.rtype {
            R_BPF_64_64 if is_wide => {}
            R_BPF_64_32 if insn.code == op::CALL => {}
            t => {
                return Err(err(format!(
                    "relocation type {t} on instruction with opcode {:#04x}",
                    insn.code
                )))
            }
        }
        if sym.shndx == elf::SHN_UNDEF as usize {
            return self
                .relocate_extern(code, idx, sym, is_wide, r.sym)
                .map_err(|e| match e {
                    ObjError::UnknownKfunc { name, .. } => ObjError::UnknownKfunc {
                        section: sec.name.clone(),
                        insn: idx,
                        name,
                    },
                    other => other,
                });
        }
        let target_sec = elf
            .sections
            .get(sym.shndx)
            .ok_or_else(|| err("symbol in missing section".into()))?;
        match target_sec.kind {
            SecKind::Text | SecKind::Prog { .. } => {
                let byte = if is_wide {
                    i128::from(sym.value) + i128::from(insn.imm)
                } else {
                    // Calls hold (target - 1) relative to the symbol, in instructions.
                    i128::from(sym.value) + (i128::from(insn.imm) + 1) * 8
                };
                let t = usize::try_from(byte / 8)
                    .ok()
                    .filter(|_| byte % 8 == 0)
                    .ok_or_else(|| {
                        err(format!("target byte offset {byte} is not an instruction"))
                    })?;
                let link = if is_wide {
                    Link::FuncAddr(sym.shndx, t)
                } else {
                    Link::Call(sym.shndx, t)
                };
                code.links.insert(idx, link);
            }
            SecKind::Maps if is_wide => {
                let m = *self
                    .maps
                    .btf_maps
                    .get(&sym.value)
                    .ok_or_else(|| err("no map defined at this symbol".into()))?;
                code.insns[idx].src = op::BPF_PSEUDO_MAP_FD;
                code.insns[idx].imm = m as i32;
                code.insns[idx + 1].imm = 0;
            }
            SecKind::Data if is_wide => {
                let m = *self
                    .maps
                    .data
                    .get(&sym.shndx)
                    .ok_or_else(|| err("empty data section".into()))?;
                let off = i128::from(insn.imm) + i128::from(sym.value);
                let off = i32::try_from(off)
                    .ok()
                    .filter(|&o| o >= 0 && (o as u64) < target_sec.size.max(1))
                    .ok_or_else(|| err(format!("offset {off} outside {}", target_sec.name)))?;
                code.insns[idx].src = op::BPF_PSEUDO_MAP_VALUE;
                code.insns[idx].imm = m as i32;
                code.insns[idx + 1].imm = off;
            }
            _ => return Err(err(format!("cannot refer to section {}", target_sec.name))),
        }
        Ok(())
    }

    fn relocate_extern(
        &self,
        code: &mut Code,
        idx: usize,
        sym: &Symbol,
        is_wide: bool,
        sym_idx: usize,
    ) -> Result<(), ObjError> {
        let id = self.target.kfunc_id(&sym.name);
        match (id, is_wide) {
            (Some(id), false) => {
                code.insns[idx].src = op::BPF_PSEUDO_KFUNC_CALL;
                code.insns[idx].imm = id as i32;
                code.insns[idx].off = 0;
                code.links.insert(idx, Link::Kfunc(sym.name.clone(), id));
            }
            (Some(id), true) => {
                code.insns[idx].src = op::BPF_PSEUDO_BTF_ID;
                code.insns[idx].imm = id as i32;
                code.insns[idx + 1].imm = 0;
                code.links.insert(idx, Link::Kfunc(sym.name.clone(), id));
            }
            (None, _) if sym.bind == elf::STB_WEAK => {
                if is_wide {
                    code.insns[idx].src = 0;
                    code.insns[idx].imm = 0;
                    code.insns[idx + 1].imm = 0;
                } else {
                    let poison = KFUNC_POISON_BASE.saturating_add(sym_idx as i32);
                    code.insns[idx] = Insn::new(op::CALL, 0, 0, 0, poison);
                }
            }
            (None, _) => {
                return Err(ObjError::UnknownKfunc {
                    section: String::new(),
                    insn: idx,
                    name: sym.name.clone(),
                })
            }
        }
        Ok(())
    }
}
