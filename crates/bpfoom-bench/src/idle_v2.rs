//! cgroup v2 idle cost and reaction with many watched cgroups, in the VM
//! (BENCHMARKS.md section 3): the host half of `bpfoom-bench idle-v2`. The
//! guest half ([`bpfoom_vmtest::idle_v2`]) builds the tree, runs the daemon
//! beside earlyoom and then the OOMs; this boots it and tables the results.

use serde_json::Value;

use crate::stats::median;

/// Boots the VM with `cgroups` watched leaves (`mem_mb` of guest memory),
/// `secs` seconds of idle and `reps` OOMs per handler; returns the tables.
pub fn run(cgroups: usize, secs: u64, reps: usize, mem_mb: u32) -> Result<String, String> {
    let (results, elapsed) = crate::compare::boot(
        "idle-v2",
        &format!("/bin/bpfoom-vmguest idle-v2 {cgroups} {secs} {reps} 2>&1"),
        String::new(),
        mem_mb,
        std::time::Duration::from_secs(900 + secs + 60 * reps as u64 + cgroups as u64 / 10),
        "idle_v2",
    )?;
    if let Some(e) = results.iter().find(|r| r["kind"] == "error") {
        return Err(format!("in the guest: {}", e["error"]));
    }
    Ok(table(
        &results,
        cgroups,
        secs,
        mem_mb,
        elapsed.as_secs_f64(),
    ))
}

fn ms(v: Option<f64>) -> String {
    v.map_or("-".into(), |x| format!("{x:.1} ms"))
}

/// The Markdown tables of one boot's results.
pub fn table(results: &[Value], cgroups: usize, secs: u64, mem_mb: u32, boot_s: f64) -> String {
    let mut s = format!(
        "cgroup v2 in the VM ({mem_mb} MiB, TCG, {boot_s:.0} s), {cgroups} watched leaves, largest_leaf at their parent\n\n"
    );
    if let Some(r) = results.iter().find(|r| r["kind"] == "setup") {
        s.push_str(&format!(
            "Set-up: {} ms to create the leaves, daemon ready {} ms later. Kernel memory the daemon's watches cost (its start to the end of the idle period, /proc/meminfo): KernelStack {:+} KiB, SUnreclaim {:+} KiB.\n\n",
            r["mkdir_ms"], r["daemon_ready_ms"], r["kernel_stack_kb"], r["sunreclaim_kb"]
        ));
    }
    s.push_str(&format!(
        "Idle over the same {secs} s, no OOM\n\n| tool | CPU time | CPU % of one core | max RSS | descriptors | CPU / earlyoom |\n|---|---|---|---|---|---|\n"
    ));
    let idle: Vec<&Value> = results.iter().filter(|r| r["kind"] == "idle").collect();
    let base = idle
        .iter()
        .find(|r| {
            r["tool"]
                .as_str()
                .is_some_and(|t| t.starts_with("earlyoom"))
        })
        .and_then(|r| r["cpu_ms"].as_f64());
    for r in &idle {
        let cpu = r["cpu_ms"].as_f64().unwrap_or(0.0);
        let rss = r["max_rss_kb"]
            .as_f64()
            .map_or("-".into(), |k| format!("{:.1} MiB", k / 1024.0));
        let fds = match (r["open_fds"].as_u64(), r["threads"].as_u64()) {
            (Some(f), _) => f.to_string(),
            (_, Some(t)) => format!("{t} threads"),
            _ => "-".into(),
        };
        let ratio = base
            .filter(|b| *b > 0.0)
            .map_or("-".into(), |b| format!("{:.2}", cpu / b));
        s.push_str(&format!(
            "| {} | {cpu:.1} ms | {:.3} % | {rss} | {fds} | {ratio} |\n",
            r["tool"].as_str().unwrap_or("?"),
            r["cpu_percent"].as_f64().unwrap_or(0.0),
        ));
    }
    if let Some(r) = results.iter().find(|r| r["kind"] == "armed") {
        s.push_str(&format!(
            "\nPSI triggers armed (psimon threads) after the daemon's OOMs: {}.\n",
            r["psimon_after_ooms"]
        ));
    }
    s.push_str("\nOne OOM at a time in a further leaf (32 MiB memory.max, 64 MiB allocator)\n\n| handler | OOMs | resolved | start to death (median / max) | daemon notify->kill (median) | median / kernel |\n|---|---|---|---|---|---|\n");
    let rows = |h: &str| -> Vec<&Value> {
        results
            .iter()
            .filter(|r| r["kind"] == "oom" && r["handler"] == h)
            .collect()
    };
    let kernel = median(
        &rows("kernel OOM killer")
            .iter()
            .filter_map(|r| r["to_death_ms"].as_f64())
            .collect::<Vec<_>>(),
    );
    for h in ["kernel OOM killer", "bpfoom largest_leaf"] {
        let rs = rows(h);
        let t: Vec<f64> = rs
            .iter()
            .filter_map(|r| r["to_death_ms"].as_f64())
            .collect();
        let by_policy = rs
            .iter()
            .filter(|r| r["by"].as_str().is_some_and(|b| b.starts_with("policy")))
            .count();
        let resolved = if h.starts_with("bpfoom") {
            format!("{}/{} by the policy", by_policy, rs.len())
        } else {
            format!("{}/{}", t.len(), rs.len())
        };
        let lat: Vec<f64> = rs
            .iter()
            .filter_map(|r| r["latency_us"].as_f64().map(|u| u / 1000.0))
            .collect();
        let m = median(&t);
        let ratio = match (m, kernel) {
            (Some(m), Some(k)) if k > 0.0 => format!("{:.2}", m / k),
            _ => "-".into(),
        };
        s.push_str(&format!(
            "| {h} | {} | {resolved} | {} / {} | {} | {ratio} |\n",
            rs.len(),
            ms(m),
            ms(t.iter().copied().reduce(f64::max)),
            if lat.is_empty() {
                "-".into()
            } else {
                ms(median(&lat))
            },
        ));
    }
    s
}
