//! Whom the kernel OOM killer killed, from its own report in `/dev/kmsg`.
//!
//! When bpfoom falls back to the kernel (no policy freed memory), and in a
//! dry run (nothing is paused, so the kernel resolves every OOM), the
//! kernel chooses the victim. Its `oom-kill:` summary line names it
//! (`dump_oom_victim()` in mm/oom_kill.c):
//!
//! ```text
//! oom-kill:constraint=CONSTRAINT_MEMCG,nodemask=(null),cpuset=/,mems_allowed=0,oom_memcg=/job,task_memcg=/job/b,task=hog,pid=415,uid=0
//! ```
//!
//! The log is opened at its end, so only kills after the daemon started
//! are seen; it is read only while a fallback or a dry-run OOM is in
//! progress, without blocking.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

/// One kill the kernel reported.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KernelKill {
    /// The victim's pid.
    pub pid: i32,
    /// Its command name.
    pub comm: String,
    /// Its memory cgroup, relative to the hierarchy root (`/job/b`).
    pub task_memcg: String,
    /// The OOM'ing memcg; `None` for a global OOM.
    pub oom_memcg: Option<String>,
}

/// The kernel log, read from where it ended when opened.
#[derive(Debug)]
pub struct KernelLog {
    file: File,
}

impl KernelLog {
    /// Opens `path` (`/dev/kmsg`) non-blocking, positioned after the last
    /// record.
    pub fn open(path: &Path) -> io::Result<KernelLog> {
        let mut file = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
            .open(path)?;
        file.seek(SeekFrom::End(0))?;
        Ok(KernelLog { file })
    }

    /// The OOM kills logged since the last call.
    pub fn oom_kills(&mut self) -> Vec<KernelKill> {
        let mut out = Vec::new();
        // One read returns one record; a record is at most 8 KiB.
        let mut buf = vec![0u8; 8192];
        loop {
            match self.file.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => {
                    if let Some(k) = parse_record(&String::from_utf8_lossy(&buf[..n])) {
                        out.push(k);
                    }
                }
                // Records were overwritten before we read them: go on.
                Err(e) if e.raw_os_error() == Some(libc::EPIPE) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                // EAGAIN (no more records) or anything else: stop.
                Err(_) => break,
            }
        }
        out
    }
}

/// Parses one `/dev/kmsg` record (`PRI,SEQ,TS,FLAGS;MESSAGE` then
/// continuation lines); `None` unless it is an `oom-kill:` summary.
pub fn parse_record(record: &str) -> Option<KernelKill> {
    let msg = record.split_once(';')?.1.lines().next()?;
    let fields = msg.strip_prefix("oom-kill:")?;
    let mut kill = KernelKill {
        pid: 0,
        comm: String::new(),
        task_memcg: String::new(),
        oom_memcg: None,
    };
    // `task=` comes last but for pid and uid; a comm may hold commas, so
    // it is the text between `,task=` and `,pid=`.
    let (head, tail) = fields.rsplit_once(",pid=")?;
    kill.pid = tail.split(',').next()?.parse().ok()?;
    let (head, comm) = head.rsplit_once(",task=")?;
    kill.comm = comm.to_string();
    for kv in head.split(',') {
        match kv.split_once('=') {
            Some(("task_memcg", v)) => kill.task_memcg = v.to_string(),
            Some(("oom_memcg", v)) => kill.oom_memcg = Some(v.to_string()),
            _ => {}
        }
    }
    (!kill.task_memcg.is_empty() && kill.pid > 0).then_some(kill)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_kernels_summary_line() {
        let r = "6,1234,3577679245,-;oom-kill:constraint=CONSTRAINT_MEMCG,nodemask=(null),cpuset=/,mems_allowed=0,oom_memcg=/a/job,task_memcg=/a/job/svc,task=bpfoom-bench,pid=413,uid=0\n SUBSYSTEM=x\n";
        assert_eq!(
            parse_record(r),
            Some(KernelKill {
                pid: 413,
                comm: "bpfoom-bench".into(),
                task_memcg: "/a/job/svc".into(),
                oom_memcg: Some("/a/job".into()),
            })
        );
    }

    #[test]
    fn a_global_oom_and_an_odd_comm() {
        let r = "6,9,1,-;oom-kill:constraint=CONSTRAINT_NONE,nodemask=(null),cpuset=/,mems_allowed=0,global_oom,task_memcg=/user.slice,task=a,b=c,pid=77,uid=1000";
        let k = parse_record(r).unwrap();
        assert_eq!((k.pid, k.comm.as_str(), k.oom_memcg), (77, "a,b=c", None));
        assert_eq!(k.task_memcg, "/user.slice");
    }

    #[test]
    fn other_records_and_garbage() {
        for r in [
            "",
            "garbage",
            "6,1,1,-;Memory cgroup out of memory: Killed process 413 (x)",
            "6,1,1,-;oom-kill:task_memcg=/a,task=x,pid=notanumber,uid=0",
            "6,1,1,-;oom-kill:constraint=X,task=x,pid=5,uid=0",
        ] {
            assert_eq!(parse_record(r), None, "{r:?}");
        }
    }
}
