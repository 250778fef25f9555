//! Which revision of upstream's struct_ops prototypes an object was built
//! against.
//!
//! The "mm: BPF OOM" series changed its callback prototypes between
//! revisions (see `../shared/upstream-bpf-oom.md`); bpfoom implements the
//! newest. An object compiled against an older revision's `vmlinux.h`
//! carries that revision's `struct bpf_oom_ops` / `struct bpf_psi_ops` in its
//! own BTF. Without this check it would load and then fail in the verifier
//! with a message about a field of the wrong type; with it, the user learns
//! which form the object has and which bpfoom runs.
//!
//! A prototype that is a prefix of bpfoom's (upstream v1's
//! `handle_out_of_memory(oc)`) is compatible: the program simply does not
//! read the later arguments.
//!
//! The v3 form (`handle_out_of_memory(struct oom_control *, struct
//! bpf_struct_ops_link *)`, the policy reading `link->cgroup`) runs as
//! written: the callback is marked [`Form::V3Link`], the verifier types its
//! arguments from v3's prototype (the link a trusted, read-only
//! `struct bpf_struct_ops_link *` whose `cgroup` is the attach point) and the
//! engine passes such a link. Every other older form is refused here with
//! the explanation, never run as a mistyped program that happens to pass.

use bpfoom_abi::struct_ops::Form;
use bpfoom_abi::types::{HostTypes, Type, TypeId};

use crate::btf::{Btf, BtfKind};
use crate::error::{AbiMismatch, ObjError};

/// The shape of one argument, as far as calling the program is concerned.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Arg {
    /// A pointer to the named struct (empty name: to something else).
    Ptr(String),
    /// Anything passed in a register by value.
    Scalar,
}

impl Arg {
    fn render(&self) -> String {
        match self {
            Arg::Ptr(s) if s.is_empty() => "void *".into(),
            Arg::Ptr(s) => format!("struct {s} *"),
            Arg::Scalar => "u64".into(),
        }
    }
}

/// Known upstream revisions whose prototypes differ from bpfoom's and that
/// bpfoom does not run (v3's `handle_out_of_memory`, which it runs, is found
/// through [`Form::alternatives`] first).
const KNOWN_FORMS: &[(&str, &str, &[&str], &str)] = &[
    (
        "bpf_oom_ops",
        "handle_out_of_memory",
        &["bpf_oom_ctx", "oom_control"],
        "upstream v2 (Oct 2025)",
    ),
    (
        "bpf_oom_ops",
        "handle_cgroup_offline",
        &["bpf_oom_ctx", ""],
        "upstream v2 (Oct 2025)",
    ),
    (
        "bpf_psi_ops",
        "handle_psi_event",
        &["psi_trigger"],
        "the upstream bpf_psi_ops revision without the `struct bpf_psi *` argument",
    ),
    (
        "bpf_psi_ops",
        "handle_cgroup_online",
        &[""],
        "the upstream bpf_psi_ops revision without the `struct bpf_psi *` argument",
    ),
    (
        "bpf_psi_ops",
        "handle_cgroup_offline",
        &[""],
        "the upstream bpf_psi_ops revision without the `struct bpf_psi *` argument",
    ),
];

fn obj_args(btf: &Btf, member_ty: u32) -> Option<Vec<Arg>> {
    let ptr = btf.skip_mods_and_typedefs(member_ty);
    let BtfKind::Ptr(proto) = btf.type_by_id(ptr)?.kind else {
        return None;
    };
    let proto = btf.skip_mods_and_typedefs(proto);
    let BtfKind::FuncProto { params, .. } = &btf.type_by_id(proto)?.kind else {
        return None;
    };
    Some(
        params
            .iter()
            .filter(|p| p.ty != 0)
            .map(|p| {
                let t = btf.skip_mods_and_typedefs(p.ty);
                match btf.type_by_id(t).map(|t| &t.kind) {
                    Some(BtfKind::Ptr(to)) => {
                        let to = btf.skip_mods_and_typedefs(*to);
                        let name = btf
                            .type_by_id(to)
                            // A struct the program never reads is only a
                            // forward declaration in its BTF.
                            .filter(|t| {
                                matches!(
                                    t.kind,
                                    BtfKind::Struct { .. } | BtfKind::Fwd { union: false }
                                )
                            })
                            .map_or(String::new(), |t| t.name.clone());
                        Arg::Ptr(name)
                    }
                    _ => Arg::Scalar,
                }
            })
            .collect(),
    )
}

