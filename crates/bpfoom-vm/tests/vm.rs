//! Behaviour beyond the conformance suite: maps, ring buffers, host calls,
//! memory checks, budget and call frames.

use bpfoom_insn::assemble;
use bpfoom_vm::mem::FaultReason;
use bpfoom_vm::{
    CallError, CallHandler, Env, ExecBackend, MapError, MapKind, MapSpec, Perm, Vm, VmError,
};

/// Every engine this build has.
fn engines() -> Vec<ExecBackend> {
    vec![
        ExecBackend::Interpreter,
        #[cfg(feature = "jit")]
        ExecBackend::Jit,
    ]
}

thread_local! {
    /// The engine `vm_with` uses; tests that run per engine set it.
    static ENGINE: std::cell::Cell<ExecBackend> = const { std::cell::Cell::new(ExecBackend::Interpreter) };
}

/// Runs `f` once per engine, with `vm_with` building VMs of that engine.
fn per_engine(f: impl Fn()) {
    for e in engines() {
        ENGINE.with(|c| c.set(e));
        f();
    }
}

/// A VM of the current engine.
fn new_vm(maps: Vec<MapSpec>) -> Result<Vm, MapError> {
    let mut vm = Vm::new(maps)?;
    vm.set_backend(ENGINE.with(|c| c.get()));
    Ok(vm)
}

fn vm_with(maps: Vec<MapSpec>, src: &str) -> (Vm, bpfoom_vm::ProgId) {
    let mut vm = new_vm(maps).expect("maps");
    vm.set_backend(ENGINE.with(|c| c.get()));
    let p = vm.load(&assemble(src).expect("asm")).expect("load");
    (vm, p)
}

fn spec(name: &str, kind: MapKind, key: u32, value: u32, n: u32) -> MapSpec {
    MapSpec {
        name: name.into(),
        kind,
        key_size: key,
        value_size: value,
        max_entries: n,
        ..Default::default()
    }
}

#[test]
fn vm_can_move_between_threads() {
    fn assert_send<T: Send>() {}
    assert_send::<Vm>();
}

#[test]
fn huge_budget_does_not_wrap() {
    per_engine(|| {
        let (mut vm, p) = vm_with(vec![], "mov %r0, 3\nsub %r0, 1\njne %r0, 0, -2\nexit");
        vm.set_budget(u64::MAX);
        assert_eq!(vm.run(p, &[], &mut ()), Ok(0));
    });
}

#[test]
fn ctx_array_and_stack() {
    per_engine(|| {
        let (mut vm, p) = vm_with(
            vec![],
            "ldxdw %r2, [%r1+8]\nstxdw [%r10-8], %r2\nldxdw %r0, [%r10-8]\nadd %r0, 1\nexit",
        );
        assert_eq!(vm.run(p, &[5, 41], &mut ()), Ok(42));
    });
}

#[test]
fn ctx_is_read_only_and_bounded() {
    per_engine(|| {
        let (mut vm, p) = vm_with(vec![], "stdw [%r1+0], 1\nexit");
        let e = vm.run(p, &[5], &mut ()).expect_err("ctx write");
        assert!(
            matches!(e, VmError::Memory { pc: 0, source } if matches!(source.reason, FaultReason::ReadOnly(_)))
        );
        let (mut vm, p) = vm_with(vec![], "ldxdw %r0, [%r1+8]\nexit");
        assert!(matches!(
            vm.run(p, &[5], &mut ()),
            Err(VmError::Memory { pc: 0, .. })
        ));
    });
}

#[test]
fn wild_pointers_fault() {
    per_engine(|| {
        for src in [
            "lddw %r1, 0x1000\nldxb %r0, [%r1]\nexit",
            "stb [%r10+0], 1\nexit",
            "ldxdw %r0, [%r10-4097]\nexit",
        ] {
            let (mut vm, p) = vm_with(vec![], src);
            assert!(
                matches!(vm.run(p, &[], &mut ()), Err(VmError::Memory { .. })),
                "{src}"
            );
        }
    });
}

