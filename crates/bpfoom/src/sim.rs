//! `bpfoom sim`: run a scenario through the OOM engine on the simulated host.

use crate::CliError;
use bpfoom_sim::{run_scenario, SimOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

/// Arguments of `bpfoom sim`.
#[derive(clap::Args, Debug)]
pub struct SimArgs {
    /// Scenario file (TOML; see the simulator's scenario format).
    pub scenario: PathBuf,
}

/// Runs `bpfoom sim`: 0 when every expectation holds, 1 when one fails,
/// 2 for a bad scenario (file, line and reason).
pub fn run(a: &SimArgs, out: &mut dyn Write) -> Result<(), CliError> {
    let text = std::fs::read_to_string(&a.scenario).map_err(CliError::file(&a.scenario))?;
    // Absolute, so "not found" names a real directory (for `sim x.toml`
    // the parent is the empty path).
    let parent = a.scenario.parent().filter(|p| !p.as_os_str().is_empty());
    let base = std::path::absolute(parent.unwrap_or(Path::new(".")))
        .map_err(CliError::file(&a.scenario))?;
    run_text(
        &text,
        &a.scenario.display().to_string(),
        &base,
        &load_or_build,
        out,
    )
}

/// Runs scenario text with a policy loader and maps the outcome to exit codes.
pub fn run_text(
    text: &str,
    origin: &str,
    base: &Path,
    loader: &bpfoom_sim::PolicyLoader<'_>,
    out: &mut dyn Write,
) -> Result<(), CliError> {
    let check = bpfoom_engine::Verifier::default();
    let opts = SimOptions {
        base_dir: base.to_path_buf(),
        loader,
        check: &check,
        engine: bpfoom_engine::EngineConfig::default(),
    };
    match run_scenario(text, origin, &opts, out) {
        Ok(o) if o.failures.is_empty() => Ok(()),
        Ok(o) => Err(CliError::Expectations {
            origin: origin.into(),
            expects: o.expects,
            failures: o.failures,
        }),
        Err(e) => Err(e.into()),
    }
}

/// The scenario's `policy = "X.bpf.o"`: the object if it exists; otherwise,
/// when `X.bpf.c` sits beside it, compiled on the fly so that a fresh
/// checkout can run its scenarios without a build step.
fn load_or_build(policy: &str, base: &Path) -> Result<Vec<u8>, CliError> {
    let not_found = match bpfoom_sim::read_policy_file(policy, base) {
        Ok(bytes) => return Ok(bytes),
        Err(e) => e,
    };
    let src = policy.strip_suffix(".o").map(|s| format!("{s}.c"));
    let src = src
        .iter()
        .flat_map(|s| [base.join(s), PathBuf::from(s)])
        .find(|p| p.is_file());
    let Some(src) = src else {
        return Err(not_found.into());
    };
    let dir = crate::build::scratch_dir("sim")?;
    let obj = dir.join("policy.bpf.o");
    let built = crate::build::compile(&src, &obj, None);
    let bytes = built.and_then(|()| std::fs::read(&obj).map_err(CliError::file(&obj)));
    let _ = std::fs::remove_dir_all(&dir);
    bytes
}
