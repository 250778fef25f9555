//! The host over fixture trees (tests/fixtures): cgroup v1 and v2 files,
//! /proc entries. Each test works on a private copy, so the host may write.
//! Fixture pids are above PID_MAX_LIMIT (4194304): no real process can have
//! them, so nothing here can ever signal a stranger.

#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::time::Duration;

use bpfoom_abi::stats::{by_name, MEMORY_EVENTS, PAGE_STATE, VM_EVENTS};
use bpfoom_engine::host::PF_EXITING;
use bpfoom_engine::{Host, KernelOom};
use bpfoom_host::{CgroupVersion, GlobalFallback, HostConfig, LinuxHost};

const M: u64 = 1 << 20;

/// A private copy of the fixtures: (scratch root, config).
fn fixture(name: &str, tree: &str) -> (PathBuf, HostConfig) {
    let base = bpfoom_testutil::fixture::fixture_copy(&format!("host-{name}"));
    let mut cfg = HostConfig::new(base.join(tree));
    cfg.proc_root = base.join("proc");
    cfg.state_file = Some(base.join("state"));
    cfg.v2_headroom = 16 * M;
    cfg.v2_min_stall_us = 10_000;
    cfg.fallback_hold = Duration::ZERO;
    (base, cfg)
}

fn read(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap_or_default()
}

fn set(p: &Path, v: &str) {
    std::fs::write(p, v).unwrap();
}

#[test]
fn v2_reads_memcgs_stats_and_tasks() {
    let (_base, cfg) = fixture("v2read", "v2");
    let h = LinuxHost::new(cfg).unwrap();
    assert_eq!(h.cgroupfs().version(), CgroupVersion::V2);
    let job = h.cgroupfs().resolve("/job").unwrap();
    let a = h.cgroupfs().resolve("job/a").unwrap();
    let b = h.cgroupfs().resolve("/job/b").unwrap();
    assert_eq!(h.path(a).as_deref(), Some("/job/a"));
    assert_eq!(h.parent(a), Some(job));
    assert_eq!(h.parent(job), Some(h.root()));
    assert_eq!(h.parent(h.root()), None);
    let mut ch = h.children(job);
    ch.sort();
    let mut want = vec![a, b];
    want.sort();
    assert_eq!(ch, want);
    let m = h.memcg(job).unwrap();
    assert_eq!(
        (m.usage, m.limit, m.oom_group),
        (60 * M, Some(100 * M), false)
    );
    assert_eq!(
        h.memcg(h.root()).unwrap().limit,
        None,
        "the v2 root has no memory.max"
    );
    let file = by_name(PAGE_STATE, "NR_FILE_PAGES").unwrap();
    assert_eq!(h.page_state(b, file), Some(10 * M));
    let fault = by_name(VM_EVENTS, "PGFAULT").unwrap();
    assert_eq!(h.vm_event(a, fault), Some(1234));
    let kills = by_name(MEMORY_EVENTS, "MEMCG_OOM_KILL").unwrap();
    assert_eq!(h.memory_event(b, kills), Some(2));
    let swap_fail = by_name(MEMORY_EVENTS, "MEMCG_SWAP_FAIL").unwrap();
    assert_eq!(h.memory_event(b, swap_fail), None, "absent key");
    assert_eq!(h.tasks(b), vec![5000002, 5000003], "sorted");
    let t = h.task(5000002).unwrap();
    assert_eq!(t.comm, "evil) (name");
    assert_eq!(t.cgroup, b);
    assert_eq!(t.oom_score_adj, 500);
    assert_eq!(t.rss_pages, 30000 / 4);
    assert_eq!(t.pgtables_pages, 10);
    assert_eq!(t.flags & PF_EXITING, 0);
    assert!(h.task(5000003).is_none(), "a zombie is gone");
    assert!(h.task(4999).is_none());
    assert_eq!(h.total_pages(), 24_684_092 / 4);
    // `.` and `..` fold inside the hierarchy; only climbing above it fails.
    assert_eq!(h.cgroupfs().resolve("/job/./x/../").unwrap(), job);
    assert_eq!(h.cgroupfs().resolve("nope/../job").unwrap(), job);
    let e = h.cgroupfs().resolve("/job/../..").unwrap_err().to_string();
    assert!(
        e.contains("outside the cgroup hierarchy") && e.contains("above the root"),
        "{e}"
    );
    assert!(h.cgroupfs().resolve("/nope").is_err());
}

