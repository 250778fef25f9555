//! A cgroup hierarchy in the file system: paths, ids and files.
//!
//! A cgroup's id is its directory's inode number, which is the kernfs node
//! id policies see as `cgrp->kn->id` on 64-bit kernels. Fixture trees made of
//! plain directories get ids the same way, so tests exercise the same code.

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};
use std::io::{self, Read};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use bpfoom_engine::CgroupId;

/// Which memory controller interface a hierarchy speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CgroupVersion {
    /// cgroup v1 (`memory.limit_in_bytes`, `memory.oom_control`).
    V1,
    /// cgroup v2 (`memory.max`, `memory.events`).
    V2,
}

/// Why a hierarchy or cgroup could not be used.
#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    /// The root is not a memory cgroup hierarchy.
    #[error("{0}: not a cgroup v1 memory hierarchy or a cgroup v2 hierarchy")]
    NotAHierarchy(PathBuf),
    /// The cgroup does not exist.
    #[error("no cgroup {path} under {root}")]
    NoSuchCgroup {
        /// As given.
        path: String,
        /// The hierarchy root.
        root: PathBuf,
    },
    /// The path leaves the hierarchy.
    #[error("{path} is outside the cgroup hierarchy at {root} (its `..` climbs above the root)")]
    Outside {
        /// As given.
        path: String,
        /// The hierarchy root.
        root: PathBuf,
    },
}

/// Bounds the directory walk that finds an id not seen before.
const MAX_WALK: usize = 100_000;

/// One mounted (or fixture) cgroup hierarchy.
#[derive(Debug)]
pub struct Cgroupfs {
    root: PathBuf,
    version: CgroupVersion,
    root_id: CgroupId,
    /// id -> path relative to the root ("" for the root itself).
    ids: RefCell<BTreeMap<CgroupId, String>>,
    /// Paths of ids that vanished, for records about removed cgroups.
    gone: RefCell<BTreeMap<CgroupId, String>>,
    /// Descendant counts, cached for the length of one OOM event.
    counts: RefCell<HashMap<CgroupId, u64>>,
    /// What one OOM run has already checked ([`Cgroupfs::begin_run`]).
    run: RefCell<Option<RunCache>>,
    /// Child lists of directories the daemon watches with inotify: kept
    /// until [`Cgroupfs::children_changed`] says a child came or went, so
    /// walking a watched tree lists no directory and stats no child.
    kids: RefCell<HashMap<CgroupId, Option<Vec<CgroupId>>>>,
    /// Ids on a kept child list: their paths need no `statx` to be trusted
    /// (a removal would have reached the parent's watch and dropped the list).
    trusted: RefCell<std::collections::HashSet<CgroupId>>,
}

/// An OOM run reads the tree as it was when the run started: a path
/// checked once is trusted for the rest of the run (the daemon's inotify
/// model catches changes between runs), and `memory.stat` is read and
/// parsed at most once per cgroup. A policy walking 1,000 cgroups then
/// costs a few system calls per cgroup it reads, not one `statx` per
/// lookup.
#[derive(Debug, Default)]
struct RunCache {
    rel: HashMap<CgroupId, String>,
    id: HashMap<String, CgroupId>,
    stat: HashMap<CgroupId, Option<std::rc::Rc<str>>>,
}

