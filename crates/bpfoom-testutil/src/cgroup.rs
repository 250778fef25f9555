//! Real cgroups for tests and benchmarks: a tree below this process's own
//! cgroup of one controller (cgroup v1 or v2), removed bottom-up when it is
//! dropped, also when the test panics.
//!
//! Only what lies inside the tree is ever touched: its own directories'
//! files, and the processes its own `cgroup.procs` list when it is removed.

use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The cgroup file system version of a hierarchy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Version {
    /// A v1 hierarchy of one controller (`/sys/fs/cgroup/memory`, ...).
    V1,
    /// The unified hierarchy.
    V2,
}

/// What went wrong setting up or changing a cgroup.
#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    /// Real-cgroup work needs root.
    #[error("not root")]
    NotRoot,
    /// The controller's v1 hierarchy is not mounted where expected.
    #[error("no cgroup v1 {controller} controller at {}", root.display())]
    NoController {
        /// The controller (`memory`, `freezer`).
        controller: String,
        /// Where it was looked for.
        root: PathBuf,
    },
    /// This process is in no cgroup of the controller.
    #[error("/proc/self/cgroup has no {0} line")]
    NotMember(String),
    /// A cgroupfs operation failed.
    #[error("{what} {}: {source}", path.display())]
    Io {
        /// The operation (`mkdir`, `write "max" to`).
        what: String,
        /// The directory or file.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
}

/// A mounted hierarchy, and where this process sits in it.
#[derive(Clone, Debug)]
pub struct Hierarchy {
    /// The mount point.
    pub root: PathBuf,
    /// v1 or v2.
    pub version: Version,
    /// The controller the tree is for: on v2, enabled in a parent's
    /// `cgroup.subtree_control` before a child is made.
    pub controller: String,
    /// This process's cgroup, relative to `root` and `/`-prefixed.
    pub own: String,
}

impl Hierarchy {
    /// The v1 hierarchy of `controller` at `/sys/fs/cgroup/<controller>`
    /// with this process's cgroup in it; needs root, and `probe` (a file
    /// every cgroup of the controller has) to exist at the root.
    pub fn v1(controller: &str, probe: &str) -> Result<Hierarchy, CgroupError> {
        if !crate::is_root() {
            return Err(CgroupError::NotRoot);
        }
        let root = Path::new("/sys/fs/cgroup").join(controller);
        if !root.join(probe).exists() {
            return Err(CgroupError::NoController {
                controller: controller.into(),
                root,
            });
        }
        let own = own_cgroup(Version::V1, controller)
            .ok_or_else(|| CgroupError::NotMember(controller.into()))?;
        Ok(Hierarchy {
            root,
            version: Version::V1,
            controller: controller.into(),
            own,
        })
    }

    /// The v1 memory hierarchy ([`Hierarchy::v1`] of `memory`).
    pub fn v1_memory() -> Result<Hierarchy, CgroupError> {
        Hierarchy::v1("memory", "memory.oom_control")
    }

    /// A hierarchy whose place is known rather than looked up (the VM
    /// guest's cgroup2 mount, where the tests own the whole machine and
    /// work below the root).
    pub fn fixed(root: &Path, version: Version, controller: &str, own: &str) -> Hierarchy {
        Hierarchy {
            root: root.to_path_buf(),
            version,
            controller: controller.into(),
            own: format!("/{}", own.trim_matches('/')),
        }
    }

    /// [`Hierarchy::v1_memory`], or `None` after a [`crate::require`] that
    /// names `test` and why (a failure under CI, a printed skip otherwise).
    #[track_caller]
    pub fn v1_memory_or_skip(test: &str) -> Option<Hierarchy> {
        match Hierarchy::v1_memory() {
            Ok(h) => Some(h),
            Err(e) => {
                crate::require(false, &format!("{test}: {e}"));
                None
            }
        }
    }

