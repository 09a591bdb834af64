//! `replay`: argument parsing and output over [`crate::replay`].

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;
use clap::Args;

use crate::escape;
use crate::ledger::verify::{KeySource, Status};
use crate::replay::{self, ChangeClass, ReplayReport, VarSource};

/// Exit code of `replay`: nothing changes, or only verdicts that loosen or
/// stay (another rule, or a stronger verdict on what was refused already).
pub const EXIT_SAME: u8 = 0;
/// Exit code of `replay`: the new policy would refuse (block or escalate)
/// something the run did.
pub const EXIT_REFUSES: u8 = 1;

#[derive(Args, Debug)]
#[command(
    after_help = "Exit codes: 0 nothing the run did would be refused (no change, or only looser verdicts, other rules, or stronger verdicts on what was refused already); \
1 the new policy would refuse (block or escalate) something the run did; \
2 bad input (no such ledger or run, a ledger that does not verify without --unverified, an invalid policy, a variable whose value is unknown)"
)]
pub struct ReplayArgs {
    /// The ledger file. Default: as for `verify`.
    pub ledger: Option<PathBuf>,
    /// The policy to judge the run with: a file or a shipped policy's name.
    #[arg(long, value_name = "FILE|NAME")]
    pub policy: PathBuf,
    /// The run (its id or a unique prefix). Default: the last run.
    #[arg(long, value_name = "ID")]
    pub run: Option<String>,
    /// A variable's value when the run header does not record it (ledgers
    /// written before headers recorded the policy's variables), or to
    /// override it: HOME, WORKSPACE, TMPDIR or env.NAME. Repeatable.
    #[arg(long = "var", value_name = "NAME=VALUE", value_parser = replay::parse_var)]
    pub vars: Vec<(String, OsString)>,
    /// Host public key file or key directory to verify the ledger with.
    /// Default: as for `verify`.
    #[arg(long)]
    pub pubkey: Option<PathBuf>,
    /// Replay a ledger that does not verify (INVALID or INCOMPLETE):
    /// its records may have been changed.
    #[arg(long)]
    pub unverified: bool,
    /// Records shown per group of changes (default: 3 for changed verdicts,
    /// none for the same verdict under another rule; all are in --json).
    #[arg(long, value_name = "N")]
    pub examples: Option<usize>,
    /// Print the result as JSON.
    #[arg(long)]
    pub json: bool,
}

/// Verifies `ledger` before its records are trusted: the status line shown
/// (e.g. `VALID`, `VALID (checked against the key in the ledger itself)`);
/// an error, saying what to do, when it does not verify and `unverified`
/// is not set.
pub(super) fn verified(
    ledger: &Path,
    pubkey: Option<&Path>,
    unverified: bool,
) -> anyhow::Result<String> {
    let key_path = pubkey
        .map(Path::to_path_buf)
        .or_else(super::ledger::default_pubkey);
    let key = key_path
        .as_deref()
        .map(crate::ledger::keys::load_public_key)
        .transpose()?;
    let report = crate::ledger::verify_file(ledger, key.as_ref().map(|k| k.verifying_key()))?;
    match report.status {
        Status::Valid if report.key_source == KeySource::Supplied => Ok("VALID".into()),
        Status::Valid => Ok(
            "VALID (checked against the key named in the ledger itself: pass --pubkey to authenticate it)"
                .into(),
        ),
        s if unverified => Ok(format!("{} (replayed anyway: --unverified)", s.as_str())),
        s => anyhow::bail!(
            "the ledger {} is {}{}; its records are judged only when it verifies: run `lexecon verify {}` to see why, or pass --unverified",
            escape::path(ledger),
            s.as_str(),
            report
                .problems
                .first()
                .map(|p| format!(" ({})", escape::text(&p.to_string())))
                .unwrap_or_default(),
            escape::path(ledger)
        ),
    }
}