#[test]
fn v2_headroom_events_fallback_and_restore() {
    let (base, cfg) = fixture("v2act", "v2");
    let state = cfg.state_file.clone().unwrap();
    let mut h = LinuxHost::new(cfg).unwrap();
    let job = h.cgroupfs().resolve("/job").unwrap();
    let jd = base.join("v2/job");
    let r = h.manage(job);
    assert_eq!(r.added.len(), 3, "job, a, b");
    // memory.high kept 16M below memory.max; only limited cgroups.
    assert_eq!(read(&jd.join("memory.high")).trim(), (84 * M).to_string());
    assert_eq!(read(&jd.join("a/memory.high")).trim(), "max");
    assert_eq!(
        read(&state),
        format!("{} max\n", jd.join("memory.high").display())
    );
    assert!(h.pending_ooms(&[]).is_empty());
    // Above memory.high, a new high event, 50 ms of stall: an OOM event.
    set(&jd.join("memory.current"), &(90 * M).to_string());
    set(
        &jd.join("memory.events"),
        "low 0\nhigh 5\nmax 0\noom 0\noom_kill 0\noom_group_kill 0\n",
    );
    set(
        &jd.join("memory.pressure"),
        "some avg10=9.00 avg60=1.00 avg300=0.10 total=50000\nfull avg10=0.00 avg60=0.00 avg300=0.00 total=0\n",
    );
    // Nothing is sampled until the kernel says so: inotify on memory.events.
    assert!(h.pending_ooms(&[]).is_empty(), "not told yet");
    h.rescan_changed();
    assert_eq!(h.pending_ooms(&[]), vec![job]);
    // Edge-triggered: nothing new since the last sample.
    assert!(h.pending_ooms(&[]).is_empty());
    // New events but no stall: not an OOM.
    set(
        &jd.join("memory.events"),
        "low 0\nhigh 9\nmax 0\noom 0\noom_kill 0\noom_group_kill 0\n",
    );
    h.rescan_changed();
    assert!(h.pending_ooms(&[]).is_empty());
    assert!(h.v2_active(), "half a signal keeps the cgroup sampled");
    assert!(!h.oom_resolved(Some(job)));
    // The fallback lets usage reach memory.max; the next tick restores.
    assert_eq!(h.kernel_oom(Some(job), 1), KernelOom::Delegated);
    assert_eq!(read(&jd.join("memory.high")).trim(), "max");
    assert!(h.holding(job));
    h.tick();
    assert!(!h.holding(job));
    assert_eq!(read(&jd.join("memory.high")).trim(), (84 * M).to_string());
    // Raising the limit moves memory.high along.
    h.set_limit(job, 200 * M).unwrap();
    assert_eq!(read(&jd.join("memory.max")).trim(), (200 * M).to_string());
    assert_eq!(read(&jd.join("memory.high")).trim(), (184 * M).to_string());
    assert!(h.oom_resolved(Some(job)));
    // A new child is picked up; a removed one reported.
    std::fs::create_dir(jd.join("c")).unwrap();
    bpfoom_testutil::copy_dir(&jd.join("a"), &jd.join("c"));
    let c = h.cgroupfs().resolve("/job/c").unwrap();
    let r = h.rescan();
    assert_eq!(r.added, vec![c]);
    // inotify alone (no full rescan): a nested new cgroup, then removals.
    std::fs::create_dir_all(jd.join("d/e")).unwrap();
    bpfoom_testutil::copy_dir(&jd.join("a"), &jd.join("d"));
    bpfoom_testutil::copy_dir(&jd.join("a"), &jd.join("d/e"));
    let d = h.cgroupfs().resolve("/job/d").unwrap();
    let e = h.cgroupfs().resolve("/job/d/e").unwrap();
    let before = h.children(job);
    let r = h.rescan_changed();
    assert_eq!(r.added, vec![d, e]);
    assert!(r.removed.is_empty());
    assert!(h.rescan_changed().added.is_empty(), "drained");
    // The kept child lists follow inotify: what a policy walks is current.
    assert!(!before.contains(&d), "{before:?}");
    assert!(h.children(job).contains(&d));
    assert_eq!(h.children(d), vec![e]);
    let n = h.nr_descendants(job);
    std::fs::remove_dir_all(jd.join("d")).unwrap();
    let mut r = h.rescan_changed();
    r.removed.sort_unstable();
    let mut want = vec![d, e];
    want.sort_unstable();
    assert_eq!(r.removed, want);
    assert!(!h.children(job).contains(&d));
    assert_eq!(h.nr_descendants(job), n - 2);
    assert_eq!(
        h.path(e).as_deref(),
        Some("/job/d/e"),
        "known until forgotten"
    );
    std::fs::remove_dir_all(jd.join("c")).unwrap();
    let r = h.rescan();
    assert_eq!(r.removed, vec![c]);
    assert_eq!(
        h.path(c).as_deref(),
        Some("/job/c"),
        "known until forgotten"
    );
    h.forget_gone();
    assert_eq!(h.path(c), None);
    // Clean shutdown restores memory.high and empties the state file.
    assert!(h.restore_all().is_empty());
    assert_eq!(read(&jd.join("memory.high")).trim(), "max");
    assert_eq!(read(&state), "");
}

