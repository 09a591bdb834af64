//! Command-line interface: argument parsing, output formatting, exit codes.
//! No logic of its own: every command calls into the library.
//!
//! Each command module owns its argument struct and a `run` function
//! returning the process exit code. An `Err` is printed once here, with a
//! fixed prefix, and mapped to the command's failure code.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

pub mod approve;
pub mod doctor;
pub mod export;
pub mod gate;
pub mod hash_cache;
pub mod init;
pub mod ledger;
pub mod locations;
pub mod policy;
pub mod policy_checks;
pub mod reader;
pub mod replay;
pub mod supervise;

/// Policy variables for a run started in `workspace`, with symlinks in
/// `HOME`, `TMPDIR` and the workspace resolved like the paths they are
/// compared with (the kernel resolves those). `policy check` uses the same,
/// so it prints the policy hash a run records.
pub fn vars_for(workspace: &std::path::Path) -> crate::policy::Vars {
    let v = crate::policy::Vars::from_env(workspace);
    let canon = |p: std::path::PathBuf| std::fs::canonicalize(&p).unwrap_or(p);
    crate::policy::Vars {
        home: canon(v.home),
        workspace: canon(v.workspace),
        tmpdir: canon(v.tmpdir),
    }
}

/// Exit code of `lexecon-supervise` when Lexecon itself fails.
pub const EXIT_SUPERVISOR_FAILURE: u8 = 125;
/// Exit code of other commands for an error (bad input, unreadable file).
pub const EXIT_ERROR: u8 = 2;

#[derive(Parser, Debug)]
#[command(
    name = "lexecon",
    version = VERSION,
    about = "Execution control for AI agents: judge every exec and open, record it in a signed ledger"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run a command under supervision (same as `lexecon-supervise`).
    Supervise(supervise::SuperviseArgs),
    /// Run the end-to-end demo: an agent tries `rm -rf ./important_data`.
    Demo(supervise::DemoArgs),
    /// Set a project up: keys if none, a project policy in observe mode,
    /// the harness hook (`--claude-code`, `--gemini-cli`), a note for the
    /// agent; safe to run again.
    Init(init::InitArgs),
    /// Create an Ed25519 key pair for signing ledgers.
    InitKeys(ledger::InitKeysArgs),
    /// Verify a ledger offline.
    Verify(ledger::VerifyArgs),
    /// Print an inclusion proof for one record.
    Prove(ledger::ProveArgs),
    /// Check an inclusion proof.
    VerifyProof(ledger::VerifyProofArgs),
    /// Judge what a recorded run did against another policy and list what
    /// would change.
    Replay(replay::ReplayArgs),
    /// Read a ledger (`show`, `stats`, `keys`), export it for log
    /// collectors (`export`), hand it to an auditor (`bundle`), or repair it
    /// (`recover`).
    Ledger(ledger::LedgerArgs),
    /// Explain one recorded action: what was done, the decision, its rule
    /// and reason, and with --policy each condition and what it compared.
    Explain(reader::ExplainArgs),
    /// Validate and explain policies.
    Policy(policy::PolicyArgs),
    /// List the escalations a supervised run is holding for an answer.
    Pending(approve::PendingArgs),
    /// Allow a held escalation.
    Approve(approve::AnswerArgs),
    /// Block a held escalation.
    Deny(approve::AnswerArgs),
    /// Ask for a decision on an action before doing it (a command, a file,
    /// a destination, a named tool call), as JSON; recorded as an intent.
    Decide(gate::DecideArgs),
    /// Answer an agent harness's pre-tool-call hook (`claude-code`,
    /// `gemini-cli`): its input on stdin, its decision on stdout.
    Hook(gate::HookArgs),
    /// Check whether this machine can run the supervisor, and what would
    /// weaken it.
    Doctor(doctor::DoctorArgs),
    /// Print a shell completion script (`bash`, `zsh`, `fish`, `elvish`,
    /// `powershell`), e.g. `lexecon completions bash > /etc/bash_completion.d/lexecon`.
    Completions(CompletionsArgs),
    /// Write the man pages of `lexecon`, its commands and `lexecon-supervise`
    /// into a directory.
    Man(ManArgs),
}

#[derive(clap::Args, Debug)]
pub struct CompletionsArgs {
    /// The shell.
    shell: clap_complete::Shell,
    /// For `lexecon-supervise` instead of `lexecon`.
    #[arg(long)]
    supervise: bool,
}

#[derive(clap::Args, Debug)]
pub struct ManArgs {
    /// Where to write them (created if missing).
    #[arg(long, default_value = "man")]
    out: std::path::PathBuf,
}

