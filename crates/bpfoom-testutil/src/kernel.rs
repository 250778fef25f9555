//! The kernel oracle: the running kernel's privileged verifier as the
//! reference for `bpfoom-verifier`.
//!
//! A "twin" is one C body built twice:
//! - as a `SEC("syscall")` program against a `vmlinux.h` generated from the
//!   running kernel's BTF (`bpftool btf dump file /sys/kernel/btf/vmlinux
//!   format c`) and [`KERNEL_PRELUDE`] (hand-written kfunc declarations),
//!   loaded into the kernel as root with `bpftool prog load` (libbpf creates
//!   the maps and global data the body uses and resolves the kfuncs);
//! - as a `bpf_oom_ops.handle_out_of_memory` handler (or, with `TWIN_PSI`, a
//!   `bpf_psi_ops.handle_psi_event` handler) against `bpf_oom.h` and
//!   [`BPFOOM_PRELUDE`], for `bpfoom verify`.
//!
//! Both preludes define the same wrapper: it acquires a task
//! (`bpf_task_from_pid(1)`) and a cgroup (`bpf_cgroup_from_id(1)`) with the
//! same kfuncs, calls the body `twin_body(task, cgrp)` (always inlined),
//! releases both and returns `r & 1`. The body therefore sees the same
//! trusted, referenced objects on both sides, and the instruction streams
//! differ only in the wrapper's context argument.
//!
//! Why `bpftool prog load` rather than raw `BPF_PROG_LOAD`: the body may use
//! BTF-defined maps, global data, kfuncs, global subprograms with BTF
//! prototypes and argument tags; libbpf already does all of that exactly as a
//! real loader would, so the kernel sees what a user's loader gives it.
//! The processed-instruction count of an accepted program is the kernel's
//! `verified_insns` (read from the pinned program), of a rejected one the
//! `processed N insns` line of the level 1 log libbpf prints.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

/// Declarations and the twin wrapper for the kernel build (after `vmlinux.h`).
///
/// Kfuncs are declared by hand, as a policy author would, with the
/// signatures of the running kernel (`bpftool btf dump` shows them).
pub const KERNEL_PRELUDE: &str = r#"/* bpfoom parity twin: kernel build */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#define TWIN_KERNEL 1
char _license[] SEC("license") = "GPL";

#ifndef __arg_ctx
#define __arg_ctx __attribute__((btf_decl_tag("arg:ctx")))
#endif
#ifndef __arg_nonnull
#define __arg_nonnull __attribute__((btf_decl_tag("arg:nonnull")))
#endif
#ifndef __arg_nullable
#define __arg_nullable __attribute__((btf_decl_tag("arg:nullable")))
#endif
#ifndef __arg_trusted
#define __arg_trusted __attribute__((btf_decl_tag("arg:trusted")))
#endif

#define CSS_TASK_ITER_PROCS (1U << 0)
#define CSS_TASK_ITER_THREADED (1U << 1)

extern struct cgroup *bpf_cgroup_from_id(u64 cgid) __ksym;
extern void bpf_cgroup_release(struct cgroup *cgrp) __ksym;
extern struct cgroup *bpf_cgroup_acquire(struct cgroup *cgrp) __ksym;
extern struct cgroup *bpf_cgroup_ancestor(struct cgroup *cgrp, int level) __ksym;
extern struct task_struct *bpf_task_acquire(struct task_struct *p) __ksym;
extern void bpf_task_release(struct task_struct *p) __ksym;
extern struct task_struct *bpf_task_from_pid(s32 pid) __ksym;
extern long bpf_task_under_cgroup(struct task_struct *task, struct cgroup *ancestor) __ksym;
extern void bpf_rcu_read_lock(void) __ksym;
extern void bpf_rcu_read_unlock(void) __ksym;

extern int bpf_iter_css_new(struct bpf_iter_css *it, struct cgroup_subsys_state *start,
			    unsigned int flags) __ksym;
extern struct cgroup_subsys_state *bpf_iter_css_next(struct bpf_iter_css *it) __ksym;
extern void bpf_iter_css_destroy(struct bpf_iter_css *it) __ksym;
extern int bpf_iter_css_task_new(struct bpf_iter_css_task *it, struct cgroup_subsys_state *css,
				 unsigned int flags) __ksym;
