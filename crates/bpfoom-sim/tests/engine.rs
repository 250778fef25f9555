//! Engine semantics that scenarios cannot express: attach conflicts, kill
//! refusals, run limits, reference leaks, iterator orders, detach on rmdir.

#![allow(clippy::unwrap_used)] // test helpers

use std::time::Duration;

use bpfoom_engine::{
    AttachOptions, ContractCheck, Engine, EngineConfig, EngineError, Host, OomOutcome, Policy,
    Record, Verdict, VmBackend,
};
use bpfoom_obj::Object;
use bpfoom_sim::{SimHost, SimProc};

const HEADER: &str = "#include <bpf_oom.h>\nchar _license[] SEC(\"license\") = \"GPL\";\n";

/// Compiles a one-handler bpf_oom_ops policy named `name` whose handler body is `body`.
fn policy(name: &str, globals: &str, body: &str) -> Option<Policy> {
    bpfoom_testutil::require_clang().then_some(())?;
    let src = format!(
        "{HEADER}{globals}\nSEC(\"struct_ops.s/handle_out_of_memory\")\n\
         int BPF_PROG({name}_oom, struct oom_control *oc, struct cgroup *cgrp)\n{{\n{body}\n}}\n\
         SEC(\".struct_ops.link\")\nstruct bpf_oom_ops {name} = {{\n\
         .handle_out_of_memory = (void *){name}_oom,\n.name = \"{name}\",\n}};\n"
    );
    let obj = bpfoom_testutil::compile_str(name, &src, &[]).unwrap_or_else(|e| panic!("{e}"));
    let obj = Object::from_path(obj).unwrap();
    Some(Policy::load(obj, None, &ContractCheck).unwrap())
}

fn proc(pid: i32, cgroup: u64, rss_mb: u64) -> SimProc {
    SimProc {
        pid,
        comm: format!("p{pid}"),
        cgroup,
        rss: rss_mb << 20,
        rss_file: 0,
        rss_shmem: 0,
        file: 0,
        swap: 0,
        oom_score_adj: 0,
        kthread: false,
        exiting_until: None,
    }
}

fn records(e: &Engine<SimHost>) -> Vec<Record> {
    e.host()
        .lines()
        .iter()
        .filter_map(|l| match l {
            bpfoom_sim::Line::Engine(r) => Some(r.clone()),
            bpfoom_sim::Line::Sim(_) => None,
        })
        .collect()
}

fn handler_reasons(e: &Engine<SimHost>) -> Vec<(Verdict, Option<String>)> {
    records(e)
        .into_iter()
        .filter_map(|r| match r {
            Record::Handler { ret, reason, .. } => Some((ret, reason)),
            _ => None,
        })
        .collect()
}

fn engine_config(vm: VmBackend) -> EngineConfig {
    EngineConfig {
        vm,
        ..EngineConfig::default()
    }
}

const FAIL: &str = "return BPF_OOM_FAILED;";

#[test]
fn second_attach_names_the_holder() {
    // Every engine test holds on the JIT and on the interpreter.
    for vm in VmBackend::ALL {
        let (Some(a), Some(b)) = (policy("first", "", FAIL), policy("second", "", FAIL)) else {
            return;
        };
        let mut host = SimHost::new(1 << 30, Duration::ZERO);
        let job = host.mkdir("/job", Some(100 << 20), false).unwrap();
        let mut e = Engine::new(host, engine_config(vm));
        e.attach(a, job, AttachOptions::default()).unwrap();
        let err = e.attach(b, job, AttachOptions::default()).unwrap_err();
        assert!(
            matches!(&err, EngineError::AlreadyAttached { holder, .. } if holder == "first"),
            "{err:?}"
        );
        assert!(
            err.to_string().contains("first is already attached"),
            "{err}"
        );
        assert_eq!(e.instances().len(), 1);
    }
}

