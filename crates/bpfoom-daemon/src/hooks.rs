//! Hooks: commands run after a kill or a limit raise, like earlyoom's
//! notification scripts and oomd's prekill hooks, but never on the OOM
//! path: they start when the decision's records are flushed (the action
//! is already done), get the decision record as one JSON line on stdin,
//! run asynchronously, and are killed after their timeout.
//!
//! ```toml
//! [[hook]]
//! on = "kill"                       # or "limit_raise"
//! exec = ["/usr/local/bin/notify", "--channel", "oom"]
//! timeout_ms = 5000                 # default 5000
//! ```
//!
//! At most [`MAX_RUNNING`] hooks run at once; more are skipped (and the
//! skip is logged), so an OOM storm cannot turn into a fork storm. The
//! timeout is enforced on the daemon's loop passes (at least once a
//! second).

use std::io::Write;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde::Deserialize;

/// Hooks running at once, at most.
pub const MAX_RUNNING: usize = 16;
/// The default timeout.
pub const DEFAULT_TIMEOUT_MS: u64 = 5000;

/// What a hook runs after.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum HookOn {
    /// A `kill` record (by a policy or, when it is seen, the kernel).
    Kill,
    /// A `limit_raised` record.
    LimitRaise,
}

/// `[[hook]]`.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct HookSection {
    /// The event.
    pub on: HookOn,
    /// The program and its arguments (no shell).
    pub exec: Vec<String>,
    /// Kill it after this long, milliseconds.
    pub timeout_ms: Option<u64>,
}

/// The running hooks.
#[derive(Default)]
pub struct Hooks {
    hooks: Vec<HookSection>,
    running: Vec<(Child, Instant, String)>,
}

impl Hooks {
    /// The configured hooks.
    pub fn new(hooks: Vec<HookSection>) -> Hooks {
        Hooks {
            hooks,
            running: Vec::new(),
        }
    }

    /// Starts the hooks for a record (`event` its kind, `json` its line);
    /// returns what to log.
    pub fn fire(&mut self, event: &str, json: &str) -> Vec<String> {
        let on = match event {
            "kill" => HookOn::Kill,
            "limit_raised" => HookOn::LimitRaise,
            _ => return Vec::new(),
        };
        let mut log = Vec::new();
        for h in self.hooks.iter().filter(|h| h.on == on) {
            let Some((prog, args)) = h.exec.split_first() else {
                continue;
            };
            if self.running.len() >= MAX_RUNNING {
                log.push(format!(
                    "hook {prog}: skipped, {MAX_RUNNING} hooks still running"
                ));
                continue;
            }
            let child = Command::new(prog)
                .args(args)
                .stdin(Stdio::piped())
                .stdout(Stdio::null())
                .spawn();
            match child {
                Ok(mut c) => {
                    // One line, far below the pipe's buffer: this write
                    // does not block even if the hook never reads.
                    if let Some(mut stdin) = c.stdin.take() {
                        let _ = writeln!(stdin, "{json}");
                    }
                    let t = Duration::from_millis(h.timeout_ms.unwrap_or(DEFAULT_TIMEOUT_MS));
                    self.running.push((c, Instant::now() + t, prog.clone()));
                }
                Err(e) => log.push(format!("hook {prog}: cannot start: {e}")),
            }
        }
        log
    }

    /// Reaps finished hooks and kills those past their timeout; returns
    /// what to log.
    pub fn reap(&mut self, now: Instant) -> Vec<String> {
        let mut log = Vec::new();
        self.running
            .retain_mut(|(c, deadline, prog)| match c.try_wait() {
                Ok(Some(st)) if st.success() => false,
                Ok(Some(st)) => {
                    log.push(format!("hook {prog}: {st}"));
                    false
                }
                Ok(None) if now >= *deadline => {
                    let _ = c.kill();
                    let _ = c.wait();
                    log.push(format!("hook {prog}: timed out, killed"));
                    false
                }
                Ok(None) => true,
                Err(e) => {
                    log.push(format!("hook {prog}: {e}"));
                    false
                }
            });
        log
    }

    /// Hooks still running.
    pub fn running(&self) -> usize {
        self.running.len()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn hooks_get_the_record_and_time_out() {
        let dir = std::env::temp_dir().join(format!("bpfoom-hooks-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let out = dir.join("got");
        let mut h = Hooks::new(vec![
            HookSection {
                on: HookOn::Kill,
                exec: vec!["sh".into(), "-c".into(), format!("cat > {}", out.display())],
                timeout_ms: None,
            },
            HookSection {
                on: HookOn::Kill,
                exec: vec!["sleep".into(), "30".into()],
                timeout_ms: Some(50),
            },
        ]);
        assert!(h.fire("oom", "{}").is_empty());
        assert_eq!(h.running(), 0);
        assert!(h.fire("kill", "{\"event\":\"kill\",\"pid\":7}").is_empty());
        assert_eq!(h.running(), 2);
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut log = Vec::new();
        while h.running() > 0 && Instant::now() < deadline {
            log.extend(h.reap(Instant::now()));
            std::thread::sleep(Duration::from_millis(10));
        }
        assert_eq!(log, ["hook sleep: timed out, killed"]);
        assert_eq!(
            std::fs::read_to_string(&out).unwrap(),
            "{\"event\":\"kill\",\"pid\":7}\n"
        );
        let mut bad = Hooks::new(vec![HookSection {
            on: HookOn::LimitRaise,
            exec: vec!["/nonexistent/hook".into()],
            timeout_ms: None,
        }]);
        let l = bad.fire("limit_raised", "{}");
        assert!(
            l[0].starts_with("hook /nonexistent/hook: cannot start"),
            "{l:?}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
