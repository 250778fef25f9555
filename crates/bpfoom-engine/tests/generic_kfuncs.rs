//! The generic kfuncs and helpers through the engine, one policy each: the
//! policy prints what the calls return (bpf_printk becomes a Printk record)
//! and the test compares with the kernel's results for the same calls.

#![allow(clippy::unwrap_used)] // test helpers

use bpfoom_engine::{AttachOptions, Engine, EngineConfig, Record, Verifier};
use bpfoom_obj::Object;

mod common;

/// Runs `body` as a handler for one global OOM on a host whose `/job` holds
/// processes 10, 11 and 12; returns the lines it printed.
fn printed(name: &str, body: &str) -> Option<Vec<String>> {
    if !bpfoom_testutil::require_clang() {
        return None;
    }
    let src = format!(
        "#include <bpf_oom.h>\nchar _license[] SEC(\"license\") = \"GPL\";\n\
         SEC(\"struct_ops.s/handle_out_of_memory\")\n\
         int BPF_PROG({name}_oom, struct oom_control *oc, struct cgroup *cgrp)\n{{\n{body}\nreturn 0;\n}}\n\
         SEC(\".struct_ops.link\")\nstruct bpf_oom_ops {name} = {{\n\
         .handle_out_of_memory = (void *){name}_oom,\n.name = \"{name}\",\n}};\n"
    );
    let path = bpfoom_testutil::compile_str(name, &src, &[]).unwrap_or_else(|e| panic!("{e}"));
    let mut p = bpfoom_engine::Policy::open(Object::from_path(path).unwrap(), None).unwrap();
    p.check(&Verifier::default())
        .unwrap_or_else(|e| panic!("{name}: {e}"));
    // Both backends must print the same lines.
    let mut outs = bpfoom_engine::VmBackend::ALL.map(|vm| run_once(name, p.clone(), vm));
    assert_eq!(
        outs[0], outs[1],
        "{name}: the JIT and the interpreter differ"
    );
    Some(std::mem::take(&mut outs[0]))
}

fn run_once(name: &str, p: bpfoom_engine::Policy, vm: bpfoom_engine::VmBackend) -> Vec<String> {
    let host = common::TestHost {
        tasks: vec![(10, 0), (11, 0), (12, -1000)],
        ..Default::default()
    };
    let cfg = EngineConfig {
        vm,
        ..EngineConfig::default()
    };
    let mut e = Engine::new(host, cfg);
    e.attach(p, 1, AttachOptions::default()).unwrap();
    e.out_of_memory(None);
    let recs = e.take_records();
    assert!(
        !recs.iter().any(|r| matches!(
            r,
            Record::Handler {
                reason: Some(_),
                ..
            }
        )),
        "{name} ({vm:?}): {recs:?}"
    );
    recs.into_iter()
        .filter_map(|r| match r {
            Record::Printk { message, .. } => Some(message),
            _ => None,
        })
        .flat_map(|m| m.lines().map(str::to_string).collect::<Vec<_>>())
        .collect()
}

fn check(name: &str, body: &str, want: &[&str]) {
    if let Some(got) = printed(name, body) {
        assert_eq!(got, want, "{name}");
    }
}

