//! Parsers for the /proc and cgroupfs files bpfoom reads. They take text and
//! never fail loudly: a truncated line, a number too large for u64 or plain
//! garbage makes that one item absent, never a panic or a wrong value.

/// A decimal u64; `None` for anything else (sign, overflow, garbage).
pub fn parse_u64(s: &str) -> Option<u64> {
    let s = s.trim();
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// The value of `key` in a `key value` file (`memory.stat`,
/// `memory.events`, `memory.oom_control`). The first well-formed line wins.
pub fn kv_get(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|l| {
        let mut it = l.split_ascii_whitespace();
        if it.next()? != key {
            return None;
        }
        let v = parse_u64(it.next()?)?;
        it.next().is_none().then_some(v)
    })
}

/// Limits at or above this many bytes mean "no limit" in cgroup v1 (the
/// kernel prints PAGE_COUNTER_MAX pages as roughly 2^63).
pub const V1_UNLIMITED: u64 = 1 << 62;

/// A memory limit: `max` (v2) or a huge number (v1) is `Some(None)`;
/// garbage is `None`.
pub fn parse_limit(text: &str) -> Option<Option<u64>> {
    let t = text.trim();
    if t == "max" {
        return Some(None);
    }
    // A value beyond u64 is unlimited too, not garbage.
    if !t.is_empty() && t.len() <= 40 && t.bytes().all(|b| b.is_ascii_digit()) {
        return Some(parse_u64(t).filter(|&v| v < V1_UNLIMITED));
    }
    None
}

/// Pids listed one per line (`cgroup.procs`), sorted, garbage lines skipped.
pub fn parse_pids(text: &str) -> Vec<i32> {
    let mut v: Vec<i32> = text
        .lines()
        .filter_map(|l| parse_u64(l).and_then(|p| i32::try_from(p).ok()))
        .filter(|&p| p > 0)
        .collect();
    v.sort_unstable();
    v.dedup();
    v
}

/// The fields of `/proc/meminfo` bpfoom uses, in KiB.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MemInfo {
    /// `MemTotal`.
    pub total_kb: u64,
    /// `MemAvailable`.
    pub available_kb: u64,
    /// `SwapTotal`.
    pub swap_total_kb: u64,
    /// `SwapFree`.
    pub swap_free_kb: u64,
}

fn kb_field(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|l| {
        let rest = l.strip_prefix(key)?.strip_prefix(':')?;
        let mut it = rest.split_ascii_whitespace();
        let v = parse_u64(it.next()?)?;
        matches!(it.next(), Some("kB") | None).then_some(v)
    })
}

/// Parses `/proc/meminfo`; `None` unless MemTotal and MemAvailable are there.
pub fn parse_meminfo(text: &str) -> Option<MemInfo> {
    Some(MemInfo {
        total_kb: kb_field(text, "MemTotal")?,
        available_kb: kb_field(text, "MemAvailable")?,
        swap_total_kb: kb_field(text, "SwapTotal").unwrap_or(0),
        swap_free_kb: kb_field(text, "SwapFree").unwrap_or(0),
    })
}

/// One line of a PSI file.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct PsiLine {
    /// Percent of the last 10 s.
    pub avg10: f64,
    /// Percent of the last 60 s.
    pub avg60: f64,
    /// Percent of the last 300 s.
    pub avg300: f64,
    /// Total stall, microseconds.
    pub total_us: u64,
}

/// A PSI file (`/proc/pressure/memory`, `memory.pressure`).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Pressure {
    /// Some tasks stalled.
    pub some: PsiLine,
    /// All non-idle tasks stalled (absent for CPU on old kernels).
    pub full: Option<PsiLine>,
}

fn parse_psi_line(l: &str) -> Option<(&str, PsiLine)> {
    let mut it = l.split_ascii_whitespace();
    let kind = it.next()?;
    let mut p = PsiLine::default();
    let mut seen = 0;
    for kv in it {
        let (k, v) = kv.split_once('=')?;
        let pct = || v.parse::<f64>().ok().filter(|x| x.is_finite() && *x >= 0.0);
        match k {
            "avg10" => p.avg10 = pct()?,
            "avg60" => p.avg60 = pct()?,
            "avg300" => p.avg300 = pct()?,
            "total" => p.total_us = parse_u64(v)?,
            _ => continue,
        }
        seen += 1;
    }
    (seen == 4).then_some((kind, p))
}

