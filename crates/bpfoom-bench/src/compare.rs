//! Side by side in the VM (BENCHMARKS.md section 6): the host half of the
//! comparison of bpfoom (`oomd_like`, `psi_early`), oomd, earlyoom, nohang
//! and the bare kernel. The runs themselves happen inside the guest
//! ([`bpfoom_vmtest::compare`], as `bpfoom-vmguest compare`); this module
//! builds the initramfs they need, and turns their result lines into the
//! table and the chart of BENCHMARKS.md.

use std::path::Path;

use bpfoom_vmtest::compare::{TOOLS, WORKLOADS};
use bpfoom_vmtest::vm::{self, Initramfs, VmError};
use serde_json::{json, Value};

use crate::stats::median;

/// Builds the comparison initramfs: the v2 one's contents plus the other
/// tools (earlyoom, oomd, nohang with python3) where installed, with `/init`
/// running `command` (a shell command line); returns it and the tools that
/// are missing.
pub fn initramfs(guest: &Path, command: &str) -> Result<(Vec<u8>, Vec<String>), String> {
    let e = |e: VmError| e.to_string();
    let mut i = Initramfs::new();
    i.elf(&vm::busybox().map_err(e)?, "/bin/busybox")
        .map_err(e)?;
    i.elf(guest, "/bin/bpfoom-vmguest").map_err(e)?;
    i.symlink("/bin/svc", "bpfoom-vmguest")
        .symlink("/bin/leak", "bpfoom-vmguest");
    for p in ["largest_leaf", "psi_early", "oomd_like"] {
        let obj = crate::policy_cost::compile(p)?;
        i.copy(&obj, &format!("/policies/{p}.bpf.o"), 0o644)
            .map_err(e)?;
    }
    let mut missing = Vec::new();
    for bin in ["/usr/bin/earlyoom", "/usr/bin/oomd"] {
        if Path::new(bin).exists() {
            i.elf(Path::new(bin), bin).map_err(e)?;
        } else {
            missing.push(bin.to_string());
        }
    }
    let py = Path::new("/usr/bin/python3.11");
    let stdlib = Path::new("/usr/lib/python3.11");
    if Path::new("/usr/sbin/nohang").exists() && py.exists() && stdlib.is_dir() {
        i.elf(py, "/usr/bin/python3").map_err(e)?;
        const SKIP: &[&str] = &[
            "test",
            "tests",
            "__pycache__",
            "idlelib",
            "tkinter",
            "turtledemo",
            "ensurepip",
            "lib2to3",
            "pydoc_data",
            "site-packages",
            "dist-packages",
            "config-3.11-x86_64-linux-gnu",
        ];
        i.tree(stdlib, &|n: &str| !SKIP.contains(&n)).map_err(e)?;
        i.copy(Path::new("/usr/sbin/nohang"), "/usr/sbin/nohang", 0o755)
            .map_err(e)?;
        i.copy(
            Path::new("/etc/nohang/nohang.conf"),
            "/etc/nohang/nohang.conf",
            0o644,
        )
        .map_err(e)?;
    } else {
        missing.push("nohang (python3.11 + /usr/sbin/nohang)".into());
    }
    let init = vm::init_script(command);
    i.bytes("/init", 0o755, init.as_bytes());
    Ok((i.finish(), missing))
}

/// The `/init` command of the side-by-side comparison: `bpfoom-vmguest
/// compare` with the repetitions and tool filter from the kernel command
/// line (`bpfoom.reps=`, `bpfoom.only=`).
pub const COMPARE_COMMAND: &str = "/bin/bpfoom-vmguest compare \"$(sed -n 's/.*bpfoom.reps=\\([0-9]*\\).*/\\1/p' /proc/cmdline)\" \"$(sed -n 's/.*bpfoom.only=\\([a-z_]*\\).*/\\1/p' /proc/cmdline)\" 2>&1";

