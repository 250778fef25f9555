//! The daemon verbs through the `bpfoom` binary on a cgroup v2 fixture tree
//! (no root needed): `run --attach X.bpf.c=CG` and `attach X.bpf.c` build
//! the source first; a second daemon on the same socket fails before it
//! attaches anything; a scenario's missing policy names a real directory.

#![allow(clippy::unwrap_used)]

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn bpfoom(args: &[&str]) -> (i32, String, String) {
    let o = Command::new(env!("CARGO_BIN_EXE_bpfoom"))
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    (
        o.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

#[test]
fn sources_are_built_and_a_second_daemon_changes_nothing() {
    if !bpfoom_testutil::require_clang() {
        return;
    }
    let root = bpfoom_testutil::repo_root();
    let base = bpfoom_testutil::fixture::fixture_copy("daemon-cli2");
    let cfg = base.join("bpfoom.toml");
    std::fs::write(
        &cfg,
        format!(
            "[daemon]\ncgroup_root = \"{}\"\nproc_root = \"{}\"\nsocket = \"{}\"\nstate_file = \"{}\"\n",
            base.join("v2").display(),
            base.join("proc").display(),
            base.join("sock").display(),
            base.join("state").display()
        ),
    )
    .unwrap();
    let ll = root.join("bpf/policies/largest_leaf.bpf.c");
    let cfgs = cfg.display().to_string();
    let mut d = Command::new(env!("CARGO_BIN_EXE_bpfoom"))
        .args(["run", "--no-mlock", "--config", &cfgs])
        .arg(format!("--attach={}=/job", ll.display()))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let sock = base.join("sock");
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::os::unix::net::UnixStream::connect(&sock).is_err() {
        assert!(Instant::now() < deadline, "daemon not ready");
        assert!(d.try_wait().unwrap().is_none(), "daemon exited");
        std::thread::sleep(Duration::from_millis(20));
    }
    let socks = sock.display().to_string();
    let fail = root.join("bpf/policies/tests/always_fail.bpf.c");
    let (code, out, err) = bpfoom(&[
        "attach",
        &fail.display().to_string(),
        "--cgroup",
        "/job/a",
        "--socket",
        &socks,
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("attached always_fail to /job/a"), "{out}");
    let (_, st, _) = bpfoom(&["status", "--json", "--socket", &socks]);
    let st: serde_json::Value = serde_json::from_str(st.trim()).unwrap();
    let names: Vec<&str> = st["instances"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|i| i["name"].as_str())
        .collect();
    assert_eq!(names, ["largest_leaf", "always_fail"], "{st}");

    // A second daemon: refused before attaching anything (no record).
    let high = std::fs::read_to_string(base.join("v2/job/b/memory.high")).unwrap();
    let (code, out, err) = bpfoom(&[
        "run",
        "--no-mlock",
        "--config",
        &cfgs,
        &format!("--attach={}=/job/b", ll.display()),
    ]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("another bpfoom daemon is running"), "{err}");
    assert!(out.is_empty(), "no records from the refused daemon: {out}");
    assert_eq!(
        std::fs::read_to_string(base.join("v2/job/b/memory.high")).unwrap(),
        high
    );

    let _ = Command::new("kill").arg(d.id().to_string()).status();
    assert!(d.wait().unwrap().success());

    // `sim x.toml` from its own directory: the search names that directory.
    let scen = base.join("x.toml");
    std::fs::write(
        &scen,
        "[host]\nmemory = \"1G\"\n[[attach]]\npolicy = \"nope.bpf.o\"\ncgroup = \"/\"\n",
    )
    .unwrap();
    let o = Command::new(env!("CARGO_BIN_EXE_bpfoom"))
        .args(["sim", "x.toml"])
        .current_dir(&base)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(
        err.contains(&format!(
            "tried {}: the scenario's directory, then the working directory",
            [
                base.join("nope.bpf.o").display().to_string(),
                "nope.bpf.o".into()
            ]
            .join(" and ")
        )),
        "{err}"
    );
    std::fs::remove_dir_all(&base).unwrap();
}
