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
