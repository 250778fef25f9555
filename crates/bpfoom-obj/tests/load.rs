//! Loading tests/fixtures/basic.bpf.c: every section kind and non-CO-RE relocation kind.
// Helpers outside #[test] functions panic on broken fixtures too.
#![allow(clippy::unwrap_used)]

mod common;

use bpfoom_insn::opcode as op;
use bpfoom_obj::{MapKind, ObjError, Object, Program, KFUNC_POISON_BASE};

fn basic() -> Option<Object> {
    let bytes = common::compile_fixture("basic.bpf.c")?;
    Some(Object::parse(&bytes).unwrap_or_else(|e| panic!("basic.bpf.c: {e}")))
}

/// Index of the first instruction whose line-info source contains `needle`.
fn insn_on_line(p: &Program, needle: &str) -> usize {
    p.line_info
        .iter()
        .find(|l| l.source.contains(needle))
        .unwrap_or_else(|| panic!("no line info containing {needle:?} in {}", p.name))
        .insn
}

#[test]
fn license_programs_and_sleepable_flag() {
    let Some(o) = basic() else { return };
    assert_eq!(o.license, "GPL");
    let names: Vec<_> = o
        .programs
        .iter()
        .map(|p| (p.name.as_str(), p.sleepable))
        .collect();
    assert_eq!(names, [("handle_oom", true), ("offline", false)]);
    let p = o.program("handle_oom").unwrap();
    assert_eq!(p.section, "struct_ops.s/handle_out_of_memory");
    // The program's own BTF prototype: (u64 *ctx) after BPF_PROG, returning int.
    let (ret, params) = o.btf.func_proto(p.func_btf_id.unwrap()).unwrap();
    assert_eq!(o.btf.type_by_id(ret).unwrap().name, "int");
    assert_eq!(params.len(), 1);
    assert_eq!(params[0].name, "ctx");
}

#[test]
fn btf_maps_of_every_type() {
    let Some(o) = basic() else { return };
    let get = |n: &str| o.map(n).unwrap_or_else(|| panic!("map {n}")).1;
    let h = get("hashmap");
    assert_eq!(
        (h.kind, h.key_size, h.value_size, h.max_entries),
        (MapKind::Hash, 4, 8, 16)
    );
    assert_eq!(o.btf.type_by_id(h.key_type.unwrap()).unwrap().name, "__u32");
    let a = get("arraymap");
    assert_eq!(
        (a.kind, a.key_size, a.value_size, a.max_entries),
        (MapKind::Array, 4, 24, 4)
    );
    assert_eq!(a.value_type, None);
    let p = get("pcpu");
    assert_eq!(
        (p.kind, p.key_size, p.value_size),
        (MapKind::PercpuArray, 4, 16)
    );
    assert_eq!(o.btf.type_by_id(p.value_type.unwrap()).unwrap().name, "val");
    let l = get("lru");
    assert_eq!(
        (l.kind, l.key_size, l.value_size, l.max_entries),
        (MapKind::LruHash, 8, 4, 128)
    );
    let r = get("events");
    assert_eq!(
        (r.kind, r.key_size, r.value_size, r.max_entries),
        (MapKind::Ringbuf, 0, 0, 16384)
    );
}

#[test]
fn global_data_sections_are_single_entry_arrays() {
    let Some(o) = basic() else { return };
    for (name, ro, size) in [
        (".data", false, 4),
        (".rodata", true, 13),
        (".data.tuned", false, 8),
        (".bss", false, 8),
    ] {
        let m = o.map(name).unwrap_or_else(|| panic!("map {name}")).1;
        assert_eq!(
            (m.kind, m.key_size, m.max_entries, m.readonly),
            (MapKind::Array, 4, 1, ro),
            "{name}"
        );
        assert_eq!(m.value_size, size, "{name}");
        assert_eq!(m.initial.as_ref().unwrap().len(), size as usize, "{name}");
        assert!(m.value_type.is_some(), "{name} has a DATASEC");
    }
    assert_eq!(
        o.map(".data").unwrap().1.initial.as_deref(),
        Some(&3i32.to_le_bytes()[..])
    );
    assert_eq!(
        o.map(".data.tuned").unwrap().1.initial.as_deref(),
        Some(&11u64.to_le_bytes()[..])
    );
    assert_eq!(
        o.map(".bss").unwrap().1.initial.as_deref(),
        Some(&[0u8; 8][..])
    );
    // String literals: the .rodata.str1.1 section clang emits.
    let s = o
        .maps
        .iter()
        .find(|m| m.name.starts_with(".rodata.str"))
        .expect("string section map");
    assert!(s.readonly);
    let text = String::from_utf8_lossy(s.initial.as_ref().unwrap()).into_owned();
    assert!(text.contains("killed by basic"), "{text:?}");
}