fn host_args(ops: &str, member: &str, form: Form) -> Option<Vec<Arg>> {
    let h = HostTypes::get();
    let p: TypeId = h.callback_proto(ops, member, form)?;
    let Some(Type::FuncProto { params, .. }) = h.ty(p) else {
        return None;
    };
    Some(
        params
            .iter()
            .map(|(_, t)| match h.ty(h.resolve(*t)) {
                Some(Type::Ptr(to)) => Arg::Ptr(match h.ty(h.resolve(*to)) {
                    Some(Type::Struct(c)) => c.name.clone(),
                    _ => String::new(),
                }),
                _ => Arg::Scalar,
            })
            .collect(),
    )
}

fn list(args: &[Arg]) -> String {
    args.iter().map(Arg::render).collect::<Vec<_>>().join(", ")
}

/// Fewer arguments than the host passes is fine (a prefix): the program
/// simply does not read the later ones.
fn compatible(found: &[Arg], want: &[Arg]) -> bool {
    found.len() <= want.len() && found.iter().zip(want).all(|(f, w)| f == w)
}

/// Checks every callback member of the struct_ops type `type_id` (in the
/// object's BTF) against bpfoom's prototype of the same member, and returns
/// the members written for an older form bpfoom runs as written, with that
/// form (members not listed are [`Form::Newest`]).
pub(crate) fn check(btf: &Btf, var: &str, type_id: u32) -> Result<Vec<(String, Form)>, ObjError> {
    let mut older = Vec::new();
    let Some(st) = btf.type_by_id(type_id) else {
        return Ok(older);
    };
    let BtfKind::Struct { members, .. } = &st.kind else {
        return Ok(older);
    };
    for m in members {
        let (Some(found), Some(want)) = (
            obj_args(btf, m.ty),
            host_args(&st.name, &m.name, Form::Newest),
        ) else {
            continue;
        };
        if compatible(&found, &want) {
            continue;
        }
        // A prefix of both forms (v1's `(oc)`) took the newest above.
        if let Some(&form) = Form::alternatives(&st.name, &m.name)
            .iter()
            .find(|&&f| host_args(&st.name, &m.name, f).is_some_and(|alt| compatible(&found, &alt)))
        {
            older.push((m.name.clone(), form));
            continue;
        }
        let shape: Vec<&str> = found
            .iter()
            .map(|a| match a {
                Arg::Ptr(s) => s.as_str(),
                Arg::Scalar => "",
            })
            .collect();
        let form = KNOWN_FORMS
            .iter()
            .find(|(ops, cb, args, _)| {
                *ops == st.name && *cb == m.name && *args == shape.as_slice()
            })
            .map_or("a form bpfoom does not know", |f| f.3);
        let also = Form::alternatives(&st.name, &m.name)
            .iter()
            .filter_map(|&f| {
                let args = host_args(&st.name, &m.name, f)?;
                Some(format!(
                    " (it also runs {}'s {}({}) as written)",
                    f.describe(),
                    m.name,
                    list(&args)
                ))
            })
            .collect();
        return Err(ObjError::AbiMismatch(Box::new(AbiMismatch {
            var: var.to_string(),
            ops: st.name.clone(),
            member: m.name.clone(),
            found: list(&found),
            want: list(&want),
            also,
            form,
        })));
    }
    Ok(older)
}