pub fn run(args: ReplayArgs) -> anyhow::Result<ExitCode> {
    let cwd = std::env::current_dir().context("cannot read the current directory")?;
    let ledger =
        super::locations::find_ledger(args.ledger.as_deref(), &cwd, "the LEDGER argument")?.path;
    let status = verified(&ledger, args.pubkey.as_deref(), args.unverified)?;
    let run = replay::find_run(&ledger, args.run.as_deref()).map_err(anyhow::Error::msg)?;
    let given: BTreeMap<String, OsString> = args.vars.iter().cloned().collect();
    let vars = replay::RunVars::of(&run.header, &given).map_err(anyhow::Error::msg)?;
    let source = super::PolicySource::resolve(&args.policy)?;
    let ptext = source.text()?;
    let policy = vars
        .load(&ptext.text, &ptext.origin)
        .map_err(anyhow::Error::msg)?;
    let judge = replay::Judge::new(policy);
    let report = replay::replay_file(&ledger, &run, &judge).map_err(anyhow::Error::msg)?;
    let policy = &judge.policy;
    let code = if report.count(ChangeClass::Refused) > 0 {
        EXIT_REFUSES
    } else {
        EXIT_SAME
    };
    let layers = replay::layer_differences(&run.header, policy);
    let same_policy = policy.sha256() == run.header.policy_sha256 && layers.is_empty();
    if args.json {
        let json = report_json(
            &ledger,
            &status,
            &ptext.origin,
            policy,
            same_policy,
            &layers,
            &vars,
            &report,
            code,
        );
        println!("{json}");
    } else {
        print_report(
            &ledger,
            &status,
            &ptext.origin,
            policy,
            same_policy,
            &layers,
            &vars,
            &report,
            args.examples,
            code,
        );
    }
    Ok(ExitCode::from(code))
}

fn rule(r: Option<&str>) -> String {
    r.map_or_else(|| "default".to_string(), escape::text)
}

fn plural(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

#[allow(clippy::too_many_arguments)]
fn print_report(
    ledger: &Path,
    status: &str,
    origin: &str,
    policy: &crate::policy::Policy,
    same_policy: bool,
    layers: &[String],
    vars: &replay::RunVars,
    r: &ReplayReport,
    examples: Option<usize>,
    code: u8,
) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "Ledger: {} ({status})", escape::path(ledger));
    let _ = writeln!(
        out,
        "Run: {} ({} re-judged, {} by built-in rules not re-judged)",
        r.run_id,
        plural(r.actions as usize, "action", "actions"),
        r.builtin
    );
    let _ = writeln!(
        out,
        "Policy: {}{}",
        escape::text(origin),
        if same_policy {
            " (the policy the run pinned)"
        } else {
            ""
        }
    );
    if policy.is_layered() {
        for l in policy.layers() {
            let _ = writeln!(
                out,
                "Layer: {} (sha256 {})",
                escape::text(&l.path),
                hex::encode(l.sha256)
            );
        }
    }
    for d in layers {
        let _ = writeln!(out, "Note: {d}");
    }
    for (k, (v, src)) in &vars.values {
        if *src == VarSource::Given {
            let _ = writeln!(out, "Variable: {k}={} (given with --var)", escape::os(v));
        }
    }
    for u in &r.undecodable {
        let _ = writeln!(
            out,
            "warning: line {}: the recorded action could not be decoded and was not re-judged: {}",
            u.line,
            escape::text(&u.message)
        );
    }
    let groups = replay::group(&r.changes);
    for class in [
        ChangeClass::Refused,
        ChangeClass::Stricter,
        ChangeClass::Looser,
        ChangeClass::Rule,
    ] {
        let n = r.count(class);
        if n == 0 {
            continue;
        }
        let title = match class {
            ChangeClass::Refused => format!(
                "{} the run did would be refused:",
                plural(n, "action", "actions")
            ),
            ChangeClass::Stricter => format!(
                "{} refused already would get a stronger verdict:",
                plural(n, "action", "actions")
            ),
            ChangeClass::Looser => format!(
                "{} would get a weaker verdict:",
                plural(n, "action", "actions")
            ),
            ChangeClass::Rule => format!(
                "{} keep their verdict under another rule:",
                plural(n, "action", "actions")
            ),
        };
        let _ = writeln!(out, "\n{title}");
        for g in groups.iter().filter(|g| g.class == class) {
            let _ = writeln!(
                out,
                "  {} ×{}: {} (rule {}) -> {} (rule {})",
                g.kind,
                g.changes.len(),
                g.old_verdict,
                rule(g.old_rule),
                g.new_verdict,
                rule(g.new_rule),
            );
            let examples = match (examples, class) {
                (Some(n), _) => n,
                (None, ChangeClass::Rule) => 0,
                (None, _) => 3,
            };
            for c in g.changes.iter().take(examples) {
                let _ = writeln!(out, "    record {}: {}", c.seq, c.what);
            }
            if g.changes.len() > examples && examples > 0 {
                let _ = writeln!(out, "    … and {} more", g.changes.len() - examples);
            }
        }
    }
    let refused = r.count(ChangeClass::Refused);
    let _ = writeln!(out);
    if r.changes.is_empty() {
        let _ = writeln!(
            out,
            "Result: no change: every action gets the verdict and rule it had (exit {code})"
        );
        return;
    }
    let mut parts = Vec::new();
    for (class, what) in [
        (
            ChangeClass::Stricter,
            "refused already would get a stronger verdict",
        ),
        (ChangeClass::Looser, "would get a weaker verdict"),
        (ChangeClass::Rule, "keep their verdict under another rule"),
    ] {
        let n = r.count(class);
        if n > 0 {
            parts.push(format!("{n} {what}"));
        }
    }
    let rest = if parts.is_empty() {
        String::new()
    } else {
        format!("; {}", parts.join(", "))
    };
    if refused > 0 {
        let _ = writeln!(
            out,
            "Result: the new policy would refuse {} the run did{rest} (exit {code})",
            plural(refused, "action", "actions")
        );
    } else {
        let _ = writeln!(
            out,
            "Result: nothing the run did would be refused{rest} (exit {code})"
        );
    }
}

