//! Decision records: one per step the engine takes, printed as JSON lines by
//! the simulator and logged by the daemon. Field names are part of the
//! interface (scripts parse them); README.md, "Decision records and logs".

use serde::Serialize;

/// A handler's verdict as the engine judged it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    /// Returned PROCESSED and memory was freed.
    Processed,
    /// Anything that did not free memory: FAILED, PROCESSED without freeing,
    /// an exhausted BACKOFF, a fault, a budget or time overrun.
    Failed,
    /// Returned BACKOFF and the engine honoured it.
    Backoff,
}

/// Who resolved an OOM ([`Record::Resolved`]). Serialized (and displayed)
/// as the string the records have always carried: `policy:NAME`, `kernel`,
/// `backoff`, `none`; scripts parse it.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum ResolvedBy {
    /// This policy instance's handler freed memory.
    Policy(String),
    /// The kernel's (or the host's) OOM killer did.
    Kernel,
    /// A handler's BACKOFF was honoured: a victim is already exiting.
    Backoff,
    /// Nothing could be done.
    Nothing,
}

impl std::fmt::Display for ResolvedBy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ResolvedBy::Policy(p) => write!(f, "policy:{p}"),
            ResolvedBy::Kernel => f.write_str("kernel"),
            ResolvedBy::Backoff => f.write_str("backoff"),
            ResolvedBy::Nothing => f.write_str("none"),
        }
    }
}

impl Serialize for ResolvedBy {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// Why the OOM was raised (`oc->constraint`, or a PSI policy's declaration).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Constraint {
    /// A memory cgroup hit its limit.
    Memcg,
    /// The whole machine is out of memory.
    None,
    /// A `bpf_psi_ops` policy called `bpf_out_of_memory`.
    Psi,
}

/// One decision record.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Record {
    /// A policy instance was attached.
    Attach {
        /// Instance name.
        policy: String,
        /// `bpf_oom_ops` or `bpf_psi_ops`.
        kind: String,
        /// Attach point.
        cgroup: String,
    },
    /// A policy instance was detached.
    Detach {
        /// Instance name.
        policy: String,
        /// Former attach point.
        cgroup: String,
        /// Why.
        reason: String,
    },
    /// An OOM event starts.
    Oom {
        /// The OOM'ing memcg, `None` for a global OOM.
        memcg: Option<String>,
        /// What kind of OOM.
        constraint: Constraint,
        /// `bpf_out_of_memory`'s constraint text.
        #[serde(skip_serializing_if = "Option::is_none")]
        text: Option<String>,
        /// `oc->totalpages`.
        totalpages: u64,
    },
    /// One handler ran.
    Handler {
        /// Instance name (`oc->bpf_handler_name`).
        policy: String,
        /// The instance's attach point.
        cgroup: String,
        /// The engine's verdict.
        ret: Verdict,
        /// `oc->bpf_memory_freed` after the handler.
        memory_freed: bool,
        /// Instructions executed, when the VM reports it.
        insns: Option<u64>,
        /// Why the verdict differs from the return value, if it does.
        #[serde(skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
    },
    /// A process was killed.
    Kill {
        /// Victim pid.
        pid: i32,
        /// Victim command.
        comm: String,
        /// Victim cgroup.
        cgroup: String,
        /// `policy:NAME` or `kernel`.
        by: String,
        /// The policy's message, or the kernel's reason.
        message: String,
    },
    /// A victim of a kill has exited (its memory is back): real hosts
    /// record it when the victim's pidfd reports the exit.
    Exit {
        /// Victim pid.
        pid: i32,
        /// Its cgroup when it was killed.
        cgroup: String,
        /// Milliseconds from the kill to the exit.
        after_ms: u64,
    },
    /// A kill a policy asked for was refused.
    KillRefused {
        /// Target pid.
        pid: i32,
        /// `policy:NAME`.
        by: String,
        /// Why.
        reason: String,
    },
    /// A policy raised a memory limit from its reserve.
    LimitRaised {
        /// The cgroup.
        cgroup: String,
        /// How much it was raised by.
        bytes: u64,
        /// The new limit.
        limit: u64,
        /// `policy:NAME`.
        by: String,
    },
    /// A handler returned BACKOFF.
    Backoff {
        /// Instance name.
        policy: String,
        /// Whether the engine waited instead of going on.
        honoured: bool,
        /// Why (victim exiting, budget left, budget spent).
        reason: String,
        /// Budget left after this decision.
        budget_left: u32,
    },
    /// No handler succeeded: the kernel's OOM killer runs.
    Fallback {
        /// Why.
        reason: String,
    },
    /// The OOM event ended.
    Resolved {
        /// `policy:NAME`, `kernel`, `backoff`, or `none` when nothing could be done.
        by: ResolvedBy,
    },
    /// A PSI trigger fired and its policy's handler ran.
    PsiEvent {
        /// Instance name.
        policy: String,
        /// Trigger cgroup (`/` for a system-wide trigger).
        cgroup: String,
    },
    /// A PSI policy created a trigger.
    PsiTrigger {
        /// Instance name.
        policy: String,
        /// Cgroup watched.
        cgroup: String,
        /// `some` or `full`.
        kind: String,
        /// Stall threshold per window, microseconds.
        threshold_us: u64,
        /// Window, microseconds.
        window_us: u64,
    },
    /// A cgroup below an instance went away and its offline handler ran.
    Offline {
        /// Instance name.
        policy: String,
        /// The removed cgroup.
        cgroup: String,
    },
    /// `bpf_printk` output.
    Printk {
        /// Instance name.
        policy: String,
        /// The formatted line.
        message: String,
    },
    /// A record a policy submitted to a `BPF_MAP_TYPE_RINGBUF` map
    /// (`bpf_ringbuf_submit`, `bpf_ringbuf_output`), read right after it
    /// was submitted, so it sits in order among the run's other records.
    /// Ring buffers carry no BTF type (the kernel's don't either), so the
    /// bytes are given as they are.
    Ringbuf {
        /// Instance name.
        policy: String,
        /// The ring buffer map's name.
        map: String,
        /// The record's bytes, lowercase hex, in memory order.
        data: String,
    },
    /// Something went wrong that a policy author should see (a program
    /// fault, a reference leak).
    Error {
        /// Instance name.
        policy: String,
        /// What.
        message: String,
    },
}

