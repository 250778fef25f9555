//! From ELF bytes to an [`Object`]: sections, symbols, maps, relocation, layout.

use crate::btf::{Btf, BtfKind};
use crate::btf_ext::BtfExt;
use crate::error::ObjError;
use crate::{
    Callback, FuncInfo, KfuncRef, LineInfo, MapDef, MapKind, Object, Program, StructOpsInstance,
    CORE_POISON_HELPER, KFUNC_POISON_BASE,
};
use bpfoom_insn::opcode as op;
use bpfoom_insn::Insn;
use object::elf;
use object::read::elf::{FileHeader, Rel as _, SectionHeader, Sym as _};
use object::LittleEndian as LE;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::OnceLock;

type KfuncLookup = dyn Fn(&str) -> Option<u32> + Send + Sync;

/// What an object is relocated against: the host's types (for CO-RE) and kfunc ids.
pub struct Target {
    btf: Btf,
    kfunc_id: Box<KfuncLookup>,
}

impl std::fmt::Debug for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Target")
            .field("types", &self.btf.len())
            .finish_non_exhaustive()
    }
}

impl Target {
    /// A target from host types and a kfunc-name-to-id lookup.
    pub fn new(btf: Btf, kfunc_id: impl Fn(&str) -> Option<u32> + Send + Sync + 'static) -> Self {
        Target {
            btf,
            kfunc_id: Box::new(kfunc_id),
        }
    }

    /// The bpfoom host: `bpfoom_abi::types::HostTypes` and `bpfoom_abi::kfuncs`.
    pub fn host() -> &'static Target {
        static HOST: OnceLock<Target> = OnceLock::new();
        HOST.get_or_init(|| {
            let raw = bpfoom_abi::types::HostTypes::get().btf();
            // The host BTF is built-in data, not input: failing to parse it is a bpfoom bug.
            let btf = Btf::parse(&raw).expect("bpfoom-abi host BTF must parse");
            Target::new(btf, |name| bpfoom_abi::kfuncs::by_name(name).map(|k| k.id))
        })
    }

    /// The host types CO-RE relocations resolve against.
    pub fn btf(&self) -> &Btf {
        &self.btf
    }

    /// The id of a kfunc, if the host provides it.
    pub fn kfunc_id(&self, name: &str) -> Option<u32> {
        (self.kfunc_id)(name)
    }
}

// ---------------------------------------------------------------- ELF layer