#[test]
fn iter_num_as_the_kernel() {
    check(
        "iter_num",
        "int i, n = 0; long s = 0; struct bpf_iter_num it; int *v;
         bpf_for(i, 2, 6) { s += i; }
         bpf_repeat(3) { n++; }
         bpf_printk(\"sum=%ld repeat=%d\", s, n);
         /* start > end: -EINVAL and an empty iterator */
         n = bpf_iter_num_new(&it, 5, 2); v = bpf_iter_num_next(&it);
         bpf_printk(\"bad=%d next=%d\", n, v ? 1 : 0); bpf_iter_num_destroy(&it);
         /* longer than 8M: -E2BIG */
         n = bpf_iter_num_new(&it, -1, 8388608); v = bpf_iter_num_next(&it);
         bpf_printk(\"big=%d next=%d\", n, v ? 1 : 0); bpf_iter_num_destroy(&it);
         /* empty range: fine, nothing */
         n = bpf_iter_num_new(&it, 7, 7); v = bpf_iter_num_next(&it);
         bpf_printk(\"empty=%d next=%d\", n, v ? 1 : 0); bpf_iter_num_destroy(&it);",
        &[
            "sum=14 repeat=3",
            "bad=-22 next=0",
            "big=-7 next=0",
            "empty=0 next=0",
        ],
    );
}

#[test]
fn iter_task_lists_every_process() {
    check(
        "iter_task",
        "struct task_struct *t; struct bpf_iter_task it; int n = 0, s = 0, r;
         bpf_rcu_read_lock();
         bpf_for_each(task, t, NULL, BPF_TASK_ITER_ALL_PROCS) { n++; s += t->pid; }
         bpf_printk(\"n=%d pids=%d\", n, s);
         /* PROC_THREADS needs a task; unknown flags are refused */
         r = bpf_iter_task_new(&it, NULL, BPF_TASK_ITER_PROC_THREADS);
         bpf_printk(\"proc_threads_null=%d next=%d\", r, bpf_iter_task_next(&it) ? 1 : 0);
         bpf_iter_task_destroy(&it);
         r = bpf_iter_task_new(&it, NULL, 7);
         bpf_printk(\"flags7=%d\", r);
         bpf_iter_task_destroy(&it);
         bpf_rcu_read_unlock();",
        &["n=3 pids=33", "proc_threads_null=-22 next=0", "flags7=-22"],
    );
}

#[test]
fn task_under_cgroup_and_ancestor() {
    check(
        "under_cgroup",
        "struct cgroup *job = bpf_cgroup_from_id(2), *a0, *a1, *a2;
         struct task_struct *t = bpf_task_from_pid(10);
         int in_root, in_job, l0, l1;
         if (!job || !t) { if (job) bpf_cgroup_release(job); if (t) bpf_task_release(t); return 0; }
         in_root = bpf_task_under_cgroup(t, cgrp);
         in_job = bpf_task_under_cgroup(t, job);
         bpf_printk(\"root=%d job=%d\", in_root, in_job);
         a0 = bpf_cgroup_ancestor(job, 0); a1 = bpf_cgroup_ancestor(job, 1); a2 = bpf_cgroup_ancestor(job, 2);
         l0 = a0 ? a0->kn->id : -1; l1 = a1 ? a1->kn->id : -1;
         bpf_printk(\"a0=%d a1=%d a2=%d\", l0, l1, a2 ? 1 : 0);
         if (a0) bpf_cgroup_release(a0); if (a1) bpf_cgroup_release(a1); if (a2) bpf_cgroup_release(a2);
         a0 = bpf_cgroup_ancestor(cgrp, -1);
         bpf_printk(\"neg=%d\", a0 ? 1 : 0);
         if (a0) bpf_cgroup_release(a0);
         bpf_task_release(t); bpf_cgroup_release(job);",
        &["root=1 job=1", "a0=1 a1=2 a2=0", "neg=0"],
    );
}

#[test]
fn current_task_stand_in_and_probe_reads() {
    check(
        "current_task",
        "struct task_struct *cur = bpf_get_current_task_btf(), *t = bpf_task_from_pid(11);
         char c[16]; long r; int pid = -1;
         bpf_printk(\"current=%d\", cur->pid);
         if (!t) return 0;
         r = bpf_probe_read_kernel_str(c, sizeof(c), t->comm);
         bpf_printk(\"str=%ld cmp=%ld\", r, bpf_strncmp(c, sizeof(c), \"t11\"));
         r = bpf_probe_read_kernel(&pid, sizeof(pid), &t->pid);
         bpf_printk(\"read=%ld pid=%d\", r, pid);
         /* a NULL walk: -ERANGE, the buffer zeroed */
         r = bpf_probe_read_kernel(&pid, sizeof(pid), (void *)8);
         bpf_printk(\"null=%ld pid=%d\", r, pid);
         bpf_task_release(t);",
        &[
            "current=0",
            "str=4 cmp=0",
            "read=0 pid=11",
            "null=-34 pid=0",
        ],
    );
}
