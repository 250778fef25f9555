//! Differential check against the running kernel's verifier.
//!
//! Programs that do not depend on bpfoom's context (ALU, jumps, bounded
//! loops, stack; registers r0 and r2-r9 only) are generated from a fixed seed,
//! verified here (as `bpf_psi_ops.init`, whose `int` return accepts any
//! value) and loaded into the kernel as socket filters with `BPF_PROG_LOAD`.
//! The verdicts must agree, except for these documented classes where
//! bpfoom is deliberately stricter or simply differently bounded:
//!
//! (bpfoom follows the privileged verifier, so uninitialised stack reads and
//! pointer comparisons, truncations and negations are no longer classes of
//! their own: a disagreement there is a mismatch.)
//! - **kernel imprecision**: bpfoom accepts, the kernel rejects, and running
//!   the program (it has no inputs, so its one execution is the only one)
//!   shows it safe: bpfoom proved more (byte-exact stack zeros and narrow
//!   spills, zero-extension of out-of-range 32-bit shifts).
//! - **precision** (kept out of the generated set rather than classified):
//!   bpfoom folds div/mod and decides comparisons of a register with itself
//!   (`if r7 < r7`), the kernel does not, so it explores paths that can never
//!   run and may reject where bpfoom proves them dead.
//! - **complexity**: the kernel prunes with precision tracking and its own
//!   checkpoint heuristics, bpfoom compares all scalars exactly, so the two
//!   may hit "too complex" on different programs. Only a "too complex" or
//!   "infinite loop" verdict on one side (kernel: `E2BIG`, or a log that says
//!   so) is allowed to disagree.
//!
//! Needs root; skips with a printed reason otherwise.

mod common;
mod gen;

use bpfoom_insn::opcode::*;
use bpfoom_insn::Insn;
use bpfoom_verifier::{
    verify, Hook, MapInfo, MapKind, Options, ProgramInput, RejectKind, VerifyError,
};
use gen::{generate, runs_safely, Rng};

use bpfoom_vm::linux;
use std::os::fd::{AsRawFd, OwnedFd};

/// Creates the generated programs' array map in the kernel.
fn kernel_map() -> Option<OwnedFd> {
    linux::array_map_create(4, gen::MAP_VALUE_SIZE as u32, 1).ok()
}

/// The map as bpfoom sees it (index 0 in every generated program).
fn our_maps() -> Vec<MapInfo> {
    vec![MapInfo {
        name: "arr".into(),
        kind: MapKind::Array,
        key_size: 4,
        value_size: gen::MAP_VALUE_SIZE as u32,
        max_entries: 1,
        read_only: false,
        initial: None,
        spin_lock_off: None,
    }]
}

/// Loads a program into the kernel as a socket filter: `Ok(())` if
/// accepted, else errno and (when asked for) the verifier log.
fn kernel_load(insns: &[Insn], with_log: bool) -> Result<(), (i32, String)> {
    let mut log = vec![0u8; if with_log { 1 << 20 } else { 0 }];
    match linux::prog_load(linux::PROG_TYPE_SOCKET_FILTER, insns, &mut log) {
        Ok(_fd) => Ok(()),
        Err(e) => Err((e.raw_os_error().unwrap_or(0), linux::log_text(&log))),
    }
}

#[derive(Debug, PartialEq, Eq)]
enum Class {
    Agree,
    Complexity,
    KernelImprecise,
    Mismatch,
}