#[test]
fn v2_dry_run_changes_nothing() {
    let (base, mut cfg) = fixture("v2dry", "v2");
    cfg.dry_run = true;
    let mut h = LinuxHost::new(cfg).unwrap();
    let job = h.cgroupfs().resolve("/job").unwrap();
    h.manage(job);
    assert_eq!(read(&base.join("v2/job/memory.high")).trim(), "max");
    h.set_limit(job, 1).unwrap();
    assert_eq!(
        read(&base.join("v2/job/memory.max")).trim(),
        (100 * M).to_string()
    );
}

#[test]
fn v1_reads_and_finds_the_ooming_memcg() {
    let (base, cfg) = fixture("v1", "v1");
    let state = cfg.state_file.clone().unwrap();
    let mut h = LinuxHost::new(cfg).unwrap();
    assert_eq!(h.cgroupfs().version(), CgroupVersion::V1);
    let job = h
        .cgroupfs()
        .resolve(&base.join("v1/job").display().to_string())
        .unwrap();
    let a = h.cgroupfs().resolve("/job/a").unwrap();
    assert_eq!(
        h.memcg(a).unwrap().limit,
        None,
        "9223372036854771712 is unlimited"
    );
    assert_eq!(h.memcg(job).unwrap().limit, Some(80 * M));
    // Hierarchical total_* keys win over the local ones.
    let file = by_name(PAGE_STATE, "NR_FILE_PAGES").unwrap();
    assert_eq!(h.page_state(a, file), Some(5 * M));
    let fault = by_name(VM_EVENTS, "PGFAULT").unwrap();
    assert_eq!(h.vm_event(a, fault), Some(99));
    let max = by_name(MEMORY_EVENTS, "MEMCG_MAX").unwrap();
    assert_eq!(h.memory_event(a, max), Some(3), "failcnt");
    let kills = by_name(MEMORY_EVENTS, "MEMCG_OOM_KILL").unwrap();
    assert_eq!(h.memory_event(a, kills), Some(1));
    let high = by_name(MEMORY_EVENTS, "MEMCG_HIGH").unwrap();
    assert_eq!(h.memory_event(a, high), None, "v1 has no high events");
    assert_eq!(
        h.task(5000002).unwrap().cgroup,
        h.cgroupfs().resolve("/other").unwrap()
    );

    let oc = |rel: &str| base.join("v1").join(rel).join("memory.oom_control");
    h.manage(job);
    // Paused (write-ahead in the state file) with an eventfd registered.
    assert_eq!(read(&oc("job")).trim(), "1");
    assert_eq!(read(&oc("job/a")).trim(), "1");
    assert!(read(&state).contains(&format!("{} 0\n", oc("job").display())));
    let reg = read(&base.join("v1/job/cgroup.event_control"));
    assert_eq!(reg.split(' ').count(), 2, "{reg:?}");
    assert_eq!(h.notify_fds().len(), 2);
    // What the kernel shows while job's OOM pauses tasks: job and its
    // subtree under_oom. The OOM'ing memcg is the topmost.
    set(&oc("job"), "oom_kill_disable 1\nunder_oom 1\noom_kill 0\n");
    set(
        &oc("job/a"),
        "oom_kill_disable 1\nunder_oom 1\noom_kill 1\n",
    );
    // Only what poll reported (or found in OOM before) is looked at.
    assert!(h.pending_ooms(&[]).is_empty());
    let a = h.cgroupfs().resolve("/job/a").unwrap();
    assert_eq!(h.pending_ooms(&[a, job]), vec![job]);
    // Still in OOM: re-checked without a new notification.
    assert_eq!(h.pending_ooms(&[]), vec![job]);
    assert!(!h.oom_resolved(Some(job)));
    // Fallback: the kernel OOM killer is enabled until it has killed.
    assert_eq!(h.kernel_oom(Some(job), 1), KernelOom::Delegated);
    assert_eq!(read(&oc("job")).trim(), "0");
    set(&oc("job"), "oom_kill_disable 0\nunder_oom 0\noom_kill 0\n");
    set(
        &oc("job/a"),
        "oom_kill_disable 1\nunder_oom 0\noom_kill 2\n",
    );
    h.tick();
    assert_eq!(read(&oc("job")).trim(), "1", "re-paused after the kill");
    assert!(h.oom_resolved(Some(job)));
    h.set_limit(a, 64 * M).unwrap();
    assert_eq!(
        read(&base.join("v1/job/a/memory.limit_in_bytes")).trim(),
        (64 * M).to_string()
    );
    h.unmanage(job);
    assert_eq!(read(&oc("job")).trim(), "0");
    assert_eq!(read(&oc("job/a")).trim(), "0");
    assert_eq!(read(&state), "");
}