#[test]
fn init_kernel_threads_and_the_daemon_are_never_killed() {
    // Every engine test holds on the JIT and on the interpreter.
    for vm in VmBackend::ALL {
        let body = r#"
    	struct cgroup_subsys_state *pos;
    	struct task_struct *task;
    	int ret = BPF_OOM_FAILED;
    	bpf_for_each(css, pos, &cgrp->self, BPF_CGROUP_ITER_DESCENDANTS_PRE) {
    		bpf_for_each(css_task, task, pos, CSS_TASK_ITER_PROCS) {
    			struct task_struct *t = bpf_task_acquire(task);
    			if (!t)
    				continue;
    			if (!bpf_oom_kill_process(oc, t, "kill everything"))
    				ret = BPF_OOM_PROCESSED;
    			bpf_task_release(t);
    		}
    	}
    	return ret;"#;
        let Some(p) = policy("kill_all", "", body) else {
            return;
        };
        let mut host = SimHost::new(1 << 30, Duration::ZERO);
        let root = 1;
        host.add_process(proc(1, root, 10)).unwrap();
        let mut kthread = proc(2, root, 0);
        kthread.kthread = true;
        host.add_process(kthread).unwrap();
        host.add_process(proc(50, root, 10)).unwrap();
        host.add_process(proc(60, root, 10)).unwrap();
        host.set_self_pid(Some(50));
        let mut e = Engine::new(host, engine_config(vm));
        e.attach(p, root, AttachOptions::default()).unwrap();
        assert_eq!(e.out_of_memory(None), OomOutcome::Policy("kill_all".into()));
        let recs = records(&e);
        let killed: Vec<i32> = recs
            .iter()
            .filter_map(|r| match r {
                Record::Kill { pid, .. } => Some(*pid),
                _ => None,
            })
            .collect();
        let refused: Vec<(i32, String)> = recs
            .iter()
            .filter_map(|r| match r {
                Record::KillRefused { pid, reason, .. } => Some((*pid, reason.clone())),
                _ => None,
            })
            .collect();
        assert_eq!(killed, vec![60]);
        assert_eq!(refused.len(), 3, "{refused:?}");
        assert!(refused[0].1.contains("init"));
        assert!(refused[1].1.contains("kernel thread"));
        assert!(refused[2].1.contains("daemon"));
        assert!(recs
            .iter()
            .any(|r| matches!(r, Record::Oom { memcg: None, .. })));
        assert_eq!(e.leaked_refs(), 0);
    }
}

fn one_job() -> (SimHost, u64) {
    let mut host = SimHost::new(1 << 30, Duration::ZERO);
    let job = host.mkdir("/job", Some(100 << 20), false).unwrap();
    host.add_process(proc(10, job, 60)).unwrap();
    host.add_process(proc(11, job, 30)).unwrap();
    (host, job)
}

#[test]
fn instruction_budget_overrun_is_failed_and_the_chain_goes_on() {
    // Every engine test holds on the JIT and on the interpreter.
    for vm in VmBackend::ALL {
        let globals = "const volatile u64 n = 1000000;";
        let body = "u64 i, sum = 0;\nfor (i = 0; i < n; i++)\n\tsum += bpf_get_prandom_u32();\nreturn sum ? BPF_OOM_FAILED : BPF_OOM_BACKOFF;";
        let Some(p) = policy("spin", globals, body) else {
            return;
        };
        let (host, job) = one_job();
        let cfg = EngineConfig {
            insn_budget: 10_000,
            ..engine_config(vm)
        };
        let mut e = Engine::new(host, cfg);
        e.attach(p, job, AttachOptions::default()).unwrap();
        assert_eq!(e.out_of_memory(Some(job)), OomOutcome::Kernel(vec![10]));
        let h = handler_reasons(&e);
        assert_eq!(h.len(), 1);
        assert_eq!(h[0].0, Verdict::Failed);
        assert!(
            h[0].1
                .as_deref()
                .unwrap()
                .contains("instruction budget of 10000"),
            "{h:?}"
        );
    }
}