#[test]
fn verdicts_match_the_kernel() {
    if !bpfoom_testutil::require(
        bpfoom_testutil::is_root(),
        "differential test needs root to call bpf(BPF_PROG_LOAD)",
    ) {
        return;
    }
    if kernel_load(
        &[
            Insn::new(BPF_ALU64 | BPF_MOV | BPF_K, 0, 0, 0, 0),
            Insn::new(EXIT, 0, 0, 0, 0),
        ],
        false,
    )
    .is_err()
        && !bpfoom_testutil::require(
            false,
            "the kernel refuses BPF_PROG_LOAD here (no BPF syscall or locked down)",
        )
    {
        return;
    }
    // BPFOOM_DIFF_SEED / BPFOOM_DIFF_N explore other program sets.
    let env = |k: &str| std::env::var(k).ok().and_then(|v| v.parse::<u64>().ok());
    let mut rng = Rng::new(env("BPFOOM_DIFF_SEED").unwrap_or(0x005e_ed0f_b0f0_0f00));
    let n_programs = env("BPFOOM_DIFF_N").unwrap_or(600) as usize;
    let Some(map_fd) = kernel_map() else {
        bpfoom_testutil::require(false, "the kernel refuses BPF_MAP_CREATE here");
        return;
    };
    let maps = our_maps();
    let opts = Options::default();
    let (mut agree, mut both_accept, mut complexity, mut imprecise) = (0, 0, 0, 0);
    let mut mismatches = Vec::new();
    for n in 0..n_programs {
        let insns = generate(&mut rng);
        let input = ProgramInput {
            name: "gen",
            insns: &insns,
            hook: Hook {
                ops: "bpf_psi_ops",
                member: "init",
                form: Default::default(),
            },
            sleepable: false,
            maps: &maps,
            line_info: &[],
            core_access: &[],
        };
        let ours = verify(&input, &opts);
        // The kernel wants the map's fd where bpfoom has its index.
        let mut kinsns = insns.clone();
        for i in kinsns
            .iter_mut()
            .filter(|i| i.code == LD_IMM64 && i.src == BPF_PSEUDO_MAP_FD)
        {
            i.imm = map_fd.as_raw_fd();
        }
        let insns = kinsns;
        let kernel = kernel_load(&insns, false);
        let class = match (&ours, &kernel) {
            (Ok(_), Ok(())) => {
                both_accept += 1;
                Class::Agree
            }
            (Err(_), Err(_)) => Class::Agree,
            (Err(VerifyError::Rejected(r)), Ok(())) => match r.kind {
                RejectKind::TooComplex | RejectKind::InfiniteLoop => Class::Complexity,
                _ => Class::Mismatch,
            },
            (Ok(_), Err((errno, _))) => {
                let (_, log) = kernel_load(&insns, true).err().unwrap_or_default();
                if *errno == libc::E2BIG
                    || log.contains("too large")
                    || log.contains("infinite loop")
                {
                    Class::Complexity
                } else if runs_safely(&insns) {
                    Class::KernelImprecise
                } else {
                    Class::Mismatch
                }
            }
            (Err(e), _) => panic!("program {n}: {e}"),
        };
        match class {
            Class::Agree => agree += 1,
            Class::Complexity => complexity += 1,
            Class::KernelImprecise => imprecise += 1,
            Class::Mismatch => {
                let (_, klog) = kernel_load(&insns, true).err().unwrap_or_default();
                let text = bpfoom_insn::disasm::disassemble(&insns).join("\n");
                let ours = match &ours {
                    Ok(_) => "accepted".to_string(),
                    Err(e) => e.to_string(),
                };
                let tail: Vec<&str> = klog.lines().rev().take(6).collect();
                mismatches.push(format!(
                    "program {n}:\n{text}\n-- bpfoom: {ours}\n-- kernel: {}",
                    if kernel.is_ok() {
                        "accepted".to_string()
                    } else {
                        tail.into_iter().rev().collect::<Vec<_>>().join("\n")
                    }
                ));
            }
        }
    }
    drop(map_fd);
    eprintln!(
        "differential: {n_programs} programs, {agree} agree ({both_accept} accepted by both), {imprecise} kernel-imprecise, {complexity} complexity, {} mismatches",
        mismatches.len()
    );
    assert!(
        mismatches.is_empty(),
        "{} verdict mismatches:\n\n{}",
        mismatches.len(),
        mismatches.join("\n\n")
    );
    assert!(
        both_accept > n_programs / 10,
        "the generator should produce accepted programs too"
    );
    assert!(agree > n_programs / 2);
}