    /// The cgroup at `rel` (relative to the root), not created.
    pub fn cgroup(&self, rel: &str) -> Cgroup {
        let rel = format!("/{}", rel.trim_matches('/'));
        Cgroup {
            dir: self.root.join(rel.trim_start_matches('/')),
            rel,
            version: self.version,
            controller: self.controller.clone(),
        }
    }
}

/// This process's cgroup: on v1 the `/proc/self/cgroup` line whose
/// controllers include `controller`, on v2 the `0::` line.
pub fn own_cgroup(version: Version, controller: &str) -> Option<String> {
    let text = std::fs::read_to_string("/proc/self/cgroup").ok()?;
    text.lines().find_map(|l| {
        let mut f = l.splitn(3, ':');
        let (id, ctl, path) = (f.next()?, f.next()?, f.next()?);
        let hit = match version {
            Version::V1 => ctl.split(',').any(|c| c == controller),
            Version::V2 => id == "0" && ctl.is_empty(),
        };
        hit.then(|| path.to_string())
    })
}

/// One cgroup directory: a handle, creating or removing nothing by itself.
#[derive(Clone, Debug)]
pub struct Cgroup {
    /// Absolute cgroupfs path.
    pub dir: PathBuf,
    /// Path relative to the hierarchy root, `/`-prefixed (what the daemon
    /// takes).
    pub rel: String,
    version: Version,
    controller: String,
}

impl Cgroup {
    /// A child's handle (not created).
    pub fn at(&self, name: &str) -> Cgroup {
        let name = name.trim_matches('/');
        if name.is_empty() {
            return self.clone();
        }
        Cgroup {
            dir: self.dir.join(name),
            rel: format!("{}/{name}", self.rel.trim_end_matches('/')),
            version: self.version,
            controller: self.controller.clone(),
        }
    }

    /// Creates the child `name` (and missing parents below this one); on
    /// v2 first enables the controller for this cgroup's children.
    pub fn child(&self, name: &str) -> Result<Cgroup, CgroupError> {
        if self.version == Version::V2 {
            self.write("cgroup.subtree_control", &format!("+{}", self.controller))?;
        }
        let c = self.at(name);
        c.create()?;
        Ok(c)
    }

    /// Creates this cgroup's directory (and missing parents); one that
    /// exists is left as it is.
    pub fn create(&self) -> Result<(), CgroupError> {
        std::fs::create_dir_all(&self.dir).map_err(|source| CgroupError::Io {
            what: "mkdir".into(),
            path: self.dir.clone(),
            source,
        })
    }

    /// Writes a control file.
    pub fn write(&self, file: &str, val: &str) -> Result<(), CgroupError> {
        let path = self.dir.join(file);
        std::fs::write(&path, val).map_err(|source| CgroupError::Io {
            what: format!("write {val:?} to"),
            path,
            source,
        })
    }

    /// Reads a control file ("" when unreadable: a file a test expects is
    /// checked by its value).
    pub fn read(&self, file: &str) -> String {
        std::fs::read_to_string(self.dir.join(file)).unwrap_or_default()
    }

    /// A `key value` entry of a flat-keyed file (`memory.events`,
    /// `memory.oom_control`, ...).
    pub fn key(&self, file: &str, key: &str) -> Option<u64> {
        self.read(file).lines().find_map(|l| {
            let (k, v) = l.split_once(' ')?;
            (k == key).then(|| v.trim().parse().ok()).flatten()
        })
    }

    /// A control file holding one number.
    pub fn value(&self, file: &str) -> Option<u64> {
        self.read(file).trim().parse().ok()
    }

    /// The pids in `cgroup.procs`.
    pub fn procs(&self) -> Vec<i32> {
        self.read("cgroup.procs")
            .lines()
            .filter_map(|l| l.trim().parse().ok())
            .collect()
    }