#[allow(clippy::too_many_arguments)]
fn report_json(
    ledger: &Path,
    status: &str,
    origin: &str,
    policy: &crate::policy::Policy,
    same_policy: bool,
    layers: &[String],
    vars: &replay::RunVars,
    r: &ReplayReport,
    code: u8,
) -> serde_json::Value {
    let groups = replay::group(&r.changes);
    serde_json::json!({
        "ledger": ledger.display().to_string(),
        "verification": status,
        "run": r.run_id,
        "policy": origin,
        "policy_sha256": hex::encode(policy.sha256()),
        "pinned_by_run": same_policy,
        "layers": policy.is_layered().then(|| policy.layers().iter().map(|l| serde_json::json!({
            "path": l.path,
            "sha256": hex::encode(l.sha256),
        })).collect::<Vec<_>>()),
        "layer_differences": layers,
        "vars": vars.values.iter().map(|(k, (v, s))| (k.clone(), match v.to_str() {
            Some(text) => serde_json::json!({"value": text, "source": s.as_str()}),
            None => serde_json::json!({"value_b64": base64::Engine::encode(&base64::engine::general_purpose::STANDARD, std::os::unix::ffi::OsStrExt::as_bytes(v.as_os_str())), "source": s.as_str()}),
        })).collect::<serde_json::Map<_, _>>(),
        "actions": r.actions,
        "builtin": r.builtin,
        "changes": {
            "refused": r.count(ChangeClass::Refused),
            "stricter": r.count(ChangeClass::Stricter),
            "looser": r.count(ChangeClass::Looser),
            "rule": r.count(ChangeClass::Rule),
        },
        "groups": groups.iter().map(|g| serde_json::json!({
            "change": g.class.as_str(),
            "kind": g.kind,
            "from": {"verdict": g.old_verdict.as_str(), "rule": g.old_rule},
            "to": {"verdict": g.new_verdict.as_str(), "rule": g.new_rule},
            "count": g.changes.len(),
            "records": g.changes.iter().map(|c| serde_json::json!({
                "seq": c.seq,
                "line": c.line,
                "action": c.what,
                "outcome": c.outcome.as_str(),
                "reason": c.new.reason,
            })).collect::<Vec<_>>(),
        })).collect::<Vec<_>>(),
        "undecodable": r.undecodable.iter().map(|u| serde_json::json!({
            "line": u.line, "seq": u.seq, "message": u.message,
        })).collect::<Vec<_>>(),
        "exit_code": code,
    })
}
