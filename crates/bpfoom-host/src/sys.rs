//! Every system call bpfoom needs that std does not wrap. rustix makes most
//! of them (pidfds, eventfd, inotify, poll, statfs, mlockall, peer
//! credentials, clocks); the rest (`process_mrelease`, signalfd, the
//! guardian's fork) are written here with libc. This is the only module of
//! the host and daemon crates with `unsafe`; each wrapper checks its
//! arguments and turns the C convention into `io::Result`.

use std::ffi::CString;
use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

fn cvt(r: libc::c_long) -> io::Result<libc::c_long> {
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

fn owned(fd: libc::c_long) -> io::Result<OwnedFd> {
    let fd = cvt(fd)? as RawFd;
    // SAFETY: the kernel just returned this descriptor to us; nobody else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// CLOCK_MONOTONIC in nanoseconds: the kernel's `ktime_get_ns()`, the
/// clock of `bpf_ktime_get_ns` and of task start times.
pub fn monotonic_ns() -> u64 {
    let ts = rustix::time::clock_gettime(rustix::time::ClockId::Monotonic);
    (ts.tv_sec as u64).wrapping_mul(1_000_000_000) + ts.tv_nsec as u64
}

/// `pidfd_open(pid, 0)`: a handle on the process that stays valid (and
/// keeps naming the same process) even after the pid is recycled.
pub fn pidfd_open(pid: i32) -> io::Result<OwnedFd> {
    let pid = rustix::process::Pid::from_raw(pid)
        .filter(|_| pid > 0)
        .ok_or_else(|| io::Error::from_raw_os_error(libc::EINVAL))?;
    Ok(rustix::process::pidfd_open(
        pid,
        rustix::process::PidfdFlags::empty(),
    )?)
}

/// `pidfd_send_signal(pidfd, sig, NULL, 0)`.
pub fn pidfd_send_signal(pidfd: BorrowedFd<'_>, sig: i32) -> io::Result<()> {
    let sig = rustix::process::Signal::from_named_raw(sig)
        .ok_or_else(|| io::Error::from_raw_os_error(libc::EINVAL))?;
    Ok(rustix::process::pidfd_send_signal(pidfd, sig)?)
}

fn cpath(path: &Path) -> io::Result<CString> {
    use std::os::unix::ffi::OsStrExt;
    CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path contains NUL"))
}

/// `process_mrelease(pidfd, 0)`: frees a dying process's memory now.
pub fn process_mrelease(pidfd: BorrowedFd<'_>) -> io::Result<()> {
    // SAFETY: a valid descriptor and flags 0.
    cvt(unsafe { libc::syscall(libc::SYS_process_mrelease, pidfd.as_raw_fd(), 0) }).map(drop)
}

/// A non-blocking, close-on-exec eventfd, as a file (read 8 bytes to reset).
pub fn eventfd() -> io::Result<File> {
    use rustix::event::EventfdFlags;
    let fd = rustix::event::eventfd(0, EventfdFlags::CLOEXEC | EventfdFlags::NONBLOCK)?;
    Ok(File::from(fd))
}

/// A non-blocking, close-on-exec inotify instance.
pub fn inotify_init() -> io::Result<File> {
    use rustix::fs::inotify::CreateFlags;
    let fd = rustix::fs::inotify::init(CreateFlags::CLOEXEC | CreateFlags::NONBLOCK)?;
    Ok(File::from(fd))
}

/// `inotify_add_watch` with a raw `IN_*` mask; returns the watch descriptor.
pub fn inotify_add_watch(ino: &File, path: &Path, mask: u32) -> io::Result<i32> {
    let flags = rustix::fs::inotify::WatchFlags::from_bits_retain(mask);
    Ok(rustix::fs::inotify::add_watch(ino, path, flags)?)
}

/// `inotify_rm_watch` (errors ignored: the watch may already be gone).
pub fn inotify_rm_watch(ino: &File, wd: i32) {
    let _ = rustix::fs::inotify::remove_watch(ino, wd);
}

/// What to wait for on a descriptor.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Wait {
    /// Data to read (eventfd, inotify, sockets, an exited pidfd).
    Readable,
    /// An exceptional condition (`POLLPRI`): a PSI trigger firing.
    Priority,
}

/// Waits until one of `fds` is ready (or in error or hung up); returns,
/// per fd, whether it is. An interrupted wait returns all false.
pub fn poll(fds: &[(BorrowedFd<'_>, Wait)], timeout: Option<Duration>) -> io::Result<Vec<bool>> {
    use rustix::event::{PollFd, PollFlags};
    let mut p: Vec<PollFd<'_>> = fds
        .iter()
        .map(|&(f, w)| {
            let events = match w {
                Wait::Readable => PollFlags::IN,
                Wait::Priority => PollFlags::PRI,
            };
            PollFd::from_borrowed_fd(f, events)
        })
        .collect();
    let ts = timeout.map(|t| rustix::time::Timespec {
        tv_sec: t.as_secs().min(i64::MAX as u64) as i64,
        tv_nsec: i64::from(t.subsec_nanos()),
    });
    match rustix::event::poll(&mut p, ts.as_ref()) {
        Ok(_) => Ok(p.iter().map(|x| !x.revents().is_empty()).collect()),
        Err(rustix::io::Errno::INTR) => Ok(vec![false; fds.len()]),
        Err(e) => Err(e.into()),
    }
}

/// [`poll`] for readability only.
pub fn poll_readable(fds: &[BorrowedFd<'_>], timeout: Option<Duration>) -> io::Result<Vec<bool>> {
    let v: Vec<_> = fds.iter().map(|f| (*f, Wait::Readable)).collect();
    poll(&v, timeout)
}

/// `statfs(path).f_type`: which file system holds `path`.
pub fn fs_magic(path: &Path) -> io::Result<i64> {
    Ok(rustix::fs::statfs(path)?.f_type as i64)
}

/// `CGROUP2_SUPER_MAGIC`.
pub const CGROUP2_MAGIC: i64 = 0x6367_7270;
/// `PROC_SUPER_MAGIC`.
pub const PROC_MAGIC: i64 = 0x9fa0;

/// Locks current and future memory (`mlockall(MCL_CURRENT | MCL_FUTURE)`,
/// with `MCL_ONFAULT` when `on_fault`: pages are locked as they are first
/// touched instead of all populated now), so the daemon is not paged out
/// while the machine is out of memory.
pub fn mlockall(on_fault: bool) -> io::Result<()> {
    use rustix::mm::MlockAllFlags;
    let mut flags = MlockAllFlags::CURRENT | MlockAllFlags::FUTURE;
    if on_fault {
        flags |= MlockAllFlags::ONFAULT;
    }
    Ok(rustix::mm::mlockall(flags)?)
}

/// Unmaps, from this process's page tables only, the pages of its own
/// executable's text that are resident now; returns how many bytes the
/// mappings span. The pages stay in the page cache: the next execution of
/// any of them is a minor fault that maps it back (and, under
/// `MCL_ONFAULT`, locks it). Only read-only executable mappings of the
/// binary itself are touched, and only when they hold no private
/// (copy-on-write) page, so nothing but clean file pages is dropped.
///
/// Called once start-up is over, it leaves resident only the code that
/// runs after it: the verifier, the JIT and the configuration parser that
/// start-up ran are not kept locked for the daemon's lifetime.
pub fn drop_own_text() -> io::Result<usize> {
    use std::os::unix::fs::MetadataExt;
    let ino = std::fs::metadata("/proc/self/exe")?.ino();
    let smaps = std::fs::read_to_string("/proc/self/smaps")?;
    let mut dropped = 0;
    let mut cur: Option<(usize, usize)> = None;
    for line in smaps.lines() {
        let mut f = line.split_ascii_whitespace();
        let (Some(range), Some(perms)) = (f.next(), f.next()) else {
            continue;
        };
        if let Some((a, b)) = range.split_once('-') {
            if let (Ok(a), Ok(b)) = (usize::from_str_radix(a, 16), usize::from_str_radix(b, 16)) {
                let inode = f.nth(2).and_then(|i| i.parse::<u64>().ok());
                cur = (perms == "r-xp" && inode == Some(ino)).then_some((a, b));
                continue;
            }
        }
        if let (Some((a, b)), Some(kb)) = (cur, line.strip_prefix("Anonymous:")) {
            cur = None;
            if kb.trim() != "0 kB" {
                continue;
            }
            // SAFETY: [a, b) is one whole read-only, executable, file-backed
            // private mapping of this binary without anonymous pages: never
            // written, so MADV_DONTNEED only removes page-table entries and
            // every later access maps the same file page back.
            unsafe { rustix::mm::madvise(a as *mut _, b - a, rustix::mm::Advice::LinuxDontNeed)? };
            dropped += b - a;
        }
    }
    Ok(dropped)
}

/// Raises the open-file limit as far as this process may: both limits to
/// `fs.nr_open` where it is privileged (`CAP_SYS_RESOURCE`), else the soft
/// limit to the hard one. Returns the soft limit in force afterwards.
///
/// Every watched cgroup holds descriptors (an eventfd and `oom_control` on
/// v1; a `memory.events` watch and a PSI trigger on v2), and services start
/// with a soft limit of 1,024 (systemd's default; the kernel's is 1,024 soft
/// and 4,096 hard), which about 1,000 watched cgroups exhaust. The daemon
/// uses `poll`, never `select`, so a large limit is safe.
pub fn raise_nofile_limit() -> io::Result<u64> {
    use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};
    let cur = getrlimit(Resource::Nofile);
    let nr_open = std::fs::read_to_string("/proc/sys/fs/nr_open")
        .ok()
        .and_then(|s| s.trim().parse::<u64>().ok());
    if let Some(n) = nr_open.filter(|&n| cur.maximum.is_some_and(|m| m < n)) {
        let all = Rlimit {
            current: Some(n),
            maximum: Some(n),
        };
        if setrlimit(Resource::Nofile, all).is_ok() {
            return Ok(n);
        }
    }
    if cur.current != cur.maximum {
        setrlimit(
            Resource::Nofile,
            Rlimit {
                current: cur.maximum,
                maximum: cur.maximum,
            },
        )?;
    }
    Ok(cur.maximum.unwrap_or(u64::MAX))
}

/// The uid and pid of the process at the other end of a Unix socket.
pub fn peer_cred(sock: &UnixStream) -> io::Result<(u32, i32)> {
    let c = rustix::net::sockopt::socket_peercred(sock)?;
    Ok((c.uid.as_raw(), c.pid.as_raw_nonzero().get()))
}

/// Blocks SIGTERM, SIGINT and SIGHUP and returns a signalfd that receives
/// them instead, so the daemon handles them in its poll loop.
pub fn termination_signalfd() -> io::Result<File> {
    // SAFETY: `set` is initialised by sigemptyset before use; all pointers
    // point to that local.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for s in [libc::SIGTERM, libc::SIGINT, libc::SIGHUP] {
            libc::sigaddset(&mut set, s);
        }
        cvt(libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) as _)
            .map_err(|_| io::Error::other("pthread_sigmask failed"))?;
        let fd = owned(libc::signalfd(-1, &set, libc::SFD_CLOEXEC | libc::SFD_NONBLOCK) as _)?;
        Ok(File::from(fd))
    }
}

