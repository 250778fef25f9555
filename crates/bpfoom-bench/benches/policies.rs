#![allow(missing_docs)] // criterion's macros generate undocumented items

//! Criterion micro-benchmarks: one OOM invocation of each example
//! `bpf_oom_ops` policy over 1,000 cgroups of 10 processes (engine + sim
//! host), the kernel-model baseline, and each policy's verification.
//! `cargo bench -p bpfoom-bench --bench policies`

use std::time::Duration;

use bpfoom_bench::policy_cost::{self, Sizes, Tree};
use bpfoom_engine::{PolicyCheck, Verifier};
use criterion::{criterion_group, criterion_main, Criterion};

const SIZES: Sizes = Sizes {
    pods: 1000,
    procs: 10,
    iters: 0,
};

fn time(tree: &mut Tree, iters: u64) -> Duration {
    (0..iters)
        .map(|_| tree.timed_oom().expect("the OOM acts"))
        .sum()
}

fn invocation(c: &mut Criterion) {
    let mut g = c.benchmark_group("oom_invocation_1000_cgroups");
    g.sample_size(20).measurement_time(Duration::from_secs(5));
    let mut base = Tree::new(SIZES).expect("tree");
    g.bench_function("kernel_model_baseline", |b| {
        b.iter_custom(|n| time(&mut base, n))
    });
    for name in ["largest_leaf", "raise_then_kill", "oomd_like", "k8s_qos"] {
        let mut t = policy_cost::attached(name, SIZES).expect("policy attaches");
        g.bench_function(name, |b| b.iter_custom(|n| time(&mut t, n)));
    }
    g.finish();
}

fn verification(c: &mut Criterion) {
    let mut g = c.benchmark_group("verification");
    for &name in policy_cost::POLICIES {
        let path = policy_cost::compile(name).expect("compiles");
        let obj = bpfoom_obj::Object::from_path(&path).expect("loads");
        let inst = obj.struct_ops[0].clone();
        g.bench_function(name, |b| {
            b.iter(|| Verifier::default().check(&obj, &inst).expect("verifies"))
        });
    }
    g.finish();
}

criterion_group!(benches, invocation, verification);
criterion_main!(benches);
