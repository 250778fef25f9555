//! Loader for clang-compiled eBPF policy objects (`clang -O2 -g -target bpf -c`).
//!
//! [`Object::parse`] turns the bytes of an ET_REL eBPF ELF object into programs with relocated
//! instructions, struct_ops instances, maps, and the object's own BTF. It is pure: no syscalls
//! and no file I/O (except the [`Object::from_path`] convenience).
//!
//! Relocated instructions follow the workspace contract:
//! - map reference: `ld_imm64` with `src = BPF_PSEUDO_MAP_FD`, `imm` = index into
//!   [`Object::maps`]; or `src = BPF_PSEUDO_MAP_VALUE`, `imm` = map index, the second slot's
//!   `imm` = byte offset into the value (global data sections are single-entry array maps);
//! - helper call: `call` with `src = 0`, `imm` = Linux helper id;
//! - kfunc call: `call` with `src = BPF_PSEUDO_KFUNC_CALL`, `imm` = bpfoom-abi kfunc id;
//! - bpf-to-bpf call: `src = BPF_PSEUDO_CALL`, target = pc + imm + 1; static subprograms
//!   from `.text` are appended after the program's own instructions, each once;
//! - address of a subprogram: `ld_imm64` with `src = BPF_PSEUDO_FUNC`, `imm` relative as for calls;
//! - `bpf_ksym_exists(kfunc)`: `ld_imm64` with `src = BPF_PSEUDO_BTF_ID`, `imm` = kfunc id.
//!
//! Decisions where libbpf semantics leave a choice:
//! - a call to an unknown **weak** kfunc becomes a helper call with id
//!   [`KFUNC_POISON_BASE`] + extern index, and `ld_imm64` of it loads 0, as libbpf does: code
//!   guarded by `bpf_ksym_exists()` is dead and the verifier rejects the call only if it is
//!   reachable. An unknown non-weak kfunc is [`ObjError::UnknownKfunc`].
//! - a CO-RE relocation whose field/type/enumerator is missing on the host is *poisoned* like
//!   libbpf: the instruction becomes `call` [`CORE_POISON_HELPER`] (both slots for `ld_imm64`),
//!   which the verifier rejects if reachable. `*_EXISTS` and `TYPE_MATCHES` resolve to 0 instead.
//!   The record in [`Object::core_relocs_applied`] says [`CoreOutcome::Poisoned`].
//! - non-allocated sections (DWARF `.debug_*`, `.llvm_addrsig`, ...) are ignored; executable
//!   sections other than `.text`, `struct_ops/*` and `struct_ops.s/*`, and allocated data
//!   sections of unknown kinds, are rejected with [`ObjError::UnsupportedSection`].
//! - maps are listed BTF-defined `.maps` first (in section order), then global data sections in
//!   ELF section order; global data maps are named after their section (`.rodata`, ...).

mod abi_form;
mod btf;
mod btf_ext;
mod core;
mod error;
mod load;

pub use crate::btf::{Btf, BtfKind, BtfType, DatasecVar, EnumValue, Member, Param};
pub use crate::core::{CoreKind, CoreOutcome, CoreReloc};
pub use crate::error::{AbiMismatch, ObjError};
pub use crate::load::Target;
pub use bpfoom_abi::maps::MapKind;
pub use bpfoom_abi::struct_ops::Form;
pub use bpfoom_insn::Insn;

/// Helper id written over an instruction whose CO-RE relocation failed (libbpf's `0xbad2310`).
pub const CORE_POISON_HELPER: i32 = 0x0bad_2310;
/// Base of the helper ids written over calls to unresolved weak kfuncs (libbpf's value).
pub const KFUNC_POISON_BASE: i32 = 2_002_000_000;

/// A loaded policy object.
#[derive(Clone, Debug)]
pub struct Object {
    /// Contents of the `license` section (empty if absent).
    pub license: String,
    /// Programs from `struct_ops/*` and `struct_ops.s/*` sections, in section/symbol order.
    pub programs: Vec<Program>,
    /// struct_ops instances from `.struct_ops.link` and `.struct_ops`.
    pub struct_ops: Vec<StructOpsInstance>,
    /// Maps; ld_imm64 map references index into this list.
    pub maps: Vec<MapDef>,
    /// The object's own BTF (data section sizes and variable offsets fixed up from the ELF).
    pub btf: Btf,
    /// Every CO-RE relocation, in section and instruction order.
    pub core_relocs_applied: Vec<CoreReloc>,
}

