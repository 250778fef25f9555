//! The helpers real policies use beyond maps and time: bpf_loop,
//! bpf_probe_read_kernel(_str), bpf_strncmp and bpf_spin_lock/unlock, with
//! Linux's results (including the error cases).
#![allow(clippy::unwrap_used)]

use bpfoom_insn::opcode::BPF_PSEUDO_FUNC;
use bpfoom_insn::{assemble, Insn};
use bpfoom_vm::{MapKind, MapSpec, Perm, Vm, VmError};

const EFAULT: u64 = -14i64 as u64;
const ERANGE: u64 = -34i64 as u64;
const EINVAL: u64 = -22i64 as u64;
const E2BIG: u64 = -7i64 as u64;

/// Assembles `src`; the `lddw %rN, 0x7777` becomes a `BPF_PSEUDO_FUNC`
/// reference to instruction `func_at`.
fn prog(src: &str, func_at: Option<usize>) -> Vec<Insn> {
    let mut p = assemble(src).expect("asm");
    if let Some(target) = func_at {
        let at = p
            .iter()
            .position(|i| i.code == 0x18 && i.imm == 0x7777)
            .expect("lddw %rN, 0x7777 marks the callback reference");
        p[at].src = BPF_PSEUDO_FUNC;
        p[at].imm = target as i32 - at as i32 - 1;
    }
    p
}

fn run(
    maps: Vec<MapSpec>,
    p: &[Insn],
    args: impl FnOnce(&mut Vm) -> [u64; 5],
) -> (Vm, Result<u64, VmError>) {
    let mut vm = Vm::new(maps).expect("maps");
    let id = vm.load(p).expect("load");
    let a = args(&mut vm);
    let r = vm.run_with_args(id, a, &mut ());
    (vm, r)
}

/// Main: sum = 0; r = bpf_loop(r6, cb, &sum, r7); return r * 1000 + sum.
/// cb(i, ctx): *ctx += i; return i == 3.
const LOOP: &str = "mov %r6, %r1\nmov %r7, %r2\nstdw [%r10-8], 0\n\
    mov %r1, %r6\nlddw %r2, 0x7777\nmov %r3, %r10\nadd %r3, -8\nmov %r4, %r7\ncall 181\n\
    mul %r0, 1000\nldxdw %r1, [%r10-8]\nadd %r0, %r1\nexit\n\
    ldxdw %r3, [%r2]\nadd %r3, %r1\nstxdw [%r2], %r3\nmov %r0, 0\njne %r1, 3, +1\nmov %r0, 1\nexit";
const LOOP_CB: usize = 14;

#[test]
fn bpf_loop_calls_back_until_one() {
    let p = prog(LOOP, Some(LOOP_CB));
    // Stopped by the callback at index 3: result i + 1 = 4, sum 0+1+2+3.
    let (vm, r) = run(vec![], &p, |_| [10, 0, 0, 0, 0]);
    assert_eq!(r, Ok(4006));
    // 12 main instructions, then 4 calls of 6 or 7 instructions.
    assert_eq!(vm.last_run_insns(), 13 + 6 * 3 + 7);
    // Fewer loops than the callback needs to stop: nr_loops calls.
    let (_, r) = run(vec![], &p, |_| [2, 0, 0, 0, 0]);
    assert_eq!(r, Ok(2001));
    let (_, r) = run(vec![], &p, |_| [0, 0, 0, 0, 0]);
    assert_eq!(r, Ok(0));
}

#[test]
fn bpf_loop_errors_as_linux() {
    let p = prog(LOOP, Some(LOOP_CB));
    let (_, r) = run(vec![], &p, |_| [10, 1, 0, 0, 0]);
    assert_eq!(r, Ok(EINVAL.wrapping_mul(1000)));
    let (_, r) = run(vec![], &p, |_| [(1 << 23) + 1, 0, 0, 0, 0]);
    assert_eq!(r, Ok(E2BIG.wrapping_mul(1000)));
    // nr_loops is a u32: the high half is ignored.
    let (_, r) = run(vec![], &p, |_| [(1 << 32) | 2, 0, 0, 0, 0]);
    assert_eq!(r, Ok(2001));
    // Not a function: the run stops.
    let bad = assemble("mov %r1, 1\nmov %r2, 0\nmov %r3, 0\nmov %r4, 0\ncall 181\nexit").unwrap();
    let (_, r) = run(vec![], &bad, |_| [0; 5]);
    assert!(matches!(r, Err(VmError::Helper { id: 181, .. })), "{r:?}");
}