    /// The cgroup id (its directory's inode, on cgroup2).
    pub fn id(&self) -> u64 {
        use std::os::unix::fs::MetadataExt;
        std::fs::metadata(&self.dir).map_or(0, |m| m.ino())
    }

    /// The `some`/`full` total stall (µs) of `memory.pressure`.
    pub fn stall_us(&self, kind: &str) -> u64 {
        self.read("memory.pressure")
            .lines()
            .find(|l| l.starts_with(kind))
            .and_then(|l| l.split_whitespace().find_map(|f| f.strip_prefix("total=")))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    }

    /// Un-pauses, kills and waits out every process in this cgroup and the
    /// ones below (no other), then removes the directories bottom-up; best
    /// effort, bounded to about 10 s.
    pub fn remove(&self) {
        let mut dirs = Vec::new();
        dirs_post_order(&self.dir, &mut dirs);
        // Release first, so nothing stays stuck in an OOM wait or a freezer
        // where even SIGKILL does not end it.
        let release: &[(&str, &str)] = match self.version {
            Version::V1 => &[("memory.oom_control", "0"), ("freezer.state", "THAWED")],
            Version::V2 => &[("cgroup.freeze", "0")],
        };
        for d in &dirs {
            for (file, val) in release {
                let p = d.join(file);
                if p.exists() {
                    let _ = std::fs::write(p, val);
                }
            }
        }
        if self.version == Version::V2 && self.dir.join("cgroup.kill").exists() {
            let _ = std::fs::write(self.dir.join("cgroup.kill"), "1");
        }
        kill_tasks(&dirs, Duration::from_secs(10));
        for d in &dirs {
            for _ in 0..100 {
                match std::fs::remove_dir(d) {
                    Err(e) if e.kind() != io::ErrorKind::NotFound => {
                        std::thread::sleep(Duration::from_millis(20))
                    }
                    _ => break,
                }
            }
        }
    }

    /// SIGKILLs every process in this cgroup and the ones below and waits
    /// (up to `timeout`) until they are gone; the directories stay.
    pub fn kill_tasks(&self, timeout: Duration) {
        let mut dirs = Vec::new();
        dirs_post_order(&self.dir, &mut dirs);
        kill_tasks(&dirs, timeout);
    }
}

fn dirs_post_order(dir: &Path, out: &mut Vec<PathBuf>) {
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                dirs_post_order(&e.path(), out);
            }
        }
    }
    out.push(dir.to_path_buf());
}

