//! `bpfoom` binary: all logic lives in the library so it can be tested.

fn main() -> std::process::ExitCode {
    bpfoom::main_with_args(std::env::args_os())
}
