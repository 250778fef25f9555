//! Side-by-side timing of the same programs in our interpreter, our
//! Cranelift JIT (with `--features jit`), the kernel's JIT
//! (`BPF_PROG_TEST_RUN` with `repeat`, kernel-measured duration) and the
//! rbpf interpreter. Run: `cargo bench -p bpfoom-vm [--features jit] --bench interp`.
//!
//! Every program reads and writes a 64-byte buffer through `r6` and the
//! stack; only the first instructions differ (the kernel's XDP version loads
//! the packet pointer from `xdp_md` and bounds-checks it).

use std::hint::black_box;
use std::time::{Duration, Instant};

use bpfoom_insn::{assemble, Insn};
use bpfoom_vm::linux::{available, load_xdp, thread_cpu_ns};
use bpfoom_vm::{Perm, Vm};

const PKT: usize = 64;

struct Bench {
    name: &'static str,
    body: String,
    /// Instructions executed by the common part (prologue excluded).
    executed: u64,
}

/// Nothing but the return: the fixed cost of one run.
fn empty() -> Bench {
    Bench {
        name: "empty (fixed cost per run)",
        body: "mov %r0, 0\nexit\n".into(),
        executed: 2,
    }
}

/// ALU-heavy and loop-free: ~300 mixed 64/32-bit ALU operations.
fn alu_heavy() -> Bench {
    let mut s = String::from(
        "ldxdw %r0, [%r6+0]\nldxdw %r1, [%r6+8]\nldxdw %r2, [%r6+16]\nldxdw %r3, [%r6+24]\n",
    );
    s += "mov %r4, 7\nmov %r5, 11\nmov %r7, 13\nmov %r8, 17\nmov %r9, 19\n";
    let regs = [0, 1, 2, 3, 4, 5, 7, 8, 9];
    let ops = [
        "add", "xor", "mul", "or", "sub", "and", "add32", "xor32", "lsh", "rsh", "arsh", "mul32",
        "mov",
    ];
    // A fixed seed: every run (and every engine) times the same program.
    let mut rng = bpfoom_testutil::Rng::new(0x1234_5678);
    let mut n = 4 + 5;
    for _ in 0..290 {
        let x = rng.next_u64();
        let d = regs[(x >> 33) as usize % regs.len()];
        let sreg = regs[(x >> 40) as usize % regs.len()];
        let op = ops[(x >> 50) as usize % ops.len()];
        let operand = if matches!(op, "lsh" | "rsh" | "arsh") {
            format!("{}", (x >> 20) % 13)
        } else if (x >> 10) & 1 == 0 {
            format!("%r{sreg}")
        } else {
            format!("{}", (x >> 12) as i16)
        };
        s += &format!("{op} %r{d}, {operand}\n");
        n += 1;
    }
    s += "add %r0, %r1\nadd %r0, %r2\nadd %r0, %r3\nadd %r0, %r4\nadd %r0, %r5\nadd %r0, %r7\nadd %r0, %r8\nadd %r0, %r9\n";
    s += "stxdw [%r6+32], %r0\nand %r0, 3\nexit\n";
    n += 11;
    Bench {
        name: "alu-heavy (loop-free)",
        body: s,
        executed: n,
    }
}

/// A bounded loop: 1000 iterations of a small hash step.
fn bounded_loop() -> Bench {
    let iters = 1000;
    let s = format!(
        "ldxdw %r0, [%r6+0]\nmov %r2, 0\nmov %r3, 0x1505\n\
         loop:\nmov %r4, %r3\nlsh %r4, 5\nadd %r3, %r4\nxor %r3, %r2\nadd %r0, %r3\nadd %r2, 1\njlt %r2, {iters}, loop\n\
         stxdw [%r6+32], %r0\nand %r0, 3\nexit\n"
    );
    Bench {
        name: "bounded loop (1000 iters)",
        body: s,
        executed: 3 + 7 * iters + 3,
    }
}

/// Memory-heavy and loop-free: stack and buffer loads/stores of every size.
fn memory_heavy() -> Bench {
    let mut s = String::from("mov %r0, 0\n");
    let mut n = 1;
    for i in 0..25 {
        let o = (i * 8) % 56;
        s += &format!(
            "ldxdw %r1, [%r6+{o}]\nstxdw [%r10-{}], %r1\nldxw %r2, [%r6+{}]\nstxw [%r10-{}], %r2\nldxh %r3, [%r10-{}]\n\
             ldxb %r4, [%r6+{}]\nadd %r0, %r3\nstxb [%r6+{}], %r4\n",
            8 + o,
            o + 4,
            68 + o,
            8 + o,
            i % PKT,
            (i * 3) % PKT
        );
        n += 8;
    }
    s += "ldxdw %r1, [%r10-8]\nadd %r0, %r1\nstxdw [%r6+32], %r0\nand %r0, 3\nexit\n";
    n += 5;
    Bench {
        name: "memory-heavy (loop-free)",
        body: s,
        executed: n,
    }
}

fn program(prologue: &str, body: &str) -> Vec<Insn> {
    assemble(&format!("{prologue}{body}")).unwrap_or_else(|e| panic!("bench program: {e}"))
}

const XDP_PROLOGUE: &str = "ldxw %r6, [%r1+0]\nldxw %r7, [%r1+4]\nmov %r8, %r6\nadd %r8, 64\njle %r8, %r7, +2\nmov %r0, 0\nexit\n";
const FLAT_PROLOGUE: &str = "mov %r6, %r1\n";

