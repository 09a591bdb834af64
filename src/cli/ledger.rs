//! `init-keys`, `verify`, `prove`, `verify-proof`, `ledger recover`:
//! argument parsing and output over [`crate::ledger`].

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Args, Subcommand};

use crate::ledger::keys::{self, PublicKey};
use crate::ledger::proof::{self, Proof, ProofCheck};
use crate::ledger::verify::{self, KeySource, Report, Severity, Status};
use crate::ledger::{self as lg, LedgerError};

use super::locations;

#[derive(Args, Debug)]
pub struct InitKeysArgs {
    /// Directory for the key pair (created mode 0700). Default:
    /// $LEXECON_KEYS, else $XDG_CONFIG_HOME/lexecon/keys (~/.config/lexecon/keys).
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// Overwrite an existing key pair.
    #[arg(long)]
    pub force: bool,
    /// Create the approver's key pair (`approver.key`, `approver.pub`),
    /// which signs answers to escalations (`approve --key`), not ledgers.
    #[arg(long)]
    pub approver: bool,
    /// Print the result as JSON: `{"private_key", "public_key",
    /// "verifier_key", "fingerprint"}` (file paths, the C2SP verifier key,
    /// the hex SHA-256 of the public key).
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
#[command(
    after_help = "Exit codes: 0 valid; 1 invalid (tampered or damaged, an --anchor the ledger does not hold, or with --policy a recorded decision that does not follow from the policy its run pinned); 2 could not read the ledger, key, anchor or policy file; \
3 incomplete (partial last record, unsigned records, a run without end seal; with --policy, a run or record whose decisions could not be re-derived); \
4 valid, but checked only against the key named in the ledger itself (no --pubkey and no ledger.pub in the key directory)"
)]
pub struct VerifyArgs {
    /// The ledger file. Default: $LEXECON_LEDGER, else the ledger of the
    /// workspace this directory is in (see `lexecon-supervise --ledger`).
    pub ledger: Option<PathBuf>,
    /// Host public key file (`ledger.pub` from `lexecon init-keys`) or key
    /// directory. Default: `ledger.pub` in $LEXECON_KEYS, else in
    /// $XDG_CONFIG_HOME/lexecon/keys (~/.config/lexecon/keys), when it exists.
    #[arg(long)]
    pub pubkey: Option<PathBuf>,
    /// Approver public key file (`approver.pub` from `init-keys --approver`):
    /// every allowed escalation must then carry a valid receipt signed by it.
    #[arg(long, value_name = "FILE")]
    pub approver_pubkey: Option<PathBuf>,
    /// A file of anchors (`lexecon-anchor/v1 …` lines, as written by
    /// `lexecon-supervise --anchor-out`) or one signed checkpoint note: the
    /// ledger must still hold every run each anchor signed. Repeatable.
    #[arg(long, value_name = "FILE")]
    pub anchor: Vec<PathBuf>,
    /// Re-derive every decision from the policy its run pinned: each run's
    /// `policy_sha256` must be the hash of one of these files (or shipped
    /// policies) loaded with the run's variables, and every recorded
    /// verdict and winning rule must follow from it and the recorded action
    /// (check 14). Repeatable; give the policy of every run.
    #[arg(long, value_name = "FILE|NAME")]
    pub policy: Vec<PathBuf>,
    /// With --policy: a variable's value when a run header does not record
    /// it (HOME, WORKSPACE, TMPDIR, env.NAME). Repeatable.
    #[arg(long = "var", value_name = "NAME=VALUE", value_parser = crate::replay::parse_var, requires = "policy")]
    pub vars: Vec<(String, std::ffi::OsString)>,
    /// Print the result as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct ProveArgs {
    /// `[LEDGER] SEQ`: the ledger file (default: as for `verify`) and the
    /// sequence number of the record to prove.
    #[arg(num_args = 1..=2, required = true, value_name = "[LEDGER] SEQ")]
    pub args: Vec<PathBuf>,
    /// Prove against the checkpoint record with this seq instead of the
    /// run's final checkpoint.
    #[arg(long)]
    pub checkpoint: Option<u64>,
    /// Also write the record's line to this file (for `verify-proof --record`).
    #[arg(long)]
    pub record_out: Option<PathBuf>,
}

