//! Re-judging recorded runs offline.
//!
//! `lexecon replay` judges what a run did against another policy and lists
//! what would change; `lexecon verify --policy` judges it against the
//! policy the run pinned and reports every record whose verdict does not
//! follow. Both read the ledger through [`crate::ledger::decode`] and judge
//! through [`Policy::judge`], the function the session judges every call
//! with, with what the record says about the call ([`circumstances`]). So
//! the same action is judged the same way online and offline.
//!
//! Not re-judged: decisions of Lexecon's built-in rules (`lexecon.…`: the
//! protection of the ledger, keys, policy and supervisor), which no policy
//! changes and which depend on where the run kept its files; they are
//! counted. Exec aliases through hard links ([`Circumstances::same_file_as`])
//! are found by looking up, on this machine, the files the policy names
//! literally, as the supervisor does when a run starts.

use std::collections::{BTreeMap, HashMap};
use std::ffi::OsString;
use std::path::{Path, PathBuf};

use crate::action::{Action, Decision, Mode, Verdict};
use crate::ledger::decode::{self, RecordKind, Recorded, RunRecord};
use crate::ledger::jcs;
use crate::ledger::verify::{Check, Problem, Severity};
use crate::ledger::{Outcome, Stage};
use crate::policy::{Circumstances, Env, Policy, Vars, BUILTIN_PREFIX};

/// One run of a ledger, as recorded.
#[derive(Debug, Clone)]
pub struct RecordedRun {
    pub header: RunRecord,
    /// Line of the header (1-based).
    pub header_line: u64,
    /// Decision and escalation records with their line numbers.
    pub records: Vec<(u64, Recorded)>,
    /// Decision or escalation records that could not be decoded.
    pub undecodable: Vec<Undecodable>,
}

/// A record that should hold an action but could not be read back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Undecodable {
    pub line: u64,
    pub seq: Option<u64>,
    pub message: String,
}

/// Calls `f` with each line of the ledger at `path`: its number (1-based)
/// and its text without the newline. Lines that are not UTF-8 (damaged;
/// `verify` reports them) are skipped. Reads one line at a time.
fn each_line(path: &Path, f: &mut dyn FnMut(u64, &str)) -> std::io::Result<()> {
    use std::io::BufRead as _;
    let mut r = std::io::BufReader::new(std::fs::File::open(path)?);
    let mut buf = Vec::new();
    let mut n = 0u64;
    loop {
        buf.clear();
        if r.read_until(b'\n', &mut buf)? == 0 {
            return Ok(());
        }
        n += 1;
        let bytes = buf.strip_suffix(b"\n").unwrap_or(&buf);
        if let Ok(text) = std::str::from_utf8(bytes) {
            f(n, text);
        }
    }
}

/// What one line of a ledger holds, for re-judging.
enum Item {
    Run(Box<RunRecord>),
    Record(Box<Recorded>),
    Undecodable(Undecodable),
    /// A `limit` record: a rate limit or the breaker changed the decision
    /// that follows it.
    Limit(LimitRecord),
    Other,
}

/// What a `limit` record says (see [`crate::session::limits`]).
#[derive(Debug, Clone)]
struct LimitRecord {
    /// `rate` or `breaker`.
    event: String,
    rule: Option<String>,
    time_ns: u128,
}

/// Reads one line: a run header, a decision or escalation record (decoded
/// when `records`), or something else (other kinds, lines that are not
/// canonical JSON: a torn tail).
///
/// `ctx` takes in every line read with `records` (format 2: a decision
/// reads its run's mode and `process` records from it); a line that breaks
/// its run's record format is [`Item::Undecodable`] when it should hold an
/// action, else [`Item::Other`].
fn item(line: u64, text: &str, records: bool, ctx: &mut decode::Context) -> Item {
    // A run header's canonical text holds `"kind":"run"` outside any
    // string (quotes inside strings are escaped): a cheap test first.
    if !records && !text.contains("\"kind\":\"run\"") {
        return Item::Other;
    }
    let Ok(v) = jcs::parse(text, jcs::Mode::Strict) else {
        return Item::Other;
    };
    let seq = || {
        v.get("seq")
            .and_then(jcs::Value::as_str)
            .and_then(|s| s.parse().ok())
    };
    let kind = v.get("kind").and_then(jcs::Value::as_str);
    if records {
        if let Err(message) = ctx.observe(&v) {
            return match kind {
                Some("decision" | "escalation") => Item::Undecodable(Undecodable {
                    line,
                    seq: seq(),
                    message,
                }),
                _ => Item::Other,
            };
        }
    }
    match kind {
        Some("run") => match decode::decode_run(&v) {
            Ok(Some(h)) => Item::Run(Box::new(h)),
            _ => Item::Other,
        },
        Some("limit") if records => {
            let text = |k: &str| v.get(k).and_then(jcs::Value::as_str).map(str::to_string);
            Item::Limit(LimitRecord {
                event: text("event").unwrap_or_default(),
                rule: text("rule"),
                time_ns: text("time").and_then(|t| t.parse().ok()).unwrap_or(0),
            })
        }
        Some("decision" | "escalation") if records => match ctx.decode_record(&v) {
            Ok(Some(r)) => Item::Record(Box::new(r)),
            Ok(None) => Item::Other,
            Err(message) => Item::Undecodable(Undecodable {
                line,
                seq: seq(),
                message,
            }),
        },
        _ => Item::Other,
    }
}

