//! The daemon wrapper on a stand-in process (a shell printing records):
//! records are read in order and taken once, a line that is not JSON is
//! kept or fails as asked, stderr is collected, and stop ends the process.

use std::process::Command;
use std::time::Duration;

use bpfoom_testutil::daemon::{DaemonProc, NonJson};

const S: Duration = Duration::from_secs(1);

fn fake(script: &str, non_json: NonJson) -> DaemonProc {
    let dir = bpfoom_testutil::scratch("daemon-proc");
    let mut cmd = Command::new("sh");
    cmd.args(["-c", script]);
    DaemonProc::spawn(&mut cmd, dir.join("sock"), dir.join("state"), non_json).expect("spawn sh")
}

#[test]
fn records_are_collected_and_taken_once() {
    let mut d = fake(
        r#"echo '{"event":"kill","n":1}'; echo '{"event":"oom"}'; echo '{"event":"kill","n":2}'; echo oops >&2; echo 'not json'; exec sleep 30"#,
        NonJson::Keep,
    );
    let k = d.wait_record(10 * S, |r| r["event"] == "kill").unwrap();
    assert_eq!(k["n"], 1);
    // wait_record looks at every record again; take_record only once.
    assert_eq!(d.wait_record(S, |r| r["event"] == "kill").unwrap()["n"], 1);
    assert_eq!(d.take_record(S, |r| r["event"] == "kill").unwrap()["n"], 1);
    assert_eq!(d.take_record(S, |r| r["event"] == "kill").unwrap()["n"], 2);
    assert!(d.take_record(S / 5, |r| r["event"] == "kill").is_none());
    d.drain(S / 5);
    assert_eq!(d.events("kill").len(), 2);
    assert!(
        d.seen.iter().any(|r| r["raw"] == "not json"),
        "{:?}",
        d.seen
    );
    assert!(d.wait_stderr("oops", 10 * S), "{}", d.stderr());
    assert_eq!(d.stderr_tail(3), "ps\n");
    // No socket ever appears: not ready.
    assert!(!d.wait_ready(S / 5));
    let t0 = std::time::Instant::now();
    // sleep dies of the SIGTERM: no exit status of its own.
    assert!(d.stop(10 * S).is_some_and(|s| !s.success()));
    assert!(t0.elapsed() < 5 * S);
}

#[test]
#[should_panic(expected = "stdout line is not JSON")]
fn a_line_that_is_not_json_fails_when_asked() {
    let mut d = fake("echo 'not json'; exec sleep 30", NonJson::Panic);
    d.drain(2 * S);
}

#[test]
fn output_files_get_every_line() {
    use bpfoom_testutil::daemon::Output;
    let dir = bpfoom_testutil::scratch("daemon-proc-files");
    let (records, stderr) = (dir.join("records.jsonl"), dir.join("daemon.stderr"));
    let mut cmd = Command::new("sh");
    cmd.args([
        "-c",
        r#"echo '{"event":"a"}'; echo bad >&2; echo '{"event":"b"}'"#,
    ]);
    let output = Output {
        records: Some(records.clone()),
        stderr: Some(stderr.clone()),
    };
    let mut d = DaemonProc::spawn_with(
        &mut cmd,
        dir.join("sock"),
        dir.join("state"),
        NonJson::Keep,
        output,
    )
    .expect("spawn sh");
    assert!(d.wait_exit(10 * S).is_some_and(|s| s.success()));
    d.collect_to_end(10 * S);
    assert_eq!(d.events("a").len() + d.events("b").len(), 2, "{:?}", d.seen);
    assert_eq!(
        std::fs::read_to_string(&records).expect("records file"),
        "{\"event\":\"a\"}\n{\"event\":\"b\"}\n"
    );
    assert_eq!(d.stderr(), "bad\n");
    assert_eq!(
        std::fs::read_to_string(&stderr).expect("stderr file"),
        "bad\n"
    );
}
