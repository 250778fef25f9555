//! Every example policy in bpf/policies/ loads: its struct_ops callbacks are found and match
//! bpfoom-abi's descriptions, and the kfuncs its source calls are resolved.
// Helpers outside #[test] functions panic on broken fixtures too.
#![allow(clippy::unwrap_used)]

mod common;

use bpfoom_obj::Object;
use std::collections::BTreeSet;

/// Kfunc names the C source refers to: identifiers the host table knows, plus the three
/// iterator kfuncs behind each `bpf_for_each(TYPE, ...)`.
fn kfuncs_in_source(src: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for part in src.split("bpf_for_each(").skip(1) {
        let ty = part.split(',').next().unwrap().trim();
        for op in ["new", "next", "destroy"] {
            out.insert(format!("bpf_iter_{ty}_{op}"));
        }
    }
    let b = src.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i].is_ascii_alphabetic() || b[i] == b'_' {
            let start = i;
            while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_') {
                i += 1;
            }
            let word = &src[start..i];
            if bpfoom_abi::kfuncs::by_name(word).is_some() {
                out.insert(word.to_string());
            }
        } else {
            i += 1;
        }
    }
    out
}

#[test]
fn example_policies_load() {
    let sources = bpfoom_testutil::policy_sources();
    assert!(
        sources.len() >= 3,
        "expected at least three example policies"
    );
    for path in sources {
        let Some(bytes) = common::compile_file(&path) else {
            return;
        };
        let file = path.file_name().unwrap().to_string_lossy().into_owned();
        let o = Object::parse(&bytes).unwrap_or_else(|e| panic!("{file}: {e}"));
        let src = std::fs::read_to_string(&path).unwrap();
        assert_eq!(o.license, "GPL", "{file}");
        assert!(!o.struct_ops.is_empty(), "{file}: no struct_ops instance");
        let mut referenced = BTreeSet::new();
        for inst in &o.struct_ops {
            let ops = bpfoom_abi::struct_ops::by_name(&inst.type_name)
                .unwrap_or_else(|| panic!("{file}: unknown struct_ops type {}", inst.type_name));
            let name = inst
                .name
                .as_deref()
                .unwrap_or_else(|| panic!("{file}: no name"));
            assert!(
                src.contains(&format!(".name = \"{name}\"")),
                "{file}: name {name}"
            );
            for cb in ops.callbacks.iter().filter(|c| c.mandatory) {
                assert!(
                    inst.callbacks.iter().any(|c| c.member == cb.name),
                    "{file}: mandatory callback {} missing",
                    cb.name
                );
            }
            for c in &inst.callbacks {
                assert!(
                    ops.callback(&c.member).is_some(),
                    "{file}: {} is not a callback",
                    c.member
                );
                assert!(
                    src.contains(&format!(".{} = (void *){}", c.member, c.program_name)),
                    "{file}: {} -> {}",
                    c.member,
                    c.program_name
                );
                referenced.insert(c.program);
            }
        }
        assert_eq!(
            referenced.len(),
            o.programs.len(),
            "{file}: unreferenced programs"
        );
        let used: BTreeSet<String> = o
            .programs
            .iter()
            .flat_map(|p| p.kfuncs_used.iter().map(|k| k.name.clone()))
            .collect();
        assert_eq!(used, kfuncs_in_source(&src), "{file}: kfuncs");
        for p in &o.programs {
            assert!(!p.insns.is_empty());
            assert!(
                p.line_info.iter().all(|l| l.file.ends_with(&file)),
                "{file}: {}",
                p.name
            );
            assert!(
                p.func_btf_id.is_some(),
                "{file}: {} has no BTF func",
                p.name
            );
        }
        if file == "largest_leaf.bpf.c" {
            for k in [
                "bpf_oom_kill_process",
                "bpf_iter_css_new",
                "bpf_mem_cgroup_page_state",
            ] {
                assert!(used.contains(k), "largest_leaf uses {k}");
            }
            assert!(
                o.core_relocs_applied
                    .iter()
                    .any(|r| r.spec == "signal_struct.oom_score_adj"),
                "task->signal->oom_score_adj is a CO-RE access"
            );
        }
    }
}
