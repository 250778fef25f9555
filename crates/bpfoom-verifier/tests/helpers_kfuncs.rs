//! The helpers and kfuncs real policies use beyond the OOM kfuncs
//! (bpf_loop callbacks, the numbers and task iterators, probe reads,
//! bpf_strncmp, spin locks, bpf_get_current_task_btf, bpf_task_under_cgroup,
//! bpf_cgroup_ancestor): C programs compiled by clang -O2, each with its
//! verdict under Linux's rules. The kernel-parity twins
//! (`tests/parity/k5_*`) check the same shapes against the running kernel.

mod common;

use bpfoom_obj::Object;
use bpfoom_verifier::{verify_object, Options, RejectKind, RejectKind::*, VerifyError};
use common::Expect;

const A: Expect = Expect::Accept;
const fn no(k: RejectKind, s: &'static str) -> Expect {
    Expect::Reject(k, s)
}

fn oom(decls: &str, body: &str) -> String {
    format!(
        "#include <bpf_oom.h>\nchar _license[] SEC(\"license\") = \"GPL\";\n{decls}\n\
         SEC(\"struct_ops.s/handle_out_of_memory\")\n\
         int BPF_PROG(test_oom, struct oom_control *oc, struct cgroup *cgrp)\n{{\n{body}\n}}\n\
         SEC(\".struct_ops.link\")\n\
         struct bpf_oom_ops test_ops = {{ .handle_out_of_memory = (void *)test_oom, .name = \"t\" }};\n"
    )
}

