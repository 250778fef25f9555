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

    /// A thread of `pid` other than the leader that has not exited.
    fn live_thread(&self, pid: Pid) -> Option<Pid> {
        let rd = std::fs::read_dir(self.root.join(pid.to_string()).join("task")).ok()?;
        rd.flatten()
            .filter_map(|e| e.file_name().to_str()?.parse::<Pid>().ok())
            .filter(|&tid| tid != pid)
            .find(|tid| {
                self.read(pid, &format!("task/{tid}/stat"))
                    .and_then(|t| parse::parse_proc_stat(&t))
                    .is_some_and(|s| !matches!(s.state, 'Z' | 'X' | 'x'))
            })
    }

    /// Reads one live process; `None` when it is gone, a zombie, or its
    /// files are unreadable. `v2` picks the cgroup line to use.
    ///
    /// A thread-group leader that has exited while another of its threads
    /// still runs (e.g. blocked in uninterruptible sleep after a SIGKILL:
    /// fault 1 of issue 13) reads as a zombie, yet the process is alive and
    /// its memory is still charged: it is reported with the leader's stat
    /// (state, `PF_EXITING` flag) and the live thread's memory and cgroup,
    /// as the kernel's `find_lock_task_mm()` looks past an exited leader.
    pub fn entry(&self, pid: Pid, v2: bool, page_size: u64) -> Option<ProcEntry> {
        let stat = parse::parse_proc_stat(&self.read(pid, "stat")?)?;
        let mut dir = String::new();
        if matches!(stat.state, 'Z' | 'X' | 'x') {
            dir = format!("task/{}/", self.live_thread(pid)?);
        }
        let mem = self
            .read(pid, &format!("{dir}status"))
            .map(|s| parse::parse_proc_status(&s))
            .unwrap_or_default();
        let adj = self
            .read(pid, "oom_score_adj")
            .and_then(|s| s.trim().parse::<i16>().ok())
            .filter(|a| (-1000..=1000).contains(a))
            .unwrap_or(0);
        let cgroup_path = self
            .read(pid, &format!("{dir}cgroup"))
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

#[cfg(test)]
mod tests {
    use super::*;

    fn stat_line(pid: Pid, state: char) -> String {
        // Fields 3.. : state ppid pgrp session tty tpgid flags(9) ... 22 is
        // the start time.
        format!("{pid} (victim) {state} 1 1 1 0 -1 4194560 0 0 0 0 0 0 0 0 20 0 2 0 777 0 0\n")
    }

    fn write(root: &Path, rel: &str, body: &str) {
        let p = root.join(rel);
        std::fs::create_dir_all(p.parent().unwrap_or(root)).ok();
        std::fs::write(p, body).ok();
    }

    #[test]
    fn an_exited_leader_with_a_live_thread_is_alive() {
        let root = std::env::temp_dir().join(format!("bpfoom-procfs-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        write(&root, "900/stat", &stat_line(900, 'Z'));
        write(&root, "900/status", "Name:\tvictim\n");
        write(&root, "900/oom_score_adj", "1000\n");
        write(&root, "900/task/900/stat", &stat_line(900, 'Z'));
        write(&root, "900/task/901/stat", &stat_line(901, 'D'));
        write(
            &root,
            "900/task/901/status",
            "VmSize:\t 30000 kB\nRssAnon:\t 20480 kB\nRssFile:\t 0 kB\nRssShmem:\t 0 kB\n",
        );
        write(&root, "900/task/901/cgroup", "5:memory:/job\n");
        let p = Procfs::new(&root);
        let e = p.entry(900, false, 4096).expect("alive through thread 901");
        assert_eq!(e.info.rss_pages, 5120);
        assert_eq!(e.info.oom_score_adj, 1000);
        assert_eq!(e.cgroup_path.as_deref(), Some("/job"));
        // Once the last thread has exited too, the process is gone.
        write(&root, "900/task/901/stat", &stat_line(901, 'Z'));
        assert_eq!(p.entry(900, false, 4096), None);
        let _ = std::fs::remove_dir_all(&root);
    }
}