#[test]
fn map_references_in_ld_imm64() {
    let Some(o) = basic() else { return };
    let p = o.program("handle_oom").unwrap();
    let idx = |n: &str| o.map(n).unwrap().0 as i32;
    let lds: Vec<_> = p
        .insns
        .iter()
        .enumerate()
        .filter(|(_, i)| i.code == op::LD_IMM64)
        .map(|(n, i)| (n, i.src, i.imm, p.insns[n + 1].imm))
        .collect();
    // &hashmap: map fd form, on the line that uses it.
    let lookup = insn_on_line(p, "bpf_map_lookup_elem(&hashmap");
    assert!(
        lds.iter().any(|&(n, s, i, o2)| n >= lookup
            && s == op::BPF_PSEUDO_MAP_FD
            && i == idx("hashmap")
            && o2 == 0),
        "{lds:?}"
    );
    // Globals: map value form with the variable's offset.
    let has = |src, map: &str, off| {
        lds.iter()
            .any(|&(_, s, i, o2)| s == src && i == idx(map) && o2 == off)
    };
    assert!(has(op::BPF_PSEUDO_MAP_VALUE, ".bss", 0), "{lds:?}");
    assert!(
        has(op::BPF_PSEUDO_MAP_VALUE, ".rodata", 0),
        "cfg at .rodata+0: {lds:?}"
    );
    assert!(has(op::BPF_PSEUDO_MAP_VALUE, ".data.tuned", 0), "{lds:?}");
    // bpf_printk's format lives after `cfg` in .rodata: a section-symbol relocation whose
    // addend is the instruction's own imm.
    assert!(has(op::BPF_PSEUDO_MAP_VALUE, ".rodata", 4), "{lds:?}");
    let str_map = o
        .maps
        .iter()
        .position(|m| m.name.starts_with(".rodata.str"))
        .unwrap() as i32;
    assert!(lds
        .iter()
        .any(|&(_, s, i, _)| s == op::BPF_PSEUDO_MAP_VALUE && i == str_map));
    // Every ld_imm64 in the program was relocated or is a plain/func constant.
    for (n, s, _, _) in &lds {
        assert!(
            [
                op::BPF_PSEUDO_MAP_FD,
                op::BPF_PSEUDO_MAP_VALUE,
                op::BPF_PSEUDO_FUNC,
                0
            ]
            .contains(s),
            "insn {n}"
        );
    }
    let off = o.program("offline").unwrap();
    assert!(off.insns.iter().any(|i| i.code == op::LD_IMM64
        && i.src == op::BPF_PSEUDO_MAP_FD
        && i.imm == idx("events")));
    assert!(off
        .insns
        .iter()
        .any(|i| i.code == op::LD_IMM64 && i.src == op::BPF_PSEUDO_MAP_FD && i.imm == idx("pcpu")));
}