/// The run headers of the ledger at `path`, with their lines.
pub fn run_headers(path: &Path) -> std::io::Result<Vec<(u64, RunRecord)>> {
    let mut out = Vec::new();
    each_line(path, &mut |n, text| {
        if let Item::Run(h) = item(n, text, false, &mut decode::Context::new()) {
            out.push((n, *h));
        }
    })?;
    Ok(out)
}

/// Where one run is in its ledger.
#[derive(Debug, Clone)]
pub struct RunInLedger {
    pub header: RunRecord,
    /// Line of the header.
    pub first: u64,
    /// Line of the next run's header (`u64::MAX` for the last run).
    pub end: u64,
}

fn cannot_read(path: &Path, e: std::io::Error) -> String {
    format!("cannot read the ledger {}: {e}", crate::escape::path(path))
}

/// The run with id `id` (or a unique prefix of it), else the last run, of
/// the ledger at `path`.
pub fn find_run(path: &Path, id: Option<&str>) -> Result<RunInLedger, String> {
    let headers = run_headers(path).map_err(|e| cannot_read(path, e))?;
    let at = select_run(&headers, id)?;
    let (first, header) = headers[at].clone();
    let end = headers.get(at + 1).map_or(u64::MAX, |(n, _)| *n);
    Ok(RunInLedger { header, first, end })
}

/// Calls `f` with each decision and escalation record of `run` (its line,
/// and the record or why it could not be decoded), one line at a time.
/// Lines that are not JSON (a torn tail) and records of other kinds are
/// skipped.
pub fn each_record(
    path: &Path,
    run: &RunInLedger,
    f: &mut dyn FnMut(u64, Result<Recorded, Undecodable>),
) -> Result<(), String> {
    let mut ctx = decode::Context::new();
    each_line(path, &mut |n, text| {
        if n < run.first || n >= run.end {
            return;
        }
        match item(n, text, true, &mut ctx) {
            Item::Record(r) => f(n, Ok(*r)),
            Item::Undecodable(u) => f(n, Err(u)),
            Item::Run(_) | Item::Limit(_) | Item::Other => {}
        }
    })
    .map_err(|e| cannot_read(path, e))
}

/// The run with id `id` (or a unique prefix of it), else the last run, of
/// the ledger at `path`, with its decision and escalation records (see
/// [`each_record`]; a record that cannot be decoded is kept as
/// [`Undecodable`]). Holds that run's records.
pub fn read_run(path: &Path, id: Option<&str>) -> Result<RecordedRun, String> {
    let at = find_run(path, id)?;
    let mut run = RecordedRun {
        header: at.header.clone(),
        header_line: at.first,
        records: Vec::new(),
        undecodable: Vec::new(),
    };
    each_record(path, &at, &mut |n, item| match item {
        Ok(r) => run.records.push((n, r)),
        Err(u) => run.undecodable.push(u),
    })?;
    Ok(run)
}

