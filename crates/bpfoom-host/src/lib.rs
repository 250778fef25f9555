//! The bpfoom engine's [`Host`](bpfoom_engine::Host) on a real Linux
//! machine.
//!
//! - **cgroup v1** (`memory` controller): every memcg in a managed subtree
//!   gets `memory.oom_control` = 1 and an eventfd registered through
//!   `cgroup.event_control`, so the kernel pauses the OOM'ing cgroup's
//!   allocating tasks and wakes the daemon instead of killing. The OOM'ing
//!   memcg is the topmost one with `under_oom` 1 (the kernel marks the whole
//!   subtree). The fallback writes `oom_kill_disable` 0 (the waiters retry
//!   and the kernel kills) and puts 1 back once the kernel has killed.
//!   Raising a limit writes `memory.limit_in_bytes`.
//! - **cgroup v2**: no pause exists, so `memory.high` is kept a headroom
//!   below `memory.max`; an OOM event is usage above `memory.high` with a new
//!   `high`/`oom` event and enough `memory.pressure` stall since the last
//!   sample (inotify on `memory.events` wakes the daemon; PSI is sampled).
//!   The fallback lifts `memory.high` so the kernel acts at `memory.max`.
//! - **Global**: [`pressure::GlobalMonitor`] (MemAvailable or PSI `full`),
//!   with `sysrq f` or nothing as the fallback.
//! - **Kills** go through `pidfd_open` + `pidfd_send_signal` after checking
//!   the process's start time (a recycled pid is never hit), then
//!   `process_mrelease`; victims are held by pidfd until they exit.
//! - **Crash safety**: every file changed is first written to a state file
//!   ([`restore`]); [`sys::spawn_guardian`] restores it if the daemon dies.
//!
//! All paths come from [`HostConfig`] (`cgroup_root`, `proc_root`), so tests
//! run the same code over fixture trees.

pub mod cgroupfs;
mod freezer;
mod host;
pub mod kmsg;
pub mod parse;
pub mod pressure;
pub mod procfs;
pub mod restore;
pub mod sys;

pub use cgroupfs::{CgroupError, CgroupVersion, Cgroupfs};
pub use host::{monitor, GlobalFallback, HostConfig, LinuxHost, Rescan, TimedRecord};

/// Why the host could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The cgroup hierarchy is unusable.
    #[error(transparent)]
    Cgroup(#[from] CgroupError),
    /// A system call failed.
    #[error("{0}")]
    Sys(std::io::Error),
}

/// Finds this machine's memory hierarchy: the v1 memory mount if there is
/// one, else the v2 root, from `/proc/self/mountinfo` (under `proc_root`).
pub fn find_memory_hierarchy(proc_root: &std::path::Path) -> Option<std::path::PathBuf> {
    let text = std::fs::read_to_string(proc_root.join("self/mountinfo")).ok()?;
    let mut v2 = None;
    for l in text.lines() {
        let (pre, post) = l.split_once(" - ")?;
        let mount = pre.split(' ').nth(4)?;
        let mut it = post.split(' ');
        let fstype = it.next()?;
        let opts = it.nth(1).unwrap_or("");
        if fstype == "cgroup" && opts.split(',').any(|o| o == "memory") {
            return Some(mount.into());
        }
        if fstype == "cgroup2" && v2.is_none() {
            v2 = Some(mount.into());
        }
    }
    v2
}

/// How the daemon keeps its memory resident (`[daemon] mlock`).
///
/// The default is [`MemoryLock::OnFault`], the choice earlyoom and nohang
/// made: a page is locked the first time it is touched and stays resident
/// from then on. Start-up (configuration, verification, the JIT, the first
/// scan of the tree) touches most of what an OOM needs; the rest is locked
/// during the first OOM and stays locked for every later one. Locking the
/// whole binary up front ([`MemoryLock::All`]) costs its full text (about
/// 10 MB with Cranelift) whether or not it is ever run; it is the choice
/// for hosts whose main concern is the global OOM, where the first OOM may
/// have to read a not-yet-touched page back from disk.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum MemoryLock {
    /// No `mlockall`.
    Off,
    /// `mlockall(MCL_CURRENT | MCL_FUTURE | MCL_ONFAULT)`.
    #[default]
    OnFault,
    /// `mlockall(MCL_CURRENT | MCL_FUTURE)`: every mapping populated now.
    All,
}

/// Makes the daemon's memory resident as `mode` says (`mlockall`) and
/// touches `stack_bytes` of stack so the OOM path never faults in new
/// stack pages.
pub fn lock_memory(mode: MemoryLock, stack_bytes: usize) -> std::io::Result<()> {
    match mode {
        MemoryLock::Off => return Ok(()),
        MemoryLock::OnFault => {
            // Best effort: a kernel without smaps only keeps more resident.
            let _ = sys::drop_own_text();
            sys::mlockall(true)?
        }
        MemoryLock::All => sys::mlockall(false)?,
    }
    prefault_stack(stack_bytes);
    Ok(())
}

#[inline(never)]
fn prefault_stack(bytes: usize) {
    // Touch in chunks so a large request does not overflow one frame.
    const CHUNK: usize = 64 * 1024;
    fn touch(left: usize) {
        let mut buf = [0u8; CHUNK];
        std::hint::black_box(&mut buf);
        if left > CHUNK {
            touch(left - CHUNK);
        }
    }
    touch(bytes);
}