#[derive(Args, Debug)]
pub struct VerifyProofArgs {
    /// The proof (output of `lexecon prove`).
    #[arg(long)]
    pub proof: PathBuf,
    /// A file holding the record's line.
    #[arg(long)]
    pub record: PathBuf,
    /// Host public key file or key directory. Default: $LEXECON_KEYS, else
    /// $XDG_CONFIG_HOME/lexecon/keys (~/.config/lexecon/keys).
    #[arg(long)]
    pub pubkey: Option<PathBuf>,
    /// Print the result as JSON: `{"status": "VALID"|"INVALID", "seq",
    /// "index", "size", "origin", "fingerprint"}` or `{"status": "INVALID",
    /// "error"}`.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct LedgerArgs {
    #[command(subcommand)]
    pub command: LedgerCommand,
}

#[derive(Subcommand, Debug)]
pub enum LedgerCommand {
    /// Show a verified ledger's records, one line per action, escaped as
    /// the block lines are.
    Show(super::reader::ShowArgs),
    /// Count a verified ledger's records: by kind, verdict, outcome, rule;
    /// the programs, paths and hosts seen most.
    Stats(super::reader::StatsArgs),
    /// Print every run's host key and epoch keys as C2SP verifier keys.
    Keys(super::reader::KeysArgs),
    /// Export a verified ledger's records for log collectors: OTLP/JSON
    /// (OpenTelemetry logs) or ECS-style JSON lines.
    Export(super::reader::ExportArgs),
    /// Make an evidence bundle for an auditor: the ledger, its public key,
    /// the runs' policies, the verify report, a README saying how to check.
    Bundle(super::reader::BundleArgs),
    /// Seal a ledger whose last line is torn, or whose last run has no end
    /// seal, so that appending can continue.
    Recover {
        /// The ledger file. Default: as for `verify`.
        ledger: Option<PathBuf>,
        /// Key directory holding the host signing key. Default:
        /// $LEXECON_KEYS, else $XDG_CONFIG_HOME/lexecon/keys (~/.config/lexecon/keys).
        #[arg(long)]
        keys: Option<PathBuf>,
        /// Print the result as JSON: `{"ledger", "torn_bytes",
        /// "torn_sha256", "unsealed_run", "recovery_seq"}`.
        #[arg(long)]
        json: bool,
    },
}

pub fn init_keys(args: InitKeysArgs) -> anyhow::Result<ExitCode> {
    let dir = locations::keys(args.dir.as_deref())?.dir;
    let (public, private_file, public_file) = if args.approver {
        (
            keys::generate_approver(&dir, args.force)?,
            keys::APPROVER_PRIVATE_KEY_FILE,
            keys::APPROVER_PUBLIC_KEY_FILE,
        )
    } else {
        (
            keys::generate(&dir, args.force)?,
            keys::PRIVATE_KEY_FILE,
            keys::PUBLIC_KEY_FILE,
        )
    };
    if args.json {
        println!(
            "{}",
            serde_json::json!({
                "private_key": dir.join(private_file).display().to_string(),
                "public_key": dir.join(public_file).display().to_string(),
                "verifier_key": public.to_vkey(),
                "fingerprint": public.fingerprint(),
            })
        );
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "Created {} (private, mode 0600) and {}",
        dir.join(private_file).display(),
        dir.join(public_file).display()
    );
    println!("Public key: {}", public.to_vkey());
    println!("Fingerprint: {}", public.fingerprint());
    Ok(ExitCode::SUCCESS)
}