/// One program (a struct_ops callback implementation) with its relocated instructions.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Program {
    /// Function (symbol) name.
    pub name: String,
    /// ELF section, e.g. `struct_ops.s/handle_out_of_memory`.
    pub section: String,
    /// Loaded from a `struct_ops.s/` section.
    pub sleepable: bool,
    /// Relocated instructions; appended subprograms follow the program's own.
    pub insns: Vec<Insn>,
    /// The program's `FUNC` type id in [`Object::btf`] (its prototype via [`Btf::func_proto`]).
    pub func_btf_id: Option<u32>,
    /// Function boundaries: the program itself at 0, then each appended subprogram.
    pub func_info: Vec<FuncInfo>,
    /// Source positions, sorted by instruction index.
    pub line_info: Vec<LineInfo>,
    /// Kfuncs called (or referenced by `bpf_ksym_exists`), deduplicated, in first-use order.
    pub kfuncs_used: Vec<KfuncRef>,
    /// Helper ids called, sorted and deduplicated.
    pub helpers_used: Vec<u32>,
    /// CO-RE relocations inside this program: (instruction index in [`Program::insns`], index
    /// into [`Object::core_relocs_applied`]), sorted by instruction. A relocation in a `.text`
    /// subprogram appears in every program that appends it.
    pub core_relocs: Vec<(usize, usize)>,
}

/// A function inside a program's instruction stream.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FuncInfo {
    /// First instruction index.
    pub insn: usize,
    /// Function name.
    pub name: String,
    /// `FUNC` type id in [`Object::btf`], when BTF.ext describes it.
    pub type_id: Option<u32>,
}

/// One line-info record mapped to a final instruction index.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LineInfo {
    /// Instruction index in [`Program::insns`].
    pub insn: usize,
    /// Source file name.
    pub file: String,
    /// 1-based line number.
    pub line: u32,
    /// 1-based column (0 when unknown).
    pub column: u32,
    /// The source line's text, as clang recorded it.
    pub source: String,
}

/// A kfunc a program refers to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KfuncRef {
    /// Kfunc name.
    pub name: String,
    /// Host kfunc id (the `imm` of the call).
    pub id: u32,
}

impl Program {
    /// The line-info record covering instruction `insn`: the last one at or before it, within
    /// the same function.
    pub fn line_at(&self, insn: usize) -> Option<&LineInfo> {
        let func_start = self
            .func_info
            .iter()
            .map(|f| f.insn)
            .filter(|&s| s <= insn)
            .max()
            .unwrap_or(0);
        let i = self.line_info.partition_point(|l| l.insn <= insn);
        self.line_info[..i].last().filter(|l| l.insn >= func_start)
    }

    /// The function containing instruction `insn`.
    pub fn func_at(&self, insn: usize) -> Option<&FuncInfo> {
        self.func_info
            .iter()
            .filter(|f| f.insn <= insn)
            .max_by_key(|f| f.insn)
    }
}

/// A struct_ops instance: one variable in `.struct_ops` or `.struct_ops.link`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StructOpsInstance {
    /// Variable name (e.g. `my_ops`).
    pub var: String,
    /// Section it lives in.
    pub section: String,
    /// From `.struct_ops.link` (attached through a link).
    pub link: bool,
    /// Struct type name, e.g. `bpf_oom_ops`.
    pub type_name: String,
    /// Struct type id in [`Object::btf`].
    pub type_id: u32,
    /// Value of the `name` char array field, if the struct has one.
    pub name: Option<String>,
    /// Callback members set to a program.
    pub callbacks: Vec<Callback>,
    /// The instance's raw bytes (function pointer slots zero).
    pub data: Vec<u8>,
}

/// A struct_ops member implemented by a program.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Callback {
    /// Member name, e.g. `handle_out_of_memory`.
    pub member: String,
    /// Index into [`Object::programs`].
    pub program: usize,
    /// Name of that program.
    pub program_name: String,
    /// The upstream revision of the member's prototype the object declares
    /// (an older one only when bpfoom runs it as written; others are
    /// [`ObjError::AbiMismatch`]): which arguments the program receives.
    pub form: Form,
}

