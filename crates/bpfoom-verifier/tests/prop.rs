//! The verifier never panics or hangs on random or mutated programs.

mod common;

use std::time::{Duration, Instant};

use bpfoom_insn::Insn;
use bpfoom_verifier::Options;
use common::*;
use proptest::prelude::*;

/// A small budget keeps every case fast; what matters is that the verifier
/// returns (a verdict or a "too complex" error) instead of panicking.
fn opts() -> Options {
    Options {
        log_level: 0,
        max_insns: 20_000,
        ..Options::default()
    }
}

fn seeds() -> Vec<Vec<Insn>> {
    [
        "mov %r0, 0\nexit",
        "stw [%r10-4], 0\nldmapfd %r1, 0\nmov %r2, %r10\nadd %r2, -4\ncall 1\njeq %r0, 0, +2\nldxdw %r1, [%r0+8]\nstxdw [%r0+0], %r1\nmov %r0, 0\nexit",
        "ldxdw %r6, [%r1+0]\nldxdw %r7, [%r1+8]\nmov %r1, %r10\nadd %r1, -8\nmov %r2, %r7\nmov %r3, 1\ncall kfunc {k:bpf_iter_css_task_new}\nloop:\nmov %r1, %r10\nadd %r1, -8\ncall kfunc {k:bpf_iter_css_task_next}\njeq %r0, 0, out\nldxdw %r2, [%r0+{o:task_struct.signal}]\nja loop\nout:\nmov %r1, %r10\nadd %r1, -8\ncall kfunc {k:bpf_iter_css_task_destroy}\nmov %r0, 0\nexit",
        "mov %r1, 0\nmov %r0, 0\nloop:\nadd %r1, 1\njlt %r1, 10, loop\ncall local f\nexit\nf:\nmov %r0, 1\nexit",
        "call kfunc {k:bpf_get_root_mem_cgroup}\njeq %r0, 0, done\nmov %r1, %r0\ncall kfunc {k:bpf_put_mem_cgroup}\ndone:\nmov %r0, 0\nexit",
    ]
    .iter()
    .map(|s| asm(s))
    .collect()
}

fn arb_insn() -> impl Strategy<Value = Insn> {
    // Bias opcodes towards valid ones so the interpreter, not only the
    // structural pass, sees the inputs.
    let code = prop_oneof![
        any::<u8>(),
        prop::sample::select(vec![
            0x07u8, 0x0f, 0x17, 0x1f, 0x27, 0x2f, 0x37, 0x3f, 0x47, 0x4f, 0x57, 0x5f, 0x67, 0x6f,
            0x77, 0x7f, 0x87, 0x97, 0x9f, 0xa7, 0xaf, 0xb7, 0xbf, 0xc7, 0xcf, 0xd4, 0xdc, 0x04,
            0x0c, 0xb4, 0xbc, 0x05, 0x15, 0x1d, 0x25, 0x2d, 0x35, 0x45, 0x55, 0x65, 0xa5, 0xb5,
            0xc5, 0xd5, 0x16, 0x26, 0xa6, 0x85, 0x95, 0x18, 0x61, 0x69, 0x71, 0x79, 0x62, 0x6a,
            0x72, 0x7a, 0x63, 0x6b, 0x73, 0x7b, 0xdb, 0xc3, 0x91, 0x89,
        ]),
    ];
    (
        code,
        0u8..=11,
        0u8..=11,
        -12i16..12,
        prop_oneof![-600i32..600, any::<i32>()],
    )
        .prop_map(|(code, dst, src, off, imm)| Insn::new(code, dst, src, off, imm))
}

fn run_all(insns: &[Insn]) {
    let start = Instant::now();
    for ctx in [OOM, OOM_NS, OFFLINE, PSI_EVENT] {
        let _ = run_insns(insns, ctx, &opts());
    }
    assert!(
        start.elapsed() < Duration::from_secs(20),
        "took {:?}",
        start.elapsed()
    );
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn random_programs_never_panic(insns in prop::collection::vec(arb_insn(), 1..40)) {
        run_all(&insns);
    }

    #[test]
    fn mutated_programs_never_panic(
        seed in 0usize..5,
        muts in prop::collection::vec((any::<usize>(), arb_insn(), 0u8..4), 1..6),
    ) {
        let mut insns = seeds()[seed].clone();
        for (at, ins, how) in muts {
            let i = at % insns.len();
            match how {
                0 => insns[i] = ins,
                1 => insns[i].off = ins.off,
                2 => insns[i].imm = ins.imm,
                _ => insns.insert(i, ins),
            }
        }
        run_all(&insns);
    }
}

mod gen;

