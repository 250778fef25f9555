//! A bpfoom daemon under test or benchmark: the process, its control
//! socket, the JSON decision records it prints on stdout, and its stderr.
//! Whoever runs it builds the command line (`bpfoomd run ...`, the VM
//! guest's `daemon run --config ...`, the benchmark's own binary).

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::Receiver;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

/// How a stdout line that is not JSON is taken.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NonJson {
    /// A test failure: the daemon must print records only.
    Panic,
    /// Kept as `{"raw": line}` (a run that reports, rather than asserts).
    Keep,
}

/// Where a daemon's output goes besides the records kept in memory.
#[derive(Debug, Default)]
pub struct Output {
    /// A file (created anew) that gets every stdout line as printed.
    pub records: Option<PathBuf>,
    /// A file (created anew) that gets stderr instead of memory
    /// ([`DaemonProc::stderr`] reads it back).
    pub stderr: Option<PathBuf>,
}

/// A running daemon; stopped with SIGTERM (then SIGKILL) on drop.
pub struct DaemonProc {
    /// The process.
    pub child: Child,
    /// Its control socket.
    pub socket: PathBuf,
    /// Its state file.
    pub state: PathBuf,
    /// Records received so far.
    pub seen: Vec<Value>,
    records: Receiver<String>,
    errs: Arc<Mutex<String>>,
    /// Set by the stderr reader at end of file.
    errs_done: Arc<AtomicBool>,
    /// The process has been waited for (its last stderr bytes may still be
    /// on their way to `errs`).
    exited: bool,
    /// Where stderr goes when not to `errs`.
    err_file: Option<PathBuf>,
    non_json: NonJson,
    /// How many of `seen` [`DaemonProc::take_record`] has consumed.
    taken: usize,
}

impl DaemonProc {
    /// Starts `cmd`, whose control socket is `socket` and state file
    /// `state`; stdout is read as records, stderr collected.
    pub fn spawn(
        cmd: &mut Command,
        socket: PathBuf,
        state: PathBuf,
        non_json: NonJson,
    ) -> std::io::Result<DaemonProc> {
        Self::spawn_with(cmd, socket, state, non_json, Output::default())
    }

    /// [`DaemonProc::spawn`] with the output also going to files.
    pub fn spawn_with(
        cmd: &mut Command,
        socket: PathBuf,
        state: PathBuf,
        non_json: NonJson,
        output: Output,
    ) -> std::io::Result<DaemonProc> {
        let create = |p: &Option<PathBuf>| p.as_ref().map(std::fs::File::create).transpose();
        let (tee, err) = (create(&output.records)?, create(&output.stderr)?);
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(err.map_or_else(Stdio::piped, Stdio::from))
            .spawn()?;
        let records = crate::read_lines_tee(child.stdout.take(), tee);
        let errs = Arc::new(Mutex::new(String::new()));
        let errs_done = Arc::new(AtomicBool::new(true));
        if let Some(err) = child.stderr.take() {
            errs_done.store(false, Ordering::Release);
            let (e2, done) = (errs.clone(), errs_done.clone());
            std::thread::spawn(move || {
                for l in BufReader::new(err).lines().map_while(Result::ok) {
                    if let Ok(mut s) = e2.lock() {
                        s.push_str(&l);
                        s.push('\n');
                    }
                }
                done.store(true, Ordering::Release);
            });
        }
        Ok(DaemonProc {
            child,
            socket,
            state,
            seen: Vec::new(),
            records,
            errs,
            errs_done,
            exited: false,
            err_file: output.stderr,
            non_json,
            taken: 0,
        })
    }

