//! `pending`, `approve`, `deny`: answer the escalations a supervised run
//! holds, over its approval socket (see [`crate::approval`]).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Args;
use serde_json::json;

use crate::approval;
use crate::escape;
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
    /// Sign a receipt with this approver key (`init-keys --approver`): the
    /// resolution record then proves that the holder of the key gave this
    /// answer to exactly this request (`verify --approver-pubkey`).
    #[arg(long, value_name = "APPROVER_KEY")]
    pub key: Option<PathBuf>,
}

/// The hash of the escalation record of request `id` in the ledger's last
/// run, and its action as recorded.
fn escalation_record(ledger: &Path, id: u64) -> anyhow::Result<([u8; 32], String)> {
    use anyhow::Context;
    let text = std::fs::read_to_string(ledger)
        .with_context(|| format!("cannot read the ledger {}", ledger.display()))?;
    let mut found = None;
    for line in text.lines() {
        let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        match v["kind"].as_str() {
            Some("run") => found = None,
            Some("escalation") if v["request"].as_str() == Some(&id.to_string()) => {
                found = Some((
                    ledger::merkle::leaf_hash(line.as_bytes()),
                    format!(
                        "{} (rule {})",
                        v["action"],
                        v["rule"].as_str().unwrap_or("")
                    ),
                ));
            }
            _ => {}
        }
    }
    found.ok_or_else(|| {
        anyhow::anyhow!(
            "request {id} is not in the current run of {}",
            ledger.display()
        )
    })
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
    // The action is escaped by the supervisor already; every string is
    // escaped again here (unchanged when it holds nothing to escape), so
    // that nothing the supervised tree chose reaches the terminal raw.
    let shown = |v: &serde_json::Value| escape::text(v.as_str().unwrap_or(""));
    for p in list {
        println!(
            "{:>4}  {:>4}s  {:>4}s  {:<24}  {} (pid {})",
            p["id"],
            p["age_ms"].as_u64().unwrap_or(0) / 1000,
            p["left_ms"].as_u64().unwrap_or(0) / 1000,
            shown(&p["rule"]),
            shown(&p["action"]),
            p["pid"],
        );
    }
    Ok(ExitCode::SUCCESS)
}

pub fn answer(args: AnswerArgs, allow: bool) -> anyhow::Result<ExitCode> {
    let mut req = json!({"op": "answer", "id": args.id, "allow": allow, "for_run": args.for_run});
    if let Some(key_path) = &args.key {
        use base64::Engine as _;
        use ed25519_dalek::Signer as _;
        let dir = key_path.parent().unwrap_or(Path::new("."));
        let key = ledger::keys::load_signing_key_file(dir, key_path)?;
        let (hash, what) = escalation_record(&args.ledger, args.id)?;
        let scope = if args.for_run { "run" } else { "once" };
        let sig = key
            .signing_key()
            .sign(&ledger::receipt_message(&hash, allow, scope));
        let b64 = base64::engine::general_purpose::STANDARD;
        req["receipt"] = json!({
            "key": b64.encode(key.signing_key().verifying_key().as_bytes()),
            "sig": b64.encode(sig.to_bytes()),
        });
        println!(
            "signing the answer to request {}: {}",
            args.id,
            escape::text(&what)
        );
    }
    approval::request(&args.ledger, &req)?;
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