/// Parses a PSI file; `None` without a well-formed `some` line.
pub fn parse_pressure(text: &str) -> Option<Pressure> {
    let mut some = None;
    let mut full = None;
    for (kind, p) in text.lines().filter_map(parse_psi_line) {
        match kind {
            "some" if some.is_none() => some = Some(p),
            "full" if full.is_none() => full = Some(p),
            _ => {}
        }
    }
    Some(Pressure { some: some?, full })
}

/// The fields of `/proc/PID/stat` bpfoom uses.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProcStat {
    /// Command name (between the parentheses; may hold spaces and `)`).
    pub comm: String,
    /// State letter (`R`, `S`, `D`, `Z`, `X`, ...).
    pub state: char,
    /// `task->flags` (`PF_*`).
    pub flags: u32,
    /// Start time in clock ticks since boot: with the pid, it names one
    /// process for good.
    pub starttime: u64,
}

/// Parses `/proc/PID/stat`.
pub fn parse_proc_stat(text: &str) -> Option<ProcStat> {
    let open = text.find('(')?;
    let close = text.rfind(')')?;
    if close < open {
        return None;
    }
    let comm = text[open + 1..close].to_string();
    let rest: Vec<&str> = text[close + 1..].split_ascii_whitespace().collect();
    // rest[0] is field 3 (state); field N is rest[N - 3].
    let state = rest.first()?.chars().next()?;
    let flags = u32::try_from(parse_u64(rest.get(6)?)?).ok()?;
    let starttime = parse_u64(rest.get(19)?)?;
    // The field after the start time must be there too, so a file cut
    // inside the start time is rejected rather than read short.
    parse_u64(rest.get(20)?)?;
    Some(ProcStat {
        comm,
        state,
        flags,
        starttime,
    })
}

/// Memory of a process from `/proc/PID/status`, in KiB.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ProcMem {
    /// `RssAnon + RssFile + RssShmem` (what `get_mm_rss` counts).
    pub rss_kb: u64,
    /// `RssFile` (`MM_FILEPAGES`).
    pub rss_file_kb: u64,
    /// `RssShmem` (`MM_SHMEMPAGES`).
    pub rss_shmem_kb: u64,
    /// `VmSize` (`mm->total_vm`).
    pub vm_size_kb: u64,
    /// `VmSwap`.
    pub swap_kb: u64,
    /// `VmPTE`.
    pub pte_kb: u64,
}

/// Parses `/proc/PID/status`; kernel threads have none of these lines and
/// get zeros.
pub fn parse_proc_status(text: &str) -> ProcMem {
    let f = |k| kb_field(text, k).unwrap_or(0);
    ProcMem {
        rss_kb: f("RssAnon")
            .saturating_add(f("RssFile"))
            .saturating_add(f("RssShmem")),
        rss_file_kb: f("RssFile"),
        rss_shmem_kb: f("RssShmem"),
        vm_size_kb: f("VmSize"),
        swap_kb: f("VmSwap"),
        pte_kb: f("VmPTE"),
    }
}

/// The memory cgroup path in `/proc/PID/cgroup`: the v1 line whose
/// controller list holds `memory`, or the v2 `0::` line.
pub fn parse_proc_cgroup(text: &str, v2: bool) -> Option<String> {
    text.lines().find_map(|l| {
        let mut it = l.splitn(3, ':');
        let (id, ctrls, path) = (it.next()?, it.next()?, it.next()?);
        let hit = if v2 {
            id == "0" && ctrls.is_empty()
        } else {
            ctrls.split(',').any(|c| c == "memory")
        };
        (hit && path.starts_with('/')).then(|| path.to_string())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers() {
        assert_eq!(parse_u64("42\n"), Some(42));
        assert_eq!(parse_u64("18446744073709551615"), Some(u64::MAX));
        assert_eq!(parse_u64("18446744073709551616"), None);
        assert_eq!(parse_u64("-1"), None);
        assert_eq!(parse_u64("+1"), None);
        assert_eq!(parse_u64(""), None);
        assert_eq!(parse_u64("1e3"), None);
    }

    #[test]
    fn limits() {
        assert_eq!(parse_limit("max\n"), Some(None));
        assert_eq!(parse_limit("9223372036854771712\n"), Some(None));
        assert_eq!(parse_limit("99999999999999999999999"), Some(None));
        assert_eq!(parse_limit("83886080\n"), Some(Some(83_886_080)));
        assert_eq!(parse_limit("8388608O"), None);
        assert_eq!(parse_limit(""), None);
        assert_eq!(parse_limit(&"9".repeat(100)), None);
    }
}
