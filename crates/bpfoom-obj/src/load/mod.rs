//! From ELF bytes to an [`Object`], one job per module in the order the work happens:
//! [`elf`] reads sections, symbols and relocation tables; [`fixup`] completes the object's BTF
//! from the ELF; [`maps`] builds the map definitions; [`reloc`] relocates each code section;
//! [`link`] lays each program out with the subprograms it calls; [`struct_ops`] resolves the
//! struct_ops instances' callbacks. This module is the driver.

mod elf;
mod fixup;
mod link;
mod maps;
mod reloc;
mod struct_ops;

use self::elf::{Elf, SecKind};
use crate::btf::Btf;
use crate::btf_ext::BtfExt;
use crate::error::ObjError;
use crate::Object;
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

/// The object's `.BTF`, completed from the ELF.
fn object_btf(elf: &Elf<'_>) -> Result<Btf, ObjError> {
    let (_, sec) = elf.by_name(".BTF").ok_or(ObjError::MissingBtf)?;
    let mut btf = Btf::parse(sec.data)?;
    fixup::fixup_datasecs(&mut btf, elf);
    Ok(btf)
}

/// The object's `.BTF` section, parsed and completed from the ELF (see [`Btf::from_object`]).
pub(crate) fn object_btf_of(bytes: &[u8]) -> Result<Btf, ObjError> {
    object_btf(&Elf::parse(bytes)?)
}

/// Loads an object: the steps of the module docs, in order.
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
    let (maps, map_index) = maps::build_maps(&elf, &btf)?;
    let ctx = reloc::Ctx {
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
    let funcs = link::collect_funcs(&elf, &codes)?;
    let layout = link::Layout {
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
            instances.extend(struct_ops::struct_ops(
                &elf, &btf, i, link, &programs, &prog_at,
            )?);
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
