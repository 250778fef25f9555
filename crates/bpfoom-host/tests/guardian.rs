//! The guardian restores the state file's entries when the process that
//! started it dies, even by SIGKILL, and does nothing after a clean exit.
//! Runs without root: the "cgroup files" are plain files here.

#![allow(clippy::unwrap_used)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const ENV: &str = "BPFOOM_TEST_GUARDIAN";

/// Not a test: the guarded process (re-run of this binary). It writes a
/// restore list, starts the guardian, then either sleeps (to be killed) or
/// empties the list and exits cleanly.
#[test]
fn guardian_helper() {
    let Ok(spec) = std::env::var(ENV) else {
        return;
    };
    let (dir, mode) = spec.rsplit_once(':').expect("spec");
    let dir = PathBuf::from(dir);
    if mode == "many" {
        // More entries than any fixed buffer would hold (~150 KB).
        let mut text = String::new();
        for i in 0..1500 {
            let f = dir.join(format!("f{i:04}-{}", "x".repeat(60)));
            std::fs::write(&f, "1").unwrap();
            text.push_str(&format!("{} 0\n", f.display()));
        }
        std::fs::write(dir.join("state"), text).unwrap();
        bpfoom_host::sys::spawn_guardian(&dir.join("state")).unwrap();
        println!("READY");
        std::thread::sleep(Duration::from_secs(30));
        return;
    }
    if mode == "cut" {
        // A state file damaged while the daemon runs: its last line lost
        // the end of its value and its newline.
        std::fs::write(dir.join("a"), "11111").unwrap();
        std::fs::write(dir.join("b"), "11111").unwrap();
        let text = format!(
            "{} 0\n{} 8808",
            dir.join("a").display(),
            dir.join("b").display()
        );
        std::fs::write(dir.join("state"), text).unwrap();
        bpfoom_host::sys::spawn_guardian(&dir.join("state")).unwrap();
        println!("READY");
        std::thread::sleep(Duration::from_secs(30));
        return;
    }
    let mut list = bpfoom_host::restore::RestoreList::new(Some(dir.join("state")));
    for name in ["a", "b"] {
        // Longer than the value put back: the write must replace it all.
        std::fs::write(dir.join(name), "1").unwrap();
        std::fs::write(dir.join(name), "11111").unwrap();
        list.add(dir.join(name), "0".into()).unwrap();
    }
    bpfoom_host::sys::spawn_guardian(&dir.join("state")).unwrap();
    println!("READY");
    if mode == "clean" {
        assert!(list.restore_all().is_empty());
        // Put the "paused" values back by hand: a clean exit must leave
        // them alone once the list is empty.
        std::fs::write(dir.join("a"), "1").unwrap();
        std::fs::write(dir.join("b"), "1").unwrap();
        std::process::exit(0);
    }
    std::thread::sleep(Duration::from_secs(30));
}

fn scratch(name: &str) -> PathBuf {
    bpfoom_testutil::scratch(&format!("guardian-{name}"))
}

fn start(dir: &Path, mode: &str) -> std::process::Child {
    let mut c = Command::new(std::env::current_exe().unwrap())
        .args(["guardian_helper", "--exact", "--nocapture", "-q"])
        .env(ENV, format!("{}:{mode}", dir.display()))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let out = c.stdout.take().unwrap();
    let mut lines = BufReader::new(out).lines();
    assert!(
        lines.any(|l| l.is_ok_and(|l| l == "READY")),
        "helper did not start"
    );
    c
}

fn read(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap_or_default()
}

#[test]
fn sigkill_of_the_daemon_is_repaired_within_a_second() {
    let dir = scratch("kill");
    let mut c = start(&dir, "kill");
    assert_eq!(read(&dir.join("a")), "11111");
    let t = Instant::now();
    c.kill().unwrap();
    c.wait().unwrap();
    while read(&dir.join("a")) != "0" || read(&dir.join("b")) != "0" {
        assert!(
            t.elapsed() < Duration::from_secs(1),
            "not restored within 1 s"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    eprintln!("restored {:?} after SIGKILL", t.elapsed());
}

/// A last line without its newline was cut (bpfoom ends every line with
/// one): its value may be a fragment ("8808" of 88080384), so the guardian
/// does not apply it; the whole lines before it are.
#[test]
fn a_cut_last_line_is_not_applied() {
    let dir = scratch("cut");
    let mut c = start(&dir, "cut");
    c.kill().unwrap();
    c.wait().unwrap();
    let t = Instant::now();
    while read(&dir.join("a")) != "0" {
        assert!(
            t.elapsed() < Duration::from_secs(1),
            "not restored within 1 s"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(read(&dir.join("b")), "11111", "a cut value was applied");
}

#[test]
fn a_long_restore_list_is_applied_in_full() {
    let dir = scratch("many");
    let mut c = start(&dir, "many");
    let t = Instant::now();
    c.kill().unwrap();
    c.wait().unwrap();
    let last = dir.join(format!("f1499-{}", "x".repeat(60)));
    while read(&last) != "0" {
        assert!(
            t.elapsed() < Duration::from_secs(1),
            "not restored within 1 s"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    for i in 0..1500 {
        let f = dir.join(format!("f{i:04}-{}", "x".repeat(60)));
        assert_eq!(read(&f), "0", "{}", f.display());
    }
    eprintln!("1500 entries restored {:?} after SIGKILL", t.elapsed());
}

#[test]
fn clean_exit_leaves_nothing_to_do() {
    let dir = scratch("clean");
    let mut c = start(&dir, "clean");
    assert!(c.wait().unwrap().success());
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(read(&dir.join("a")), "1");
    assert_eq!(read(&dir.join("state")), "");
}

#[test]
fn reconcile_restores_a_crashed_daemons_leftovers() {
    let dir = scratch("reconcile");
    std::fs::write(dir.join("x"), "1").unwrap();
    std::fs::write(
        dir.join("state"),
        format!(
            "{} 0\n{} max\ngarbage-without-space\n \n",
            dir.join("x").display(),
            dir.join("vanished-cgroup/memory.high").display()
        ),
    )
    .unwrap();
    let done = bpfoom_host::restore::reconcile(&dir.join("state")).unwrap();
    assert_eq!(done.len(), 2);
    assert_eq!(read(&dir.join("x")), "0");
    assert_eq!(read(&dir.join("state")), "");
    assert!(bpfoom_host::restore::reconcile(&dir.join("missing"))
        .unwrap()
        .is_empty());
}
