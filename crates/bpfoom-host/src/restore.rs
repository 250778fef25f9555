//! The list of cgroup files bpfoom changed and the values to put back,
//! persisted (write-ahead) in a state file the guardian reads when the
//! daemon dies and the next daemon reconciles at start.
//!
//! Format: one `PATH VALUE` line per entry (the value is the last
//! space-separated word), written to a temporary file and renamed over the
//! state file so a reader never sees half a list. In PATH, a backslash,
//! space, DEL or control byte is written as `\xHH`, so a cgroup name with
//! spaces or control characters stays one unambiguous line (the guardian
//! decodes the same way).
//!
//! A damaged file (truncated, overwritten with garbage) is read line by line
//! as bytes: good lines are applied, garbage is skipped, and a line cut off
//! after its cgroup directory still un-pauses that cgroup (fault 6 of the
//! reliability suite): the only value bpfoom ever records for
//! `memory.oom_control` is the kernel's default, 0; on cgroup v2 such a
//! line lifts the cgroup's `memory.high` to `max`. A last line without its
//! newline was cut and is only trusted to name its cgroup.

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::io;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
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
        if !plausible_value(value.as_bytes()) || escape_path(&path).len() >= 4000 {
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
        let mut text = Vec::new();
        for (p, v) in &self.entries {
            text.extend_from_slice(&escape_path(p));
            text.push(b' ');
            text.extend_from_slice(v.as_bytes());
            text.push(b'\n');
        }
        let tmp = file.with_extension("tmp");
        std::fs::write(&tmp, text)?;
        std::fs::rename(&tmp, file)
    }
}

/// Writes a value to an existing file; never creates one (a damaged state
/// file must not make bpfoom create files).
fn write_back(path: &Path, value: &str) -> io::Result<()> {
    use std::io::Write;
    let r = std::fs::OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(path)
        .and_then(|mut f| f.write_all(value.as_bytes()));
    match r {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        r => r,
    }
}

/// PATH as the state file writes it (see the module docs).
pub fn escape_path(p: &Path) -> Vec<u8> {
    let mut out = Vec::new();
    for &b in p.as_os_str().as_bytes() {
        if b == b'\\' || b <= b' ' || b == 0x7f {
            out.extend_from_slice(format!("\\x{b:02x}").as_bytes());
        } else {
            out.push(b);
        }
    }
    out
}