/// Runs a generated program on bpfoom-vm, the executor policies really run
/// on, with the one array map the generator uses. The VM checks every
/// access against its regions (stack, map value), the budget and the end of
/// the program on its own, with none of the verifier's code (`eval_alu`
/// included), so a verifier bug and a checker bug cannot cancel out.
fn runs_on_vm(insns: &[Insn]) -> Result<u64, String> {
    let mut vm = bpfoom_vm::Vm::new(vec![bpfoom_vm::MapSpec {
        name: "arr".into(),
        kind: bpfoom_vm::MapKind::Array,
        key_size: 4,
        value_size: gen::MAP_VALUE_SIZE as u32,
        max_entries: 1,
        ..Default::default()
    }])
    .map_err(|e| e.to_string())?;
    // Accepted programs end within the verifier's 50,000 explored
    // instructions; a run that needs far more loops without end.
    vm.set_budget(1_000_000);
    let p = vm.load(insns).map_err(|e| format!("load: {e}"))?;
    vm.run_with_args(p, [0; 5], &mut ())
        .map_err(|e| format!("run: {e}"))
}

/// Soundness against concrete execution: every generated program that
/// bpfoom accepts runs (its single execution, on bpfoom-vm) without a
/// memory fault, a budget overrun or falling off its end.
#[test]
fn accepted_generated_programs_run_safely() {
    // BPFOOM_GEN_SEED / BPFOOM_GEN_N explore other program sets.
    let env = |k: &str| std::env::var(k).ok().and_then(|v| v.parse::<u64>().ok());
    let mut rng = gen::Rng::new(env("BPFOOM_GEN_SEED").unwrap_or(0x0123_4567_89ab_cdef));
    let total = env("BPFOOM_GEN_N").unwrap_or(3000);
    // Jumps into a loop body can skip its counter reset: such programs run
    // out of budget (and are rejected); a small budget keeps that quick.
    let opts = Options {
        log_level: 0,
        max_insns: 50_000,
        ..Options::default()
    };
    let (mut accepted, mut bad) = (0, Vec::new());
    let maps = vec![bpfoom_verifier::MapInfo {
        name: "arr".into(),
        kind: bpfoom_verifier::MapKind::Array,
        key_size: 4,
        value_size: gen::MAP_VALUE_SIZE as u32,
        max_entries: 1,
        read_only: false,
        initial: None,
        spin_lock_off: None,
    }];
    for n in 0..total {
        let insns = gen::generate(&mut rng);
        let input = bpfoom_verifier::ProgramInput {
            name: "gen",
            insns: &insns,
            hook: bpfoom_verifier::Hook {
                ops: "bpf_psi_ops",
                member: "init",
                form: Default::default(),
            },
            sleepable: false,
            maps: &maps,
            line_info: &[],
            core_access: &[],
        };
        if bpfoom_verifier::verify(&input, &opts).is_ok() {
            accepted += 1;
            if let Err(why) = runs_on_vm(&insns) {
                bad.push(format!(
                    "program {n}: {why}\n{}",
                    bpfoom_insn::disasm::disassemble(&insns).join("\n")
                ));
            }
        }
    }
    assert!(bad.is_empty(), "accepted but unsafe:\n{}", bad.join("\n\n"));
    assert!(accepted > total / 6, "{accepted}");
}

/// The example policies, compiled and loaded once (empty without clang).
fn policies() -> &'static [bpfoom_obj::Object] {
    static P: std::sync::OnceLock<Vec<bpfoom_obj::Object>> = std::sync::OnceLock::new();
    P.get_or_init(|| {
        if !bpfoom_testutil::require(
            bpfoom_testutil::clang().is_some(),
            "(part) clang not found, mutating hand-written programs only",
        ) {
            return Vec::new();
        }
        bpfoom_testutil::policy_sources()
            .iter()
            .filter_map(|src| bpfoom_testutil::compile(src, &[]).ok())
            .filter_map(|p| bpfoom_obj::Object::parse(&std::fs::read(p).ok()?).ok())
            .collect()
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// Mutated real policies (typed context, kfuncs, iterators, maps) never
    /// make the verifier panic or hang.
    #[test]
    fn mutated_policies_never_panic(
        pick in any::<usize>(),
        muts in prop::collection::vec((any::<usize>(), arb_insn(), 0u8..4), 1..4),
    ) {
        let objs = policies();
        if !objs.is_empty() {
            let mut obj = objs[pick % objs.len()].clone();
            let prog = pick / 7 % obj.programs.len().max(1);
            if let Some(p) = obj.programs.get_mut(prog) {
                for (at, ins, how) in muts {
                    let i = at % p.insns.len().max(1);
                    match how {
                        0 => p.insns[i] = ins,
                        1 => p.insns[i].off = ins.off,
                        2 => p.insns[i].imm = ins.imm,
                        _ => p.insns[i].src = ins.src,
                    }
                }
            }
            let start = Instant::now();
            let _ = bpfoom_verifier::verify_object(&obj, &opts());
            prop_assert!(start.elapsed() < Duration::from_secs(20));
        }
    }
}