/// The index in `headers` of the run with id `id` (or a unique prefix of
/// it), else of the last run.
fn select_run(headers: &[(u64, RunRecord)], id: Option<&str>) -> Result<usize, String> {
    let Some(id) = id else {
        return headers
            .len()
            .checked_sub(1)
            .ok_or_else(|| "the ledger holds no run".to_string());
    };
    let found: Vec<usize> = (0..headers.len())
        .filter(|&i| headers[i].1.run_id.starts_with(id))
        .collect();
    match found.as_slice() {
        [one] => Ok(*one),
        [] => Err(format!(
            "the ledger holds no run {} (its runs: {})",
            crate::escape::text(id),
            headers
                .iter()
                .map(|(_, h)| h.run_id.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        )),
        many => Err(format!(
            "{} runs begin with {}: give more digits",
            many.len(),
            crate::escape::text(id)
        )),
    }
}

/// Where a variable's value came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VarSource {
    /// The run header.
    Recorded,
    /// `--var NAME=VALUE`.
    Given,
}

impl VarSource {
    pub fn as_str(self) -> &'static str {
        match self {
            VarSource::Recorded => "recorded",
            VarSource::Given => "given",
        }
    }
}

/// The variables a run's policy was loaded with: `HOME`, `WORKSPACE`,
/// `TMPDIR` and `env.NAME`, each with where its value came from.
#[derive(Debug, Clone)]
pub struct RunVars {
    pub values: BTreeMap<String, (OsString, VarSource)>,
}

impl RunVars {
    /// The values of the run header, overridden by `given`; an error
    /// naming every one of `HOME`, `WORKSPACE`, `TMPDIR` known from
    /// neither (ledgers written before the header recorded them).
    pub fn of(header: &RunRecord, given: &BTreeMap<String, OsString>) -> Result<RunVars, String> {
        let mut values = BTreeMap::new();
        if let Some(w) = &header.workspace {
            values.insert(
                "WORKSPACE".to_string(),
                (w.clone().into_os_string(), VarSource::Recorded),
            );
        }
        for (k, v) in header.vars.iter().flatten() {
            values.insert(k.clone(), (v.clone(), VarSource::Recorded));
        }
        for (k, v) in given {
            values.insert(k.clone(), (v.clone(), VarSource::Given));
        }
        let missing: Vec<&str> = ["HOME", "WORKSPACE", "TMPDIR"]
            .into_iter()
            .filter(|k| !values.contains_key(*k))
            .collect();
        if !missing.is_empty() {
            return Err(format!(
                "run {} does not record the value of {} (its ledger was written before run headers recorded the policy's variables): give {} (the values the run had)",
                header.run_id,
                missing.join(", "),
                missing
                    .iter()
                    .map(|k| format!("--var {k}=PATH"))
                    .collect::<Vec<_>>()
                    .join(" ")
            ));
        }
        Ok(RunVars { values })
    }

    fn path(&self, k: &str) -> PathBuf {
        self.values
            .get(k)
            .map(|(v, _)| PathBuf::from(v))
            .unwrap_or_default()
    }

    /// `${HOME}`, `${WORKSPACE}`, `${TMPDIR}`.
    pub fn vars(&self) -> Vars {
        Vars {
            home: self.path("HOME"),
            workspace: self.path("WORKSPACE"),
            tmpdir: self.path("TMPDIR"),
        }
    }

    /// The `${env.NAME}` values.
    pub fn env(&self) -> Env {
        Env::fixed(self.values.iter().filter_map(|(k, (v, _))| {
            k.strip_prefix("env.")
                .map(|name| (name.to_string(), v.clone()))
        }))
    }

    /// Loads a policy's text with these values. An error when the policy
    /// is invalid, or reads an `${env.NAME}` whose value the run did not
    /// record and was not given (it is never taken from this process's
    /// environment).
    pub fn load(&self, text: &str, origin: &str) -> Result<Policy, String> {
        let policy = Policy::from_str_with_env(text, origin, &self.vars(), &self.env())
            .map_err(|e| e.to_string())?;
        let unknown: Vec<String> = policy
            .env_vars()
            .keys()
            .filter(|name| !self.values.contains_key(&format!("env.{name}")))
            .map(|name| format!("env.{name}"))
            .collect();
        if !unknown.is_empty() {
            return Err(format!(
                "{} reads {}, whose value the run did not record: give {} (an empty value stands for unset)",
                crate::escape::text(origin),
                unknown
                    .iter()
                    .map(|n| format!("${{{n}}}"))
                    .collect::<Vec<_>>()
                    .join(", "),
                unknown
                    .iter()
                    .map(|n| format!("--var {n}=VALUE"))
                    .collect::<Vec<_>>()
                    .join(" ")
            ));
        }
        Ok(policy)
    }
}