#[test]
fn array_and_global_data_maps() {
    per_engine(|| {
        let mut g = spec(".data", MapKind::Array, 4, 8, 1);
        g.initial_data = 7u64.to_le_bytes().to_vec();
        let src = "ldmapvalue %r1, 1, 0\nldxdw %r6, [%r1]\nadd %r6, 1\nstxdw [%r1], %r6\n\
                   stw [%r10-4], 2\nldmapfd %r1, 0\nmov %r2, %r10\nadd %r2, -4\ncall 1\njeq %r0, 0, +3\n\
                   ldxdw %r1, [%r0]\nadd %r1, %r6\nstxdw [%r0], %r1\nmov %r0, %r6\nexit";
        let (mut vm, p) = vm_with(vec![spec("counters", MapKind::Array, 4, 8, 4), g], src);
        assert_eq!(vm.run(p, &[], &mut ()), Ok(8));
        assert_eq!(vm.run(p, &[], &mut ()), Ok(9));
        let m = vm.map_mut(0).expect("map");
        assert_eq!(
            m.lookup(&2u32.to_le_bytes()).expect("ok"),
            Some(&17u64.to_le_bytes()[..])
        );
        assert_eq!(m.lookup(&9u32.to_le_bytes()).expect("ok"), None);
        assert_eq!(
            m.update(&0u32.to_le_bytes(), &[1; 8], bpfoom_vm::BPF_NOEXIST),
            Err(MapError::Exists)
        );
        assert_eq!(
            vm.map_mut(1)
                .and_then(|m| m.global_data_mut())
                .map(|d| d.to_vec()),
            Some(9u64.to_le_bytes().to_vec())
        );
    });
}

#[test]
fn frozen_map_rejects_program_writes() {
    per_engine(|| {
        let mut ro = spec(".rodata", MapKind::Array, 4, 8, 1);
        ro.frozen = true;
        let (mut vm, p) = vm_with(vec![ro], "ldmapvalue %r1, 0, 0\nstdw [%r1], 1\nexit");
        assert!(matches!(
            vm.run(p, &[], &mut ()),
            Err(VmError::Memory { pc: 2, .. })
        ));
    });
}

#[test]
fn hash_maps_from_program_and_rust() {
    per_engine(|| {
        // update(key=r6) then lookup, return value; delete on second pass.
        let src = "stdw [%r10-8], 5\nstdw [%r10-16], 99\nldmapfd %r1, 0\nmov %r2, %r10\nadd %r2, -8\n\
                   mov %r3, %r10\nadd %r3, -16\nmov %r4, 0\ncall 2\nmov %r6, %r0\nldmapfd %r1, 0\nmov %r2, %r10\n\
                   add %r2, -8\ncall 1\njeq %r0, 0, +2\nldxdw %r0, [%r0]\nexit\nmov %r0, %r6\nexit";
        let (mut vm, p) = vm_with(vec![spec("h", MapKind::Hash, 8, 8, 2)], src);
        assert_eq!(vm.run(p, &[], &mut ()), Ok(99));
        let m = vm.map_mut(0).expect("map");
        assert_eq!(m.keys(), vec![5u64.to_le_bytes().to_vec()]);
        m.update(&1u64.to_le_bytes(), &[0; 8], 0)
            .expect("room for 2");
        assert_eq!(
            m.update(&2u64.to_le_bytes(), &[0; 8], 0),
            Err(MapError::Full)
        );
        m.delete(&5u64.to_le_bytes()).expect("delete");
        assert_eq!(m.delete(&5u64.to_le_bytes()), Err(MapError::NotFound));
        m.update(&2u64.to_le_bytes(), &[0; 8], 0)
            .expect("slot reused");
        // The map is full of other keys now, so the program's insert fails with -E2BIG.
        assert_eq!(vm.run(p, &[], &mut ()), Ok((-(libc::E2BIG as i64)) as u64));
    });
}

#[test]
fn lru_hash_evicts_least_recently_used() {
    let mut vm = new_vm(vec![spec("lru", MapKind::LruHash, 4, 4, 2)]).expect("map");
    let m = vm.map_mut(0).expect("map");
    m.update(&1u32.to_le_bytes(), &[1; 4], 0).expect("1");
    m.update(&2u32.to_le_bytes(), &[2; 4], 0).expect("2");
    assert!(m.lookup(&1u32.to_le_bytes()).expect("ok").is_some());
    m.update(&3u32.to_le_bytes(), &[3; 4], 0).expect("evicts 2");
    assert!(m.lookup(&2u32.to_le_bytes()).expect("ok").is_none());
    assert!(m.lookup(&1u32.to_le_bytes()).expect("ok").is_some());
}