#[test]
fn bpf_loop_budget_and_depth() {
    // A callback that never stops, 8M times: the budget ends it.
    let p = prog(
        "mov %r1, 8388608\nlddw %r2, 0x7777\nmov %r3, 0\nmov %r4, 0\ncall 181\nexit\nmov %r0, 0\nexit",
        Some(7),
    );
    let mut vm = Vm::new(vec![]).unwrap();
    vm.set_budget(10_000);
    let id = vm.load(&p).unwrap();
    assert!(matches!(
        vm.run_with_args(id, [0; 5], &mut ()),
        Err(VmError::Budget { .. })
    ));
    // A callback that calls bpf_loop with itself: the frame limit ends it.
    let p = prog(
        "mov %r1, 1\nlddw %r2, 0x7777\nmov %r3, 0\nmov %r4, 0\ncall 181\nexit\n\
         mov %r1, 1\nlddw %r2, 0x7777\nmov %r3, 0\nmov %r4, 0\ncall 181\nmov %r0, 0\nexit",
        None,
    );
    let mut p = p;
    for (at, i) in p.clone().iter().enumerate() {
        if i.code == 0x18 && i.imm == 0x7777 {
            p[at].src = BPF_PSEUDO_FUNC;
            p[at].imm = 7 - at as i32 - 1;
        }
    }
    let (_, r) = run(vec![], &p, |_| [0; 5]);
    assert!(matches!(r, Err(VmError::CallDepth { .. })), "{r:?}");
}

/// r1 = dst (stack), r2 = size, r3 = src; returns the helper's result, with
/// the 16 destination bytes copied to a map value for inspection.
fn read_helper(id: u32) -> Vec<Insn> {
    assemble(&format!(
        "stdw [%r10-16], -1\nstdw [%r10-8], -1\nmov %r6, %r1\nmov %r3, %r2\nmov %r2, %r6\n\
         mov %r1, %r10\nadd %r1, -16\ncall {id}\n\
         ldmapvalue %r1, 0, 0\nldxdw %r2, [%r10-16]\nstxdw [%r1], %r2\nldxdw %r2, [%r10-8]\nstxdw [%r1+8], %r2\nexit"
    ))
    .unwrap()
}

fn out_map() -> MapSpec {
    MapSpec {
        name: ".bss".into(),
        kind: MapKind::Array,
        key_size: 4,
        value_size: 16,
        max_entries: 1,
        ..Default::default()
    }
}

fn out(vm: &Vm) -> Vec<u8> {
    vm.map(0)
        .unwrap()
        .get(&0u32.to_le_bytes())
        .unwrap()
        .unwrap()
        .to_vec()
}

#[test]
fn probe_read_kernel_is_bounded_by_the_object() {
    let p = read_helper(113);
    let obj: Vec<u8> = (1..=12).collect();
    // The whole read inside the object.
    let (vm, r) = run(vec![out_map()], &p, |vm| {
        let (_, a) = vm.add_object(&obj, Perm::ReadOnly);
        [8, a + 2, 0, 0, 0]
    });
    assert_eq!(r, Ok(0));
    assert_eq!(&out(&vm)[..9], &[3, 4, 5, 6, 7, 8, 9, 10, 0xff]);
    // One byte past its end: a fault, dst zeroed.
    let (vm, r) = run(vec![out_map()], &p, |vm| {
        let (_, a) = vm.add_object(&obj, Perm::ReadOnly);
        [8, a + 5, 0, 0, 0]
    });
    assert_eq!(r, Ok(EFAULT));
    assert_eq!(&out(&vm)[..9], &[0, 0, 0, 0, 0, 0, 0, 0, 0xff]);
    // A NULL walk (a user address in Linux): -ERANGE.
    let (_, r) = run(vec![out_map()], &p, |_| [4, 16, 0, 0, 0]);
    assert_eq!(r, Ok(ERANGE));
    // Size 0 reads nothing and succeeds, even from nowhere.
    let (vm, r) = run(vec![out_map()], &p, |_| [0, 0x1234_5678, 0, 0, 0]);
    assert_eq!(r, Ok(0));
    assert_eq!(out(&vm)[0], 0xff);
}