/// How the files of `policy` differ from the layers the run header
/// recorded (`policy_layers`), one sentence each; empty when they agree
/// (each layer's hash, in order; the paths may differ, as on another
/// machine). A header without layers agrees with a policy without
/// `include:` only.
pub fn layer_differences(header: &RunRecord, policy: &Policy) -> Vec<String> {
    use crate::escape;
    let loaded = if policy.is_layered() {
        policy.layers()
    } else {
        Vec::new()
    };
    let recorded = &header.policy_layers;
    let mut out = Vec::new();
    if recorded.len() != loaded.len() {
        out.push(format!(
            "the run recorded {} policy layers, {} has {}",
            recorded.len(),
            escape::text(policy.origin()),
            loaded.len()
        ));
    }
    for (i, (r, l)) in recorded.iter().zip(&loaded).enumerate() {
        if r.sha256 != l.sha256 {
            out.push(format!(
                "layer {} of the run, {} (sha256 {}), is now {} with sha256 {}",
                i + 1,
                escape::path(&r.path),
                hex::encode(r.sha256),
                escape::text(&l.path),
                hex::encode(l.sha256)
            ));
        }
    }
    out
}

/// Parses `NAME=VALUE` (`--var`): `HOME`, `WORKSPACE`, `TMPDIR` or
/// `env.NAME`.
pub fn parse_var(s: &str) -> Result<(String, OsString), String> {
    let (k, v) = s
        .split_once('=')
        .ok_or_else(|| format!("--var {s}: write NAME=VALUE, e.g. --var HOME=/home/me"))?;
    let env_ok = k.strip_prefix("env.").is_some_and(|n| {
        !n.is_empty() && n.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'_')
    });
    if !(matches!(k, "HOME" | "WORKSPACE" | "TMPDIR") || env_ok) {
        return Err(format!(
            "--var {k}=…: the variables of a policy are HOME, WORKSPACE, TMPDIR and env.NAME"
        ));
    }
    Ok((k.to_string(), OsString::from(v)))
}

/// What the record says about the call besides its action, as
/// [`Policy::judge`] takes it: the program the loader was asked to run
/// (recorded), the literal program path whose file the exec's recorded
/// identity is (looked up in `programs`), and whether it was a code
/// mapping (its note).
pub fn circumstances<'a>(
    r: &'a Recorded,
    programs: &'a HashMap<(u64, u64), PathBuf>,
) -> Circumstances<'a> {
    let same_file_as = match (&r.action, &r.identity) {
        (Action::Exec(_), Some(id)) => programs.get(&(id.dev, id.ino)).map(PathBuf::as_path),
        _ => None,
    };
    Circumstances {
        loaded: r.loaded.as_ref(),
        same_file_as,
        code_map: is_code_map(r),
    }
}

/// Whether the record is of a code mapping (its note says so).
pub fn is_code_map(r: &Recorded) -> bool {
    crate::ledger::read::is_code_map(r)
}

/// Whether a rule id names one of Lexecon's built-in rules.
pub fn is_builtin(rule: Option<&str>) -> bool {
    rule.is_some_and(|r| r.starts_with(BUILTIN_PREFIX))
}

/// A policy with the file identities of the programs it names literally
/// (looked up on this machine), ready to judge recorded actions.
pub struct Judge {
    pub policy: Policy,
    programs: HashMap<(u64, u64), PathBuf>,
}

impl Judge {
    pub fn new(policy: Policy) -> Judge {
        Judge {
            programs: crate::session::program_identities(&policy),
            policy,
        }
    }

    /// The policy's decision on a recorded action; `None` for a decision
    /// of a built-in rule (not the policy's to change).
    pub fn judge(&self, r: &Recorded) -> Option<Decision> {
        if is_builtin(r.rule.as_deref()) {
            return None;
        }
        Some(
            self.policy
                .judge(&r.action, &circumstances(r, &self.programs)),
        )
    }
}

/// How an action's verdict changes under the new policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ChangeClass {
    /// Something the run did (carried out) would be refused: a stronger
    /// verdict on an allowed action.
    Refused,
    /// A stronger verdict on an action that was refused already.
    Stricter,
    /// A weaker verdict.
    Looser,
    /// The same verdict by another rule (or by the default instead of a rule).
    Rule,
}

impl ChangeClass {
    pub fn as_str(self) -> &'static str {
        match self {
            ChangeClass::Refused => "refused",
            ChangeClass::Stricter => "stricter",
            ChangeClass::Looser => "looser",
            ChangeClass::Rule => "rule",
        }
    }
}

