//! The `lexecon` command. All logic lives in the library (`lexecon::cli`).
fn main() -> std::process::ExitCode {
    lexecon::cli::main_lexecon()
}