/// A benchmark boot of the VM: the comparison initramfs with `/init`
/// running `command`, `mem_mb` of guest memory, 2 CPUs, TCG (KVM with
/// `BPFOOM_VM_KVM`); the serial log is kept as
/// `target/vm-cache/run/<name>-serial.log`. Returns the result lines whose
/// `key` field is `true`, and the boot's wall-clock time.
pub fn boot(
    name: &str,
    command: &str,
    append: String,
    mem_mb: u32,
    timeout: std::time::Duration,
    key: &str,
) -> Result<(Vec<Value>, std::time::Duration), String> {
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let guest = exe.with_file_name("bpfoom-vmguest");
    if !guest.is_file() {
        return Err(format!(
            "{} missing: cargo build --release -p bpfoom-vmtest",
            guest.display()
        ));
    }
    let cache = bpfoom_testutil::repo_root().join("target/vm-cache");
    let kernel = vm::kernel(&cache).map_err(|e| e.to_string())?;
    let (bytes, missing) = initramfs(&guest, command)?;
    for m in &missing {
        eprintln!("not in the VM (not installed): {m}");
    }
    let run = cache.join("run");
    std::fs::create_dir_all(&run).map_err(|e| e.to_string())?;
    let initrd = run.join(format!("{name}-initramfs.cpio"));
    std::fs::write(&initrd, bytes).map_err(|e| e.to_string())?;
    let serial = vm::boot(&vm::Boot {
        kernel,
        initrd,
        append,
        mem_mb,
        smp: 2,
        timeout,
        kvm: std::env::var_os("BPFOOM_VM_KVM").is_some(),
    })
    .map_err(|e| e.to_string())?;
    let log = run.join(format!("{name}-serial.log"));
    std::fs::write(&log, &serial.text).map_err(|e| e.to_string())?;
    let results: Vec<Value> = vm::parse_results(&serial.text)
        .into_iter()
        .filter(|r| r[key] == true)
        .collect();
    if results.is_empty() {
        return Err(format!("no results; serial log in {}", log.display()));
    }
    Ok((results, serial.elapsed))
}

fn fmt_ms(v: &Value) -> String {
    v.as_f64().map_or("-".into(), |x| format!("{x:.0} ms"))
}