/// Reads one signal from a signalfd; `None` when none is pending.
pub fn read_signal(sfd: &File) -> Option<i32> {
    use std::io::Read;
    let mut buf = [0u8; 128]; // sizeof(struct signalfd_siginfo)
    let mut f = sfd;
    match f.read(&mut buf) {
        Ok(128) => Some(i32::from_ne_bytes([buf[0], buf[1], buf[2], buf[3]])),
        _ => None,
    }
}

/// Starts the guardian: a forked child that waits for this process to die
/// (by pidfd, so even SIGKILL is seen at once), then applies the restore
/// list in `state_file` (lines `PATH VALUE`: write VALUE to PATH) and exits.
/// On a clean exit the daemon empties the file first, so the guardian does
/// nothing. Returns the guardian's pid.
///
/// The child runs no Rust code that allocates or locks: after `fork` in a
/// process that may have threads, only async-signal-safe calls are sound.
pub fn spawn_guardian(state_file: &Path) -> io::Result<i32> {
    let path = cpath(state_file)?;
    let me = pidfd_open(std::process::id() as i32)?;
    let devnull = c"/dev/null";
    // SAFETY: fork has no memory-safety preconditions; the child only calls
    // async-signal-safe functions on buffers that live on its own stack or
    // were allocated before the fork, and ends with _exit.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(io::Error::last_os_error());
    }
    if pid > 0 {
        return Ok(pid);
    }
    // SAFETY: the guardian child; see above.
    unsafe { guardian_child(me.as_raw_fd(), path.as_ptr(), devnull.as_ptr()) }
}

