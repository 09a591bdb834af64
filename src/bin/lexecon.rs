//! The `lexecon` command. All logic lives in the library (`lexecon::cli`).
#![deny(unsafe_code)]
fn main() -> std::process::ExitCode {
    lexecon::cli::main_lexecon()
}