impl Record {
    /// The record as one JSON line (without the newline).
    pub fn to_json(&self) -> String {
        // Serializing plain strings, numbers and bools cannot fail.
        serde_json::to_string(self)
            .unwrap_or_else(|e| format!("{{\"event\":\"error\",\"message\":\"{e}\"}}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn field_names_are_the_documented_ones() {
        let r = Record::Handler {
            policy: "p".into(),
            cgroup: "/job".into(),
            ret: Verdict::Processed,
            memory_freed: true,
            insns: Some(42),
            reason: None,
        };
        assert_eq!(
            r.to_json(),
            r#"{"event":"handler","policy":"p","cgroup":"/job","ret":"processed","memory_freed":true,"insns":42}"#
        );
        let o = Record::Oom {
            memcg: None,
            constraint: Constraint::None,
            text: None,
            totalpages: 7,
        };
        assert_eq!(
            o.to_json(),
            r#"{"event":"oom","memcg":null,"constraint":"none","totalpages":7}"#
        );
        let rb = Record::Ringbuf {
            policy: "p".into(),
            map: "events".into(),
            data: "2a00".into(),
        };
        assert_eq!(
            rb.to_json(),
            r#"{"event":"ringbuf","policy":"p","map":"events","data":"2a00"}"#
        );
        let l = Record::LimitRaised {
            cgroup: "/a".into(),
            bytes: 1,
            limit: 2,
            by: "policy:x".into(),
        };
        assert!(l
            .to_json()
            .starts_with(r#"{"event":"limit_raised","cgroup":"/a","bytes":1"#));
    }
}

#[cfg(test)]
mod resolved_by_tests {
    use super::ResolvedBy;

    #[test]
    fn serializes_as_the_record_strings() {
        for (by, text) in [
            (
                ResolvedBy::Policy("largest_leaf".into()),
                "policy:largest_leaf",
            ),
            (ResolvedBy::Kernel, "kernel"),
            (ResolvedBy::Backoff, "backoff"),
            (ResolvedBy::Nothing, "none"),
        ] {
            assert_eq!(serde_json::to_value(&by).unwrap(), text);
            assert_eq!(by.to_string(), text);
        }
    }
}
