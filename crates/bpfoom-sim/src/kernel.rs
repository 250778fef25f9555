//! A model of the Linux OOM killer's victim selection, used as the
//! simulator's fallback when no BPF handler frees memory.
//!
//! What it models (mm/oom_kill.c, as documented):
//! - Scope: the tasks of the OOM'ing memcg's subtree, or every task for a
//!   global OOM. Memcgs are walked in pre-order and tasks in pid order;
//!   on equal scores the later task wins, as the kernel's `>=` comparison
//!   makes it.
//! - If a task in scope is already exiting (an earlier victim), selection
//!   is aborted and the kernel waits for it instead of killing another.
//! - Score: [`bpfoom_engine::host::oom_badness`]:
//!   `rss + swap + pagetables` pages `+ oom_score_adj * totalpages / 1000`;
//!   oom_score_adj -1000, kernel threads and init are never chosen.
//! - `memory.oom.group`: if the victim's memcg or an ancestor up to the
//!   OOM'ing memcg has it set, every task of the highest such memcg dies
//!   (except oom_score_adj -1000 tasks).

use bpfoom_engine::host::{
    oom_badness, oom_group_of, subtree_pre, CgroupId, Host, Pid, PF_EXITING,
};

/// The kernel's decision.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Choice {
    /// Kill this task; if `group` is set, every task of that memcg subtree.
    Kill {
        /// The chosen task.
        victim: Pid,
        /// Its score.
        points: i64,
        /// The `memory.oom.group` memcg whose tasks all die.
        group: Option<CgroupId>,
    },
    /// A task in scope is exiting: wait for it.
    Wait,
    /// Nothing eligible.
    None,
}

/// Chooses the kernel's victim for an OOM in `scope` (`None` = global).
pub fn choose(host: &impl Host, scope: Option<CgroupId>, totalpages: u64) -> Choice {
    let top = scope.unwrap_or_else(|| host.root());
    let mut best: Option<(Pid, i64)> = None;
    for cg in subtree_pre(host, top) {
        for pid in host.tasks(cg) {
            let Some(t) = host.task(pid) else { continue };
            if t.flags & PF_EXITING != 0 {
                return Choice::Wait;
            }
            let Some(points) = oom_badness(&t, totalpages) else {
                continue;
            };
            if best.is_none_or(|(_, b)| points >= b) {
                best = Some((pid, points));
            }
        }
    }
    match best {
        Some((victim, points)) => {
            let cg = host.task(victim).map_or(top, |t| t.cgroup);
            Choice::Kill {
                victim,
                points,
                group: oom_group_of(host, cg, scope),
            }
        }
        None => Choice::None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{SimHost, SimProc};
    use bpfoom_engine::KernelOom;
    use std::time::Duration;

    fn add(h: &mut SimHost, pid: Pid, cg: CgroupId, rss_mb: u64, adj: i16) {
        h.add_process(SimProc {
            pid,
            comm: format!("p{pid}"),
            cgroup: cg,
            rss: rss_mb << 20,
            rss_file: 0,
            rss_shmem: 0,
            file: 0,
            swap: 0,
            oom_score_adj: adj,
            kthread: false,
            exiting_until: None,
        })
        .unwrap();
    }

    /// totalpages 20480 (80M). Scores by hand:
    ///   1: 10M = 2560 pages, adj 0                      -> 2560
    ///   2: 8M = 2048 pages, adj 500: 2048 + 500*20480/1000 = 2048 + 10240 = 12288
    ///   3: 1M = 256 pages                                -> 256
    ///   4: 30M, adj -1000                                -> never
    ///   5: 10M, adj 0                                    -> 2560 (ties with 1)
    fn tree() -> (SimHost, CgroupId, CgroupId, CgroupId) {
        let mut h = SimHost::new(8 << 30, Duration::ZERO);
        let job = h.mkdir("/job", Some(80 << 20), false).unwrap();
        let a = h.mkdir("/job/a", None, false).unwrap();
        let g = h.mkdir("/job/g", None, true).unwrap();
        add(&mut h, 1, a, 10, 0);
        add(&mut h, 2, g, 8, 500);
        add(&mut h, 3, g, 1, 0);
        add(&mut h, 4, g, 30, -1000);
        add(&mut h, 5, a, 10, 0);
        (h, job, a, g)
    }

    #[test]
    fn highest_badness_wins_and_oom_group_spreads() {
        let (mut h, job, _, g) = tree();
        assert_eq!(
            choose(&h, Some(job), 20480),
            Choice::Kill {
                victim: 2,
                points: 12288,
                group: Some(g)
            }
        );
        match h.kernel_oom(Some(job), 20480) {
            KernelOom::Killed(t) => {
                assert_eq!(t.iter().map(|t| t.pid).collect::<Vec<_>>(), vec![2, 3]);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn ties_go_to_the_later_task_and_exiting_tasks_make_it_wait() {
        let (mut h, _, a, g) = tree();
        assert_eq!(
            choose(&h, Some(a), 20480),
            Choice::Kill {
                victim: 5,
                points: 2560,
                group: None
            }
        );
        h.kill(5).unwrap();
        assert_eq!(choose(&h, Some(a), 20480), Choice::Wait);
        // A global OOM looks at every task: 5 is exiting, so it waits too.
        assert_eq!(choose(&h, None, 2 << 20), Choice::Wait);
        h.advance(Duration::ZERO);
        // Global: totalpages 2097152 (8G); 2 scores 2048 + 1048576.
        assert_eq!(
            choose(&h, None, 2 << 20),
            Choice::Kill {
                victim: 2,
                points: 2048 + 1_048_576,
                group: Some(g)
            }
        );
    }

    #[test]
    fn nothing_eligible() {
        let mut h = SimHost::new(8 << 30, Duration::ZERO);
        let job = h.mkdir("/job", Some(80 << 20), false).unwrap();
        add(&mut h, 7, job, 10, -1000);
        assert_eq!(choose(&h, Some(job), 20480), Choice::None);
        assert_eq!(h.kernel_oom(Some(job), 20480), KernelOom::NoVictim);
    }
}
