//! `lexecon-supervise`: the same as `lexecon supervise`.
#![deny(unsafe_code)]
fn main() -> std::process::ExitCode {
    lexecon::cli::main_supervise()
}
