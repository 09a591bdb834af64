//! Reading a ledger back for people: its records as [`Entry`] values, in
//! file order, and the counts `lexecon ledger stats` shows ([`Stats`]).
//!
//! A reader is meant to run after [`super::verify`] accepted the file: given
//! the verifier's [`Report`], [`read`] reads exactly the lines that were
//! verified and checks, as it goes, that each line's `prev` is the hash of
//! the line before it and, at the end, that the last line's hash is the
//! one verified. Together these prove (SHA-256 being collision resistant)
//! that every line read is a line verified, even if the file was changed
//! between the two passes; a difference is an error
//! ([`ReadError::Changed`]). Without a report (reading a ledger that does not
//! verify, on purpose) every complete line is read and a line that cannot
//! be understood becomes [`Item::Damaged`].
//!
//! Actions are decoded by [`super::decode`]; the other kinds of record are
//! read here. Memory stays bounded: one line at a time, and [`Stats`] keeps
//! at most [`MAX_DISTINCT`] distinct keys per table.

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufRead, BufReader};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use super::decode::{self, Recorded, RunRecord};
use super::jcs::{self, Value};
use super::merkle::{leaf_hash, Hash};
use super::record::{self, Counts, Outcome, Stage};
use super::verify::Report;
use crate::action::{Action, Mode, NetTarget, Verdict};

/// A record as read back.
#[derive(Debug, Clone)]
pub struct Entry {
    /// Line in the file (1-based).
    pub line: u64,
    /// `None` only for a damaged line.
    pub seq: Option<u64>,
    /// The run (or recovery) the record belongs to: the id of the last
    /// header before it.
    pub run: Option<String>,
    /// ns since the Unix epoch, for the kinds that record a time.
    pub time_ns: Option<u128>,
    pub item: Item,
    /// The line as written (without its newline).
    pub text: String,
}

/// What a record says.
#[derive(Debug, Clone)]
pub enum Item {
    /// A run header.
    Run(Box<RunRecord>),
    /// A `decision` or `escalation` record.
    Action(Box<Recorded>),
    /// A call refused before it could be judged.
    Refusal {
        pid: i32,
        ppid: i32,
        syscall: String,
        rule: String,
        reason: String,
        errno: i64,
    },
    /// The answer to an escalation.
    Resolution {
        request: u64,
        escalation: u64,
        outcome: Outcome,
        by: String,
        peer_uid: Option<u64>,
        peer_pid: Option<i64>,
        scope: String,
        receipt: bool,
    },
    /// An action asked about through the gate (a claimed intent), and the
    /// answer.
    Intent {
        pid: i32,
        channel: String,
        action: Box<Action>,
        verdict: Verdict,
        outcome: Outcome,
        rule: Option<String>,
        reason: String,
    },
    /// A rate limit or the run's breaker changed a decision.
    Limit {
        event: String,
        rule: Option<String>,
        count: u64,
        limit: u64,
        reason: String,
    },
    /// A DNS answer the supervisor obtained.
    Dns {
        pid: i32,
        query: String,
        resolver: String,
        rcode: Option<i64>,
        /// (name, address)
        bindings: Vec<(String, String)>,
    },
    /// A caller's program that the run's decisions refer to by `id`
    /// (record format 2); readers see it resolved in those decisions.
    Process {
        id: u64,
        process: Box<crate::action::ProcessInfo>,
    },
    /// The next epoch key.
    Epoch { epoch: u64, key: [u8; 32] },
    /// A signed checkpoint.
    Checkpoint { is_final: bool },
    /// The end of a run.
    End {
        exit_status: Option<i64>,
        signal: Option<i64>,
        note: Option<String>,
        counts: Counts,
    },
    /// A seal made by `lexecon ledger recover`.
    Recovery {
        unsealed_run: Option<String>,
        torn_bytes: u64,
    },
    /// A line that could not be understood (read without verification).
    Damaged(String),
}