/// Collects an exited child (`waitpid(pid, WNOHANG)`); true if it was.
pub fn reap_child(pid: i32) -> bool {
    let mut status = 0;
    // SAFETY: `status` is a live int for the call.
    unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) == pid }
}

/// The guardian's body (never returns).
///
/// # Safety
/// Call only in a freshly forked child; `state` and `devnull` must be
/// NUL-terminated strings.
unsafe fn guardian_child(
    daemon: RawFd,
    state: *const libc::c_char,
    devnull: *const libc::c_char,
) -> ! {
    // SAFETY: raw libc calls on integers, on the caller's NUL-terminated
    // strings and on local stack buffers with their sizes (whole body).
    unsafe {
        // Drop every inherited descriptor but the daemon's pidfd: holding the
        // control socket or the daemon's stdout would make clients and
        // readers wait for us.
        for fd in 0..4096 {
            if fd != daemon {
                libc::close(fd);
            }
        }
        let null = libc::open(devnull, libc::O_RDWR);
        if null >= 0 {
            libc::dup2(null, 0);
            libc::dup2(null, 1);
            libc::dup2(null, 2);
        }
        libc::setsid();
        // The daemon may have blocked its termination signals (its signalfd)
        // before forking this one: a stopped service's SIGTERM must still
        // end the guardian as it ends a first one.
        let mut none: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut none);
        libc::sigprocmask(libc::SIG_SETMASK, &none, std::ptr::null_mut());
        // Lock on fault: the guardian shares the daemon's whole address space
        // after the fork but runs a few pages of it; populating all of it
        // (MCL_CURRENT alone) would double the pair's resident size. What it
        // needs once the daemon is gone is touched below, before it waits.
        if libc::mlockall(libc::MCL_CURRENT | libc::MCL_FUTURE | libc::MCL_ONFAULT) != 0 {
            libc::mlockall(libc::MCL_CURRENT | libc::MCL_FUTURE);
        }
        let adj = libc::open(c"/proc/self/oom_score_adj".as_ptr(), libc::O_WRONLY);
        if adj >= 0 {
            libc::write(adj, b"-1000".as_ptr().cast(), 5);
            libc::close(adj);
        }
        // Stream the file line by line: any number of entries, fixed memory.
        // The buffers are written (so their stack pages are resident and
        // locked) and restore_line is run once on an empty line before the
        // wait, so the restore after the daemon's death faults nothing in.
        let mut chunk = std::hint::black_box([0u8; 8192]);
        let mut line = std::hint::black_box([0u8; 4096]);
        restore_line(std::hint::black_box(&line[..0]));
        let mut p = libc::pollfd {
            fd: daemon,
            events: libc::POLLIN,
            revents: 0,
        };
        while libc::poll(&mut p, 1, -1) <= 0 {}
        let mut len = 0usize;
        let mut overlong = false;
        let fd = libc::open(state, libc::O_RDONLY);
        if fd >= 0 {
            loop {
                let n = libc::read(fd, chunk.as_mut_ptr().cast(), chunk.len());
                if n <= 0 {
                    break;
                }
                for &b in &chunk[..n as usize] {
                    if b == b'\n' {
                        if !overlong {
                            restore_line(&line[..len]);
                        }
                        len = 0;
                        overlong = false;
                    } else if len < line.len() {
                        line[len] = b;
                        len += 1;
                    } else {
                        overlong = true;
                    }
                }
            }
            libc::close(fd);
            // A last line without its newline was cut (bpfoom ends every
            // line with one): its value may be a fragment ("memory.high
            // 8808"), so it is left for the next daemon's reconcile, which
            // only trusts it to name its cgroup.
        }
        libc::_exit(0)
    }
}