/// The Markdown table of the results (medians over repetitions; who died
/// and survival counted over all runs).
pub fn table(results: &[Value]) -> String {
    let mut s = String::from(
        "| workload | tool | runs | pressure onset -> kill (median) | leak start -> kill (median) | who died | killed by | service survived | PSI full stall before kill (median) | tool CPU (median) | start->kill / bare kernel |\n|---|---|---|---|---|---|---|---|---|---|---|\n",
    );
    for w in WORKLOADS.iter().map(|w| w.name) {
        let base = median(
            &results
                .iter()
                .filter(|r| r["workload"] == *w && r["tool"] == TOOLS[0].name)
                .filter_map(|r| r["kill_ms"].as_f64())
                .collect::<Vec<_>>(),
        );
        for t in TOOLS {
            let rs: Vec<&Value> = results
                .iter()
                .filter(|r| r["workload"] == *w && r["tool"] == t.name)
                .collect();
            if rs.is_empty() {
                continue;
            }
            if let Some(err) = rs.iter().find_map(|r| r["error"].as_str()) {
                s.push_str(&format!(
                    "| {w} | {} | {} | not run: {} | | | | | | |\n",
                    t.name,
                    rs.len(),
                    err.replace('|', "/").replace('\n', " ")
                ));
                continue;
            }
            let col =
                |k: &str| median(&rs.iter().filter_map(|r| r[k].as_f64()).collect::<Vec<_>>());
            let mut died: Vec<String> = rs
                .iter()
                .map(|r| {
                    let d: Vec<&str> = r["died"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .filter_map(|x| x.as_str())
                        .collect();
                    if d.is_empty() {
                        "nothing (timeout)".to_string()
                    } else {
                        d.join("+")
                    }
                })
                .collect();
            died.sort();
            died.dedup();
            let survived = rs.iter().filter(|r| r["svc_survived"] == true).count();
            let by_kernel = rs
                .iter()
                .filter(|r| r["kernel_oom_kills"].as_u64().is_some_and(|k| k > 0))
                .count();
            let killed_by = match by_kernel {
                0 => "the tool".to_string(),
                n if n == rs.len() => "kernel OOM killer".to_string(),
                n => format!("kernel in {n}/{}", rs.len()),
            };
            // A tool that kills before the first stall has no onset.
            let no_stall = rs
                .iter()
                .filter(|r| r["onset_ms"].is_null() && !r["kill_ms"].is_null())
                .count();
            let onset = match col("onset_to_kill_ms") {
                Some(x) if no_stall == 0 => format!("{x:.0} ms"),
                Some(x) => format!(
                    "{x:.0} ms ({no_stall}/{} killed before any stall)",
                    rs.len()
                ),
                None if no_stall > 0 => "killed before any stall".to_string(),
                None => "-".to_string(),
            };
            let ratio = match (col("kill_ms"), base) {
                (Some(x), Some(b)) if b > 0.0 => format!("{:.2}", x / b),
                _ => "-".into(),
            };
            s.push_str(&format!(
                "| {w} | {} | {} | {onset} | {} | {} | {killed_by} | {survived}/{} | {} | {} | {ratio} |\n",
                t.name,
                rs.len(),
                fmt_ms(&json!(col("kill_ms"))),
                died.join(", "),
                rs.len(),
                fmt_ms(&json!(col("psi_full_before_kill_ms"))),
                fmt_ms(&json!(col("tool_cpu_ms"))),
            ));
        }
    }
    s
}

/// A grouped bar chart (SVG): leak start to kill per tool, one bar per
/// workload.
pub fn chart(results: &[Value], path: &Path) -> Result<(), String> {
    use plotters::prelude::*;
    let e = |e: &dyn std::fmt::Display| e.to_string();
    let vals: Vec<Vec<Option<f64>>> = TOOLS
        .iter()
        .map(|t| {
            WORKLOADS
                .iter()
                .map(|w| {
                    median(
                        &results
                            .iter()
                            .filter(|r| r["workload"] == w.name && r["tool"] == t.name)
                            .filter_map(|r| r["kill_ms"].as_f64())
                            .collect::<Vec<_>>(),
                    )
                })
                .collect()
        })
        .collect();
    let top = vals
        .iter()
        .flatten()
        .flatten()
        .fold(1.0f64, |a, &b| a.max(b))
        * 1.15;
    let root = SVGBackend::new(path, (960, 480)).into_drawing_area();
    root.fill(&WHITE).map_err(|x| e(&x))?;
    let mut c = ChartBuilder::on(&root)
        .caption(
            "leak start -> kill in the VM, median (lower: earlier kill)",
            ("sans-serif", 20),
        )
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(70)
        .build_cartesian_2d((0..TOOLS.len()).into_segmented(), 0f64..top)
        .map_err(|x| e(&x))?;
    c.configure_mesh()
        .disable_x_mesh()
        .x_label_formatter(&|v| match v {
            SegmentValue::CenterOf(i) => TOOLS.get(*i).map_or("", |t| t.name).to_string(),
            _ => String::new(),
        })
        .y_desc("ms")
        .draw()
        .map_err(|x| e(&x))?;
    let colors = [
        RGBColor(52, 101, 164),
        RGBColor(204, 0, 0),
        RGBColor(78, 154, 6),
    ];
    for (wi, w) in WORKLOADS.iter().map(|w| &w.name).enumerate() {
        let color = colors[wi % colors.len()];
        let bars: Vec<Rectangle<(SegmentValue<usize>, f64)>> = vals
            .iter()
            .enumerate()
            .filter_map(|(ti, v)| {
                let y = v[wi]?;
                let mut r = Rectangle::new(
                    [
                        (SegmentValue::Exact(ti), 0.0),
                        (SegmentValue::Exact(ti + 1), y),
                    ],
                    color.filled(),
                );
                // One bar per workload side by side inside each tool's
                // segment (about 140 px wide at 960 px and six tools).
                let k = WORKLOADS.len() as u32;
                let bar = 120 / k;
                let l = 8 + bar * wi as u32;
                r.set_margin(0, 0, l, 8 + bar * (k - 1 - wi as u32));
                Some(r)
            })
            .collect();
        c.draw_series(bars)
            .map_err(|x| e(&x))?
            .label(*w)
            .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 10, y + 5)], color.filled()));
    }
    c.configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()
        .map_err(|x| e(&x))?;
    root.present().map_err(|x| e(&x))?;
    Ok(())
}
