//! The list of cgroup files bpfoom changed and the values to put back,
//! persisted (write-ahead) in a state file the guardian reads when the
//! daemon dies and the next daemon reconciles at start.
//!
//! Format: one `PATH VALUE` line per entry (the value is the last
//! space-separated word), written to a temporary file and renamed over the
//! state file so a reader never sees half a list.

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};

/// Files to restore, with their original values.
#[derive(Debug, Default)]
pub struct RestoreList {
    file: Option<PathBuf>,
    entries: BTreeMap<PathBuf, String>,
}

impl RestoreList {
    /// An empty list persisted at `file`.
    pub fn new(file: Option<PathBuf>) -> Self {
        Self {
            file,
            entries: BTreeMap::new(),
        }
    }

    /// Remembers that `path` must get `value` back, and persists the list.
    /// An existing entry keeps its (older, original) value.
    pub fn add(&mut self, path: PathBuf, value: String) -> io::Result<()> {
        if value.contains(['\n', ' ']) || path.as_os_str().len() >= 4000 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("cannot record {} = {value:?}", path.display()),
            ));
        }
        self.entries.entry(path).or_insert(value);
        self.persist()
    }

    /// Whether `path` is on the list.
    pub fn contains(&self, path: &Path) -> bool {
        self.entries.contains_key(path)
    }

    /// Drops entries failing `keep`, and persists.
    pub fn retain(&mut self, mut keep: impl FnMut(&Path) -> bool) -> io::Result<()> {
        let n = self.entries.len();
        self.entries.retain(|p, _| keep(p));
        if n == self.entries.len() {
            return Ok(());
        }
        self.persist()
    }

    /// Writes one entry back and forgets it.
    pub fn restore_one(&mut self, path: &Path) -> io::Result<()> {
        let Some(v) = self.entries.remove(path) else {
            return Ok(());
        };
        let r = write_back(path, &v);
        self.persist()?;
        r
    }

    /// Writes every entry back; returns the failures (vanished cgroups are
    /// not failures). The list is empty afterwards.
    pub fn restore_all(&mut self) -> Vec<String> {
        let errs = std::mem::take(&mut self.entries)
            .into_iter()
            .filter_map(|(p, v)| {
                write_back(&p, &v)
                    .err()
                    .map(|e| format!("{}: {e}", p.display()))
            })
            .collect();
        if let Err(e) = self.persist() {
            return [errs, vec![format!("state file: {e}")]].concat();
        }
        errs
    }

    /// The entries.
    pub fn entries(&self) -> Vec<(PathBuf, String)> {
        self.entries
            .iter()
            .map(|(p, v)| (p.clone(), v.clone()))
            .collect()
    }

    fn persist(&self) -> io::Result<()> {
        let Some(file) = &self.file else {
            return Ok(());
        };
        let mut text = String::new();
        for (p, v) in &self.entries {
            text.push_str(&format!("{} {v}\n", p.display()));
        }
        let tmp = file.with_extension("tmp");
        std::fs::write(&tmp, text)?;
        std::fs::rename(&tmp, file)
    }
}

fn write_back(path: &Path, value: &str) -> io::Result<()> {
    match std::fs::write(path, value) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        r => r,
    }
}

/// Reads a state file left by a previous daemon.
pub fn read_state(file: &Path) -> io::Result<Vec<(PathBuf, String)>> {
    let text = match std::fs::read_to_string(file) {
        Ok(t) => t,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    Ok(text
        .lines()
        .filter_map(|l| {
            let (p, v) = l.rsplit_once(' ')?;
            (!p.is_empty() && !v.is_empty()).then(|| (PathBuf::from(p), v.to_string()))
        })
        .collect())
}

/// Restores what a previous daemon left in `file` (it crashed and the
/// guardian could not finish, or both died), then empties the file.
/// Returns the entries applied.
pub fn reconcile(file: &Path) -> io::Result<Vec<(PathBuf, String)>> {
    let entries = read_state(file)?;
    for (p, v) in &entries {
        write_back(p, v)?;
    }
    if !entries.is_empty() {
        std::fs::write(file, "")?;
    }
    Ok(entries)
}