/// `ledger.pub` of the key directory (`$LEXECON_KEYS`, else the default),
/// when it exists. Without one, a note when an earlier version's
/// `.lexecon/ledger.pub` is here, which is not used by itself.
pub(super) fn default_pubkey() -> Option<PathBuf> {
    let dir = locations::keys(None).ok()?.dir;
    let p = dir.join(keys::PUBLIC_KEY_FILE);
    if p.exists() {
        return Some(p);
    }
    let old = Path::new(locations::LEGACY_KEYS).join(keys::PUBLIC_KEY_FILE);
    if old.exists() {
        eprintln!(
            "lexecon: note: no public key {}; {} (where earlier versions kept keys) is not used unless named: pass --pubkey {}",
            crate::escape::path(&p),
            crate::escape::path(&old),
            crate::escape::path(&old),
        );
    }
    None
}

/// The ledger a command reads: `arg`, else found as described in
/// [`locations`]; an error when there is none.
pub(super) fn ledger_path(arg: Option<&Path>) -> anyhow::Result<PathBuf> {
    let cwd = std::env::current_dir().context("cannot read the current directory")?;
    Ok(locations::find_ledger(arg, &cwd, "the LEDGER argument")?.path)
}

pub fn verify(args: VerifyArgs) -> anyhow::Result<ExitCode> {
    let ledger = match ledger_path(args.ledger.as_deref()) {
        Ok(l) => l,
        Err(e) => {
            let msg = super::message(&e);
            if args.json {
                println!(
                    "{}",
                    serde_json::json!({"ledger": null, "status": "UNREADABLE", "error": msg})
                );
            } else {
                eprintln!("lexecon: error: {msg}");
            }
            return Ok(ExitCode::from(verify::EXIT_UNREADABLE));
        }
    };
    let key_path = args.pubkey.clone().or_else(default_pubkey);
    let key = match &key_path {
        Some(p) => match keys::load_public_key(p) {
            Ok(k) => Some(k),
            Err(e) => return unreadable(&args, &ledger, &e),
        },
        None => None,
    };
    let approver = match &args.approver_pubkey {
        Some(p) => match keys::load_public_key(p) {
            Ok(k) => Some(k),
            Err(e) => return unreadable(&args, &ledger, &e),
        },
        None => None,
    };
    let mut anchors = Vec::new();
    for path in &args.anchor {
        match read_anchors(path) {
            Ok(mut a) => anchors.append(&mut a),
            Err(e) => return unreadable(&args, &ledger, &e),
        }
    }
    let mut policies = Vec::new();
    for p in &args.policy {
        let text = super::PolicySource::resolve(p).and_then(|s| s.text());
        match text {
            Ok(t) => policies.push(t),
            Err(e) => {
                let e = LedgerError::Proof(super::message(&e));
                return unreadable(&args, &ledger, &e);
            }
        }
    }
    let mut report = match lg::verify_file_anchored(
        &ledger,
        key.as_ref().map(|k| k.verifying_key()),
        approver.as_ref().map(|k| k.verifying_key()),
        anchors,
    ) {
        Ok(r) => r,
        Err(e) => return unreadable(&args, &ledger, &e),
    };
    let rederived = if policies.is_empty() {
        None
    } else {
        let given = args.vars.iter().cloned().collect();
        let d = match crate::replay::rederive(&ledger, &policies, &given) {
            Ok(d) => d,
            Err(e) => return unreadable(&args, &ledger, &LedgerError::io("read", &ledger, e)),
        };
        for p in &d.problems {
            report.add_problem(p.clone());
        }
        report.problems_omitted += d.problems_omitted;
        Some(d)
    };
    if args.json {
        let mut j = report_json(&ledger, key_path.as_deref(), &report);
        if let Some(d) = &rederived {
            j["decisions"] = serde_json::json!({
                "checked": d.checked,
                "builtin": d.builtin,
                "runs": d.runs.iter().map(|(run, policy)| serde_json::json!({"run": run, "policy": policy})).collect::<Vec<_>>(),
            });
        }
        println!("{j}");
    } else {
        print_report(&ledger, key_path.as_deref(), &report);
        if let Some(d) = &rederived {
            println!(
                "Decisions: {} re-derived from the pinned policy ({} {}: {}), {} by built-in rules not re-derived",
                d.checked,
                d.runs.len(),
                if d.runs.len() == 1 { "run" } else { "runs" },
                d.runs
                    .iter()
                    .map(|(r, p)| format!("{} {}", &r[..r.len().min(8)], crate::escape::text(p)))
                    .collect::<Vec<_>>()
                    .join(", "),
                d.builtin
            );
        }
    }
    Ok(ExitCode::from(report.exit_code()))
}

