//! `bpfoom maps` and ring-buffer records against a running daemon on the
//! cgroup v2 fixture tree (no root needed): raise_then_kill raises the
//! limit on an OOM, counts the decision in its `counters` map and submits a
//! ring-buffer event; the event appears as a `ringbuf` record right after
//! the `limit_raised` it reports, and `maps` reads the counter back, typed.

#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::*;

const S: Duration = Duration::from_secs(1);

#[test]
fn maps_dump_a_policys_decision_map_and_ringbuf_events_are_records() {
    let Some(rtk) = policy("raise_then_kill.bpf.c") else {
        return;
    };
    let (base, cfg) = fixture(
        "maps",
        &format!(
            "\n[[attach]]\npolicy = \"{}\"\ncgroup = \"/job\"\nlimit_reserve = \"32M\"\nglobals = {{ raise_step = {} }}\n",
            rtk.display(),
            8u64 << 20
        ),
    );
    let mut d = DaemonProc::start(
        "d-maps",
        &[format!("--config={}", cfg.display()), "--no-mlock".into()],
    );
    assert!(d.wait_ready(10 * S), "{}", d.stderr());
    let sock = d.socket.display().to_string();

    // Before any OOM: every counter is 0, the tunable is what the config set.
    let (code, out, err) = client(&["maps", "--cgroup", "/job", "--json", "--socket", &sock]);
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(v[0]["policy"], "raise_then_kill", "{v}");
    assert_eq!(v[0]["kind"], "bpf_oom_ops");
    assert_eq!(v[0]["cgroup"], "/job");
    let map = |v: &serde_json::Value, name: &str| {
        v[0]["maps"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["name"] == name)
            .unwrap_or_else(|| panic!("no map {name}: {v}"))
            .clone()
    };
    let counters = map(&v, "counters");
    assert_eq!(counters["type"], "array");
    assert_eq!(counters["key_type"], "u32");
    assert_eq!(counters["value_type"], "u64");
    assert_eq!(
        counters["entries"],
        serde_json::json!([
            {"key": 0, "value": 0}, {"key": 1, "value": 0},
            {"key": 2, "value": 0}, {"key": 3, "value": 0}
        ])
    );
    let rodata = map(&v, ".rodata");
    assert_eq!(rodata["type"], "global_data");
    assert_eq!(rodata["entries"][0]["value"]["raise_step"], 8u64 << 20);
    assert_eq!(map(&v, "events")["type"], "ringbuf");

    // An OOM at /job (usage above memory.high, new high events, stall).
    let job = base.join("v2/job");
    fixture_v2_oom(&job);
    d.wait_record(5 * S, |r| r["event"] == "resolved")
        .unwrap_or_else(|| panic!("no resolved record: {}", d.stderr()));
    let order: Vec<String> = d
        .seen
        .iter()
        .filter_map(|r| r["event"].as_str().map(str::to_string))
        .filter(|e| e != "attach")
        .collect();
    assert_eq!(
        order,
        ["oom", "limit_raised", "ringbuf", "handler", "resolved"],
        "{:?}",
        d.seen
    );
    let rb = &d.events("ringbuf")[0];
    assert_eq!(rb["policy"], "raise_then_kill");
    assert_eq!(rb["map"], "events");
    assert!(rb["ts"].is_string(), "{rb}");
    // struct event { u64 ts_ns; u64 cgroup_id; u64 bytes; u32 kind; s32 pid; }
    let data = rb["data"].as_str().unwrap();
    assert_eq!(data.len(), 64, "{data}");
    let field = |i: usize, w: usize| {
        let b: Vec<u8> = (0..w)
            .map(|j| u8::from_str_radix(&data[(i + j) * 2..(i + j) * 2 + 2], 16).unwrap())
            .collect();
        let mut a = [0u8; 8];
        a[..w].copy_from_slice(&b);
        u64::from_le_bytes(a)
    };
    assert_eq!(field(16, 8), 8u64 << 20, "bytes: {data}");
    assert_eq!(field(24, 4), 1, "kind EV_RAISED: {data}");
    // The record is also in `events` (the daemon's journal).
    let (code, out, err) = client(&["events", "--json", "--socket", &sock]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("\"event\":\"ringbuf\""), "{out}");

    // The decision map counted it, and the ring buffer was read.
    let (code, out, err) = client(&["maps", "--cgroup", "/job", "--json", "--socket", &sock]);
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(
        map(&v, "counters")["entries"][1],
        serde_json::json!({"key": 1, "value": 1})
    );
    assert_eq!(map(&v, "events")["pending"], 0);

    // The text form names each map and prints one entry per line.
    let (code, out, err) = client(&["maps", "--cgroup", "/job", "--socket", &sock]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.starts_with("# raise_then_kill (bpf_oom_ops) at /job\n"),
        "{out}"
    );
    assert!(
        out.contains("map counters: array, key u32, value u64, 4 entries\n  {\"key\":0,\"value\":0}\n  {\"key\":1,\"value\":1}\n"),
        "{out}"
    );

    // Errors: nothing attached there, an unknown instance name.
    let (code, _, err) = client(&["maps", "--cgroup", "/job/a", "--socket", &sock]);
    assert_eq!(code, 2);
    assert!(err.contains("no policy is attached to /job/a"), "{err}");
    let (code, _, err) = client(&[
        "maps",
        "--cgroup",
        "/job",
        "--instance",
        "nope",
        "--socket",
        &sock,
    ]);
    assert_eq!(code, 2);
    assert!(
        err.contains("no instance named nope at /job (attached there: raise_then_kill)"),
        "{err}"
    );
    // Looking does not count as a request.
    let (_, out, _) = client(&["status", "--json", "--socket", &sock]);
    let st: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(st["counters"]["requests"], 0, "{st}");
}

/// `run --attach` takes the per-instance options of a config entry, under
/// the same names (crate::attach_arg): the global it sets is what `maps`
/// reads back; a misspelt option fails the start naming the argument.
#[test]
fn run_attach_takes_the_config_entrys_options() {
    let Some(rtk) = policy("raise_then_kill.bpf.c") else {
        return;
    };
    let (_base, cfg) = fixture("attach-opts", "");
    let arg = format!(
        "--attach={}=/job {{ limit_reserve = \"32M\", globals = {{ raise_step = {} }} }}",
        rtk.display(),
        4u64 << 20
    );
    let mut d = DaemonProc::start(
        "d-attach-opts",
        &[
            format!("--config={}", cfg.display()),
            "--no-mlock".into(),
            arg,
        ],
    );
    assert!(d.wait_ready(10 * S), "{}", d.stderr());
    let sock = d.socket.display().to_string();
    let (code, out, err) = client(&["maps", "--cgroup", "/job", "--json", "--socket", &sock]);
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    let rodata = v[0]["maps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["name"] == ".rodata")
        .unwrap()
        .clone();
    assert_eq!(
        rodata["entries"][0]["value"]["raise_step"],
        4u64 << 20,
        "{v}"
    );
    d.signal(libc::SIGTERM);
    assert!(d.wait_exit(10 * S).is_some());

    let bad = format!("--attach={}=/job {{ budget = 1 }}", rtk.display());
    let mut d = DaemonProc::start(
        "d-attach-bad",
        &[
            format!("--config={}", cfg.display()),
            "--no-mlock".into(),
            bad,
        ],
    );
    let st = d
        .wait_exit(10 * S)
        .expect("a bad --attach must stop the start");
    assert_eq!(st.code(), Some(2), "{}", d.stderr());
    let err = d.stderr();
    assert!(err.contains("--attach 1: unknown field `budget`"), "{err}");
}