#[test]
fn ringbuf_reserve_submit_discard_output() {
    per_engine(|| {
        let src = "ldmapfd %r1, 0\nmov %r2, 16\nmov %r3, 0\ncall 131\njeq %r0, 0, +10\nstdw [%r0+0], 0x1234\n\
                   stdw [%r0+8], 7\nmov %r1, %r0\nmov %r2, 0\ncall 132\nstdw [%r10-8], 42\nldmapfd %r1, 0\n\
                   mov %r2, %r10\nadd %r2, -8\nmov %r3, 8\nmov %r4, 0\ncall 130\nexit";
        let (mut vm, p) = vm_with(vec![spec("events", MapKind::Ringbuf, 0, 0, 64)], src);
        assert_eq!(vm.run(p, &[], &mut ()), Ok(0));
        let m = vm.map_mut(0).expect("ring");
        assert_eq!(m.ringbuf_len(), 2);
        let rec = m.ringbuf_pop().expect("record");
        assert_eq!(rec[..8], 0x1234u64.to_le_bytes());
        assert_eq!(m.ringbuf_pop().as_deref(), Some(&42u64.to_le_bytes()[..]));
        // 64 bytes: a run uses 24 + 16 bytes (8-byte header each), so the second
        // run's output no longer fits until Rust consumes the records.
        assert_eq!(vm.run(p, &[], &mut ()), Ok(0));
        assert_eq!(vm.run(p, &[], &mut ()), Ok((-(libc::EAGAIN as i64)) as u64));
        let m = vm.map_mut(0).expect("ring");
        while m.ringbuf_pop().is_some() {}
        assert_eq!(vm.run(p, &[], &mut ()), Ok(0));
        // bpf_ringbuf_query: available bytes and ring size.
        let src = "ldmapfd %r1, 0\nmov %r2, 0\ncall 134\nmov %r6, %r0\nldmapfd %r1, 0\nmov %r2, 1\ncall 134\n\
                   lsh %r0, 16\nor %r0, %r6\nexit";
        let p = vm.load(&assemble(src).expect("asm")).expect("load");
        assert_eq!(vm.run(p, &[], &mut ()), Ok((64 << 16) | 40));
        // A record pointer is dead after submit.
        let src = "ldmapfd %r1, 0\nmov %r2, 8\nmov %r3, 0\ncall 131\nmov %r6, %r0\nmov %r1, %r0\nmov %r2, 0\n\
                   call 133\nstdw [%r6+0], 1\nexit";
        let (mut vm, p) = vm_with(vec![spec("events", MapKind::Ringbuf, 0, 0, 64)], src);
        assert!(matches!(
            vm.run(p, &[], &mut ()),
            Err(VmError::Memory { pc: 9, .. })
        ));
    });
}

/// A host with state: counts kfunc calls, reads `__str` args, writes through pointers.
#[derive(Default)]
struct TestHost {
    calls: u32,
    last_str: String,
    obj: Option<(bpfoom_vm::ObjId, u64)>,
}

impl CallHandler for TestHost {
    fn kfunc(&mut self, id: u32, args: [u64; 5], env: &mut Env) -> Result<u64, CallError> {
        self.calls += 1;
        match id {
            100 => {
                self.last_str = env.memory().read_cstr(args[0], 64)?;
                env.memory().write_u64(args[1], 0xabcd)?;
                Ok(self.last_str.len() as u64)
            }
            101 => {
                let id = env
                    .memory()
                    .add_object(&77u64.to_le_bytes(), Perm::ReadOnly);
                let addr = env.memory().object_addr(id).unwrap_or(0);
                self.obj = Some((id, addr));
                Ok(addr)
            }
            102 => {
                let (id, _) = self
                    .obj
                    .take()
                    .ok_or(CallError::Failed("nothing to release".into()))?;
                env.memory().remove_object(id);
                Ok(0)
            }
            _ => Err(CallError::Unsupported),
        }
    }
}