struct Section<'a> {
    name: String,
    sh_type: u32,
    data: &'a [u8],
    size: u64,
    kind: SecKind,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum SecKind {
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

struct Symbol {
    name: String,
    value: u64,
    size: u64,
    shndx: usize,
    bind: u8,
    typ: u8,
}

#[derive(Clone, Copy)]
struct Rel {
    offset: u64,
    sym: usize,
    rtype: u32,
}

struct Elf<'a> {
    sections: Vec<Section<'a>>,
    symbols: Vec<Symbol>,
    /// Relocations by the index of the section they apply to.
    rels: BTreeMap<usize, Vec<Rel>>,
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
    fn parse(data: &'a [u8]) -> Result<Elf<'a>, ObjError> {
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

    fn by_name(&self, name: &str) -> Option<(usize, &Section<'a>)> {
        self.sections
            .iter()
            .enumerate()
            .find(|(_, s)| s.name == name)
    }

    fn sym_name(&self, sym: usize) -> String {
        self.symbols
            .get(sym)
            .map(|s| s.name.clone())
            .unwrap_or_else(|| format!("#{sym}"))
    }
}

// ---------------------------------------------------------------- BTF fix-ups

/// clang leaves DATASEC sizes and variable offsets for the linker; take them from the ELF,
/// as libbpf does.
fn fixup_datasecs(btf: &mut Btf, elf: &Elf<'_>) {
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

// ---------------------------------------------------------------- maps

struct MapIndex {
    /// `.maps` variable offset -> map index.
    btf_maps: HashMap<u64, usize>,
    /// Global data section index -> map index.
    data: HashMap<usize, usize>,
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

fn build_maps(elf: &Elf<'_>, btf: &Btf) -> Result<(Vec<MapDef>, MapIndex), ObjError> {
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

// ---------------------------------------------------------------- code

/// What a relocated instruction of a code section refers to.
#[derive(Clone, Debug)]
enum Link {
    /// bpf-to-bpf call to (section, instruction index).
    Call(usize, usize),
    /// Address of a function (`ld_imm64` `BPF_PSEUDO_FUNC`).
    FuncAddr(usize, usize),
    /// Resolved kfunc.
    Kfunc(String, u32),
}

struct Code {
    insns: Vec<Insn>,
    links: BTreeMap<usize, Link>,
}

struct Ctx<'e, 'a> {
    elf: &'e Elf<'a>,
    target: &'e Target,
    maps: &'e MapIndex,
}

const R_BPF_64_64: u32 = 1;
const R_BPF_64_ABS64: u32 = 2;
const R_BPF_64_32: u32 = 10;

impl Ctx<'_, '_> {
    fn relocate_code(&self, sec_idx: usize) -> Result<Code, ObjError> {
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

/// A function: a FUNC symbol's instruction range in a code section.
struct Func {
    sec: usize,
    start: usize,
    end: usize,
    name: String,
}

fn collect_funcs(elf: &Elf<'_>, codes: &BTreeMap<usize, Code>) -> Result<Vec<Func>, ObjError> {
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

struct Layout<'x> {
    elf: &'x Elf<'x>,
    btf: &'x Btf,
    ext: &'x BtfExt,
    codes: &'x BTreeMap<usize, Code>,
    funcs: &'x [Func],
    core: &'x [crate::CoreReloc],
}

impl Layout<'_> {
    fn func_at(&self, sec: usize, insn: usize) -> Option<usize> {
        self.funcs
            .iter()
            .position(|f| f.sec == sec && f.start <= insn && insn < f.end)
    }

    fn program(&self, main: usize, sleepable: bool) -> Result<Program, ObjError> {
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

// ---------------------------------------------------------------- struct_ops

fn struct_ops(
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
        crate::abi_form::check(btf, var, type_id)?;
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

// ---------------------------------------------------------------- driver

fn object_btf(elf: &Elf<'_>) -> Result<Btf, ObjError> {
    let (_, sec) = elf.by_name(".BTF").ok_or(ObjError::MissingBtf)?;
    let mut btf = Btf::parse(sec.data)?;
    fixup_datasecs(&mut btf, elf);
    Ok(btf)
}

impl Btf {
    /// Parses the `.BTF` section of an eBPF ELF object, with data section sizes and variable
    /// offsets fixed up from the ELF (useful to build a [`Target`] from a compiled object).
    pub fn from_object(bytes: &[u8]) -> Result<Btf, ObjError> {
        object_btf(&Elf::parse(bytes)?)
    }
}

pub(crate) fn load(bytes: &[u8], target: &Target) -> Result<Object, ObjError> {
    let elf = Elf::parse(bytes)?;
    let btf = object_btf(&elf)?;
    let ext = match elf.by_name(".BTF.ext") {
        Some((_, s)) => BtfExt::parse(s.data, &btf)?,
        None => BtfExt::default(),
    };
    let license = elf
        .sections
        .iter()
        .find(|s| s.kind == SecKind::License)
        .map(|s| {
            let end = s.data.iter().position(|&b| b == 0).unwrap_or(s.data.len());
            String::from_utf8_lossy(&s.data[..end]).into_owned()
        })
        .unwrap_or_default();
    for (idx, rels) in &elf.rels {
        let Some(sec) = elf.sections.get(*idx) else {
            return Err(ObjError::Elf(format!(
                "relocation section targets missing section {idx}"
            )));
        };
        if matches!(sec.kind, SecKind::Data | SecKind::Maps) && !rels.is_empty() {
            return Err(ObjError::UnsupportedSection {
                section: sec.name.clone(),
                reason: "pointers in data are not supported".into(),
            });
        }
    }
    let (maps, map_index) = build_maps(&elf, &btf)?;
    let ctx = Ctx {
        elf: &elf,
        target,
        maps: &map_index,
    };
    let mut codes = BTreeMap::new();
    for (i, s) in elf.sections.iter().enumerate() {
        if matches!(s.kind, SecKind::Text | SecKind::Prog { .. }) {
            codes.insert(i, ctx.relocate_code(i)?);
        }
    }
    let mut core_relocs_applied = Vec::new();
    for (sec_name, relos) in &ext.core_relos {
        let Some((idx, _)) = elf.by_name(sec_name) else {
            return Err(ObjError::BtfExt {
                offset: 0,
                reason: format!("CO-RE relocations for missing section {sec_name}"),
            });
        };
        let code = codes.get_mut(&idx).ok_or_else(|| ObjError::BtfExt {
            offset: 0,
            reason: format!("CO-RE relocations for non-code section {sec_name}"),
        })?;
        for raw in relos {
            core_relocs_applied.push(crate::core::apply(
                &btf,
                target.btf(),
                sec_name,
                &mut code.insns,
                raw,
            )?);
        }
    }
    let funcs = collect_funcs(&elf, &codes)?;
    let layout = Layout {
        elf: &elf,
        btf: &btf,
        ext: &ext,
        codes: &codes,
        funcs: &funcs,
        core: &core_relocs_applied,
    };
    let mut programs = Vec::new();
    let mut prog_at = HashMap::new();
    let mut covered: HashSet<usize> = HashSet::new();
    for (fi, f) in funcs.iter().enumerate() {
        if let SecKind::Prog { sleepable } = elf.sections[f.sec].kind {
            prog_at.insert((f.sec, f.start), programs.len());
            programs.push(layout.program(fi, sleepable)?);
            covered.insert(f.sec);
        }
    }
    for (i, code) in &codes {
        if matches!(elf.sections[*i].kind, SecKind::Prog { .. })
            && !code.insns.is_empty()
            && !covered.contains(i)
        {
            return Err(ObjError::BadSection {
                section: elf.sections[*i].name.clone(),
                reason: "code without a function symbol".into(),
            });
        }
    }
    let mut instances = Vec::new();
    for (i, s) in elf.sections.iter().enumerate() {
        if let SecKind::StructOps { link } = s.kind {
            instances.extend(struct_ops(&elf, &btf, i, link, &programs, &prog_at)?);
        }
    }
    Ok(Object {
        license,
        programs,
        struct_ops: instances,
        maps,
        btf,
        core_relocs_applied,
    })
}