fn completions(args: CompletionsArgs) -> anyhow::Result<ExitCode> {
    use clap::CommandFactory;
    let (mut cmd, name) = if args.supervise {
        (SuperviseCli::command(), "lexecon-supervise")
    } else {
        (Cli::command(), "lexecon")
    };
    clap_complete::generate(args.shell, &mut cmd, name, &mut std::io::stdout());
    Ok(ExitCode::SUCCESS)
}

/// `lexecon.1`, `lexecon-COMMAND.1` for each command (and their
/// subcommands), `lexecon-supervise.1`.
fn man(args: ManArgs) -> anyhow::Result<ExitCode> {
    use anyhow::Context as _;
    use clap::CommandFactory;
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("cannot create {}", crate::escape::path(&args.out)))?;
    let mut written = Vec::new();
    fn render(
        cmd: clap::Command,
        name: String,
        dir: &std::path::Path,
        written: &mut Vec<std::path::PathBuf>,
    ) -> anyhow::Result<()> {
        use anyhow::Context as _;
        let cmd = cmd.name(name.clone());
        let path = dir.join(format!("{name}.1"));
        let mut out = Vec::new();
        clap_mangen::Man::new(cmd.clone()).render(&mut out)?;
        std::fs::write(&path, out)
            .with_context(|| format!("cannot write {}", crate::escape::path(&path)))?;
        written.push(path);
        for sub in cmd.get_subcommands() {
            if sub.get_name() == "help" {
                continue;
            }
            render(
                sub.clone(),
                format!("{name}-{}", sub.get_name()),
                dir,
                written,
            )?;
        }
        Ok(())
    }
    render(Cli::command(), "lexecon".into(), &args.out, &mut written)?;
    render(
        SuperviseCli::command(),
        "lexecon-supervise".into(),
        &args.out,
        &mut written,
    )?;
    for p in &written {
        println!("{}", crate::escape::path(p));
    }
    Ok(ExitCode::SUCCESS)
}

/// The version with the commit and build profile (`0.1.0 (commit …,
/// release build)`), as `--version` prints it and run headers record it.
pub const VERSION: &str = crate::ledger::VERSION;

/// Entry point of the `lexecon` binary.
pub fn main_lexecon() -> ExitCode {
    crate::diag::init_from_env();
    crate::timing::mark("start");
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            if !e.use_stderr() {
                return ExitCode::SUCCESS;
            }
            // `lexecon supervise --bogus` fails as `lexecon-supervise
            // --bogus` does (125); every other command with 2.
            let supervise = std::env::args_os().nth(1).is_some_and(|a| a == "supervise");
            return ExitCode::from(if supervise {
                EXIT_SUPERVISOR_FAILURE
            } else {
                2
            });
        }
    };
    let failure = match cli.command {
        Command::Supervise(_) | Command::Demo(_) => EXIT_SUPERVISOR_FAILURE,
        _ => EXIT_ERROR,
    };
    if !matches!(cli.command, Command::Supervise(_) | Command::Demo(_)) {
        crate::supervisor::sys::default_sigpipe();
    }
    let result = match cli.command {
        Command::Supervise(args) => supervise::run(args),
        Command::Demo(args) => supervise::demo(args),
        Command::Init(args) => init::run(args),
        Command::InitKeys(args) => ledger::init_keys(args),
        Command::Verify(args) => ledger::verify(args),
        Command::Prove(args) => ledger::prove(args),
        Command::VerifyProof(args) => ledger::verify_proof(args),
        Command::Ledger(args) => ledger::ledger(args),
        Command::Explain(args) => reader::explain(args),
        Command::Replay(args) => replay::run(args),
        Command::Policy(args) => policy::run(args),
        Command::Pending(args) => approve::pending(args),
        Command::Approve(args) => approve::answer(args, true),
        Command::Deny(args) => approve::answer(args, false),
        Command::Decide(args) => gate::decide(args),
        Command::Hook(args) => gate::hook(args),
        Command::Completions(args) => completions(args),
        Command::Doctor(args) => doctor::run(args),
        Command::Man(args) => man(args),
    };
    finish(result, failure)
}

#[derive(Parser, Debug)]
#[command(
    name = "lexecon-supervise",
    version = VERSION,
    about = "Run a command with every exec and open judged by a policy and recorded in a signed ledger"
)]
struct SuperviseCli {
    #[command(flatten)]
    args: supervise::SuperviseArgs,
}