fn hex_digit(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

/// Applies one `PATH VALUE` line.
///
/// # Safety
/// Only async-signal-safe calls; `line` is a live buffer.
unsafe fn restore_line(line: &[u8]) {
    let Some(sp) = line.iter().rposition(|&b| b == b' ') else {
        return;
    };
    let mut path = [0u8; 4096];
    if sp == 0 || sp >= path.len() {
        return;
    }
    // Decode `\xHH` escapes (restore::escape_path) in place, no allocation.
    let (mut i, mut n) = (0, 0);
    while i < sp {
        let b = line[i];
        if b == b'\\' && i + 3 < sp && line[i + 1] == b'x' {
            if let (Some(h), Some(l)) = (hex_digit(line[i + 2]), hex_digit(line[i + 3])) {
                path[n] = h * 16 + l;
                n += 1;
                i += 4;
                continue;
            }
        }
        path[n] = b;
        n += 1;
        i += 1;
    }
    // A NUL inside the path (a damaged file) would name another file.
    if path[..n].contains(&0) {
        return;
    }
    let value = &line[sp + 1..];
    // O_TRUNC as a shell's `>` does: cgroupfs ignores it, plain files (test
    // fixtures) need it.
    // SAFETY: `path` is NUL-terminated (zero-filled beyond `sp`); `value` is
    // a live slice of `value.len()` bytes.
    unsafe {
        let fd = libc::open(path.as_ptr().cast(), libc::O_WRONLY | libc::O_TRUNC);
        if fd >= 0 {
            libc::write(fd, value.as_ptr().cast(), value.len());
            libc::close(fd);
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn nofile_limit_is_raised_to_the_hard_limit_at_least() {
        let hard = rustix::process::getrlimit(rustix::process::Resource::Nofile).maximum;
        let soft = super::raise_nofile_limit().unwrap();
        let now = rustix::process::getrlimit(rustix::process::Resource::Nofile);
        assert_eq!(now.current, Some(soft));
        assert!(
            hard.is_none_or(|h| soft >= h),
            "soft {soft} below the hard limit {hard:?}"
        );
    }
}
