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
    /// The ledger of the supervised run. Default: $LEXECON_LEDGER, else the
    /// ledger of the workspace this directory is in.
    #[arg(long, value_name = "FILE")]
    pub ledger: Option<PathBuf>,
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
    /// The ledger of the supervised run. Default: $LEXECON_LEDGER, else the
    /// ledger of the workspace this directory is in.
    #[arg(long, value_name = "FILE")]
    pub ledger: Option<PathBuf>,
    /// Sign a receipt with this approver key (`init-keys --approver`): the
    /// resolution record then proves that the holder of the key gave this
    /// answer to exactly this request (`verify --approver-pubkey`).
    #[arg(long, value_name = "APPROVER_KEY")]
    pub key: Option<PathBuf>,
    /// Print the result as JSON: `{"request", "answer": "approved"|"denied",
    /// "for_run", "receipt": bool}`.
    #[arg(long)]
    pub json: bool,
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

/// The ledger of the run to ask: `arg`, else found as described in
/// [`super::locations`].
fn ledger_of_run(arg: Option<&Path>) -> anyhow::Result<PathBuf> {
    use anyhow::Context;
    let cwd = std::env::current_dir().context("cannot read the current directory")?;
    Ok(super::locations::find_ledger(arg, &cwd, "--ledger FILE")?.path)
}

/// The rows of `lexecon pending` under their header, each column as wide
/// as its widest cell (numbers right-aligned), the action last.
fn pending_table(list: &[serde_json::Value]) -> String {
    // The action is escaped by the supervisor already; every string is
    // escaped again here (unchanged when it holds nothing to escape), so
    // that nothing the supervised tree chose reaches the terminal raw.
    let shown = |v: &serde_json::Value| escape::text(v.as_str().unwrap_or(""));
    let secs = |v: &serde_json::Value| format!("{}s", v.as_u64().unwrap_or(0) / 1000);
    let mut rows = vec![[
        "ID".to_string(),
        "AGE".to_string(),
        "LEFT".to_string(),
        "RULE".to_string(),
        "ACTION".to_string(),
    ]];
    for p in list {
        rows.push([
            p["id"]
                .as_u64()
                .map_or_else(|| "?".into(), |n| n.to_string()),
            secs(&p["age_ms"]),
            secs(&p["left_ms"]),
            shown(&p["rule"]),
            match p["pid"].as_u64() {
                Some(pid) => format!("{} (pid {pid})", shown(&p["action"])),
                None => shown(&p["action"]),
            },
        ]);
    }
    let width = |i: usize| rows.iter().map(|r| r[i].chars().count()).max().unwrap_or(0);
    let (w0, w1, w2, w3) = (width(0), width(1), width(2), width(3));
    let mut out = String::new();
    for r in &rows {
        out.push_str(&format!(
            "{:>w0$}  {:>w1$}  {:>w2$}  {:<w3$}  {}\n",
            r[0], r[1], r[2], r[3], r[4]
        ));
    }
    out
}

pub fn pending(args: PendingArgs) -> anyhow::Result<ExitCode> {
    let ledger = ledger_of_run(args.ledger.as_deref())?;
    let reply = approval::request(&ledger, &json!({"op": "pending"}))?;
    let list = reply["pending"].as_array().cloned().unwrap_or_default();
    if args.json {
        println!("{}", serde_json::to_string_pretty(&list)?);
        return Ok(ExitCode::SUCCESS);
    }
    if list.is_empty() {
        println!("no pending requests");
        return Ok(ExitCode::SUCCESS);
    }
    print!("{}", pending_table(&list));
    Ok(ExitCode::SUCCESS)
}

pub fn answer(args: AnswerArgs, allow: bool) -> anyhow::Result<ExitCode> {
    let ledger = ledger_of_run(args.ledger.as_deref())?;
    let mut req = json!({"op": "answer", "id": args.id, "allow": allow, "for_run": args.for_run});
    if let Some(key_path) = &args.key {
        use base64::Engine as _;
        use ed25519_dalek::Signer as _;
        let dir = key_path.parent().unwrap_or(Path::new("."));
        let key = ledger::keys::load_signing_key_file(dir, key_path)?;
        let (hash, what) = escalation_record(&ledger, args.id)?;
        let scope = if args.for_run { "run" } else { "once" };
        let sig = key
            .signing_key()
            .sign(&ledger::receipt_message(&hash, allow, scope));
        let b64 = base64::engine::general_purpose::STANDARD;
        req["receipt"] = json!({
            "key": b64.encode(key.signing_key().verifying_key().as_bytes()),
            "sig": b64.encode(sig.to_bytes()),
        });
        if !args.json {
            println!(
                "signing the answer to request {}: {}",
                args.id,
                escape::text(&what)
            );
        }
    }
    approval::request(&ledger, &req)?;
    if args.json {
        println!(
            "{}",
            json!({
                "request": args.id,
                "answer": if allow { "approved" } else { "denied" },
                "for_run": args.for_run,
                "receipt": args.key.is_some(),
            })
        );
        return Ok(ExitCode::SUCCESS);
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pending_columns_line_up_whatever_the_widths() {
        let list = vec![
            json!({"id": 1, "age_ms": 4000, "left_ms": 55000, "rule": "r", "action": "exec a", "pid": 7}),
            json!({"id": 12345, "age_ms": 123_456_000, "left_ms": 0,
                   "rule": "a-rule-whose-name-is-longer-than-twenty-four", "action": "exec b", "pid": 8}),
        ];
        let t = pending_table(&list);
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines.len(), 3, "{t}");
        // Every column starts at the same place on every line: the action
        // column starts where the header's ACTION does.
        let at = lines[0].find("ACTION").unwrap();
        assert_eq!(&lines[1][at..], "exec a (pid 7)", "{t}");
        assert_eq!(&lines[2][at..], "exec b (pid 8)", "{t}");
        let rule_at = lines[0].find("RULE").unwrap();
        assert!(lines[1][rule_at..].starts_with("r "), "{t}");
        assert!(lines[2][rule_at..].starts_with("a-rule-"), "{t}");
        // Numbers are right-aligned under their headers' right edge.
        let id_end = lines[0].find("ID").unwrap() + 2;
        assert_eq!(&lines[1][..id_end], "    1", "{t}");
        assert_eq!(&lines[2][..id_end], "12345", "{t}");
        let left_end = lines[0].find("LEFT").unwrap() + 4;
        assert!(lines[1][..left_end].ends_with("55s"), "{t}");
        assert!(lines[2][..left_end].ends_with(" 0s"), "{t}");
    }
}
