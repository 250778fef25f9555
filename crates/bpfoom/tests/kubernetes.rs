//! dist/kubernetes: the manifests parse, and the fields the daemon relies
//! on agree with each other and with the daemon (the ConfigMap's config is
//! valid for `bpfoom run`, its metrics port is the probed and scraped
//! port, its paths are the DaemonSet's mounts, its policies are shipped in
//! the image). `kubectl apply --dry-run=client` needs an API server even
//! in client mode: it runs only when one answers.

#![allow(clippy::unwrap_used)]

use std::path::PathBuf;

use yaml_rust2::{Yaml, YamlLoader};

fn dist() -> PathBuf {
    bpfoom_testutil::repo_root().join("dist")
}

fn load(name: &str) -> Yaml {
    let p = dist().join("kubernetes").join(name);
    let text = std::fs::read_to_string(&p).unwrap();
    let mut docs = YamlLoader::load_from_str(&text).unwrap_or_else(|e| panic!("{name}: {e}"));
    assert_eq!(docs.len(), 1, "{name}: one document");
    docs.remove(0)
}

fn s<'a>(y: &'a Yaml, what: &str) -> &'a str {
    y.as_str()
        .unwrap_or_else(|| panic!("{what}: not a string: {y:?}"))
}

#[test]
fn daemonset_and_configmap_carry_what_the_daemon_needs() {
    let ds = load("daemonset.yaml");
    let cm = load("configmap.yaml");
    assert_eq!(s(&ds["kind"], "kind"), "DaemonSet");
    assert_eq!(s(&cm["kind"], "kind"), "ConfigMap");
    assert_eq!(ds["metadata"]["namespace"], cm["metadata"]["namespace"]);
    let pod = &ds["spec"]["template"];
    let labels = &pod["metadata"]["labels"];
    for (k, v) in ds["spec"]["selector"]["matchLabels"].as_hash().unwrap() {
        assert_eq!(&labels[s(k, "label")], v, "selector matches the template");
    }
    let spec = &pod["spec"];
    assert_eq!(
        spec["hostPID"].as_bool(),
        Some(true),
        "victims are host pids"
    );
    let c = &spec["containers"][0];
    let sc = &c["securityContext"];
    assert_eq!(sc["privileged"].as_bool(), Some(false));
    let caps: Vec<&str> = sc["capabilities"]["add"]
        .as_vec()
        .unwrap()
        .iter()
        .map(|c| s(c, "capability"))
        .collect();
    for need in ["KILL", "SYS_RESOURCE", "IPC_LOCK"] {
        assert!(caps.contains(&need), "{need} in {caps:?}");
    }

    // Volumes: name -> host path or ConfigMap, and where they are mounted.
    let vols = spec["volumes"].as_vec().unwrap();
    let vol = |name: &str| {
        vols.iter()
            .find(|v| v["name"].as_str() == Some(name))
            .unwrap_or_else(|| panic!("no volume {name}"))
    };
    let mounts = c["volumeMounts"].as_vec().unwrap();
    let mount_of = |host: &str| {
        let v = vols
            .iter()
            .find(|v| v["hostPath"]["path"].as_str() == Some(host))
            .unwrap_or_else(|| panic!("no hostPath {host}"));
        let m = mounts
            .iter()
            .find(|m| m["name"] == v["name"])
            .unwrap_or_else(|| panic!("hostPath {host} not mounted"));
        (
            s(&m["mountPath"], "mountPath").to_string(),
            m["readOnly"].as_bool() == Some(true),
        )
    };
    assert_eq!(mount_of("/sys/fs/cgroup"), ("/sys/fs/cgroup".into(), false));
    let (proc_mount, ro) = mount_of("/proc");
    assert!(ro, "the host's /proc is mounted read-only");
    let (run_mount, _) = mount_of("/run/bpfoom");
    assert_eq!(
        s(&vol("config")["configMap"]["name"], "configMap"),
        s(&cm["metadata"]["name"], "name")
    );
    let cfg_mount = mounts
        .iter()
        .find(|m| m["name"].as_str() == Some("config"))
        .map(|m| s(&m["mountPath"], "mountPath"))
        .unwrap();

    // The config as the daemon reads it.
    let text = s(&cm["data"]["bpfoom.toml"], "data.bpfoom.toml");
    let cfg = bpfoom_daemon::Config::parse(text, "configmap.yaml:bpfoom.toml")
        .unwrap_or_else(|e| panic!("{e}"));
    let args: Vec<&str> = c["args"]
        .as_vec()
        .unwrap()
        .iter()
        .map(|a| s(a, "arg"))
        .collect();
    let at = args.iter().position(|a| *a == "--config").unwrap();
    assert_eq!(args[at + 1], format!("{cfg_mount}/bpfoom.toml"), "{args:?}");
    assert_eq!(
        cfg.daemon.proc_root.as_deref(),
        Some(std::path::Path::new(&proc_mount))
    );
    for p in [&cfg.daemon.socket, &cfg.daemon.state_file] {
        assert!(
            p.as_ref().unwrap().starts_with(&run_mount),
            "{p:?} under {run_mount}"
        );
    }
    let metrics =
        bpfoom_daemon::metrics::parse_addr(cfg.daemon.metrics.as_deref().unwrap()).unwrap();
    assert!(
        metrics.ip().is_unspecified(),
        "the probe and Prometheus reach the pod IP, not loopback"
    );
    let port = c["ports"]
        .as_vec()
        .unwrap()
        .iter()
        .find(|p| p["name"].as_str() == Some("metrics"))
        .unwrap();
    assert_eq!(
        port["containerPort"].as_i64(),
        Some(i64::from(metrics.port()))
    );
    let probe = &c["readinessProbe"]["httpGet"];
    assert_eq!(s(&probe["path"], "probe path"), "/metrics");
    assert_eq!(s(&probe["port"], "probe port"), "metrics");
    let ann = &pod["metadata"]["annotations"];
    assert_eq!(s(&ann["prometheus.io/scrape"], "scrape"), "true");
    assert_eq!(
        s(&ann["prometheus.io/port"], "port"),
        metrics.port().to_string()
    );
    assert_eq!(s(&ann["prometheus.io/path"], "path"), "/metrics");

    // Policies from the image exist as example sources (built into
    // /usr/lib/bpfoom by the Containerfile).
    let containerfile = std::fs::read_to_string(dist().join("Containerfile")).unwrap();
    assert!(
        containerfile.contains("/usr/lib/bpfoom/"),
        "{containerfile}"
    );
    assert!(containerfile.contains(&format!("EXPOSE {}", metrics.port())));
    assert!(!cfg.attach.is_empty());
    for a in &cfg.attach {
        let p = a.policy.get_ref();
        let name = p
            .file_name()
            .unwrap()
            .to_string_lossy()
            .replace(".bpf.o", ".bpf.c");
        if p.starts_with("/usr/lib/bpfoom") {
            let src = bpfoom_testutil::repo_root()
                .join("bpf/policies")
                .join(&name);
            assert!(src.exists(), "{} is not a shipped policy", p.display());
        }
    }

    // An API server, when one answers, validates them too.
    let server = std::process::Command::new("kubectl")
        .args(["version", "--request-timeout=2s"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !server {
        // Not through eprintln!, which the harness captures for a passing test.
        use std::io::Write;
        let _ = writeln!(
            std::io::stderr(),
            "SKIP kubectl apply --dry-run=client: no kubectl or no API server answers"
        );
        return;
    }
    let o = std::process::Command::new("kubectl")
        .args(["apply", "--dry-run=client", "-f"])
        .arg(dist().join("kubernetes"))
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
}

/// `configmap-with-policies.sh` puts the config and compiled policies in one
/// ConfigMap: the same name and namespace as the shipped one, the config
/// byte for byte, and each policy as binaryData that decodes to an object
/// `bpfoom verify` accepts, under the key the config names below the
/// DaemonSet's mount of the ConfigMap.
#[test]
fn configmap_with_compiled_policies() {
    if !bpfoom_testutil::require_clang() {
        return;
    }
    let dir = std::env::temp_dir().join(format!("bpfoom-k8s-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let ds = load("daemonset.yaml");
    let mount = ds["spec"]["template"]["spec"]["containers"][0]["volumeMounts"]
        .as_vec()
        .unwrap()
        .iter()
        .find(|m| m["name"].as_str() == Some("config"))
        .map(|m| s(&m["mountPath"], "mountPath").to_string())
        .unwrap();
    let config = format!(
        "[daemon]\nlog_format = \"json\"\n\n[[attach]]\npolicy = \"{mount}/largest_rss.bpf.o\"\ncgroup = \"/\"\n"
    );
    let cfg = dir.join("bpfoom.toml");
    std::fs::write(&cfg, &config).unwrap();
    let src = bpfoom_testutil::repo_root().join("bpf/policies/largest_rss.bpf.c");
    let out = std::process::Command::new(dist().join("kubernetes/configmap-with-policies.sh"))
        .arg(&cfg)
        .arg(&src)
        .env("BPFOOM", env!("CARGO_BIN_EXE_bpfoom"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let cm = YamlLoader::load_from_str(&text).unwrap().remove(0);
    let shipped = load("configmap.yaml");
    assert_eq!(s(&cm["kind"], "kind"), "ConfigMap");
    assert_eq!(cm["metadata"], shipped["metadata"]);
    assert_eq!(s(&cm["data"]["bpfoom.toml"], "config"), config);
    let b64 = s(&cm["binaryData"]["largest_rss.bpf.o"], "binaryData");
    let mut dec = std::process::Command::new("base64")
        .arg("-d")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    dec.stdin.take().unwrap().write_all(b64.as_bytes()).unwrap();
    let obj = dec.wait_with_output().unwrap();
    assert!(obj.status.success());
    let path = dir.join("largest_rss.bpf.o");
    std::fs::write(&path, &obj.stdout).unwrap();
    let v = std::process::Command::new(env!("CARGO_BIN_EXE_bpfoom"))
        .arg("verify")
        .arg(&path)
        .output()
        .unwrap();
    assert!(
        v.status.success(),
        "{}{}",
        String::from_utf8_lossy(&v.stdout),
        String::from_utf8_lossy(&v.stderr)
    );
    // The config is valid for the daemon once the policy is where it says.
    let c = bpfoom_daemon::Config::parse(&config, "bpfoom.toml").unwrap();
    assert_eq!(
        c.attach[0].policy.get_ref(),
        &std::path::PathBuf::from(format!("{mount}/largest_rss.bpf.o"))
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