#[test]
fn global_fallback_through_sysrq() {
    let (base, mut cfg) = fixture("sysrq", "v1");
    cfg.global_fallback = GlobalFallback::Sysrq;
    cfg.global_min_available_kb = 30_000_000;
    let mut h = LinuxHost::new(cfg).unwrap();
    assert!(!h.oom_resolved(None), "MemAvailable below the threshold");
    assert_eq!(h.kernel_oom(None, 1), KernelOom::Delegated);
    assert_eq!(read(&base.join("proc/sysrq-trigger")), "f");
    let (_b, mut cfg) = fixture("nosysrq", "v1");
    cfg.global_fallback = GlobalFallback::None;
    let mut h = LinuxHost::new(cfg).unwrap();
    assert_eq!(h.kernel_oom(None, 1), KernelOom::NoVictim);
    assert!(h.oom_resolved(None));
}

#[test]
fn kills_only_the_process_the_policy_saw() {
    // A real child of ours, described by a fixture /proc entry.
    let (base, cfg) = fixture("kill", "v2");
    let mut child = std::process::Command::new("sleep")
        .arg("30")
        .spawn()
        .unwrap();
    let pid = child.id() as i32;
    let pdir = base.join("proc").join(pid.to_string());
    bpfoom_testutil::copy_dir(&base.join("proc/5000001"), &pdir);
    let stat = read(Path::new(&format!("/proc/{pid}/stat")));
    set(&pdir.join("stat"), &stat);
    let mut h = LinuxHost::new(cfg).unwrap();
    assert!(h.task(pid).is_some());
    // The pid now names a different process (another start time).
    let start = bpfoom_host::parse::parse_proc_stat(&stat)
        .unwrap()
        .starttime;
    let (head, tail) = stat.rsplit_once(')').unwrap();
    let mut f: Vec<String> = tail.split_whitespace().map(String::from).collect();
    f[19] = (start + 1).to_string();
    set(&pdir.join("stat"), &format!("{head}) {}", f.join(" ")));
    let e = h.kill(pid).unwrap_err();
    assert_eq!(e.errno, bpfoom_engine::host::ESRCH, "{e}");
    assert!(child.try_wait().unwrap().is_none(), "not killed");
    set(&pdir.join("stat"), &stat);
    h.kill(pid).unwrap();
    let st = child.wait().unwrap();
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(st.signal(), Some(libc::SIGKILL));
    // Victims are tracked by pidfd until they are gone.
    assert!(h.task(pid).is_none(), "exited victim is gone");
    assert_eq!(h.live_victims(None), 0);
    assert!(h.kill(i32::MAX).is_err());
    assert!(h.kill(-1).is_err());
}

