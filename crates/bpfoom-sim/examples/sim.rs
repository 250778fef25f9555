//! Runs one scenario, building `*.bpf.o` policies from their `.bpf.c`
//! sources on the fly: `cargo run -p bpfoom-sim --example sim -- FILE.toml`.

use std::path::Path;
use std::process::ExitCode;

use bpfoom_engine::Verifier;
use bpfoom_sim::{run_scenario, SimOptions};

fn load(policy: &str, base: &Path) -> Result<Vec<u8>, String> {
    let src = policy
        .strip_suffix(".o")
        .map(|s| format!("{s}.c"))
        .ok_or_else(|| format!("{policy}: expected a .bpf.o path"))?;
    let root = bpfoom_testutil::repo_root();
    let src = [root.join(&src), base.join(&src)]
        .into_iter()
        .find(|p| p.is_file())
        .ok_or_else(|| format!("no source for {policy}"))?;
    let obj = bpfoom_testutil::compile(&src, &[])?;
    std::fs::read(obj).map_err(|e| e.to_string())
}

fn main() -> ExitCode {
    let Some(path) = std::env::args().nth(1) else {
        eprintln!("usage: sim SCENARIO.toml");
        return ExitCode::from(2);
    };
    let path = Path::new(&path);
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("{}: {e}", path.display());
            return ExitCode::from(2);
        }
    };
    let opts = SimOptions {
        base_dir: path.parent().unwrap_or(Path::new(".")).to_path_buf(),
        loader: &load,
        check: &Verifier::default(),
        engine: Default::default(),
    };
    match run_scenario(
        &text,
        &path.display().to_string(),
        &opts,
        &mut std::io::stdout(),
    ) {
        Ok(o) => {
            for f in &o.failures {
                eprintln!("FAILED {f}");
            }
            ExitCode::from(o.exit_code())
        }
        Err(e) => {
            eprintln!("{e}");
            ExitCode::from(e.exit_code())
        }
    }
}
