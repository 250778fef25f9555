//! `bpf/include/bpf_oom.h` and this crate describe the same ABI; keep them equal.

use bpfoom_abi::{kfuncs, stats, types::HostTypes};
use std::collections::HashMap;

fn header() -> String {
    let p = concat!(env!("CARGO_MANIFEST_DIR"), "/../../bpf/include/bpf_oom.h");
    std::fs::read_to_string(p).expect("bpf_oom.h")
}

/// `enum NAME { A = 1, B = 2, };` blocks of the header.
fn header_enums(h: &str) -> HashMap<String, Vec<(String, i64)>> {
    let mut out = HashMap::new();
    let mut rest = h;
    while let Some(i) = rest.find("\nenum ") {
        rest = &rest[i + 6..];
        let Some(open) = rest.find('{') else { break };
        let name = rest[..open].trim().to_string();
        let close = rest.find("};").expect("enum end");
        let body = &rest[open + 1..close];
        let vals = body
            .split(',')
            .filter_map(|item| {
                let item = item.split("/*").next()?.trim();
                let (n, v) = item.split_once('=')?;
                let v = v.trim();
                let v = if let Some(hex) = v.strip_prefix("0x") {
                    i64::from_str_radix(hex, 16).ok()?
                } else {
                    v.parse().ok()?
                };
                Some((n.trim().to_string(), v))
            })
            .collect();
        out.insert(name, vals);
        rest = &rest[close..];
    }
    out
}

#[test]
fn stat_enums_match() {
    let enums = header_enums(&header());
    let mut page: Vec<(String, i64)> = enums["node_stat_item"].clone();
    page.extend(enums["memcg_stat_item"].iter().cloned());
    page.retain(|(n, _)| n != "NR_VM_NODE_STAT_ITEMS" && n != "MEMCG_NR_STAT");
    let want = |t: &[stats::StatIndex]| -> Vec<(String, i64)> {
        t.iter()
            .map(|s| (s.name.to_string(), i64::from(s.value)))
            .collect()
    };
    assert_eq!(page, want(stats::PAGE_STATE));
    let mut ev = enums["vm_event_item"].clone();
    ev.retain(|(n, _)| n != "NR_VM_EVENT_ITEMS");
    assert_eq!(ev, want(stats::VM_EVENTS));
    let mut me = enums["memcg_memory_event"].clone();
    me.retain(|(n, _)| n != "MEMCG_NR_MEMORY_EVENTS");
    assert_eq!(me, want(stats::MEMORY_EVENTS));
    let psi: Vec<_> = enums["psi_res"]
        .iter()
        .filter(|(n, _)| n != "NR_PSI_RESOURCES")
        .cloned()
        .collect();
    let want_psi: Vec<_> = stats::PSI_RESOURCES
        .iter()
        .map(|&(n, v, _)| (n.to_string(), i64::from(v)))
        .collect();
    assert_eq!(psi, want_psi);
    let oc: Vec<_> = stats::OOM_CONSTRAINTS
        .iter()
        .map(|&(n, v)| (n.to_string(), i64::from(v)))
        .collect();
    assert_eq!(enums["oom_constraint"], oc);
}

#[test]
fn every_kfunc_is_declared() {
    let h = header();
    for k in kfuncs::KFUNCS {
        let decl = format!("{}(", k.name);
        // The declaration is the mention on a line starting with `extern`.
        let line_of = |i: usize| &h[h[..i].rfind('\n').map_or(0, |j| j + 1)..i];
        let at = h
            .match_indices(&decl)
            .map(|(i, _)| i)
            .find(|&i| {
                line_of(i).starts_with("extern ")
                    && matches!(line_of(i).chars().last(), Some(' ' | '*'))
            })
            .unwrap_or_else(|| panic!("{} not declared extern", k.name));
        let end = at + h[at..].find(';').unwrap();
        assert!(h[at..end].contains("__ksym"), "{} lacks __ksym", k.name);
        for (pname, _) in k.params {
            assert!(h[at..end].contains(pname), "{}: parameter {pname}", k.name);
        }
    }
}

#[test]
fn every_host_struct_member_is_declared() {
    let h = header();
    let host = HostTypes::get();
    for name in [
        "oom_control",
        "task_struct",
        "cgroup",
        "cgroup_subsys_state",
        "mem_cgroup",
        "signal_struct",
        "kernfs_node",
        "psi_trigger",
        "bpf_psi",
        "bpf_oom_ops",
        "bpf_psi_ops",
    ] {
        let start = h
            .find(&format!("\nstruct {name} {{"))
            .unwrap_or_else(|| panic!("{name}"));
        let body = &h[start..start + h[start..].find("\n};").unwrap()];
        for (field, _, _) in host.layout(name).unwrap() {
            assert!(
                body.contains(&format!("{field};"))
                    || body.contains(&format!("{field}["))
                    || body.contains(&format!("(*{field})")),
                "{name}.{field}"
            );
        }
    }
}

#[test]
fn return_codes_match() {
    let h = header();
    for (n, v) in [
        ("BPF_OOM_FAILED", bpfoom_abi::BPF_OOM_FAILED),
        ("BPF_OOM_PROCESSED", bpfoom_abi::BPF_OOM_PROCESSED),
        ("BPF_OOM_BACKOFF", bpfoom_abi::BPF_OOM_BACKOFF),
    ] {
        assert!(h.contains(&format!("#define {n} {v}\n")), "{n}");
    }
    assert!(h.contains("#define BPF_PSI_FULL 0x80000000U"));
}
