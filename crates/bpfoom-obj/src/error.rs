//! The loader's error type: every variant names the place in the object that is wrong.

use thiserror::Error;

/// Why an object could not be loaded.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum ObjError {
    /// The object file could not be read ([`crate::Object::from_path`] only).
    #[error("{path}: {reason}")]
    Io {
        /// File path.
        path: String,
        /// The I/O error.
        reason: String,
    },
    /// The input does not start with the ELF magic.
    #[error("not an ELF file")]
    NotElf,
    /// The ELF class is not 64-bit.
    #[error("unsupported ELF class {0} (expected ELFCLASS64)")]
    WrongClass(u8),
    /// The ELF data encoding is not little endian.
    #[error("unsupported ELF data encoding {0} (expected little endian)")]
    WrongEndian(u8),
    /// The ELF machine is not EM_BPF.
    #[error("ELF machine is {0}, expected EM_BPF (247)")]
    WrongMachine(u16),
    /// The ELF type is not ET_REL.
    #[error("ELF type is {0}, expected a relocatable object (ET_REL)")]
    WrongType(u16),
    /// The ELF container itself is malformed (headers, tables, offsets out of bounds).
    #[error("malformed ELF: {0}")]
    Elf(String),
    /// A section's contents are truncated or have an impossible size.
    #[error("section {section}: {reason}")]
    BadSection {
        /// Section name.
        section: String,
        /// What is wrong.
        reason: String,
    },
    /// The object has no `.BTF` section, which struct_ops and BTF maps need.
    #[error("object has no .BTF section (compile with -g)")]
    MissingBtf,
    /// The `.BTF` section is malformed.
    #[error("bad BTF at byte offset {offset}{}: {reason}", type_ctx(*type_id))]
    Btf {
        /// Byte offset inside the section where the problem was found.
        offset: usize,
        /// BTF type id involved, when there is one.
        type_id: Option<u32>,
        /// What is wrong.
        reason: String,
    },
    /// The `.BTF.ext` section is malformed.
    #[error("bad BTF.ext at byte offset {offset}: {reason}")]
    BtfExt {
        /// Byte offset inside the section where the problem was found.
        offset: usize,
        /// What is wrong.
        reason: String,
    },
    /// A section the loader cannot honour (for example an unknown program type).
    #[error("section {section}: unsupported section kind ({reason})")]
    UnsupportedSection {
        /// Section name.
        section: String,
        /// Why it is refused.
        reason: String,
    },
    /// A relocation that cannot be applied.
    #[error("section {section}, insn {insn}: relocation against `{symbol}`: {reason}")]
    Reloc {
        /// Section holding the relocated instruction or data.
        section: String,
        /// Instruction index (or byte offset / 8 for data sections).
        insn: usize,
        /// Symbol the relocation refers to.
        symbol: String,
        /// What is wrong.
        reason: String,
    },
    /// A call to a kernel function that the host does not provide.
    #[error("section {section}, insn {insn}: unknown kfunc `{name}`")]
    UnknownKfunc {
        /// Section of the call.
        section: String,
        /// Instruction index of the call inside the section.
        insn: usize,
        /// The kfunc name.
        name: String,
    },
    /// A bpf-to-bpf call or function reference that does not land on a function.
    #[error("section {section}, insn {insn}: bad call target: {reason}")]
    BadCall {
        /// Section of the call.
        section: String,
        /// Instruction index of the call inside the section.
        insn: usize,
        /// What is wrong.
        reason: String,
    },
    /// A BTF-defined map is malformed or of an unsupported type.
    #[error("map `{map}`: {reason}")]
    Map {
        /// Map (variable) name.
        map: String,
        /// What is wrong.
        reason: String,
    },
    /// A struct_ops instance is malformed.
    #[error("struct_ops `{var}` in {section}: {reason}")]
    StructOps {
        /// Section holding the instance.
        section: String,
        /// Variable name of the instance.
        var: String,
        /// What is wrong.
        reason: String,
    },
    /// A struct_ops instance whose type, in the object's own BTF, declares a
    /// callback prototype of another upstream revision than bpfoom's.
    #[error("{0}")]
    AbiMismatch(Box<AbiMismatch>),
    /// A CO-RE relocation that cannot be resolved and cannot be poisoned.
    #[error(
        "section {section}, insn {insn}: CO-RE relocation {kind} on local type {type_id} \
         (access \"{access}\"): {reason}"
    )]
    Core {
        /// Section of the relocated instruction.
        section: String,
        /// Instruction index inside the section.
        insn: usize,
        /// Relocation kind name.
        kind: String,
        /// Local BTF type id.
        type_id: u32,
        /// Access string.
        access: String,
        /// What is wrong.
        reason: String,
    },
}

fn type_ctx(id: Option<u32>) -> String {
    id.map(|i| format!(" (type id {i})")).unwrap_or_default()
}

impl From<object::read::Error> for ObjError {
    fn from(e: object::read::Error) -> Self {
        ObjError::Elf(e.to_string())
    }
}

/// The details of [`ObjError::AbiMismatch`] (boxed: errors stay small).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "struct_ops `{var}`: this object's struct {ops} declares {member}({found}), \
     which is {form}; bpfoom implements the newest upstream form {member}({want}){also}. \
     Rebuild the policy against bpf_oom.h, or against a vmlinux.h made with \
     `bpfoom btf`, and adapt the callback's arguments"
)]
pub struct AbiMismatch {
    /// Variable name of the instance.
    pub var: String,
    /// The struct_ops type (`bpf_oom_ops`, `bpf_psi_ops`).
    pub ops: String,
    /// The callback member whose prototype differs.
    pub member: String,
    /// The object's argument list.
    pub found: String,
    /// bpfoom's argument list.
    pub want: String,
    /// The older forms of the member bpfoom also runs, as a clause for the
    /// message (empty when there are none).
    pub also: String,
    /// Which upstream revision the object's form matches.
    pub form: &'static str,
}
