//! The fault suite, victims (issue 13): a victim blocked in uninterruptible
//! sleep (fault 1: a FUSE request its server never answers, so SIGKILL
//! cannot end it), and a victim moved, or its cgroup removed, between the
//! policy's choice and its kill (fault 2). The real daemon binary on this
//! machine's cgroup v1 memory controller; RELIABILITY.md has the rows.
//!
//! Every test builds its own subtree below this process's memcg and removes
//! it on drop; the FUSE mount lives in the test's scratch directory and is
//! detached on drop (closing the server's /dev/fuse descriptor first, which
//! aborts the connection and wakes whatever waits on it).

#![allow(clippy::unwrap_used)]

mod common;

use std::ffi::CString;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;

const S: Duration = Duration::from_secs(1);

/// `(state letter, VmRSS kB)` of a process. The state is `D` when any of
/// its threads is in uninterruptible sleep (after SIGKILL the thread-group
/// leader of the test helper exits at once and shows `Z` while the thread
/// blocked in the file system stays), else the leader's.
fn state_of(pid: i32) -> Option<(char, u64)> {
    let stat_state = |p: &str| -> Option<char> {
        let stat = std::fs::read_to_string(p).ok()?;
        stat.rsplit_once(')')?.1.trim_start().chars().next()
    };
    let leader = stat_state(&format!("/proc/{pid}/stat"))?;
    // The memory is the live thread's (an exited leader has no mm).
    let blocked = std::fs::read_dir(format!("/proc/{pid}/task"))
        .ok()?
        .flatten()
        .map(|e| e.path())
        .find(|t| stat_state(&format!("{}/stat", t.display())) == Some('D'));
    let status_of = blocked.as_ref().map_or(format!("/proc/{pid}/status"), |t| {
        format!("{}/status", t.display())
    });
    let status = std::fs::read_to_string(status_of).ok()?;
    let rss = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        // No VmRSS line: not what the test can judge.
        .unwrap_or(u64::MAX);
    Some((if blocked.is_some() { 'D' } else { leader }, rss))
}

/// A victim blocked in a [`Fuse`] mount: the mount is dropped first (its
/// server's descriptor closed, which ends the blocked request), so waiting
/// for the victim on drop cannot hang.
struct Blocked {
    fuse: Option<Fuse>,
    victim: Alloc,
}

impl Drop for Blocked {
    fn drop(&mut self) {
        self.fuse.take();
    }
}

// ---------------------------------------------------------------------
// A FUSE file system that never answers
// ---------------------------------------------------------------------

const FUSE_INIT: u32 = 26;
const FUSE_LOOKUP: u32 = 1;

/// A FUSE mount whose server answers INIT and then holds every request
/// without replying. A process that looks a name up there sleeps until the
/// server replies; once the server has read the request, a SIGKILL turns
/// that sleep uninterruptible (`request_wait_answer`: "Either request is
/// already in userspace, or it was forced. Wait it out."), state D.
struct Fuse {
    mnt: PathBuf,
    stop: Arc<AtomicBool>,
    seen: Arc<Mutex<Vec<u32>>>,
    server: Option<std::thread::JoinHandle<()>>,
}

impl Fuse {
    fn mount(name: &str) -> Result<Fuse, String> {
        let mnt = scratch(&format!("{name}-fuse"));
        let dev = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open("/dev/fuse")
            .map_err(|e| format!("/dev/fuse: {e}"))?;
        let fd: OwnedFd = dev.into();
        let opts = CString::new(format!(
            "fd={},rootmode=40000,user_id=0,group_id=0",
            fd.as_raw_fd()
        ))
        .unwrap();
        let target = CString::new(mnt.as_os_str().as_bytes()).unwrap();
        // SAFETY: every pointer is a NUL-terminated string that outlives
        // the call; mount(2) only reads them.
        let r = unsafe {
            libc::mount(
                c"bpfoom-test".as_ptr(),
                target.as_ptr(),
                c"fuse".as_ptr(),
                libc::MS_NOSUID | libc::MS_NODEV,
                opts.as_ptr().cast(),
            )
        };
        if r != 0 {
            return Err(format!(
                "mount fuse on {}: {}",
                mnt.display(),
                std::io::Error::last_os_error()
            ));
        }
        let stop = Arc::new(AtomicBool::new(false));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let (stop2, seen2) = (stop.clone(), seen.clone());
        let server = std::thread::spawn(move || serve(fd, &stop2, &seen2));
        Ok(Fuse {
            mnt,
            stop,
            seen,
            server: Some(server),
        })
    }

