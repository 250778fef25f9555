//! The host side of the VM harness: Debian's kernel, an initramfs holding
//! busybox and `bpfoom-vmguest`, a qemu boot with TCG, and the results read
//! back from the serial console.
//!
//! Nothing here needs root. What cannot be had (qemu, the kernel package,
//! busybox) is a [`VmError::Unavailable`], which tests turn into a skip.

use std::collections::BTreeSet;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::cpio::Archive;
use crate::guest::RESULT_PREFIX;

/// What went wrong setting up or running a VM.
#[derive(Debug, thiserror::Error)]
pub enum VmError {
    /// A prerequisite is missing on this machine (tests skip).
    #[error("unavailable: {0}")]
    Unavailable(String),
    /// Something that should have worked did not.
    #[error("{0}")]
    Failed(String),
}

fn unavailable(s: impl Into<String>) -> VmError {
    VmError::Unavailable(s.into())
}

fn failed(s: impl Into<String>) -> VmError {
    VmError::Failed(s.into())
}

/// Finds an executable in `$PATH`.
pub fn which(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// `qemu-system-x86_64`, or why not.
pub fn qemu() -> Result<PathBuf, VmError> {
    which("qemu-system-x86_64").ok_or_else(|| {
        unavailable("qemu-system-x86_64 not found (apt-get install qemu-system-x86)")
    })
}

/// busybox (busybox-static preferred; a dynamic one gets its libraries).
pub fn busybox() -> Result<PathBuf, VmError> {
    ["/bin/busybox", "/usr/bin/busybox"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.is_file())
        .ok_or_else(|| unavailable("busybox not found (apt-get install busybox-static)"))
}

fn run(cmd: &mut Command) -> Result<String, VmError> {
    let out = cmd
        .output()
        .map_err(|e| unavailable(format!("{cmd:?}: {e}")))?;
    if !out.status.success() {
        return Err(unavailable(format!(
            "{cmd:?}: {}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Debian's kernel: `$BPFOOM_VM_KERNEL`, else a `vmlinuz-*` cached in
/// `cache`, else the image package that `linux-image-amd64` depends on,
/// fetched with `apt-get download` and unpacked with `dpkg-deb` (nothing
/// is installed).
pub fn kernel(cache: &Path) -> Result<PathBuf, VmError> {
    if let Some(k) = std::env::var_os("BPFOOM_VM_KERNEL") {
        let k = PathBuf::from(k);
        return if k.is_file() {
            Ok(k)
        } else {
            Err(failed(format!(
                "BPFOOM_VM_KERNEL={} is not a file",
                k.display()
            )))
        };
    }
    let boot = cache.join("boot");
    if let Some(k) = find_vmlinuz(&boot) {
        return Ok(k);
    }
    // Concurrent test runs share the cache: each downloads into its own
    // directory and renames the image into place (atomic on one fs).
    let work = cache.join(format!("download-{}", std::process::id()));
    std::fs::create_dir_all(&work).map_err(|e| failed(format!("{}: {e}", work.display())))?;
    let r = download_kernel(&work, &boot);
    let _ = std::fs::remove_dir_all(&work);
    r
}

fn download_kernel(work: &Path, boot: &Path) -> Result<PathBuf, VmError> {
    let deps = run(Command::new("apt-cache").args(["depends", "linux-image-amd64"]))?;
    let pkg = deps
        .lines()
        .filter_map(|l| l.trim().strip_prefix("Depends: "))
        .find(|p| p.starts_with("linux-image-"))
        .ok_or_else(|| unavailable("apt-cache: linux-image-amd64 has no image dependency"))?
        .to_string();
    run(Command::new("apt-get")
        .args(["download", "-q", &pkg])
        .current_dir(work))?;
    let deb = std::fs::read_dir(work)
        .map_err(|e| failed(format!("{}: {e}", work.display())))?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|x| x == "deb"))
        .ok_or_else(|| failed(format!("apt-get download {pkg} left no .deb")))?;
    run(Command::new("sh")
        .arg("-c")
        .arg("dpkg-deb --fsys-tarfile \"$0\" | tar -x --wildcards './boot/vmlinuz-*'")
        .arg(&deb)
        .current_dir(work))?;
    let img = find_vmlinuz(&work.join("boot"))
        .ok_or_else(|| failed(format!("no vmlinuz in {}", deb.display())))?;
    std::fs::create_dir_all(boot).map_err(|e| failed(format!("{}: {e}", boot.display())))?;
    let dest = boot.join(img.file_name().unwrap_or_default());
    std::fs::rename(&img, &dest).map_err(|e| failed(format!("{}: {e}", dest.display())))?;
    Ok(dest)
}

fn find_vmlinuz(dir: &Path) -> Option<PathBuf> {
    std::fs::read_dir(dir)
        .ok()?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("vmlinuz-"))
        })
        .max()
}

/// The shared libraries `ldd` lists for an ELF file (none for a static one).
pub fn shared_libs(elf: &Path) -> Result<Vec<PathBuf>, VmError> {
    let out = Command::new("ldd")
        .arg(elf)
        .output()
        .map_err(|e| unavailable(format!("ldd: {e}")))?;
    let text = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() || text.contains("statically linked") {
        return Ok(Vec::new());
    }
    Ok(text
        .lines()
        .filter_map(|l| {
            let l = l.trim();
            let p = l.split_once("=>").map_or(l, |(_, r)| r.trim());
            let p = p.split_whitespace().next()?;
            p.starts_with('/').then(|| PathBuf::from(p))
        })
        .collect())
}

/// An initramfs being assembled.
pub struct Initramfs {
    archive: Archive,
    dirs: BTreeSet<String>,
    files: BTreeSet<String>,
}

impl Default for Initramfs {
    fn default() -> Self {
        Self::new()
    }
}

impl Initramfs {
    /// An initramfs with the usual top-level directories.
    pub fn new() -> Self {
        let mut me = Initramfs {
            archive: Archive::new(),
            dirs: BTreeSet::new(),
            files: BTreeSet::new(),
        };
        for d in ["/bin", "/dev", "/proc", "/sys", "/run", "/tmp", "/etc"] {
            me.dir(d);
        }
        me
    }

    fn dir(&mut self, path: &str) {
        let mut cur = String::new();
        for part in path.split('/').filter(|p| !p.is_empty()) {
            cur.push('/');
            cur.push_str(part);
            if self.dirs.insert(cur.clone()) {
                self.archive.dir(&cur);
            }
        }
    }

    fn parent(&mut self, path: &str) {
        if let Some((p, _)) = path.rsplit_once('/') {
            self.dir(p);
        }
    }

    /// Adds a file with the given contents.
    pub fn bytes(&mut self, guest: &str, perm: u32, data: &[u8]) -> &mut Self {
        self.parent(guest);
        self.archive.file(guest, perm, data);
        self
    }

    /// Copies a host file.
    pub fn copy(&mut self, host: &Path, guest: &str, perm: u32) -> Result<&mut Self, VmError> {
        let data = std::fs::read(host).map_err(|e| failed(format!("{}: {e}", host.display())))?;
        Ok(self.bytes(guest, perm, &data))
    }

    /// Copies an executable and the shared libraries it needs (at their
    /// host paths, so the dynamic loader finds them).
    pub fn elf(&mut self, host: &Path, guest: &str) -> Result<&mut Self, VmError> {
        self.copy(host, guest, 0o755)?;
        for lib in shared_libs(host)? {
            let g = lib.to_string_lossy().into_owned();
            if self.files.insert(g.clone()) {
                self.copy(&lib, &g, 0o755)?;
            }
        }
        Ok(self)
    }

    /// Copies the files below `host` whose relative paths `keep` accepts
    /// (directories included: a rejected directory is skipped whole);
    /// shared objects get their libraries too.
    pub fn tree(&mut self, host: &Path, keep: &dyn Fn(&str) -> bool) -> Result<&mut Self, VmError> {
        let mut stack = vec![host.to_path_buf()];
        while let Some(dir) = stack.pop() {
            let rd =
                std::fs::read_dir(&dir).map_err(|e| failed(format!("{}: {e}", dir.display())))?;
            for e in rd.flatten() {
                let p = e.path();
                let name = e.file_name().to_string_lossy().into_owned();
                if !keep(&name) {
                    continue;
                }
                let guest = p.to_string_lossy().into_owned();
                if p.is_dir() {
                    self.dir(&guest);
                    stack.push(p);
                } else if name.ends_with(".so") {
                    self.elf(&p, &guest)?;
                } else if p.is_file() {
                    self.copy(&p, &guest, 0o644)?;
                }
            }
        }
        Ok(self)
    }

    /// A symbolic link.
    pub fn symlink(&mut self, guest: &str, target: &str) -> &mut Self {
        self.parent(guest);
        self.archive.symlink(guest, target);
        self
    }

    /// The archive bytes.
    pub fn finish(self) -> Vec<u8> {
        self.archive.finish()
    }
}

/// `/init`: mounts proc, sysfs, devtmpfs, cgroup2 and tmpfs, runs `body`
/// (shell lines), and powers off.
pub fn init_script(body: &str) -> String {
    format!(
        "#!/bin/busybox sh\n\
         /bin/busybox --install -s /bin\n\
         export PATH=/bin\n\
         mount -t proc proc /proc\n\
         mount -t sysfs sysfs /sys\n\
         mount -t devtmpfs devtmpfs /dev\n\
         mount -t cgroup2 cgroup2 /sys/fs/cgroup\n\
         mount -t tmpfs tmpfs /run\n\
         mount -t tmpfs tmpfs /tmp\n\
         echo \"BPFOOM-VM-BOOTED uptime=$(cut -d' ' -f1 /proc/uptime) $(uname -r) controllers=$(cat /sys/fs/cgroup/cgroup.controllers | tr ' ' ,)\"\n\
         {body}\n\
         echo BPFOOM-VM-END\n\
         poweroff -f\n"
    )
}

/// How to boot.
#[derive(Clone, Debug)]
pub struct Boot {
    /// The kernel image.
    pub kernel: PathBuf,
    /// The initramfs.
    pub initrd: PathBuf,
    /// Extra kernel command line.
    pub append: String,
    /// Guest memory, MiB.
    pub mem_mb: u32,
    /// Guest CPUs.
    pub smp: u32,
    /// Kill qemu after this long.
    pub timeout: Duration,
    /// Use KVM instead of TCG (hangs under nested virtualisation here).
    pub kvm: bool,
}

/// What a boot printed.
#[derive(Debug)]
pub struct Serial {
    /// Everything on the serial console.
    pub text: String,
    /// Wall-clock time of the boot.
    pub elapsed: Duration,
    /// Whether qemu had to be killed at the timeout.
    pub timed_out: bool,
}

/// Boots qemu and collects the serial console until it powers off.
pub fn boot(b: &Boot) -> Result<Serial, VmError> {
    let qemu = qemu()?;
    let start = Instant::now();
    let mut child = Command::new(qemu)
        .args(["-accel", if b.kvm { "kvm" } else { "tcg" }])
        .args(["-m", &b.mem_mb.to_string(), "-smp", &b.smp.to_string()])
        .args(["-display", "none", "-serial", "stdio", "-monitor", "none"])
        .args(["-no-reboot", "-nodefaults"])
        .arg("-kernel")
        .arg(&b.kernel)
        .arg("-initrd")
        .arg(&b.initrd)
        .arg("-append")
        .arg(format!(
            "console=ttyS0 panic=-1 quiet loglevel=3 {}",
            b.append
        ))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| unavailable(format!("qemu-system-x86_64: {e}")))?;
    let mut out = child.stdout.take().ok_or_else(|| failed("qemu stdout"))?;
    let reader = std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = out.read_to_end(&mut buf);
        String::from_utf8_lossy(&buf).into_owned()
    });
    let mut timed_out = false;
    let status = loop {
        match child.try_wait() {
            Ok(Some(st)) => break Some(st),
            Ok(None) if start.elapsed() > b.timeout => {
                timed_out = true;
                let _ = child.kill();
                break child.wait().ok();
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(50)),
            Err(e) => return Err(failed(format!("waiting for qemu: {e}"))),
        }
    };
    let text = reader.join().unwrap_or_default();
    let mut err = String::new();
    if let Some(mut e) = child.stderr.take() {
        let _ = e.read_to_string(&mut err);
    }
    if !timed_out && !text.contains("BPFOOM-VM-BOOTED") {
        return Err(unavailable(format!(
            "qemu did not boot the guest ({status:?}): {}",
            err.trim()
        )));
    }
    Ok(Serial {
        text,
        elapsed: start.elapsed(),
        timed_out,
    })
}

