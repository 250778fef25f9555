//! `bpfoom btf` + `bpftool btf dump ... format c` gives a `vmlinux.h` that
//! policies compile against and that bpfoom then loads and verifies: the
//! libbpf workflow, with bpfoom's host in place of a kernel.

#![allow(clippy::unwrap_used)]

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::process::Command;

fn bpfoom(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_bpfoom"))
        .args(args)
        .output()
        .expect("run bpfoom")
}

/// Writes the host BTF with `bpfoom btf` and dumps it with bpftool into a
/// directory named by the BTF's hash (so the compile cache, keyed by flags,
/// never sees a stale header). `None` when bpftool or clang is missing.
fn vmlinux_h() -> Option<PathBuf> {
    let have_bpftool = Command::new("bpftool")
        .arg("version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !bpfoom_testutil::require(have_bpftool, "bpftool not found (Debian package bpftool)")
        || !bpfoom_testutil::require_clang()
    {
        return None;
    }
    // Tests run in parallel threads: one scratch directory per call.
    static CALLS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = CALLS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let scratch = std::env::temp_dir().join(format!("bpfoom-btf-{}-{n}", std::process::id()));
    std::fs::create_dir_all(&scratch).unwrap();
    let btf = scratch.join("host.btf");
    let o = bpfoom(&["btf", "-o", btf.to_str().unwrap()]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let blob = std::fs::read(&btf).unwrap();
    // The same bytes on standard output.
    assert_eq!(bpfoom(&["btf"]).stdout, blob);
    let dump = Command::new("bpftool")
        .args(["btf", "dump", "file"])
        .arg(&btf)
        .args(["format", "c"])
        .output()
        .unwrap();
    assert!(
        dump.status.success(),
        "bpftool rejected bpfoom's BTF: {}",
        String::from_utf8_lossy(&dump.stderr)
    );
    std::fs::remove_dir_all(&scratch).unwrap();
    let mut h = DefaultHasher::new();
    blob.hash(&mut h);
    let dir = bpfoom_testutil::repo_root()
        .join("target/bpf-fixtures")
        .join(format!("vmlinux-{:016x}", h.finish()));
    std::fs::create_dir_all(&dir).unwrap();
    // Write then rename: the other test may be reading the same header.
    let tmp = dir.join(format!("vmlinux.h.{}-{n}", std::process::id()));
    std::fs::write(&tmp, &dump.stdout).unwrap();
    std::fs::rename(&tmp, dir.join("vmlinux.h")).unwrap();
    Some(dir)
}

fn verify(obj: &Path) {
    let o = bpfoom(&["verify", obj.to_str().unwrap()]);
    assert!(
        o.status.success(),
        "{}: {}{}",
        obj.display(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
}

#[test]
fn example_policies_build_against_a_bpftool_vmlinux_h() {
    let Some(dir) = vmlinux_h() else {
        return;
    };
    let vmlinux = dir.join("vmlinux.h");
    let text = std::fs::read_to_string(&vmlinux).unwrap();
    for want in [
        "struct oom_control {",
        "struct bpf_oom_ops {",
        "struct bpf_psi_ops {",
        "enum node_stat_item {",
        "enum memcg_stat_item {",
        "PGSCAN_PROACTIVE",
        "typedef unsigned int __u32;",
    ] {
        assert!(text.contains(want), "vmlinux.h lacks {want}");
    }
    // vmlinux.h first, as a policy's own `#include "vmlinux.h"` would put
    // it; bpf_oom.h then adds only macros and kfunc declarations.
    let flags = ["-include", vmlinux.to_str().unwrap()];
    let sources = bpfoom_testutil::policy_sources();
    assert!(sources.len() >= 5);
    for src in sources {
        let obj = bpfoom_testutil::compile(&src, &flags).unwrap_or_else(|e| panic!("{e}"));
        verify(&obj);
    }
}

#[test]
fn a_policy_without_bpf_oom_h_uses_vmlinux_h_and_libbpf_headers() {
    let Some(dir) = vmlinux_h() else {
        return;
    };
    // The way upstream's selftests are written: vmlinux.h, libbpf's headers
    // and the policy's own __ksym declarations; CO-RE reads and enum values.
    let code = r#"
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>

char _license[] SEC("license") = "GPL";

extern struct mem_cgroup *bpf_get_mem_cgroup(struct cgroup_subsys_state *css) __ksym;
extern void bpf_put_mem_cgroup(struct mem_cgroup *memcg) __ksym;
extern unsigned long bpf_mem_cgroup_page_state(struct mem_cgroup *memcg, int idx) __ksym;

u64 scanned;

SEC("struct_ops.s/handle_out_of_memory")
int BPF_PROG(scan_only, struct oom_control *oc, struct cgroup *cgrp)
{
	struct mem_cgroup *memcg = bpf_get_mem_cgroup(&cgrp->self);

	if (!memcg)
		return 0;
	scanned = bpf_mem_cgroup_page_state(memcg,
			bpf_core_enum_value(enum node_stat_item, PGSCAN_KSWAPD)) +
		  bpf_mem_cgroup_page_state(memcg,
			bpf_core_enum_value(enum node_stat_item, PGSCAN_PROACTIVE));
	if (bpf_core_enum_value_exists(enum memcg_stat_item, MEMCG_SWAP))
		scanned += bpf_mem_cgroup_page_state(memcg,
			bpf_core_enum_value(enum memcg_stat_item, MEMCG_SWAP));
	bpf_put_mem_cgroup(memcg);
	return 0;
}

SEC(".struct_ops.link")
struct bpf_oom_ops scan_only_ops = {
	.handle_out_of_memory = (void *)scan_only,
	.name = "scan_only",
};
"#;
    let obj = bpfoom_testutil::compile_str("vmlinux_style", code, &["-I", dir.to_str().unwrap()])
        .unwrap_or_else(|e| panic!("{e}"));
    verify(&obj);
}
