//! `bpfoom btf`: bpfoom's host BTF as a raw BTF file, the libbpf way.
//!
//! Real kernels publish their types at `/sys/kernel/btf/vmlinux`, and policy
//! authors run `bpftool btf dump file ... format c > vmlinux.h`. bpfoom's host
//! is not a kernel, so it writes the same kind of file for its own host types
//! (the kernel objects, stat/event enums, iterator and struct_ops types a policy
//! sees). A policy then includes that `vmlinux.h` and, after it, `bpf_oom.h`,
//! which skips its own type definitions when `__VMLINUX_H__` is defined and
//! supplies the kfunc declarations and macros (bpftool does not print kfunc
//! prototypes).

use std::io::Write;
use std::path::PathBuf;

use crate::CliError;

/// Arguments of `bpfoom btf`.
#[derive(clap::Args, Debug)]
pub struct BtfArgs {
    /// Where to write the raw BTF (default: standard output).
    #[arg(short = 'o', long = "output", value_name = "FILE")]
    pub output: Option<PathBuf>,
}

/// Writes the host BTF to the file named by `args`, or to `out`.
pub fn run(args: &BtfArgs, out: &mut dyn Write) -> Result<(), CliError> {
    let blob = bpfoom_abi::types::HostTypes::get().btf();
    match &args.output {
        Some(path) => std::fs::write(path, &blob).map_err(CliError::file(path)),
        None => Ok(out.write_all(&blob)?),
    }
}