/// Thread CPU time per call of `f`: the fastest of `samples` batches of
/// about `batch` each. CPU time rather than wall time, and the minimum rather
/// than the mean, so that other load on the shared machine counts as little
/// as possible.
fn time(batch: Duration, samples: usize, mut f: impl FnMut()) -> f64 {
    let mut n = 1u64;
    loop {
        let t = Instant::now();
        for _ in 0..n {
            f();
        }
        if t.elapsed() >= batch {
            break;
        }
        n *= 2;
    }
    (0..samples)
        .map(|_| {
            let t = thread_cpu_ns();
            for _ in 0..n {
                f();
            }
            (thread_cpu_ns() - t) as f64 / n as f64
        })
        .fold(f64::INFINITY, f64::min)
}

/// Times the program in our JIT (same result and count as the interpreter).
#[cfg(feature = "jit")]
fn jit_time(
    flat: &[Insn],
    pkt: &[u8],
    want: u64,
    count: u64,
    batch: Duration,
    samples: usize,
) -> Option<f64> {
    let mut vm = Vm::new(Vec::new()).expect("vm");
    vm.set_backend(bpfoom_vm::ExecBackend::Jit);
    let id = vm.load(flat).expect("jit load");
    let (_, addr) = vm.add_object(pkt, Perm::ReadWrite);
    let got = vm.run_with_args(id, [addr, 0, 0, 0, 0], &mut ());
    assert_eq!(got, Ok(want), "JIT and interpreter disagree");
    assert_eq!(vm.last_run_insns(), count, "JIT count");
    Some(time(batch, samples, || {
        black_box(
            vm.run_with_args(id, [black_box(addr), 0, 0, 0, 0], &mut ())
                .ok(),
        );
    }))
}

#[cfg(not(feature = "jit"))]
fn jit_time(_: &[Insn], _: &[u8], _: u64, _: u64, _: Duration, _: usize) -> Option<f64> {
    None
}

fn main() {
    let quick = std::env::args().any(|a| a == "--test"); // `cargo test --benches` smoke run
    let (batch, samples) = if quick {
        (Duration::from_millis(1), 2)
    } else {
        (Duration::from_millis(20), 25)
    };
    let kernel = available();
    if let Err(why) = &kernel {
        println!("kernel JIT column skipped: {why}");
    }
    let pkt: Vec<u8> = (0..PKT as u8).map(|i| i.wrapping_mul(37)).collect();
    println!(
        "{:<28} {:>6} {:>11} {:>9} {:>11} {:>11} {:>9} {:>9} {:>9} {:>10} {:>10} {:>10}",
        "program",
        "insns",
        "ours ns",
        "jit ns",
        "kernel ns",
        "rbpf ns",
        "ours/ins",
        "kern/ins",
        "rbpf/ins",
        "ours/kern",
        "jit/kern",
        "rbpf/ours"
    );
    for b in [empty(), alu_heavy(), bounded_loop(), memory_heavy()] {
        let flat = program(FLAT_PROLOGUE, &b.body);
        // Ours.
        let mut vm = Vm::new(Vec::new()).expect("vm");
        let id = vm.load(&flat).expect("load");
        let (_, addr) = vm.add_object(&pkt, Perm::ReadWrite);
        let want = vm
            .run_with_args(id, [addr, 0, 0, 0, 0], &mut ())
            .expect("run");
        // The flat prologue is one instruction.
        assert_eq!(vm.last_run_insns(), b.executed + 1, "{}: count", b.name);
        let ours = time(batch, samples, || {
            black_box(
                vm.run_with_args(id, [black_box(addr), 0, 0, 0, 0], &mut ())
                    .ok(),
            );
        });
        // Our JIT.
        let jit = jit_time(&flat, &pkt, want, b.executed + 1, batch, samples);
        // rbpf interpreter.
        let bytes: Vec<u8> = flat.iter().flat_map(|i| i.to_bytes()).collect();
        let rvm = rbpf::EbpfVmRaw::new(Some(&bytes)).expect("rbpf accepts the program");
        let mut mem = pkt.clone();
        let rb_r0 = rvm.execute_program(&mut mem).expect("rbpf run");
        assert_eq!(rb_r0, want, "{}: rbpf and bpfoom disagree", b.name);
        let mut mem = pkt.clone();
        let rb = time(batch, samples, || {
            black_box(rvm.execute_program(black_box(&mut mem)).ok());
        });
        // Kernel JIT.
        let kern = kernel.as_ref().ok().map(|_| {
            let kp = load_xdp(&program(XDP_PROLOGUE, &b.body)).expect("kernel accepts the program");
            let one = kp.test_run(&pkt, 1).expect("test run");
            assert_eq!(
                one.retval as u64, want,
                "{}: kernel and bpfoom disagree",
                b.name
            );
            let (repeat, samples) = if quick { (100, 2) } else { (20_000, 25) };
            (0..samples)
                .map(|_| kp.test_run(&pkt, repeat).expect("test run").duration_ns as f64)
                .fold(f64::INFINITY, f64::min)
        });
        let e = b.executed as f64;
        let k = |v: Option<f64>, p: usize| v.map_or("-".to_string(), |x| format!("{x:.p$}"));
        let ratio = |a: Option<f64>| match (a, kern) {
            (Some(a), Some(k)) => format!("{:.2}x", a / k),
            _ => "-".into(),
        };
        println!(
            "{:<28} {:>6} {:>11.1} {:>9} {:>11} {:>11.1} {:>9.2} {:>9} {:>9.2} {:>10} {:>10} {:>10.2}",
            b.name,
            b.executed,
            ours,
            k(jit, 1),
            k(kern, 1),
            rb,
            ours / e,
            k(kern.map(|x| x / e), 2),
            rb / e,
            ratio(Some(ours)),
            ratio(jit),
            rb / ours
        );
    }
}
