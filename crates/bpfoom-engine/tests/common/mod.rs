//! A scripted host for engine tests: a root cgroup (1) and one child,
//! `/job` (2), holding the given processes; it records every kill.

#![allow(dead_code)] // each test file uses part of it

use std::time::Duration;

use bpfoom_abi::stats::StatIndex;
use bpfoom_engine::{CgroupId, Host, HostError, KernelOom, MemcgInfo, Pid, TaskInfo};

/// The host. `Default` is a machine with no processes.
#[derive(Default)]
pub struct TestHost {
    /// Processes of `/job`: (pid, oom_score_adj).
    pub tasks: Vec<(Pid, i16)>,
    /// Whole-cgroup kills asked for: (cgroup, pids).
    pub cgroup_kills: Vec<(CgroupId, Vec<Pid>)>,
    /// Process kills asked for.
    pub task_kills: Vec<Pid>,
    /// What `oom_resolved` answers after a handler ran.
    pub resolved: bool,
}

impl Host for TestHost {
    fn root(&self) -> CgroupId {
        1
    }
    fn parent(&self, cg: CgroupId) -> Option<CgroupId> {
        (cg == 2).then_some(1)
    }
    fn children(&self, cg: CgroupId) -> Vec<CgroupId> {
        if cg == 1 {
            vec![2]
        } else {
            vec![]
        }
    }
    fn path(&self, cg: CgroupId) -> Option<String> {
        match cg {
            1 => Some("/".into()),
            2 => Some("/job".into()),
            _ => None,
        }
    }
    fn memcg(&self, _cg: CgroupId) -> Option<MemcgInfo> {
        None
    }
    fn page_state(&self, _cg: CgroupId, _item: &StatIndex) -> Option<u64> {
        None
    }
    fn vm_event(&self, _cg: CgroupId, _item: &StatIndex) -> Option<u64> {
        None
    }
    fn memory_event(&self, _cg: CgroupId, _item: &StatIndex) -> Option<u64> {
        None
    }
    fn tasks(&self, cg: CgroupId) -> Vec<Pid> {
        if cg == 2 {
            self.tasks.iter().map(|t| t.0).collect()
        } else {
            vec![]
        }
    }
    fn task(&self, pid: Pid) -> Option<TaskInfo> {
        let &(pid, adj) = self.tasks.iter().find(|t| t.0 == pid)?;
        Some(TaskInfo {
            pid,
            tgid: pid,
            comm: format!("t{pid}"),
            cgroup: 2,
            oom_score_adj: adj,
            flags: 0,
            rss_pages: 10,
            rss_file_pages: 0,
            rss_shmem_pages: 0,
            total_vm_pages: 10,
            swap_pages: 0,
            pgtables_pages: 0,
        })
    }
    fn kill(&mut self, pid: Pid) -> Result<(), HostError> {
        if self.task(pid).is_none() {
            return Err(HostError::new(3, format!("no process {pid}")));
        }
        self.task_kills.push(pid);
        Ok(())
    }
    fn kill_cgroup(&mut self, cg: CgroupId, pids: &[Pid]) -> Result<(), HostError> {
        self.cgroup_kills.push((cg, pids.to_vec()));
        Ok(())
    }
    fn set_limit(&mut self, _cg: CgroupId, _bytes: u64) -> Result<(), HostError> {
        Ok(())
    }
    fn total_pages(&self) -> u64 {
        1 << 20
    }
    fn now(&self) -> Duration {
        Duration::ZERO
    }
    fn wait_for_release(&mut self, _scope: Option<CgroupId>, _timeout: Duration) -> bool {
        false
    }
    fn oom_resolved(&self, _scope: Option<CgroupId>) -> bool {
        self.resolved
    }
    fn kernel_oom(&mut self, _scope: Option<CgroupId>, _totalpages: u64) -> KernelOom {
        KernelOom::NoVictim
    }
}