#[test]
fn kfuncs_with_host_state_and_memory() {
    per_engine(|| {
        let src = "lddw %r1, 0x6f6c6c6568\nstxdw [%r10-16], %r1\nmov %r1, %r10\nadd %r1, -16\nmov %r2, %r10\nadd %r2, -8\n\
                   call kfunc 100\nldxdw %r6, [%r10-8]\nadd %r6, %r0\ncall kfunc 101\nldxdw %r7, [%r0]\n\
                   add %r6, %r7\nmov %r8, %r0\ncall kfunc 102\nmov %r0, %r6\nexit";
        let (mut vm, p) = vm_with(vec![], src);
        let mut host = TestHost::default();
        assert_eq!(vm.run(p, &[], &mut host), Ok(0xabcd + 5 + 77));
        assert_eq!((host.calls, host.last_str.as_str()), (3, "hello"));
        // After kfunc 102 unregistered the object, a stale pointer faults.
        let (mut vm, p) = vm_with(
            vec![],
            "call kfunc 101\nmov %r6, %r0\ncall kfunc 102\nldxdw %r0, [%r6]\nexit",
        );
        assert!(matches!(
            vm.run(p, &[], &mut TestHost::default()),
            Err(VmError::Memory { pc: 3, .. })
        ));
        let (mut vm, p) = vm_with(vec![], "call kfunc 9\nexit");
        assert!(matches!(
            vm.run(p, &[], &mut TestHost::default()),
            Err(VmError::Kfunc {
                pc: 0,
                id: 9,
                source: CallError::Unsupported
            })
        ));
    });
}

#[test]
fn host_objects_read_only_and_read_write() {
    per_engine(|| {
        let mut vm = new_vm(vec![]).expect("vm");
        let (ro, ro_addr) = vm.add_object(&[1, 2, 3, 4], Perm::ReadOnly);
        let (rw, rw_addr) = vm.add_object(&[0; 4], Perm::ReadWrite);
        let p = vm
            .load(&assemble("ldxw %r0, [%r1]\nstxw [%r2], %r0\nexit").expect("asm"))
            .expect("load");
        assert_eq!(
            vm.run_with_args(p, [ro_addr, rw_addr, 0, 0, 0], &mut ()),
            Ok(0x04030201)
        );
        assert_eq!(vm.env_mut().memory().object(rw), Some(&[1, 2, 3, 4][..]));
        let e = vm
            .run_with_args(p, [ro_addr, ro_addr, 0, 0, 0], &mut ())
            .expect_err("ro");
        assert!(matches!(e, VmError::Memory { pc: 1, .. }));
        assert_eq!(
            vm.env_mut().memory().remove_object(ro),
            Some(vec![1, 2, 3, 4])
        );
    });
}

#[test]
fn trace_printk_and_builtins() {
    per_engine(|| {
        let src = "lddw %r1, 0x0a6425203d78\nstxdw [%r10-8], %r1\nmov %r1, %r10\nadd %r1, -8\nmov %r2, 8\nmov %r3, -5\ncall 6\n\
                   mov %r6, %r0\ncall 7\ncall 5\nmov %r0, %r6\nexit";
        let (mut vm, p) = vm_with(vec![], src);
        assert_eq!(vm.run(p, &[], &mut ()), Ok(6));
        assert_eq!(vm.env_mut().take_trace(), "x= -5\n");
        // A huge format size is a typed fault, not an allocation.
        let (mut vm, p) = vm_with(
            vec![],
            "mov %r1, %r10\nadd %r1, -8\nlddw %r2, 0x7fffffffffff\ncall 6\nexit",
        );
        assert!(matches!(
            vm.run(p, &[], &mut ()),
            Err(VmError::Helper {
                id: 6,
                source: CallError::Memory(_),
                ..
            })
        ));
        let (mut vm, p) = vm_with(vec![], "call 9999\nexit");
        assert!(matches!(
            vm.run(p, &[], &mut ()),
            Err(VmError::Helper { id: 9999, .. })
        ));
    });
}

#[test]
fn budget_and_call_depth() {
    per_engine(|| {
        let (mut vm, p) = vm_with(vec![], "mov %r0, 0\nadd %r0, 1\nja -2\nexit");
        vm.set_budget(1000);
        assert!(matches!(
            vm.run(p, &[], &mut ()),
            Err(VmError::Budget { .. })
        ));
        // Recursion: each frame has its own 512-byte stack; the 9th frame is refused.
        let (mut vm, p) = vm_with(
            vec![],
            "call local +1\nexit\nstdw [%r10-512], 1\ncall local -2\nexit",
        );
        assert!(matches!(
            vm.run(p, &[], &mut ()),
            Err(VmError::CallDepth { pc: 3 })
        ));
        // Frames restore r6-r9 and r10.
        let src =
            "mov %r6, 1\nstdw [%r10-8], 10\ncall local +3\nldxdw %r1, [%r10-8]\nadd %r0, %r1\nexit\n\
                   mov %r6, 100\nstdw [%r10-8], 20\nldxdw %r0, [%r10-8]\nexit";
        let (mut vm, p) = vm_with(vec![], src);
        assert_eq!(vm.run(p, &[], &mut ()), Ok(30));
    });
}