impl Entry {
    /// The record's kind as the ledger names it (`damaged` for a line that
    /// could not be read).
    pub fn kind(&self) -> &'static str {
        match &self.item {
            Item::Run(_) => "run",
            Item::Action(r) => match r.record {
                decode::RecordKind::Decision => "decision",
                decode::RecordKind::Escalation => "escalation",
            },
            Item::Refusal { .. } => "refusal",
            Item::Resolution { .. } => "resolution",
            Item::Dns { .. } => "dns",
            Item::Intent { .. } => "intent",
            Item::Limit { .. } => "limit",
            Item::Process { .. } => "process",
            Item::Epoch { .. } => "epoch",
            Item::Checkpoint { .. } => "checkpoint",
            Item::End { .. } => "end",
            Item::Recovery { .. } => "recovery",
            Item::Damaged(_) => "damaged",
        }
    }

    /// Whether this is something refused (or that would have been, in
    /// observe mode): a decision refused or killed, a decision allowed in
    /// observe mode whose verdict was not `allow`, or a refusal.
    pub fn is_blocked(&self) -> bool {
        match &self.item {
            Item::Action(r) => match r.outcome {
                Some(Outcome::Refused | Outcome::Killed) => true,
                Some(Outcome::Allowed) => {
                    r.mode == Some(Mode::Observe) && r.verdict != Verdict::Allow
                }
                None => false,
            },
            Item::Refusal { .. } => true,
            _ => false,
        }
    }
}

/// The name of what an action does, as `--kind` and the statistics use
/// it: `exec`, the file operation of an open (`open`, `delete`, `rename`,
/// `chmod`, …), or the network operation (`connect`, `send`, `bind`,
/// `listen`, `resolve`).
pub fn action_kind(a: &Action) -> &'static str {
    match a {
        Action::Exec(_) => "exec",
        Action::Open(o) => o.op.as_str(),
        Action::Connect(c) => c.op.as_str(),
        Action::Tool(_) => "tool",
    }
}

/// Whether a recorded exec action is a code mapping (a file mapped
/// executable with `mmap`/`mprotect`, judged as loading it), which the
/// session records with a note saying so.
pub fn is_code_map(r: &Recorded) -> bool {
    matches!(r.action, Action::Exec(_))
        && r.note
            .as_deref()
            .is_some_and(|n| n.starts_with(CODE_MAP_NOTE))
}

/// How the note of a code mapping's decision begins (the session writes it).
pub const CODE_MAP_NOTE: &str =
    "code mapping (PROT_EXEC): the file was mapped executable, not executed";

/// The name of a recorded action for `--kind` and the statistics:
/// [`action_kind`], but `map` for a code mapping and `exec (confirmed)`
/// for an exec confirmed at its exec event.
pub fn recorded_kind(r: &Recorded) -> &'static str {
    if is_code_map(r) {
        "map"
    } else if matches!(r.action, Action::Exec(_)) && r.stage == Some(Stage::Confirm) {
        "exec (confirmed)"
    } else {
        action_kind(&r.action)
    }
}

/// Whether `kind` is something `--kind` can select: an action kind (`exec`,
/// `open`, `connect`), an operation (see [`action_kind`]) or a record kind.
pub fn is_kind_name(kind: &str) -> bool {
    matches!(
        kind,
        "exec"
            | "map"
            | "open"
            | "connect"
            | "tool"
            | "intent"
            | "limit"
            | "refusal"
            | "escalation"
            | "resolution"
            | "dns"
            | "run"
            | "end"
            | "recovery"
    ) || crate::action::FileOp::from_name(kind).is_some()
        || crate::action::NetOp::from_name(kind).is_some()
}

/// Whether `e` is of `kind` (see [`is_kind_name`]): `open` selects every
/// file operation, `connect` every network operation.
pub fn entry_is_kind(e: &Entry, kind: &str) -> bool {
    match &e.item {
        Item::Action(r) => {
            let family = match r.action {
                Action::Exec(_) if is_code_map(r) => "map",
                Action::Exec(_) => "exec",
                Action::Open(_) => "open",
                Action::Connect(_) => "connect",
                Action::Tool(_) => "tool",
            };
            kind == family
                || (family != "map" && kind == action_kind(&r.action))
                || kind == e.kind()
        }
        _ => kind == e.kind(),
    }
}

/// Why reading stopped.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("cannot read ledger {}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The file is not the one verified.
    #[error("ledger {} changed while it was being read (at line {line}: {what}): what was read is not what was verified; nothing read from it can be trusted; run the command again", path.display())]
    Changed {
        path: PathBuf,
        line: u64,
        what: String,
    },
    /// The consumer stopped with an error.
    #[error("{0}")]
    Stopped(String),
}