#[test]
fn probe_read_kernel_str_copies_with_the_nul() {
    let p = read_helper(115);
    let comm = b"systemd\0\0\0\0\0\0\0\0\0";
    let (vm, r) = run(vec![out_map()], &p, |vm| {
        let (_, a) = vm.add_object(comm, Perm::ReadOnly);
        [16, a, 0, 0, 0]
    });
    assert_eq!(r, Ok(8));
    assert_eq!(&out(&vm)[..9], b"systemd\0\xff");
    // Truncated: size - 1 bytes and a NUL, result size.
    let (vm, r) = run(vec![out_map()], &p, |vm| {
        let (_, a) = vm.add_object(comm, Perm::ReadOnly);
        [4, a, 0, 0, 0]
    });
    assert_eq!(r, Ok(4));
    assert_eq!(&out(&vm)[..5], b"sys\0\xff");
    // No NUL before the object ends: the next byte faults.
    let (vm, r) = run(vec![out_map()], &p, |vm| {
        let (_, a) = vm.add_object(b"abcdef", Perm::ReadOnly);
        [16, a, 0, 0, 0]
    });
    assert_eq!(r, Ok(EFAULT));
    assert_eq!(out(&vm), vec![0; 16]);
}

#[test]
fn strncmp_as_the_kernel() {
    // r1 = s1 object, r2 = n, r3 = s2 object.
    let p = assemble("mov %r6, %r2\nmov %r2, %r6\ncall 182\nexit").unwrap();
    let cmp = |a: &[u8], n: u64, b: &[u8]| {
        let (_, r) = run(vec![], &p, |vm| {
            let (_, x) = vm.add_object(a, Perm::ReadOnly);
            let (_, y) = vm.add_object(b, Perm::ReadOnly);
            [x, n, y, 0, 0]
        });
        r.unwrap() as i64
    };
    assert_eq!(cmp(b"systemd\0xxxxxxxx", 16, b"systemd\0"), 0);
    assert_eq!(cmp(b"systemd-udevd\0\0\0", 16, b"systemd\0"), 1);
    assert_eq!(cmp(b"systemd-udevd\0\0\0", 7, b"systemd\0"), 0);
    assert_eq!(cmp(b"sshd\0\0\0\0", 8, b"systemd\0"), -1);
    assert_eq!(cmp(b"abc", 3, b"abcd\0"), 0);
}

#[test]
fn spin_lock_pairs() {
    let lock_map = MapSpec {
        name: "locked".into(),
        kind: MapKind::Array,
        key_size: 4,
        value_size: 16,
        max_entries: 1,
        ..Default::default()
    };
    let ok = assemble(
        "ldmapvalue %r6, 0, 8\nmov %r1, %r6\ncall 93\nmov %r1, %r6\ncall 94\nmov %r1, %r6\ncall 93\nmov %r1, %r6\ncall 94\nmov %r0, 7\nexit",
    )
    .unwrap();
    let (vm, r) = run(vec![lock_map.clone()], &ok, |_| [0; 5]);
    assert_eq!(r, Ok(7));
    assert_eq!(out(&vm), vec![0; 16]);
    let twice =
        assemble("ldmapvalue %r6, 0, 8\nmov %r1, %r6\ncall 93\nmov %r1, %r6\ncall 93\nexit")
            .unwrap();
    let (_, r) = run(vec![lock_map.clone()], &twice, |_| [0; 5]);
    assert!(matches!(r, Err(VmError::Helper { id: 93, .. })), "{r:?}");
    // A run that stops with the lock held (here: over its budget) leaves
    // it free for the next run.
    let stuck = assemble("ldmapvalue %r1, 0, 8\ncall 93\nja -1").unwrap();
    let mut vm = Vm::new(vec![lock_map.clone()]).unwrap();
    vm.set_budget(100);
    let stuck = vm.load(&stuck).unwrap();
    let again = vm.load(&ok).unwrap();
    assert!(matches!(
        vm.run_with_args(stuck, [0; 5], &mut ()),
        Err(VmError::Budget { .. })
    ));
    assert_eq!(vm.run_with_args(again, [0; 5], &mut ()), Ok(7));
    let unheld = assemble("ldmapvalue %r1, 0, 8\ncall 94\nexit").unwrap();
    let (_, r) = run(vec![lock_map.clone()], &unheld, |_| [0; 5]);
    assert!(matches!(r, Err(VmError::Helper { id: 94, .. })), "{r:?}");
    let on_stack = assemble("stdw [%r10-8], 0\nmov %r1, %r10\nadd %r1, -8\ncall 93\nexit").unwrap();
    let (_, r) = run(vec![lock_map], &on_stack, |_| [0; 5]);
    assert!(matches!(r, Err(VmError::Helper { id: 93, .. })), "{r:?}");
}