/// One recorded action whose verdict or winning rule changes.
#[derive(Debug, Clone)]
pub struct Change {
    pub line: u64,
    pub seq: u64,
    pub class: ChangeClass,
    /// The action as shown to humans (escaped).
    pub what: String,
    pub kind: &'static str,
    pub old_verdict: Verdict,
    pub old_rule: Option<String>,
    pub outcome: Outcome,
    pub new: Decision,
}

/// The result of replaying one run against a policy.
#[derive(Debug, Clone)]
pub struct ReplayReport {
    pub run_id: String,
    /// Actions re-judged (an exec confirmed at its exec event as it was
    /// requested counts once).
    pub actions: u64,
    /// Decisions of built-in rules, not re-judged.
    pub builtin: u64,
    pub changes: Vec<Change>,
    pub undecodable: Vec<Undecodable>,
}

impl ReplayReport {
    pub fn count(&self, class: ChangeClass) -> usize {
        self.changes.iter().filter(|c| c.class == class).count()
    }
}

/// Replays `run` against `judge`: every decision record is judged again;
/// escalation records are not (the decision record that ends each one
/// is), nor is an exec's confirmation that confirms exactly what its
/// request asked (the same action).
pub fn replay(run: &RecordedRun, judge: &Judge) -> ReplayReport {
    let mut r = Replayer::new(&run.header.run_id, judge);
    for u in &run.undecodable {
        r.undecodable(u.clone());
    }
    for (line, rec) in &run.records {
        r.add(*line, rec);
    }
    r.finish()
}

/// [`replay`] one record at a time, as they are read.
pub struct Replayer<'j> {
    judge: &'j Judge,
    /// The new policy's rate limits and breaker, applied again to each
    /// request's decision at its recorded time.
    limits: crate::session::limits::Limits,
    report: ReplayReport,
    /// The exec each process last asked for, until its confirmation.
    requested: HashMap<i32, Action>,
}

impl<'j> Replayer<'j> {
    pub fn new(run_id: &str, judge: &'j Judge) -> Replayer<'j> {
        Replayer {
            judge,
            limits: crate::session::limits::Limits::default(),
            report: ReplayReport {
                run_id: run_id.to_string(),
                actions: 0,
                builtin: 0,
                changes: Vec::new(),
                undecodable: Vec::new(),
            },
            requested: HashMap::new(),
        }
    }

    pub fn undecodable(&mut self, u: Undecodable) {
        self.report.undecodable.push(u);
    }

    /// Judges one record (at `line`) again.
    pub fn add(&mut self, line: u64, r: &Recorded) {
        if r.record != RecordKind::Decision {
            return;
        }
        match r.stage {
            Some(Stage::Request) if matches!(r.action, Action::Exec(_)) && !is_code_map(r) => {
                self.requested.insert(r.pid, r.action.clone());
            }
            Some(Stage::Confirm) if self.requested.get(&r.pid) == Some(&r.action) => {
                self.requested.remove(&r.pid);
                return;
            }
            _ => {}
        }
        let report = &mut self.report;
        let Some(mut new) = self.judge.judge(r) else {
            report.builtin += 1;
            return;
        };
        // As the session does: a request's decision passes through the
        // limits, in record order, at the time its record was written.
        if r.stage == Some(Stage::Request) && self.judge.policy.has_limits() {
            self.limits
                .apply(&self.judge.policy, &mut new, false, r.time_ns);
        }
        report.actions += 1;
        if new.verdict == r.verdict && new.rule == r.rule {
            return;
        }
        let outcome = r.outcome.unwrap_or(Outcome::Refused);
        let class = if new.verdict > r.verdict {
            if outcome == Outcome::Allowed {
                ChangeClass::Refused
            } else {
                ChangeClass::Stricter
            }
        } else if new.verdict < r.verdict {
            ChangeClass::Looser
        } else {
            ChangeClass::Rule
        };
        report.changes.push(Change {
            line,
            seq: r.seq,
            class,
            what: describe(r),
            kind: r.action.kind().as_str(),
            old_verdict: r.verdict,
            old_rule: r.rule.clone(),
            outcome,
            new,
        });
    }

    pub fn finish(self) -> ReplayReport {
        self.report
    }
}

/// Replays the run `header` of the ledger at `path` (at line `first`, up to
/// line `end`) against `judge`, reading one line at a time.
pub fn replay_file(path: &Path, run: &RunInLedger, judge: &Judge) -> Result<ReplayReport, String> {
    let mut r = Replayer::new(&run.header.run_id, judge);
    each_record(path, run, &mut |line, item| match item {
        Ok(rec) => r.add(line, &rec),
        Err(u) => r.undecodable(u),
    })?;
    Ok(r.finish())
}

/// A recorded action as shown to humans (escaped).
pub fn describe(r: &Recorded) -> String {
    let syscall = if is_code_map(r) { "mmap" } else { "" };
    crate::session::describe_call(syscall, &r.action)
}

/// Changes with the same class, kind, old and new verdict and rule.
#[derive(Debug, Clone)]
pub struct Group<'a> {
    pub class: ChangeClass,
    pub kind: &'static str,
    pub old_verdict: Verdict,
    pub old_rule: Option<&'a str>,
    pub new_verdict: Verdict,
    pub new_rule: Option<&'a str>,
    pub changes: Vec<&'a Change>,
}

