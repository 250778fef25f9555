//! The cgroup v2 end-to-end tests, inside Debian's kernel in qemu (TCG).
//! Skips with a printed reason when qemu, busybox, clang or the kernel
//! package cannot be had. `BPFOOM_VM_KERNEL` names a vmlinuz to use;
//! `BPFOOM_VM_FILTER` runs only the guest tests whose name contains it;
//! `BPFOOM_VM_GUEST` replaces the guest binary (e.g. a static build).

#![allow(clippy::unwrap_used)]

use std::path::PathBuf;
use std::time::Duration;

use bpfoom_vmtest::vm::{self, Boot, Initramfs, VmError};

/// Guest tests that cannot pass yet for a reason outside this crate: their
/// result is printed, not asserted.
const KNOWN_GAPS: &[(&str, &str)] = &[];

fn skip(why: &str) {
    bpfoom_testutil::require(false, &format!("vm_v2: {why}"));
}

#[test]
fn cgroup_v2_end_to_end_in_qemu() {
    let cache = bpfoom_testutil::repo_root().join("target/vm-cache");
    let (busybox, kernel) = match (vm::qemu(), vm::busybox(), vm::kernel(&cache)) {
        (Ok(_), Ok(b), Ok(k)) => (b, k),
        (q, b, k) => {
            let errs: Vec<String> = [q.err(), b.err(), k.err()]
                .into_iter()
                .flatten()
                .map(|e| e.to_string())
                .collect();
            return skip(&errs.join("; "));
        }
    };
    let mut policies = Vec::new();
    for src in [
        "largest_leaf.bpf.c",
        "psi_early.bpf.c",
        "oomd_like.bpf.c",
        "tests/always_fail.bpf.c",
        "tests/kill_exiting.bpf.c",
        "tests/upstream/test_oomd.bpf.c",
        "tests/upstream/test_oom.bpf.c",
        "tests/upstream/test_psi.bpf.c",
    ] {
        let Some(obj) = bpfoom_testutil::policy_or_skip(src) else {
            return;
        };
        policies.push((src, obj));
    }
    // BPFOOM_VM_GUEST: another build of bpfoom-vmguest, e.g. a static one
    // (RUSTFLAGS='-C target-feature=+crt-static' ... --target x86_64-unknown-linux-gnu).
    let guest = std::env::var_os("BPFOOM_VM_GUEST").map_or_else(
        || PathBuf::from(env!("CARGO_BIN_EXE_bpfoom-vmguest")),
        PathBuf::from,
    );
    let mut initrd = Initramfs::new();
    initrd.elf(&busybox, "/bin/busybox").unwrap();
    initrd.elf(&guest, "/bin/bpfoom-vmguest").unwrap();
    for (src, obj) in &policies {
        let name = src.rsplit('/').next().unwrap().replace(".bpf.c", ".bpf.o");
        initrd
            .copy(obj, &format!("/policies/{name}"), 0o644)
            .unwrap();
    }
    let filter = std::env::var("BPFOOM_VM_FILTER").unwrap_or_default();
    let body = format!("/bin/bpfoom-vmguest suite '{filter}' 2>&1");
    initrd.bytes("/init", 0o755, vm::init_script(&body).as_bytes());
    let dir = cache.join("run");
    std::fs::create_dir_all(&dir).unwrap();
    // Per process: several checkouts' test runs may share this cache.
    let initrd_path = dir.join(format!("v2-initramfs-{}.cpio", std::process::id()));
    std::fs::write(&initrd_path, initrd.finish()).unwrap();

    let boot = Boot {
        kernel,
        initrd: initrd_path,
        append: String::new(),
        mem_mb: 1024,
        smp: 2,
        timeout: Duration::from_secs(600),
        kvm: std::env::var_os("BPFOOM_VM_KVM").is_some(),
    };
    let booted = vm::boot(&boot);
    let _ = std::fs::remove_file(&boot.initrd);
    let serial = match booted {
        Ok(s) => s,
        Err(VmError::Unavailable(why)) => return skip(&why),
        Err(e) => panic!("{e}"),
    };
    std::fs::write(dir.join("v2-serial.log"), &serial.text).unwrap();
    eprintln!("{}", serial.text);
    eprintln!("VM ran for {:.1} s", serial.elapsed.as_secs_f64());
    assert!(!serial.timed_out, "the VM timed out");
    let results = vm::parse_results(&serial.text);
    let names: Vec<&str> = bpfoom_vmtest::guest::V2_SUITE
        .iter()
        .map(|(n, _)| *n)
        .filter(|n| n.contains(&filter))
        .collect();
    for n in &names {
        let r = results
            .iter()
            .find(|r| r["test"] == *n)
            .unwrap_or_else(|| panic!("no result for {n}"));
        if let Some((_, why)) = KNOWN_GAPS.iter().find(|(g, _)| g == n) {
            eprintln!("KNOWN GAP {n} (ok={}): {why}", r["ok"]);
            continue;
        }
        assert_eq!(r["ok"], true, "{n}: {r}");
    }
}