/// Reads a small kernfs file without the `statx` that
/// `std::fs::read_to_string` makes for its size hint: open, read to EOF,
/// close.
pub fn read_small(path: &Path) -> io::Result<String> {
    let mut f = std::fs::File::open(path)?;
    let mut buf = Vec::with_capacity(4096);
    let mut chunk = [0u8; 4096];
    loop {
        match f.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    String::from_utf8(buf).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
}

impl Cgroupfs {
    /// Opens the hierarchy at `root`, detecting its version.
    pub fn open(root: impl Into<PathBuf>) -> Result<Self, CgroupError> {
        let root = root.into();
        let version = if root.join("cgroup.controllers").exists() {
            CgroupVersion::V2
        } else if root.join("memory.usage_in_bytes").exists() {
            CgroupVersion::V1
        } else {
            return Err(CgroupError::NotAHierarchy(root));
        };
        let root_id = std::fs::metadata(&root)
            .map_err(|_| CgroupError::NotAHierarchy(root.clone()))?
            .ino();
        let ids = RefCell::new(BTreeMap::from([(root_id, String::new())]));
        Ok(Self {
            root,
            version,
            root_id,
            ids,
            gone: RefCell::default(),
            counts: RefCell::default(),
            run: RefCell::default(),
            kids: RefCell::default(),
            trusted: RefCell::default(),
        })
    }

    /// The hierarchy's mount point (or fixture directory).
    pub fn root_dir(&self) -> &Path {
        &self.root
    }

    /// The interface version.
    pub fn version(&self) -> CgroupVersion {
        self.version
    }

    /// The root cgroup's id.
    pub fn root_id(&self) -> CgroupId {
        self.root_id
    }

    /// The directory of a relative path.
    pub fn dir_of(&self, rel: &str) -> PathBuf {
        if rel.is_empty() {
            self.root.clone()
        } else {
            self.root.join(rel)
        }
    }

    fn learn(&self, rel: &str) -> Option<CgroupId> {
        if let Some(&id) = self.run.borrow().as_ref().and_then(|r| r.id.get(rel)) {
            return Some(id);
        }
        let id = std::fs::metadata(self.dir_of(rel)).ok()?.ino();
        self.known(id, rel);
        Some(id)
    }

    /// Records that `rel` is `id` now (just stat-ed).
    fn known(&self, id: CgroupId, rel: &str) {
        self.ids.borrow_mut().insert(id, rel.to_string());
        if let Some(r) = self.run.borrow_mut().as_mut() {
            r.rel.insert(id, rel.to_string());
            r.id.insert(rel.to_string(), id);
        }
    }

    /// `id`'s directory is watched for created and removed children (the
    /// caller reports them with [`Cgroupfs::children_changed`]): its child
    /// list may be kept.
    pub fn watch_children(&self, id: CgroupId) {
        self.kids.borrow_mut().entry(id).or_insert(None);
    }

    /// `id` is no longer watched (or gone).
    pub fn unwatch_children(&self, id: CgroupId) {
        self.children_changed(id);
        self.kids.borrow_mut().remove(&id);
        self.trusted.borrow_mut().remove(&id);
    }

    /// A child of watched `id` was created or removed.
    pub fn children_changed(&self, id: CgroupId) {
        if let Some(k) = self.kids.borrow_mut().get_mut(&id) {
            let mut t = self.trusted.borrow_mut();
            for c in k.take().unwrap_or_default() {
                t.remove(&c);
            }
        }
    }

    /// Every kept child list is dropped (inotify lost events).
    pub fn forget_children(&self) {
        for k in self.kids.borrow_mut().values_mut() {
            *k = None;
        }
        self.trusted.borrow_mut().clear();
    }

    /// Keeps `kids` as watched `id`'s child list.
    fn keep_children(&self, id: CgroupId, kids: &[CgroupId]) {
        if let Some(k) = self.kids.borrow_mut().get_mut(&id) {
            *k = Some(kids.to_vec());
            self.trusted.borrow_mut().extend(kids.iter().copied());
        }
    }

    /// Starts an OOM run: until [`Cgroupfs::end_run`], a cgroup's path is
    /// checked at most once and `memory.stat` read at most once per cgroup
    /// (see `RunCache`).
    pub fn begin_run(&self) {
        self.forget_counts();
        *self.run.borrow_mut() = Some(RunCache::default());
    }

    /// Ends the OOM run: every lookup checks the file system again.
    pub fn end_run(&self) {
        self.forget_counts();
        *self.run.borrow_mut() = None;
    }

    /// `memory.stat` of a cgroup, read once per OOM run.
    pub fn memory_stat(&self, id: CgroupId) -> Option<std::rc::Rc<str>> {
        if let Some(s) = self.run.borrow().as_ref().and_then(|r| r.stat.get(&id)) {
            return s.clone();
        }
        let s: Option<std::rc::Rc<str>> = self.read(id, "memory.stat").map(Into::into);
        if let Some(r) = self.run.borrow_mut().as_mut() {
            r.stat.insert(id, s.clone());
        }
        s
    }

    /// Resolves a cgroup given as an absolute path inside the hierarchy, or
    /// as a path relative to its root ("/" or "" is the root).
    pub fn resolve(&self, given: &str) -> Result<CgroupId, CgroupError> {
        let p = Path::new(given);
        let rel = match p.strip_prefix(&self.root) {
            Ok(r) => r.to_path_buf(),
            Err(_) => p
                .strip_prefix("/")
                .map(Path::to_path_buf)
                .unwrap_or_else(|_| p.to_path_buf()),
        };
        // `.` and `..` are folded as a shell would (`ux2/../ux1` is ux1;
        // cgroupfs has no symlinks to make that differ from the kernel's
        // walk); only a `..` above the root leaves the hierarchy.
        let mut parts: Vec<&std::ffi::OsStr> = Vec::new();
        for c in rel.components() {
            match c {
                std::path::Component::Normal(n) => parts.push(n),
                std::path::Component::CurDir => {}
                std::path::Component::ParentDir if parts.pop().is_some() => {}
                _ => {
                    return Err(CgroupError::Outside {
                        path: given.into(),
                        root: self.root.clone(),
                    })
                }
            }
        }
        let rel: PathBuf = parts.iter().collect();
        let rel = rel.to_string_lossy().to_string();
        let dir = self.dir_of(&rel);
        let ok = dir.is_dir() && (dir.join("cgroup.procs").exists() || dir.join("tasks").exists());
        ok.then(|| self.learn(&rel))
            .flatten()
            .ok_or_else(|| CgroupError::NoSuchCgroup {
                path: given.into(),
                root: self.root.clone(),
            })
    }

    /// The relative path of an id ("" for the root), `None` when it no
    /// longer exists. Unknown ids trigger a bounded walk of the hierarchy.
    pub fn rel(&self, id: CgroupId) -> Option<String> {
        if let Some(rel) = self.run.borrow().as_ref().and_then(|r| r.rel.get(&id)) {
            return Some(rel.clone());
        }
        let known = self.ids.borrow().get(&id).cloned();
        if let Some(rel) = known {
            if self.trusted.borrow().contains(&id) {
                return Some(rel);
            }
            if std::fs::metadata(self.dir_of(&rel)).is_ok_and(|m| m.ino() == id) {
                self.known(id, &rel);
                return Some(rel);
            }
            // Gone, or the inode number was reused elsewhere: walk.
            self.ids.borrow_mut().remove(&id);
            let mut gone = self.gone.borrow_mut();
            if gone.len() > MAX_WALK {
                gone.clear();
            }
            gone.insert(id, rel);
        }
        let mut stack = vec![String::new()];
        let mut seen = 0;
        while let Some(rel) = stack.pop() {
            for (child, child_id) in self.child_dirs(&rel) {
                seen += 1;
                if seen > MAX_WALK {
                    return None;
                }
                if child_id == id {
                    return Some(child);
                }
                stack.push(child);
            }
        }
        None
    }

    /// The last known relative path of an id, even if it is gone now (for
    /// records about removed cgroups).
    pub fn last_rel(&self, id: CgroupId) -> Option<String> {
        let known = self.ids.borrow().get(&id).cloned();
        known.or_else(|| self.gone.borrow().get(&id).cloned())
    }

    /// The child directories of `rel` with their ids (each one stat-ed
    /// once, for its inode and creation time), in creation order.
    fn child_dirs(&self, rel: &str) -> Vec<(String, CgroupId)> {
        let Ok(rd) = std::fs::read_dir(self.dir_of(rel)) else {
            return Vec::new();
        };
        let mut v: Vec<(i64, String, CgroupId)> = rd
            .filter_map(|e| {
                let e = e.ok()?;
                // d_type first: a cgroup directory holds dozens of files and
                // stat-ing each made every walk cost 30 stats per cgroup.
                if !e.file_type().ok()?.is_dir() {
                    return None;
                }
                let md = e.metadata().ok()?;
                md.is_dir().then(|| {
                    let name = e.file_name().to_string_lossy().into_owned();
                    let rel = if rel.is_empty() {
                        name
                    } else {
                        format!("{rel}/{name}")
                    };
                    (md.ctime() * 1_000_000_000 + md.ctime_nsec(), rel, md.ino())
                })
            })
            .collect();
        // Creation order, approximated by ctime then name.
        v.sort();
        v.into_iter()
            .map(|(_, rel, id)| {
                self.known(id, &rel);
                (rel, id)
            })
            .collect()
    }

    /// How many cgroups are below `id`, counted from directory link counts
    /// (a directory's `st_nlink` is 2 plus its subdirectories on kernfs, as
    /// on most file systems), so a leaf costs one stat and no listing.
    /// Results for the subtrees walked are cached until
    /// [`Cgroupfs::forget_counts`].
    pub fn nr_descendants(&self, id: CgroupId) -> Option<u64> {
        if let Some(&n) = self.counts.borrow().get(&id) {
            return Some(n);
        }
        let dir = self.dir_of(&self.rel(id)?);
        Some(self.count_below(&dir, id, 0))
    }

    fn count_below(&self, dir: &Path, id: CgroupId, depth: usize) -> u64 {
        if let Some(&n) = self.counts.borrow().get(&id) {
            return n;
        }
        let watched = self.kids.borrow().contains_key(&id);
        let kept = self.kids.borrow().get(&id).cloned().flatten();
        // nlink 2: no subdirectories. Anything else (including file systems
        // that report 1 for directories) is listed. A watched directory's
        // answer is kept until inotify reports a change: then no system call.
        let leaf = kept.as_ref().map_or_else(
            || std::fs::metadata(dir).is_ok_and(|m| m.nlink() == 2),
            Vec::is_empty,
        );
        let mut n = 0;
        if leaf {
            if watched && kept.is_none() {
                self.keep_children(id, &[]);
            }
        } else if depth < 256 && watched {
            for k in kept.unwrap_or_else(|| self.children(id)) {
                if let Some(r) = self.rel(k) {
                    n += 1 + self.count_below(&self.dir_of(&r), k, depth + 1);
                }
            }
        } else if depth < 256 {
            if let Ok(rd) = std::fs::read_dir(dir) {
                for e in rd.flatten() {
                    if e.file_type().is_ok_and(|t| t.is_dir()) {
                        use std::os::unix::fs::DirEntryExt;
                        n += 1 + self.count_below(&e.path(), e.ino(), depth + 1);
                    }
                }
            }
        }
        self.counts.borrow_mut().insert(id, n);
        n
    }

    /// Drops the counts cached by [`Cgroupfs::nr_descendants`].
    pub fn forget_counts(&self) {
        self.counts.borrow_mut().clear();
    }

    /// Child cgroups of `id`.
    pub fn children(&self, id: CgroupId) -> Vec<CgroupId> {
        let Some(rel) = self.rel(id) else {
            return Vec::new();
        };
        if let Some(Some(kids)) = self.kids.borrow().get(&id) {
            return kids.clone();
        }
        let kids: Vec<CgroupId> = self
            .child_dirs(&rel)
            .into_iter()
            .map(|(_, id)| id)
            .collect();
        self.keep_children(id, &kids);
        kids
    }

    /// Parent of `id` (`None` for the root).
    pub fn parent(&self, id: CgroupId) -> Option<CgroupId> {
        let rel = self.rel(id)?;
        if rel.is_empty() {
            return None;
        }
        let parent = rel.rsplit_once('/').map_or("", |p| p.0).to_string();
        self.learn(&parent)
    }

    /// "/"-prefixed path of `id` relative to the root, as records show it.
    pub fn display(&self, id: CgroupId) -> Option<String> {
        self.rel(id).map(|r| format!("/{r}"))
    }

    /// A file of a cgroup.
    pub fn file(&self, id: CgroupId, name: &str) -> Option<PathBuf> {
        self.rel(id).map(|r| self.dir_of(&r).join(name))
    }

    /// Reads a file of a cgroup.
    pub fn read(&self, id: CgroupId, name: &str) -> Option<String> {
        read_small(&self.file(id, name)?).ok()
    }

    /// Writes a file of a cgroup (one write, as cgroupfs expects).
    pub fn write(&self, id: CgroupId, name: &str, value: &str) -> io::Result<()> {
        let path = self
            .file(id, name)
            .ok_or_else(|| io::Error::from_raw_os_error(libc::ENOENT))?;
        std::fs::write(path, value)
    }
}

/// The memory cgroup of a process, relative to the hierarchy root, from
/// `PROC/PID/cgroup` ("self" for the caller).
pub fn memory_cgroup_of(proc_root: &Path, pid: &str, version: CgroupVersion) -> Option<String> {
    let text = std::fs::read_to_string(proc_root.join(pid).join("cgroup")).ok()?;
    crate::parse::parse_proc_cgroup(&text, version == CgroupVersion::V2)
}
