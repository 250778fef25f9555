//! C programs compiled by clang -O2 (the code shapes real policies produce),
//! loaded with bpfoom-obj, each with its expected verdict and reason.

mod common;

use bpfoom_obj::Object;
use bpfoom_verifier::{verify_object, Options, RejectKind, RejectKind::*, VerifyError};
use common::Expect;

const A: Expect = Expect::Accept;
const fn no(k: RejectKind, s: &'static str) -> Expect {
    Expect::Reject(k, s)
}

/// A `handle_out_of_memory` policy: `decls` at file scope, `body` as the handler.
fn oom(sleepable: bool, decls: &str, body: &str) -> String {
    let sec = if sleepable {
        "struct_ops.s"
    } else {
        "struct_ops"
    };
    format!(
        "#include <bpf_oom.h>\nchar _license[] SEC(\"license\") = \"GPL\";\n{decls}\n\
         SEC(\"{sec}/handle_out_of_memory\")\n\
         int BPF_PROG(test_oom, struct oom_control *oc, struct cgroup *cgrp)\n{{\n{body}\n}}\n\
         SEC(\".struct_ops.link\")\n\
         struct bpf_oom_ops test_ops = {{ .handle_out_of_memory = (void *)test_oom, .name = \"t\" }};\n"
    )
}