#[test]
fn kfuncs_resolved_by_name_and_helpers_listed() {
    let Some(o) = basic() else { return };
    let p = o.program("handle_oom").unwrap();
    let names: Vec<_> = p.kfuncs_used.iter().map(|k| k.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "bpf_get_root_mem_cgroup",
            "bpf_mem_cgroup_usage",
            "bpf_put_mem_cgroup",
            "bpf_oom_kill_process"
        ]
    );
    for k in &p.kfuncs_used {
        let id = bpfoom_abi::kfuncs::by_name(&k.name).unwrap().id;
        assert_eq!(k.id, id);
        assert!(p.insns.iter().any(|i| i.code == op::CALL
            && i.src == op::BPF_PSEUDO_KFUNC_CALL
            && i.imm == id as i32));
    }
    // map_lookup_elem, trace_printk, loop.
    assert_eq!(p.helpers_used, [1, 6, 181]);
    assert_eq!(o.program("offline").unwrap().helpers_used, [1, 130]);
    assert!(o.program("offline").unwrap().kfuncs_used.is_empty());
}

#[test]
fn weak_unknown_kfunc_is_poisoned_not_an_error() {
    let Some(o) = basic() else { return };
    let p = o.program("handle_oom").unwrap();
    let call = insn_on_line(p, "bpf_not_on_this_host();");
    let c = p.insns[call];
    assert_eq!((c.code, c.src), (op::CALL, 0));
    assert!(c.imm >= KFUNC_POISON_BASE, "{c:?}");
    // bpf_ksym_exists() of it loads 0, so the guarded call is dead code.
    let guard = insn_on_line(p, "bpf_ksym_exists");
    let ld = p.insns[guard];
    assert_eq!(
        (ld.code, ld.src, ld.imm, p.insns[guard + 1].imm),
        (op::LD_IMM64, 0, 0, 0)
    );
    assert!(!p.helpers_used.contains(&(c.imm as u32)));
}

/// Resolved target of the call or function reference at `pc`.
fn target(p: &Program, pc: usize) -> usize {
    (pc as i64 + i64::from(p.insns[pc].imm) + 1) as usize
}

#[test]
fn subprograms_appended_once_and_calls_fixed_up() {
    let Some(o) = basic() else { return };
    for p in &o.programs {
        let starts: Vec<_> = p.func_info.iter().map(|f| f.insn).collect();
        let names: Vec<_> = p.func_info.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(starts[0], 0);
        // Each subprogram appears once even though sub() and leaf() are called from both programs.
        let mut uniq = names.clone();
        uniq.sort_unstable();
        uniq.dedup();
        assert_eq!(uniq.len(), names.len(), "{names:?}");
        for (pc, i) in p.insns.iter().enumerate() {
            if i.code == op::CALL && i.src == op::BPF_PSEUDO_CALL {
                assert!(starts.contains(&target(p, pc)), "{}: call at {pc}", p.name);
            }
        }
        assert!(
            names.contains(&"sub") && names.contains(&"leaf"),
            "{names:?}"
        );
        for f in &p.func_info[1..] {
            assert!(f.type_id.is_some(), "func info for {}", f.name);
        }
    }
    let p = o.program("handle_oom").unwrap();
    let sub_call = insn_on_line(p, "return sub(oc->order)");
    let call = (sub_call..p.insns.len())
        .find(|&i| p.insns[i].code == op::CALL && p.insns[i].src == op::BPF_PSEUDO_CALL)
        .unwrap();
    assert_eq!(p.func_at(target(p, call)).unwrap().name, "sub");
    // sub() calls leaf(), both appended.
    let sub_start = target(p, call);
    let inner = (sub_start..p.insns.len())
        .find(|&i| p.insns[i].code == op::CALL && p.insns[i].src == op::BPF_PSEUDO_CALL)
        .unwrap();
    assert_eq!(p.func_at(target(p, inner)).unwrap().name, "leaf");
    // The global in leaf() was relocated inside the appended copy too.
    let leaf = p.func_info.iter().find(|f| f.name == "leaf").unwrap().insn;
    assert_eq!(p.insns[leaf].src, op::BPF_PSEUDO_MAP_VALUE);
}

