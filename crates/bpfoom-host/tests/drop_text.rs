//! `sys::drop_own_text`, alone in its own test process: other test threads
//! executing code between the drop and the measurement would map the text
//! back and make the residency check meaningless (it failed that way when it
//! ran beside the crate's other unit tests).

#![allow(clippy::unwrap_used)]

/// (size, resident) in KiB of this binary's text mapping(s).
fn text_kib() -> (u64, u64) {
    use std::os::unix::fs::MetadataExt;
    let ino = std::fs::metadata("/proc/self/exe")
        .unwrap()
        .ino()
        .to_string();
    let smaps = std::fs::read_to_string("/proc/self/smaps").unwrap();
    let (mut size, mut rss, mut inside) = (0, 0, false);
    for l in smaps.lines() {
        let f: Vec<&str> = l.split_ascii_whitespace().collect();
        if f.first()
            .is_some_and(|r| r.contains('-') && !r.ends_with(':'))
            && f.len() >= 5
        {
            inside = f[1] == "r-xp" && f[4] == ino;
        } else if inside {
            let kb = |k: &str| {
                l.strip_prefix(k)
                    .map(|v| v.trim().trim_end_matches(" kB").parse::<u64>().unwrap())
            };
            size += kb("Size:").unwrap_or(0);
            rss += kb("Rss:").unwrap_or(0);
        }
    }
    (size, rss)
}

#[test]
fn dropped_text_leaves_page_tables_and_runs_on() {
    // Map every page of the text first (read it), so that what is dropped
    // is measurable whatever the test harness had touched.
    let maps = std::fs::read_to_string("/proc/self/maps").unwrap();
    use std::os::unix::fs::MetadataExt;
    let ino = std::fs::metadata("/proc/self/exe")
        .unwrap()
        .ino()
        .to_string();
    for l in maps.lines() {
        let f: Vec<&str> = l.split_ascii_whitespace().collect();
        if f.len() >= 6 && f[1] == "r-xp" && f[4] == ino {
            let (a, b) = f[0].split_once('-').unwrap();
            let (a, b) = (
                usize::from_str_radix(a, 16).unwrap(),
                usize::from_str_radix(b, 16).unwrap(),
            );
            for page in (a..b).step_by(4096) {
                // SAFETY: reads inside a mapped, readable text mapping.
                std::hint::black_box(unsafe { std::ptr::read_volatile(page as *const u8) });
            }
        }
    }
    let (size, before) = text_kib();
    assert!(
        size > 0 && before * 10 >= size * 9,
        "text {size} KiB, {before} KiB resident"
    );
    let dropped = bpfoom_host::sys::drop_own_text().unwrap();
    assert_eq!(dropped as u64 / 1024, size);
    let (_, after) = text_kib();
    // Reading smaps maps back what it executes, 64 KiB around each fault;
    // the rest stays out.
    assert!(
        after + 64 < before,
        "{after} KiB of {size} KiB resident after the drop, {before} KiB before"
    );
    // The code still runs after the drop: pages map back from the file.
    let v: u64 = (1..=1000u64).map(|x| x * x).sum();
    assert_eq!(v, 333_833_500);
}
