//! Running programs in the Linux kernel through `bpf(2)`, as the reference
//! for differential tests and as the JIT baseline for benchmarks. This is the
//! crate's only syscall code; the interpreter itself never needs it, so it
//! is built only with the cargo feature `kernel` (off by default; the tests
//! and benchmarks that use it turn it on).

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use bpfoom_insn::Insn;
use thiserror::Error;

const BPF_PROG_LOAD: libc::c_long = 5;
const BPF_PROG_TEST_RUN: libc::c_long = 10;
const BPF_MAP_CREATE: libc::c_long = 0;
/// `BPF_PROG_TYPE_XDP`: supports `BPF_PROG_TEST_RUN` with packet data.
const BPF_PROG_TYPE_XDP: u32 = 6;

#[repr(C)]
#[derive(Default)]
struct ProgLoadAttr {
    prog_type: u32,
    insn_cnt: u32,
    insns: u64,
    license: u64,
    log_level: u32,
    log_size: u32,
    log_buf: u64,
    kern_version: u32,
    prog_flags: u32,
    prog_name: [u8; 16],
    prog_ifindex: u32,
    expected_attach_type: u32,
}

/// The leading fields of `union bpf_attr` for `BPF_MAP_CREATE`, zero-padded
/// (the kernel requires unknown trailing bytes to be zero).
#[repr(C)]
#[derive(Default)]
struct MapCreateAttr {
    map_type: u32,
    key_size: u32,
    value_size: u32,
    max_entries: u32,
    pad: [u64; 14],
}

#[repr(C)]
#[derive(Default)]
struct TestRunAttr {
    prog_fd: u32,
    retval: u32,
    data_size_in: u32,
    data_size_out: u32,
    data_in: u64,
    data_out: u64,
    repeat: u32,
    duration: u32,
    ctx_size_in: u32,
    ctx_size_out: u32,
    ctx_in: u64,
    ctx_out: u64,
    flags: u32,
    cpu: u32,
    batch_size: u32,
    _pad: u32,
}

