//! Upstream v3's `handle_out_of_memory(struct oom_control *oc, struct
//! bpf_struct_ops_link *link)` is verified against v3's prototype, not the
//! newest one: the link is a trusted, read-only kernel object and its
//! `cgroup` (the attach point) a trusted pointer that may be NULL, checked
//! as `oc->memcg` is (issue 14 item 4).
#![allow(clippy::unwrap_used)]

use bpfoom_obj::{Form, Object};
use bpfoom_verifier::{verify_object, Options, ProgramReport, RejectKind, VerifyError};

/// A v3-form policy: the header's `bpf_oom_ops` and `bpf_struct_ops_link`
/// renamed away and v3's declared, as a v3 `vmlinux.h` would.
fn v3_policy(body: &str) -> String {
    format!(
        "#define bpf_oom_ops bpf_oom_ops___bpfoom\n\
         #define bpf_struct_ops_link bpf_struct_ops_link___bpfoom\n\
         #include <bpf_oom.h>\n#undef bpf_oom_ops\n#undef bpf_struct_ops_link\n\
         struct bpf_struct_ops_link {{ __u64 link[8]; void *map; struct cgroup *cgroup; }} \
         __attribute__((preserve_access_index));\n\
         struct bpf_oom_ops {{ int (*handle_out_of_memory)(struct oom_control *oc, \
         struct bpf_struct_ops_link *link); char name[64]; }};\n\
         char _license[] SEC(\"license\") = \"GPL\";\n\
         SEC(\"struct_ops.s/handle_out_of_memory\")\n\
         int BPF_PROG(h, struct oom_control *oc, struct bpf_struct_ops_link *link)\n\
         {{ {body} }}\n\
         SEC(\".struct_ops.link\") struct bpf_oom_ops ops = \
         {{ .handle_out_of_memory = (void *)h, .name = \"v3\" }};\n"
    )
}

fn verify(name: &str, src: &str) -> Option<Result<Vec<ProgramReport>, VerifyError>> {
    if !bpfoom_testutil::require_clang() {
        return None;
    }
    let obj = bpfoom_testutil::compile_str(name, src, &[]).unwrap();
    let obj = Object::parse(&std::fs::read(obj).unwrap()).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(obj.struct_ops[0].callbacks[0].form, Form::V3Link);
    Some(verify_object(&obj, &Options::default()))
}

fn rejected(name: &str, body: &str) -> Option<(RejectKind, String)> {
    let err = verify(name, &v3_policy(body))?.expect_err("must be rejected");
    let r = err.rejection().unwrap_or_else(|| panic!("{err}"));
    Some((r.kind, r.reason.clone()))
}

#[test]
fn link_cgroup_is_read_after_a_null_check() {
    let Some(r) = verify(
        "v3_null_checked",
        &v3_policy(
            "struct cgroup *c = link->cgroup;\n\
             if (!c) return 0;\n\
             return c->level == 0 ? 0 : 0;",
        ),
    ) else {
        return;
    };
    r.unwrap_or_else(|e| panic!("{e}"));
}

#[test]
fn link_cgroup_without_a_null_check_is_rejected() {
    let Some((kind, reason)) = rejected(
        "v3_no_null_check",
        "return link->cgroup->level == 1 ? 1 : 0;",
    ) else {
        return;
    };
    assert_eq!(kind, RejectKind::NullDeref, "{reason}");
    assert!(reason.contains("ptr_or_null_cgroup"), "{reason}");
}

#[test]
fn the_link_is_read_only() {
    let Some((kind, reason)) = rejected("v3_store", "link->cgroup = 0; return 0;") else {
        return;
    };
    assert_eq!(kind, RejectKind::ReadOnly, "{reason}");
    assert!(
        reason.contains("trusted_ptr_bpf_struct_ops_link"),
        "{reason}"
    );
}

#[test]
fn the_link_cgroup_is_trusted_for_kfuncs() {
    // A trusted pointer (after its NULL check) may go where KF_TRUSTED_ARGS
    // / KF_RCU kfuncs want one; a walked one could not.
    let Some(r) = verify(
        "v3_trusted_kfunc",
        &v3_policy(
            "struct cgroup *c = link->cgroup, *a;\n\
             if (!c) return 0;\n\
             a = bpf_cgroup_ancestor(c, 0);\n\
             if (a) bpf_cgroup_release(a);\n\
             return 0;",
        ),
    ) else {
        return;
    };
    r.unwrap_or_else(|e| panic!("{e}"));
}

#[test]
fn a_wrong_core_type_names_the_v3_prototype() {
    // The second argument read as a cgroup: explained against v3's
    // prototype, which is what the program is called with.
    let src = v3_policy("return 0;").replace(
        "int BPF_PROG(h, struct oom_control *oc, struct bpf_struct_ops_link *link)\n{ return 0; }",
        "int BPF_PROG(h, struct oom_control *oc, struct task_struct *t)\n{ return t->mm != 0; }",
    );
    assert!(src.contains("t->mm"));
    let Some(r) = verify("v3_wrong_type", &src) else {
        return;
    };
    let err = r.expect_err("task_struct.mm is not a field of the link");
    let reason = &err.rejection().unwrap().reason;
    assert!(
        reason.contains(
            "int bpf_oom_ops.handle_out_of_memory(struct oom_control *oc, \
             struct bpf_struct_ops_link *link)"
        ),
        "{reason}"
    );
}

#[test]
fn upstream_v3_test_oom_fixture_verifies() {
    let src = bpfoom_testutil::repo_root().join("bpf/policies/tests/upstream/test_oom_v3.bpf.c");
    let Some(obj) = bpfoom_testutil::compile_or_skip(&src, &[]) else {
        return;
    };
    let obj = Object::parse(&std::fs::read(obj).unwrap()).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(obj.struct_ops[0].callbacks[0].form, Form::V3Link);
    let reps = verify_object(&obj, &Options::default()).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(reps.len(), 1);
    assert!(
        reps[0].report.warnings.is_empty(),
        "{:?}",
        reps[0].report.warnings
    );
}
