//! Objects built against an older upstream revision's `vmlinux.h` are
//! recognised by the prototypes in their own BTF: v3's
//! `handle_out_of_memory(oc, struct bpf_struct_ops_link *)` loads, marked
//! with its form; the other revisions are refused with an explanation; a
//! prefix of bpfoom's prototype (upstream v1) loads as the newest form.
#![allow(clippy::unwrap_used)]

mod common;

use bpfoom_obj::{Form, ObjError, Object};

/// A policy whose `struct bpf_oom_ops` / `struct bpf_psi_ops` is its own
/// (the header's is renamed away), with `ops_def` declaring the revision's
/// type and `progs` the programs and the instance.
fn build(name: &str, ops_def: &str, progs: &str) -> Option<Result<Object, ObjError>> {
    let src = format!(
        "#define bpf_oom_ops bpf_oom_ops___bpfoom\n#define bpf_psi_ops bpf_psi_ops___bpfoom\n\
         #include <bpf_oom.h>\n#undef bpf_oom_ops\n#undef bpf_psi_ops\n\
         char _license[] SEC(\"license\") = \"GPL\";\n\
         struct bpf_oom_ctx {{ u64 cgroup_id; }};\n{ops_def}\n{progs}\n"
    );
    let bytes = common::compile_source(name, &src)?;
    Some(Object::parse(&bytes))
}

const OOM_PROG: &str = "SEC(\"struct_ops.s/handle_out_of_memory\")\n\
    int BPF_PROG(h, struct oom_control *oc) { return 0; }\n\
    SEC(\".struct_ops.link\") struct bpf_oom_ops ops = { .handle_out_of_memory = (void *)h, .name = \"old\" };\n";

fn mismatch(r: Result<Object, ObjError>) -> (String, String) {
    match r {
        Err(ObjError::AbiMismatch(m)) => (m.form.to_string(), m.to_string()),
        Err(e) => panic!("expected an ABI mismatch, got: {e}"),
        Ok(_) => panic!("expected an ABI mismatch, the object loaded"),
    }
}

const V3_OPS: &str = "struct bpf_oom_ops { int (*handle_out_of_memory)(struct oom_control *oc, \
     struct bpf_struct_ops_link *st_link); char name[64]; };";

const V3_PROG: &str = "SEC(\"struct_ops.s/handle_out_of_memory\")\n\
    int BPF_PROG(h, struct oom_control *oc, struct bpf_struct_ops_link *l) \
    { return l->map != 0; }\n\
    SEC(\".struct_ops.link\") struct bpf_oom_ops ops = { .handle_out_of_memory = (void *)h, .name = \"v3\" };\n";

#[test]
fn v3_link_form_loads_marked_as_v3() {
    // The program reads the link (its BTF then has the struct, not only a
    // forward declaration) and, as v1-style code, ignores it: both load.
    for (name, prog) in [("abi_v3", V3_PROG), ("abi_v3_oc_only", OOM_PROG)] {
        let Some(r) = build(name, V3_OPS, prog) else {
            return;
        };
        let o = r.unwrap_or_else(|e| panic!("{name}: {e}"));
        let cb = &o.struct_ops[0].callbacks[0];
        assert_eq!(cb.member, "handle_out_of_memory");
        assert_eq!(cb.form, Form::V3Link, "{name}");
    }
}

#[test]
fn newest_form_is_marked_newest() {
    let Some(r) = build(
        "abi_newest",
        "struct bpf_oom_ops { int (*handle_out_of_memory)(struct oom_control *oc, \
         struct cgroup *cgrp); char name[64]; };",
        OOM_PROG,
    ) else {
        return;
    };
    let o = r.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(o.struct_ops[0].callbacks[0].form, Form::Newest);
}

#[test]
fn v3_link_with_another_callback_of_an_unknown_form_is_refused() {
    // Only v3's handle_out_of_memory runs as written; an offline callback
    // of a shape no revision had still stops the load.
    let Some(r) = build(
        "abi_v3_offline",
        "struct bpf_oom_ops { int (*handle_out_of_memory)(struct oom_control *oc, \
         struct bpf_struct_ops_link *st_link); \
         void (*handle_cgroup_offline)(struct task_struct *t); char name[64]; };",
        OOM_PROG,
    ) else {
        return;
    };
    let (form, msg) = mismatch(r);
    assert_eq!(form, "a form bpfoom does not know");
    assert!(
        msg.contains("handle_cgroup_offline(struct task_struct *)"),
        "{msg}"
    );
}

#[test]
fn v2_context_argument_is_named() {
    let Some(r) = build(
        "abi_v2",
        "struct bpf_oom_ops { int (*handle_out_of_memory)(struct bpf_oom_ctx *ctx, \
         struct oom_control *oc); void (*handle_cgroup_offline)(struct bpf_oom_ctx *ctx, \
         u64 cgroup_id); char name[64]; };",
        OOM_PROG,
    ) else {
        return;
    };
    let (form, msg) = mismatch(r);
    assert_eq!(form, "upstream v2 (Oct 2025)");
    assert!(
        msg.contains("handle_out_of_memory(struct bpf_oom_ctx *, struct oom_control *)"),
        "{msg}"
    );
    assert!(
        msg.contains("handle_out_of_memory(struct oom_control *, struct cgroup *)"),
        "{msg}"
    );
    // The message points at the older form bpfoom does run.
    assert!(
        msg.contains(
            "also runs upstream v3 (Jan 2026)'s \
             handle_out_of_memory(struct oom_control *, struct bpf_struct_ops_link *)"
        ),
        "{msg}"
    );
    assert!(msg.contains("bpfoom btf"), "{msg}");
}

#[test]
fn psi_event_without_bpf_psi_is_named() {
    let Some(r) = build(
        "abi_psi_old",
        "struct bpf_psi_ops { int (*init)(struct bpf_psi *psi); \
         void (*handle_psi_event)(struct psi_trigger *t); char name[64]; };",
        "SEC(\"struct_ops.s/init\") int BPF_PROG(i, struct bpf_psi *psi) { return 0; }\n\
         SEC(\"struct_ops.s/handle_psi_event\") void BPF_PROG(e, struct psi_trigger *t) { }\n\
         SEC(\".struct_ops.link\") struct bpf_psi_ops ops = { .init = (void *)i, \
         .handle_psi_event = (void *)e, .name = \"old_psi\" };\n",
    ) else {
        return;
    };
    let (form, msg) = mismatch(r);
    assert!(
        form.contains("without the `struct bpf_psi *` argument"),
        "{form}"
    );
    assert!(
        msg.contains("handle_psi_event(struct psi_trigger *)"),
        "{msg}"
    );
}

#[test]
fn unknown_forms_are_refused_too() {
    let Some(r) = build(
        "abi_unknown",
        "struct bpf_oom_ops { int (*handle_out_of_memory)(struct task_struct *t); char name[64]; };",
        OOM_PROG,
    ) else {
        return;
    };
    assert_eq!(mismatch(r).0, "a form bpfoom does not know");
}

#[test]
fn v1_prefix_form_loads() {
    // handle_out_of_memory(oc): a prefix of bpfoom's (oc, cgrp).
    let Some(r) = build(
        "abi_v1",
        "struct bpf_oom_ops { int (*handle_out_of_memory)(struct oom_control *oc); \
         char name[64]; };",
        OOM_PROG,
    ) else {
        return;
    };
    let o = r.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(o.struct_ops.len(), 1);
    assert_eq!(o.struct_ops[0].callbacks[0].form, Form::Newest);
}
