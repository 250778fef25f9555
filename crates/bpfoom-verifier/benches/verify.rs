#![allow(missing_docs)] // criterion's macros generate undocumented items

//! Verification time of hand-built programs (the example policies are
//! benchmarked through the CLI crate).

use bpfoom_abi::kfuncs;
use bpfoom_verifier::{verify, Hook, Insn, MapInfo, MapKind, Options, ProgramInput};
use criterion::{criterion_group, criterion_main, Criterion};

fn k(name: &str) -> u32 {
    kfuncs::by_name(name).map(|k| k.id).unwrap_or(0)
}

fn programs() -> Vec<(&'static str, Vec<Insn>)> {
    let asm = |s: &str| bpfoom_insn::asm::assemble(s).expect("assembles");
    // 2000 straight-line ALU instructions.
    let mut straight = String::from("mov %r0, 0\nmov %r2, 1\n");
    for i in 0..1000 {
        straight += &format!("add %r2, {}\nxor %r2, %r0\n", i % 7);
    }
    straight += "and %r2, 1\nmov %r0, %r2\nexit";
    // 64 diamonds in a row: the states must merge at each join.
    let mut diamonds = String::from("ldxdw %r6, [%r1+0]\nldxdw %r7, [%r6+16]\nmov %r0, 0\n");
    for _ in 0..64 {
        diamonds += "jgt %r7, 100, +2\nadd %r7, 1\nja +1\nmov %r7, 0\n";
    }
    diamonds += "exit";
    // An iterator loop over tasks that acquires and releases each one.
    let iter = format!(
        "ldxdw %r6, [%r1+0]\nldxdw %r7, [%r1+8]\nmov %r8, 0\nmov %r1, %r10\nadd %r1, -8\nmov %r2, %r7\nmov %r3, 1\n\
         call kfunc {new}\nloop:\nmov %r1, %r10\nadd %r1, -8\ncall kfunc {next}\njeq %r0, 0, out\n\
         mov %r1, %r0\ncall kfunc {acq}\njeq %r0, 0, loop\nmov %r9, %r0\nmov %r1, %r6\nmov %r2, %r9\n\
         ldmapvalue %r3, 0, 0\ncall kfunc {kill}\njne %r0, 0, skip\nmov %r8, 1\nskip:\nmov %r1, %r9\n\
         call kfunc {rel}\nja loop\nout:\nmov %r1, %r10\nadd %r1, -8\ncall kfunc {destroy}\nmov %r0, %r8\nexit",
        new = k("bpf_iter_css_task_new"),
        next = k("bpf_iter_css_task_next"),
        acq = k("bpf_task_acquire"),
        kill = k("bpf_oom_kill_process"),
        rel = k("bpf_task_release"),
        destroy = k("bpf_iter_css_task_destroy"),
    );
    // A bounded loop of 64 rounds indexing a map value.
    let bounded = "stw [%r10-4], 0\nldmapfd %r1, 1\nmov %r2, %r10\nadd %r2, -4\ncall 1\njeq %r0, 0, done\n\
                   mov %r6, 0\nmov %r7, 0\nloop:\nmov %r1, %r6\nand %r1, 7\nlsh %r1, 3\nmov %r2, %r0\nadd %r2, %r1\n\
                   ldxdw %r3, [%r2+0]\nadd %r7, %r3\nadd %r6, 1\njlt %r6, 64, loop\ndone:\nmov %r0, 0\nexit";
    vec![
        ("straight_2000", asm(&straight)),
        ("diamonds_64", asm(&diamonds)),
        ("task_iter_kill", asm(&iter)),
        ("bounded_loop_64", asm(bounded)),
    ]
}

fn bench(c: &mut Criterion) {
    let maps = vec![
        MapInfo {
            name: ".rodata".into(),
            kind: MapKind::Array,
            key_size: 4,
            value_size: 16,
            max_entries: 1,
            read_only: true,
            initial: Some(b"bench\0\0\0\0\0\0\0\0\0\0\0".to_vec()),
            spin_lock_off: None,
        },
        MapInfo {
            name: "arr".into(),
            kind: MapKind::Array,
            key_size: 4,
            value_size: 64,
            max_entries: 4,
            read_only: false,
            initial: None,
            spin_lock_off: None,
        },
    ];
    let opts = Options::default();
    for (name, insns) in programs() {
        let input = ProgramInput {
            name,
            insns: &insns,
            hook: Hook {
                ops: "bpf_oom_ops",
                member: "handle_out_of_memory",
                form: Default::default(),
            },
            sleepable: true,
            maps: &maps,
            line_info: &[],
            core_access: &[],
        };
        let rep = verify(&input, &opts).unwrap_or_else(|e| panic!("{name}: {e}"));
        eprintln!(
            "{name}: {} insns processed, {} states",
            rep.insns_processed, rep.states
        );
        c.bench_function(name, |b| b.iter(|| verify(&input, &opts)));
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default();
    targets = bench
}
criterion_main!(benches);