/// The `BPFOOM-VM {json}` result lines of a serial log.
pub fn parse_results(serial: &str) -> Vec<serde_json::Value> {
    serial
        .lines()
        .filter_map(|l| {
            l.trim_end_matches('\r')
                .split_once(RESULT_PREFIX)
                .map(|(_, r)| r)
        })
        .filter_map(|r| serde_json::from_str(r).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn results_are_parsed_from_noisy_serial() {
        let s = "[    1.0] noise\r\nBPFOOM-VM {\"test\":\"a\",\"ok\":true}\r\nxx BPFOOM-VM {bad\nBPFOOM-VM {\"test\":\"b\",\"ok\":false}\n";
        let r = parse_results(s);
        assert_eq!(r.len(), 2);
        assert_eq!(r[0]["test"], "a");
        assert_eq!(r[1]["ok"], false);
    }

    #[test]
    fn initramfs_dirs_once_and_libs_of_a_dynamic_binary() {
        let mut i = Initramfs::new();
        i.bytes("/a/b/c", 0o644, b"x").bytes("/a/b/d", 0o644, b"y");
        let bytes = i.finish();
        let text = String::from_utf8_lossy(&bytes);
        assert_eq!(text.matches("a/b\0").count(), 1);
        // ldd on a dynamic system binary lists at least libc.
        if let Some(sh) = which("ls") {
            let libs = shared_libs(&sh).unwrap();
            if !libs.is_empty() {
                assert!(
                    libs.iter().any(|l| l.to_string_lossy().contains("libc.so")),
                    "{libs:?}"
                );
            }
        }
    }
}