#[test]
fn bad_programs_are_load_errors() {
    per_engine(|| {
        let mut vm = new_vm(vec![spec("h", MapKind::Hash, 4, 4, 1)]).expect("vm");
        for (src, pc) in [
            ("ja +5\nexit", 0),
            ("lddw %r0, 1\nja -2\nexit", 2),
            ("ldmapfd %r1, 3\nexit", 0),
            ("ldmapvalue %r1, 0, 0\nexit", 0),
        ] {
            let e = vm.load(&assemble(src).expect("asm")).expect_err(src);
            assert_eq!(e.pc, pc, "{src}: {e}");
        }
        assert!(vm.load(&[]).is_err());
        assert!(vm
            .load(&[bpfoom_insn::Insn::new(0xff, 0, 0, 0, 0)])
            .is_err());
        let (mut vm, p) = vm_with(vec![], "mov %r0, 1");
        assert!(matches!(
            vm.run(p, &[], &mut ()),
            Err(VmError::FellOff { pc: 1 })
        ));
    });
}

/// `callx %r1` with the context pointer in r1 (found by the fuzz test
/// below): the id is an address, so no helper; a typed error at pc 0 on
/// every engine, never a call through an arbitrary id.
#[test]
fn callx_of_an_address_is_an_unsupported_helper() {
    per_engine(|| {
        let mut vm = new_vm(vec![]).expect("vm");
        vm.set_backend(ENGINE.with(|c| c.get()));
        let p = vm
            .load(&[
                bpfoom_insn::Insn::new(0x8d, 1, 0, 0, 0),
                bpfoom_insn::Insn::new(0x95, 0, 0, 0, 0),
            ])
            .expect("load");
        match vm.run(p, &[0u64; 4], &mut ()) {
            Err(VmError::Helper { pc: 0, id, .. }) => assert_ne!(id, 0),
            other => panic!("expected an unsupported helper at pc 0, got {other:?}"),
        }
    });
}

mod fuzz {
    use super::*;
    use proptest::prelude::*;

    /// Opcodes that decode with some plain field values (probed via `load`).
    fn valid_codes() -> Vec<u8> {
        let mut vm = Vm::new(vec![]).expect("vm");
        (0..=255u8)
            .filter(|&c| {
                [(0, 0), (1, 0), (0, 16), (0, 1)].iter().any(|&(src, imm)| {
                    vm.load(&[
                        bpfoom_insn::Insn::new(c, 0, src, 0, imm),
                        bpfoom_insn::Insn::new(0x95, 0, 0, 0, 0),
                    ])
                    .is_ok()
                })
            })
            .collect()
    }