/// Read the records of the ledger at `path`, calling `each` for every one
/// in file order. With `verified` (the report of the verification of that
/// file), exactly the verified lines are read and checked to be those (see
/// the module docs); without, every complete line is read.
pub fn read(
    path: &Path,
    verified: Option<&Report>,
    mut each: impl FnMut(Entry) -> Result<(), String>,
) -> Result<(), ReadError> {
    let io = |source| ReadError::Io {
        path: path.to_path_buf(),
        source,
    };
    let changed = |line: u64, what: &str| ReadError::Changed {
        path: path.to_path_buf(),
        line,
        what: what.to_string(),
    };
    let f = File::open(path).map_err(io)?;
    let mut r = BufReader::with_capacity(256 * 1024, f);
    let mut buf = Vec::with_capacity(4096);
    let mut line_no = 0u64;
    let mut prev: Option<Hash> = None;
    let mut run: Option<String> = None;
    let mut ctx = decode::Context::new();
    let limit = verified.map(|v| v.lines);
    loop {
        if limit.is_some_and(|l| line_no == l) {
            break;
        }
        buf.clear();
        let n = r.read_until(b'\n', &mut buf).map_err(io)?;
        if n == 0 || buf.last() != Some(&b'\n') {
            if limit.is_some() {
                return Err(changed(line_no + 1, "the file is shorter than verified"));
            }
            break;
        }
        line_no += 1;
        let content = &buf[..buf.len() - 1];
        let h = leaf_hash(content);
        let text = String::from_utf8_lossy(content).into_owned();
        let entry = match entry(line_no, &text, &mut run, &mut ctx) {
            Ok((e, link)) => {
                if verified.is_some() && link != prev {
                    return Err(changed(
                        line_no,
                        "its `prev` is not the hash of the line before",
                    ));
                }
                e
            }
            Err(why) => {
                if verified.is_some() {
                    return Err(changed(line_no, &why));
                }
                Entry {
                    line: line_no,
                    seq: None,
                    run: run.clone(),
                    time_ns: None,
                    item: Item::Damaged(why),
                    text,
                }
            }
        };
        prev = Some(h);
        each(entry).map_err(ReadError::Stopped)?;
    }
    if let Some(v) = verified {
        if prev != v.last_hash {
            return Err(changed(line_no, "its last line is not the one verified"));
        }
    }
    Ok(())
}

