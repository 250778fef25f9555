//! Processes as the OOM killer sees them, from a /proc tree.

use std::path::{Path, PathBuf};

use bpfoom_engine::{Pid, TaskInfo};

use crate::parse;

/// A /proc tree (the real one, or a fixture).
#[derive(Clone, Debug)]
pub struct Procfs {
    root: PathBuf,
}

/// A process read from /proc, with what identifies it for good.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProcEntry {
    /// What the engine sees; `cgroup` is filled in by the caller.
    pub info: TaskInfo,
    /// Memory cgroup path relative to the hierarchy root.
    pub cgroup_path: Option<String>,
    /// Start time: a recycled pid has a different one.
    pub starttime: u64,
}

impl Procfs {
    /// A /proc tree at `root`.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    /// The tree's root.
    pub fn root(&self) -> &Path {
        &self.root
    }

    fn read(&self, pid: Pid, file: &str) -> Option<String> {
        std::fs::read_to_string(self.root.join(pid.to_string()).join(file)).ok()
    }

    /// The start time of `pid`, if it is alive.
    pub fn starttime(&self, pid: Pid) -> Option<u64> {
        parse::parse_proc_stat(&self.read(pid, "stat")?).map(|s| s.starttime)
    }

    /// Reads one live process; `None` when it is gone, a zombie, or its
    /// files are unreadable. `v2` picks the cgroup line to use.
    pub fn entry(&self, pid: Pid, v2: bool, page_size: u64) -> Option<ProcEntry> {
        let stat = parse::parse_proc_stat(&self.read(pid, "stat")?)?;
        if matches!(stat.state, 'Z' | 'X' | 'x') {
            return None;
        }
        let mem = self
            .read(pid, "status")
            .map(|s| parse::parse_proc_status(&s))
            .unwrap_or_default();
        let adj = self
            .read(pid, "oom_score_adj")
            .and_then(|s| s.trim().parse::<i16>().ok())
            .filter(|a| (-1000..=1000).contains(a))
            .unwrap_or(0);
        let cgroup_path = self
            .read(pid, "cgroup")
            .and_then(|t| parse::parse_proc_cgroup(&t, v2));
        let pages = |kb: u64| kb.saturating_mul(1024) / page_size.max(1);
        let comm: String = stat.comm.chars().take(15).collect();
        Some(ProcEntry {
            info: TaskInfo {
                pid,
                tgid: pid,
                comm,
                cgroup: 0,
                oom_score_adj: adj,
                flags: stat.flags,
                rss_pages: pages(mem.rss_kb),
                rss_file_pages: pages(mem.rss_file_kb),
                rss_shmem_pages: pages(mem.rss_shmem_kb),
                total_vm_pages: pages(mem.vm_size_kb),
                swap_pages: pages(mem.swap_kb),
                pgtables_pages: pages(mem.pte_kb),
            },
            cgroup_path,
            starttime: stat.starttime,
        })
    }

    /// `/proc/meminfo`.
    pub fn meminfo(&self) -> Option<parse::MemInfo> {
        parse::parse_meminfo(&std::fs::read_to_string(self.root.join("meminfo")).ok()?)
    }

    /// `/proc/pressure/memory`.
    pub fn memory_pressure(&self) -> Option<parse::Pressure> {
        parse::parse_pressure(&std::fs::read_to_string(self.root.join("pressure/memory")).ok()?)
    }
}