/// The changes grouped, by class, then by count (largest first), then by
/// first record.
pub fn group(changes: &[Change]) -> Vec<Group<'_>> {
    type Key<'a> = (
        ChangeClass,
        &'static str,
        Verdict,
        Option<&'a str>,
        Verdict,
        Option<&'a str>,
    );
    let mut order: Vec<Key<'_>> = Vec::new();
    let mut by: HashMap<Key<'_>, Vec<&Change>> = HashMap::new();
    for c in changes {
        let k = (
            c.class,
            c.kind,
            c.old_verdict,
            c.old_rule.as_deref(),
            c.new.verdict,
            c.new.rule.as_deref(),
        );
        let e = by.entry(k).or_default();
        if e.is_empty() {
            order.push(k);
        }
        e.push(c);
    }
    let mut groups: Vec<Group<'_>> = order
        .into_iter()
        .map(|k| Group {
            class: k.0,
            kind: k.1,
            old_verdict: k.2,
            old_rule: k.3,
            new_verdict: k.4,
            new_rule: k.5,
            changes: by.remove(&k).unwrap_or_default(),
        })
        .collect();
    groups.sort_by(|a, b| {
        a.class
            .cmp(&b.class)
            .then(b.changes.len().cmp(&a.changes.len()))
            .then(a.changes[0].seq.cmp(&b.changes[0].seq))
    });
    groups
}

/// A policy file given to `verify --policy`: its text and how to name it.
#[derive(Debug, Clone)]
pub struct PolicyText {
    pub origin: String,
    pub text: String,
}

/// What re-deriving a ledger's decisions found.
#[derive(Debug, Clone, Default)]
pub struct Rederived {
    /// Records whose verdict or rule does not follow (INVALID), and what
    /// could not be re-derived (INCOMPLETE), as problems of check 14.
    pub problems: Vec<Problem>,
    /// Decision and escalation records re-derived from a policy.
    pub checked: u64,
    /// Decision records of built-in rules (not the policy's).
    pub builtin: u64,
    /// (run id, the policy given that it pinned).
    pub runs: Vec<(String, String)>,
    /// Problems found beyond the ones kept.
    pub problems_omitted: u64,
}

fn rule_text(rule: Option<&str>) -> String {
    rule.map_or_else(
        || "the default".to_string(),
        |r| format!("rule {}", crate::escape::text(r)),
    )
}