#[test]
fn wall_clock_overrun_is_failed() {
    // Every engine test holds on the JIT and on the interpreter.
    for vm in VmBackend::ALL {
        let body = "struct task_struct *t = bpf_task_from_pid(11);\nif (!t)\n\treturn BPF_OOM_FAILED;\n\
                    bpf_oom_kill_process(oc, t, \"slow\");\nbpf_task_release(t);\nreturn BPF_OOM_PROCESSED;";
        let Some(p) = policy("slow", "", body) else {
            return;
        };
        let (host, job) = one_job();
        // A zero limit: every run overruns it, however fast.
        let cfg = EngineConfig {
            time_limit: Duration::ZERO,
            ..engine_config(vm)
        };
        let mut e = Engine::new(host, cfg);
        e.attach(p, job, AttachOptions::default()).unwrap();
        e.out_of_memory(Some(job));
        let h = handler_reasons(&e);
        assert_eq!(h[0].0, Verdict::Failed);
        assert!(
            h[0].1.as_deref().unwrap().contains("wall-clock limit"),
            "{h:?}"
        );
        // The kill it made still happened; the kernel fallback then ran too.
        assert!(records(&e)
            .iter()
            .any(|r| matches!(r, Record::Fallback { .. })));
    }
}

#[test]
fn a_leaked_reference_is_reported() {
    // Every engine test holds on the JIT and on the interpreter.
    for vm in VmBackend::ALL {
        let body = "struct mem_cgroup *m = bpf_get_root_mem_cgroup();\nreturn m ? BPF_OOM_FAILED : BPF_OOM_BACKOFF;";
        let Some(p) = policy("leaky", "", body) else {
            return;
        };
        let (host, job) = one_job();
        let mut e = Engine::new(host, engine_config(vm));
        e.attach(p, job, AttachOptions::default()).unwrap();
        e.out_of_memory(Some(job));
        assert_eq!(e.leaked_refs(), 1);
        assert!(records(&e)
            .iter()
            .any(|r| matches!(r, Record::Error { message, .. } if message.contains("1 acquired reference(s) not released"))));
    }
}

#[test]
fn css_iterator_orders_are_the_kernels() {
    // Every engine test holds on the JIT and on the interpreter.
    for vm in VmBackend::ALL {
        let body = r#"
    	struct cgroup_subsys_state *pos;
    	bpf_rcu_read_lock();
    	bpf_for_each(css, pos, &cgrp->self, BPF_CGROUP_ITER_DESCENDANTS_PRE)
    		bpf_printk("pre %llu", pos->cgroup->kn->id);
    	bpf_for_each(css, pos, &cgrp->self, BPF_CGROUP_ITER_DESCENDANTS_POST)
    		bpf_printk("post %llu", pos->cgroup->kn->id);
    	bpf_for_each(css, pos, &cgrp->self, BPF_CGROUP_ITER_SELF_ONLY)
    		bpf_printk("self %llu", pos->cgroup->kn->id);
    	bpf_for_each(css, pos, &cgrp->self, BPF_CGROUP_ITER_ANCESTORS_UP)
    		bpf_printk("up %llu level %d", pos->cgroup->kn->id, pos->cgroup->level);
    	bpf_for_each(css, pos, &cgrp->self, BPF_CGROUP_ITER_ORDER_UNSPEC)
    		bpf_printk("unspec %llu", pos->cgroup->kn->id);
    	bpf_rcu_read_unlock();
    	return BPF_OOM_FAILED;"#;
        let Some(p) = policy("orders", "", body) else {
            return;
        };
        let mut host = SimHost::new(1 << 30, Duration::ZERO);
        let a = host.mkdir("/a", Some(1 << 20), false).unwrap();
        let b = host.mkdir("/a/b", None, false).unwrap();
        let c = host.mkdir("/a/c", None, false).unwrap();
        let d = host.mkdir("/a/b/d", None, false).unwrap();
        assert_eq!((a, b, c, d), (2, 3, 4, 5));
        let mut e = Engine::new(host, engine_config(vm));
        e.attach(p, a, AttachOptions::default()).unwrap();
        e.out_of_memory(Some(a));
        let lines: Vec<String> = records(&e)
            .into_iter()
            .filter_map(|r| match r {
                Record::Printk { message, .. } => Some(message),
                _ => None,
            })
            .collect();
        let want = [
            "pre 2",
            "pre 3",
            "pre 5",
            "pre 4",
            "post 5",
            "post 3",
            "post 4",
            "post 2",
            "self 2",
            "up 2 level 1",
            "up 1 level 0",
        ];
        assert_eq!(lines, want);
        assert_eq!(e.leaked_refs(), 0);
    }
}

