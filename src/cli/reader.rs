//! `ledger show`, `ledger stats`, `explain`, `ledger keys`, `ledger bundle`:
//! reading a ledger for people, over [`crate::ledger::read`].
//!
//! Each command verifies the ledger first and shows its records only when
//! it is VALID against an independently supplied key. Otherwise it says so
//! and stops (exit code as `verify`'s), or with `--unverified` shows the
//! records anyway under a warning line, still exiting with `verify`'s code.
//! Everything the supervised tree chose (argv, paths, names, and rule
//! reasons, which can quote them) is shown escaped ([`crate::escape`]).

use std::fmt::Write as _;
use std::io::Write as _;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;
use clap::Args;
use serde_json::{json, Value as Json};

use crate::action::{Action, Mode, Verdict};
use crate::escape;
use crate::ledger::decode::{RecordKind, Recorded};
use crate::ledger::keys;
use crate::ledger::note::NoteVerifier;
use crate::ledger::read::{self, Entry, Item, Stats};
use crate::ledger::record::{Outcome, Stage};
use crate::ledger::verify::{KeySource, Report, RunEnding, Status};
use crate::session::report;

/// What every reading command takes: the ledger, its key, and whether to
/// read a ledger that does not verify.
#[derive(Args, Debug, Clone)]
pub struct Source {
    /// Host public key file (`ledger.pub`) or key directory. Default:
    /// `ledger.pub` in $LEXECON_KEYS, else in $XDG_CONFIG_HOME/lexecon/keys,
    /// when it exists.
    #[arg(long)]
    pub pubkey: Option<PathBuf>,
    /// Read the ledger even if it does not verify (VALID against a supplied
    /// key): the output is marked UNVERIFIED and the exit code is
    /// `verify`'s (1 invalid, 3 incomplete, 4 no key supplied).
    #[arg(long)]
    pub unverified: bool,
}

/// Which runs and records to show.
#[derive(Args, Debug, Clone)]
pub struct Selection {
    /// Only this run (its id, or a unique prefix of at least 4 hex digits).
    #[arg(long, conflicts_with = "last")]
    pub run: Option<String>,
    /// Only the last run of the file.
    #[arg(long)]
    pub last: bool,
}

#[derive(Args, Debug)]
#[command(
    after_help = "Exit codes: 0 shown, from a ledger VALID against a supplied key; 1 invalid, 3 incomplete, 4 valid only against the key named in the ledger (nothing is shown without --unverified); 2 could not read the ledger or key, or bad arguments"
)]
pub struct ShowArgs {
    /// The ledger file. Default: as for `verify`.
    pub ledger: Option<PathBuf>,
    #[command(flatten)]
    pub source: Source,
    #[command(flatten)]
    pub select: Selection,
    /// Only what was refused (or would have been, in observe mode):
    /// decisions refused or killed, and refusals.
    #[arg(long)]
    pub blocked: bool,
    /// Only records of this kind: `exec`, `map` (a file mapped executable),
    /// `open` (every file operation),
    /// `connect` (every network operation), an operation (`delete`,
    /// `rename`, `chmod`, `send`, `resolve`, …), or `refusal`, `escalation`,
    /// `resolution`, `dns`, `run`, `end`, `recovery`. Repeatable.
    #[arg(long, value_name = "K")]
    pub kind: Vec<String>,
    /// One JSON document (see docs/ledger.md, "Reading a ledger").
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct StatsArgs {
    /// The ledger file. Default: as for `verify`.
    pub ledger: Option<PathBuf>,
    #[command(flatten)]
    pub source: Source,
    #[command(flatten)]
    pub select: Selection,
    /// How many programs, paths and hosts to list.
    #[arg(long, default_value_t = 10)]
    pub top: usize,
    /// Print the counts as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct ExplainArgs {
    /// `[LEDGER] SEQ`: the ledger (default: as for `verify`) and the
    /// sequence number of the record to explain.
    #[arg(num_args = 1..=2, required = true, value_name = "[LEDGER] SEQ")]
    pub args: Vec<PathBuf>,
    #[command(flatten)]
    pub source: Source,
    /// The policy file the run used (or a shipped policy by name): its
    /// rules are applied to the recorded action again, showing each
    /// condition and what it compared. Loaded with the variables the run
    /// recorded; a policy whose hash differs from the run's is used, with
    /// a warning.
    #[arg(long)]
    pub policy: Option<PathBuf>,
    /// Print the explanation as JSON.
    #[arg(long)]
    pub json: bool,
}

/// Formats of `ledger export`.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExportFormat {
    /// One OTLP/JSON `LogsData` document (OpenTelemetry logs).
    Otlp,
    /// One ECS-style JSON object per line.
    Ecs,
}

#[derive(Args, Debug)]
pub struct ExportArgs {
    /// The ledger file. Default: as for `verify`.
    pub ledger: Option<PathBuf>,
    #[command(flatten)]
    pub source: Source,
    #[command(flatten)]
    pub select: Selection,
    /// The format (see docs/ledger.md, "Exports").
    #[arg(long, value_enum)]
    pub format: ExportFormat,
    /// Write to FILE instead of standard output.
    #[arg(long, short = 'o', value_name = "FILE")]
    pub out: Option<PathBuf>,
}

#[derive(Args, Debug)]
pub struct KeysArgs {
    /// The ledger file. Default: as for `verify`.
    pub ledger: Option<PathBuf>,
    #[command(flatten)]
    pub source: Source,
    #[command(flatten)]
    pub select: Selection,
    /// Print the keys as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct BundleArgs {
    /// The ledger file. Default: as for `verify`.
    pub ledger: Option<PathBuf>,
    /// The directory to create (it must not exist, or be empty).
    #[arg(long, short = 'o')]
    pub out: PathBuf,
    /// Host public key file (`ledger.pub`) or key directory, copied into
    /// the bundle. Default: as for `verify`. Required: a bundle is made only
    /// from a ledger VALID against a supplied key.
    #[arg(long)]
    pub pubkey: Option<PathBuf>,
    /// A policy file the runs used (a shipped policy by name too); it goes
    /// into the bundle when its hash matches a run header (loaded with that
    /// run's recorded variables). Runs that used a shipped policy get it
    /// without asking. Repeatable.
    #[arg(long, value_name = "FILE")]
    pub policy: Vec<PathBuf>,
}

// ------------------------------------------------------------ verifying

/// A ledger verified for reading.
struct Opened {
    path: PathBuf,
    report: Report,
    key_path: Option<PathBuf>,
    /// VALID against a supplied key.
    trusted: bool,
}