/// Re-derives every decision of every run of the ledger at `path` from the
/// policy among `policies` whose hash, loaded with the run's variables, is
/// the one the run header pinned. Reads one line at a time: memory does
/// not grow with the ledger (beyond the problems found, at most
/// [`crate::ledger::verify::MAX_PROBLEMS`] kept).
pub fn rederive(
    path: &Path,
    policies: &[PolicyText],
    given: &BTreeMap<String, OsString>,
) -> std::io::Result<Rederived> {
    let mut out = Rederived::default();
    // The judge of the current run and its mode; `None` while in a run
    // whose decisions are not re-derived (or before the first run).
    let mut current: Option<(Judge, Mode)> = None;
    // The `limit` record just before this one, if it was one.
    let mut last_limit: Option<LimitRecord> = None;
    let mut ctx = decode::Context::new();
    each_line(path, &mut |n, text| match item(n, text, true, &mut ctx) {
        Item::Limit(l) => last_limit = Some(l),
        Item::Run(h) => {
            last_limit = None;
            current = None;
            match run_judge(&h, policies, given) {
                Ok((judge, origin)) => {
                    out.runs.push((h.run_id.clone(), origin));
                    current = Some((judge, h.mode));
                }
                Err(why) => out.add(
                    n,
                    Some(h.seq),
                    Severity::Incomplete,
                    format!("run {}: its decisions were not re-derived: {why}", h.run_id),
                ),
            }
        }
        Item::Undecodable(u) if current.is_some() => out.add(
            u.line,
            u.seq,
            Severity::Incomplete,
            format!(
                "the recorded action could not be decoded, so its decision was not re-derived: {}",
                u.message
            ),
        ),
        Item::Record(r) => {
            let limited = last_limit.take();
            let Some((judge, mode)) = &current else {
                return;
            };
            // A rate limit record just before a block of the same rule at
            // the same time explains it (check 6 re-derives its count).
            let rate_limited = limited.is_some_and(|l| {
                l.event == "rate"
                    && l.rule.is_some()
                    && l.rule == r.rule
                    && l.time_ns == r.time_ns
                    && r.verdict == Verdict::Block
                    && r.record == RecordKind::Decision
            });
            match check_record(&r, *mode, judge, rate_limited) {
                Check14::Builtin => out.builtin += 1,
                Check14::Ok => out.checked += 1,
                Check14::Wrong(why) => {
                    out.checked += 1;
                    let what = describe(&r);
                    out.add(n, Some(r.seq), Severity::Invalid, format!("{what}: {why}"));
                }
            }
        }
        Item::Undecodable(_) | Item::Other => last_limit = None,
    })?;
    Ok(out)
}

impl Rederived {
    fn add(&mut self, line: u64, seq: Option<u64>, severity: Severity, message: String) {
        if self.problems.len() >= crate::ledger::verify::MAX_PROBLEMS {
            self.problems_omitted += 1;
            return;
        }
        self.problems.push(Problem {
            line,
            seq,
            check: Check::Decision,
            severity,
            message,
        });
    }
}

/// The judge of a run: the policy among `policies` the run pinned, loaded
/// with its variables, and how it is named; else why there is none.
fn run_judge(
    h: &RunRecord,
    policies: &[PolicyText],
    given: &BTreeMap<String, OsString>,
) -> Result<(Judge, String), String> {
    let vars = RunVars::of(h, given)?;
    let mut hashes = Vec::new();
    for p in policies {
        match vars.load(&p.text, &p.origin) {
            Ok(policy)
                if policy.sha256() == h.policy_sha256
                    && layer_differences(h, &policy).is_empty() =>
            {
                return Ok((Judge::new(policy), p.origin.clone()));
            }
            Ok(policy) => {
                let layers = layer_differences(h, &policy);
                hashes.push(format!(
                    "{} has {}{}",
                    crate::escape::text(&p.origin),
                    hex::encode(policy.sha256()),
                    if layers.is_empty() {
                        String::new()
                    } else {
                        format!(" ({})", layers.join("; "))
                    }
                ))
            }
            Err(e) => hashes.push(format!(
                "{} does not load: {e}",
                crate::escape::text(&p.origin)
            )),
        }
    }
    let pinned = h
        .policy_path
        .as_ref()
        .map(|p| format!(" (its header names {})", crate::escape::path(p)))
        .unwrap_or_default();
    Err(format!(
        "it pinned policy sha256 {}{pinned}, and no policy given has that hash with the run's variables ({}); give the file the run was supervised with",
        hex::encode(h.policy_sha256),
        hashes.join("; ")
    ))
}

enum Check14 {
    Ok,
    Builtin,
    Wrong(String),
}

