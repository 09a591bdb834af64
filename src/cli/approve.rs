//! `pending`, `approve`, `deny`: answer the escalations a supervised run
//! holds, over its approval socket (see [`crate::approval`]).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;
use serde_json::json;

use crate::approval;
use crate::ledger;

#[derive(Args, Debug)]
pub struct PendingArgs {
    /// The ledger of the supervised run.
    #[arg(long, value_name = "FILE", default_value = ledger::writer::DEFAULT_LEDGER)]
    pub ledger: PathBuf,
    /// Print the list as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct AnswerArgs {
    /// The request id (from the supervisor's message or `lexecon pending`).
    pub id: u64,
    /// Answer the same way, without asking, every later escalation of the
    /// same action by the same rule in this run.
    #[arg(long)]
    pub for_run: bool,
    /// The ledger of the supervised run.
    #[arg(long, value_name = "FILE", default_value = ledger::writer::DEFAULT_LEDGER)]
    pub ledger: PathBuf,
}

pub fn pending(args: PendingArgs) -> anyhow::Result<ExitCode> {
    let reply = approval::request(&args.ledger, &json!({"op": "pending"}))?;
    let list = reply["pending"].as_array().cloned().unwrap_or_default();
    if args.json {
        println!("{}", serde_json::to_string_pretty(&list)?);
        return Ok(ExitCode::SUCCESS);
    }
    if list.is_empty() {
        println!("no pending requests");
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "{:>4}  {:>5}  {:>5}  {:<24}  ACTION",
        "ID", "AGE", "LEFT", "RULE"
    );
    for p in list {
        println!(
            "{:>4}  {:>4}s  {:>4}s  {:<24}  {} (pid {})",
            p["id"],
            p["age_ms"].as_u64().unwrap_or(0) / 1000,
            p["left_ms"].as_u64().unwrap_or(0) / 1000,
            p["rule"].as_str().unwrap_or(""),
            p["action"].as_str().unwrap_or(""),
            p["pid"],
        );
    }
    Ok(ExitCode::SUCCESS)
}

pub fn answer(args: AnswerArgs, allow: bool) -> anyhow::Result<ExitCode> {
    approval::request(
        &args.ledger,
        &json!({"op": "answer", "id": args.id, "allow": allow, "for_run": args.for_run}),
    )?;
    println!(
        "request {} {}{}",
        args.id,
        if allow { "approved" } else { "denied" },
        if args.for_run {
            " (and the same action for the rest of the run)"
        } else {
            ""
        }
    );
    Ok(ExitCode::SUCCESS)
}
