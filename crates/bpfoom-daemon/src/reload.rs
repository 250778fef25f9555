//! Live reload (`SIGHUP`, `bpfoom reload`): the config file is read again
//! and its `[[attach]]` entries are brought into effect without a restart.
//!
//! The rules, and why:
//! - only the instances that came from the config file are managed by a
//!   reload; instances attached with `bpfoom attach` (or `run --attach`)
//!   stay as they are: the config is the source of truth for its own
//!   entries, not for what an operator attached by hand;
//! - an entry whose object, instance name and options are byte for byte
//!   what is attached is left alone (its budgets and maps keep their
//!   state);
//! - new and changed entries are loaded and verified *before* anything is
//!   swapped; a rejected (or unreadable) one keeps the instance attached
//!   at its cgroup and the reply says why;
//! - a changed instance is swapped in one step of the single-threaded
//!   loop: detached and the new one attached with no OOM handled in
//!   between, and its cgroups are never unwatched, so an OOM in progress
//!   stays paused and is handled by the new instance;
//! - entries that disappeared from the file are detached (their cgroups
//!   are unwatched when no other instance covers them);
//! - the `[daemon]`, `[v2]` and `[global]` sections are not re-applied
//!   (sockets, hierarchies and thresholds are set up at start): a change
//!   there (and in `[[hook]]`) is reported as needing a restart.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::config::Config;
use crate::control::AttachOpts;

/// What a config entry asks for, with the object's bytes: two specs are
/// equal exactly when a reload has nothing to do for the entry.
#[derive(Clone, Debug, PartialEq)]
pub struct Spec {
    /// The object file (as configured).
    pub file: PathBuf,
    /// The struct_ops instance, when the object has several.
    pub instance: Option<String>,
    /// Budgets, reserve, globals and map entries.
    pub opts: AttachOpts,
    /// The object file's content when it was read.
    pub bytes: Vec<u8>,
}

impl Spec {
    /// Reads the object `file`.
    pub fn read(
        file: PathBuf,
        instance: Option<&str>,
        opts: &AttachOpts,
    ) -> Result<Spec, crate::InputError> {
        let bytes = match std::fs::read(&file) {
            Ok(b) => b,
            Err(source) => return Err(crate::InputError::ReadPolicy { file, source }),
        };
        Ok(Spec {
            file,
            instance: instance.map(str::to_string),
            opts: opts.clone(),
            bytes,
        })
    }
}

/// What a reload did to one instance.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// A new entry was verified and attached.
    Attached,
    /// A changed entry was verified and swapped in for the old instance.
    Replaced,
    /// An entry no longer in the file was detached.
    Detached,
    /// Nothing changed for the entry.
    Unchanged,
    /// The new or changed entry was refused (verifier, bad object, bad
    /// cgroup); whatever was attached there is kept.
    Rejected,
    /// A section the daemon cannot re-apply while running changed.
    NeedsRestart,
}

/// One line of a reload's reply.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Change {
    /// What happened.
    pub action: Action,
    /// The attach cgroup (or the config section, for `needs_restart`).
    pub cgroup: String,
    /// The instance name (the old one for `detached`), when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub policy: Option<String>,
    /// Why (the verifier's log for a rejection, what changed otherwise).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

impl Change {
    /// A change without a reason.
    pub fn new(action: Action, cgroup: &str, policy: Option<&str>) -> Change {
        Change {
            action,
            cgroup: cgroup.to_string(),
            policy: policy.map(str::to_string),
            reason: None,
        }
    }

    /// The same change with a reason.
    pub fn because(mut self, why: impl Into<String>) -> Change {
        self.reason = Some(why.into());
        self
    }

    /// One human line: `replaced largest_leaf at /job (object changed)`.
    pub fn line(&self) -> String {
        let name = self.policy.as_deref().unwrap_or("?");
        let mut s = match self.action {
            Action::Attached => format!("attached {name} to {}", self.cgroup),
            Action::Replaced => format!("replaced {name} at {}", self.cgroup),
            Action::Detached => format!("detached {name} from {}", self.cgroup),
            Action::Unchanged => format!("unchanged {name} at {}", self.cgroup),
            Action::Rejected => format!("rejected the entry for {}", self.cgroup),
            Action::NeedsRestart => format!("[{}] changed: needs a restart", self.cgroup),
        };
        if let Some(r) = &self.reason {
            if r.contains('\n') {
                s.push_str(":\n");
                s.push_str(r.trim_end());
            } else {
                s.push_str(&format!(" ({r})"));
            }
        }
        s
    }
}

/// What changed between two specs, for the reply.
pub fn what_changed(old: &Spec, new: &Spec) -> String {
    let mut v = Vec::new();
    if old.file != new.file {
        v.push("policy file");
    } else if old.bytes != new.bytes {
        v.push("object changed");
    }
    if old.instance != new.instance {
        v.push("instance");
    }
    if old.opts.maps != new.opts.maps {
        v.push("maps");
    }
    if old.opts.globals != new.opts.globals {
        v.push("globals");
    }
    let budgets = |o: &AttachOpts| (o.backoff_budget, o.backoff_timeout_ms, o.limit_reserve);
    if budgets(&old.opts) != budgets(&new.opts) {
        v.push("options");
    }
    v.join(", ")
}

/// The sections a running daemon does not re-apply, when they changed.
pub fn restart_sections(old: &Config, new: &Config) -> Vec<Change> {
    let mut v = Vec::new();
    if old.daemon != new.daemon {
        v.push(Change::new(Action::NeedsRestart, "daemon", None));
    }
    if old.v2 != new.v2 {
        v.push(Change::new(Action::NeedsRestart, "v2", None));
    }
    if old.global != new.global {
        v.push(Change::new(Action::NeedsRestart, "global", None));
    }
    if old.hook != new.hook {
        v.push(Change::new(Action::NeedsRestart, "hook", None));
    }
    v
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn spec(bytes: &[u8]) -> Spec {
        Spec {
            file: "/p.bpf.o".into(),
            instance: None,
            opts: AttachOpts::default(),
            bytes: bytes.to_vec(),
        }
    }

    #[test]
    fn changes_are_named() {
        let a = spec(b"1");
        assert_eq!(what_changed(&a, &spec(b"2")), "object changed");
        let mut b = spec(b"1");
        b.opts.backoff_budget = Some(1);
        b.opts
            .globals
            .insert("g".into(), bpfoom_engine::MapValue::Int(2));
        assert_eq!(what_changed(&a, &b), "globals, options");
        assert_eq!(
            Change::new(Action::Replaced, "/job", Some("ll"))
                .because("object changed")
                .line(),
            "replaced ll at /job (object changed)"
        );
        assert_eq!(
            Change::new(Action::Rejected, "/job", None)
                .because("0: R0 !read_ok\nprocessed 1")
                .line(),
            "rejected the entry for /job:\n0: R0 !read_ok\nprocessed 1"
        );
    }

    #[test]
    fn restart_sections_are_reported() {
        let a = Config::parse("[daemon]\ninsn_budget = 5\n", "a").unwrap();
        let b = Config::parse("[daemon]\ninsn_budget = 6\n", "b").unwrap();
        let v = restart_sections(&a, &b);
        assert_eq!(v.len(), 1);
        assert_eq!(v[0].line(), "[daemon] changed: needs a restart");
        assert!(restart_sections(&a, &a).is_empty());
    }
}