fn check_record(r: &Recorded, run_mode: Mode, judge: &Judge, rate_limited: bool) -> Check14 {
    let recorded = format!("recorded {} ({})", r.verdict, rule_text(r.rule.as_deref()));
    if r.record == RecordKind::Decision {
        if r.mode.is_some_and(|m| m != run_mode) {
            return Check14::Wrong(format!(
                "recorded in {} mode in a run in {run_mode} mode",
                r.mode.map(Mode::as_str).unwrap_or_default()
            ));
        }
        if r.verdict == Verdict::Allow && r.outcome != Some(Outcome::Allowed) {
            return Check14::Wrong(format!(
                "{recorded} but {}: an allowed action is carried out",
                r.outcome.map(Outcome::as_str).unwrap_or("refused")
            ));
        }
    }
    let Some(d) = judge.judge(r) else {
        // Built-in rules only ever block, and what they block is refused
        // whatever the mode.
        if r.verdict != Verdict::Block
            || r.outcome == Some(Outcome::Allowed)
            || r.record == RecordKind::Escalation
        {
            return Check14::Wrong(format!(
                "{recorded}, {}: built-in rules only block, and what they block is refused",
                r.outcome.map(Outcome::as_str).unwrap_or("escalated")
            ));
        }
        return Check14::Builtin;
    };
    let blocks_carried_out = r.record == RecordKind::Decision
        && r.verdict == Verdict::Block
        && run_mode == Mode::Enforce
        && r.outcome == Some(Outcome::Allowed);
    if blocks_carried_out {
        return Check14::Wrong(format!(
            "{recorded} but allowed, in enforce mode: a block is refused"
        ));
    }
    let rule = match r.record {
        // Escalation records name `default` when no rule won.
        RecordKind::Escalation => d.rule.clone().or_else(|| Some("default".into())),
        RecordKind::Decision => d.rule.clone(),
    };
    let limited_block = rate_limited && rule == r.rule && d.verdict != Verdict::Block;
    if (d.verdict != r.verdict || rule != r.rule) && !limited_block {
        return Check14::Wrong(format!(
            "{recorded}, but the policy gives {} ({}) for this action",
            d.verdict,
            rule_text(d.rule.as_deref())
        ));
    }
    if r.record == RecordKind::Decision && d.matched != r.matched {
        return Check14::Wrong(format!(
            "recorded matching rules [{}], but the policy matches [{}]",
            crate::escape::text(&r.matched.join(", ")),
            crate::escape::text(&d.matched.join(", "))
        ));
    }
    Check14::Ok
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(vars: Option<BTreeMap<String, OsString>>) -> RunRecord {
        RunRecord {
            seq: 0,
            run_id: "ab".repeat(16),
            time_ns: 1,
            version: "v".into(),
            command: vec!["agent".into()],
            cwd: "/w".into(),
            workspace: Some("/w".into()),
            policy_sha256: [0; 32],
            policy_path: None,
            mode: Mode::Enforce,
            ci: BTreeMap::new(),
            vars,
            policy_layers: Vec::new(),
        }
    }

    #[test]
    fn variables_come_from_the_header_or_are_given_never_from_here() {
        let e = RunVars::of(&header(None), &BTreeMap::new()).unwrap_err();
        assert!(
            e.contains("does not record the value of HOME, TMPDIR"),
            "{e}"
        );
        assert!(e.contains("give --var HOME=PATH --var TMPDIR=PATH"), "{e}");
        let given = BTreeMap::from([
            ("HOME".to_string(), OsString::from("/h")),
            ("TMPDIR".to_string(), OsString::from("/t")),
        ]);
        let v = RunVars::of(&header(None), &given).unwrap();
        assert_eq!(v.vars().home, PathBuf::from("/h"));
        assert_eq!(v.vars().workspace, PathBuf::from("/w"));
        assert_eq!(v.values["WORKSPACE"].1, VarSource::Recorded);
        assert_eq!(v.values["HOME"].1, VarSource::Given);
        // A policy reading an environment variable the run did not record.
        let text = "version: 1\nrules:\n  - id: c\n    open:\n      path: [\"${env.CARGO_HOME:-${HOME}/.cargo}/**\"]\n    decision: allow\n    reason: r\n";
        let e = v.load(text, "p.yaml").unwrap_err();
        assert!(e.contains("reads ${env.CARGO_HOME}"), "{e}");
        assert!(e.contains("--var env.CARGO_HOME=VALUE"), "{e}");
        // Recorded empty: unset, the default applies.
        let mut recorded = given.clone();
        recorded.insert("env.CARGO_HOME".into(), OsString::new());
        let v = RunVars::of(&header(Some(recorded)), &BTreeMap::new()).unwrap();
        let p = v.load(text, "p.yaml").unwrap();
        assert_eq!(p.env_vars()["CARGO_HOME"], "/h/.cargo");
    }

    #[test]
    fn var_arguments_name_the_policy_variables() {
        assert_eq!(
            parse_var("HOME=/x").unwrap(),
            ("HOME".to_string(), OsString::from("/x"))
        );
        assert_eq!(parse_var("env.GOPATH=").unwrap().1, OsString::new());
        for bad in ["HOME", "PATH=/x", "env.=1", "env.A-B=1"] {
            assert!(parse_var(bad).is_err(), "{bad}");
        }
    }
}