fn read_anchors(path: &Path) -> Result<Vec<lg::Anchor>, LedgerError> {
    let text =
        std::fs::read_to_string(path).map_err(|e| LedgerError::io("read anchor file", path, e))?;
    lg::anchor::parse_file(&text, path).map_err(|e| {
        LedgerError::Proof(format!(
            "{e}; an anchor file holds the lines `lexecon-supervise --anchor-out` wrote"
        ))
    })
}

fn unreadable(args: &VerifyArgs, ledger: &Path, e: &LedgerError) -> anyhow::Result<ExitCode> {
    if args.json {
        println!(
            "{}",
            serde_json::json!({"ledger": ledger.display().to_string(), "status": "UNREADABLE", "error": e.to_string()})
        );
    } else {
        eprintln!("lexecon: error: {e}");
    }
    Ok(ExitCode::from(verify::EXIT_UNREADABLE))
}

fn print_report(ledger: &Path, key_path: Option<&Path>, r: &Report) {
    print!("{}", report_text(ledger, key_path, r));
    print!("{}", super::reader::next_steps(ledger, key_path, r));
}

/// The text `verify` prints (without the next steps).
pub(super) fn report_text(ledger: &Path, key_path: Option<&Path>, r: &Report) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    let _ = writeln!(out, "Status: {}", r.status.as_str());
    let _ = writeln!(out, "Ledger: {}", ledger.display());
    match (r.key_source, key_path) {
        (KeySource::Supplied, Some(p)) => {
            let _ = writeln!(out, "Key: {} ({})", r.host_keys.join(", "), p.display());
        }
        _ => {
            let _ = writeln!(
                out,
                "Key: NOT independently supplied: checked against the key named in the ledger itself ({}); this shows the file is intact, not who wrote it. Pass --pubkey FILE to authenticate.",
                if r.host_keys.is_empty() { "none".to_string() } else { r.host_keys.join(", ") }
            );
        }
    }
    let _ = writeln!(
        out,
        "Runs: {} ({} sealed, {} recovered, {} not sealed)",
        r.runs,
        r.sealed_runs,
        r.recovered_runs,
        r.runs.saturating_sub(r.sealed_runs + r.recovered_runs)
    );
    let c = &r.counts;
    let _ = writeln!(
        out,
        "Records: {} lines, {} decisions: {} allow, {} escalate, {} block ({} allowed, {} refused, {} killed)",
        r.lines, c.decisions, c.allow, c.escalate, c.block, c.allowed, c.refused, c.killed
    );
    if !r.anchors.is_empty() {
        let held = r.anchors.iter().filter(|a| a.held()).count();
        let _ = writeln!(
            out,
            "Anchors: {} checked, {held} held, {} not held",
            r.anchors.len(),
            r.anchors.len() - held
        );
        for a in r.anchors.iter().filter(|a| a.held()) {
            let _ = writeln!(out, "{}", crate::escape::text(&a.message));
        }
    }
    // A damaged ledger's problems can quote its bytes: shown escaped.
    for w in &r.warnings {
        let _ = writeln!(out, "warning: {}", crate::escape::text(&w.to_string()));
    }
    for p in &r.problems {
        let tag = match p.severity {
            Severity::Invalid => "error",
            Severity::Incomplete => "incomplete",
        };
        let _ = writeln!(out, "{tag}: {}", crate::escape::text(&p.to_string()));
    }
    if r.problems_omitted > 0 {
        let _ = writeln!(out, "… and {} more problems", r.problems_omitted);
    }
    if r.status == Status::Valid && r.key_source == KeySource::LedgerHeader {
        let _ = writeln!(
            out,
            "Note: VALID without an independently supplied key (exit code 4)."
        );
    }
    out
}

