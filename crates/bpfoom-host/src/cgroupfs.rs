//! A cgroup hierarchy in the file system: paths, ids and files.
//!
//! A cgroup's id is its directory's inode number, which is the kernfs node
//! id policies see as `cgrp->kn->id` on 64-bit kernels. Fixture trees made of
//! plain directories get ids the same way, so tests exercise the same code.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::io;
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
    counts: RefCell<std::collections::HashMap<CgroupId, u64>>,
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
        let id = std::fs::metadata(self.dir_of(rel)).ok()?.ino();
        self.ids.borrow_mut().insert(id, rel.to_string());
        Some(id)
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
        let known = self.ids.borrow().get(&id).cloned();
        if let Some(rel) = known {
            if std::fs::metadata(self.dir_of(&rel)).is_ok_and(|m| m.ino() == id) {
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
            for child in self.child_names(&rel) {
                seen += 1;
                if seen > MAX_WALK {
                    return None;
                }
                if self.learn(&child) == Some(id) {
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

    fn child_names(&self, rel: &str) -> Vec<String> {
        let Ok(rd) = std::fs::read_dir(self.dir_of(rel)) else {
            return Vec::new();
        };
        let mut v: Vec<(i64, String)> = rd
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
                    (md.ctime() * 1_000_000_000 + md.ctime_nsec(), rel)
                })
            })
            .collect();
        // Creation order, approximated by ctime then name.
        v.sort();
        v.into_iter().map(|x| x.1).collect()
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
        // nlink 2: no subdirectories. Anything else (including file systems
        // that report 1 for directories) is listed.
        let leaf = std::fs::metadata(dir).is_ok_and(|m| m.nlink() == 2);
        let mut n = 0;
        if !leaf && depth < 256 {
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
        self.child_names(&rel)
            .iter()
            .filter_map(|c| self.learn(c))
            .collect()
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
        std::fs::read_to_string(self.file(id, name)?).ok()
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