const LOCKED: &str = "struct val { u64 n; struct bpf_spin_lock lock; u64 m; };
struct { __uint(type, BPF_MAP_TYPE_ARRAY); __uint(max_entries, 2); __type(key, u32); __type(value, struct val); } locked SEC(\".maps\");";

const CB: &str = "struct lctx { u64 sum; u32 n; };
static long add_cb(u64 i, void *c) { struct lctx *x = c; x->sum += i; x->n++; return 0; }
static long stop_cb(u64 i, void *c) { return i >= 3; }
static long two_cb(u64 i, void *c) { return 2; }
static long leak_cb(u64 i, void *c) { return (long)c; }";

fn cases() -> Vec<(&'static str, String, Expect)> {
    vec![
        // bpf_loop
        ("loop_sum", oom(CB, "struct lctx c = {}; long r = bpf_loop(10, add_cb, &c, 0); return r == 10 && c.sum > 1 ? 1 : 0;"), A),
        ("loop_null_ctx", oom(CB, "return bpf_loop(100, stop_cb, NULL, 0) > 3 ? 1 : 0;"), A),
        ("loop_bad_return", oom(CB, "bpf_loop(4, two_cb, NULL, 0); return 0;"), no(ReturnValue, "At callback return")),
        ("loop_returns_pointer", oom(CB, "struct lctx c = {}; bpf_loop(4, leak_cb, &c, 0); return 0;"), no(PointerLeak, "not a scalar")),
        // A callback with a branch reaches its exit in the same state on
        // every call: progress (the next call), not an infinite loop.
        ("loop_bounded_index", oom("struct actx { u64 v[8]; };\nstatic long fill_cb(u64 i, void *c) { struct actx *x = c; if (i >= 8) return 1; x->v[i] = i * 3; return 0; }", "struct actx c = {}; bpf_loop(8, fill_cb, &c, 0); return c.v[2] == 6;"), A),
        ("loop_unchecked_index", oom("struct actx { u64 v[8]; };\nstatic long fill_cb(u64 i, void *c) { struct actx *x = c; x->v[i] = i; return 0; }", "struct actx c = {}; bpf_loop(8, fill_cb, &c, 0); return c.v[2] == 2;"), no(PointerArith, "unbounded")),
        ("loop_nested", oom("struct nctx { u64 sum; };\nstatic long inner_cb(u64 i, void *c) { struct nctx *x = c; x->sum += i; return 0; }\nstatic long outer_cb(u64 i, void *c) { bpf_loop(3, inner_cb, c, 0); return 0; }", "struct nctx c = {}; bpf_loop(3, outer_cb, &c, 0); return c.sum > 2;"), A),
        ("loop_global_callback", oom("__noinline long glob_cb(u64 i, void *c) { return 0; }", "return bpf_loop(3, glob_cb, NULL, 0) == 3;"), no(Call, "not static")),
        ("loop_ctx_not_stack", oom(CB, "bpf_loop(4, stop_cb, oc, 0); return 0;"), no(Call, "expected=fp or NULL")),
        // the numbers iterator: bpf_for / bpf_repeat
        ("bpf_for_sum", oom("", "int i; u64 s = 0; bpf_for(i, 0, 1000) { s += i; } return s > 5 ? 1 : 0;"), A),
        // The counters are globals: a register counter compared after the
        // loop is precise, so neither Linux nor bpfoom converges on it (the
        // parity twin `iter_css_task_count` shows the kernel rejecting it).
        ("bpf_repeat", oom("u32 seen;", "bpf_repeat(50) { seen++; } return seen > 5 ? 1 : 0;"), A),
        // A register counter returned as `n & 1`: the `& 1` alone keeps the
        // return value in range, so the counter needs no precision and the
        // loop converges, as in Linux (no return-range rule for struct_ops;
        // parity twin `prec_iter_count_unused`).
        ("bpf_repeat_count_masked_return", oom("", "u32 n = 0; bpf_repeat(50) { n++; } return n & 1;"), A),
        ("bpf_for_stack_index", oom("", "u64 a[8] = {}; int i; bpf_for(i, 0, 8) { a[i] = i; } return a[3] == 3 ? 1 : 0;"), A),
        ("iter_num_unchecked", oom("", "struct bpf_iter_num it; int *v; int r; bpf_iter_num_new(&it, 0, 5); v = bpf_iter_num_next(&it); r = *v; bpf_iter_num_destroy(&it); return r > 1;"), no(InvalidMemAccess, "scalar")),
        ("iter_num_write", oom("", "struct bpf_iter_num it; int *v; bpf_iter_num_new(&it, 0, 5); v = bpf_iter_num_next(&it); if (v) *v = 3; bpf_iter_num_destroy(&it); return 0;"), no(ReadOnly, "read-only")),
        ("iter_num_leak", oom("", "struct bpf_iter_num it; bpf_iter_num_new(&it, 0, 5); bpf_iter_num_next(&it); return 0;"), no(Reference, "missing destroy")),
        // the task iterator
        ("task_iter_count", oom("u32 seen;", "struct task_struct *t; bpf_rcu_read_lock(); bpf_for_each(task, t, NULL, BPF_TASK_ITER_ALL_PROCS) { if (t->pid > 1) seen++; } bpf_rcu_read_unlock(); return seen > 3 ? 1 : 0;"), A),
        ("task_iter_needs_rcu", oom("", "struct task_struct *t; u32 n = 0; bpf_for_each(task, t, NULL, BPF_TASK_ITER_ALL_PROCS) { n++; } return n > 3 ? 1 : 0;"), no(Rcu, "requires RCU critical section")),
        ("task_iter_kill_acquired", oom("", "struct task_struct *t, *v = NULL; bpf_rcu_read_lock(); bpf_for_each(task, t, NULL, BPF_TASK_ITER_ALL_PROCS) { if (t->pid == 4242) { v = bpf_task_acquire(t); break; } } bpf_rcu_read_unlock(); if (!v) return 0; bpf_oom_kill_process(oc, v, \"x\"); bpf_task_release(v); return 1;"), A),
        ("task_iter_kill_rcu", oom("", "struct task_struct *t; bpf_rcu_read_lock(); bpf_for_each(task, t, NULL, BPF_TASK_ITER_ALL_PROCS) { bpf_task_under_cgroup(t, cgrp); } bpf_rcu_read_unlock(); return 0;"), A),
        // task/cgroup kfuncs
        ("under_cgroup", oom("", "struct task_struct *t = bpf_get_current_task_btf(); return bpf_task_under_cgroup(t, cgrp) ? 1 : 0;"), A),
        ("under_cgroup_walked", oom("", "struct task_struct *t = bpf_get_current_task_btf(); return bpf_task_under_cgroup(t->real_parent, cgrp) ? 1 : 0;"), no(Trust, "must be a rcu pointer")),
        ("ancestor_released", oom("", "struct cgroup *a = bpf_cgroup_ancestor(cgrp, 1); int l; if (!a) return 0; l = a->level; bpf_cgroup_release(a); return l == 1;"), A),
        ("ancestor_leak", oom("", "struct cgroup *a = bpf_cgroup_ancestor(cgrp, 1); if (!a) return 0; return a->level == 1;"), no(Reference, "Unreleased reference")),
        ("ancestor_unchecked", oom("", "struct cgroup *a = bpf_cgroup_ancestor(cgrp, 1); int l = a->level; bpf_cgroup_release(a); return l == 1;"), no(NullDeref, "NULL")),
        ("current_task_read", oom("", "struct task_struct *t = bpf_get_current_task_btf(); return t->pid > 0 ? 1 : 0;"), A),
        // probe reads
        ("probe_read_comm", oom("", "char c[16]; struct task_struct *t = bpf_get_current_task_btf(); long r = bpf_probe_read_kernel_str(c, sizeof(c), t->comm); return r > 0 && c[0] == 'x' ? 1 : 0;"), A),
        ("probe_read_field", oom("", "int pid = 0; struct task_struct *t = bpf_get_current_task_btf(); bpf_probe_read_kernel(&pid, sizeof(pid), &t->real_parent->pid); return pid > 1 ? 1 : 0;"), A),
        ("probe_read_unbounded", oom("", "char c[16]; struct task_struct *t = bpf_get_current_task_btf(); u32 n = t->pid; bpf_probe_read_kernel(c, n, &t->pid); return c[0];"), no(Call, "unbounded memory access")),
        ("probe_read_too_big", oom("", "char c[16]; struct task_struct *t = bpf_get_current_task_btf(); bpf_probe_read_kernel(c, 32, &t->pid); return c[0] ? 1 : 0;"), no(Stack, "invalid indirect access to stack")),
        ("probe_read_bounded", oom("", "char c[16]; struct task_struct *t = bpf_get_current_task_btf(); u32 n = t->pid & 15; bpf_probe_read_kernel(c, n, t->comm); return c[0] == 'a' ? 1 : 0;"), A),
        // A Linux helper bpfoom does not provide is named (issue 15).
        ("helper_not_provided", oom("", "return bpf_get_current_pid_tgid() > 1;"), no(Call, "helper bpf_get_current_pid_tgid (#14) is not available to bpf_oom_ops programs (bpfoom provides: ")),
        // bpf_strncmp
        ("strncmp_comm", oom("", "struct task_struct *t = bpf_get_current_task_btf(); char c[16]; bpf_probe_read_kernel_str(c, sizeof(c), t->comm); return bpf_strncmp(c, sizeof(c), \"systemd\") == 0 ? 1 : 0;"), A),
        ("strncmp_writable", oom("char name[16] = \"systemd\";", "char c[16] = {}; return bpf_strncmp(c, sizeof(c), name) == 0 ? 1 : 0;"), no(Call, "readonly map")),
        // spin locks
        ("lock_unlock", oom(LOCKED, "u32 k = 0; struct val *v = bpf_map_lookup_elem(&locked, &k); if (!v) return 0; bpf_spin_lock(&v->lock); v->n++; bpf_spin_unlock(&v->lock); return 0;"), A),
        ("lock_held_at_exit", oom(LOCKED, "u32 k = 0; struct val *v = bpf_map_lookup_elem(&locked, &k); if (!v) return 0; bpf_spin_lock(&v->lock); v->n++; if (v->m) return 0; bpf_spin_unlock(&v->lock); return 0;"), no(Reference, "bpf_spin_lock-ed region")),
        ("lock_call_inside", oom(LOCKED, "u32 k = 0; struct val *v = bpf_map_lookup_elem(&locked, &k); if (!v) return 0; bpf_spin_lock(&v->lock); v->n = bpf_ktime_get_ns(); bpf_spin_unlock(&v->lock); return 0;"), no(Call, "while holding a lock")),
        ("lock_kfunc_inside", oom(LOCKED, "u32 k = 0; struct val *v = bpf_map_lookup_elem(&locked, &k); if (!v) return 0; bpf_spin_lock(&v->lock); v->n = bpf_task_is_oom_victim(bpf_get_current_task_btf()); bpf_spin_unlock(&v->lock); return 0;"), no(Call, "while holding a lock")),
        ("lock_twice", oom(LOCKED, "u32 k = 0, j = 1; struct val *v = bpf_map_lookup_elem(&locked, &k), *w = bpf_map_lookup_elem(&locked, &j); if (!v || !w) return 0; bpf_spin_lock(&v->lock); bpf_spin_lock(&w->lock); bpf_spin_unlock(&w->lock); bpf_spin_unlock(&v->lock); return 0;"), no(Call, "while holding a lock")),
        ("unlock_other", oom(LOCKED, "u32 k = 0, j = 1; struct val *v = bpf_map_lookup_elem(&locked, &k), *w = bpf_map_lookup_elem(&locked, &j); if (!v || !w) return 0; bpf_spin_lock(&v->lock); bpf_spin_unlock(&w->lock); return 0;"), no(Reference, "different lock")),
        ("lock_field_read", oom(LOCKED, "u32 k = 0; struct val *v = bpf_map_lookup_elem(&locked, &k); if (!v) return 0; return *(u32 *)&v->lock ? 1 : 0;"), no(InvalidMemAccess, "cannot be accessed directly")),
        ("lock_no_lock_map", oom("struct { __uint(type, BPF_MAP_TYPE_ARRAY); __uint(max_entries, 1); __type(key, u32); __type(value, u64); } plain SEC(\".maps\");", "u32 k = 0; u64 *v = bpf_map_lookup_elem(&plain, &k); if (!v) return 0; bpf_spin_lock((void *)v); bpf_spin_unlock((void *)v); return 0;"), no(Call, "has no valid bpf_spin_lock")),
    ]
}

#[test]
fn helpers_and_kfuncs() {
    if !bpfoom_testutil::require_clang() {
        return;
    }
    let mut failures = Vec::new();
    let cases = cases();
    for (name, src, exp) in &cases {
        let obj = match bpfoom_testutil::compile_str(name, src, &[]) {
            Ok(o) => o,
            Err(e) => {
                failures.push(format!("{name}: does not compile: {e}"));
                continue;
            }
        };
        let obj = Object::parse(&std::fs::read(obj).expect("object"))
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        let res = verify_object(&obj, &Options::default());
        let outcome = match (res, exp) {
            (Ok(_), Expect::Accept) => None,
            (Err(VerifyError::Rejected(r)), Expect::Reject(kind, text))
                if r.kind == *kind && r.reason.contains(text) =>
            {
                None
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

/// A reference leak names the C line that took the reference (from the
/// object's .BTF.ext line info), after Linux's own words.
#[test]
fn leak_names_the_acquiring_line() {
    if !bpfoom_testutil::require_clang() {
        return;
    }
    let body = "struct cgroup *a;\nint l;\na = bpf_cgroup_ancestor(cgrp, 1);\n\
                if (!a)\n\treturn 0;\nl = a->level;\nreturn l == 1;";
    let src = oom("", body);
    let line = 1 + src
        .lines()
        .position(|l| l.starts_with("a = bpf_cgroup_ancestor"))
        .expect("the acquiring line");
    let obj = bpfoom_testutil::compile_str("leak_line", &src, &[]).expect("compiles");
    let obj = Object::parse(&std::fs::read(obj).expect("object")).expect("parses");
    let err = verify_object(&obj, &Options::default()).expect_err("the ancestor leaks");
    let r = err.rejection().expect("a rejection");
    assert_eq!(r.kind, Reference);
    assert!(
        r.reason.starts_with("Unreleased reference id="),
        "{}",
        r.reason
    );
    let want = format!(".bpf.c:{line}: `a = bpf_cgroup_ancestor(cgrp, 1);`): ");
    assert!(r.reason.contains(&want), "want {want:?} in {}", r.reason);
    // With a log, each C line is printed before its first instruction, as
    // Linux's verifier log does.
    let opts = Options {
        log_level: 1,
        ..Options::default()
    };
    let text = verify_object(&obj, &opts).expect_err("leaks").to_string();
    assert!(
        text.contains("; a = bpf_cgroup_ancestor(cgrp, 1); @ "),
        "{text}"
    );
    // The instruction named is the call that acquired it.
    let at: usize = r
        .reason
        .split("alloc_insn=")
        .nth(1)
        .and_then(|s| s.split(|c: char| !c.is_ascii_digit()).next())
        .and_then(|s| s.parse().ok())
        .expect("alloc_insn=N");
    let p = &obj.programs[0];
    assert_eq!(p.insns[at].code, 0x85, "alloc_insn {at} is not a call");
}

/// A handler that declares its first argument as another struct than the
/// callback passes: the CO-RE field access is explained with both types
/// and the prototype bpfoom calls the program with (issue 14 item 4).
#[test]
fn core_access_through_the_wrong_type_is_explained() {
    if !bpfoom_testutil::require_clang() {
        return;
    }
    let policy = |args: &str, body: &str| {
        format!(
            "#include <bpf_oom.h>\nchar _license[] SEC(\"license\") = \"GPL\";\n\
             SEC(\"struct_ops.s/handle_out_of_memory\")\n\
             int BPF_PROG(test_oom, {args})\n{{ {body} }}\n\
             SEC(\".struct_ops.link\")\n\
             struct bpf_oom_ops test_ops = {{ .handle_out_of_memory = (void *)test_oom, .name = \"t\" }};\n"
        )
    };
    let verify = |name: &str, src: &str| {
        let obj = bpfoom_testutil::compile_str(name, src, &[]).expect("compiles");
        let obj = Object::parse(&std::fs::read(obj).expect("object")).expect("parses");
        verify_object(&obj, &Options::default())
    };
    let proto = "bpfoom calls this program as int bpf_oom_ops.handle_out_of_memory(struct oom_control *oc, struct cgroup *cgrp) (declare the handler's arguments with these types)";

    // The access itself is out of bounds for the real type: explained there.
    let err = verify(
        "core_wrong_type_oob",
        &policy(
            "struct task_struct *t, struct cgroup *cgrp",
            "return t->mm != 0;",
        ),
    )
    .expect_err("task_struct.mm is beyond struct oom_control");
    let r = err.rejection().expect("a rejection");
    assert_eq!(r.kind, InvalidMemAccess, "{}", r.reason);
    let want = "the CO-RE access `task_struct.mm` is a field of struct task_struct, but R";
    assert!(r.reason.contains(want), "{}", r.reason);
    assert!(
        r.reason.contains(" points to struct oom_control; "),
        "{}",
        r.reason
    );
    assert!(r.reason.contains(proto), "{}", r.reason);

    // The offset happens to be valid in the real type (as in Linux, the
    // access verifies): the program fails later, at the exit, and the
    // rejection points back at the access.
    let err = verify(
        "core_wrong_type_later",
        &policy(
            "struct mem_cgroup *memcg, struct cgroup *cgrp",
            "return memcg->oom_group ? 1 : 0;",
        ),
    )
    .expect_err("the byte read is not a _Bool");
    let r = err.rejection().expect("a rejection");
    assert_eq!(r.kind, ReturnValue, "{}", r.reason);
    assert!(
        r.reason.contains(
            ": the CO-RE access `mem_cgroup.oom_group` is a field of struct mem_cgroup, but R"
        ) && r.reason.contains("(note: insn "),
        "{}",
        r.reason
    );
    assert!(r.reason.contains(proto), "{}", r.reason);

    // When the program verifies anyway, the access is a warning.
    let reports = verify(
        "core_wrong_type_ok",
        &policy(
            "struct mem_cgroup *memcg, struct cgroup *cgrp",
            "return memcg->css.cgroup != 0;",
        ),
    )
    .expect("verifies: offset 0 of struct oom_control is a pointer too");
    let w = &reports[0].report.warnings;
    assert_eq!(w.len(), 1, "{w:?}");
    assert!(
        w[0].contains(
            "`mem_cgroup.css.cgroup` is a field of struct mem_cgroup, but R1 points to struct oom_control"
        ),
        "{w:?}"
    );

    // Through the right type: no warning.
    let reports = verify(
        "core_right_type",
        &policy(
            "struct oom_control *oc, struct cgroup *cgrp",
            "struct mem_cgroup *m = oc->memcg; return m && m->oom_group;",
        ),
    )
    .expect("verifies");
    assert!(
        reports[0].report.warnings.is_empty(),
        "{:?}",
        reports[0].report.warnings
    );
}