    proptest! {
        // Compiling costs more than running: fewer cases with the JIT.
        #![proptest_config(ProptestConfig::with_cases(if cfg!(feature = "jit") { 1000 } else { 5000 }))]
        /// Arbitrary slots either fail to load or run to a result or a typed
        /// error within the budget: never a panic, a hang or a wild access.
        #[test]
        fn arbitrary_programs_never_panic(
            raw in proptest::collection::vec((
                any::<prop::sample::Index>(),
                0u8..=10,
                prop_oneof![3 => Just(0u8), 1 => 0u8..=10],
                prop_oneof![3 => Just(0i16), 1 => -3i16..4],
                prop_oneof![Just(0), Just(16), Just(64), -16i32..64, any::<i32>()],
            ), 1..16),
            ctx in any::<[u64; 4]>(),
        ) {
            // Register numbers and offsets are kept small so most slots decode
            // and the run actually exercises the interpreter.
            let codes = valid_codes();
            let insns: Vec<bpfoom_insn::Insn> = raw
                .iter()
                .map(|(code, dst, src, off, imm)| {
                    bpfoom_insn::Insn::new(codes[code.index(codes.len())], *dst, *src, *off, *imm)
                })
                .chain([bpfoom_insn::Insn::new(0x95, 0, 0, 0, 0)])
                .collect();
            // Every engine gives the same result, count and memory.
            let mut seen = None;
            for engine in engines() {
                let mut vm = Vm::new(vec![spec("a", MapKind::Array, 4, 8, 4), spec("r", MapKind::Ringbuf, 0, 0, 4096)]).expect("vm");
                vm.set_backend(engine);
                vm.set_budget(10_000);
                if let Ok(p) = vm.load(&insns) {
                    // Addresses differ between VMs; the rest of an error must not.
                    // `callx %rN` takes the helper id from a register, which
                    // may hold an address (the context pointer in r1).
                    let r = vm.run(p, &ctx, &mut ()).map_err(|e| match e {
                        VmError::Memory { pc, mut source } => {
                            source.addr = 0;
                            VmError::Memory { pc, source }
                        }
                        VmError::Helper { pc, source, .. } if insns[pc].code == 0x8d => {
                            VmError::Helper { pc, id: 0, source }
                        }
                        e => e,
                    });
                    let a = vm.map(0).expect("map").get(&1u32.to_le_bytes()).ok().flatten().map(<[u8]>::to_vec);
                    let now = (r, vm.last_run_insns(), a);
                    if let Some(prev) = &seen {
                        prop_assert_eq!(prev, &now, "{:?}", engine);
                    }
                    seen = Some(now);
                }
            }
        }
    }
}

/// The program on which the kernel's x86 JIT skipped the zero-extension of r0
/// after a 32-bit cmpxchg: assembles, runs, and follows RFC 9669 here.
#[test]
fn cmpxchg32_zero_extends_r0() {
    per_engine(|| {
        let text = include_str!("data/kernel-cmpxchg32-zext.asm");
        let mut vm = new_vm(vec![]).expect("vm");
        let p = vm.load(&assemble(text).expect("asm")).expect("load");
        let pkt: Vec<u8> = vec![0; 200];
        let (obj, addr) = vm.add_object(&pkt, Perm::ReadWrite);
        vm.run(p, &[addr, addr + 200], &mut ()).expect("runs");
        let out = vm.env_mut().memory().remove_object(obj).expect("object");
        assert_eq!(
            u64::from_le_bytes(out[64..72].try_into().expect("8 bytes")),
            0xffff_ffd8
        );
    });
}

/// Long straight-line code and long runs of taken forward jumps must not grow
/// the native stack (handlers chain at most 32 deep, even without tail calls).
/// Interpreter only: compiling 600,000 instructions takes the JIT minutes.
#[test]
fn long_programs_do_not_exhaust_the_stack() {
    let n = 200_000;
    let mut text = String::from("mov %r0, 0\n");
    for _ in 0..n {
        text.push_str("add %r0, 1\njeq %r0, -1, +0\n");
    }
    for _ in 0..n {
        text.push_str("ja +0\n");
    }
    text.push_str("exit\n");
    let (mut vm, p) = vm_with(vec![], &text);
    assert_eq!(vm.run(p, &[], &mut ()), Ok(n));
}

/// The program on which kernel 6.18's verifier pruned a branch using a wrong
/// constant for a value loaded by an atomic cmpxchg: the VM runs the store
/// the program really performs.
#[test]
fn atomic_fetch_result_drives_the_branch() {
    per_engine(|| {
        let text = include_str!("data/kernel-atomic-fetch-precision.asm");
        let pkt_line = text.lines().nth(2).expect("packet line");
        let pkt: Vec<u8> = pkt_line
            .trim_start_matches('#')
            .split_whitespace()
            .map(|b| u8::from_str_radix(b, 16).expect("hex byte"))
            .collect();
        assert_eq!(pkt.len(), 200);
        let mut vm = new_vm(vec![]).expect("vm");
        let p = vm.load(&assemble(text).expect("asm")).expect("load");
        let (obj, addr) = vm.add_object(&pkt, Perm::ReadWrite);
        vm.run(p, &[addr, addr + 200], &mut ()).expect("runs");
        let out = vm.env_mut().memory().remove_object(obj).expect("object");
        assert_eq!(out[46..50], [0xff, 0xff, 0xff, 0x7f]);
    });
}