impl Opened {
    /// The verification, as the JSON outputs give it.
    fn verification_json(&self) -> Json {
        json!({
            "status": self.report.status.as_str(),
            "exit_code": self.report.exit_code(),
            "verified": self.trusted,
            "key": {
                "source": match self.report.key_source {
                    KeySource::Supplied => "supplied",
                    KeySource::LedgerHeader => "ledger",
                },
                "file": self.key_path.as_ref().map(|p| p.display().to_string()),
                "fingerprints": self.report.host_keys,
            },
            "problems": self.report.problems.len() as u64 + self.report.problems_omitted,
        })
    }

    /// The exit code of a reading command that read this ledger.
    fn exit(&self) -> ExitCode {
        ExitCode::from(self.report.exit_code())
    }
}

/// Why a ledger is not trusted, in one sentence.
fn distrust(r: &Report) -> String {
    match (r.status, r.key_source) {
        (Status::Valid, _) => "it is VALID only against the key named in the ledger itself, which anyone can make (no --pubkey, and no ledger.pub in the key directory)".to_string(),
        (s, _) => {
            let first = r
                .problems
                .first()
                .map(|p| format!("; first problem: {}", escape::text(&p.to_string())))
                .unwrap_or_default();
            format!(
                "it verifies {} ({} problem(s){first})",
                s.as_str(),
                r.problems.len() as u64 + r.problems_omitted
            )
        }
    }
}

/// Verify the ledger; `Err(code)` when it is not trusted and `--unverified`
/// was not given (the message is printed).
fn open(ledger: Option<&Path>, source: &Source) -> anyhow::Result<Result<Opened, ExitCode>> {
    let path = super::ledger::ledger_path(ledger)?;
    let key_path = source.pubkey.clone().or_else(super::ledger::default_pubkey);
    let key = match &key_path {
        Some(p) => Some(keys::load_public_key(p)?),
        None => None,
    };
    let report = crate::ledger::verify_file(&path, key.as_ref().map(|k| k.verifying_key()))?;
    let trusted = report.is_valid();
    let opened = Opened {
        path,
        report,
        key_path,
        trusted,
    };
    if trusted {
        return Ok(Ok(opened));
    }
    let shown = escape::path(&opened.path);
    if !source.unverified {
        eprintln!(
            "lexecon: error: not showing the records of {shown}: {}. A ledger that does not verify may hold forged or altered records. See `lexecon verify {shown}`{}; pass --unverified to read them anyway, marked as unverified.",
            distrust(&opened.report),
            if opened.report.key_source == KeySource::LedgerHeader {
                "; pass --pubkey FILE with the host's ledger.pub"
            } else {
                ""
            }
        );
        return Ok(Err(opened.exit()));
    }
    eprintln!(
        "lexecon: warning: UNVERIFIED: {shown}: {}; the records shown may be forged or altered",
        distrust(&opened.report)
    );
    Ok(Ok(opened))
}

/// Read the opened ledger's records: the verified lines when trusted,
/// every line otherwise.
fn read_all(o: &Opened, each: impl FnMut(Entry) -> Result<(), String>) -> anyhow::Result<()> {
    read::read(&o.path, o.trusted.then_some(&o.report), each)?;
    Ok(())
}

/// The run `--run`/`--last` select: `Ok(None)` for every run.
fn selected_run(o: &Opened, s: &Selection) -> anyhow::Result<Option<String>> {
    if s.last {
        return match o.report.run_list.last() {
            Some(r) => Ok(Some(r.id.clone())),
            None => anyhow::bail!("{} holds no run", escape::path(&o.path)),
        };
    }
    let Some(want) = &s.run else {
        return Ok(None);
    };
    let want = want.to_ascii_lowercase();
    if want.len() < 4 || !want.bytes().all(|c| c.is_ascii_hexdigit()) {
        anyhow::bail!(
            "--run {}: give a run id (32 hex digits) or a prefix of at least 4 of them; `lexecon verify` lists the runs",
            escape::text(&want)
        );
    }
    let hits: Vec<&str> = o
        .report
        .run_list
        .iter()
        .map(|r| r.id.as_str())
        .filter(|id| id.starts_with(&want))
        .collect();
    match hits.as_slice() {
        [one] => Ok(Some(one.to_string())),
        [] if o.report.runs_omitted > 0 && want.len() == 32 => Ok(Some(want)),
        [] => anyhow::bail!(
            "{} has no run {want}; `lexecon verify {}` lists its runs",
            escape::path(&o.path),
            escape::path(&o.path)
        ),
        many => anyhow::bail!(
            "--run {want} matches {} runs ({}); give more digits",
            many.len(),
            many.join(", ")
        ),
    }
}

// ------------------------------------------------------------- rendering

/// `2026-12-01T11:48:57.123Z` (UTC) from ns since the Unix epoch.
pub fn utc(ns: u128) -> String {
    let secs = (ns / 1_000_000_000) as i64;
    let ms = (ns / 1_000_000 % 1000) as u32;
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    // Civil date from days since 1970-01-01 (proleptic Gregorian).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{ms:03}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

/// What a decision record says Lexecon did, as a block line's verb.
fn verb(r: &Recorded) -> &'static str {
    if r.record == RecordKind::Escalation {
        return "asked about";
    }
    match (r.stage, r.outcome, r.verdict) {
        (_, Some(Outcome::Killed), _) => "killed",
        (_, Some(Outcome::Refused), _) => "blocked",
        (Some(Stage::Confirm), _, Verdict::Allow) => "ran",
        (_, _, Verdict::Allow) => "allowed",
        (_, _, Verdict::Block) if r.mode == Some(Mode::Observe) => "would block",
        (_, _, Verdict::Escalate) if r.mode == Some(Mode::Observe) => "would escalate",
        (_, _, Verdict::Block) => "allowed despite a block verdict",
        (_, _, Verdict::Escalate) => "allowed after escalation",
    }
}

/// The call a recorded action stands for, as the block lines name it
/// ([`crate::session::describe_call`]).
fn what(r: &Recorded) -> String {
    let mut s = match &r.syscall {
        Some(call) => crate::session::describe_call(call, &r.action),
        None => crate::replay::describe(r),
    };
    if r.stage == Some(Stage::Confirm) {
        s.push_str(" [at the exec itself]");
    }
    s
}

/// A record's block line: `VERB WHAT (rule RULE, record N): REASON; NOTE`.
fn action_line(r: &Recorded) -> String {
    let mut hint = r.note.clone().unwrap_or_default();
    if let Some(req) = r.request {
        hint = format!("request {req}");
    }
    report::line(
        verb(r),
        &what(r),
        r.rule.as_deref().unwrap_or("default"),
        Some(&format!("record {}", r.seq)),
        &r.reason,
        &hint,
    )
}

fn command_words(c: &[std::ffi::OsString]) -> String {
    c.iter()
        .map(|a| escape::os(a))
        .collect::<Vec<_>>()
        .join(" ")
}

