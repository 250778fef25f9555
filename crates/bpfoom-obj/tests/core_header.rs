//! Every CO-RE query kind a policy can make about `bpf_oom.h`'s types and enums
//! resolves against bpfoom's host BTF: `bpf_core_enum_value`,
//! `bpf_core_enum_value_exists`, `bpf_core_type_exists`, `bpf_core_type_size` and
//! `bpf_core_field_exists`, for every stat/event enum member and every host struct.
#![allow(clippy::unwrap_used)]

mod common;

use bpfoom_abi::stats;
use bpfoom_abi::types::HostTypes;
use bpfoom_obj::{CoreKind, CoreOutcome, Object};

/// The host structs a policy reads (the header declares each of them).
const STRUCTS: &[&str] = &[
    "oom_control",
    "task_struct",
    "cgroup",
    "cgroup_subsys_state",
    "mem_cgroup",
    "signal_struct",
    "kernfs_node",
    "psi_trigger",
    "bpf_psi",
];

/// (enum, members) for every stat and event enum of the header.
fn enums() -> Vec<(&'static str, Vec<&'static stats::StatIndex>)> {
    let node = stats::NR_VM_NODE_STAT_ITEMS as usize;
    vec![
        ("node_stat_item", stats::PAGE_STATE[..node].iter().collect()),
        (
            "memcg_stat_item",
            stats::PAGE_STATE[node..].iter().collect(),
        ),
        ("vm_event_item", stats::VM_EVENTS.iter().collect()),
        ("memcg_memory_event", stats::MEMORY_EVENTS.iter().collect()),
    ]
}

fn compile(name: &str, body: &str) -> Option<Object> {
    let src = format!(
        "#include <bpf_oom.h>\n#include <bpf/bpf_core_read.h>\n\
         char _license[] SEC(\"license\") = \"GPL\";\n\
         u64 out[4096];\n\
         SEC(\"struct_ops.s/handle_out_of_memory\")\n\
         int BPF_PROG(q, struct oom_control *oc, struct cgroup *cgrp)\n{{\n{body}\treturn 0;\n}}\n"
    );
    let bytes = common::compile_source(name, &src)?;
    Some(Object::parse(&bytes).unwrap_or_else(|e| panic!("{name}: {e}")))
}

/// The target value of the relocation of `kind` whose spec is `spec`.
fn target(o: &Object, kind: CoreKind, spec: &str) -> u64 {
    let r = o
        .core_relocs_applied
        .iter()
        .find(|r| r.kind == kind && r.spec == spec)
        .unwrap_or_else(|| panic!("no {kind} {spec}"));
    match r.outcome {
        CoreOutcome::Value { target, .. } => target,
        ref other => panic!("{kind} {spec}: {other:?}"),
    }
}

#[test]
fn every_header_enum_value_resolves_on_the_host() {
    let mut body = String::new();
    let mut i = 0;
    for (e, members) in enums() {
        for m in &members {
            body += &format!(
                "\tout[{i}] = bpf_core_enum_value(enum {e}, {n});\n\
                 \tout[{}] = bpf_core_enum_value_exists(enum {e}, {n});\n",
                i + 1,
                n = m.name
            );
            i += 2;
        }
    }
    let Some(o) = compile("core_header_enums", &body) else {
        return;
    };
    let mut checked = 0;
    for (e, members) in enums() {
        for m in members {
            let spec = format!("{e}::{}", m.name);
            assert_eq!(
                target(&o, CoreKind::EnumvalValue, &spec),
                u64::from(m.value),
                "{spec}"
            );
            assert_eq!(target(&o, CoreKind::EnumvalExists, &spec), 1, "{spec}");
            checked += 1;
        }
    }
    // The newest upstream's pgscan node counters and the memcg swap counter
    // that upstream's systemd-oomd-style selftest reads are among them.
    for name in [
        "PGSCAN_KSWAPD",
        "PGSCAN_DIRECT",
        "PGSCAN_KHUGEPAGED",
        "PGSCAN_PROACTIVE",
    ] {
        assert!(stats::PAGE_STATE[..stats::NR_VM_NODE_STAT_ITEMS as usize]
            .iter()
            .any(|s| s.name == name));
    }
    assert!(checked > 90, "{checked}");
}

#[test]
fn every_host_struct_exists_with_its_size_and_fields() {
    let host = HostTypes::get();
    let mut body = String::new();
    let mut i = 0;
    let mut fields = Vec::new();
    for s in STRUCTS {
        body += &format!(
            "\tout[{i}] = bpf_core_type_exists(struct {s});\n\
             \tout[{}] = bpf_core_type_size(struct {s});\n",
            i + 1
        );
        i += 2;
        for (f, _, _) in host.layout(s).unwrap() {
            body += &format!("\tout[{i}] = bpf_core_field_exists(struct {s}, {f});\n");
            i += 1;
            fields.push((*s, f.to_string()));
        }
    }
    let Some(o) = compile("core_header_structs", &body) else {
        return;
    };
    for s in STRUCTS {
        assert_eq!(target(&o, CoreKind::TypeExists, s), 1, "{s}");
        let size = host.size_of(host.struct_id(s).unwrap()).unwrap();
        assert_eq!(target(&o, CoreKind::TypeSize, s), u64::from(size), "{s}");
    }
    for (s, f) in &fields {
        let spec = format!("{s}.{f}");
        assert_eq!(target(&o, CoreKind::FieldExists, &spec), 1, "{spec}");
    }
}

#[test]
fn absent_types_and_values_report_absent() {
    // A type, a field and an enum value the host does not have: the `_exists`
    // queries resolve to 0 (libbpf's behaviour), so a policy can branch on them.
    let body = "\tout[0] = bpf_core_type_exists(struct bpfoom_no_such_type);\n\
                \tout[1] = bpf_core_field_exists(struct task_struct___new, no_such_field);\n\
                \tout[2] = bpf_core_enum_value_exists(enum node_stat_item___new, NO_SUCH_ITEM);\n";
    let decls = "struct bpfoom_no_such_type { int x; };\n\
                 struct task_struct___new { int no_such_field; } __attribute__((preserve_access_index));\n\
                 enum node_stat_item___new { NO_SUCH_ITEM = 7 };\n";
    let src = format!(
        "#include <bpf_oom.h>\n#include <bpf/bpf_core_read.h>\n{decls}\
         char _license[] SEC(\"license\") = \"GPL\";\nu64 out[4];\n\
         SEC(\"struct_ops.s/handle_out_of_memory\")\n\
         int BPF_PROG(q, struct oom_control *oc, struct cgroup *cgrp)\n{{\n{body}\treturn 0;\n}}\n"
    );
    let Some(bytes) = common::compile_source("core_header_absent", &src) else {
        return;
    };
    let o = Object::parse(&bytes).unwrap_or_else(|e| panic!("{e}"));
    for (kind, spec) in [
        (CoreKind::TypeExists, "bpfoom_no_such_type"),
        (CoreKind::FieldExists, "task_struct___new.no_such_field"),
        (
            CoreKind::EnumvalExists,
            "node_stat_item___new::NO_SUCH_ITEM",
        ),
    ] {
        assert_eq!(target(&o, kind, spec), 0, "{kind} {spec}");
    }
}