/// One line as an [`Entry`], with its `prev` link; the run it belongs to is
/// tracked in `run`.
fn entry(
    line: u64,
    text: &str,
    run: &mut Option<String>,
    ctx: &mut decode::Context,
) -> Result<(Entry, Option<Hash>), String> {
    let v = jcs::parse(text, jcs::Mode::Strict).map_err(|e| format!("not canonical JSON: {e}"))?;
    let p = record::parse(&v)?;
    ctx.observe(&v)?;
    let time_ns = v
        .get("time")
        .and_then(Value::as_str)
        .and_then(|t| t.parse().ok());
    let item = match p.body {
        record::Body::Run { ref id, .. } => {
            *run = Some(id.clone());
            Item::Run(Box::new(decode::decode_run(&v)?.ok_or("not a run header")?))
        }
        record::Body::Decision { .. } | record::Body::Escalation { .. } => Item::Action(Box::new(
            ctx.decode_record(&v)?
                .ok_or("not a decision or escalation")?,
        )),
        record::Body::Process { id } => Item::Process {
            id,
            process: Box::new(
                ctx.process(id)
                    .ok_or("a process record not taken in")?
                    .clone(),
            ),
        },
        record::Body::Refusal => Item::Refusal {
            pid: int(&v, "pid")? as i32,
            ppid: int(&v, "ppid")? as i32,
            syscall: string(&v, "syscall")?,
            rule: string(&v, "rule")?,
            reason: string(&v, "reason")?,
            errno: int(&v, "errno")?,
        },
        record::Body::Resolution {
            request,
            escalation,
            allowed,
            ref scope,
            ref receipt,
        } => Item::Resolution {
            request,
            escalation,
            outcome: if allowed {
                Outcome::Allowed
            } else {
                Outcome::Refused
            },
            by: string(&v, "by")?,
            peer_uid: v
                .get("peer_uid")
                .and_then(Value::as_str)
                .and_then(|s| s.parse().ok()),
            peer_pid: int(&v, "peer_pid").ok(),
            scope: scope.clone(),
            receipt: receipt.is_some(),
        },
        record::Body::Dns => Item::Dns {
            pid: int(&v, "pid")? as i32,
            query: string(&v, "query")?,
            resolver: string(&v, "resolver")?,
            rcode: int(&v, "rcode").ok(),
            bindings: match v.get("bindings") {
                Some(Value::Array(a)) => a
                    .iter()
                    .map(|b| Ok((string(b, "name")?, string(b, "address")?)))
                    .collect::<Result<_, String>>()?,
                _ => return Err("`bindings` must be an array".into()),
            },
        },
        record::Body::Intent { .. } => Item::Intent {
            pid: int(&v, "pid")? as i32,
            channel: string(&v, "channel")?,
            action: Box::new(decode::decode_action(
                v.get("action").ok_or("missing `action`")?,
            )?),
            verdict: match string(&v, "verdict")?.as_str() {
                "allow" => Verdict::Allow,
                "escalate" => Verdict::Escalate,
                "block" => Verdict::Block,
                other => return Err(format!("unknown verdict {other:?}")),
            },
            outcome: match string(&v, "outcome")?.as_str() {
                "allowed" => Outcome::Allowed,
                "refused" => Outcome::Refused,
                "killed" => Outcome::Killed,
                other => return Err(format!("unknown outcome {other:?}")),
            },
            rule: string(&v, "rule").ok(),
            reason: string(&v, "reason")?,
        },
        record::Body::Limit {
            ref event,
            ref rule,
            count,
            limit,
            ..
        } => Item::Limit {
            event: event.clone(),
            rule: rule.clone(),
            count,
            limit,
            reason: string(&v, "reason")?,
        },
        record::Body::Epoch { epoch, key } => Item::Epoch { epoch, key },
        record::Body::Checkpoint { is_final, .. } => Item::Checkpoint { is_final },
        record::Body::End { counts } => Item::End {
            exit_status: int(&v, "exit_status").ok(),
            signal: int(&v, "signal").ok(),
            note: string(&v, "note").ok(),
            counts,
        },
        record::Body::Recovery {
            ref id,
            ref unsealed_run,
            torn_bytes,
            ..
        } => {
            *run = Some(id.clone());
            Item::Recovery {
                unsealed_run: unsealed_run.clone(),
                torn_bytes,
            }
        }
    };
    Ok((
        Entry {
            line,
            seq: Some(p.seq),
            run: run.clone(),
            time_ns,
            item,
            text: text.to_string(),
        },
        p.prev,
    ))
}

fn string(v: &Value<'_>, k: &str) -> Result<String, String> {
    v.get(k)
        .and_then(Value::as_str)
        .map(str::to_string)
        .ok_or_else(|| format!("missing string `{k}`"))
}

fn int(v: &Value<'_>, k: &str) -> Result<i64, String> {
    match v.get(k) {
        Some(Value::Number(n)) if n.fract() == 0.0 => Ok(*n as i64),
        _ => Err(format!("missing integer `{k}`")),
    }
}

// ------------------------------------------------------------- statistics

/// Most distinct keys a [`Tally`] counts one by one; beyond, occurrences
/// of new keys are counted together as [`Tally::other`].
pub const MAX_DISTINCT: usize = 100_000;

/// Occurrences per key (bytes: paths and programs are the tree's).
#[derive(Debug, Clone, Default)]
pub struct Tally {
    counts: HashMap<Vec<u8>, u64>,
    /// Occurrences of keys not counted one by one ([`MAX_DISTINCT`]).
    pub other: u64,
}

impl Tally {
    pub fn add(&mut self, key: &[u8]) {
        if let Some(n) = self.counts.get_mut(key) {
            *n += 1;
        } else if self.counts.len() < MAX_DISTINCT {
            self.counts.insert(key.to_vec(), 1);
        } else {
            self.other += 1;
        }
    }

