//! A process tree's CPU time and resident size, read from /proc: the tool CPU column of the
//! side-by-side comparison in the guest ([`crate::compare`]) and the idle
//! cost benchmark of `bpfoom-bench` on the host measure it the same way.

/// Process ids of `pid` and its descendants.
pub fn family(pid: i32) -> Vec<i32> {
    let mut out = vec![pid];
    let mut i = 0;
    while i < out.len() {
        let p = out[i];
        if let Ok(rd) = std::fs::read_dir(format!("/proc/{p}/task")) {
            for t in rd.flatten() {
                let c = std::fs::read_to_string(t.path().join("children")).unwrap_or_default();
                out.extend(c.split_whitespace().filter_map(|x| x.parse::<i32>().ok()));
            }
        }
        i += 1;
    }
    out
}

/// CPU time (ns, every thread: the first field of each task's
/// `schedstat`, far finer than the clock ticks of `stat`) of one process.
fn cpu_ns_one(pid: i32) -> u64 {
    let Ok(rd) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return 0;
    };
    rd.flatten()
        .filter_map(|t| {
            let s = std::fs::read_to_string(t.path().join("schedstat")).ok()?;
            s.split_whitespace().next()?.parse::<u64>().ok()
        })
        .sum()
}

/// CPU time (ns) of `pid` and its descendants.
pub fn cpu_ns(pid: i32) -> u64 {
    family(pid).into_iter().map(cpu_ns_one).sum()
}

/// Resident size (`VmRSS`, KiB) of `pid` and its descendants.
pub fn rss_kb(pid: i32) -> u64 {
    family(pid)
        .into_iter()
        .filter_map(|p| bpfoom_testutil::status_kb(p as u32, "VmRSS:"))
        .sum()
}
