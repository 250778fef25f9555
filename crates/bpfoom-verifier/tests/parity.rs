//! Kernel parity: every twin program in `tests/parity/*.c` is verified by
//! the running kernel's privileged verifier (built as a `SEC("syscall")`
//! program against the kernel's own `vmlinux.h`, loaded as root) and by
//! bpfoom (built against `bpf_oom.h` as a struct_ops handler). The verdicts
//! must agree; expected verdicts are never written down, the kernel gives
//! them at test time. See `bpfoom_testutil::kernel` for how the twins are
//! built and `tests/parity/README.md` for the case format.
//!
//! Every case must agree: a disagreement fails the test with both logs.
//! The table printed gives both processed-instruction counts (the kernel's
//! and bpfoom's) for every case.
//!
//! `BPFOOM_PARITY_FILTER=text` runs only the cases whose name contains it.
//!
//! Needs root, clang, bpftool and the BPF syscall; skips with a printed
//! reason otherwise (fails under CI / `BPFOOM_REQUIRE=1`).

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use bpfoom_obj::Object;
use bpfoom_testutil::kernel::{self, KernelVerdict};
use bpfoom_verifier::{verify_object, Options, VerifyError};

/// What bpfoom said about one twin.
struct Ours {
    accepted: bool,
    processed: u64,
    /// One line: the reason of a rejection.
    reason: String,
}

struct Outcome {
    name: String,
    kernel: KernelVerdict,
    ours: Ours,
    /// Wall time of the kernel load and of bpfoom's verification.
    kernel_time: Duration,
    ours_time: Duration,
}

fn corpus_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/parity")
}

fn cases() -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(corpus_dir())
        .expect("tests/parity")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "c"))
        .filter(|p| {
            filter().is_none_or(|f| {
                p.file_stem()
                    .is_some_and(|n| n.to_string_lossy().contains(&f))
            })
        })
        .collect();
    v.sort();
    v
}

/// `BPFOOM_PARITY_FILTER=text` runs only the cases whose name contains it.
fn filter() -> Option<String> {
    std::env::var("BPFOOM_PARITY_FILTER")
        .ok()
        .filter(|f| !f.is_empty())
}

fn ours(obj: &Path, log_level: u32) -> Result<(Ours, String), String> {
    // The kernel's rule for iterator elements, asked once (see
    // `Options::iter_next_trusted`): the cases then test everything else.
    let iter_next_trusted = kernel::iter_next_trusted()?;
    let bytes = std::fs::read(obj).map_err(|e| format!("{}: {e}", obj.display()))?;
    let o = Object::parse(&bytes).map_err(|e| format!("bpfoom-obj: {e}"))?;
    let opts = Options {
        log_level,
        jit: kernel_jit(),
        iter_next_trusted,
        ..Options::default()
    };
    match verify_object(&o, &opts) {
        Ok(reports) => {
            let r = reports
                .iter()
                .find(|r| r.program == "twin")
                .ok_or("no program `twin` was verified")?;
            Ok((
                Ours {
                    accepted: true,
                    processed: r.report.insns_processed,
                    reason: String::new(),
                },
                r.report.log.clone(),
            ))
        }
        Err(VerifyError::Rejected(r)) => Ok((
            Ours {
                accepted: false,
                processed: r.insns_processed,
                reason: format!("{}: {}", r.insn, r.reason),
            },
            r.to_string(),
        )),
        Err(e) => Err(e.to_string()),
    }
}

/// Whether the running kernel JITs the programs it loads (Linux rounds
/// stack frames differently for the interpreter: `round_up_stack_depth()`).
fn kernel_jit() -> bool {
    std::fs::read_to_string("/proc/sys/net/core/bpf_jit_enable")
        .map(|s| s.trim() != "0")
        .unwrap_or(true)
}

fn run_case(path: &Path) -> Result<Outcome, String> {
    let name = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let body = std::fs::read_to_string(path).map_err(|e| format!("{name}: {e}"))?;
    let kobj = kernel::build_kernel_twin(&name, &body).map_err(|e| format!("{name}: {e}"))?;
    let bobj = kernel::build_bpfoom_twin(&name, &body).map_err(|e| format!("{name}: {e}"))?;
    let t = Instant::now();
    let kernel = kernel::load(&kobj).map_err(|e| format!("{name}: {e}"))?;
    let kernel_time = t.elapsed();
    let t = Instant::now();
    let (ours, _) = ours(&bobj, 0).map_err(|e| format!("{name}: {e}"))?;
    let ours_time = t.elapsed();
    Ok(Outcome {
        name,
        kernel,
        ours,
        kernel_time,
        ours_time,
    })
}

fn verdict(accepted: bool) -> &'static str {
    if accepted {
        "accept"
    } else {
        "reject"
    }
}