/// Entry point of the `lexecon-supervise` binary.
pub fn main_supervise() -> ExitCode {
    crate::diag::init_from_env();
    crate::timing::mark("start");
    let cli = match SuperviseCli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() {
                EXIT_SUPERVISOR_FAILURE
            } else {
                0
            });
        }
    };
    finish(supervise::run(cli.args), EXIT_SUPERVISOR_FAILURE)
}

/// The error and its causes on one line, leaving out a cause whose text the
/// message already contains (errors that name their source in their own
/// message and also keep it as `source()`).
fn message(e: &anyhow::Error) -> String {
    let mut msg = e.to_string();
    for cause in e.chain().skip(1) {
        let c = cause.to_string();
        if !msg.contains(&c) {
            msg.push_str(": ");
            msg.push_str(&c);
        }
    }
    msg
}

fn finish(result: anyhow::Result<ExitCode>, failure: u8) -> ExitCode {
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("lexecon: error: {}", message(&e));
            ExitCode::from(failure)
        }
    }
}

/// Where a policy comes from: a file, or one of the shipped policies built
/// into the binary (`builtin:NAME`, or a bare NAME when no such file
/// exists).
#[derive(Debug, Clone)]
pub enum PolicySource {
    File(std::path::PathBuf),
    Builtin(&'static str, &'static str),
}

impl PolicySource {
    /// `arg` as given to `--policy` or `policy check/explain/show`.
    pub fn resolve(arg: &std::path::Path) -> anyhow::Result<PolicySource> {
        use crate::policy::shipped;
        let text = arg.to_string_lossy();
        if let Some(name) = text.strip_prefix("builtin:") {
            return match shipped::shipped(name) {
                Some(t) => Ok(PolicySource::Builtin(static_name(name), t)),
                None => anyhow::bail!(
                    "there is no built-in policy named {} (built in: {})",
                    crate::escape::text(name),
                    shipped::names()
                ),
            };
        }
        let bare = !text.contains('/');
        match shipped::shipped(&text) {
            Some(t) if bare && !arg.exists() => Ok(PolicySource::Builtin(static_name(&text), t)),
            _ => Ok(PolicySource::File(arg.to_path_buf())),
        }
    }

    /// Loads it with `vars`.
    pub fn load(
        &self,
        vars: &crate::policy::Vars,
    ) -> Result<crate::policy::Policy, crate::policy::PolicyErrors> {
        match self {
            PolicySource::File(p) => crate::policy::Policy::from_file(p, vars),
            PolicySource::Builtin(name, text) => {
                crate::policy::Policy::from_str(text, &format!("builtin:{name}"), vars)
            }
        }
    }

    /// Its text and how messages name it (the file's path, or
    /// `builtin:NAME`).
    pub fn text(&self) -> anyhow::Result<crate::replay::PolicyText> {
        use anyhow::Context as _;
        Ok(match self {
            PolicySource::File(p) => crate::replay::PolicyText {
                origin: p.display().to_string(),
                text: std::fs::read_to_string(p).with_context(|| {
                    format!(
                        "cannot read the policy {} (a UTF-8 YAML file)",
                        crate::escape::path(p)
                    )
                })?,
            },
            PolicySource::Builtin(name, text) => crate::replay::PolicyText {
                origin: format!("builtin:{name}"),
                text: text.to_string(),
            },
        })
    }

    /// [`PolicySource::load`], skipping the check of the embedded examples
    /// and tests when `checks` vouches that this text passed it.
    pub fn load_checked(
        &self,
        vars: &crate::policy::Vars,
        checks: &dyn crate::policy::ExampleChecks,
    ) -> Result<crate::policy::Policy, crate::policy::PolicyErrors> {
        match self {
            PolicySource::File(p) => crate::policy::Policy::from_file_checked_with(p, vars, checks),
            PolicySource::Builtin(name, text) => crate::policy::Policy::from_str_checked_with(
                text,
                &format!("builtin:{name}"),
                vars,
                checks,
            ),
        }
    }

    /// How the run header and messages name it.
    pub fn path(&self) -> std::path::PathBuf {
        match self {
            PolicySource::File(p) => p.clone(),
            PolicySource::Builtin(name, _) => std::path::PathBuf::from(format!("builtin:{name}")),
        }
    }
}

/// The shipped policy's own name (`'static`) for `name` (`ci`, `ci.yaml`).
fn static_name(name: &str) -> &'static str {
    let name = name.strip_suffix(".yaml").unwrap_or(name);
    crate::policy::shipped::SHIPPED
        .iter()
        .map(|(n, _)| *n)
        .find(|n| *n == name)
        .unwrap_or("default")
}