fn sys_bpf<T>(cmd: libc::c_long, attr: &mut T) -> io::Result<libc::c_long> {
    // SAFETY: `attr` is a live, properly initialised `#[repr(C)]` prefix of
    // `union bpf_attr` for `cmd`, and we pass its exact size; every pointer
    // stored in it refers to a buffer the caller keeps alive across the call.
    let r = unsafe { libc::syscall(libc::SYS_bpf, cmd, attr as *mut T, size_of::<T>()) };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

/// Failure to load a program into the kernel.
#[derive(Debug, Error)]
pub enum KernelError {
    /// The kernel verifier rejected the program.
    #[error("kernel verifier rejected the program ({errno}): {log}")]
    Rejected {
        /// The errno of `BPF_PROG_LOAD`.
        errno: io::Error,
        /// The last lines of the verifier log.
        log: String,
    },
    /// `bpf(2)` failed for another reason.
    #[error("bpf(2) failed: {0}")]
    Sys(#[from] io::Error),
}

/// A program loaded into the kernel (closed on drop).
pub struct KernelProg {
    fd: OwnedFd,
}

/// Result of one `BPF_PROG_TEST_RUN`.
#[derive(Debug, Clone)]
pub struct TestRun {
    /// The program's return value (the kernel reports 32 bits).
    pub retval: u32,
    /// Packet bytes after the run.
    pub data_out: Vec<u8>,
    /// Mean duration of one run in nanoseconds, as measured by the kernel.
    pub duration_ns: u32,
}

/// `BPF_PROG_TYPE_SOCKET_FILTER`: the simplest type an unprivileged-style
/// program can be loaded as (used by the verifier's differential test).
pub const PROG_TYPE_SOCKET_FILTER: u32 = 1;

/// `BPF_PROG_LOAD` of `insns` as `prog_type` (license GPL). A non-empty
/// `log` receives the kernel verifier's log (level 1).
pub fn prog_load(prog_type: u32, insns: &[Insn], log: &mut [u8]) -> io::Result<OwnedFd> {
    let bytes: Vec<u8> = insns.iter().flat_map(|i| i.to_bytes()).collect();
    let license = b"GPL\0";
    let mut attr = ProgLoadAttr {
        prog_type,
        insn_cnt: insns.len() as u32,
        insns: bytes.as_ptr() as u64,
        license: license.as_ptr() as u64,
        ..Default::default()
    };
    if !log.is_empty() {
        attr.log_level = 1;
        attr.log_size = log.len() as u32;
        attr.log_buf = log.as_mut_ptr() as u64;
    }
    let fd = sys_bpf(BPF_PROG_LOAD, &mut attr)?;
    // SAFETY: a successful BPF_PROG_LOAD returns a new fd that we own.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

/// `BPF_MAP_CREATE` of an array map.
pub fn array_map_create(key_size: u32, value_size: u32, max_entries: u32) -> io::Result<OwnedFd> {
    let mut attr = MapCreateAttr {
        map_type: bpfoom_abi::maps::MapKind::Array.linux_id(),
        key_size,
        value_size,
        max_entries,
        ..Default::default()
    };
    let fd = sys_bpf(BPF_MAP_CREATE, &mut attr)?;
    // SAFETY: a successful BPF_MAP_CREATE returns a new fd that we own.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

/// The text of a NUL-terminated log buffer.
pub fn log_text(log: &[u8]) -> String {
    let end = log.iter().position(|&b| b == 0).unwrap_or(log.len());
    String::from_utf8_lossy(&log[..end]).into_owned()
}

/// Loads an XDP program (license GPL).
pub fn load_xdp(insns: &[Insn]) -> Result<KernelProg, KernelError> {
    let load = |log: &mut [u8]| prog_load(BPF_PROG_TYPE_XDP, insns, log);
    match load(&mut []) {
        Ok(fd) => Ok(KernelProg { fd }),
        Err(e)
            if e.raw_os_error() == Some(libc::EACCES) || e.raw_os_error() == Some(libc::EINVAL) =>
        {
            let mut log = vec![0u8; 1 << 20];
            let _ = load(&mut log);
            let text = log_text(&log);
            let tail: Vec<&str> = text.lines().rev().take(3).collect();
            Err(KernelError::Rejected {
                errno: e,
                log: tail.into_iter().rev().collect::<Vec<_>>().join(" | "),
            })
        }
        Err(e) => Err(KernelError::Sys(e)),
    }
}

impl KernelProg {
    /// Runs the program `repeat` times on a copy of `data` (at least 14 bytes).
    pub fn test_run(&self, data: &[u8], repeat: u32) -> io::Result<TestRun> {
        let mut out = vec![0u8; data.len() + 256];
        let mut attr = TestRunAttr {
            prog_fd: self.fd.as_raw_fd() as u32,
            data_size_in: data.len() as u32,
            data_size_out: out.len() as u32,
            data_in: data.as_ptr() as u64,
            data_out: out.as_mut_ptr() as u64,
            repeat,
            ..Default::default()
        };
        sys_bpf(BPF_PROG_TEST_RUN, &mut attr)?;
        out.truncate(attr.data_size_out as usize);
        Ok(TestRun {
            retval: attr.retval,
            data_out: out,
            duration_ns: attr.duration,
        })
    }
}

/// Whether kernel runs are possible here; the error says why not.
pub fn available() -> Result<(), String> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Err("not running as root".into());
    }
    let prog = bpfoom_insn::assemble("mov %r0, 2\nexit").map_err(|e| e.to_string())?;
    let p = load_xdp(&prog).map_err(|e| format!("BPF_PROG_LOAD unavailable: {e}"))?;
    let r = p
        .test_run(&[0; 64], 1)
        .map_err(|e| format!("BPF_PROG_TEST_RUN unavailable: {e}"))?;
    if r.retval != 2 {
        return Err(format!(
            "BPF_PROG_TEST_RUN returned {} for a constant program",
            r.retval
        ));
    }
    Ok(())
}

/// CPU time consumed by the calling thread, in nanoseconds. Benchmarks use
/// it instead of wall time so that time spent descheduled on a busy machine
/// does not count.
pub fn thread_cpu_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec; CLOCK_THREAD_CPUTIME_ID is
    // supported on every Linux version bpfoom runs on.
    let r = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    if r != 0 {
        return 0;
    }
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}