const ARRAY_MAP: &str = "struct big { u64 v[16]; u32 n; };
struct { __uint(type, BPF_MAP_TYPE_ARRAY); __uint(max_entries, 4); __type(key, u32); __type(value, struct big); } arr SEC(\".maps\");";

fn cases() -> Vec<(&'static str, String, Expect)> {
    vec![
        ("read_fields", oom(true, "", "return oc->order > 0 && oc->totalpages > 100 ? 1 : 0;"), A),
        ("memcg_checked", oom(true, "", "struct mem_cgroup *m = oc->memcg; if (!m) return 0; return m->oom_group ? 1 : 0;"), A),
        ("memcg_unchecked", oom(true, "", "return oc->memcg->oom_group ? 1 : 0;"), no(NullDeref, "may be NULL")),
        ("write_memory_freed", oom(true, "", "oc->bpf_memory_freed = 1; return 1;"), no(ReadOnly, "only read is supported")),
        ("oc_plus_one", oom(true, "", "return (oc + 1)->bpf_memory_freed ? 1 : 0;"), no(InvalidMemAccess, "access beyond struct oom_control")),
        ("walk_without_null_check", oom(true, "", "struct task_struct *t = oc->chosen; return t->signal->oom_score_adj == -1000 ? 1 : 0;"), A),
        ("return_out_of_range", oom(true, "", "return oc->order + 5;"), no(ReturnValue, "should have been in [0, 2]")),
        ("return_clamped", oom(true, "", "int o = oc->order; if (o < 0 || o > 2) return 0; return o;"), A),
        ("root_memcg_leak", oom(true, "", "struct mem_cgroup *m = bpf_get_root_mem_cgroup(); if (!m) return 0; return bpf_mem_cgroup_usage(m) > 4096 ? 1 : 0;"), no(Reference, "Unreleased reference")),
        ("root_memcg_released", oom(true, "", "struct mem_cgroup *m = bpf_get_root_mem_cgroup(); unsigned long u; if (!m) return 0; u = bpf_mem_cgroup_usage(m); bpf_put_mem_cgroup(m); return u > 4096 ? 1 : 0;"), A),
        ("use_after_release", oom(true, "", "struct mem_cgroup *m = bpf_get_root_mem_cgroup(); if (!m) return 0; bpf_put_mem_cgroup(m); return m->oom_group ? 1 : 0;"), no(InvalidMemAccess, "invalid mem access 'scalar'")),
        ("kill_not_sleepable", oom(false, "", "struct task_struct *t = bpf_task_from_pid(1); if (!t) return 0; bpf_oom_kill_process(oc, t, \"x\"); bpf_task_release(t); return 1;"), no(Sleepable, "must be sleepable")),
        ("kill_acquired", oom(true, "", "struct task_struct *t = bpf_task_from_pid(1); int r; if (!t) return 0; r = bpf_oom_kill_process(oc, t, \"bpfoom test\"); bpf_task_release(t); return r ? 0 : 1;"), A),
        ("kill_walked_task", oom(true, "", "return bpf_oom_kill_process(oc, oc->chosen, \"x\") ? 0 : 1;"), no(Trust, "must be referenced or trusted")),
        ("psi_kfunc_in_oom", oom(true, "", "bpf_out_of_memory(NULL, 0, 0, NULL); return 0;"), no(Scope, "not allowed in bpf_oom_ops")),
        ("map_array_loop", oom(true, ARRAY_MAP, "u32 k = 0; u64 s = 0; struct big *b = bpf_map_lookup_elem(&arr, &k); if (!b) return 0; for (int i = 0; i < 16; i++) s += b->v[i]; return s > 10 ? 1 : 0;"), A),
        ("map_subreg_index", oom(true, ARRAY_MAP, "u32 k = 0; struct big *b = bpf_map_lookup_elem(&arr, &k); u32 i; if (!b) return 0; i = b->n; if (i < 16) return b->v[i] > 5 ? 1 : 0; return 0;"), A),
        ("map_index_unchecked", oom(true, ARRAY_MAP, "u32 k = 0; struct big *b = bpf_map_lookup_elem(&arr, &k); if (!b) return 0; return b->v[b->n] > 5 ? 1 : 0;"), no(PointerArith, "unbounded")),
        ("map_index_off_by_one", oom(true, ARRAY_MAP, "u32 k = 0; struct big *b = bpf_map_lookup_elem(&arr, &k); u32 i; if (!b) return 0; i = b->n; if (i <= 17) return b->v[i] > 5 ? 1 : 0; return 0;"), no(InvalidMemAccess, "value_size=136")),
        ("bounded_pointer_spilled_across_calls", oom(true, ARRAY_MAP, "u32 k = 0; struct big *b = bpf_map_lookup_elem(&arr, &k); u64 i, a, c, d, e; if (!b) return 0; i = b->n; if (i >= 16) return 0; a = bpf_ktime_get_ns(); c = bpf_ktime_get_ns(); d = bpf_ktime_get_ns(); e = bpf_ktime_get_ns(); b->v[i] = a ^ c; b->v[(i + 1) & 15] = d ^ e; b->v[(i * 3) & 15] = a + e; return 0;"), A),
        ("spilled_pointer_off_by_one", oom(true, ARRAY_MAP, "u32 k = 0; struct big *b = bpf_map_lookup_elem(&arr, &k); u64 i, a, c, d, e; if (!b) return 0; i = b->n; if (i > 17) return 0; a = bpf_ktime_get_ns(); c = bpf_ktime_get_ns(); d = bpf_ktime_get_ns(); e = bpf_ktime_get_ns(); b->v[i] = a ^ c; b->v[(i + 1) & 15] = d ^ e; b->v[(i * 3) & 15] = a + e; return 0;"), no(InvalidMemAccess, "value_size=136")),
        ("iter_in_rcu_kills", oom(true, "", "struct task_struct *t; int r = 0; bpf_rcu_read_lock(); bpf_for_each(css_task, t, &cgrp->self, CSS_TASK_ITER_PROCS) { struct task_struct *a = bpf_task_acquire(t); if (!a) continue; bpf_oom_kill_process(oc, a, \"x\"); bpf_task_release(a); } bpf_rcu_read_unlock(); return r;"), no(Sleepable, "rcu_read_lock region")),
        ("iter_count_tasks", oom(true, "", "struct task_struct *t; u32 n = 0; bpf_for_each(css_task, t, &cgrp->self, CSS_TASK_ITER_PROCS) { if (t->pid > 1) n++; } return n > 3 ? 1 : 0;"),
         // Linux rejects it too (1M insns): the counter decides the branch after
         // the loop, so it is precise and never widened (parity twin iter_css_task_count).
         no(TooComplex, "BPF program is too large. Processed 1000001 insn")),
        ("css_iter_needs_rcu", oom(true, "", "struct cgroup_subsys_state *p; int n = 0; bpf_for_each(css, p, &cgrp->self, BPF_CGROUP_ITER_DESCENDANTS_PRE) { n++; } return n > 1;"), no(Rcu, "requires RCU critical section")),
        ("rcu_css_to_task_iter", oom(true, "", "struct cgroup_subsys_state *p; struct task_struct *t; int n = 0; bpf_rcu_read_lock(); bpf_for_each(css, p, &cgrp->self, BPF_CGROUP_ITER_DESCENDANTS_PRE) { bpf_for_each(css_task, t, p, CSS_TASK_ITER_PROCS) { n++; } } bpf_rcu_read_unlock(); return n > 1;"), no(Trust, "must be referenced or trusted")),
        ("rcu_css_acquired_for_task_iter", oom(true, "", "struct cgroup_subsys_state *p; struct task_struct *t; struct mem_cgroup *m; int n = 0; bpf_rcu_read_lock(); bpf_for_each(css, p, &cgrp->self, BPF_CGROUP_ITER_DESCENDANTS_PRE) { m = bpf_get_mem_cgroup(p); if (!m) continue; bpf_for_each(css_task, t, &m->css, CSS_TASK_ITER_PROCS) { n++; } bpf_put_mem_cgroup(m); } bpf_rcu_read_unlock(); return n > 1;"),
         // Linux rejects the same loop (parity twin iter_css_acquire_task_iter):
         // the precise counter keeps every round distinct.
         no(TooComplex, "BPF program is too large. Processed 1000001 insn")),
        ("infinite_loop", oom(true, "", "while (oc->order != 5) { } return 0;"), no(InfiniteLoop, "infinite loop")),
        ("ringbuf_event", oom(true, "struct { __uint(type, BPF_MAP_TYPE_RINGBUF); __uint(max_entries, 4096); } rb SEC(\".maps\");\nstruct ev { u64 pages; int order; };", "struct ev *e = bpf_ringbuf_reserve(&rb, sizeof(*e), 0); if (!e) return 0; e->pages = oc->totalpages; e->order = oc->order; bpf_ringbuf_submit(e, 0); return 0;"), A),
        ("ringbuf_leak", oom(true, "struct { __uint(type, BPF_MAP_TYPE_RINGBUF); __uint(max_entries, 4096); } rb SEC(\".maps\");", "u64 *e = bpf_ringbuf_reserve(&rb, 8, 0); if (!e) return 0; *e = 1; if (oc->order > 0) bpf_ringbuf_submit(e, 0); return 0;"), no(Reference, "Unreleased reference")),
    ]
}

#[test]
fn clang_corpus() {
    if !bpfoom_testutil::require_clang() {
        return;
    }
    let mut failures = Vec::new();
    let cases = cases();
    for (name, src, exp) in &cases {
        let obj =
            bpfoom_testutil::compile_str(name, src, &[]).unwrap_or_else(|e| panic!("{name}: {e}"));
        let obj = Object::parse(&std::fs::read(obj).expect("object"))
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        let res = verify_object(&obj, &Options::default());
        let outcome = match (res, exp) {
            (Ok(_), Expect::Accept) => None,
            (Err(VerifyError::Rejected(r)), Expect::Reject(kind, text))
                if r.kind == *kind && r.reason.contains(text) =>
            {
                // Rejections of clang code point at the C line.
                if r.source.is_none() {
                    Some(format!("{name}: no source line in\n{r}"))
                } else {
                    None
                }
            }
            (Ok(_), _) => Some(format!("{name}: expected {exp:?}, but it verified")),
            (Err(e), _) => Some(format!("{name}: expected {exp:?}, got\n{e}")),
        };
        failures.extend(outcome);
    }
    assert!(
        failures.is_empty(),
        "{} of {} C programs failed:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n\n")
    );
}

