//! The Debian package, end to end without installing it: `dist/build-deb`
//! builds it (cargo-deb), its file list and conffiles are checked, it is
//! unpacked with `dpkg-deb -x` into a temporary directory, and the unpacked
//! binary runs: `--version` names the commit, every shipped policy
//! verifies, the shipped config starts the daemon on a fixture cgroup tree,
//! and the shipped unit passes `systemd-analyze verify` against the
//! unpacked tree.

#![allow(clippy::unwrap_used)]

use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

fn have(tool: &str, arg: &str) -> bool {
    Command::new(tool)
        .arg(arg)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok()
}

fn run(cmd: &mut Command) -> Output {
    let o = cmd.output().unwrap();
    assert!(
        o.status.success(),
        "{cmd:?}: {}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    o
}

fn text(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
fn deb_builds_with_its_contents_and_the_unpacked_binary_runs() {
    let root = bpfoom_testutil::repo_root();
    let bin = PathBuf::from(env!("CARGO_BIN_EXE_bpfoom"));
    // The package takes target/release/bpfoom: only a release test run
    // packages the binary under test.
    if !bpfoom_testutil::require(
        bin == root.join("target/release/bpfoom"),
        "package test: run with --release (it packages target/release/bpfoom)",
    ) {
        return;
    }
    for (tool, arg) in [
        ("cargo-deb", "--version"),
        ("dpkg-deb", "--version"),
        ("clang", "--version"),
        ("systemd-analyze", "--version"),
    ] {
        if !bpfoom_testutil::require(have(tool, arg), &format!("package test: {tool} missing")) {
            return;
        }
    }
    let o = run(Command::new(root.join("dist/build-deb")).arg("--no-build"));
    let deb = PathBuf::from(text(&o).lines().last().unwrap().trim());
    assert!(deb.exists(), "{}", deb.display());

    let list = text(&run(Command::new("dpkg-deb").arg("-c").arg(&deb)));
    let files: Vec<&str> = list
        .lines()
        .filter_map(|l| l.split_whitespace().nth(5))
        .collect();
    let mut want = vec![
        "./usr/bin/bpfoom".to_string(),
        "./usr/lib/systemd/system/bpfoom.service".into(),
        "./etc/bpfoom/bpfoom.toml".into(),
        "./usr/include/bpfoom/bpf_oom.h".into(),
        "./usr/share/man/man1/bpfoom.1.gz".into(),
        "./usr/share/man/man1/bpfoom-run.1.gz".into(),
        "./usr/share/man/man1/bpfoom-reload.1.gz".into(),
        "./usr/share/bash-completion/completions/bpfoom".into(),
        "./usr/share/zsh/vendor-completions/_bpfoom".into(),
        "./usr/share/fish/vendor_completions.d/bpfoom.fish".into(),
        "./usr/share/doc/bpfoom/README.md".into(),
    ];
    for src in bpfoom_testutil::policy_sources() {
        let name = src
            .file_name()
            .unwrap()
            .to_string_lossy()
            .replace(".bpf.c", ".bpf.o");
        want.push(format!("./usr/lib/bpfoom/{name}"));
    }
    for w in &want {
        assert!(
            files.contains(&w.as_str()),
            "{w} not in the package:\n{list}"
        );
    }

    let tmp = bpfoom_testutil::scratch("deb");
    let ctl = tmp.join("control");
    run(Command::new("dpkg-deb").arg("-e").arg(&deb).arg(&ctl));
    let conffiles = std::fs::read_to_string(ctl.join("conffiles")).unwrap();
    assert_eq!(conffiles.trim(), "/etc/bpfoom/bpfoom.toml");
    let control = std::fs::read_to_string(ctl.join("control")).unwrap();
    assert!(control.contains("Package: bpfoom\n"), "{control}");
    // Not enabled or started by the package: no maintainer script does it.
    for s in ["postinst", "prerm"] {
        let p = ctl.join(s);
        let body = std::fs::read_to_string(&p).unwrap_or_default();
        assert!(!body.contains("systemctl start"), "{s}: {body}");
    }

    let fs = tmp.join("root");
    run(Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&fs));
    let ubin = fs.join("usr/bin/bpfoom");
    let v = text(&run(Command::new(&ubin).arg("--version")));
    let commit = v
        .trim()
        .strip_prefix(concat!("bpfoom ", env!("CARGO_PKG_VERSION"), " ("))
        .and_then(|r| r.strip_suffix(')'))
        .unwrap_or_else(|| panic!("{v}"));
    assert!(
        commit == "unknown" || commit.chars().all(|c| c.is_ascii_hexdigit()),
        "{v}"
    );
    let lib = fs.join("usr/lib/bpfoom");
    for e in std::fs::read_dir(&lib).unwrap().flatten() {
        let o = Command::new(&ubin)
            .arg("verify")
            .arg(e.path())
            .output()
            .unwrap();
        assert!(
            o.status.success(),
            "{}: {}",
            e.path().display(),
            String::from_utf8_lossy(&o.stderr)
        );
    }

    // The shipped config as shipped (only the install prefix and the
    // machine-specific paths point into the test's own tree): it starts
    // the daemon on a fixture cgroup tree with its instance at "/".
    let fx = bpfoom_testutil::fixture::fixture_copy("deb-fixture");
    let shipped = std::fs::read_to_string(fs.join("etc/bpfoom/bpfoom.toml")).unwrap();
    let cfg = shipped
        .replace("/usr/lib/bpfoom/", &format!("{}/", lib.display()))
        .replace("\"/run/bpfoom/", &format!("\"{}/", tmp.display()))
        .replace("127.0.0.1:9464", "127.0.0.1:0")
        .replace(
            "# cgroup_root = \"/sys/fs/cgroup/memory\"",
            &format!("cgroup_root = \"{}\"", fx.join("v2").display()),
        )
        .replace(
            "# proc_root = \"/proc\"",
            &format!("proc_root = \"{}\"", fx.join("proc").display()),
        );
    assert_ne!(cfg, shipped);
    let cfg_path = tmp.join("bpfoom.toml");
    std::fs::write(&cfg_path, &cfg).unwrap();
    let mut d = Command::new(&ubin)
        .args(["run", "--no-mlock", "--config"])
        .arg(&cfg_path)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let sock = tmp.join("bpfoom.sock");
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::os::unix::net::UnixStream::connect(&sock).is_err() {
        if Instant::now() > deadline || d.try_wait().unwrap().is_some() {
            let _ = d.kill();
            let o = d.wait_with_output().unwrap();
            panic!(
                "the shipped config did not start: {}",
                String::from_utf8_lossy(&o.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let st = Command::new(&ubin)
        .args(["status", "--json", "--socket"])
        .arg(&sock)
        .output()
        .unwrap();
    let st: serde_json::Value = serde_json::from_slice(&st.stdout).unwrap();
    assert_eq!(st["instances"][0]["name"], "largest_rss", "{st}");
    assert_eq!(st["instances"][0]["cgroup"], "/", "{st}");
    // SIGTERM: restores the fixture and exits 0.
    let _ = Command::new("kill").arg(d.id().to_string()).status();
    let o = d.wait_with_output().unwrap();
    assert!(
        o.status.success(),
        "{:?} {}",
        o.status,
        String::from_utf8_lossy(&o.stderr)
    );

    // The unit against the unpacked tree (its ExecStart and ExecReload
    // binaries, its man pages for Documentation=).
    std::fs::create_dir_all(fs.join("bin")).unwrap();
    std::fs::copy("/bin/kill", fs.join("bin/kill")).unwrap();
    let o = Command::new("systemd-analyze")
        .arg("verify")
        .arg(format!("--root={}", fs.display()))
        .arg("bpfoom.service")
        .env("MANPATH", fs.join("usr/share/man"))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        o.status.success() && err.trim().is_empty(),
        "systemd-analyze verify: {err}"
    );
    std::fs::remove_dir_all(&fx).unwrap();
    std::fs::remove_dir_all(&tmp).unwrap();
}