#[test]
fn callback_address_is_pseudo_func() {
    let Some(o) = basic() else { return };
    let p = o.program("handle_oom").unwrap();
    let pc = p
        .insns
        .iter()
        .position(|i| i.code == op::LD_IMM64 && i.src == op::BPF_PSEUDO_FUNC)
        .expect("bpf_loop callback reference");
    assert_eq!(p.func_at(target(p, pc)).unwrap().name, "loop_cb");
    assert_eq!(p.func_at(target(p, pc)).unwrap().insn, target(p, pc));
}

#[test]
fn struct_ops_instances_in_both_sections() {
    let Some(o) = basic() else { return };
    assert_eq!(o.struct_ops.len(), 2);
    let link = &o.struct_ops[0];
    assert_eq!(
        (link.var.as_str(), link.section.as_str(), link.link),
        ("basic_ops", ".struct_ops.link", true)
    );
    assert_eq!(link.type_name, "bpf_oom_ops");
    assert_eq!(link.name.as_deref(), Some("basic"));
    let cbs: Vec<_> = link
        .callbacks
        .iter()
        .map(|c| (c.member.as_str(), c.program_name.as_str()))
        .collect();
    assert_eq!(
        cbs,
        [
            ("handle_out_of_memory", "handle_oom"),
            ("handle_cgroup_offline", "offline")
        ]
    );
    for c in &link.callbacks {
        assert_eq!(o.programs[c.program].name, c.program_name);
    }
    let plain = &o.struct_ops[1];
    assert_eq!(
        (plain.var.as_str(), plain.link, plain.name.as_deref()),
        ("plain_ops", false, Some("plain"))
    );
    assert_eq!(plain.callbacks.len(), 1);
    // The struct type is the object's own BTF struct, with the host's member names.
    let st = o.btf.type_by_id(link.type_id).unwrap();
    let members: Vec<_> = st
        .kind
        .members()
        .unwrap()
        .iter()
        .map(|m| m.name.as_str())
        .collect();
    assert_eq!(
        members,
        ["handle_out_of_memory", "handle_cgroup_offline", "name"]
    );
}

#[test]
fn line_info_points_at_source() {
    let Some(o) = basic() else { return };
    let p = o.program("handle_oom").unwrap();
    assert!(p.line_info.windows(2).all(|w| w[0].insn <= w[1].insn));
    let l = p
        .line_at(insn_on_line(p, "bpf_map_lookup_elem(&hashmap"))
        .unwrap();
    assert!(l.file.ends_with("basic.bpf.c"), "{}", l.file);
    assert!(l.line > 0 && l.column > 0);
    // Appended subprogram lines are mapped to their new indexes.
    let leaf = p.func_info.iter().find(|f| f.name == "leaf").unwrap().insn;
    assert_eq!(p.line_at(leaf).unwrap().source, "return x + counter;");
    // Every instruction of the program body has a line.
    assert!((0..p.insns.len()).all(|i| p.line_at(i).is_some()));
}

#[test]
fn core_relocations_against_host_layout() {
    let Some(o) = basic() else { return };
    let host = bpfoom_abi::types::HostTypes::get();
    let p = o.program("handle_oom").unwrap();
    let recs: Vec<_> = o
        .core_relocs_applied
        .iter()
        .filter(|r| r.section == p.section)
        .collect();
    for spec in [
        "oom_control.totalpages",
        "cgroup.level",
        "oom_control.order",
    ] {
        let r = recs
            .iter()
            .find(|r| r.spec == spec)
            .unwrap_or_else(|| panic!("{spec}: {recs:?}"));
        let (ty, field) = spec.split_once('.').unwrap();
        let want = host.offset_of(ty, field).unwrap();
        assert_eq!(p.insns[r.insn].off as u32, want, "{spec}");
        // The program-level index of the same relocation.
        let k = o
            .core_relocs_applied
            .iter()
            .position(|x| std::ptr::eq(x, *r))
            .unwrap();
        assert!(
            p.core_relocs.contains(&(r.insn, k)),
            "{spec}: {:?}",
            p.core_relocs
        );
    }
    assert_eq!(p.core_relocs.len(), recs.len());
}

