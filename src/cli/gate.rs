//! `lexecon decide` (one decision about a described action) and `lexecon
//! hook HARNESS` (a harness's hook: its input on stdin, its output on
//! stdout). Inside a supervised run (`$LEXECON_GATE` set) both ask the
//! run's gate; outside, each makes a run of its own in the ledger.
//!
//! Exit codes of `decide`: 0 allowed, 1 refused, 2 the request could not be
//! judged (bad request, no keys, …; nothing was allowed). `hook` exits 0
//! with the harness's output whenever it could write one (a failure is a
//! refusal, saying why), 2 otherwise.

use std::ffi::OsString;
use std::io::{Read as _, Write as _};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Args, ValueEnum};
use serde_json::Value;

use super::locations::{self, Source};
use super::supervise::{self, EscalateArg, ModeArg};
use super::vars_for;
use crate::action::Mode;
use crate::gate::harness::{self, Harness};
use crate::ledger::{LedgerWriter, LockMode, SyncPolicy, WriterOptions};
use crate::session::{Hints, OnEscalate, SessionConfig};

/// Where a one-shot decision is judged and recorded (ignored inside a
/// supervised run, whose gate uses the run's policy and ledger).
#[derive(Args, Debug)]
pub struct OneShotArgs {
    /// Policy file, or a shipped policy by name (default: the shipped
    /// default policy).
    #[arg(long, value_name = "FILE|NAME", env = "LEXECON_POLICY")]
    pub policy: Option<PathBuf>,
    /// Ledger file (default: as for `supervise`).
    #[arg(long, value_name = "FILE")]
    pub ledger: Option<PathBuf>,
    /// Directory with the signing key (default: as for `supervise`).
    #[arg(long, value_name = "DIR")]
    pub keys: Option<PathBuf>,
    /// Override the policy's mode.
    #[arg(long, value_enum)]
    pub mode: Option<ModeArg>,
    /// What an `escalate` verdict does: `block` refuses it (a hook then
    /// lets the harness ask its own user where it can), `wait` holds the
    /// answer until `lexecon approve/deny` (or the timeout), `prompt` asks
    /// on the terminal too, `allow` allows it unapproved.
    #[arg(long, value_enum, default_value = "block")]
    pub on_escalate: EscalateArg,
    /// How long a held escalation waits for an answer (seconds).
    #[arg(long, value_name = "SECS", default_value_t = 60)]
    pub escalate_timeout: u64,
    /// The workspace (`${WORKSPACE}`; default: the current directory).
    #[arg(long, value_name = "DIR")]
    pub workspace: Option<PathBuf>,
    /// Judge one-shot even inside a supervised run (its own run in the
    /// ledger instead of the run's gate).
    #[arg(long)]
    pub one_shot: bool,
}