#[test]
fn removing_the_attach_point_detaches() {
    // Every engine test holds on the JIT and on the interpreter.
    for vm in VmBackend::ALL {
        let Some(p) = policy("gone", "", FAIL) else {
            return;
        };
        let mut host = SimHost::new(1 << 30, Duration::ZERO);
        let x = host.mkdir("/x", Some(1 << 20), false).unwrap();
        let mut e = Engine::new(host, engine_config(vm));
        e.attach(p, x, AttachOptions::default()).unwrap();
        e.cgroup_offline(x);
        e.host_mut().rmdir(x).unwrap();
        assert!(e.instances().is_empty());
        assert!(records(&e)
            .iter()
            .any(|r| matches!(r, Record::Detach { policy, reason, .. } if policy == "gone" && reason == "cgroup removed")));
    }
}

#[test]
fn only_checked_policies_attach() {
    // Every engine test holds on the JIT and on the interpreter.
    for vm in VmBackend::ALL {
        let globals = "const volatile u64 knob = 1;";
        let Some(checked) = policy(
            "gate",
            globals,
            "return knob ? BPF_OOM_FAILED : BPF_OOM_BACKOFF;",
        ) else {
            return;
        };
        let mut host = SimHost::new(1 << 30, Duration::ZERO);
        let x = host.mkdir("/x", Some(1 << 20), false).unwrap();
        let mut e = Engine::new(host, engine_config(vm));
        // Changing .rodata after the check invalidates it.
        let mut changed = checked.clone();
        changed.set_global("knob", 0).unwrap();
        assert!(!changed.is_checked());
        let err = e
            .attach(changed.clone(), x, AttachOptions::default())
            .unwrap_err();
        assert!(
            matches!(err, EngineError::NotChecked(ref n) if n == "gate"),
            "{err}"
        );
        // A gate that rejects keeps it out, with the gate's reason.
        let reject = |_: &Object, _: &bpfoom_obj::StructOpsInstance| {
            Err(bpfoom_engine::CheckError::Custom("no thanks".to_string()))
        };
        let err = changed.check(&reject).unwrap_err();
        assert!(err.to_string().contains("no thanks"), "{err}");
        changed.check(&ContractCheck).unwrap();
        e.attach(changed, x, AttachOptions::default()).unwrap();
    }
}

/// Compiles a bpf_psi_ops policy from its callback bodies.
fn psi_policy(name: &str, init: &str, online: &str, offline: &str) -> Option<Policy> {
    bpfoom_testutil::require_clang().then_some(())?;
    let src = format!(
        "{HEADER}\
         SEC(\"struct_ops.s/init\")\nint BPF_PROG({name}_init, struct bpf_psi *psi)\n{{\n{init}\n}}\n\
         SEC(\"struct_ops.s/handle_psi_event\")\n\
         void BPF_PROG({name}_event, struct bpf_psi *psi, struct psi_trigger *t)\n{{\n}}\n\
         SEC(\"struct_ops.s/handle_cgroup_online\")\n\
         void BPF_PROG({name}_online, struct bpf_psi *psi, u64 cgroup_id)\n{{\n{online}\n}}\n\
         SEC(\"struct_ops.s/handle_cgroup_offline\")\n\
         void BPF_PROG({name}_offline, struct bpf_psi *psi, u64 cgroup_id)\n{{\n{offline}\n}}\n\
         SEC(\".struct_ops.link\")\nstruct bpf_psi_ops {name} = {{\n\
         .init = (void *){name}_init,\n.handle_psi_event = (void *){name}_event,\n\
         .handle_cgroup_online = (void *){name}_online,\n\
         .handle_cgroup_offline = (void *){name}_offline,\n.name = \"{name}\",\n}};\n"
    );
    let obj = bpfoom_testutil::compile_str(name, &src, &[]).unwrap_or_else(|e| panic!("{e}"));
    let obj = Object::from_path(obj).unwrap();
    Some(Policy::load(obj, None, &ContractCheck).unwrap())
}