pub(super) fn report_json(ledger: &Path, key_path: Option<&Path>, r: &Report) -> serde_json::Value {
    let c = &r.counts;
    serde_json::json!({
        "ledger": ledger.display().to_string(),
        "status": r.status.as_str(),
        "exit_code": r.exit_code(),
        "key": {
            "source": match r.key_source { KeySource::Supplied => "supplied", KeySource::LedgerHeader => "ledger" },
            "file": key_path.map(|p| p.display().to_string()),
            "fingerprints": r.host_keys,
        },
        "lines": r.lines,
        "runs": r.runs,
        "sealed_runs": r.sealed_runs,
        "recovered_runs": r.recovered_runs,
        "run_list": r.run_list.iter().map(|run| serde_json::json!({
            "run": run.id,
            "line": run.line,
            "seq": run.seq.to_string(),
            "ending": run.ending.as_str(),
            "decisions": run.counts.decisions,
            "refused": run.counts.refused,
            "killed": run.counts.killed,
            "refusals": run.refusals,
        })).collect::<Vec<_>>(),
        "runs_omitted": r.runs_omitted,
        "counts": {
            "decisions": c.decisions,
            "verdicts": {"allow": c.allow, "escalate": c.escalate, "block": c.block},
            "outcomes": {"allowed": c.allowed, "refused": c.refused, "killed": c.killed},
        },
        "warnings": r.warnings,
        "problems": r.problems.iter().map(|p| serde_json::json!({
            "line": p.line,
            "seq": p.seq,
            "check": p.check.as_str(),
            "check_number": p.check.number(),
            "severity": match p.severity { Severity::Invalid => "invalid", Severity::Incomplete => "incomplete" },
            "message": p.message,
        })).collect::<Vec<_>>(),
        "problems_omitted": r.problems_omitted,
        "anchors": r.anchors.iter().map(|a| serde_json::json!({
            "anchor": a.index,
            "source": a.source,
            "run": a.run,
            "tree_size": a.size,
            "status": a.status(),
            "key": a.key,
            "message": a.message,
        })).collect::<Vec<_>>(),
    })
}

pub fn prove(args: ProveArgs) -> anyhow::Result<ExitCode> {
    let (given, seq) = match args.args.as_slice() {
        [seq] => (None, seq),
        [ledger, seq] => (Some(ledger.as_path()), seq),
        _ => anyhow::bail!("usage: lexecon prove [LEDGER] SEQ"),
    };
    let seq: u64 = seq.to_str().and_then(|s| s.parse().ok()).with_context(|| {
        format!(
            "{} is not a record's sequence number (usage: lexecon prove [LEDGER] SEQ)",
            crate::escape::path(seq)
        )
    })?;
    let ledger = ledger_path(given)?;
    let proved = proof::prove(&ledger, seq, args.checkpoint)?;
    if let Some(p) = &args.record_out {
        std::fs::write(p, format!("{}\n", proved.record))
            .with_context(|| format!("cannot write {}", p.display()))?;
    }
    if !proved.host_signed {
        eprintln!(
            "lexecon: warning: checkpoint seq {} is signed only by an epoch key; `verify-proof` with the host key needs the run's first or final checkpoint",
            proved.checkpoint_seq
        );
    }
    print!("{}", proved.proof.to_text());
    Ok(ExitCode::SUCCESS)
}