/// `last_run_insns` is exact: straight line, `ld_imm64` (one instruction in
/// two slots), taken and untaken branches, loops, local calls, helper calls,
/// early exit, faults and budget stops.
#[test]
fn executed_instruction_count_is_exact() {
    per_engine(|| {
        let count = |src: &str, ctx: &[u64]| {
            let (mut vm, p) = vm_with(vec![], src);
            vm.set_budget(1000);
            let r = vm.run(p, ctx, &mut ());
            (r, vm.last_run_insns())
        };
        assert_eq!(count("mov %r0, 1\nadd %r0, 2\nexit", &[]), (Ok(3), 3));
        assert_eq!(count("lddw %r0, 0x100000000\nexit", &[]), (Ok(1 << 32), 2));
        // Early exit through a taken branch, and the untaken path.
        let early = "ldxdw %r0, [%r1]\njeq %r0, 0, +2\nmov %r0, 7\nadd %r0, 1\nexit";
        assert_eq!(count(early, &[0]), (Ok(0), 3));
        assert_eq!(count(early, &[1]), (Ok(8), 5));
        // A loop of 3 instructions run 5 times, plus 2 before and 1 after.
        let lp = "mov %r0, 0\nmov %r1, 5\nadd %r0, 2\nsub %r1, 1\njne %r1, 0, -3\nexit";
        assert_eq!(count(lp, &[]), (Ok(10), 2 + 3 * 5 + 1));
        // main: call, ld_imm64 in the callee, nested call, helper call.
        let calls = "mov %r1, 3\ncall local +2\nadd %r0, 1\nexit\n\
                     lddw %r2, 5\ncall local +2\nadd %r0, %r2\nexit\n\
                     call 7\nmov %r0, 10\nexit";
        assert_eq!(count(calls, &[]), (Ok(16), 4 + 4 + 3));
        // A fault counts the faulting instruction; nothing after it.
        let (r, n) = count("mov %r0, 0\nmov %r1, 0\nldxdw %r0, [%r1]\nexit", &[]);
        assert!(matches!(r, Err(VmError::Memory { pc: 2, .. })));
        assert_eq!(n, 3);
        // Running off the end counts every real instruction.
        assert_eq!(
            count("mov %r0, 1\nlddw %r1, 2", &[]),
            (Err(VmError::FellOff { pc: 3 }), 2)
        );
        // The budget stops at the first back-edge past it, with the exact count.
        let (r, n) = count("mov %r0, 0\nadd %r0, 1\nja -2", &[]);
        assert!(matches!(
            r,
            Err(VmError::Budget {
                pc: 2,
                budget: 1000
            })
        ));
        assert_eq!(n, 1 + 2 * 500);
    });
}

/// A budget equal to a program's exact need lets it finish; one less stops it.
#[test]
fn budget_is_an_exact_instruction_limit() {
    per_engine(|| {
        let lp = "mov %r0, 0\nadd %r0, 1\njne %r0, 10, -2\nexit";
        let (mut vm, p) = vm_with(vec![], lp);
        vm.set_budget(u64::MAX);
        assert_eq!(vm.run(p, &[], &mut ()), Ok(10));
        let need = vm.last_run_insns();
        assert_eq!(need, 1 + 2 * 10 + 1);
        // The last back-edge is taken after 1 + 2 * 9 instructions.
        vm.set_budget(1 + 2 * 9);
        assert_eq!(vm.run(p, &[], &mut ()), Ok(10));
        vm.set_budget(2 * 9);
        assert!(matches!(
            vm.run(p, &[], &mut ()),
            Err(VmError::Budget { pc: 2, .. })
        ));
    });
}