extern struct task_struct *bpf_iter_css_task_next(struct bpf_iter_css_task *it) __ksym;
extern void bpf_iter_css_task_destroy(struct bpf_iter_css_task *it) __ksym;
extern int bpf_iter_task_new(struct bpf_iter_task *it, struct task_struct *task__nullable,
			     unsigned int flags) __ksym;
extern struct task_struct *bpf_iter_task_next(struct bpf_iter_task *it) __ksym;
extern void bpf_iter_task_destroy(struct bpf_iter_task *it) __ksym;
extern int bpf_iter_num_new(struct bpf_iter_num *it, int start, int end) __ksym;
extern int *bpf_iter_num_next(struct bpf_iter_num *it) __ksym;
extern void bpf_iter_num_destroy(struct bpf_iter_num *it) __ksym;

#ifndef bpf_for_each
#define bpf_for_each(type, cur, args...)                                              \
	for (struct bpf_iter_##type ___it                                             \
		     __attribute__((aligned(8), cleanup(bpf_iter_##type##_destroy))), \
	     *___p __attribute__((unused)) =                                          \
		     (bpf_iter_##type##_new(&___it, ##args),                          \
		      (void)bpf_iter_##type##_destroy, (void *)0);                    \
	     ((cur) = bpf_iter_##type##_next(&___it));)
#endif

#define TWIN_WRAPPER                                                        \
	struct task_struct *task = bpf_task_from_pid(1);                      \
	struct cgroup *cgrp;                                                  \
	int r;                                                                \
	if (!task)                                                            \
		return 0;                                                     \
	cgrp = bpf_cgroup_from_id(1);                                         \
	if (!cgrp) {                                                          \
		bpf_task_release(task);                                       \
		return 0;                                                     \
	}                                                                     \
	r = twin_body(task, cgrp);                                            \
	bpf_cgroup_release(cgrp);                                             \
	bpf_task_release(task);                                               \
	return r & 1;

#define TWIN_DECL static __always_inline int twin_body(struct task_struct *task, struct cgroup *cgrp)

#define TWIN                                                                  \
	TWIN_DECL;                                                            \
	SEC("syscall") int twin(void *ctx) { TWIN_WRAPPER }                   \
	TWIN_DECL
#define TWIN_PSI TWIN
"#;

/// Declarations and the twin wrapper for the bpfoom build (after nothing:
/// it includes `bpf_oom.h` itself).
pub const BPFOOM_PRELUDE: &str = r#"/* bpfoom parity twin: bpfoom build */
#include <bpf_oom.h>
#define TWIN_BPFOOM 1
char _license[] SEC("license") = "GPL";

#ifndef __arg_ctx
#define __arg_ctx __attribute__((btf_decl_tag("arg:ctx")))
#endif
#ifndef __arg_nonnull
#define __arg_nonnull __attribute__((btf_decl_tag("arg:nonnull")))
#endif
#ifndef __arg_nullable
#define __arg_nullable __attribute__((btf_decl_tag("arg:nullable")))
#endif
#ifndef __arg_trusted
#define __arg_trusted __attribute__((btf_decl_tag("arg:trusted")))
#endif

#define TWIN_WRAPPER                                                        \
	struct task_struct *task = bpf_task_from_pid(1);                      \
	struct cgroup *cgrp;                                                  \
	int r;                                                                \
	if (!task)                                                            \
		return 0;                                                     \
	cgrp = bpf_cgroup_from_id(1);                                         \
	if (!cgrp) {                                                          \
		bpf_task_release(task);                                       \
		return 0;                                                     \
	}                                                                     \
	r = twin_body(task, cgrp);                                            \
	bpf_cgroup_release(cgrp);                                             \
	bpf_task_release(task);                                               \
	return r & 1;

#define TWIN_DECL static __always_inline int twin_body(struct task_struct *task, struct cgroup *cgrp)

#define TWIN                                                                  \
	TWIN_DECL;                                                            \
	SEC("struct_ops.s/handle_out_of_memory")                              \
	int BPF_PROG(twin, struct oom_control *twin_oc, struct cgroup *twin_cg) \
	{ TWIN_WRAPPER }                                                      \
	SEC(".struct_ops.link")                                               \
	struct bpf_oom_ops twin_ops = { .handle_out_of_memory = (void *)twin,  \
					.name = "twin" };                     \
	TWIN_DECL

#define TWIN_PSI                                                              \
	TWIN_DECL;                                                            \
	SEC("struct_ops.s/init") int BPF_PROG(twin_init, struct bpf_psi *twin_psi) \
	{ return 0; }                                                         \
	SEC("struct_ops.s/handle_psi_event")                                  \
	int BPF_PROG(twin, struct bpf_psi *twin_psi, struct psi_trigger *twin_t) \
	{ TWIN_WRAPPER }                                                      \
	SEC(".struct_ops.link")                                               \
	struct bpf_psi_ops twin_ops = { .init = (void *)twin_init,             \
					.handle_psi_event = (void *)twin,     \
					.name = "twin" };                     \
	TWIN_DECL
"#;

/// Why the kernel oracle cannot run here, or `None` when it can.
pub fn unavailable() -> Option<String> {
    if !crate::is_root() {
        return Some("the kernel oracle needs root (BPF_PROG_LOAD of syscall programs)".into());
    }
    if crate::clang().is_none() {
        return Some("clang not found (install clang, or set CLANG)".into());
    }
    if !Path::new("/sys/kernel/btf/vmlinux").is_file() {
        return Some("the running kernel has no BTF (/sys/kernel/btf/vmlinux)".into());
    }
    if !bpftool_runs() {
        return Some("bpftool not found (Debian package bpftool)".into());
    }
    if !Path::new("/sys/fs/bpf").is_dir() {
        return Some("no bpf filesystem at /sys/fs/bpf".into());
    }
    None
}

fn bpftool_runs() -> bool {
    Command::new("bpftool")
        .arg("version")
        .output()
        .is_ok_and(|o| o.status.success())
}

/// The directory holding the running kernel's `vmlinux.h`, generated once
/// per test process with bpftool. Its name carries a hash of the kernel's
/// BTF, so a new kernel never reuses an old header.
pub fn vmlinux_dir() -> Result<PathBuf, String> {
    static DIR: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    DIR.get_or_init(|| {
        let btf = std::fs::read("/sys/kernel/btf/vmlinux")
            .map_err(|e| format!("/sys/kernel/btf/vmlinux: {e}"))?;
        let mut h = DefaultHasher::new();
        btf.hash(&mut h);
        let dir = crate::cache_dir().join(format!("vmlinux-{:016x}", h.finish()));
        let header = dir.join("vmlinux.h");
        std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let o = Command::new("bpftool")
            .args([
                "btf",
                "dump",
                "file",
                "/sys/kernel/btf/vmlinux",
                "format",
                "c",
            ])
            .output()
            .map_err(|e| format!("running bpftool: {e}"))?;
        if !o.status.success() || o.stdout.is_empty() {
            return Err(format!(
                "bpftool btf dump failed: {}",
                String::from_utf8_lossy(&o.stderr)
            ));
        }
        let tmp = dir.join(format!("vmlinux.h.{}.tmp", std::process::id()));
        std::fs::write(&tmp, &o.stdout).map_err(|e| format!("{}: {e}", tmp.display()))?;
        std::fs::rename(&tmp, &header).map_err(|e| format!("{}: {e}", header.display()))?;
        Ok(dir)
    })
    .clone()
}

/// Builds a twin body as the kernel's `SEC("syscall")` program.
pub fn build_kernel_twin(name: &str, body: &str) -> Result<PathBuf, String> {
    let dir = vmlinux_dir()?;
    let src = format!("{KERNEL_PRELUDE}\n#line 1 \"{name}.c\"\n{body}");
    let inc = format!("-I{}", dir.display());
    crate::compile_str(&format!("{name}-kernel"), &src, &[&inc])
}

/// Builds a twin body as a bpfoom struct_ops handler (program `twin`).
pub fn build_bpfoom_twin(name: &str, body: &str) -> Result<PathBuf, String> {
    let src = format!("{BPFOOM_PRELUDE}\n#line 1 \"{name}.c\"\n{body}");
    crate::compile_str(&format!("{name}-bpfoom"), &src, &[])
}

/// What the kernel's verifier said about one program.
#[derive(Clone, Debug)]
pub struct KernelVerdict {
    /// The program loaded.
    pub accepted: bool,
    /// `processed N insns` from the log, when the kernel printed it.
    pub processed: Option<u64>,
    /// The level 1 verifier log of a rejected program; bpftool's output
    /// otherwise.
    pub log: String,
}

/// Loads `obj` (one `SEC("syscall")` program) into the running kernel with
/// `bpftool prog load` and returns the verifier's verdict and log. The
/// program is pinned under a unique name in `/sys/fs/bpf` only for the
/// moment of the load and unpinned at once. An error means the load never
/// reached the verifier (libbpf could not open the object, resolve a kfunc
/// or create a map): that is a broken test, not a verdict.
pub fn load(obj: &Path) -> Result<KernelVerdict, String> {
    static SEQ: AtomicU64 = AtomicU64::new(0);
    let pin = PathBuf::from(format!(
        "/sys/fs/bpf/bpfoom_parity_{}_{}",
        std::process::id(),
        SEQ.fetch_add(1, Ordering::Relaxed)
    ));
    // Without `-d` libbpf loads with log level 0 (a 1M-instruction program
    // with a level 2 log takes minutes) and, when the kernel refuses, loads
    // once more with log level 1 and prints that log.
    let out = Command::new("bpftool")
        .args(["prog", "load"])
        .arg(obj)
        .arg(&pin)
        .output()
        .map_err(|e| format!("running bpftool: {e}"));
    let verified = out
        .as_ref()
        .ok()
        .filter(|o| o.status.success())
        .and_then(|_| verified_insns(&pin).ok());
    // Unpin whatever happened (the pin is the only reference left).
    let _ = std::fs::remove_file(&pin);
    let out = out?;
    let text =
        String::from_utf8_lossy(&out.stderr).into_owned() + &String::from_utf8_lossy(&out.stdout);
    let accepted = out.status.success();
    if accepted {
        return Ok(KernelVerdict {
            accepted,
            processed: verified,
            log: text,
        });
    }
    match extract_log(&text) {
        Some(log) => Ok(KernelVerdict {
            accepted,
            processed: processed_insns(&log),
            log,
        }),
        None => Err(format!(
            "bpftool could not load {} before verification:\n{}",
            obj.display(),
            tail(&text, 60)
        )),
    }
}

/// Whether the running kernel's verifier gives a trusted pointer for the
/// element of an iterator that needs no RCU section (`bpf_iter_css_task_next`):
/// mainline Linux does since 6.12, some builds do not (they give an untrusted
/// one, and `bpf_task_acquire` of it fails with "must be a rcu pointer").
/// Asked once per test process with a probe program; `Err` when the kernel
/// refuses the probe for any other reason (its log says why).
pub fn iter_next_trusted() -> Result<bool, String> {
    static RULE: OnceLock<Result<bool, String>> = OnceLock::new();
    RULE.get_or_init(|| {
        // One element taken straight from next() and acquired: no loop, so
        // nothing but the element's trust decides the verdict.
        const PROBE: &str = r#"TWIN
{
	struct bpf_iter_css_task it;
	struct task_struct *t, *k = 0;
	bpf_iter_css_task_new(&it, &cgrp->self, CSS_TASK_ITER_PROCS);
	t = bpf_iter_css_task_next(&it);
	if (t)
		k = bpf_task_acquire(t);
	bpf_iter_css_task_destroy(&it);
	if (k)
		bpf_task_release(k);
	return 0;
}
"#;
        let obj = build_kernel_twin("probe_iter_next_trusted", PROBE)?;
        let v = load(&obj)?;
        if v.accepted {
            return Ok(true);
        }
        if v.log.contains("must be a rcu pointer") {
            return Ok(false);
        }
        Err(format!(
            "the iterator-element probe was refused for another reason:\n{}",
            tail(&v.log, 20)
        ))
    })
    .clone()
}

/// `verified_insns` of a pinned program (`struct bpf_prog_info`, Linux 5.16+):
/// the kernel's processed-instruction count without a log.
fn verified_insns(pin: &Path) -> std::io::Result<u64> {
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
    use std::os::unix::ffi::OsStrExt;
    const BPF_OBJ_GET: libc::c_long = 7;
    const BPF_OBJ_GET_INFO_BY_FD: libc::c_long = 15;
    /// Offset of `verified_insns` in `struct bpf_prog_info` (uapi, stable).
    const VERIFIED_INSNS: usize = 216;
    let path = std::ffi::CString::new(pin.as_os_str().as_bytes())
        .map_err(|_| std::io::Error::from(std::io::ErrorKind::InvalidInput))?;
    // union bpf_attr for BPF_OBJ_GET: pathname (u64), bpf_fd, file_flags, path_fd.
    let mut get = [0u64; 4];
    get[0] = path.as_ptr() as u64;
    // SAFETY: `get` is a zeroed bpf_attr prefix of the size passed; the
    // kernel reads the NUL-terminated `path`, which outlives the call.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            BPF_OBJ_GET,
            get.as_mut_ptr(),
            std::mem::size_of_val(&get),
        )
    };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: BPF_OBJ_GET returned a new file descriptor that nobody else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(fd as i32) };
    let mut info = [0u8; 232];
    // union bpf_attr for BPF_OBJ_GET_INFO_BY_FD: bpf_fd (u32), info_len (u32), info (u64).
    let mut attr = [0u64; 2];
    attr[0] = u64::from(fd.as_raw_fd() as u32) | ((info.len() as u64) << 32);
    attr[1] = info.as_mut_ptr() as u64;
    // SAFETY: the kernel writes at most info_len (= info.len()) bytes into
    // `info`, which lives across the call; `attr` has the size passed.
    let r = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            BPF_OBJ_GET_INFO_BY_FD,
            attr.as_mut_ptr(),
            std::mem::size_of_val(&attr),
        )
    };
    if r < 0 {
        return Err(std::io::Error::last_os_error());
    }
    let b = &info[VERIFIED_INSNS..VERIFIED_INSNS + 4];
    Ok(u64::from(u32::from_ne_bytes([b[0], b[1], b[2], b[3]])))
}

/// The last verifier log libbpf printed (`-- BEGIN PROG LOAD LOG --` ..
/// `-- END PROG LOAD LOG --`; libbpf may retry with a bigger buffer).
fn extract_log(text: &str) -> Option<String> {
    let start = text.rfind("-- BEGIN PROG LOAD LOG --")?;
    let rest = &text[start..];
    let body = rest.split_once('\n').map_or("", |(_, b)| b);
    let end = body.find("-- END PROG LOAD LOG --").unwrap_or(body.len());
    Some(body[..end].to_string())
}

/// `processed N insns` in a verifier log.
pub fn processed_insns(log: &str) -> Option<u64> {
    let at = log.rfind("processed ")?;
    log[at + "processed ".len()..]
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// The last `n` lines of `text`.
pub fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_parsing() {
        let t = "libbpf: x\nlibbpf: prog 'twin': -- BEGIN PROG LOAD LOG --\n0: (b7) r0 = 0\nprocessed 2 insns (limit 1000000) max_states_per_insn 0\n-- END PROG LOAD LOG --\nlibbpf: done\n";
        let log = extract_log(t).unwrap();
        assert!(log.starts_with("0: (b7)"), "{log}");
        assert!(!log.contains("END PROG"), "{log}");
        assert_eq!(processed_insns(&log), Some(2));
        assert_eq!(extract_log("no log here"), None);
        assert_eq!(processed_insns("processed x insns"), None);
    }

    #[test]
    fn kernel_accepts_and_rejects() {
        if let Some(why) = unavailable() {
            crate::require(false, &why);
            return;
        }
        let ok = build_kernel_twin("oracle_ok", "TWIN { return task->pid > 1; }").unwrap();
        let v = load(&ok).unwrap();
        assert!(v.accepted, "{}", v.log);
        assert!(v.processed.is_some_and(|n| n > 5), "{v:?}");
        let bad = build_kernel_twin(
            "oracle_bad",
            "TWIN { struct task_struct *t = bpf_task_acquire(task); return t != 0; }",
        )
        .unwrap();
        let v = load(&bad).unwrap();
        assert!(!v.accepted, "{}", v.log);
        assert!(v.log.contains("Unreleased reference"), "{}", v.log);
    }
}
