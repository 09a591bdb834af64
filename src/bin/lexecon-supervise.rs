//! `lexecon-supervise`: the same as `lexecon supervise`.
fn main() -> std::process::ExitCode {
    lexecon::cli::main_supervise()
}
