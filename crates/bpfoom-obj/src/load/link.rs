//! Linking: each program's entry function followed by every subprogram it reaches, with calls,
//! line info, func info and CO-RE relocation sites rebased onto the linked program.

use super::elf::Elf;
use super::reloc::{Code, Link};
use crate::btf::Btf;
use crate::btf_ext::BtfExt;
use crate::error::ObjError;
use crate::{FuncInfo, KfuncRef, LineInfo, Program, CORE_POISON_HELPER, KFUNC_POISON_BASE};
use bpfoom_insn::opcode as op;
use bpfoom_insn::Insn;
use object::elf;
use std::collections::{BTreeMap, HashMap};

/// A function: a FUNC symbol's instruction range in a code section.
pub(super) struct Func {
    pub(super) sec: usize,
    pub(super) start: usize,
    pub(super) end: usize,
    pub(super) name: String,
}

pub(super) fn collect_funcs(
    elf: &Elf<'_>,
    codes: &BTreeMap<usize, Code>,
) -> Result<Vec<Func>, ObjError> {
    let mut funcs: Vec<(usize, u64, u64, String)> = elf
        .symbols
        .iter()
        .filter(|s| s.typ == elf::STT_FUNC && codes.contains_key(&s.shndx))
        .map(|s| (s.shndx, s.value, s.size, s.name.clone()))
        .collect();
    funcs.sort_by_key(|f| (f.0, f.1));
    let mut out: Vec<Func> = Vec::with_capacity(funcs.len());
    for (i, (sec, value, size, name)) in funcs.iter().enumerate() {
        let len = codes[sec].insns.len();
        let bad = |reason: String| ObjError::BadSection {
            section: elf.sections[*sec].name.clone(),
            reason: format!("function `{name}`: {reason}"),
        };
        if !value.is_multiple_of(8) || !size.is_multiple_of(8) {
            return Err(bad("not instruction aligned".into()));
        }
        let start = (value / 8) as usize;
        let next = funcs
            .get(i + 1)
            .filter(|f| f.0 == *sec)
            .map_or(len, |f| (f.1 / 8) as usize);
        let end = if *size > 0 {
            start.saturating_add((size / 8) as usize)
        } else {
            next
        };
        if start >= end || end > len || end > next {
            return Err(bad(format!(
                "range {start}..{end} is outside the section or overlaps"
            )));
        }
        out.push(Func {
            sec: *sec,
            start,
            end,
            name: name.clone(),
        });
    }
    Ok(out)
}

pub(super) struct Layout<'x> {
    pub(super) elf: &'x Elf<'x>,
    pub(super) btf: &'x Btf,
    pub(super) ext: &'x BtfExt,
    pub(super) codes: &'x BTreeMap<usize, Code>,
    pub(super) funcs: &'x [Func],
    pub(super) core: &'x [crate::CoreReloc],
}

