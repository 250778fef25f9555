//! The parsers against hostile input, in the style of earlyoom's tests:
//! truncated lines, huge numbers, garbage. Bad input makes an item absent;
//! it never panics and never yields a wrong number.

#![allow(clippy::unwrap_used)]

use bpfoom_host::parse::*;
use proptest::prelude::*;

#[test]
fn meminfo_truncated_huge_and_garbage() {
    let good = "MemTotal:       24684092 kB\nMemFree: 1 kB\nMemAvailable:   22711488 kB\nSwapTotal: 8 kB\n";
    let m = parse_meminfo(good).unwrap();
    assert_eq!(
        (m.total_kb, m.available_kb, m.swap_total_kb, m.swap_free_kb),
        (24684092, 22711488, 8, 0)
    );
    // Truncated in the middle of the MemAvailable line.
    assert_eq!(parse_meminfo("MemTotal:       24684092 kB\nMemAvail"), None);
    assert_eq!(
        parse_meminfo("MemTotal:       24684092 kB\nMemAvailable:"),
        None
    );
    // A value beyond u64 is not a value.
    assert_eq!(
        parse_meminfo("MemTotal: 99999999999999999999999 kB\nMemAvailable: 1 kB\n"),
        None
    );
    assert_eq!(parse_meminfo("MemTotal: -5 kB\nMemAvailable: 1 kB\n"), None);
    assert_eq!(
        parse_meminfo("MemTotal: 12 MB\nMemAvailable: 1 kB\n"),
        None,
        "unit"
    );
    // A prefix of a key is not the key.
    assert_eq!(parse_meminfo("MemTotalX: 5 kB\nMemAvailable: 1 kB\n"), None);
    assert_eq!(parse_meminfo(""), None);
    assert_eq!(parse_meminfo("\0\0\0\n\u{fffd}:::"), None);
    // The first well-formed line wins over a later duplicate.
    let d = parse_meminfo("MemTotal: 5 kB\nMemAvailable: 1 kB\nMemTotal: 7 kB\n").unwrap();
    assert_eq!(d.total_kb, 5);
}

#[test]
fn key_value_files() {
    let stat = "cache 100\nrss 18446744073709551615\nbig 18446744073709551616\nneg -1\nsp  7  \nextra 1 2\nbare\n";
    assert_eq!(kv_get(stat, "cache"), Some(100));
    assert_eq!(kv_get(stat, "rss"), Some(u64::MAX));
    assert_eq!(kv_get(stat, "big"), None);
    assert_eq!(kv_get(stat, "neg"), None);
    assert_eq!(kv_get(stat, "sp"), Some(7));
    assert_eq!(kv_get(stat, "extra"), None, "trailing garbage");
    assert_eq!(kv_get(stat, "bare"), None);
    assert_eq!(kv_get(stat, "missing"), None);
    assert_eq!(
        kv_get("oom_kill_disable 1\nunder_oom", "under_oom"),
        None,
        "truncated"
    );
    assert_eq!(kv_get("under_oom 1x", "under_oom"), None);
}

#[test]
fn pid_lists() {
    assert_eq!(parse_pids("3\n1\n2\n"), vec![1, 2, 3]);
    assert_eq!(parse_pids("1\n1\n"), vec![1]);
    assert_eq!(
        parse_pids("0\n-4\nabc\n2147483648\n99999999999999999999\n12"),
        vec![12]
    );
    assert_eq!(parse_pids(""), Vec::<i32>::new());
    assert_eq!(parse_pids("12\n34"), vec![12, 34], "no final newline");
}

#[test]
fn proc_stat() {
    let s = "42 (a) b) c) R 1 42 42 0 -1 4194560 0 0 0 0 0 0 0 0 20 0 1 0 777 0 0\n";
    let p = parse_proc_stat(s).unwrap();
    assert_eq!(p.comm, "a) b) c");
    assert_eq!((p.state, p.flags, p.starttime), ('R', 4194560, 777));
    // Truncated before the start time.
    assert_eq!(parse_proc_stat("42 (a) R 1 42 42 0 -1 4194560 0 0"), None);
    assert_eq!(parse_proc_stat("42 (a R 1"), None);
    assert_eq!(
        parse_proc_stat("42 )a( R 1 42 42 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 777 0"),
        None
    );
    assert_eq!(
        parse_proc_stat("42 (a) R 1 42 42 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 77"),
        None,
        "cut"
    );
    // flags beyond u32.
    assert_eq!(
        parse_proc_stat("42 (a) R 1 42 42 0 -1 4294967296 0 0 0 0 0 0 0 0 20 0 1 0 777 0"),
        None
    );
    assert_eq!(parse_proc_stat(""), None);
    assert_eq!(parse_proc_stat("()"), None);
}