    /// Waits until the control socket answers (the daemon is ready); false
    /// when it exited or the time ran out.
    pub fn wait_ready(&mut self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                self.exited = true;
                return false;
            }
            if std::os::unix::net::UnixStream::connect(&self.socket).is_ok() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }

    /// Waits until stderr contains `what`.
    pub fn wait_stderr(&self, what: &str, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while !self.stderr().contains(what) {
            if Instant::now() > deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        true
    }

    /// stderr so far.
    pub fn stderr(&self) -> String {
        if self.exited {
            // What the process wrote before it exited is what a test asks
            // about then: let the reader reach the end of the pipe (bounded,
            // in case a child of the daemon still holds it open).
            let deadline = Instant::now() + Duration::from_secs(2);
            while !self.errs_done.load(Ordering::Acquire) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(5));
            }
        }
        match &self.err_file {
            Some(p) => std::fs::read_to_string(p).unwrap_or_default(),
            None => self.errs.lock().map(|s| s.clone()).unwrap_or_default(),
        }
    }

    /// The last `max` bytes of stderr (for a failure message).
    pub fn stderr_tail(&self, max: usize) -> String {
        let s = self.stderr();
        let cut = s.len().saturating_sub(max);
        let at = s
            .char_indices()
            .find(|&(i, _)| i >= cut)
            .map_or(s.len(), |(i, _)| i);
        s[at..].to_string()
    }

    fn pump(&mut self, wait: Duration) -> bool {
        match self.records.recv_timeout(wait) {
            Ok(l) => {
                self.keep(&l);
                true
            }
            Err(_) => false,
        }
    }

    fn keep(&mut self, l: &str) {
        let v = match (serde_json::from_str(l), self.non_json) {
            (Ok(v), _) => v,
            (Err(e), NonJson::Panic) => panic!("stdout line is not JSON ({e}): {l}"),
            (Err(_), NonJson::Keep) => serde_json::json!({ "raw": l }),
        };
        self.seen.push(v);
    }

    /// Once the daemon has exited: collects every record it printed, until
    /// its stdout closes (its guardian holds it too) or `timeout` passes.
    pub fn collect_to_end(&mut self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            match self.records.recv_timeout(left) {
                Ok(l) => self.keep(&l),
                Err(_) => break,
            }
        }
    }

    /// Collects the records already printed, without waiting.
    pub fn poll(&mut self) {
        while self.pump(Duration::ZERO) {}
    }

    /// Waits for a record matching `f` (earlier ones included); returns it.
    pub fn wait_record(&mut self, timeout: Duration, f: impl Fn(&Value) -> bool) -> Option<Value> {
        let deadline = Instant::now() + timeout;
        let mut i = 0;
        loop {
            while i < self.seen.len() {
                if f(&self.seen[i]) {
                    return Some(self.seen[i].clone());
                }
                i += 1;
            }
            let left = deadline.checked_duration_since(Instant::now())?;
            self.pump(left.min(Duration::from_millis(50)));
        }
    }

    /// The next record matching `f` that no earlier call returned, waiting
    /// up to `timeout` for it (a stream of records taken one by one).
    pub fn take_record(&mut self, timeout: Duration, f: impl Fn(&Value) -> bool) -> Option<Value> {
        let deadline = Instant::now() + timeout;
        loop {
            while self.taken < self.seen.len() {
                self.taken += 1;
                if f(&self.seen[self.taken - 1]) {
                    return Some(self.seen[self.taken - 1].clone());
                }
            }
            let left = deadline.checked_duration_since(Instant::now())?;
            self.pump(left.min(Duration::from_millis(50)));
        }
    }

    /// Collects records for `d`.
    pub fn drain(&mut self, d: Duration) {
        let deadline = Instant::now() + d;
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            self.pump(left.min(Duration::from_millis(50)));
        }
    }

    /// Records whose `event` is `ev`.
    pub fn events(&self, ev: &str) -> Vec<Value> {
        self.seen
            .iter()
            .filter(|r| r["event"] == ev)
            .cloned()
            .collect()
    }

    /// Sends a signal through a pidfd.
    pub fn signal(&self, sig: i32) {
        crate::signal(self.child.id() as i32, sig).expect("signal the daemon");
    }

    /// Its pid.
    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// Waits for exit.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(Some(s)) = self.child.try_wait() {
                self.exited = true;
                return Some(s);
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// SIGTERM (the daemon restores what it changed), up to `grace` for it
    /// to exit, then SIGKILL; the exit status when it exited by itself.
    pub fn stop(&mut self, grace: Duration) -> Option<ExitStatus> {
        if let Ok(Some(s)) = self.child.try_wait() {
            self.exited = true;
            return Some(s);
        }
        let _ = crate::signal(self.pid(), libc::SIGTERM);
        let st = self.wait_exit(grace);
        if st.is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
            self.exited = true;
        }
        st
    }
}

impl Drop for DaemonProc {
    fn drop(&mut self) {
        self.stop(Duration::from_secs(10));
    }
}
