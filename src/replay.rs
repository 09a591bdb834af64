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
use std::path::PathBuf;

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

/// Every run of a ledger's text, in file order. Lines that are not JSON
/// (a torn tail) and records of other kinds are skipped; a decision or
/// escalation record that cannot be decoded is kept as [`Undecodable`].
pub fn read_runs(text: &str) -> Vec<RecordedRun> {
    let mut runs: Vec<RecordedRun> = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line_no = i as u64 + 1;
        let Ok(v) = jcs::parse(line, jcs::Mode::Strict) else {
            continue;
        };
        let kind = v.get("kind").and_then(jcs::Value::as_str);
        let seq = v
            .get("seq")
            .and_then(jcs::Value::as_str)
            .and_then(|s| s.parse().ok());
        match kind {
            Some("run") => {
                if let Ok(Some(header)) = decode::decode_run(&v) {
                    runs.push(RecordedRun {
                        header,
                        header_line: line_no,
                        records: Vec::new(),
                        undecodable: Vec::new(),
                    })
                }
            }
            Some("decision" | "escalation") => {
                let Some(run) = runs.last_mut() else { continue };
                match decode::decode_record(&v) {
                    Ok(Some(r)) => run.records.push((line_no, r)),
                    Ok(None) => {}
                    Err(message) => run.undecodable.push(Undecodable {
                        line: line_no,
                        seq,
                        message,
                    }),
                }
            }
            _ => {}
        }
    }
    runs
}

/// The run with id `id` (or a unique prefix of it), else the last run.
pub fn select_run<'a>(
    runs: &'a [RecordedRun],
    id: Option<&str>,
) -> Result<&'a RecordedRun, String> {
    let Some(id) = id else {
        return runs
            .last()
            .ok_or_else(|| "the ledger holds no run".to_string());
    };
    let found: Vec<&RecordedRun> = runs
        .iter()
        .filter(|r| r.header.run_id.starts_with(id))
        .collect();
    match found.as_slice() {
        [one] => Ok(one),
        [] => Err(format!(
            "the ledger holds no run {} (its runs: {})",
            crate::escape::text(id),
            runs.iter()
                .map(|r| r.header.run_id.as_str())
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
pub struct Judge<'p> {
    pub policy: &'p Policy,
    programs: HashMap<(u64, u64), PathBuf>,
}

impl<'p> Judge<'p> {
    pub fn new(policy: &'p Policy) -> Judge<'p> {
        Judge {
            policy,
            programs: crate::session::program_identities(policy),
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
pub fn replay(run: &RecordedRun, judge: &Judge<'_>) -> ReplayReport {
    let mut report = ReplayReport {
        run_id: run.header.run_id.clone(),
        actions: 0,
        builtin: 0,
        changes: Vec::new(),
        undecodable: run.undecodable.clone(),
    };
    let mut requested: HashMap<i32, &Action> = HashMap::new();
    for (line, r) in &run.records {
        if r.record != RecordKind::Decision {
            continue;
        }
        match r.stage {
            Some(Stage::Request) if matches!(r.action, Action::Exec(_)) && !is_code_map(r) => {
                requested.insert(r.pid, &r.action);
            }
            Some(Stage::Confirm) if requested.get(&r.pid) == Some(&&r.action) => {
                requested.remove(&r.pid);
                continue;
            }
            _ => {}
        }
        let Some(new) = judge.judge(r) else {
            report.builtin += 1;
            continue;
        };
        report.actions += 1;
        if new.verdict == r.verdict && new.rule == r.rule {
            continue;
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
            line: *line,
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
    report
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
}

fn rule_text(rule: Option<&str>) -> String {
    rule.map_or_else(
        || "the default".to_string(),
        |r| format!("rule {}", crate::escape::text(r)),
    )
}

/// Re-derives every decision of every run in `runs` from the policy among
/// `policies` whose hash, loaded with the run's variables, is the one the
/// run header pinned.
pub fn rederive(
    runs: &[RecordedRun],
    policies: &[PolicyText],
    given: &BTreeMap<String, OsString>,
) -> Rederived {
    let mut out = Rederived::default();
    let problem = |out: &mut Rederived, line: u64, seq: Option<u64>, sev, message: String| {
        out.problems.push(Problem {
            line,
            seq,
            check: Check::Decision,
            severity: sev,
            message,
        })
    };
    for run in runs {
        let h = &run.header;
        let not_derived =
            |why: String| format!("run {}: its decisions were not re-derived: {why}", h.run_id);
        let vars = match RunVars::of(h, given) {
            Ok(v) => v,
            Err(e) => {
                let m = not_derived(e);
                problem(
                    &mut out,
                    run.header_line,
                    Some(h.seq),
                    Severity::Incomplete,
                    m,
                );
                continue;
            }
        };
        let mut hashes = Vec::new();
        let mut chosen = None;
        for p in policies {
            match vars.load(&p.text, &p.origin) {
                Ok(policy)
                    if policy.sha256() == h.policy_sha256
                        && layer_differences(h, &policy).is_empty() =>
                {
                    chosen = Some((policy, p.origin.clone()));
                    break;
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
        let Some((policy, origin)) = chosen else {
            let pinned = h
                .policy_path
                .as_ref()
                .map(|p| format!(" (its header names {})", crate::escape::path(p)))
                .unwrap_or_default();
            let m = not_derived(format!(
                "it pinned policy sha256 {}{pinned}, and no policy given has that hash with the run's variables ({}); give the file the run was supervised with",
                hex::encode(h.policy_sha256),
                hashes.join("; ")
            ));
            problem(
                &mut out,
                run.header_line,
                Some(h.seq),
                Severity::Incomplete,
                m,
            );
            continue;
        };
        out.runs.push((h.run_id.clone(), origin));
        let judge = Judge::new(&policy);
        for u in &run.undecodable {
            let m = format!(
                "the recorded action could not be decoded, so its decision was not re-derived: {}",
                u.message
            );
            problem(&mut out, u.line, u.seq, Severity::Incomplete, m);
        }
        for (line, r) in &run.records {
            let what = describe(r);
            let bad = check_record(r, h.mode, &judge);
            match bad {
                Check14::Builtin => out.builtin += 1,
                Check14::Ok => out.checked += 1,
                Check14::Wrong(why) => {
                    out.checked += 1;
                    problem(
                        &mut out,
                        *line,
                        Some(r.seq),
                        Severity::Invalid,
                        format!("{} {what}: {why}", r.action.kind()),
                    );
                }
            }
        }
    }
    out
}

enum Check14 {
    Ok,
    Builtin,
    Wrong(String),
}

fn check_record(r: &Recorded, run_mode: Mode, judge: &Judge<'_>) -> Check14 {
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
    if d.verdict != r.verdict || rule != r.rule {
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
