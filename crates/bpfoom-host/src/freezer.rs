//! Thawing an OOM victim frozen by the cgroup v1 freezer, as the kernel's
//! `mark_oom_victim()` does (`__thaw_task()`; an OOM victim is exempt from
//! freezing from then on). Without it a SIGKILLed victim in a frozen v1
//! freezer cgroup never exits: the kill stays pending while the memcg waits.
//!
//! Userspace cannot thaw one task of a frozen v1 cgroup, so the victim is
//! moved to its nearest freezer ancestor that is not frozen (the hierarchy
//! root never is); migrating into a thawed cgroup thaws the task. Only the
//! victim moves, and only once it has been sent SIGKILL: the frozen cgroup
//! and the rest of its tasks stay as their owner left them. cgroup v2 needs
//! none of this: a fatal signal takes a task out of the v2 freezer.

use std::io;
use std::path::{Path, PathBuf};

use crate::procfs::Procfs;

/// The v1 freezer hierarchy's mount point, from `mountinfo`.
fn freezer_mount(proc_root: &Path) -> Option<PathBuf> {
    let text = std::fs::read_to_string(proc_root.join("self/mountinfo")).ok()?;
    text.lines().find_map(|l| {
        let (left, right) = l.split_once(" - ")?;
        let mut r = right.split_whitespace();
        let (fstype, _src, opts) = (r.next()?, r.next()?, r.next()?);
        let is_freezer = fstype == "cgroup" && opts.split(',').any(|o| o == "freezer");
        let mount = left.split_whitespace().nth(4)?;
        is_freezer.then(|| PathBuf::from(mount))
    })
}

/// The task's v1 freezer cgroup path (relative to the mount), if any.
fn freezer_cgroup(proc_root: &Path, pid: i32) -> Option<String> {
    let text = std::fs::read_to_string(proc_root.join(format!("{pid}/cgroup"))).ok()?;
    text.lines().find_map(|l| {
        let mut f = l.splitn(3, ':');
        let (_, ctl, path) = (f.next()?, f.next()?, f.next()?);
        ctl.split(',')
            .any(|c| c == "freezer")
            .then(|| path.to_string())
    })
}

fn frozen(dir: &Path) -> bool {
    std::fs::read_to_string(dir.join("freezer.state"))
        .is_ok_and(|s| matches!(s.trim(), "FROZEN" | "FREEZING"))
}

/// Thaws `pid` if it sits in a frozen (or freezing) v1 freezer cgroup, by
/// moving it to the nearest ancestor that is not. Returns whether it moved.
pub fn thaw_victim(proc: &Procfs, pid: i32) -> io::Result<bool> {
    let root = proc.root();
    let (Some(mount), Some(rel)) = (freezer_mount(root), freezer_cgroup(root, pid)) else {
        return Ok(false);
    };
    let rel = rel.trim_start_matches('/');
    if rel.is_empty() {
        return Ok(false);
    }
    let dir = mount.join(rel);
    if !frozen(&dir) {
        return Ok(false);
    }
    let mut target = dir.parent();
    while let Some(t) = target {
        if !t.starts_with(&mount) {
            break;
        }
        if !frozen(t) {
            std::fs::write(t.join("cgroup.procs"), pid.to_string())?;
            return Ok(true);
        }
        target = t.parent();
    }
    Ok(false)
}