/// Decodes [`escape_path`]; undecodable escapes are kept as they are.
pub fn unescape_path(b: &[u8]) -> PathBuf {
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = |c: u8| (c as char).to_digit(16);
        if b[i] == b'\\' && i + 3 < b.len() && b[i + 1] == b'x' {
            if let (Some(h), Some(l)) = (hex(b[i + 2]), hex(b[i + 3])) {
                out.push((h * 16 + l) as u8);
                i += 4;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    PathBuf::from(std::ffi::OsString::from_vec(out))
}

/// What a state file holds: the entries that parse, and the cgroup
/// directories named by lines that do not (a truncated or damaged entry).
#[derive(Debug, Default, PartialEq, Eq)]
pub struct StateFile {
    /// `(file, value)` entries.
    pub entries: Vec<(PathBuf, String)>,
    /// Directories of damaged `.../memory.*` entries that still exist.
    pub damaged_dirs: Vec<PathBuf>,
}

/// The values bpfoom records: a number or `max`.
fn plausible_value(v: &[u8]) -> bool {
    !v.is_empty() && (v == b"max" || v.iter().all(u8::is_ascii_digit))
}

/// The cgroup directory of a damaged line: everything before its last
/// `/memory.` (the cut may have fallen anywhere in the file name), if it is
/// an existing directory holding `memory.oom_control` (v1) or
/// `memory.high` (v2). A value after the file name is ignored.
fn damaged_dir(line: &[u8]) -> Option<PathBuf> {
    let path_part = line
        .iter()
        .rposition(|&b| b == b' ')
        .map_or(line, |sp| &line[..sp]);
    let path = unescape_path(path_part);
    let bytes = path.as_os_str().as_bytes();
    let cut = bytes.windows(8).rposition(|w| w == b"/memory.")?;
    let dir = PathBuf::from(OsStr::from_bytes(&bytes[..cut]));
    let cgroup = dir.join("memory.oom_control").is_file() || dir.join("memory.high").is_file();
    (dir.is_absolute() && cgroup).then_some(dir)
}

/// Reads a state file left by a previous daemon, line by line as bytes.
pub fn read_state_file(file: &Path) -> io::Result<StateFile> {
    let bytes = match std::fs::read(file) {
        Ok(b) => b,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(StateFile::default()),
        Err(e) => return Err(e),
    };
    let mut st = StateFile::default();
    // bpfoom ends every line with a newline: a last line without one was
    // cut, possibly inside its value ("memory.high 88" of 88080384), so it
    // is only trusted to name its cgroup (fault 6).
    let cut_tail = !bytes.is_empty() && !bytes.ends_with(b"\n");
    let lines: Vec<&[u8]> = bytes.split(|&b| b == b'\n').collect();
    let last = lines.len().saturating_sub(1);
    for (i, line) in lines.into_iter().enumerate().filter(|(_, l)| !l.is_empty()) {
        let whole = !(cut_tail && i == last);
        let parsed = line
            .iter()
            .rposition(|&b| b == b' ')
            .filter(|&sp| whole && sp > 0 && line[0] == b'/' && plausible_value(&line[sp + 1..]))
            .map(|sp| {
                (
                    unescape_path(&line[..sp]),
                    String::from_utf8_lossy(&line[sp + 1..]).into_owned(),
                )
            });
        match parsed {
            Some(e) => st.entries.push(e),
            None => st.damaged_dirs.extend(damaged_dir(line)),
        }
    }
    Ok(st)
}

/// Reads a state file left by a previous daemon (its well-formed entries).
pub fn read_state(file: &Path) -> io::Result<Vec<(PathBuf, String)>> {
    read_state_file(file).map(|s| s.entries)
}

/// What a damaged entry naming cgroup directory `d` is restored to: the
/// kernel's defaults for what bpfoom changes, `memory.oom_control` 0 (v1:
/// un-paused) or, on cgroup v2 (no `memory.oom_control`), `memory.high`
/// `max` (no throttle left behind; a `memory.high` of the cgroup's owner is
/// lost with the entry that recorded it, and no throttle is the safe side).
fn salvage(d: &Path) -> (PathBuf, String) {
    let v1 = d.join("memory.oom_control");
    if v1.exists() || !d.join("memory.high").exists() {
        (v1, "0".to_string())
    } else {
        (d.join("memory.high"), "max".to_string())
    }
}

/// Restores what a previous daemon left in `file` (it crashed and the
/// guardian could not finish, or both died), then empties the file. A
/// damaged entry naming a cgroup directory puts that cgroup back to the
/// kernel's defaults (v1 un-paused, v2 `memory.high max`).
/// Returns the entries applied.
pub fn reconcile(file: &Path) -> io::Result<Vec<(PathBuf, String)>> {
    let st = read_state_file(file)?;
    let mut applied = Vec::new();
    let mut first_err = None;
    let salvaged = st.damaged_dirs.iter().map(|d| salvage(d));
    for (p, v) in st.entries.iter().cloned().chain(salvaged) {
        // One bad entry must not keep the others paused.
        match write_back(&p, &v) {
            Ok(()) => applied.push((p, v)),
            Err(e) => {
                first_err.get_or_insert(io::Error::new(e.kind(), format!("{}: {e}", p.display())));
            }
        }
    }
    if std::fs::metadata(file).is_ok_and(|m| m.len() > 0) {
        std::fs::write(file, "")?;
    }
    match first_err {
        Some(e) => Err(e),
        None => Ok(applied),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_round_trip_through_escaping() {
        use std::os::unix::ffi::OsStrExt;
        for raw in [
            &b"/a/with space/memory.oom_control"[..],
            b"/a/tab\t\r\x1b[31m/x",
            b"/a/back\\slash\\x41",
            b"/a/\xff\xfe/memory.high",
        ] {
            let p = Path::new(OsStr::from_bytes(raw));
            let e = escape_path(p);
            assert!(!e.contains(&b' ') && !e.contains(&b'\n'), "{e:?}");
            assert_eq!(unescape_path(&e), p);
        }
    }

    #[test]
    fn a_damaged_file_keeps_its_good_lines() {
        let dir = std::env::temp_dir().join(format!("bpfoom-restore-{}", std::process::id()));
        let cg = dir.join("cg");
        std::fs::create_dir_all(&cg).unwrap();
        std::fs::write(cg.join("memory.oom_control"), "1").unwrap();
        std::fs::write(dir.join("other"), "7").unwrap();
        let state = dir.join("state");
        let mut text = Vec::new();
        text.extend_from_slice(format!("{} 3\n", dir.join("other").display()).as_bytes());
        text.extend_from_slice(b"\xff\x00junk\n relative 0\n/no/value\n");
        text.extend_from_slice(format!("{}/memory.oom_c", cg.display()).as_bytes());
        std::fs::write(&state, &text).unwrap();
        let st = read_state_file(&state).unwrap();
        assert_eq!(st.entries, vec![(dir.join("other"), "3".to_string())]);
        assert_eq!(st.damaged_dirs, vec![cg.clone()]);
        let applied = reconcile(&state).unwrap();
        assert_eq!(applied.len(), 2);
        assert_eq!(std::fs::read_to_string(dir.join("other")).unwrap(), "3");
        assert_eq!(
            std::fs::read_to_string(cg.join("memory.oom_control")).unwrap(),
            "0"
        );
        assert_eq!(std::fs::read(&state).unwrap(), b"");
        // A cgroup v2 directory (memory.high, no memory.oom_control): its
        // throttle is lifted.
        let v2 = dir.join("v2cg");
        std::fs::create_dir_all(&v2).unwrap();
        std::fs::write(v2.join("memory.high"), "88080384").unwrap();
        for cut in ["memory.hi", "memory.high 880"] {
            std::fs::write(v2.join("memory.high"), "88080384").unwrap();
            std::fs::write(&state, format!("{}/{cut}", v2.display())).unwrap();
            let applied = reconcile(&state).unwrap();
            assert_eq!(
                applied,
                vec![(v2.join("memory.high"), "max".to_string())],
                "{cut}"
            );
            assert_eq!(
                std::fs::read_to_string(v2.join("memory.high")).unwrap(),
                "max"
            );
        }
        // Nothing is ever created.
        std::fs::write(&state, format!("{} 0\n", dir.join("new").display())).unwrap();
        reconcile(&state).unwrap();
        assert!(!dir.join("new").exists());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