/// The kernel's reason: the last line before the stats that is not a state dump.
fn kernel_reason(log: &str) -> String {
    log.lines()
        .rev()
        .filter(|l| {
            !l.is_empty()
                && !l.starts_with("processed ")
                && !l.starts_with("verification time")
                && !l.starts_with("stack depth")
                && !l.starts_with("libbpf:")
        })
        .find(|l| !l.starts_with(|c: char| c.is_ascii_digit()) || l.contains("!read_ok"))
        .unwrap_or("")
        .to_string()
}

#[test]
fn kernel_parity() {
    if let Some(why) = kernel::unavailable() {
        bpfoom_testutil::require(false, &why);
        return;
    }
    let cases = cases();
    assert!(!cases.is_empty(), "no cases in tests/parity");
    let iter_next_trusted =
        kernel::iter_next_trusted().expect("the kernel's iterator-element rule");
    println!(
        "running kernel: {} stack frames, css_task iterator elements {}",
        if kernel_jit() { "JIT" } else { "interpreter" },
        if iter_next_trusted {
            "trusted (mainline)"
        } else {
            "untrusted"
        }
    );
    let results: Mutex<Vec<Result<Outcome, String>>> = Mutex::new(Vec::new());
    let next = Mutex::new(0usize);
    let workers = std::thread::available_parallelism().map_or(2, |n| n.get().min(4));
    std::thread::scope(|s| {
        for _ in 0..workers {
            s.spawn(|| loop {
                let i = {
                    let mut n = next.lock().unwrap();
                    *n += 1;
                    *n - 1
                };
                let Some(p) = cases.get(i) else { break };
                let r = run_case(p);
                results.lock().unwrap().push(r);
            });
        }
    });
    let mut results = results.into_inner().unwrap();
    let mut errors = Vec::new();
    let mut outcomes = Vec::new();
    for r in results.drain(..) {
        match r {
            Ok(o) => outcomes.push(o),
            Err(e) => errors.push(e),
        }
    }
    outcomes.sort_by(|a, b| a.name.cmp(&b.name));

    println!(
        "{:<40} {:>8} {:>9} {:>8} {:>9} {:>8} {:>8}  notes",
        "case", "kernel", "insns", "bpfoom", "insns", "k-ms", "b-ms"
    );
    let mut failures = Vec::new();
    let mut agree = 0;
    for o in &outcomes {
        let same = o.kernel.accepted == o.ours.accepted;
        // Where Linux gives up on a program's size or complexity, bpfoom
        // must give up the same way and say so in the same words (a user
        // compares the two messages).
        let kreason = kernel_reason(&o.kernel.log);
        let limit = !o.kernel.accepted
            && (kreason.starts_with("BPF program is too large")
                || kreason.starts_with("The sequence of "));
        let ours_reason = o.ours.reason.split_once(": ").map_or("", |(_, r)| r);
        if limit && same && ours_reason != kreason {
            failures.push(format!(
                "{}: both reject, but the kernel says {kreason:?} and bpfoom {ours_reason:?}",
                o.name
            ));
        }
        let note = if same { "" } else { "DISAGREE" };
        let kinsns = o.kernel.processed.map_or("-".into(), |n| n.to_string());
        println!(
            "{:<40} {:>8} {:>9} {:>8} {:>9} {:>8} {:>8}  {note}",
            o.name,
            verdict(o.kernel.accepted),
            kinsns,
            verdict(o.ours.accepted),
            o.ours.processed,
            o.kernel_time.as_millis(),
            o.ours_time.as_millis(),
        );
        if !o.kernel.accepted {
            println!("{:<40}   kernel: {}", "", kernel_reason(&o.kernel.log));
        }
        if !o.ours.accepted {
            println!("{:<40}   bpfoom: {}", "", o.ours.reason);
        }
        if same {
            agree += 1;
        }
        if !same {
            {
                let body = std::fs::read_to_string(corpus_dir().join(format!("{}.c", o.name)))
                    .unwrap_or_default();
                let bobj = kernel::build_bpfoom_twin(&o.name, &body).expect("built before");
                let blog = ours(&bobj, 2).map(|(_, l)| l).unwrap_or_else(|e| e);
                failures.push(format!(
                    "{}: kernel {} ({} insns), bpfoom {} ({} insns)\n--- kernel log (tail) ---\n{}\n--- bpfoom log (tail) ---\n{}",
                    o.name,
                    verdict(o.kernel.accepted),
                    o.kernel.processed.map_or("?".into(), |n| n.to_string()),
                    verdict(o.ours.accepted),
                    o.ours.processed,
                    kernel::tail(&o.kernel.log, 40),
                    kernel::tail(&blog, 40),
                ));
            }
        }
    }
    println!("{agree} of {} cases agree with the kernel", outcomes.len());
    failures.extend(errors.into_iter().map(|e| format!("broken case: {e}")));
    assert!(
        failures.is_empty(),
        "{} parity failure(s):\n\n{}",
        failures.len(),
        failures.join("\n\n")
    );
}
