//! The ELF layer: sections classified by what bpfoom loads from them, symbols and
//! relocation tables, read with the `object` crate.

use crate::error::ObjError;
use object::elf;
use object::read::elf::{FileHeader, Rel as _, SectionHeader, Sym as _};
use object::LittleEndian as LE;
use std::collections::BTreeMap;

pub(super) struct Section<'a> {
    pub(super) name: String,
    pub(super) sh_type: u32,
    pub(super) data: &'a [u8],
    pub(super) size: u64,
    pub(super) kind: SecKind,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum SecKind {
    Text,
    Prog {
        sleepable: bool,
    },
    Maps,
    Data,
    StructOps {
        link: bool,
    },
    License,
    /// `.BTF` / `.BTF.ext`: read, but not loaded as program data.
    Btf,
    Ignored,
}

pub(super) struct Symbol {
    pub(super) name: String,
    pub(super) value: u64,
    pub(super) size: u64,
    pub(super) shndx: usize,
    pub(super) bind: u8,
    pub(super) typ: u8,
}

#[derive(Clone, Copy)]
pub(super) struct Rel {
    pub(super) offset: u64,
    pub(super) sym: usize,
    pub(super) rtype: u32,
}

pub(super) struct Elf<'a> {
    pub(super) sections: Vec<Section<'a>>,
    pub(super) symbols: Vec<Symbol>,
    /// Relocations by the index of the section they apply to.
    pub(super) rels: BTreeMap<usize, Vec<Rel>>,
}

fn classify(name: &str, sh_type: u32, flags: u64) -> Result<SecKind, ObjError> {
    let unsupported = |reason: &str| ObjError::UnsupportedSection {
        section: name.to_string(),
        reason: reason.to_string(),
    };
    if matches!(
        sh_type,
        elf::SHT_NULL | elf::SHT_REL | elf::SHT_RELA | elf::SHT_SYMTAB | elf::SHT_STRTAB
    ) {
        return Ok(SecKind::Ignored);
    }
    if flags & u64::from(elf::SHF_EXECINSTR) != 0 {
        return if name == ".text" {
            Ok(SecKind::Text)
        } else if name.starts_with("struct_ops.s/") {
            Ok(SecKind::Prog { sleepable: true })
        } else if name.starts_with("struct_ops/") {
            Ok(SecKind::Prog { sleepable: false })
        } else {
            Err(unsupported(
                "program type not supported: bpfoom loads struct_ops programs",
            ))
        };
    }
    let data_prefix =
        |p: &str| name == p || name.strip_prefix(p).is_some_and(|r| r.starts_with('.'));
    Ok(match name {
        "license" => SecKind::License,
        ".maps" => SecKind::Maps,
        ".struct_ops" => SecKind::StructOps { link: false },
        ".struct_ops.link" => SecKind::StructOps { link: true },
        "maps" => {
            return Err(unsupported(
                "legacy map definitions; declare maps in SEC(\".maps\")",
            ))
        }
        _ if data_prefix(".data") || data_prefix(".rodata") || data_prefix(".bss") => SecKind::Data,
        ".BTF" | ".BTF.ext" => SecKind::Btf,
        "version" => SecKind::Ignored,
        _ if flags & u64::from(elf::SHF_ALLOC) != 0 => {
            return Err(unsupported("unknown allocated section"))
        }
        // Debug info (DWARF), address-significance tables and the like carry nothing to load.
        _ => SecKind::Ignored,
    })
}

impl<'a> Elf<'a> {
    pub(super) fn parse(data: &'a [u8]) -> Result<Elf<'a>, ObjError> {
        if data.get(..4) != Some(&elf::ELFMAG[..]) {
            return Err(ObjError::NotElf);
        }
        let class = data.get(4).copied().unwrap_or(0);
        if class != elf::ELFCLASS64 {
            return Err(ObjError::WrongClass(class));
        }
        let enc = data.get(5).copied().unwrap_or(0);
        if enc != elf::ELFDATA2LSB {
            return Err(ObjError::WrongEndian(enc));
        }
        let hdr = elf::FileHeader64::<LE>::parse(data)?;
        let e = LE;
        let machine = hdr.e_machine(e);
        if machine != elf::EM_BPF {
            return Err(ObjError::WrongMachine(machine));
        }
        let ty = hdr.e_type(e);
        if ty != elf::ET_REL {
            return Err(ObjError::WrongType(ty));
        }
        let table = hdr.sections(e, data)?;
        let mut sections = Vec::with_capacity(table.len());
        let mut rels = BTreeMap::new();
        for sh in table.iter() {
            let name = String::from_utf8_lossy(table.section_name(e, sh)?).into_owned();
            let bad = |reason: String| ObjError::BadSection {
                section: name.clone(),
                reason,
            };
            let sh_type = sh.sh_type(e);
            let flags = sh.sh_flags(e);
            let kind = classify(&name, sh_type, flags)?;
            let bytes = if sh_type == elf::SHT_NOBITS || kind == SecKind::Ignored {
                &[][..]
            } else {
                sh.data(e, data)
                    .map_err(|_| bad("data out of file bounds".into()))?
            };
            if let Some((list, _)) = sh
                .rel(e, data)
                .map_err(|_| bad("bad relocation table".into()))?
            {
                let target = sh.sh_info(e) as usize;
                let v: Vec<Rel> = list
                    .iter()
                    .map(|r| Rel {
                        offset: r.r_offset(e),
                        sym: r.r_sym(e) as usize,
                        rtype: r.r_type(e),
                    })
                    .collect();
                rels.insert(target, v);
            }
            sections.push(Section {
                name,
                sh_type,
                data: bytes,
                size: sh.sh_size(e),
                kind,
            });
        }
        let symtab = table.symbols(e, data, elf::SHT_SYMTAB)?;
        let mut symbols = Vec::with_capacity(symtab.len());
        for sym in symtab.iter() {
            let name = String::from_utf8_lossy(symtab.symbol_name(e, sym)?).into_owned();
            symbols.push(Symbol {
                name,
                value: sym.st_value(e),
                size: sym.st_size(e),
                shndx: usize::from(sym.st_shndx(e)),
                bind: sym.st_bind(),
                typ: sym.st_type(),
            });
        }
        Ok(Elf {
            sections,
            symbols,
            rels,
        })
    }

    pub(super) fn by_name(&self, name: &str) -> Option<(usize, &Section<'a>)> {
        self.sections
            .iter()
            .enumerate()
            .find(|(_, s)| s.name == name)
    }

    pub(super) fn sym_name(&self, sym: usize) -> String {
        self.symbols
            .get(sym)
            .map(|s| s.name.clone())
            .unwrap_or_else(|| format!("#{sym}"))
    }
}
