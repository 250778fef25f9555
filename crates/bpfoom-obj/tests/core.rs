//! CO-RE relocations of every kind, resolved against a target layout that differs from the
//! local declarations (tests/fixtures/core_local.bpf.c against core_host.bpf.c).
// Helpers outside #[test] functions panic on broken fixtures too.
#![allow(clippy::unwrap_used)]

mod common;

use bpfoom_insn::opcode as op;
use bpfoom_obj::{
    Btf, CoreKind, CoreOutcome, CoreReloc, ObjError, Object, Target, CORE_POISON_HELPER,
};

fn target_from(host_src: &str) -> Option<Target> {
    let host = common::compile_source("core_host_src", host_src)?;
    Some(Target::new(
        Btf::from_object(&host).expect("host BTF"),
        |_| None,
    ))
}

fn load() -> Option<(Object, Btf)> {
    let host = common::compile_fixture("core_host.bpf.c")?;
    let host_btf = Btf::from_object(&host).expect("host BTF");
    let target = Target::new(host_btf.clone(), |_| None);
    let local = common::compile_fixture("core_local.bpf.c")?;
    let o = Object::parse_with(&local, &target).unwrap_or_else(|e| panic!("core_local: {e}"));
    Some((o, host_btf))
}

fn rec<'a>(o: &'a Object, kind: CoreKind, spec: &str) -> &'a CoreReloc {
    o.core_relocs_applied
        .iter()
        .find(|r| r.kind == kind && r.spec == spec)
        .unwrap_or_else(|| panic!("no {kind} {spec}: {:#?}", o.core_relocs_applied))
}

fn value(r: &CoreReloc) -> (u64, u64) {
    match r.outcome {
        CoreOutcome::Value { local, target } => (local, target),
        ref p => panic!("{} {}: {p:?}", r.kind, r.spec),
    }
}

#[test]
fn field_offsets_are_rewritten_in_loads() {
    let Some((o, _)) = load() else { return };
    let p = &o.programs[0];
    for (spec, local, host) in [
        ("thing.a", 8, 16),
        ("thing.b", 0, 28),
        ("thing.inner", 28, 48),
        ("thing.name[3]", 20, 35),
    ] {
        let r = rec(&o, CoreKind::FieldByteOffset, spec);
        assert_eq!(value(r), (local, host), "{spec}");
        let insn = p.insns[r.insn];
        assert_eq!(op::class(insn.code), op::BPF_LDX, "{spec}");
        assert_eq!(insn.off, host as i16, "{spec}");
        assert_eq!(r.type_name, "thing");
    }
    // A ___flavor type relocates against the plain name.
    let r = rec(&o, CoreKind::FieldByteOffset, "thing___v2.a");
    assert_eq!(value(r), (0, 16));
    assert_eq!(p.insns[r.insn].off, 16);
}

#[test]
fn load_size_follows_a_widened_unsigned_field() {
    let Some((o, _)) = load() else { return };
    let r = rec(&o, CoreKind::FieldByteOffset, "thing.widened");
    assert_eq!(value(r), (32, 56));
    let insn = o.programs[0].insns[r.insn];
    assert_eq!(
        op::size(insn.code),
        op::BPF_DW,
        "u32 load widened to the host's u64: {insn:?}"
    );
}

#[test]
fn field_size_exists_signed_and_bitfields() {
    let Some((o, _)) = load() else { return };
    assert_eq!(
        value(rec(&o, CoreKind::FieldByteSize, "thing.name")),
        (8, 12)
    );
    assert_eq!(value(rec(&o, CoreKind::FieldExists, "thing.gone")), (1, 0));
    assert_eq!(value(rec(&o, CoreKind::FieldSigned, "thing.b")), (1, 1));
    assert_eq!(
        value(rec(&o, CoreKind::FieldByteOffset, "thing.name")).1,
        32
    );
    // mode: host bits 196..203 of the struct; libbpf sizes bitfield storage by the member
    // type (u32 at 24). The local values are clang's (storage sized by record alignment), so
    // only the host side is checked.
    assert_eq!(value(rec(&o, CoreKind::FieldByteSize, "thing.mode")).1, 4);
    assert_eq!(
        value(rec(&o, CoreKind::FieldByteOffset, "thing.mode")).1,
        24
    );
    assert_eq!(
        value(rec(&o, CoreKind::FieldLshiftU64, "thing.mode")).1,
        64 - 11
    );
    assert_eq!(
        value(rec(&o, CoreKind::FieldRshiftU64, "thing.mode")).1,
        64 - 7
    );
    assert_eq!(value(rec(&o, CoreKind::FieldSigned, "thing.mode")), (0, 0));
    // The patched ALU immediates carry the host values.
    let p = &o.programs[0];
    let r = rec(&o, CoreKind::FieldRshiftU64, "thing.mode");
    assert_eq!(p.insns[r.insn].imm, 57);
}