    /// Whether the server has read a request with this opcode.
    fn saw(&self, opcode: u32) -> bool {
        self.seen.lock().unwrap().contains(&opcode)
    }
}

impl Drop for Fuse {
    fn drop(&mut self) {
        // The server thread closes /dev/fuse when it stops: the kernel
        // aborts the connection and ends every waiting request.
        self.stop.store(true, Ordering::SeqCst);
        if let Some(h) = self.server.take() {
            let _ = h.join();
        }
        let target = CString::new(self.mnt.as_os_str().as_bytes()).unwrap();
        // SAFETY: a NUL-terminated path that outlives the call.
        unsafe { libc::umount2(target.as_ptr(), libc::MNT_DETACH) };
    }
}

/// The server loop: answers FUSE_INIT, holds everything else (the
/// descriptor is polled so the loop sees `stop`; dropping `fd` at the end
/// aborts the connection).
fn serve(fd: OwnedFd, stop: &AtomicBool, seen: &Mutex<Vec<u32>>) {
    let mut buf = vec![0u8; 1 << 17];
    while !stop.load(Ordering::SeqCst) {
        let mut p = libc::pollfd {
            fd: fd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one pollfd we own, for the duration of the call.
        if unsafe { libc::poll(&mut p, 1, 50) } <= 0 {
            continue;
        }
        // SAFETY: reads into our buffer, at most its length.
        let n = unsafe { libc::read(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
        if n < 40 {
            continue;
        }
        let u32_at = |o: usize| u32::from_ne_bytes(buf[o..o + 4].try_into().unwrap());
        let opcode = u32_at(4);
        let unique = u64::from_ne_bytes(buf[8..16].try_into().unwrap());
        seen.lock().unwrap().push(opcode);
        if opcode != FUSE_INIT {
            continue; // held: never answered
        }
        // fuse_out_header (16 bytes) + fuse_init_out (64 bytes): protocol
        // 7.31, no optional features, 4 KiB writes.
        let mut out = [0u8; 16 + 64];
        out[0..4].copy_from_slice(&80u32.to_ne_bytes());
        out[8..16].copy_from_slice(&unique.to_ne_bytes());
        let body = &mut out[16..];
        body[0..4].copy_from_slice(&7u32.to_ne_bytes());
        body[4..8].copy_from_slice(&31u32.to_ne_bytes());
        body[16..18].copy_from_slice(&16u16.to_ne_bytes()); // max_background
        body[18..20].copy_from_slice(&12u16.to_ne_bytes()); // congestion_threshold
        body[20..24].copy_from_slice(&4096u32.to_ne_bytes()); // max_write
        body[24..28].copy_from_slice(&1u32.to_ne_bytes()); // time_gran
                                                           // SAFETY: writes our buffer, its length.
        unsafe { libc::write(fd.as_raw_fd(), out.as_ptr().cast(), out.len()) };
    }
    drop(fd);
}

/// The uninterruptible-sleep victim bound: as the kernel's reaper does,
/// `process_mrelease` frees the victim's memory while it still cannot exit,
/// so the allocator resumes about as fast as after a normal kill.
const DSTATE_FIRST_BOUND: Duration = Duration::from_millis(1500);

/// How long the next OOM in the memcg may take to pick another victim while
/// the first still cannot exit: its memory is reaped, so it holds off
/// nothing (as the kernel's MMF_OOM_SKIP); the settle time (150 ms), one
/// handler run and a kill, with margin for a shared 2-core machine (before
/// the daemon looked at what a victim still holds, the 3 s victim grace
/// ran out first: 2.8 s).
const DSTATE_NEXT_BOUND: Duration = Duration::from_millis(1500);

/// A victim in uninterruptible sleep: its memory is reaped by
/// process_mrelease at once (the allocator resumes), it stays alive in
/// state D, bpf_task_is_oom_victim stays true for it while it lives, and
/// the next OOM in the memcg kills another task within the bound (the
/// reaped victim does not hold it off), not the reaped victim again. When the file system answers (connection aborted),
/// the victim exits and is no longer reported as a victim.
#[test]
fn fault1_victim_in_uninterruptible_sleep() {
    let Some(h) = v1_or_skip("fault1_victim_in_uninterruptible_sleep") else {
        return;
    };
    let Some(pol) = policy("tests/kill_exiting.bpf.c") else {
        return;
    };
    let t = TestTree::v1_memory(&h, "f1dstate", 32 << 20);
    t.mkdir("a");
    t.mkdir("b");
    let mut d = DaemonProc::start(
        "f1dstate",
        &[format!("--attach={}={}", pol.display(), t.cg(""))],
    );
    assert!(d.wait_ready(20 * S), "daemon not ready: {}", d.stderr());
    let fuse = match Fuse::mount("f1dstate") {
        Ok(f) => f,
        Err(e) => {
            bpfoom_testutil::require(false, &format!("fault1_dstate: {e}"));
            return;
        }
    };
    let hang = fuse.mnt.join("x");
    let mut b = Blocked {
        victim: Alloc::start_with(
            &alloc_exe(),
            &t.top.join("a"),
            20,
            1000,
            120,
            "anon",
            &[(ALLOC_STAT_ENV, &hang)],
        ),
        fuse: Some(fuse),
    };
    assert!(b.victim.ready(10 * S), "victim did not allocate");
    assert!(
        wait_until(5 * S, || b.fuse.as_ref().unwrap().saw(FUSE_LOOKUP)),
        "the victim's lookup never reached the server"
    );
    let vpid = b.victim.pid();
    // First OOM: the victim is chosen, killed, and cannot exit.
    let t0 = Instant::now();
    let mut alloc = Alloc::start(&t.top.join("b"), 20, 0, 120);
    assert!(
        alloc.ready(10 * S),
        "the allocator was not let through: {}",
        d.stderr()
    );
    let first = t0.elapsed();
    let kill = d
        .wait_record(5 * S, |r| r["event"] == "kill")
        .expect("kill record");
    assert_eq!(kill["pid"], vpid, "{kill}");
    std::thread::sleep(S / 5);
    let (state, rss) = state_of(vpid).expect("the victim exited: not a D-state test");
    eprintln!("first OOM: {first:?}; victim {vpid} state {state}, VmRSS {rss} kB");
    assert_eq!(state, 'D', "the victim is not in uninterruptible sleep");
    assert!(rss < 4096, "the victim's memory was not reaped: {rss} kB");
    assert!(
        first < DSTATE_FIRST_BOUND,
        "paused {first:?} (bound {DSTATE_FIRST_BOUND:?})"
    );
    // Second OOM while the victim still cannot exit: another victim.
    let t1 = Instant::now();
    let mut more = Alloc::start(&t.top.join("b"), 20, 0, 120);
    let second = d
        .wait_record(DSTATE_NEXT_BOUND + 5 * S, |r| {
            r["event"] == "kill" && r["pid"] != vpid
        })
        .unwrap_or_else(|| {
            d.drain(S / 4);
            for r in &d.seen {
                eprintln!("{r}");
            }
            panic!("no second victim: {}", d.stderr())
        });
    let took = t1.elapsed();
    eprintln!("second OOM: victim {} after {took:?}", second["pid"]);
    assert!(
        second["pid"] == alloc.pid() || second["pid"] == more.pid(),
        "{second}"
    );
    assert!(
        took < DSTATE_NEXT_BOUND,
        "the next OOM took {took:?} (bound {DSTATE_NEXT_BOUND:?})"
    );
    assert!(alloc.wait(5 * S).is_some() || more.wait(5 * S).is_some());
    // Truthful bpf_task_is_oom_victim: the second run saw the D-state
    // victim as a victim (it still lives), and it was not killed twice.
    assert!(
        d.wait_stderr(&format!("oom victim {vpid}"), 2 * S),
        "bpf_task_is_oom_victim was false for a live victim: {}",
        d.stderr()
    );
    d.drain(S / 4);
    let kills_of_victim = d.events("kill").iter().filter(|k| k["pid"] == vpid).count();
    assert_eq!(kills_of_victim, 1, "{:?}", d.events("kill"));
    assert_eq!(state_of(vpid).map(|s| s.0), Some('D'));
    // The file system answers at last (connection aborted): the victim
    // exits, and is no victim to the next OOM.
    b.fuse.take();
    assert!(b.victim.wait(5 * S).is_some(), "the victim never exited");
    let before = d.stderr().matches("oom victim").count();
    let _ = alloc.child.kill();
    let _ = more.child.kill();
    let _ = alloc.wait(5 * S);
    let _ = more.wait(5 * S);
    std::thread::sleep(S / 2);
    let mut last = Alloc::start(&t.top.join("b"), 40, 0, 120);
    assert!(last.wait(20 * S).is_some(), "third OOM not resolved");
    d.drain(S / 2);
    let err = d.stderr();
    assert!(
        !err[err.len().min(
            err.match_indices("oom victim")
                .nth(before)
                .map_or(err.len(), |(i, _)| i)
        )..]
            .contains(&format!("oom victim {vpid}")),
        "an exited victim was still reported: {err}"
    );
    assert_eq!(t.oom_control("", "oom_kill"), Some(0), "the kernel killed");
}

// ---------------------------------------------------------------------
// (2) The victim moved, or its cgroup removed, while the chain runs
// ---------------------------------------------------------------------

/// The tree for the slow-kill tests: `oom` (32 MiB) with the victim in
/// `oom/a` and the allocator in `oom/b`, and `away`, outside the OOM.
fn slow_kill_setup(name: &str) -> Option<(TestTree, DaemonProc, Alloc)> {
    let h = v1_or_skip(name)?;
    let pol = policy("tests/slow_kill.bpf.c")?;
    let t = TestTree::v1_memory(&h, name, 400 << 20);
    t.mkdir("oom");
    t.write("oom", "memory.limit_in_bytes", &(32u64 << 20).to_string());
    t.mkdir("oom/a");
    t.mkdir("oom/b");
    t.mkdir("away");
    let dir = scratch(&format!("{name}-config"));
    let cfg = dir.join("bpfoom.toml");
    // The policy takes about half a second; the default 250 ms limit
    // would stop it before its kill.
    std::fs::write(
        &cfg,
        format!(
            "[daemon]\nhandler_time_limit_ms = 20000\n\n[[attach]]\npolicy = \"{}\"\ncgroup = \"{}\"\n",
            pol.display(),
            t.cg("oom")
        ),
    )
    .unwrap();
    let mut d = DaemonProc::start(name, &[format!("--config={}", cfg.display())]);
    assert!(d.wait_ready(30 * S), "daemon not ready: {}", d.stderr());
    let victim = Alloc::start(&t.top.join("oom/a"), 20, 1000, 120);
    assert!(victim.ready(10 * S), "victim did not allocate");
    Some((t, d, victim))
}

/// Waits for the OOM record (made when the chain starts), then gives the
/// policy 100 ms to choose (a few tasks: well under a millisecond of
/// work) while its slow part still runs; returns when the OOM record
/// arrived, for [`chose_and_acted_before`].
fn mid_chain(d: &mut DaemonProc) -> Instant {
    d.wait_record(20 * S, |r| r["event"] == "oom")
        .unwrap_or_else(|| panic!("no OOM: {}", d.stderr()));
    let at = Instant::now();
    std::thread::sleep(S / 10);
    at
}

/// The test proved something: the policy chose the victim, and `rec` (its
/// kill or handler record, `latency_us` from the OOM notification, which
/// precedes the OOM record's arrival) came after the test acted.
fn chose_and_acted_before(d: &DaemonProc, vpid: i32, rec: &serde_json::Value, acted_us: u64) {
    // stderr is read by its own thread: the line may trail the record.
    assert!(
        d.wait_stderr(&format!("slow_kill: chose {vpid}"), 5 * S),
        "the policy did not choose the victim: {}",
        d.stderr()
    );
    let at = rec["latency_us"].as_u64().unwrap_or(0);
    assert!(
        at > acted_us,
        "the handler ended {at} us after the OOM, before the test acted ({acted_us} us): {rec}"
    );
}

/// The bound for an OOM whose victim moves or vanishes mid-chain: the slow
/// handler (about 0.5 s here, at most its time limit), then either the kill
/// or the kernel fallback; generous for a shared 2-core machine.
const MID_CHAIN_BOUND: Duration = Duration::from_secs(5);

/// The chosen victim is moved to a cgroup outside the OOM between the
/// policy's choice and its kill, and its old cgroup removed: the kill still
/// lands on it (as the kernel's oom_kill_process does with the task it
/// chose; v1 leaves its charges in the OOM'ing memcg, so that frees them),
/// the record names where it was killed, the allocator resumes within the
/// bound, and the daemon handles the next OOM.
#[test]
fn fault2_victim_moved_mid_chain() {
    let Some((t, mut d, mut victim)) = slow_kill_setup("f2moved") else {
        return;
    };
    let vpid = victim.pid();
    let t0 = Instant::now();
    let mut alloc = Alloc::start(&t.top.join("oom/b"), 20, 0, 120);
    let acted = mid_chain(&mut d);
    t.write("away", "cgroup.procs", &vpid.to_string());
    std::fs::remove_dir(t.top.join("oom/a")).expect("remove the emptied cgroup");
    let acted_us = acted.elapsed().as_micros() as u64;
    let moved = t0.elapsed();
    assert!(
        alloc.ready(MID_CHAIN_BOUND),
        "the allocator stayed paused: {}",
        d.stderr()
    );
    let took = t0.elapsed();
    let kill = d
        .wait_record(5 * S, |r| r["event"] == "kill")
        .unwrap_or_else(|| panic!("no kill: {}", d.stderr()));
    eprintln!("moved after {moved:?}; resolved after {took:?}: {kill}");
    chose_and_acted_before(&d, vpid, &kill, acted_us);
    assert_eq!(kill["pid"], vpid, "{kill}");
    assert_eq!(
        kill["cgroup"].as_str(),
        Some(t.cg("away").as_str()),
        "{kill}"
    );
    assert!(victim.wait(5 * S).is_some(), "the moved victim survived");
    let resolved = d
        .wait_record(5 * S, |r| r["event"] == "resolved")
        .expect("resolved record");
    assert_eq!(resolved["by"], "policy:slow_kill", "{resolved}");
    // The removed cgroup is forgotten and the next OOM is handled.
    let _ = alloc.child.kill();
    assert!(alloc.wait(5 * S).is_some());
    std::thread::sleep(S / 2);
    let mut hog = Alloc::start(&t.top.join("oom/b"), 40, 0, 120);
    assert!(
        hog.wait(20 * S).is_some(),
        "next OOM not handled: {}",
        d.stderr()
    );
    assert!(d.events("error").is_empty(), "{:?}", d.events("error"));
    d.signal(libc::SIGTERM);
    assert!(d.wait_exit(10 * S).is_some_and(|s| s.success()));
}

/// The chosen victim exits (killed by someone else) and its cgroup is
/// removed between the policy's choice and its kill: the kill fails
/// cleanly (no such task), the OOM is over anyway (the exit freed the
/// memory) within the bound, and nothing is left paused or recorded wrong.
#[test]
fn fault2_victim_cgroup_removed_mid_chain() {
    let Some((t, mut d, mut victim)) = slow_kill_setup("f2gone") else {
        return;
    };
    let vpid = victim.pid();
    let t0 = Instant::now();
    let mut alloc = Alloc::start(&t.top.join("oom/b"), 20, 0, 120);
    let acted = mid_chain(&mut d);
    let _ = victim.child.kill();
    assert!(victim.wait(5 * S).is_some());
    assert!(
        wait_until(5 * S, || std::fs::remove_dir(t.top.join("oom/a")).is_ok()),
        "could not remove oom/a"
    );
    let acted_us = acted.elapsed().as_micros() as u64;
    assert!(
        alloc.ready(MID_CHAIN_BOUND),
        "the allocator stayed paused: {}",
        d.stderr()
    );
    let took = t0.elapsed();
    let resolved = d
        .wait_record(MID_CHAIN_BOUND, |r| r["event"] == "resolved")
        .unwrap_or_else(|| panic!("the chain did not end: {}", d.stderr()));
    eprintln!("resolved after {took:?}: {resolved}");
    assert!(
        took < MID_CHAIN_BOUND,
        "took {took:?} (bound {MID_CHAIN_BOUND:?})"
    );
    let handler = d
        .wait_record(5 * S, |r| r["event"] == "handler")
        .expect("handler record");
    chose_and_acted_before(&d, vpid, &handler, acted_us);
    assert!(
        d.events("kill").iter().all(|k| k["pid"] != vpid),
        "a dead task was recorded as killed: {:?}",
        d.events("kill")
    );
    // stderr is read by its own thread: the line may trail the records.
    let said = |d: &DaemonProc| {
        let e = d.stderr();
        e.contains(&format!("slow_kill: {vpid} is gone"))
            || e.contains(&format!("slow_kill: kill {vpid} failed"))
    };
    assert!(wait_until(5 * S, || said(&d)), "{}", d.stderr());
    // Paused again for the next OOM, which the daemon handles.
    let _ = alloc.child.kill();
    assert!(alloc.wait(5 * S).is_some());
    assert!(
        wait_until(10 * S, || t.oom_control("oom", "oom_kill_disable")
            == Some(1)),
        "not re-paused"
    );
    d.signal(libc::SIGTERM);
    assert!(d.wait_exit(10 * S).is_some_and(|s| s.success()));
    assert_eq!(t.oom_control("oom", "oom_kill_disable"), Some(0));
}

/// The bound for a policy that kills a victim that cannot exit, again and
/// again: the settle time, that kill refused (nothing left to free), the
/// handler FAILED, then the kernel's killer, whose reaper waits 2 s
/// (`OOM_REAPER_DELAY`) before it marks the victim it chose (the reaped
/// one), after which it kills another task; with margin.
const REKILL_BOUND: Duration = Duration::from_secs(5);

/// Fault 3, "kills a task that is already exiting", with a victim that
/// cannot exit: the policy chooses the reaped D-state victim on every OOM.
/// Killing it again frees nothing, so it is refused (before the fix it
/// counted as PROCESSED with memory freed on every run, and the allocator
/// stayed paused for as long as the victim lived); the chain falls back to
/// the kernel, which resolves the OOM within the bound.
#[test]
fn fault3_kill_victim_that_cannot_exit_again() {
    let Some(h) = v1_or_skip("fault3_kill_victim_that_cannot_exit_again") else {
        return;
    };
    let Some(pol) = policy("tests/kill_victim_again.bpf.c") else {
        return;
    };
    let t = TestTree::v1_memory(&h, "f3again", 32 << 20);
    t.mkdir("a");
    t.mkdir("b");
    let mut d = DaemonProc::start(
        "f3again",
        &[format!("--attach={}={}", pol.display(), t.cg(""))],
    );
    assert!(d.wait_ready(20 * S), "daemon not ready: {}", d.stderr());
    let fuse = match Fuse::mount("f3again") {
        Ok(f) => f,
        Err(e) => {
            bpfoom_testutil::require(false, &format!("fault3_again: {e}"));
            return;
        }
    };
    let hang = fuse.mnt.join("x");
    let b = Blocked {
        victim: Alloc::start_with(
            &alloc_exe(),
            &t.top.join("a"),
            20,
            1000,
            120,
            "anon",
            &[(ALLOC_STAT_ENV, &hang)],
        ),
        fuse: Some(fuse),
    };
    assert!(b.victim.ready(10 * S), "victim did not allocate");
    assert!(wait_until(5 * S, || b
        .fuse
        .as_ref()
        .unwrap()
        .saw(FUSE_LOOKUP)));
    let vpid = b.victim.pid();
    let mut alloc = Alloc::start(&t.top.join("b"), 20, 0, 120);
    assert!(alloc.ready(10 * S), "first OOM: {}", d.stderr());
    d.wait_record(5 * S, |r| r["event"] == "kill" && r["pid"] == vpid)
        .expect("the victim was killed");
    std::thread::sleep(S / 5);
    assert_eq!(state_of(vpid).map(|s| s.0), Some('D'));
    // Second OOM: the policy goes for the victim again.
    let t1 = Instant::now();
    let mut more = Alloc::start(&t.top.join("b"), 20, 0, 120);
    let resolved = wait_until(REKILL_BOUND + 10 * S, || {
        !more.alive() || !alloc.alive() || more.ready(Duration::ZERO)
    });
    let took = t1.elapsed();
    d.drain(S / 2);
    for r in &d.seen {
        eprintln!("{r}");
    }
    assert!(resolved, "the second OOM stayed paused: {}", d.stderr());
    eprintln!("second OOM resolved after {took:?}");
    assert!(
        took < REKILL_BOUND,
        "took {took:?} (bound {REKILL_BOUND:?}): {}",
        d.stderr()
    );
    assert!(
        d.stderr()
            .contains(&format!("kill_victim_again: kill {vpid} failed")),
        "the policy did not go for the victim again: {}",
        d.stderr()
    );
    assert!(
        d.seen
            .iter()
            .any(|r| r["event"] == "resolved" && r["by"] == "kernel"),
        "no kernel fallback"
    );
}