/// A map definition.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MapDef {
    /// Variable name for `.maps`, section name for global data.
    pub name: String,
    /// Map type.
    pub kind: MapKind,
    /// Key size in bytes (0 for ring buffers).
    pub key_size: u32,
    /// Value size in bytes (0 for ring buffers).
    pub value_size: u32,
    /// Maximum entries (ring buffer: size in bytes).
    pub max_entries: u32,
    /// `map_flags`.
    pub flags: u32,
    /// Key BTF type id in [`Object::btf`], when declared with `__type`.
    pub key_type: Option<u32>,
    /// Value BTF type id (a `DATASEC` for global data), when known.
    pub value_type: Option<u32>,
    /// Initial value of the single entry for global data (zeros for `.bss`).
    pub initial: Option<Vec<u8>>,
    /// Global data from a `.rodata*` section (read-only to programs).
    pub readonly: bool,
    /// ELF section the map came from.
    pub section: String,
}

impl Object {
    /// Parses and relocates an object against the bpfoom host ([`Target::host`]).
    pub fn parse(bytes: &[u8]) -> Result<Object, ObjError> {
        Self::parse_with(bytes, Target::host())
    }

    /// Parses and relocates an object against a given target (host types and kfunc ids).
    pub fn parse_with(bytes: &[u8], target: &Target) -> Result<Object, ObjError> {
        load::load(bytes, target)
    }

    /// Reads and parses a file.
    pub fn from_path(path: impl AsRef<std::path::Path>) -> Result<Object, ObjError> {
        let path = path.as_ref();
        let bytes = std::fs::read(path).map_err(|e| ObjError::Io {
            path: path.display().to_string(),
            reason: e.to_string(),
        })?;
        Self::parse(&bytes)
    }

    /// The program with this function name.
    pub fn program(&self, name: &str) -> Option<&Program> {
        self.programs.iter().find(|p| p.name == name)
    }

    /// The map with this name.
    pub fn map(&self, name: &str) -> Option<(usize, &MapDef)> {
        self.maps.iter().enumerate().find(|(_, m)| m.name == name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(insn: usize, line: u32) -> LineInfo {
        LineInfo {
            insn,
            file: "f.c".into(),
            line,
            column: 1,
            source: String::new(),
        }
    }

    #[test]
    fn line_lookup_stays_inside_the_function() {
        let p = Program {
            name: "p".into(),
            section: "struct_ops/p".into(),
            sleepable: false,
            insns: vec![Insn::default(); 10],
            func_btf_id: None,
            func_info: vec![
                FuncInfo {
                    insn: 0,
                    name: "p".into(),
                    type_id: None,
                },
                FuncInfo {
                    insn: 6,
                    name: "sub".into(),
                    type_id: None,
                },
            ],
            line_info: vec![line(0, 10), line(3, 12), line(7, 40)],
            kfuncs_used: vec![],
            helpers_used: vec![],
            core_relocs: vec![],
        };
        assert_eq!(p.line_at(4).unwrap().line, 12);
        assert_eq!(p.line_at(5).unwrap().line, 12);
        // Insn 6 starts `sub`, which has no line before 7: not p's line 12.
        assert!(p.line_at(6).is_none());
        assert_eq!(p.line_at(9).unwrap().line, 40);
        assert_eq!(p.func_at(7).unwrap().name, "sub");
        assert_eq!(p.func_at(2).unwrap().name, "p");
    }

    #[test]
    fn host_target_has_the_abi_types_and_kfuncs() {
        let t = Target::host();
        let host = bpfoom_abi::types::HostTypes::get();
        let id = host.struct_id("oom_control").unwrap();
        assert_eq!(t.btf().type_by_id(id).unwrap().name, "oom_control");
        assert_eq!(t.btf().size_of(id), host.size_of(id));
        let k = bpfoom_abi::kfuncs::by_name("bpf_oom_kill_process").unwrap();
        assert_eq!(t.kfunc_id("bpf_oom_kill_process"), Some(k.id));
        assert_eq!(t.kfunc_id("bpf_nope"), None);
    }
}