#[test]
fn type_relocations() {
    let Some((o, host)) = load() else { return };
    let local_id = o.btf.find_struct("thing").unwrap();
    let host_id = host.find_struct("thing").unwrap();
    assert_ne!(local_id, host_id, "fixture should make the ids differ");
    assert_eq!(
        value(rec(&o, CoreKind::TypeIdLocal, "thing")),
        (local_id.into(), local_id.into())
    );
    assert_eq!(
        value(rec(&o, CoreKind::TypeIdTarget, "thing")).1,
        u64::from(host_id)
    );
    assert_eq!(value(rec(&o, CoreKind::TypeExists, "absent")), (1, 0));
    assert_eq!(value(rec(&o, CoreKind::TypeExists, "thing")), (1, 1));
    assert_eq!(value(rec(&o, CoreKind::TypeSize, "thing")).1, 64);
}

#[test]
fn enum_value_relocations() {
    let Some((o, _)) = load() else { return };
    assert_eq!(
        value(rec(&o, CoreKind::EnumvalExists, "color::UNKNOWN_COLOR")),
        (1, 0)
    );
    assert_eq!(
        value(rec(&o, CoreKind::EnumvalExists, "color::GREEN")),
        (1, 1)
    );
    let r = rec(&o, CoreKind::EnumvalValue, "color::BLUE");
    assert_eq!(value(r), (2, 12));
    let insn = o.programs[0].insns[r.insn];
    assert_eq!((insn.code, insn.imm), (op::LD_IMM64, 12));
}

#[test]
fn missing_field_access_is_poisoned() {
    let Some((o, _)) = load() else { return };
    let r = rec(&o, CoreKind::FieldByteOffset, "thing.gone");
    assert!(
        matches!(&r.outcome, CoreOutcome::Poisoned { reason } if reason.contains("thing.gone"))
    );
    let insn = o.programs[0].insns[r.insn];
    assert_eq!(
        (insn.code, insn.src, insn.imm),
        (op::CALL, 0, CORE_POISON_HELPER)
    );
    // Poison is not reported as a helper the program uses.
    assert!(!o.programs[0]
        .helpers_used
        .contains(&(CORE_POISON_HELPER as u32)));
}

#[test]
fn type_matches_when_the_compiler_emits_it() {
    let Some((o, _)) = load() else { return };
    if let Some(r) = o
        .core_relocs_applied
        .iter()
        .find(|r| r.kind == CoreKind::TypeMatches)
    {
        assert_eq!(
            value(r).1,
            1,
            "thing___v2 {{ long a; }} matches the host's thing"
        );
    } else {
        eprintln!("note: this clang does not emit TYPE_MATCHES (needs clang >= 15)");
    }
}

#[test]
fn signed_field_size_change_is_an_error() {
    let Some(target) = target_from("struct s { long v; }; struct s host_s;\n") else {
        return;
    };
    let src = "typedef unsigned long long __u64;\n\
               struct s { int v; } __attribute__((preserve_access_index));\n\
               __u64 out;\n\
               __attribute__((section(\"struct_ops/x\"))) int x(unsigned long long *ctx)\n\
               { out = ((struct s *)ctx[0])->v; return 0; }\n";
    let Some(bytes) = common::compile_source("core_signed", src) else {
        return;
    };
    let e = Object::parse_with(&bytes, &target).expect_err("signed int widened to long");
    match &e {
        ObjError::Core {
            section,
            kind,
            access,
            reason,
            ..
        } => {
            assert_eq!(section, "struct_ops/x");
            assert_eq!(kind, "byte_off");
            assert_eq!(access, "0:0");
            assert!(reason.contains("adjust"), "{reason}");
        }
        other => panic!("{other}"),
    }
}

#[test]
fn real_host_resolves_header_types() {
    // bpf_oom.h's local layouts differ from bpfoom-abi's: every access must be rewritten to
    // the host offsets.
    let src = "#include <bpf_oom.h>\n#include <bpf/bpf_core_read.h>\n\
               u64 out[4];\n\
               SEC(\"struct_ops/x\") int BPF_PROG(x, struct oom_control *oc, struct cgroup *cg)\n\
               { out[0] = oc->totalpages; out[1] = cg->kn->id; out[2] = oc->memcg->css.cgroup->level;\n\
                 out[3] = bpf_core_type_size(struct task_struct); return 0; }\n";
    let Some(bytes) = common::compile_source("core_real_host", src) else {
        return;
    };
    let o = Object::parse(&bytes).unwrap_or_else(|e| panic!("{e}"));
    let host = bpfoom_abi::types::HostTypes::get();
    let p = &o.programs[0];
    for (spec, ty, field) in [
        ("oom_control.totalpages", "oom_control", "totalpages"),
        ("cgroup.kn", "cgroup", "kn"),
        ("kernfs_node.id", "kernfs_node", "id"),
        ("mem_cgroup.css.cgroup", "mem_cgroup", "css.cgroup"),
        ("cgroup.level", "cgroup", "level"),
    ] {
        let r = rec(&o, CoreKind::FieldByteOffset, spec);
        let want = host
            .offset_of(ty, field)
            .unwrap_or_else(|| panic!("{ty}.{field} on host"));
        assert_eq!(value(r).1, u64::from(want), "{spec}");
        assert_eq!(p.insns[r.insn].off as u32, want, "{spec}");
    }
    let size = host
        .size_of(host.struct_id("task_struct").unwrap())
        .unwrap();
    assert_eq!(
        value(rec(&o, CoreKind::TypeSize, "task_struct")).1,
        u64::from(size)
    );
}