/// Fault-safe loads read 0 where the strict check faults; other loads at
/// other indexes, and stores, keep faulting.
#[test]
fn probe_mem_loads_read_zero_instead_of_faulting() {
    per_engine(|| {
        use bpfoom_vm::{LoadErrorKind, LoadOptions};
        // r2 = obj->next (NULL), r0 = r2->field (+8), then r0 += obj->value.
        let src = "ldxdw %r2, [%r1+0]\nldxw %r0, [%r2+8]\nldxdw %r3, [%r1+8]\nadd %r0, %r3\nexit";
        let prog = assemble(src).expect("asm");
        let mut vm = new_vm(vec![]).expect("vm");
        let mut obj = vec![0u8; 16];
        obj[8..].copy_from_slice(&40u64.to_le_bytes());
        let (_, addr) = vm.add_object(&obj, Perm::ReadOnly);
        let strict = vm.load(&prog).expect("load");
        let probe = vm
            .load_with(&prog, &LoadOptions { probe_mem: vec![1] })
            .expect("load");
        assert!(matches!(
            vm.run_with_args(strict, [addr, 0, 0, 0, 0], &mut ()),
            Err(VmError::Memory { pc: 1, .. })
        ));
        // r0 was 0 before the load too; make the destination dirty to see the write.
        let dirty = assemble(&format!("mov %r0, 99\n{src}")).expect("asm");
        let dirty = vm
            .load_with(&dirty, &LoadOptions { probe_mem: vec![2] })
            .expect("load");
        for p in [probe, dirty] {
            assert_eq!(vm.run_with_args(p, [addr, 0, 0, 0, 0], &mut ()), Ok(40));
        }
        // A fault-safe load through a valid pointer reads the real value.
        let mut linked = vec![0u8; 16];
        linked[..8].copy_from_slice(&addr.to_le_bytes());
        linked[8..].copy_from_slice(&2u64.to_le_bytes());
        let (_, addr2) = vm.add_object(&linked, Perm::ReadOnly);
        assert_eq!(
            vm.run_with_args(probe, [addr2, 0, 0, 0, 0], &mut ()),
            Ok(42)
        );
        // Indexes that are not loads are refused.
        for idx in [3usize, 4, 5, 99] {
            let e = vm
                .load_with(
                    &prog,
                    &LoadOptions {
                        probe_mem: vec![idx],
                    },
                )
                .expect_err("not a load");
            assert_eq!((e.pc, e.kind), (idx, LoadErrorKind::NotALoad));
        }
        let st = assemble("stdw [%r1+0], 1\nexit").expect("asm");
        assert!(vm
            .load_with(&st, &LoadOptions { probe_mem: vec![0] })
            .is_err());
    });
}

/// Thousands of host objects: every one stays reachable and removable, and
/// addresses between them fault.
#[test]
fn many_host_objects() {
    per_engine(|| {
        let mut vm = new_vm(vec![]).expect("vm");
        let p = vm
            .load(&assemble("ldxdw %r0, [%r1+8]\nexit").expect("asm"))
            .expect("load");
        let objs: Vec<_> = (0..5000u64)
            .map(|i| {
                let mut b = vec![0u8; 16];
                b[8..].copy_from_slice(&i.to_le_bytes());
                vm.add_object(&b, Perm::ReadOnly)
            })
            .collect();
        for (i, &(_, addr)) in objs.iter().enumerate().rev() {
            assert_eq!(
                vm.run_with_args(p, [addr, 0, 0, 0, 0], &mut ()),
                Ok(i as u64)
            );
            // One past the end of an object is outside it (16-byte objects).
            assert!(vm
                .run_with_args(p, [addr + 1, 0, 0, 0, 0], &mut ())
                .is_err());
        }
        for (i, &(id, addr)) in objs.iter().enumerate() {
            if i % 2 == 0 {
                assert!(vm.env_mut().memory().remove_object(id).is_some());
                assert!(vm.run_with_args(p, [addr, 0, 0, 0, 0], &mut ()).is_err());
            }
        }
        for (i, &(_, addr)) in objs.iter().enumerate().filter(|(i, _)| i % 2 == 1) {
            assert_eq!(
                vm.run_with_args(p, [addr, 0, 0, 0, 0], &mut ()),
                Ok(i as u64)
            );
        }
    });
}

/// A panicking host call reaches the embedder as the same panic, from every
/// engine (the JIT catches it in its trampoline and resumes it after the
/// generated code has returned), and the VM stays usable.
#[test]
fn host_panics_propagate() {
    struct Panics;
    impl CallHandler for Panics {
        fn kfunc(&mut self, _id: u32, _args: [u64; 5], _env: &mut Env) -> Result<u64, CallError> {
            panic!("host bug");
        }
    }
    per_engine(|| {
        let (mut vm, p) = vm_with(vec![], "mov %r1, 1\ncall kfunc 7\nexit");
        let r =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| vm.run(p, &[], &mut Panics)));
        let msg = r.expect_err("panics");
        assert_eq!(msg.downcast_ref::<&str>(), Some(&"host bug"));
        let q = vm
            .load(&assemble("mov %r0, 5\nexit").expect("asm"))
            .expect("load");
        assert_eq!(vm.run(q, &[], &mut ()), Ok(5));
    });
}