pub fn verify_proof(args: VerifyProofArgs) -> anyhow::Result<ExitCode> {
    let pubkey = match args.pubkey {
        Some(p) => p,
        None => locations::keys(None)?.dir,
    };
    let key: PublicKey = keys::load_public_key(&pubkey)?;
    let text = std::fs::read_to_string(&args.proof)
        .with_context(|| format!("cannot read proof {}", args.proof.display()))?;
    let record = std::fs::read_to_string(&args.record)
        .with_context(|| format!("cannot read record {}", args.record.display()))?;
    let p = Proof::parse(&text)?;
    let result = proof::verify_proof(&p, &record, &key);
    if args.json {
        let v = match &result {
            Ok(c) => serde_json::json!({
                "status": "VALID",
                "seq": c.seq.to_string(),
                "index": c.index.to_string(),
                "size": c.size.to_string(),
                "origin": c.origin,
                "fingerprint": key.fingerprint(),
            }),
            Err(e) => serde_json::json!({"status": "INVALID", "error": e.to_string()}),
        };
        let v = match (v, &result) {
            (
                mut v,
                Ok(ProofCheck {
                    process: Some((seq, p)),
                    ..
                }),
            ) => {
                v["process"] = serde_json::json!({
                    "seq": seq.to_string(),
                    "program": super::reader::bytes_json(std::os::unix::ffi::OsStrExt::as_bytes(p.program.as_os_str())),
                    "sha256": p.sha256.map(hex::encode),
                });
                v
            }
            (v, _) => v,
        };
        println!("{v}");
        return Ok(ExitCode::from(u8::from(result.is_err())));
    }
    match result {
        Ok(c) => {
            println!("Proof: VALID");
            println!(
                "Record seq {} is leaf {} of {} in {}, signed by {}",
                c.seq,
                c.index,
                c.size,
                c.origin,
                key.fingerprint()
            );
            if let Some((seq, p)) = &c.process {
                println!(
                    "Caller's program (process record seq {seq}, also included): {}{}",
                    crate::escape::path(&p.program),
                    p.sha256
                        .map(|h| format!(" sha256 {}", hex::encode(h)))
                        .unwrap_or_default()
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            println!("Proof: INVALID");
            println!("{e}");
            Ok(ExitCode::from(1))
        }
    }
}

pub fn ledger(args: LedgerArgs) -> anyhow::Result<ExitCode> {
    match args.command {
        LedgerCommand::Show(a) => super::reader::show(a),
        LedgerCommand::Stats(a) => super::reader::stats(a),
        LedgerCommand::Export(a) => super::reader::export(a),
        LedgerCommand::Keys(a) => super::reader::keys(a),
        LedgerCommand::Bundle(a) => super::reader::bundle(a),
        LedgerCommand::Recover {
            ledger,
            keys: dir,
            json,
        } => {
            let cwd = std::env::current_dir().context("cannot read the current directory")?;
            let ledger = ledger_path(ledger.as_deref())?;
            let keys = locations::keys(dir.as_deref())?;
            let key = super::supervise::load_key(&keys, &[&cwd])?;
            let r = lg::recover(&ledger, key)?;
            if json {
                println!(
                    "{}",
                    serde_json::json!({
                        "ledger": ledger.display().to_string(),
                        "torn_bytes": r.torn_bytes,
                        "torn_sha256": r.torn_sha256.map(hex::encode),
                        "unsealed_run": r.unsealed_run,
                        "recovery_seq": r.seq.to_string(),
                    })
                );
                return Ok(ExitCode::SUCCESS);
            }
            println!("Recovered {}", ledger.display());
            if r.torn_bytes > 0 {
                println!(
                    "Removed a partial record of {} bytes (sha256 {})",
                    r.torn_bytes,
                    r.torn_sha256.map(hex::encode).unwrap_or_default()
                );
            }
            if let Some(run) = &r.unsealed_run {
                println!("Sealed run {run}, which had no end seal");
            }
            println!("Recovery record: seq {}", r.seq);
            Ok(ExitCode::SUCCESS)
        }
    }
}