#[test]
fn proc_status_and_cgroup() {
    let m = parse_proc_status(
        "RssAnon:\t100 kB\nRssFile: 20 kB\nRssShmem: 3 kB\nVmSwap: 5 kB\nVmPTE: 8 kB\n",
    );
    assert_eq!((m.rss_kb, m.swap_kb, m.pte_kb), (123, 5, 8));
    // Kernel threads and garbage: zeros, not errors.
    assert_eq!(parse_proc_status("Name: kthreadd\n"), ProcMem::default());
    let huge = parse_proc_status("RssAnon: 18446744073709551615 kB\nRssFile: 5 kB\n");
    assert_eq!(huge.rss_kb, u64::MAX, "saturates");
    let cg = "12:pids:/x\n4:cpu,memory:/a/b\n0::/c\n";
    assert_eq!(parse_proc_cgroup(cg, false).as_deref(), Some("/a/b"));
    assert_eq!(parse_proc_cgroup(cg, true).as_deref(), Some("/c"));
    assert_eq!(parse_proc_cgroup("4:memoryx:/a\n", false), None);
    assert_eq!(parse_proc_cgroup("4:memory:relative\n", false), None);
    assert_eq!(parse_proc_cgroup("4:memory", false), None, "truncated");
    assert_eq!(
        parse_proc_cgroup("0::/a:b\n", true).as_deref(),
        Some("/a:b")
    );
}

#[test]
fn pressure_files() {
    let p = parse_pressure(
        "some avg10=1.50 avg60=0.20 avg300=0.05 total=123456\nfull avg10=0.75 avg60=0.10 avg300=0.00 total=65432\n",
    )
    .unwrap();
    assert_eq!(p.some.total_us, 123456);
    assert_eq!(p.full.unwrap().avg10, 0.75);
    // CPU-style file without "full".
    assert!(
        parse_pressure("some avg10=0.00 avg60=0.00 avg300=0.00 total=0\n")
            .unwrap()
            .full
            .is_none()
    );
    assert_eq!(
        parse_pressure("some avg10=0.00 avg60=0.00 avg300=0.00 tot"),
        None
    );
    assert_eq!(
        parse_pressure("some avg10=nan avg60=0.00 avg300=0.00 total=0\n"),
        None
    );
    assert_eq!(
        parse_pressure("some avg10=inf avg60=0.00 avg300=0.00 total=0\n"),
        None
    );
    assert_eq!(
        parse_pressure("some avg10=-1 avg60=0.00 avg300=0.00 total=0\n"),
        None
    );
    assert_eq!(
        parse_pressure("some avg10=0 avg60=0 avg300=0 total=99999999999999999999\n"),
        None
    );
    assert_eq!(
        parse_pressure("full avg10=0 avg60=0 avg300=0 total=1\n"),
        None,
        "no some"
    );
}

proptest! {
    #[test]
    fn arbitrary_text_never_panics(s in ".{0,300}") {
        let _ = parse_meminfo(&s);
        let _ = parse_pressure(&s);
        let _ = parse_proc_stat(&s);
        let _ = parse_proc_status(&s);
        let _ = parse_proc_cgroup(&s, false);
        let _ = parse_proc_cgroup(&s, true);
        let _ = parse_pids(&s);
        let _ = parse_limit(&s);
        let _ = kv_get(&s, "cache");
    }

    #[test]
    fn truncations_of_a_valid_stat_are_absent_or_right(cut in 0usize..80) {
        let s = "42 (a b) R 1 42 42 0 -1 4194560 0 0 0 0 0 0 0 0 20 0 1 0 777 0 0\n";
        if let Some(p) = parse_proc_stat(&s[..cut.min(s.len())]) {
            prop_assert_eq!(p.comm, "a b");
            prop_assert_eq!(p.flags, 4194560);
            prop_assert_eq!(p.starttime, 777);
        }
    }

    #[test]
    fn numbers_round_trip(n in any::<u64>()) {
        prop_assert_eq!(parse_u64(&n.to_string()), Some(n));
        prop_assert_eq!(kv_get(&format!("k {n}\n"), "k"), Some(n));
    }
}