    /// The `n` most frequent keys, most frequent first (ties by key).
    pub fn top(&self, n: usize) -> Vec<(&[u8], u64)> {
        let mut v: Vec<(&[u8], u64)> = self
            .counts
            .iter()
            .map(|(k, c)| (k.as_slice(), *c))
            .collect();
        v.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(b.0)));
        v.truncate(n);
        v
    }

    /// Distinct keys counted.
    pub fn distinct(&self) -> usize {
        self.counts.len()
    }

    /// Every occurrence, counted one by one or not.
    pub fn total(&self) -> u64 {
        self.counts.values().sum::<u64>() + self.other
    }
}

/// What `lexecon ledger stats` counts over the records it is given.
#[derive(Debug, Clone, Default)]
pub struct Stats {
    /// Runs (headers) seen.
    pub runs: u64,
    /// Decision records by verdict and outcome (as `verify` counts them).
    pub counts: Counts,
    /// Decision records by [`recorded_kind`].
    pub by_kind: Tally,
    /// Decision records by winning rule (`(default)` when none).
    pub by_rule: Tally,
    /// Programs executed: the path of each exec requested (code mappings
    /// are not counted).
    pub programs: Tally,
    /// Paths of file operations.
    pub paths: Tally,
    /// Network destinations: a host name bound to the address when known,
    /// else the address; names asked about; local socket paths.
    pub hosts: Tally,
    /// Records that are not decisions, by kind (`refusal`, `escalation`,
    /// `resolution`, `dns`).
    pub other_records: Tally,
}

impl Stats {
    /// Count one record.
    pub fn add(&mut self, e: &Entry) {
        match &e.item {
            Item::Run(_) => self.runs += 1,
            Item::Action(r) if r.record == decode::RecordKind::Decision => {
                if let Some(o) = r.outcome {
                    self.counts.add(r.verdict, o);
                }
                self.by_kind.add(recorded_kind(r).as_bytes());
                self.by_rule
                    .add(r.rule.as_deref().unwrap_or("(default)").as_bytes());
                match &r.action {
                    Action::Exec(x) if r.stage != Some(Stage::Confirm) && !is_code_map(r) => {
                        self.programs.add(x.path.as_os_str().as_bytes())
                    }
                    Action::Exec(_) => {}
                    Action::Open(o) => self.paths.add(o.path.as_os_str().as_bytes()),
                    Action::Connect(c) => self.hosts.add(&host_key(&c.target, &c.names)),
                    Action::Tool(_) => {}
                }
            }
            Item::Action(_)
            | Item::Refusal { .. }
            | Item::Resolution { .. }
            | Item::Dns { .. }
            | Item::Intent { .. }
            | Item::Limit { .. } => self.other_records.add(e.kind().as_bytes()),
            _ => {}
        }
    }
}

/// How a destination is counted among hosts.
fn host_key(t: &NetTarget, names: &[String]) -> Vec<u8> {
    match t {
        NetTarget::Ip { addr, .. } => match names.first() {
            Some(n) => n.as_bytes().to_vec(),
            None => addr.to_string().into_bytes(),
        },
        NetTarget::Name(n) => n.as_bytes().to_vec(),
        NetTarget::UnixPath(p) => p.as_os_str().as_bytes().to_vec(),
        NetTarget::UnixAbstract(n) => {
            let mut v = b"@".to_vec();
            v.extend_from_slice(n);
            v
        }
        NetTarget::UnixUnnamed => b"(unnamed local socket)".to_vec(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tally_keeps_the_most_frequent_and_bounds_memory() {
        let mut t = Tally::default();
        for _ in 0..3 {
            t.add(b"b");
        }
        t.add(b"a");
        t.add(b"c");
        t.add(b"c");
        assert_eq!(t.top(2), vec![(&b"b"[..], 3), (&b"c"[..], 2)]);
        assert_eq!(t.total(), 6);
        let mut t = Tally::default();
        for i in 0..MAX_DISTINCT + 5 {
            t.add(i.to_string().as_bytes());
        }
        t.add(b"0");
        assert_eq!(t.distinct(), MAX_DISTINCT);
        assert_eq!(t.other, 5);
        assert_eq!(t.total(), MAX_DISTINCT as u64 + 6);
        assert_eq!(t.top(1), vec![(&b"0"[..], 2)]);
    }
}