#[derive(Args, Debug)]
pub struct DecideArgs {
    /// Print the reply as JSON (otherwise one line of text).
    #[arg(long)]
    pub json: bool,
    /// The request (JSON); default: read from stdin.
    #[arg(long, value_name = "JSON")]
    pub request: Option<String>,
    #[command(flatten)]
    pub run: OneShotArgs,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum HarnessArg {
    /// Claude Code's PreToolUse hook.
    ClaudeCode,
    /// Gemini CLI's BeforeTool hook.
    GeminiCli,
}

#[derive(Args, Debug)]
pub struct HookArgs {
    /// The harness whose hook protocol is spoken.
    #[arg(value_enum)]
    pub harness: HarnessArg,
    #[command(flatten)]
    pub run: OneShotArgs,
}

/// Judges `req`: through the run's gate when in one, else one-shot.
fn judge(req: &Value, run: &OneShotArgs, command: Vec<OsString>) -> anyhow::Result<Value> {
    if !run.one_shot {
        if let Some(r) = crate::gate::ask_running(req) {
            return r;
        }
    }
    one_shot(req, run, command)
}

fn one_shot(req: &Value, run: &OneShotArgs, command: Vec<OsString>) -> anyhow::Result<Value> {
    let cwd = std::env::current_dir().context("cannot read the current directory")?;
    let ws = supervise::workspace(run.workspace.as_deref(), &cwd, true)?;
    let vars = vars_for(&ws);
    let source = match &run.policy {
        Some(p) => super::PolicySource::resolve(p)?,
        None => super::PolicySource::resolve(std::path::Path::new("builtin:default"))?,
    };
    let policy = supervise::load_policy(&source, &vars)?;
    let keys = locations::keys(run.keys.as_deref())?;
    let key = supervise::load_key(&keys, &[&ws, &cwd])?;
    let ledger = locations::ledger_for_run(run.ledger.as_deref(), &ws)?;
    let mut ledger_dir = None;
    if ledger.source == Source::Default {
        if let Some(notice) = locations::prepare_workspace_ledger(&ledger.path, &ws)? {
            eprintln!("{notice}");
        }
        ledger_dir = Some(locations::ledgers_root()?);
    }
    let opts = WriterOptions {
        checkpoint_every: 1024,
        checkpoint_interval: Duration::from_millis(1000),
        sync: SyncPolicy::Checkpoint,
        lock: LockMode::Wait,
    };
    let writer =
        LedgerWriter::open_notify(&ledger.path, key, opts, &mut supervise::lock_wait_notice)
            .map_err(|e| supervise::with_hints(e, &ledger, &keys, &cwd))?;
    let cfg = SessionConfig {
        policy,
        policy_path: Some(source.path()),
        mode: run.mode.map(|m| match m {
            ModeArg::Enforce => Mode::Enforce,
            ModeArg::Observe => Mode::Observe,
        }),
        on_escalate: match run.on_escalate {
            EscalateArg::Allow => OnEscalate::Allow,
            EscalateArg::Wait => OnEscalate::Wait,
            EscalateArg::Prompt => OnEscalate::Prompt,
            EscalateArg::Block => OnEscalate::Block,
        },
        keys_dir: keys.dir.clone(),
        report_blocks: false,
        tell_process: false,
        escalate_timeout: Duration::from_secs(run.escalate_timeout),
        max_pending: 1,
        workspace: ws,
        metrics_file: None,
        ledger_dir,
        hints: Hints {
            ledger_args: locations::ledger_args(&ledger, &cwd),
            verify: locations::verify_command(&ledger, &keys, &cwd),
        },
        gate: false,
    };
    // The asker: the process that ran this command.
    let asker = std::os::unix::process::parent_id() as i32;
    let (reply, _summary) =
        crate::session::gate::decide_once(cfg, writer, &command, &cwd, req, asker)?;
    Ok(reply)
}

fn read_stdin() -> anyhow::Result<Value> {
    let mut text = String::new();
    std::io::stdin()
        .take(crate::gate::MAX_REQUEST as u64 + 1)
        .read_to_string(&mut text)
        .context("cannot read the request from stdin")?;
    if text.len() > crate::gate::MAX_REQUEST {
        anyhow::bail!(
            "the request is longer than {} bytes",
            crate::gate::MAX_REQUEST
        );
    }
    serde_json::from_str(&text).context("the request on stdin is not JSON")
}

pub fn decide(args: DecideArgs) -> anyhow::Result<ExitCode> {
    let req = match &args.request {
        Some(t) => serde_json::from_str(t).context("--request is not JSON")?,
        None => read_stdin()?,
    };
    let reply = judge(&req, &args.run, vec!["lexecon".into(), "decide".into()])?;
    if reply["ok"].as_bool() != Some(true) {
        anyhow::bail!(
            "{}",
            reply["error"]
                .as_str()
                .unwrap_or("the request could not be judged")
        );
    }
    if args.json {
        println!("{reply}");
    } else {
        println!(
            "{}: {} (rule {}: {}; record {})",
            reply["answer"].as_str().unwrap_or("block"),
            reply["action"].as_str().unwrap_or(""),
            reply["rule"].as_str().unwrap_or("default"),
            crate::escape::text(reply["reason"].as_str().unwrap_or("")),
            reply["record"]
        );
    }
    Ok(if reply["answer"].as_str() == Some("allow") {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

pub fn hook(args: HookArgs) -> anyhow::Result<ExitCode> {
    let h = match args.harness {
        HarnessArg::ClaudeCode => Harness::ClaudeCode,
        HarnessArg::GeminiCli => Harness::GeminiCli,
    };
    let result = read_stdin()
        .and_then(|input| harness::request(h, &input).map_err(|e| anyhow::anyhow!(e)))
        .and_then(|req| {
            judge(
                &req,
                &args.run,
                vec!["lexecon".into(), "hook".into(), h.as_str().into()],
            )
        })
        .and_then(|reply| {
            if reply["ok"].as_bool() == Some(true) {
                Ok(reply)
            } else {
                Err(anyhow::anyhow!(
                    "{}",
                    reply["error"].as_str().unwrap_or("no reason given")
                ))
            }
        });
    let out = match &result {
        Ok(reply) => harness::output(h, reply),
        Err(e) => Some(harness::failure(h, &format!("{e:#}"))),
    };
    if let Err(e) = &result {
        eprintln!("lexecon: {e:#}");
    }
    if let Some(o) = out {
        let mut stdout = std::io::stdout().lock();
        writeln!(stdout, "{o}").context("cannot write the hook's output")?;
    }
    Ok(ExitCode::SUCCESS)
}
