//! The state every program run shares, and what a kfunc hands back to the
//! engine (an OOM to raise, a PSI trigger): the values below both the
//! kfuncs and the handler chain, so neither has to import the other.

use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

use crate::host::{CgroupId, Host, Pid};
use crate::record::{Constraint, Record};

/// Engine-wide mutable state shared by every run.
#[derive(Default)]
pub(crate) struct State {
    /// Processes killed by a policy or the kernel, until they are gone.
    pub victims: BTreeMap<Pid, CgroupId>,
    /// Every record so far (also passed to [`Host::record`]).
    pub records: Vec<Record>,
    /// References and iterators programs failed to release, in total.
    pub leaked_refs: u64,
}

impl State {
    pub(crate) fn emit<H: Host + ?Sized>(&mut self, host: &mut H, r: Record) {
        host.record(&r);
        self.records.push(r);
    }
}

/// An OOM event to handle.
pub(crate) struct OomRequest {
    pub memcg: Option<CgroupId>,
    pub constraint: Constraint,
    pub text: Option<String>,
    pub order: i32,
}

/// A PSI trigger created by `bpf_psi_create_trigger`.
pub(crate) struct Trigger {
    pub cg: CgroupId,
    /// The id the program passed (0 for system-wide), echoed in `t->cgroup_id`.
    pub id_arg: u64,
    pub resource: u32,
    pub full: bool,
    pub threshold_us: u64,
    pub window_us: u64,
    samples: VecDeque<(Duration, u64)>,
    last_fire: Option<Duration>,
}

impl Trigger {
    pub(crate) fn new(
        cg: CgroupId,
        id_arg: u64,
        resource: u32,
        full: bool,
        threshold_us: u64,
        window_us: u64,
    ) -> Self {
        Self {
            cg,
            id_arg,
            resource,
            full,
            threshold_us,
            window_us,
            samples: VecDeque::new(),
            last_fire: None,
        }
    }

    /// Adds a stall sample; true when the trigger fires. Like the kernel's
    /// PSI triggers: fires when the stall within the last window reaches the
    /// threshold, at most once per window.
    pub(crate) fn add(&mut self, now: Duration, stall_us: u64) -> bool {
        let win = Duration::from_micros(self.window_us);
        self.samples.push_back((now, stall_us));
        while self
            .samples
            .front()
            .is_some_and(|&(t, _)| now.saturating_sub(t) >= win)
        {
            self.samples.pop_front();
        }
        let total: u64 = self.samples.iter().map(|s| s.1).sum();
        let rested = self.last_fire.is_none_or(|l| now.saturating_sub(l) >= win);
        if total >= self.threshold_us && rested {
            self.last_fire = Some(now);
            return true;
        }
        false
    }
}