#[test]
fn psi_init_online_offline_and_trigger_limits() {
    // Every engine test holds on the JIT and on the interpreter.
    for vm in VmBackend::ALL {
        // A window below the kernel's 500ms minimum is refused with -EINVAL.
        let init =
            "int bad = bpf_psi_create_trigger(psi, 0, PSI_MEM | BPF_PSI_FULL, 1000, 1000);\n\
                    bpf_printk(\"bad window %d\", bad);\n\
                    return bpf_psi_create_trigger(psi, 0, PSI_MEM, 100000, 1000000);";
        let Some(p) = psi_policy(
            "lifecycle",
            init,
            "bpf_printk(\"online %llu\", cgroup_id);",
            "bpf_printk(\"offline %llu\", cgroup_id);",
        ) else {
            return;
        };
        let Some(failing) = psi_policy("failing", "return -22;", "", "") else {
            return;
        };
        let mut host = SimHost::new(1 << 30, Duration::ZERO);
        let job = host.mkdir("/job", None, false).unwrap();
        let mut e = Engine::new(host, engine_config(vm));
        let err = e.attach(failing, 1, AttachOptions::default()).unwrap_err();
        assert!(
            matches!(
                &err,
                EngineError::InitFailed {
                    why: bpfoom_engine::InitFailure::Returned(-22),
                    ..
                }
            ),
            "{err}"
        );
        e.attach(p, 1, AttachOptions::default()).unwrap();
        let x = e.host_mut().mkdir("/job/x", None, false).unwrap();
        e.cgroup_online(x);
        e.cgroup_offline(x);
        e.host_mut().rmdir(x).unwrap();
        let printk: Vec<String> = records(&e)
            .into_iter()
            .filter_map(|r| match r {
                Record::Printk { message, .. } => Some(message),
                _ => None,
            })
            .collect();
        assert_eq!(
            printk,
            [
                "bad window -22",
                &format!("online {x}"),
                &format!("offline {x}")
            ]
        );
        let triggers = records(&e)
            .iter()
            .filter(|r| matches!(r, Record::PsiTrigger { kind, cgroup, .. } if kind == "some" && cgroup == "/"))
            .count();
        assert_eq!(triggers, 1);
        assert_eq!(job, 2);
    }
}

#[test]
fn backoff_budget_is_spent_then_refilled_when_memory_is_freed() {
    // Every engine test holds on the JIT and on the interpreter.
    for vm in VmBackend::ALL {
        let Some(p) = policy("always_backoff", "", "return BPF_OOM_BACKOFF;") else {
            return;
        };
        let (host, job) = one_job();
        let mut e = Engine::new(host, engine_config(vm));
        let opts = AttachOptions {
            backoff_budget: 2,
            backoff_timeout: Duration::from_millis(30),
            limit_reserve: 0,
        };
        e.attach(p, job, opts).unwrap();
        // The OOM holds while a 20M charge to /job does not fit.
        e.host_mut().set_pending(Some((job, 20 << 20)));
        let start = e.host().now();
        // Nothing frees memory: two honoured waits, then FAILED and the kernel kills.
        assert_eq!(e.out_of_memory(Some(job)), OomOutcome::Kernel(vec![10]));
        assert_eq!(
            e.host().now() - start,
            Duration::from_millis(60),
            "budget x timeout"
        );
        let honoured: Vec<bool> = records(&e)
            .into_iter()
            .filter_map(|r| match r {
                Record::Backoff { honoured, .. } => Some(honoured),
                _ => None,
            })
            .collect();
        assert_eq!(honoured, [true, true, false]);
        // The kill freed memory: the budget is full again.
        assert_eq!(e.instances()[0].backoff_budget_left, 2);
    }
}
