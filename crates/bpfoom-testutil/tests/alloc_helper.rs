//! The allocator helper runs as documented: outside any cgroup (a scratch
//! directory stands in for the cgroup), it writes its pid, says READY, and
//! exits 0 after its sleep; bad arguments are an error, not a panic.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

#[test]
fn allocator_joins_reports_ready_and_exits() {
    let exe = bpfoom_testutil::helper_exe("bpfoom-test-alloc").expect("helper builds");
    let dir = std::env::temp_dir().join(format!("bpfoom-alloc-helper-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut child = Command::new(&exe)
        .arg(&dir)
        .args(["4", "0", "0", "anon"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let status = child.wait().unwrap();
    let procs = std::fs::read_to_string(dir.join("cgroup.procs")).unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    assert!(status.success(), "{status}");
    assert_eq!(line.trim(), format!("BPFOOM-READY {}", child.id()));
    assert_eq!(procs, child.id().to_string());

    let bad = Command::new(&exe)
        .args(["/nonexistent", "x"])
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("usage"));
}

/// The handle the tests hold: READY is seen, the exit is waited for, and a
/// handle dropped early kills its process.
#[test]
fn the_alloc_handle_sees_ready_and_exit() {
    use bpfoom_testutil::alloc::Alloc;
    use std::time::Duration;
    let dir = bpfoom_testutil::scratch("alloc-handle");
    let mut a = Alloc::start(&dir, 2, 0, 0);
    assert!(a.ready(Duration::from_secs(30)), "no READY");
    let st = a
        .wait(Duration::from_secs(30))
        .expect("the allocator exits");
    assert!(st.success(), "{st}");
    assert!(!a.alive());

    let mut held = Alloc::start(&dir, 1, 0, 600);
    assert!(held.ready(Duration::from_secs(30)));
    assert!(held.alive());
    let pid = held.pid();
    drop(held);
    assert!(
        !std::path::Path::new(&format!("/proc/{pid}")).exists(),
        "a dropped allocator kept running"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