impl Layout<'_> {
    fn func_at(&self, sec: usize, insn: usize) -> Option<usize> {
        self.funcs
            .iter()
            .position(|f| f.sec == sec && f.start <= insn && insn < f.end)
    }

    pub(super) fn program(&self, main: usize, sleepable: bool) -> Result<Program, ObjError> {
        let mut order = vec![main];
        let mut base: HashMap<usize, usize> = HashMap::from([(main, 0)]);
        let mut insns: Vec<Insn> = Vec::new();
        let copy = |insns: &mut Vec<Insn>, f: &Func| {
            insns.extend_from_slice(&self.codes[&f.sec].insns[f.start..f.end]);
        };
        copy(&mut insns, &self.funcs[main]);
        let mut i = 0;
        while i < order.len() {
            let f = &self.funcs[order[i]];
            for (&j, link) in self.codes[&f.sec].links.range(f.start..f.end) {
                let (Link::Call(s, t) | Link::FuncAddr(s, t)) = link else {
                    continue;
                };
                let bad = |reason: String| ObjError::BadCall {
                    section: self.elf.sections[f.sec].name.clone(),
                    insn: j,
                    reason,
                };
                let g = self
                    .func_at(*s, *t)
                    .filter(|&g| self.funcs[g].start == *t)
                    .ok_or_else(|| {
                        bad(format!(
                            "instruction {t} of {} is not a function start",
                            self.elf.sections[*s].name
                        ))
                    })?;
                if let std::collections::hash_map::Entry::Vacant(e) = base.entry(g) {
                    e.insert(insns.len());
                    copy(&mut insns, &self.funcs[g]);
                    order.push(g);
                }
            }
            i += 1;
        }
        let mut kfuncs_used: Vec<KfuncRef> = Vec::new();
        let mut line_info = Vec::new();
        let mut func_info = Vec::new();
        let mut core_relocs = Vec::new();
        for &fi in &order {
            let f = &self.funcs[fi];
            let b = base[&fi];
            let sec_name = &self.elf.sections[f.sec].name;
            for (&j, link) in self.codes[&f.sec].links.range(f.start..f.end) {
                let p = b + (j - f.start);
                match link {
                    Link::Call(s, t) | Link::FuncAddr(s, t) => {
                        let g = self.func_at(*s, *t).unwrap_or(fi);
                        let rel = base.get(&g).copied().unwrap_or(0) as i64 - p as i64 - 1;
                        insns[p].imm = rel as i32;
                        insns[p].src = if matches!(link, Link::Call(..)) {
                            op::BPF_PSEUDO_CALL
                        } else {
                            op::BPF_PSEUDO_FUNC
                        };
                    }
                    Link::Kfunc(name, id) => {
                        if !kfuncs_used.iter().any(|k| k.id == *id) {
                            kfuncs_used.push(KfuncRef {
                                name: name.clone(),
                                id: *id,
                            });
                        }
                    }
                }
            }
            let type_id = self
                .ext
                .func_info
                .get(sec_name)
                .and_then(|v| v.iter().find(|r| (r.insn_off / 8) as usize == f.start))
                .map(|r| r.type_id)
                .or_else(|| self.btf.find_func(&f.name));
            func_info.push(FuncInfo {
                insn: b,
                name: f.name.clone(),
                type_id,
            });
            for (k, r) in self.core.iter().enumerate() {
                if &r.section == sec_name && (f.start..f.end).contains(&r.insn) {
                    core_relocs.push((b + (r.insn - f.start), k));
                }
            }
            for l in self
                .ext
                .line_info
                .get(sec_name)
                .map(Vec::as_slice)
                .unwrap_or(&[])
            {
                let j = (l.insn_off / 8) as usize;
                // Line 0 marks compiler-generated code with no source position.
                if !l.insn_off.is_multiple_of(8)
                    || j < f.start
                    || j >= f.end
                    || l.line_col >> 10 == 0
                {
                    continue;
                }
                line_info.push(LineInfo {
                    insn: b + (j - f.start),
                    file: self.btf.string_at(l.file_off).unwrap_or("").to_string(),
                    line: l.line_col >> 10,
                    column: l.line_col & 0x3ff,
                    source: self
                        .btf
                        .string_at(l.line_off)
                        .unwrap_or("")
                        .trim()
                        .to_string(),
                });
            }
        }
        line_info.sort_by_key(|l: &LineInfo| l.insn);
        core_relocs.sort_unstable();
        let mut helpers_used: Vec<u32> = insns
            .iter()
            .filter(|x| x.code == op::CALL && x.src == op::BPF_PSEUDO_HELPER)
            .map(|x| x.imm)
            .filter(|&id| id != CORE_POISON_HELPER && id < KFUNC_POISON_BASE)
            .map(|id| id as u32)
            .collect();
        helpers_used.sort_unstable();
        helpers_used.dedup();
        let main_f = &self.funcs[main];
        Ok(Program {
            name: main_f.name.clone(),
            section: self.elf.sections[main_f.sec].name.clone(),
            sleepable,
            insns,
            func_btf_id: func_info.first().and_then(|f| f.type_id),
            func_info,
            line_info,
            kfuncs_used,
            helpers_used,
            core_relocs,
        })
    }
}