/// The line `show` prints for a record; `None` for checkpoints and epoch
/// records (signatures, not actions: `lexecon verify` checks them).
pub(super) fn text_line(e: &Entry) -> Option<String> {
    let time = e.time_ns.map(utc).unwrap_or_else(|| "-".to_string());
    let seq = e.seq.map(|s| s.to_string()).unwrap_or_else(|| "?".into());
    let run = e.run.as_deref().unwrap_or("?");
    Some(match &e.item {
        Item::Run(h) => format!(
            "== run {} started {time}: {} (in {}); policy {} (sha256 {}{}), mode {}; record {seq}",
            h.run_id,
            command_words(&h.command),
            escape::path(&h.cwd),
            h.policy_path
                .as_deref()
                .map(escape::path)
                .unwrap_or_else(|| "(default)".into()),
            &hex::encode(h.policy_sha256)[..16],
            if h.policy_layers.is_empty() {
                String::new()
            } else {
                format!(
                    "; layers {}",
                    h.policy_layers
                        .iter()
                        .map(|l| escape::path(&l.path))
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            },
            h.mode.as_str()
        ),
        Item::Action(r) => format!("{time} pid {} {}", r.pid, action_line(r)),
        Item::Intent {
            pid,
            channel,
            action,
            verdict,
            outcome,
            rule,
            reason,
        } => format!(
            "{time} pid {pid} asked the gate ({}): {} -> {} {} (rule {}, record {seq}): {}",
            escape::text(channel),
            crate::session::describe(action),
            verdict.as_str(),
            outcome.as_str(),
            escape::text(rule.as_deref().unwrap_or("default")),
            escape::text(reason)
        ),
        Item::Limit {
            event,
            rule,
            count,
            limit,
            reason,
        } => format!(
            "{time} {} {}: {count} of {limit} (record {seq}): {}",
            escape::text(event),
            rule.as_deref()
                .map(|r| format!("of rule {}", escape::text(r)))
                .unwrap_or_else(|| "of the run".into()),
            escape::text(reason)
        ),
        Item::Refusal {
            pid,
            syscall,
            rule,
            reason,
            errno,
            ..
        } => format!(
            "{time} pid {pid} {}",
            report::line(
                "refused",
                &escape::text(syscall),
                rule,
                Some(&format!("record {seq}")),
                reason,
                &format!("errno {errno}"),
            )
        ),
        Item::Resolution {
            request,
            escalation,
            outcome,
            by,
            peer_uid,
            peer_pid,
            scope,
            receipt,
        } => {
            let mut s = format!(
                "{time} request {request} answered: {} by {}",
                outcome.as_str(),
                escape::text(by)
            );
            if let (Some(u), Some(p)) = (peer_uid, peer_pid) {
                let _ = write!(s, " (uid {u}, pid {p})");
            }
            let _ = write!(
                s,
                ", {}",
                if scope == "run" {
                    "for the rest of the run"
                } else {
                    "once"
                }
            );
            if *receipt {
                s.push_str(", with a signed receipt");
            }
            let _ = write!(s, " (record {seq}, answers record {escalation})");
            s
        }
        Item::Dns {
            pid,
            query,
            resolver,
            rcode,
            bindings,
        } => {
            let answer = if bindings.is_empty() {
                match rcode {
                    Some(c) => format!("no address (rcode {c})"),
                    None => "no answer".to_string(),
                }
            } else {
                bindings
                    .iter()
                    .map(|(n, a)| format!("{} = {}", escape::text(n), escape::text(a)))
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            format!(
                "{time} pid {pid} dns {} via {}: {answer} (record {seq})",
                escape::text(query),
                escape::text(resolver)
            )
        }
        Item::End {
            exit_status,
            signal,
            note,
            counts,
        } => {
            let how = match (exit_status, signal) {
                (Some(x), _) => format!("exit status {x}"),
                (None, Some(s)) => format!("killed by signal {s}"),
                _ => "no exit status".to_string(),
            };
            let mut s = format!(
                "== run {run} ended {time}: {how}; {} decisions ({} allowed, {} refused, {} killed; verdicts {} allow, {} escalate, {} block); record {seq}",
                counts.decisions,
                counts.allowed,
                counts.refused,
                counts.killed,
                counts.allow,
                counts.escalate,
                counts.block
            );
            if let Some(n) = note {
                let _ = write!(s, "; {}", escape::text(n));
            }
            s
        }
        Item::Recovery {
            unsealed_run,
            torn_bytes,
        } => {
            let mut s = format!("== recovery {run} at {time}: `lexecon ledger recover`");
            if let Some(u) = unsealed_run {
                let _ = write!(s, " sealed run {u}, which its writer did not seal");
            }
            if *torn_bytes > 0 {
                let _ = write!(s, "; removed a partial record of {torn_bytes} bytes");
            }
            let _ = write!(s, "; record {seq}");
            s
        }
        Item::Damaged(why) => format!("line {}: DAMAGED: {}", e.line, escape::text(why)),
        Item::Epoch { .. } | Item::Checkpoint { .. } => return None,
        Item::Process { id, process } => format!(
            "{time} process record {id} (record {seq}): the program {}{}{} of the run's decisions that name it",
            escape::path(&process.program),
            process
                .sha256
                .map(|h| format!(" (sha256 {})", hex::encode(h)))
                .unwrap_or_default(),
            process
                .injected
                .as_deref()
                .map(|w| format!(", code injected: {}", escape::text(w)))
                .unwrap_or_default()
        ),
    })
}

/// Bytes as JSON the way the ledger stores them: a string when UTF-8, else
/// `{"b64": …}`.
pub(super) fn bytes_json(b: &[u8]) -> Json {
    match std::str::from_utf8(b) {
        Ok(s) => Json::String(s.to_string()),
        Err(_) => {
            use base64::Engine as _;
            json!({"b64": base64::engine::general_purpose::STANDARD.encode(b)})
        }
    }
}

/// One record in `show --json`.
fn entry_json(e: &Entry, verified: bool) -> Json {
    let record = serde_json::from_str::<Json>(&e.text).unwrap_or(Json::Null);
    let mut v = json!({
        "line": e.line,
        "seq": e.seq.map(|s| s.to_string()),
        "run": e.run,
        "kind": e.kind(),
        "time": e.time_ns.map(|t| t.to_string()),
        "blocked": e.is_blocked(),
        "text": text_line(e),
        "verified": verified,
        "record": record,
    });
    if let Item::Damaged(why) = &e.item {
        v["error"] = Json::String(why.clone());
    }
    v
}

// -------------------------------------------------------------- commands

pub fn show(args: ShowArgs) -> anyhow::Result<ExitCode> {
    for k in &args.kind {
        if !read::is_kind_name(k) {
            anyhow::bail!(
                "--kind {}: not a kind of record; use exec, open, connect, an operation (delete, rename, chmod, send, resolve, …), refusal, escalation, resolution, dns, run, end or recovery",
                escape::text(k)
            );
        }
    }
    let o = match open(args.ledger.as_deref(), &args.source)? {
        Ok(o) => o,
        Err(code) => return Ok(code),
    };
    let run = selected_run(&o, &args.select)?;
    let wanted = |e: &Entry| {
        run.as_ref().is_none_or(|r| e.run.as_ref() == Some(r))
            && (!args.blocked || e.is_blocked())
            && (args.kind.is_empty() || args.kind.iter().any(|k| read::entry_is_kind(e, k)))
            && !matches!(e.item, Item::Epoch { .. } | Item::Checkpoint { .. })
    };
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    let mut shown = 0u64;
    if args.json {
        let head = json!({
            "ledger": o.path.display().to_string(),
            "verification": o.verification_json(),
            "run": run,
            "blocked": args.blocked,
            "kinds": args.kind,
        });
        // One document, written as it is read: the head's members, then the
        // records.
        let head = head.to_string();
        write!(out, "{},\"records\":[", &head[..head.len() - 1])?;
        read_all(&o, |e| {
            if wanted(&e) {
                let sep = if shown == 0 { "" } else { "," };
                shown += 1;
                write!(out, "{sep}\n{}", entry_json(&e, o.trusted)).map_err(|e| e.to_string())?;
            }
            Ok(())
        })?;
        writeln!(out, "\n],\"shown\":{shown}}}")?;
    } else {
        if !o.trusted {
            writeln!(
                out,
                "WARNING: UNVERIFIED ledger ({}): these records may be forged or altered",
                distrust(&o.report)
            )?;
        }
        read_all(&o, |e| {
            // A format-2 process record is shown in the decisions that
            // name it (and in `--json`).
            if wanted(&e) && !matches!(e.item, Item::Process { .. }) {
                if let Some(l) = text_line(&e) {
                    shown += 1;
                    writeln!(out, "{l}").map_err(|e| e.to_string())?;
                }
            }
            Ok(())
        })?;
        if shown == 0 {
            writeln!(out, "(no record matches)")?;
        }
    }
    out.flush()?;
    Ok(o.exit())
}

fn tally_json(t: &read::Tally, n: usize, key: &str) -> Json {
    json!({
        "top": t.top(n).iter().map(|(k, c)| json!({key: bytes_json(k), "count": c})).collect::<Vec<_>>(),
        "distinct": t.distinct(),
        "total": t.total(),
        "other": t.other,
    })
}

fn tally_text(
    out: &mut impl std::io::Write,
    title: &str,
    t: &read::Tally,
    n: usize,
) -> std::io::Result<()> {
    if t.total() == 0 {
        return writeln!(out, "{title}: none");
    }
    writeln!(
        out,
        "{title} ({} distinct{}):",
        t.distinct(),
        if t.distinct() > n {
            format!(", top {n}")
        } else {
            String::new()
        }
    )?;
    for (k, c) in t.top(n) {
        writeln!(out, "  {c:>8}  {}", escape::word(k))?;
    }
    if t.other > 0 {
        writeln!(
            out,
            "  {:>8}  (others, beyond {} distinct)",
            t.other,
            read::MAX_DISTINCT
        )?;
    }
    Ok(())
}

pub fn export(args: ExportArgs) -> anyhow::Result<ExitCode> {
    use std::io::Write as _;
    let o = match open(args.ledger.as_deref(), &args.source)? {
        Ok(o) => o,
        Err(code) => return Ok(code),
    };
    let run = selected_run(&o, &args.select)?;
    let mut out: Box<dyn std::io::Write> = match &args.out {
        Some(p) => Box::new(std::io::BufWriter::new(
            std::fs::File::create(p)
                .map_err(|e| anyhow::anyhow!("cannot create {}: {e}", escape::path(p)))?,
        )),
        None => Box::new(std::io::BufWriter::new(std::io::stdout().lock())),
    };
    let wanted = |e: &Entry| run.as_ref().is_none_or(|r| e.run.as_ref() == Some(r));
    match args.format {
        ExportFormat::Otlp => {
            let mut entries = Vec::new();
            read_all(&o, |e| {
                if wanted(&e) {
                    entries.push(e);
                }
                Ok(())
            })?;
            let doc = super::export::otlp(&entries, text_line);
            serde_json::to_writer(&mut out, &doc)?;
            writeln!(out)?;
        }
        ExportFormat::Ecs => {
            let mut failed = None;
            read_all(&o, |e| {
                if !wanted(&e) {
                    return Ok(());
                }
                if let Some(v) = super::export::ecs(&e, e.run.as_deref(), text_line) {
                    if let Err(err) = serde_json::to_writer(&mut out, &v)
                        .map_err(std::io::Error::from)
                        .and_then(|()| writeln!(out))
                    {
                        failed.get_or_insert(err);
                    }
                }
                Ok(())
            })?;
            if let Some(e) = failed {
                anyhow::bail!("cannot write the export: {e}");
            }
        }
    }
    out.flush()?;
    Ok(o.exit())
}

pub fn stats(args: StatsArgs) -> anyhow::Result<ExitCode> {
    let o = match open(args.ledger.as_deref(), &args.source)? {
        Ok(o) => o,
        Err(code) => return Ok(code),
    };
    let run = selected_run(&o, &args.select)?;
    let mut st = Stats::default();
    read_all(&o, |e| {
        if run.as_ref().is_none_or(|r| e.run.as_ref() == Some(r)) {
            st.add(&e);
        }
        Ok(())
    })?;
    let c = &st.counts;
    let n = args.top;
    if args.json {
        let by = |t: &read::Tally| {
            t.top(usize::MAX)
                .into_iter()
                .map(|(k, c)| (String::from_utf8_lossy(k).into_owned(), json!(c)))
                .collect::<serde_json::Map<_, _>>()
        };
        let v = json!({
            "ledger": o.path.display().to_string(),
            "verification": o.verification_json(),
            "run": run,
            "runs": st.runs,
            "decisions": c.decisions,
            "verdicts": {"allow": c.allow, "escalate": c.escalate, "block": c.block},
            "outcomes": {"allowed": c.allowed, "refused": c.refused, "killed": c.killed},
            "by_kind": by(&st.by_kind),
            "by_rule": by(&st.by_rule),
            "records": by(&st.other_records),
            "programs": tally_json(&st.programs, n, "program"),
            "paths": tally_json(&st.paths, n, "path"),
            "hosts": tally_json(&st.hosts, n, "host"),
        });
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(o.exit());
    }
    let mut out = std::io::stdout().lock();
    if !o.trusted {
        writeln!(
            out,
            "WARNING: UNVERIFIED ledger ({}): these counts may be of forged or altered records",
            distrust(&o.report)
        )?;
    }
    writeln!(out, "Ledger: {}", escape::path(&o.path))?;
    match &run {
        Some(r) => writeln!(out, "Run: {r}")?,
        None => writeln!(out, "Runs: {}", st.runs)?,
    }
    writeln!(
        out,
        "Decisions: {} (verdicts: {} allow, {} escalate, {} block; outcomes: {} allowed, {} refused, {} killed)",
        c.decisions, c.allow, c.escalate, c.block, c.allowed, c.refused, c.killed
    )?;
    let mut list = |title: &str, t: &read::Tally| -> std::io::Result<()> {
        writeln!(out, "{title}:")?;
        if t.total() == 0 {
            writeln!(out, "  none")?;
        }
        for (k, c) in t.top(usize::MAX) {
            writeln!(out, "  {c:>8}  {}", escape::text_bytes(k))?;
        }
        Ok(())
    };
    list("By kind", &st.by_kind)?;
    list("By rule", &st.by_rule)?;
    list("Other records", &st.other_records)?;
    tally_text(&mut out, "Programs executed", &st.programs, n)?;
    tally_text(&mut out, "Paths", &st.paths, n)?;
    tally_text(&mut out, "Hosts", &st.hosts, n)?;
    Ok(o.exit())
}

pub fn explain(args: ExplainArgs) -> anyhow::Result<ExitCode> {
    let (given, seq) = match args.args.as_slice() {
        [seq] => (None, seq),
        [ledger, seq] => (Some(ledger.as_path()), seq),
        _ => anyhow::bail!("usage: lexecon explain [LEDGER] SEQ"),
    };
    let seq: u64 = seq.to_str().and_then(|s| s.parse().ok()).with_context(|| {
        format!(
            "{} is not a record's sequence number (usage: lexecon explain [LEDGER] SEQ; `lexecon ledger show` gives each record's number)",
            escape::path(seq)
        )
    })?;
    let o = match open(given, &args.source)? {
        Ok(o) => o,
        Err(code) => return Ok(code),
    };
    let mut header: Option<Box<crate::ledger::decode::RunRecord>> = None;
    let mut found: Option<(Entry, Option<Box<crate::ledger::decode::RunRecord>>)> = None;
    read_all(&o, |e| {
        if let Item::Run(h) = &e.item {
            header = Some(h.clone());
        }
        if found.is_none() && e.seq == Some(seq) {
            found = Some((e, header.clone()));
        }
        Ok(())
    })?;
    let Some((e, run)) = found else {
        anyhow::bail!(
            "{} has no record with seq {seq} (it has {} lines, seq 0 to {})",
            escape::path(&o.path),
            o.report.lines,
            o.report.lines.saturating_sub(1)
        );
    };
    let Item::Action(r) = &e.item else {
        // Not an action: show the record as `show` does.
        if args.json {
            println!(
                "{}",
                serde_json::to_string_pretty(&json!({
                    "ledger": o.path.display().to_string(),
                    "verification": o.verification_json(),
                    "entry": entry_json(&e, o.trusted),
                }))?
            );
        } else {
            if !o.trusted {
                println!("WARNING: UNVERIFIED ledger ({})", distrust(&o.report));
            }
            println!(
                "Record {seq} (line {}) is a `{}` record, not a judged action:",
                e.line,
                e.kind()
            );
            println!("{}", text_line(&e).unwrap_or_else(|| escape::text(&e.text)));
        }
        return Ok(o.exit());
    };
    // The policy, loaded as the run loaded it.
    let mut policy_note = None;
    let policy = match &args.policy {
        None => None,
        Some(p) => {
            let src = super::PolicySource::resolve(p)?;
            let (pol, how) = load_for_run(&src.text()?, run.as_deref())?;
            let same = run.as_ref().map(|h| {
                h.policy_sha256 == pol.sha256()
                    && crate::replay::layer_differences(h, &pol).is_empty()
            });
            if same != Some(true) {
                let msg = format!(
                    "the policy given ({}, sha256 {}, loaded with {how}) is not the one the run used (sha256 {}): below is what it decides now, not necessarily why the run decided",
                    escape::path(&src.path()),
                    hex::encode(pol.sha256()),
                    run.as_ref()
                        .map(|h| hex::encode(h.policy_sha256))
                        .unwrap_or_else(|| "unknown".into())
                );
                eprintln!("lexecon: warning: {msg}");
                policy_note = Some(msg);
            }
            Some((src.path(), pol, same == Some(true)))
        }
    };
    let explanation = policy.as_ref().map(|(_, p, _)| p.explain(&r.action));
    if args.json {
        let mut v = json!({
            "ledger": o.path.display().to_string(),
            "verification": o.verification_json(),
            "entry": entry_json(&e, o.trusted),
            "action": what(r),
            "decision": {
                "verdict": r.verdict.as_str(),
                "outcome": r.outcome.map(|x| x.as_str()),
                "stage": r.stage.map(|x| x.as_str()),
                "rule": r.rule,
                "matched": r.matched,
                "reason": r.reason,
                "mode": r.mode.map(|m| m.as_str()),
                "note": r.note,
            },
            "run": run.as_ref().map(|h| json!({
                "id": h.run_id,
                "policy_sha256": hex::encode(h.policy_sha256),
                "policy_path": h.policy_path.as_ref().map(|p| bytes_json(p.as_os_str().as_bytes())),
                "policy_layers": (!h.policy_layers.is_empty()).then(|| h.policy_layers.iter().map(|l| json!({
                    "path": bytes_json(l.path.as_os_str().as_bytes()),
                    "sha256": hex::encode(l.sha256),
                })).collect::<Vec<_>>()),
                "mode": h.mode.as_str(),
            })),
            "policy": Json::Null,
        });
        if let (Some((path, pol, same)), Some(ex)) = (&policy, &explanation) {
            v["policy"] = json!({
                "path": path.display().to_string(),
                "sha256": hex::encode(pol.sha256()),
                "matches_run": same,
                "warning": policy_note,
                "explanation": ex.to_json(),
                "agrees": ex.decision.verdict == r.verdict && ex.decision.rule == r.rule,
            });
        }
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(o.exit());
    }
    if !o.trusted {
        println!(
            "WARNING: UNVERIFIED ledger ({}): this record may be forged or altered",
            distrust(&o.report)
        );
    }
    println!(
        "Record: {seq} (line {}) of run {}, {}",
        e.line,
        e.run.as_deref().unwrap_or("?"),
        e.kind()
    );
    println!("Time: {}", utc(r.time_ns));
    let program = match &r.action {
        Action::Open(x) => x.process.as_ref(),
        Action::Connect(x) => x.process.as_ref(),
        Action::Exec(_) | Action::Tool(_) => None,
    };
    println!(
        "Process: pid {} (parent {}){}",
        r.pid,
        r.ppid,
        program
            .map(|p| format!(", running {}", escape::path(&p.program)))
            .unwrap_or_default()
    );
    println!("Action: {}", what(r));
    print_action_fields(&r.action);
    if let Some(s) = r.stage {
        println!(
            "Stage: {} ({})",
            s.as_str(),
            match s {
                Stage::Request => "judged at the system call, before the kernel acted",
                Stage::Confirm => "after the kernel committed to the new program, before it ran",
            }
        );
    }
    match r.outcome {
        Some(out) => println!(
            "Decision: {} (outcome: {}{})",
            r.verdict.as_str().to_uppercase(),
            out.as_str(),
            r.mode
                .map(|m| format!(", mode {}", m.as_str()))
                .unwrap_or_default()
        ),
        None => println!(
            "Decision: ESCALATE (held for a human: request {}; the answer is the `resolution` record that follows, then the call's decision)",
            r.request.unwrap_or(0)
        ),
    }
    println!(
        "Rule: {}",
        r.rule
            .as_deref()
            .map(escape::text)
            .unwrap_or_else(|| "(none; the kind's default)".into())
    );
    if !r.matched.is_empty() {
        println!(
            "Matched: {}",
            r.matched
                .iter()
                .map(|m| escape::text(m))
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    println!("Reason: {}", escape::text(&r.reason));
    if let Some(n) = &r.note {
        println!("Note: {}", escape::text(n));
    }
    if let Some(h) = &run {
        println!(
            "Policy of the run: {} (sha256 {})",
            h.policy_path
                .as_deref()
                .map(escape::path)
                .unwrap_or_else(|| "(default)".into()),
            hex::encode(h.policy_sha256)
        );
        for l in &h.policy_layers {
            println!(
                "  layer: {} (sha256 {})",
                escape::path(&l.path),
                hex::encode(l.sha256)
            );
        }
    }
    match (&policy, &explanation) {
        (Some((path, pol, same)), Some(ex)) => {
            println!();
            println!(
                "Applying {} (sha256 {}{}) to the recorded action:",
                escape::path(path),
                &hex::encode(pol.sha256())[..16],
                if *same {
                    ", the run's policy"
                } else {
                    ", NOT the run's policy"
                }
            );
            super::policy::print_explanation(ex, pol.mode());
            if ex.decision.verdict != r.verdict || ex.decision.rule != r.rule {
                println!(
                    "Note: the recorded decision ({} by {}) differs from this policy's: {}",
                    r.verdict.as_str(),
                    r.rule
                        .as_deref()
                        .map(escape::text)
                        .unwrap_or_else(|| "the default".into()),
                    if *same {
                        "built-in rules (self-protection, containment) and escalation answers are decided by the supervisor, not the policy"
                    } else {
                        "this is not the policy the run used"
                    }
                );
            }
        }
        _ => println!(
            "(pass --policy FILE with the run's policy to see each condition and what it compared)"
        ),
    }
    Ok(o.exit())
}

/// `src` loaded as the run `header` loaded its policy: with the variables
/// the header recorded ([`crate::replay::RunVars`]), so that its hash is
/// the one the header pins when it is the same policy. A ledger written
/// before headers recorded them gets this environment's variables and the
/// run's workspace (the hash then matches only if they are the same); the
/// second value says which.
fn load_for_run(
    t: &crate::replay::PolicyText,
    header: Option<&crate::ledger::decode::RunRecord>,
) -> anyhow::Result<(crate::policy::Policy, &'static str)> {
    let recorded =
        header.and_then(|h| crate::replay::RunVars::of(h, &std::collections::BTreeMap::new()).ok());
    if let Some(vars) = recorded {
        let p = vars.load(&t.text, &t.origin).map_err(anyhow::Error::msg)?;
        return Ok((p, "the variables the run recorded"));
    }
    let ws = header
        .map(|h| h.workspace.clone().unwrap_or_else(|| h.cwd.clone()))
        .unwrap_or_else(|| PathBuf::from("/"));
    let p = crate::policy::Policy::from_str(&t.text, &t.origin, &super::vars_for(&ws)).map_err(
        |errs| {
            for err in errs.iter() {
                eprintln!("{err}");
            }
            anyhow::anyhow!(
                "policy {} is invalid ({} errors)",
                escape::text(&t.origin),
                errs.len()
            )
        },
    )?;
    Ok((
        p,
        "this environment's variables and the run's workspace (the run recorded none)",
    ))
}

/// The fields of an action, one per line, escaped.
fn print_action_fields(a: &Action) {
    match a {
        Action::Exec(x) => {
            println!("  program: {}", escape::path(&x.path));
            println!(
                "  argv: {}",
                x.argv
                    .iter()
                    .map(|s| escape::os(s))
                    .collect::<Vec<_>>()
                    .join(" ")
            );
            println!("  cwd: {}", escape::path(&x.cwd));
            if let Some(h) = x.sha256 {
                println!("  sha256: {}", hex::encode(h));
            }
        }
        Action::Open(x) => {
            println!("  path: {}", escape::path(&x.path));
            println!("  operation: {}", x.op.as_str());
            println!("  access: {}", x.access);
            println!("  cwd: {}", escape::path(&x.cwd));
        }
        Action::Connect(c) => {
            println!("  operation: {} ({})", c.op.as_str(), c.protocol.as_str());
            if !c.names.is_empty() {
                println!(
                    "  names bound to the address: {}",
                    c.names
                        .iter()
                        .map(|n| escape::text(n))
                        .collect::<Vec<_>>()
                        .join(", ")
                );
            }
        }
        Action::Tool(t) => {
            println!("  tool: {}", escape::text(&t.name));
            println!("  input: {}", escape::text(&t.input.to_string()));
            if !t.cwd.as_os_str().is_empty() {
                println!("  cwd: {}", escape::path(&t.cwd));
            }
        }
    }
}

/// The verifier keys of each run: the host key, and every epoch key as a
/// C2SP vkey named `lexecon-epoch-N` (the name its signatures carry).
struct RunKeys {
    run: String,
    host: String,
    epochs: Vec<(u64, String)>,
}

fn run_keys(o: &Opened, run: Option<&str>) -> anyhow::Result<Vec<RunKeys>> {
    let mut out: Vec<RunKeys> = Vec::new();
    read_all(o, |e| {
        if run.is_some_and(|r| e.run.as_deref() != Some(r)) {
            return Ok(());
        }
        let vkey = |n: u64, key: &[u8; 32]| {
            ed25519_dalek::VerifyingKey::from_bytes(key)
                .map(|k| {
                    NoteVerifier {
                        name: crate::ledger::writer::epoch_key_name(n),
                        key: k,
                    }
                    .to_vkey()
                })
                .map_err(|_| format!("line {}: epoch key {n} is not an Ed25519 key", e.line))
        };
        match &e.item {
            Item::Run(_) => {
                let v = crate::ledger::jcs::parse(&e.text, crate::ledger::jcs::Mode::Strict)
                    .map_err(|x| x.to_string())?;
                let p = crate::ledger::record::parse(&v)?;
                if let crate::ledger::record::Body::Run {
                    id,
                    host_key,
                    epoch_key,
                    ..
                } = p.body
                {
                    out.push(RunKeys {
                        run: id,
                        host: host_key,
                        epochs: vec![(0, vkey(0, &epoch_key)?)],
                    });
                }
            }
            Item::Epoch { epoch, key } => {
                if let Some(r) = out.last_mut() {
                    r.epochs.push((*epoch, vkey(*epoch, key)?));
                }
            }
            _ => {}
        }
        Ok(())
    })?;
    Ok(out)
}

pub fn keys(args: KeysArgs) -> anyhow::Result<ExitCode> {
    let o = match open(args.ledger.as_deref(), &args.source)? {
        Ok(o) => o,
        Err(code) => return Ok(code),
    };
    let run = selected_run(&o, &args.select)?;
    let runs = run_keys(&o, run.as_deref())?;
    if args.json {
        let v = json!({
            "ledger": o.path.display().to_string(),
            "verification": o.verification_json(),
            "runs": runs.iter().map(|r| json!({
                "run": r.run,
                "origin": format!("lexecon/{}", r.run),
                "host_key": r.host,
                "epoch_keys": r.epochs.iter().map(|(n, k)| json!({"epoch": n.to_string(), "vkey": k})).collect::<Vec<_>>(),
            })).collect::<Vec<_>>(),
        });
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        print!("{}", keys_text(&runs));
    }
    Ok(o.exit())
}

fn keys_text(runs: &[RunKeys]) -> String {
    let mut s = String::new();
    for r in runs {
        let _ = writeln!(s, "run {} (checkpoint origin lexecon/{})", r.run, r.run);
        let _ = writeln!(s, "  host {}", r.host);
        for (n, k) in &r.epochs {
            let _ = writeln!(s, "  epoch {n} {k}");
        }
    }
    s
}

// ---------------------------------------------------------------- bundle

pub fn bundle(args: BundleArgs) -> anyhow::Result<ExitCode> {
    let source = Source {
        pubkey: args.pubkey.clone(),
        unverified: false,
    };
    let o = match open(args.ledger.as_deref(), &source)? {
        Ok(o) => o,
        Err(code) => return Ok(code),
    };
    let key_path = o.key_path.clone().context("no public key")?;
    let key = keys::load_public_key(&key_path)?;
    // The run headers: which policy each used.
    let mut headers = Vec::new();
    read_all(&o, |e| {
        if let Item::Run(h) = e.item {
            headers.push(h);
        }
        Ok(())
    })?;
    // Each policy given must be one some run used; shipped policies a run
    // named are added.
    struct Included {
        file: String,
        source: String,
        sha256: String,
        text: Vec<u8>,
        runs: Vec<String>,
    }
    let mut included: Vec<Included> = Vec::new();
    let mut candidates: Vec<(super::PolicySource, bool)> = args
        .policy
        .iter()
        .map(|p| super::PolicySource::resolve(p).map(|s| (s, true)))
        .collect::<anyhow::Result<_>>()?;
    for h in &headers {
        // A run without a policy path used the shipped default.
        let named = match h.policy_path.as_deref() {
            None => Some("default"),
            Some(p) => p.to_str().and_then(|p| p.strip_prefix("builtin:")),
        };
        if let Some(name) = named {
            if let Ok(src) = super::PolicySource::resolve(Path::new(&format!("builtin:{name}"))) {
                if !candidates.iter().any(|(c, _)| c.path() == src.path()) {
                    candidates.push((src, false));
                }
            }
        }
    }
    for (src, asked) in &candidates {
        // Read once: what is hashed is what is copied.
        let t = src.text()?;
        let text = t.text.clone().into_bytes();
        let mut runs = Vec::new();
        let mut hash = None;
        for h in &headers {
            if let Ok((p, _)) = load_for_run(&t, Some(h)) {
                if p.is_layered() {
                    anyhow::bail!(
                        "not implemented: bundling a layered policy ({} includes other files, which the bundle would not hold, so it could not be loaded from it); bundle the ledger without --policy and hand the layer files over with it (the run header lists each with its hash)",
                        escape::path(&src.path())
                    );
                }
                if p.sha256() == h.policy_sha256 {
                    runs.push(h.run_id.clone());
                    hash = Some(hex::encode(p.sha256()));
                }
            }
        }
        match hash {
            Some(sha256) => {
                let base = src
                    .path()
                    .file_name()
                    .map(|n| n.to_string_lossy().replace(['/', ':'], "_"))
                    .unwrap_or_else(|| "policy".into());
                included.push(Included {
                    file: format!("policies/{}-{base}", &sha256[..12]),
                    source: src.path().display().to_string(),
                    sha256,
                    text,
                    runs,
                });
            }
            None if *asked => anyhow::bail!(
                "policy {} is not the policy of any run in {} (loaded with each run's recorded variables, its hash matches no run header); bundle only the policies the runs used (`lexecon ledger show --kind run` lists each run's policy and hash)",
                escape::path(&src.path()),
                escape::path(&o.path)
            ),
            None => {}
        }
    }
    let missing: Vec<&str> = headers
        .iter()
        .filter(|h| !included.iter().any(|i| i.runs.contains(&h.run_id)))
        .map(|h| h.run_id.as_str())
        .collect();
    // The directory.
    if args.out.exists() {
        let empty = std::fs::read_dir(&args.out)
            .with_context(|| format!("cannot read {}", escape::path(&args.out)))?
            .next()
            .is_none();
        if !empty {
            anyhow::bail!(
                "{} exists and is not empty; give a new directory with --out",
                escape::path(&args.out)
            );
        }
    }
    std::fs::create_dir_all(args.out.join("policies"))
        .with_context(|| format!("cannot create {}", escape::path(&args.out)))?;
    let write = |name: &str, data: &[u8]| -> anyhow::Result<()> {
        let p = args.out.join(name);
        std::fs::write(&p, data).with_context(|| format!("cannot write {}", escape::path(&p)))
    };
    // The ledger as verified: copied, then the copy verified again, so the
    // report is about the bytes in the bundle.
    let copy = args.out.join("ledger.jsonl");
    std::fs::copy(&o.path, &copy).with_context(|| {
        format!(
            "cannot copy {} to {}",
            escape::path(&o.path),
            escape::path(&copy)
        )
    })?;
    let report = crate::ledger::verify_file(&copy, Some(key.verifying_key()))?;
    if !report.is_valid() {
        anyhow::bail!(
            "the copy of the ledger in {} does not verify ({}): the ledger changed while it was copied; run the command again",
            escape::path(&args.out),
            report.status.as_str()
        );
    }
    if report.lines < o.report.lines {
        anyhow::bail!("the ledger shrank while it was copied; run the command again");
    }
    write("ledger.pub", format!("{}\n", key.to_vkey()).as_bytes())?;
    let copied = Opened {
        path: copy.clone(),
        report,
        key_path: Some(args.out.join("ledger.pub")),
        trusted: true,
    };
    write("keys.txt", keys_text(&run_keys(&copied, None)?).as_bytes())?;
    for i in &included {
        write(&i.file, &i.text)?;
    }
    let verify_text = super::ledger::report_text(
        Path::new("ledger.jsonl"),
        Some(Path::new("ledger.pub")),
        &copied.report,
    );
    write("verify.txt", verify_text.as_bytes())?;
    let verify_json = super::ledger::report_json(
        Path::new("ledger.jsonl"),
        Some(Path::new("ledger.pub")),
        &copied.report,
    );
    write(
        "verify.json",
        format!("{}\n", serde_json::to_string_pretty(&verify_json)?).as_bytes(),
    )?;
    let mut readme = String::new();
    let lines = [
        "Evidence bundle of a Lexecon ledger".to_string(),
        "===================================".to_string(),
        String::new(),
        format!(
            "Made by `lexecon ledger bundle` ({}) from {}.",
            crate::ledger::VERSION,
            escape::path(&o.path)
        ),
        String::new(),
        "Files:".to_string(),
        format!(
            "- ledger.jsonl   the ledger, byte for byte (lines: {}, runs: {})",
            copied.report.lines, copied.report.runs
        ),
        format!(
            "- ledger.pub     the host public key it was verified against (fingerprint {})",
            key.fingerprint()
        ),
        "- keys.txt       every run's host key and epoch keys, as C2SP verifier keys".to_string(),
        "- verify.txt     the verification report (`lexecon verify`); verify.json the same as JSON".to_string(),
        "- policies/      the policy files whose hash a run header records".to_string(),
        "- SHA256SUMS     the SHA-256 of every other file".to_string(),
        String::new(),
        "How to check it:".to_string(),
        "1. Obtain the host's public key (or its fingerprint) from its owner through a channel".to_string(),
        "   other than this bundle, and compare it with ledger.pub.".to_string(),
        "2. `sha256sum -c SHA256SUMS`".to_string(),
        "3. `lexecon verify ledger.jsonl --pubkey ledger.pub` must print `Status: VALID` and exit 0.".to_string(),
        "   With anchors kept elsewhere (lines `lexecon-anchor/v1 ...`), add `--anchor FILE`.".to_string(),
        "4. A run header's `policy_sha256` covers its policy's text and the variables the run".to_string(),
        "   recorded; `lexecon explain ledger.jsonl SEQ --pubkey ledger.pub --policy FILE`".to_string(),
        "   applies a policy below to the recorded action of record SEQ again, condition by condition.".to_string(),
        "5. `lexecon ledger show ledger.jsonl --pubkey ledger.pub [--blocked]` lists what was done,".to_string(),
        "   `lexecon ledger stats ledger.jsonl --pubkey ledger.pub` counts it.".to_string(),
        String::new(),
    ];
    for l in lines {
        readme.push_str(&l);
        readme.push('\n');
    }
    readme.push_str("Policies:\n");
    if included.is_empty() {
        readme.push_str("- none included\n");
    }
    for i in &included {
        let _ = writeln!(
            readme,
            "- {} (from {}, sha256 {}) used by run(s) {}",
            i.file,
            escape::text(&i.source),
            i.sha256,
            i.runs.join(", ")
        );
    }
    if !missing.is_empty() {
        let _ = writeln!(
            readme,
            "- NOT included: the policy of run(s) {} (not given with --policy)",
            missing.join(", ")
        );
    }
    write("README", readme.as_bytes())?;
    // Checksums of everything else.
    let mut names = vec![
        "README".to_string(),
        "keys.txt".into(),
        "ledger.jsonl".into(),
        "ledger.pub".into(),
        "verify.json".into(),
        "verify.txt".into(),
    ];
    names.extend(included.iter().map(|i| i.file.clone()));
    names.sort();
    let mut sums = String::new();
    for n in &names {
        let data =
            std::fs::read(args.out.join(n)).with_context(|| format!("cannot read back {n}"))?;
        use sha2::Digest as _;
        let _ = writeln!(sums, "{}  {n}", hex::encode(sha2::Sha256::digest(&data)));
    }
    write("SHA256SUMS", sums.as_bytes())?;
    println!("Bundle: {}", escape::path(&args.out));
    println!(
        "Ledger: {} lines, {} runs, VALID against {}",
        copied.report.lines,
        copied.report.runs,
        key.fingerprint()
    );
    println!("Policies: {} included", included.len());
    if !missing.is_empty() {
        eprintln!(
            "lexecon: warning: the policy of run(s) {} is not in the bundle: pass it with --policy FILE",
            missing.join(", ")
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// The runs a valid report lists, and where to look next (for `verify`).
pub fn next_steps(ledger: &Path, key: Option<&Path>, r: &Report) -> String {
    let mut s = String::new();
    if r.status != Status::Valid || r.run_list.is_empty() {
        return s;
    }
    let shown = escape::path(ledger);
    let key = key
        .map(|k| format!(" --pubkey {}", escape::path(k)))
        .unwrap_or_default();
    let listed = r.run_list.len();
    let from = listed.saturating_sub(5);
    let _ = writeln!(
        s,
        "Last runs{}:",
        if listed > 5 || r.runs_omitted > 0 {
            format!(" ({} of {})", listed - from, r.runs)
        } else {
            String::new()
        }
    );
    for run in &r.run_list[from..] {
        let c = &run.counts;
        let _ = writeln!(
            s,
            "  {} (line {}, {}): {} decisions, {} refused, {} killed{}",
            run.id,
            run.line,
            run.ending.as_str(),
            c.decisions,
            c.refused,
            c.killed,
            if run.refusals > 0 {
                format!(", {} other calls refused", run.refusals)
            } else {
                String::new()
            }
        );
    }
    let blocked: u64 = r
        .run_list
        .iter()
        .map(|x| x.counts.refused + x.counts.killed + x.refusals)
        .sum();
    let _ = writeln!(s, "Next:");
    if blocked > 0 {
        let _ = writeln!(
            s,
            "  lexecon ledger show {shown}{key} --blocked     # the {blocked} refused action(s), one line each"
        );
    }
    if let Some(last) = r.run_list.last() {
        let _ = writeln!(
            s,
            "  lexecon ledger show {shown}{key} --run {}   # everything the last run did",
            &last.id[..12]
        );
        if last.ending == RunEnding::Open {
            let _ = writeln!(s, "  (the last run is not sealed)");
        }
    }
    let _ = writeln!(
        s,
        "  lexecon ledger stats {shown}{key}              # counts by kind, rule, program, path, host"
    );
    let _ = writeln!(
        s,
        "  lexecon explain {shown} SEQ{key} --policy FILE # why record SEQ was decided so"
    );
    let _ = writeln!(
        s,
        "  lexecon ledger bundle {shown}{key} --out DIR --policy FILE   # evidence for an auditor"
    );
    s
}
