//! Explanations added to a rejection when the program's own intent is
//! known: a CO-RE field access of one struct applied to a pointer to
//! another (issue 14: an object written for another callback prototype, or
//! a handler declaring its arguments with the wrong types).
//!
//! Linux checks the access by offset alone and says only that it is out
//! of bounds (or not a field); the object's CO-RE relocation records which
//! field the program meant, so bpfoom names both types and the prototype
//! the program is called with.

use bpfoom_abi::types::{HostTypes, Type, TypeId};
use bpfoom_insn::opcode::*;

use crate::check::{Param, Verifier};
use crate::state::{RegType, State};

/// A host type as C declares it (`struct oom_control *`, `u64`, ...).
pub(crate) fn c_type(h: &HostTypes, id: TypeId) -> String {
    match h.ty(id) {
        None | Some(Type::Void) => "void".into(),
        Some(Type::Int { name, .. }) | Some(Type::Typedef { name, .. }) => name.clone(),
        Some(Type::Ptr(to)) => {
            let inner = c_type(h, *to);
            if inner.ends_with('*') {
                format!("{inner}*")
            } else {
                format!("{inner} *")
            }
        }
        Some(Type::Array { elem, len }) => format!("{}[{len}]", c_type(h, *elem)),
        Some(Type::Struct(c)) => format!("struct {}", c.name),
        Some(Type::Union(c)) => format!("union {}", c.name),
        Some(Type::Enum { name, .. }) => format!("enum {name}"),
        Some(Type::Const(t)) => format!("const {}", c_type(h, *t)),
        Some(Type::FuncProto { .. }) => "function".into(),
    }
}

/// `int bpf_oom_ops.handle_out_of_memory(struct oom_control *oc, ...)`.
pub(crate) fn prototype(h: &HostTypes, ops: &str, member: &str, proto: TypeId) -> String {
    let Some(Type::FuncProto { ret, params }) = h.ty(proto) else {
        return format!("{ops}.{member}");
    };
    let args: Vec<String> = params
        .iter()
        .map(|(n, t)| {
            let t = c_type(h, *t);
            if n.is_empty() {
                t
            } else if t.ends_with('*') {
                format!("{t}{n}")
            } else {
                format!("{t} {n}")
            }
        })
        .collect();
    format!("{} {ops}.{member}({})", c_type(h, *ret), args.join(", "))
}

/// The struct name a CO-RE root type stands for: libbpf ignores a
/// `___flavor` suffix when it matches types.
fn essential_name(name: &str) -> &str {
    name.find("___").map_or(name, |i| &name[..i])
}

impl Verifier<'_> {
    /// When instruction `pc` is a relocated CO-RE field access whose
    /// struct is not what the pointer it goes through points to: why.
    pub(crate) fn core_mismatch(&self, st: &State, pc: usize) -> Option<String> {
        let core = self.input.core_access;
        let k = core.partition_point(|a| a.insn < pc);
        let acc = core.get(k).filter(|a| a.insn == pc)?;
        let i = *self.insns.get(pc)?;
        let regno = match class(i.code) {
            BPF_LDX => i.src,
            BPF_ST | BPF_STX => i.dst,
            _ => return None,
        };
        let r = st.frames.last()?.regs.get(regno as usize)?;
        let want = essential_name(&acc.root);
        let h = HostTypes::get();
        let (what, arg_type) = match r.ty {
            RegType::Btf { ty, .. } => {
                if crate::calls::type_at_matches(ty, r.off, want) {
                    return None;
                }
                let here = if r.off == 0 {
                    String::new()
                } else {
                    format!(" at offset {}", r.off)
                };
                let is_arg = self
                    .hook
                    .params
                    .iter()
                    .any(|p| matches!(p, Param::Object(t) if *t == h.resolve(ty)));
                (format!("R{regno} points to {}{here}", c_type(h, ty)), is_arg)
            }
            RegType::Ctx => (
                format!(
                    "R{regno} is the context (the callback's arguments, 8 bytes each), not a struct {want}"
                ),
                true,
            ),
            _ => return None,
        };
        let mut why = format!(
            "the CO-RE access `{}` is a field of struct {want}, but {what}",
            acc.spec
        );
        if arg_type {
            // Most likely the handler declares its arguments with other
            // types than the callback passes.
            why += &format!(
                "; bpfoom calls this program as {} (declare the handler's arguments with these types)",
                self.hook.proto
            );
        }
        Some(why)
    }

    /// Notes, before instruction `pc` runs, a CO-RE field access through a
    /// pointer to another struct that the offset check alone lets through
    /// (Linux too checks only offsets): it is reported with any later
    /// rejection, and as a warning when the program verifies.
    pub(crate) fn note_core_mismatch(&mut self, st: &State, pc: usize) {
        if self.input.core_access.is_empty() || self.warnings.contains_key(&pc) {
            return;
        }
        if let Some(why) = self.core_mismatch(st, pc) {
            self.warnings.insert(pc, why);
        }
    }
}
