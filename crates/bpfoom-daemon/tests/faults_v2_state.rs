//! Fault 6 (restart with damage) where cgroup v2 differs from v1: what
//! bpfoom changes there is `memory.high` (kept below `memory.max`), and a
//! value left behind is a throttle, not a pause. On a v2 fixture tree (no
//! root needed; the VM suite runs the same on a real cgroup2 mount):
//! a state file cut inside its last value must not be applied as a tiny
//! `memory.high`, and a leftover `memory.high` whose state entry was lost
//! must not become the value a later daemon restores.

#![allow(clippy::unwrap_used)]

mod common;

use std::path::Path;
use std::time::Duration;

use common::*;

const S: Duration = Duration::from_secs(1);
/// What bpfoom sets on the fixture's `job` (100M max - 16M headroom).
const LOWERED: &str = "88080384";

fn high(base: &Path) -> String {
    std::fs::read_to_string(base.join("v2/job/memory.high"))
        .unwrap_or_default()
        .trim()
        .to_string()
}

/// The state file cut inside the value of its last line (`memory.high
/// 880`): the restarted daemon lifts the throttle (`max`) instead of
/// writing 880 bytes as the new `memory.high`.
#[test]
fn fault6_v2_state_cut_inside_a_value() {
    let (base, cfg) = fixture("f6v2cut", "");
    let job = base.join("v2/job");
    std::fs::write(job.join("memory.high"), LOWERED).unwrap();
    let state = base.join("state");
    std::fs::write(&state, format!("{}/memory.high 880", job.display())).unwrap();
    let mut d = DaemonProc::start_with_state(
        "f6v2cut",
        &state,
        &[format!("--config={}", cfg.display()), "--no-mlock".into()],
    );
    assert!(d.wait_ready(10 * S), "{}", d.stderr());
    assert_eq!(high(&base), "max", "{}", d.stderr());
    assert_eq!(
        std::fs::read(&state).unwrap(),
        b"",
        "the state file was not emptied"
    );
}

/// The state file lost while bpfoom's `memory.high` is in place (daemon
/// and guardian killed, the file emptied): a new daemon managing the same
/// cgroup must not take the leftover for the owner's value, so after it
/// exits the cgroup is not throttled.
#[test]
fn fault6_v2_leftover_high_is_not_restored() {
    let Some(fail) = policy("tests/always_fail.bpf.c") else {
        return;
    };
    let (base, cfg) = fixture("f6v2lost", "");
    let job = base.join("v2/job");
    std::fs::write(job.join("memory.high"), LOWERED).unwrap();
    let state = base.join("state");
    std::fs::write(&state, b"").unwrap();
    let mut d = DaemonProc::start_with_state(
        "f6v2lost",
        &state,
        &[
            format!("--config={}", cfg.display()),
            "--no-mlock".into(),
            format!("--attach={}=/job", fail.display()),
        ],
    );
    assert!(d.wait_ready(10 * S), "{}", d.stderr());
    assert_eq!(high(&base), LOWERED);
    let st = std::fs::read_to_string(&state).unwrap();
    assert!(st.contains("memory.high max"), "recorded: {st:?}");
    d.signal(libc::SIGTERM);
    assert!(d.wait_exit(5 * S).is_some_and(|s| s.success()));
    assert_eq!(high(&base), "max", "the leftover throttle stayed");
    // An owner's own memory.high (not bpfoom's value) is still put back.
    std::fs::write(job.join("memory.high"), "50000000").unwrap();
    let mut d = DaemonProc::start_with_state(
        "f6v2own",
        &state,
        &[
            format!("--config={}", cfg.display()),
            "--no-mlock".into(),
            format!("--attach={}=/job", fail.display()),
        ],
    );
    assert!(d.wait_ready(10 * S), "{}", d.stderr());
    d.signal(libc::SIGTERM);
    assert!(d.wait_exit(5 * S).is_some_and(|s| s.success()));
    assert_eq!(high(&base), "50000000");
}