/// `Options::iter_next_trusted`: the css_task element is acquired as the
/// upstream selftests do under the mainline rule, and refused with Linux's
/// words under the rule of kernels that do not trust it.
#[test]
fn iter_next_trust_rules() {
    if !bpfoom_testutil::require_clang() {
        return;
    }
    let src = oom(
        true,
        "",
        "struct task_struct *t, *k = 0; int r = 0; \
         bpf_for_each(css_task, t, &cgrp->self, CSS_TASK_ITER_PROCS) { k = bpf_task_acquire(t); break; } \
         if (k) { r = k->pid > 1; bpf_task_release(k); } return r;",
    );
    let obj = bpfoom_testutil::compile_str("iter_next_trust", &src, &[]).expect("compile");
    let obj = Object::parse(&std::fs::read(obj).expect("object")).expect("parse");
    let mainline = verify_object(&obj, &Options::default());
    assert!(mainline.is_ok(), "mainline rule: {:?}", mainline.err());
    let untrusted = Options {
        iter_next_trusted: false,
        ..Options::default()
    };
    match verify_object(&obj, &untrusted) {
        Err(VerifyError::Rejected(r)) => {
            assert_eq!(r.kind, Trust, "{r}");
            assert!(r.reason.contains("must be a rcu pointer"), "{r}");
        }
        other => panic!("untrusted rule: expected a Trust rejection, got {other:?}"),
    }
}