#[test]
fn cgroup_kill_is_v2_only() {
    let (base, cfg) = fixture("cgkill", "v2");
    let mut h = LinuxHost::new(cfg).unwrap();
    let b = h.cgroupfs().resolve("/job/b").unwrap();
    h.kill_cgroup(b).unwrap();
    assert_eq!(read(&base.join("v2/job/b/cgroup.kill")), "1");
    let (_b, cfg) = fixture("cgkill1", "v1");
    let mut h = LinuxHost::new(cfg).unwrap();
    let job = h.cgroupfs().resolve("/job").unwrap();
    assert_eq!(h.kill_cgroup(job).unwrap_err().errno, libc::EINVAL);
}

/// The PSI trigger format is the kernel's: it accepts ours on the real
/// system file and refuses a window below 500 ms.
#[test]
fn psi_triggers_on_the_real_kernel() {
    use bpfoom_host::pressure::{psi_trigger, PSI_WINDOW_US};
    use bpfoom_host::sys::{fs_magic, poll, Wait, PROC_MAGIC};
    use std::os::fd::AsFd;
    let p = Path::new("/proc/pressure/memory");
    if !bpfoom_testutil::require(
        bpfoom_testutil::is_root() && fs_magic(p).is_ok_and(|m| m == PROC_MAGIC),
        "needs root and /proc/pressure/memory",
    ) {
        return;
    }
    let t = psi_trigger(p, "full", 1_000_000, PSI_WINDOW_US).unwrap();
    // Idle machine: no full stall of 1 s in 2 s, so no event yet.
    let r = poll(&[(t.as_fd(), Wait::Priority)], Some(Duration::ZERO)).unwrap();
    assert_eq!(r.len(), 1);
    assert!(
        psi_trigger(p, "some", 10_000, 100_000).is_err(),
        "window too small"
    );
    assert!(psi_trigger(p, "most", 10_000, PSI_WINDOW_US).is_err());
}

/// Link-count descendant counting agrees with a full walk, leaves included.
#[test]
fn nr_descendants_matches_a_walk() {
    use bpfoom_engine::host::subtree_pre;
    let base = std::env::temp_dir().join(format!("bpfoom-desc-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&base);
    for d in ["a/x/y", "a/z", "b", "c/q"] {
        std::fs::create_dir_all(base.join(d)).unwrap();
    }
    std::fs::write(base.join("cgroup.controllers"), "memory\n").unwrap();
    for d in ["", "a", "a/x", "a/x/y", "a/z", "b", "c", "c/q"] {
        std::fs::write(base.join(d).join("cgroup.procs"), "").unwrap();
    }
    let fs = bpfoom_host::Cgroupfs::open(&base).unwrap();
    let host = bpfoom_host::LinuxHost::new(bpfoom_host::HostConfig::new(&base)).unwrap();
    for rel in ["", "a", "a/x", "a/x/y", "b", "c"] {
        let id = fs.resolve(rel).unwrap();
        let walk = subtree_pre(&host, id).len() as u64 - 1;
        assert_eq!(fs.nr_descendants(id), Some(walk), "{rel}");
    }
    assert_eq!(fs.nr_descendants(fs.root_id()), Some(7));
    std::fs::remove_dir_all(&base).unwrap();
}