fn kill_tasks(dirs: &[PathBuf], timeout: Duration) {
    let deadline = Instant::now() + timeout;
    loop {
        let mut any = false;
        for d in dirs {
            let procs = std::fs::read_to_string(d.join("cgroup.procs")).unwrap_or_default();
            for pid in procs.lines().filter_map(|l| l.trim().parse().ok()) {
                any = true;
                let _ = crate::signal(pid, libc::SIGKILL);
            }
        }
        if !any || Instant::now() > deadline {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A cgroup subtree of the test's own: dropping it removes it
/// ([`Cgroup::remove`]), also when the test panics.
///
/// Paths are relative to the top (`""` is the top itself), the way the
/// real-cgroup tests name their cgroups.
#[derive(Debug)]
pub struct CgroupTree {
    /// The hierarchy root (mount point).
    pub root: PathBuf,
    /// Absolute path of the subtree's top.
    pub top: PathBuf,
    /// The top relative to the hierarchy root, "/"-prefixed.
    pub top_rel: String,
    cg: Cgroup,
}

impl CgroupTree {
    /// Creates the cgroup `rel` below the hierarchy's root, fresh: a
    /// leftover of the same name (a crashed earlier run) is removed first.
    /// Private: only a name unique to this process ([`CgroupTree::below_own`])
    /// makes removing a leftover safe.
    fn create(h: &Hierarchy, rel: &str) -> Result<CgroupTree, CgroupError> {
        let cg = h.cgroup(rel);
        if cg.dir.exists() {
            cg.remove();
        }
        let rel = rel.trim_matches('/');
        let (parent_rel, name) = rel.rsplit_once('/').unwrap_or(("", rel));
        let parent = h.cgroup(parent_rel);
        parent.create()?;
        let cg = parent.child(name)?;
        Ok(CgroupTree {
            root: h.root.clone(),
            top: cg.dir.clone(),
            top_rel: cg.rel.clone(),
            cg,
        })
    }

    /// Creates `<own cgroup>/bpfoom-<name>-<pid>`, the name unique to this
    /// process (so it is ours even if an earlier run left it).
    pub fn below_own(h: &Hierarchy, name: &str) -> Result<CgroupTree, CgroupError> {
        let rel = format!(
            "{}/bpfoom-{name}-{}",
            h.own.trim_end_matches('/'),
            std::process::id()
        );
        CgroupTree::create(h, &rel)
    }

    /// [`CgroupTree::below_own`] with a v1 `memory.limit_in_bytes` of
    /// `limit` at the top; panics on failure (test set-up).
    pub fn v1_memory(h: &Hierarchy, name: &str, limit: u64) -> CgroupTree {
        let t = CgroupTree::below_own(h, name).unwrap_or_else(|e| panic!("{e}"));
        t.write("", "memory.limit_in_bytes", &limit.to_string());
        t
    }

    /// The top cgroup.
    pub fn top(&self) -> &Cgroup {
        &self.cg
    }

    /// A cgroup of the tree (path relative to the top).
    pub fn cgroup(&self, rel: &str) -> Cgroup {
        self.cg.at(rel)
    }

    /// Absolute path of a cgroup of the tree.
    pub fn dir(&self, rel: &str) -> PathBuf {
        self.cgroup(rel).dir
    }

    /// Creates a cgroup of the tree (and missing parents).
    pub fn try_mkdir(&self, rel: &str) -> Result<PathBuf, CgroupError> {
        let rel = rel.trim_matches('/');
        let (parent, name) = rel.rsplit_once('/').unwrap_or(("", rel));
        Ok(self.cgroup(parent).child(name)?.dir)
    }

    /// [`CgroupTree::try_mkdir`]; panics on failure (test set-up).
    pub fn mkdir(&self, rel: &str) -> PathBuf {
        self.try_mkdir(rel).unwrap_or_else(|e| panic!("{e}"))
    }

    /// A file of a cgroup in the tree.
    pub fn path(&self, rel: &str, file: &str) -> PathBuf {
        self.dir(rel).join(file)
    }

    /// Writes a cgroup file.
    pub fn try_write(&self, rel: &str, file: &str, v: &str) -> Result<(), CgroupError> {
        self.cgroup(rel).write(file, v)
    }

    /// [`CgroupTree::try_write`]; panics on failure (test set-up).
    pub fn write(&self, rel: &str, file: &str, v: &str) {
        self.try_write(rel, file, v)
            .unwrap_or_else(|e| panic!("{e}"))
    }

    /// Reads a cgroup file ("" when unreadable).
    pub fn read(&self, rel: &str, file: &str) -> String {
        self.cgroup(rel).read(file)
    }

    /// A `key value` entry of `memory.oom_control` (v1).
    pub fn oom_control(&self, rel: &str, key: &str) -> Option<u64> {
        self.cgroup(rel).key("memory.oom_control", key)
    }

    /// A cgroup path relative to the hierarchy root, for the daemon.
    pub fn cg(&self, rel: &str) -> String {
        self.cgroup(rel).rel
    }
}

impl Drop for CgroupTree {
    fn drop(&mut self) {
        self.cg.remove();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch_hierarchy(name: &str) -> Hierarchy {
        let root = crate::fixture::scratch(&format!("cgroup-{name}"));
        Hierarchy::fixed(&root, Version::V1, "memory", "/own")
    }

    #[test]
    fn paths_are_relative_to_the_top() {
        let h = scratch_hierarchy("paths");
        std::fs::create_dir_all(h.root.join("own")).unwrap();
        let t = CgroupTree::below_own(&h, "t").unwrap();
        let top_rel = format!("/own/bpfoom-t-{}", std::process::id());
        assert_eq!(t.top_rel, top_rel);
        assert_eq!(t.cg(""), top_rel);
        assert_eq!(t.cg("a/b"), format!("{top_rel}/a/b"));
        assert_eq!(t.top, h.root.join(top_rel.trim_start_matches('/')));
        let b = t.mkdir("a/b");
        assert!(b.is_dir() && b == t.dir("a/b"));
        assert_eq!(t.path("a", "x"), t.top.join("a/x"));
    }

    #[test]
    fn files_and_keys() {
        let h = scratch_hierarchy("files");
        std::fs::create_dir_all(h.root.join("own")).unwrap();
        let t = CgroupTree::below_own(&h, "f").unwrap();
        t.write(
            "",
            "memory.oom_control",
            "oom_kill_disable 1\nunder_oom 0\n",
        );
        assert_eq!(t.oom_control("", "oom_kill_disable"), Some(1));
        assert_eq!(t.oom_control("", "under_oom"), Some(0));
        assert_eq!(t.oom_control("", "missing"), None);
        t.write("", "cgroup.procs", "");
        assert!(t.top().procs().is_empty());
        t.write("", "memory.usage_in_bytes", "42\n");
        assert_eq!(t.top().value("memory.usage_in_bytes"), Some(42));
        let e = t.try_write("nope", "x", "1").unwrap_err();
        assert!(e.to_string().contains("nope/x"), "{e}");
        // Plain files would keep a scratch directory from being removed.
        for f in [
            "memory.oom_control",
            "cgroup.procs",
            "memory.usage_in_bytes",
        ] {
            std::fs::remove_file(t.path("", f)).unwrap();
        }
    }

    #[test]
    fn drop_removes_the_tree_bottom_up_and_only_it() {
        let h = scratch_hierarchy("drop");
        let beside = h.root.join("own/beside");
        std::fs::create_dir_all(&beside).unwrap();
        let t = CgroupTree::below_own(&h, "d").unwrap();
        t.mkdir("a/b/c");
        t.mkdir("d");
        let top = t.top.clone();
        drop(t);
        assert!(!top.exists(), "{} left", top.display());
        assert!(beside.is_dir(), "a cgroup outside the tree was removed");
    }

    #[test]
    fn drop_runs_on_panic() {
        let h = scratch_hierarchy("panic");
        std::fs::create_dir_all(h.root.join("own")).unwrap();
        let top = h.root.join(format!("own/bpfoom-p-{}", std::process::id()));
        let r = std::panic::catch_unwind(|| {
            let t = CgroupTree::below_own(&h, "p").unwrap();
            t.mkdir("x/y");
            panic!("a failing test");
        });
        assert!(r.is_err());
        assert!(!top.exists(), "{} left after a panic", top.display());
    }

    #[test]
    fn a_leftover_of_the_same_name_is_replaced() {
        let h = scratch_hierarchy("left");
        let top = h.root.join(format!("own/bpfoom-l-{}", std::process::id()));
        std::fs::create_dir_all(top.join("old")).unwrap();
        let t = CgroupTree::below_own(&h, "l").unwrap();
        assert!(!t.dir("old").exists());
        assert!(t.top.is_dir());
    }

    #[test]
    fn own_cgroup_is_read_from_proc() {
        // Every process is in the unified hierarchy or some v1 one.
        let text = std::fs::read_to_string("/proc/self/cgroup").unwrap();
        if text.lines().any(|l| l.starts_with("0::")) {
            assert!(own_cgroup(Version::V2, "").is_some_and(|p| p.starts_with('/')));
        }
        assert_eq!(own_cgroup(Version::V1, "no-such-controller"), None);
    }
}