fn expect_err(name: &str, src: &str) -> Option<ObjError> {
    let bytes = common::compile_source(name, src)?;
    Some(Object::parse(&bytes).expect_err(name))
}

const PRELUDE: &str = "#include <bpf_oom.h>\nchar LICENSE[] SEC(\"license\") = \"GPL\";\n";

#[test]
fn unknown_kfunc_is_named() {
    let src = format!(
        "{PRELUDE}extern int bpf_no_such_kfunc(void) __ksym;\n\
         SEC(\"struct_ops/x\") int x(void *ctx) {{ return bpf_no_such_kfunc(); }}\n"
    );
    let Some(e) = expect_err("unknown_kfunc", &src) else {
        return;
    };
    match &e {
        ObjError::UnknownKfunc { name, section, .. } => {
            assert_eq!(name, "bpf_no_such_kfunc");
            assert_eq!(section, "struct_ops/x");
        }
        other => panic!("{other}"),
    }
    assert!(e.to_string().contains("bpf_no_such_kfunc"));
}

#[test]
fn unknown_program_section_is_rejected() {
    let src = format!("{PRELUDE}SEC(\"kprobe/foo\") int x(void *ctx) {{ return 0; }}\n");
    let Some(e) = expect_err("kprobe", &src) else {
        return;
    };
    assert!(
        matches!(&e, ObjError::UnsupportedSection { section, .. } if section == "kprobe/foo"),
        "{e}"
    );
}

#[test]
fn unsupported_map_type_is_named() {
    let src = format!(
        "{PRELUDE}struct {{ __uint(type, 12); __uint(max_entries, 4); __type(key, int); __type(value, int); }} pa SEC(\".maps\");\n"
    );
    let Some(e) = expect_err("maptype", &src) else {
        return;
    };
    assert!(
        matches!(&e, ObjError::Map { map, reason } if map == "pa" && reason.contains("12")),
        "{e}"
    );
}

#[test]
fn struct_ops_pointing_at_a_non_program_is_rejected() {
    let src = format!(
        "{PRELUDE}static __attribute__((noinline)) int helper(void) {{ return 1; }}\n\
         SEC(\"struct_ops/x\") int x(void *ctx) {{ return helper(); }}\n\
         SEC(\".struct_ops.link\") struct bpf_oom_ops ops = {{ .handle_out_of_memory = (void *)helper }};\n"
    );
    let Some(e) = expect_err("badops", &src) else {
        return;
    };
    assert!(
        matches!(&e, ObjError::StructOps { var, .. } if var == "ops"),
        "{e}"
    );
}

#[test]
fn global_subprogram_and_resolved_ksym_exists() {
    let src = format!(
        "{PRELUDE}extern struct task_struct *bpf_task_from_pid(s32 pid) __ksym __weak;\n\
         __attribute__((noinline)) int global_sub(int x) {{ return x * 3; }}\n\
         SEC(\"struct_ops/x\") int x(void *ctx) {{\n\
           if (!bpf_task_from_pid) return 1;\n\
           return global_sub(2);\n\
         }}\n"
    );
    let Some(bytes) = common::compile_source("global_sub", &src) else {
        return;
    };
    let o = Object::parse(&bytes).unwrap_or_else(|e| panic!("{e}"));
    let p = o.program("x").unwrap();
    let call = p
        .insns
        .iter()
        .position(|i| i.code == op::CALL && i.src == op::BPF_PSEUDO_CALL)
        .expect("call to global_sub");
    assert_eq!(p.func_at(target(p, call)).unwrap().name, "global_sub");
    assert_eq!(p.func_at(target(p, call)).unwrap().insn, target(p, call));
    let id = bpfoom_abi::kfuncs::by_name("bpf_task_from_pid").unwrap().id;
    let ld = p.insns.iter().position(|i| i.code == op::LD_IMM64).unwrap();
    assert_eq!(
        (p.insns[ld].src, p.insns[ld].imm),
        (op::BPF_PSEUDO_BTF_ID, id as i32)
    );
    assert_eq!(p.kfuncs_used.len(), 1);
}
