//! The struct_ops types a policy implements: `bpf_oom_ops` and `bpf_psi_ops`.
//!
//! The member prototypes live in [`crate::types`] (the verifier types a
//! callback's context from them); this module adds what BTF cannot say: which
//! callbacks are mandatory, the allowed return range, and the program scope.

use crate::Scope;

/// Which upstream revision's prototype a callback program was written for.
///
/// bpfoom implements the newest form of the "mm: BPF OOM" series; an older
/// one is listed here when bpfoom can also run it as written, with the
/// arguments that revision passes ([`crate::types::HostTypes::callback_proto`]
/// gives its prototype). Other older forms are refused at load.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Form {
    /// The newest form (`handle_out_of_memory(oc, struct cgroup *cgrp)`, ...).
    #[default]
    Newest,
    /// Upstream v3 (Jan 2026): `handle_out_of_memory(struct oom_control *oc,
    /// struct bpf_struct_ops_link *link)`, the attach point in
    /// `link->cgroup`.
    V3Link,
}

impl Form {
    /// The revision's name, for messages.
    pub fn describe(self) -> &'static str {
        match self {
            Form::Newest => "the newest upstream form",
            Form::V3Link => "upstream v3 (Jan 2026)",
        }
    }

    /// The older forms bpfoom runs as written for `ops.member`.
    pub fn alternatives(ops: &str, member: &str) -> &'static [Form] {
        match (ops, member) {
            ("bpf_oom_ops", "handle_out_of_memory") => &[Form::V3Link],
            _ => &[],
        }
    }
}

/// A callback's return contract.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Return {
    /// `void`: r0 is ignored.
    Void,
    /// An `int` that must lie within `min..=max`.
    Int {
        /// Smallest allowed value.
        min: i64,
        /// Largest allowed value.
        max: i64,
    },
}

/// One function-pointer member of a struct_ops type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Callback {
    /// Member name.
    pub name: &'static str,
    /// The instance is rejected when it leaves this member NULL.
    pub mandatory: bool,
    /// Return contract.
    pub ret: Return,
}

/// A struct_ops type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StructOps {
    /// C struct name.
    pub name: &'static str,
    /// Kfunc scope of its programs.
    pub scope: Scope,
    /// Callbacks in member order.
    pub callbacks: &'static [Callback],
    /// Default of the `name` member when the instance leaves it empty.
    pub default_name: &'static str,
}

/// Any `int` (for callbacks that return 0 or a negative errno).
const ANY_INT: Return = Return::Int {
    min: i32::MIN as i64,
    max: i32::MAX as i64,
};

/// `struct bpf_oom_ops`.
pub static BPF_OOM_OPS: StructOps = StructOps {
    name: "bpf_oom_ops",
    scope: Scope::Oom,
    callbacks: &[
        Callback {
            name: "handle_out_of_memory",
            mandatory: true,
            ret: Return::Int {
                min: crate::BPF_OOM_FAILED,
                max: crate::BPF_OOM_BACKOFF,
            },
        },
        Callback {
            name: "handle_cgroup_offline",
            mandatory: false,
            ret: Return::Void,
        },
    ],
    default_name: "bpf_defined_policy",
};

/// `struct bpf_psi_ops`.
pub static BPF_PSI_OPS: StructOps = StructOps {
    name: "bpf_psi_ops",
    scope: Scope::Psi,
    callbacks: &[
        Callback {
            name: "init",
            mandatory: true,
            ret: ANY_INT,
        },
        Callback {
            name: "handle_psi_event",
            mandatory: true,
            ret: Return::Void,
        },
        Callback {
            name: "handle_cgroup_online",
            mandatory: false,
            ret: Return::Void,
        },
        Callback {
            name: "handle_cgroup_offline",
            mandatory: false,
            ret: Return::Void,
        },
    ],
    default_name: "bpf_defined_psi_policy",
};

/// All struct_ops types bpfoom knows.
pub static ALL: &[&StructOps] = &[&BPF_OOM_OPS, &BPF_PSI_OPS];

/// Looks a struct_ops type up by C name.
pub fn by_name(name: &str) -> Option<&'static StructOps> {
    ALL.iter().copied().find(|s| s.name == name)
}

impl StructOps {
    /// The callback called `name`.
    pub fn callback(&self, name: &str) -> Option<&'static Callback> {
        self.callbacks.iter().find(|c| c.name == name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::{HostTypes, Type};

    #[test]
    fn callbacks_match_host_btf_members() {
        let h = HostTypes::get();
        for ops in ALL {
            let id = h.struct_id(ops.name).unwrap();
            for cb in ops.callbacks {
                let m = h.member(id, cb.name).unwrap();
                let Some(Type::Ptr(p)) = h.ty(m.ty) else {
                    panic!("{} not a pointer", cb.name)
                };
                let Some(Type::FuncProto { ret, .. }) = h.ty(*p) else {
                    panic!("no proto")
                };
                assert_eq!(*ret == 0, cb.ret == Return::Void, "{}", cb.name);
            }
            assert!(h.member(id, "name").is_some());
        }
        assert_eq!(by_name("bpf_oom_ops").unwrap().callback("nope"), None);
    }

    #[test]
    fn every_alternative_form_has_a_prototype_returning_as_the_newest() {
        let h = HostTypes::get();
        for ops in ALL {
            for cb in ops.callbacks {
                let newest = h.callback_proto(ops.name, cb.name, Form::Newest).unwrap();
                let Some(Type::FuncProto { ret, .. }) = h.ty(newest) else {
                    panic!("{}", cb.name)
                };
                for &f in Form::alternatives(ops.name, cb.name) {
                    let alt = h.callback_proto(ops.name, cb.name, f).unwrap();
                    let Some(Type::FuncProto { ret: r, .. }) = h.ty(alt) else {
                        panic!("{f:?}")
                    };
                    assert_eq!(r, ret, "{}.{} {f:?}", ops.name, cb.name);
                }
            }
        }
        let v3 = h
            .callback_proto("bpf_oom_ops", "handle_out_of_memory", Form::V3Link)
            .unwrap();
        let Some(Type::FuncProto { params, .. }) = h.ty(v3) else {
            panic!()
        };
        let Some(Type::Ptr(link)) = h.ty(params[1].1) else {
            panic!()
        };
        assert_eq!(h.ty(*link).unwrap().name(), Some("bpf_struct_ops_link"));
        assert!(h.member(*link, "cgroup").is_some());
        assert_eq!(h.callback_proto("bpf_psi_ops", "init", Form::V3Link), None);
    }
}
