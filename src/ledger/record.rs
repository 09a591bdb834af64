//! Ledger records: what the writer is given, how each kind is encoded as a
//! JSON object, and how the verifier reads one back.
//!
//! Every record has `kind`, `seq` (decimal string) and, except for the first
//! line of a file, `prev` (the hash of the previous line: hex, or base64 in
//! the records of a format-2 run after its header, see `Prev`). Kinds:
//! `run` (header), `decision`, `epoch` (next epoch key), `checkpoint`
//! (signed note), `end` (run end), `recovery` (seal made by
//! `lexecon ledger recover`), and in record format 2 (the header's
//! `format`) `process` (a caller's program the run's decisions name by id;
//! a format-2 decision also leaves out members equal to their default, see
//! `DecisionDefaults`). Byte strings (paths, argv) are JSON strings
//! when they are UTF-8 and `{"b64":"…"}` otherwise, so nothing is lost.
//! Integers that may exceed 2^53 (seq, counts, times, device and inode
//! numbers) are decimal strings.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::ffi::{OsStr, OsString};
use std::fmt::Write as _;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::PathBuf;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;

use super::jcs::{self, Value};
use super::merkle::Hash;
use crate::action::{Action, Mode, OpDetail, Verdict};

/// When a decision was taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// Judged at the system call, before the kernel acted.
    Request,
    /// Confirmed after the kernel committed to a new program image: what
    /// really runs.
    Confirm,
}

impl Stage {
    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Request => "request",
            Stage::Confirm => "confirm",
        }
    }
}

/// What Lexecon did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Outcome {
    Allowed,
    Refused,
    Killed,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Allowed => "allowed",
            Outcome::Refused => "refused",
            Outcome::Killed => "killed",
        }
    }

    fn parse(s: &str) -> Option<Outcome> {
        Some(match s {
            "allowed" => Outcome::Allowed,
            "refused" => Outcome::Refused,
            "killed" => Outcome::Killed,
            _ => return None,
        })
    }
}

fn parse_verdict(s: &str) -> Option<Verdict> {
    Some(match s {
        "allow" => Verdict::Allow,
        "escalate" => Verdict::Escalate,
        "block" => Verdict::Block,
        _ => return None,
    })
}

/// The file really opened or executed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileIdentity {
    pub dev: u64,
    pub ino: u64,
    pub sha256: Option<[u8; 32]>,
}

/// What the session knows when a run starts. The writer adds the run id,
/// time, version, host key and the link to the previous run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunHeader {
    pub command: Vec<OsString>,
    /// The supervisor's working directory, where the command starts.
    pub cwd: PathBuf,
    /// The workspace the policy's `${WORKSPACE}` stands for (absolute,
    /// symlinks resolved); `None` in ledgers written before it was recorded.
    pub workspace: Option<PathBuf>,
    pub policy_sha256: [u8; 32],
    pub policy_path: Option<PathBuf>,
    pub mode: Mode,
    pub ci: BTreeMap<String, String>,
    /// The values the policy's variables were loaded with: `HOME`,
    /// `WORKSPACE`, `TMPDIR`, and `env.NAME` for each `${env.NAME}` the policy
    /// read (the path it expanded to), so that the policy's decisions can
    /// be re-derived offline (`lexecon replay`, `lexecon verify --policy`).
    /// `None` in ledgers written before they were recorded.
    pub vars: Option<BTreeMap<String, OsString>>,
    /// For a policy that includes others (`include:`): every file of it, in
    /// layer order (the including file last), with its own hash; empty
    /// otherwise (and in ledgers written before layers), and then not
    /// written.
    pub policy_layers: Vec<PolicyLayer>,
}

/// One file of a layered policy as a run header records it: where it was
/// read (an absolute path, or `builtin:NAME`) and the SHA-256 of that file
/// alone (docs/policy.md, "Layers").
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyLayer {
    pub path: PathBuf,
    pub sha256: [u8; 32],
}

/// One judged action.
#[derive(Debug, Clone)]
pub struct DecisionEntry<'a> {
    pub pid: i32,
    pub ppid: i32,
    pub action: &'a Action,
    /// For an exec of the dynamic loader asked to run a program (`ld.so
    /// PROG`): the exec of PROG it performs, judged too (see
    /// [`crate::policy::Circumstances::loaded`]).
    pub loaded: Option<&'a Action>,
    pub stage: Stage,
    /// The policy's verdict.
    pub verdict: Verdict,
    /// What Lexecon did.
    pub outcome: Outcome,
    pub rule: Option<String>,
    pub matched: Vec<String>,
    pub reason: String,
    pub mode: Mode,
    pub identity: Option<FileIdentity>,
    pub note: Option<String>,
}

/// An action a process described and asked about through the gate before
/// doing it (a tool call, a command, a file, a destination): a *claimed
/// intent*, judged by the run's policy and answered. Not counted among
/// decisions: what the process then really does is judged, and recorded,
/// when it reaches the kernel.
#[derive(Debug, Clone)]
pub struct IntentEntry<'a> {
    /// How it was asked: `gate` (the in-run gate socket; the asker's pid is
    /// the kernel's, checked to be in the tree) or `decide` (a one-shot
    /// `lexecon decide`; the asker is the process that ran it).
    pub channel: &'a str,
    pub pid: i32,
    pub ppid: i32,
    /// The asker's program (`/proc/PID/exe`), when known.
    pub program: Option<&'a std::path::Path>,
    /// The action as described.
    pub action: &'a Action,
    /// The actions it was also judged as (a shell command's programs, a
    /// tool's file or destination), each with its decision.
    pub judged: Vec<(&'a Action, &'a crate::action::Decision)>,
    /// The answer's verdict, rule and reason: the strongest decision.
    pub verdict: Verdict,
    /// What the asker was told: allowed or refused.
    pub outcome: Outcome,
    pub rule: Option<String>,
    pub matched: Vec<String>,
    pub reason: String,
    pub mode: Mode,
    pub note: Option<String>,
}

/// A change of the run's limits: a rule's rate limit refused an action
/// (`rate`), or the run's breaker tripped (`breaker`). Written before the
/// decision it changes, with the same time; what was counted is in the
/// record, so that the change can be re-derived from the records' times.
#[derive(Debug, Clone)]
pub struct LimitEntry<'a> {
    /// `rate` or `breaker`.
    pub event: &'a str,
    /// The rule whose rate limit was reached (`rate`).
    pub rule: Option<&'a str>,
    /// What was counted within the window, this action included: actions
    /// the rule let through (`rate`), blocks or risk (`breaker`).
    pub count: u64,
    /// The limit or threshold.
    pub limit: u64,
    pub window_ms: u64,
    /// What the tripped breaker does (`breaker`).
    pub then: Option<&'a str>,
    /// What the breaker counts (`breaker`): `blocks` or `risk`.
    pub counted: Option<&'a str>,
    pub pid: i32,
    pub ppid: i32,
    pub reason: &'a str,
}

/// A call refused before it could be judged as an action: aimed at the
/// supervisor (a signal), or undecodable (bad pointer, oversized path or
/// argv). Not counted among decisions.
#[derive(Debug, Clone)]
pub struct RefusalEntry<'a> {
    pub pid: i32,
    pub ppid: i32,
    /// The system call, e.g. `kill`, `openat`.
    pub syscall: &'a str,
    /// The built-in rule, e.g. `lexecon.self-protect.signal`.
    pub rule: &'a str,
    pub reason: &'a str,
    /// The errno the caller got.
    pub errno: i32,
}

/// A DNS answer the supervisor itself obtained for a query of the tree it
/// allowed: the names it binds to addresses for the rest of the run.
#[derive(Debug, Clone)]
pub struct DnsEntry<'a> {
    pub pid: i32,
    pub ppid: i32,
    /// The name asked about.
    pub query: &'a str,
    /// The resolver asked (`ADDRESS:PORT`).
    pub resolver: &'a str,
    /// The response code (0: no error), or `None` when no answer came.
    pub rcode: Option<u8>,
    /// (name, address) pairs bound by the answer.
    pub bindings: &'a [(String, std::net::IpAddr)],
}

/// A question put to a human: an escalated action held until it is
/// answered (a `resolution` record with the same request id follows).
#[derive(Debug, Clone)]
pub struct EscalationEntry<'a> {
    /// The request id shown to the approver (unique within the run).
    pub request: u64,
    pub pid: i32,
    pub ppid: i32,
    pub syscall: &'a str,
    pub action: &'a Action,
    pub rule: &'a str,
    pub reason: &'a str,
    /// When the request times out (ns since the Unix epoch).
    pub deadline_ns: u128,
}

/// The answer to an escalation.
#[derive(Debug, Clone)]
pub struct ResolutionEntry<'a> {
    pub request: u64,
    /// Sequence number of the escalation record answered.
    pub escalation: u64,
    /// `allowed` or `refused`.
    pub outcome: Outcome,
    /// Who answered: `approver` (the approval socket), `timeout`,
    /// `withdrawn` (the caller went away), `end` (the run ended).
    pub by: &'a str,
    /// The approving peer's uid and pid, for `approver`.
    pub peer: Option<(u32, i32)>,
    /// `once`, or `run` (a grant for the rest of the run).
    pub scope: &'a str,
    /// An approver's signed receipt: (public key, signature over
    /// [`super::receipt_message`]).
    pub receipt: Option<([u8; 32], [u8; 64])>,
}

/// How a run ended. The writer adds the counts.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RunEnd {
    pub exit_status: Option<i32>,
    pub signal: Option<i32>,
    pub note: Option<String>,
}

/// What [`super::LedgerWriter::begin_run`] returns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunInfo {
    /// 32 hex digits, random.
    pub run_id: String,
    /// The checkpoint origin of this run, `lexecon/<run_id>`.
    pub origin: String,
    /// Sequence number of the run header.
    pub first_seq: u64,
    /// Fingerprint of the host key that signs the first and final checkpoint.
    pub host_fingerprint: String,
}

/// Decision counts of a run, as stored in its end record.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    pub decisions: u64,
    pub allow: u64,
    pub escalate: u64,
    pub block: u64,
    pub allowed: u64,
    pub refused: u64,
    pub killed: u64,
}

impl Counts {
    pub(crate) fn add(&mut self, verdict: Verdict, outcome: Outcome) {
        self.decisions += 1;
        match verdict {
            Verdict::Allow => self.allow += 1,
            Verdict::Escalate => self.escalate += 1,
            Verdict::Block => self.block += 1,
        }
        match outcome {
            Outcome::Allowed => self.allowed += 1,
            Outcome::Refused => self.refused += 1,
            Outcome::Killed => self.killed += 1,
        }
    }

    /// Add another run's counts.
    pub fn merge(&mut self, o: &Counts) {
        self.decisions += o.decisions;
        self.allow += o.allow;
        self.escalate += o.escalate;
        self.block += o.block;
        self.allowed += o.allowed;
        self.refused += o.refused;
        self.killed += o.killed;
    }
}

// ---------------------------------------------------------------- encoding

/// A byte string as a JSON value: a string if UTF-8, else `{"b64": …}`.
pub fn bytes_value(b: &[u8]) -> Value<'_> {
    match std::str::from_utf8(b) {
        Ok(s) => Value::String(Cow::Borrowed(s)),
        Err(_) => Value::Object(vec![(
            Cow::Borrowed("b64"),
            Value::String(B64.encode(b).into()),
        )]),
    }
}

/// The bytes of a value written by [`bytes_value`].
pub fn value_bytes(v: &Value<'_>) -> Option<Vec<u8>> {
    match v {
        Value::String(s) => Some(s.as_bytes().to_vec()),
        Value::Object(m) if m.len() == 1 && m[0].0 == "b64" => {
            let raw = B64.decode(m[0].1.as_str()?).ok()?;
            // Canonical: only non-UTF-8 bytes use the b64 form.
            if std::str::from_utf8(&raw).is_ok() {
                return None;
            }
            Some(raw)
        }
        _ => None,
    }
}

/// Whether `v` is a byte string as written by [`bytes_value`] (without
/// copying it when it is a plain string).
pub fn is_bytes_value(v: &Value<'_>) -> bool {
    match v {
        Value::String(_) => true,
        other => value_bytes(other).is_some(),
    }
}

fn os(s: &OsStr) -> Value<'_> {
    bytes_value(s.as_bytes())
}

/// Lowercase hex of a hash (a table loop: this runs for every record).
pub(crate) fn hex_hash(h: &[u8; 32]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(64);
    for b in h {
        s.push(DIGITS[usize::from(b >> 4)] as char);
        s.push(DIGITS[usize::from(b & 15)] as char);
    }
    s
}

fn u64s(n: u64) -> Value<'static> {
    Value::String(n.to_string().into())
}

fn int(n: i64) -> Value<'static> {
    Value::Number(n as f64)
}

fn s(x: &str) -> Value<'_> {
    Value::String(Cow::Borrowed(x))
}

type Members<'a> = Vec<(Cow<'a, str>, Value<'a>)>;

fn put<'a>(m: &mut Members<'a>, k: &'static str, v: Value<'a>) {
    m.push((Cow::Borrowed(k), v));
}

/// A record's `prev`: the hash of the line before it, and how it is
/// written (see [`Prev::value`]).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Prev {
    pub hash: Hash,
    /// Base64 (a record of a format-2 run other than its header) rather
    /// than hex.
    pub base64: bool,
}

impl Prev {
    /// 64 lowercase hex digits in format 1 and in every run header and
    /// recovery record (which open a run, whatever came before them);
    /// base64 of the 32 bytes (44 characters, padded) in the other records
    /// of a format-2 run. [`prev_hash`] reads both.
    fn value(self) -> Value<'static> {
        if self.base64 {
            Value::String(B64.encode(self.hash).into())
        } else {
            Value::String(hex_hash(&self.hash).into())
        }
    }

    /// [`Prev::value`], written into `out`.
    fn write(self, out: &mut String) {
        if self.base64 {
            out.push('"');
            B64.encode_string(self.hash, out);
            out.push('"');
        } else {
            write_hex_string(&self.hash, out);
        }
    }
}

/// Length of a `prev` written in base64 (format 2).
pub(crate) const PREV_BASE64_LEN: usize = 44;

/// The hash a `prev` names, in either of its encodings: 64 lowercase hex
/// digits, or the canonical padded base64 of 32 bytes (44 characters).
/// Which one a record must use is its run's format's
/// ([`super::decode::Context::observe`] checks it); the chain check
/// compares the hash.
pub fn prev_hash(s: &str) -> Option<Hash> {
    match s.len() {
        64 => hex32(s),
        PREV_BASE64_LEN => {
            // `STANDARD` refuses missing padding and nonzero unused bits:
            // one encoding per hash.
            let mut out = [0u8; 33];
            match B64.decode_slice(s, &mut out) {
                Ok(32) => out[..32].try_into().ok(),
                _ => None,
            }
        }
        _ => None,
    }
}

fn put_prev(m: &mut Members<'_>, prev: Option<Prev>) {
    if let Some(p) = prev {
        put(m, "prev", p.value());
    }
}

/// The members every record starts with.
pub(crate) fn common<'a>(kind: &'static str, seq: u64, prev: Option<Prev>) -> Members<'a> {
    let mut m = Vec::with_capacity(16);
    put(&mut m, "kind", s(kind));
    put(&mut m, "seq", u64s(seq));
    put_prev(&mut m, prev);
    m
}

pub(crate) struct HeaderExtra<'a> {
    pub run_id: &'a str,
    pub time_ns: u128,
    pub host_vkey: &'a str,
    pub host_fingerprint: &'a str,
    pub epoch_key: &'a [u8; 32],
    pub prev_run: Option<&'a str>,
    /// The record format (1: written as before formats were numbered).
    pub format: u64,
}

pub(crate) fn encode_header(
    seq: u64,
    prev: Option<Prev>,
    h: &RunHeader,
    x: &HeaderExtra<'_>,
) -> Result<String, String> {
    let mut m = common("run", seq, prev);
    put(&mut m, "run", s(x.run_id));
    put(&mut m, "time", Value::String(x.time_ns.to_string().into()));
    put(&mut m, "version", s(super::VERSION));
    put(
        &mut m,
        "command",
        Value::Array(h.command.iter().map(|a| os(a)).collect()),
    );
    put(&mut m, "cwd", os(h.cwd.as_os_str()));
    if x.format != 1 {
        put(&mut m, "format", int(x.format as i64));
    }
    if let Some(w) = &h.workspace {
        put(&mut m, "workspace", os(w.as_os_str()));
    }
    put(
        &mut m,
        "policy_sha256",
        Value::String(hex_hash(&h.policy_sha256).into()),
    );
    if let Some(p) = &h.policy_path {
        put(&mut m, "policy_path", os(p.as_os_str()));
    }
    put(&mut m, "mode", s(h.mode.as_str()));
    if !h.policy_layers.is_empty() {
        put(
            &mut m,
            "policy_layers",
            Value::Array(
                h.policy_layers
                    .iter()
                    .map(|l| {
                        Value::Object(vec![
                            (Cow::Borrowed("path"), os(l.path.as_os_str())),
                            (
                                Cow::Borrowed("sha256"),
                                Value::String(hex_hash(&l.sha256).into()),
                            ),
                        ])
                    })
                    .collect(),
            ),
        );
    }
    if let Some(vars) = &h.vars {
        put(
            &mut m,
            "vars",
            Value::Object(
                vars.iter()
                    .map(|(k, v)| (Cow::Borrowed(k.as_str()), os(v)))
                    .collect(),
            ),
        );
    }
    put(
        &mut m,
        "ci",
        Value::Object(
            h.ci.iter()
                .map(|(k, v)| (Cow::Borrowed(k.as_str()), s(v)))
                .collect(),
        ),
    );
    put(&mut m, "host_key", s(x.host_vkey));
    put(&mut m, "host_fingerprint", s(x.host_fingerprint));
    put(
        &mut m,
        "epoch_key",
        Value::String(B64.encode(x.epoch_key).into()),
    );
    if let Some(p) = x.prev_run {
        put(&mut m, "prev_run", s(p));
    }
    Value::Object(m).to_canonical().map_err(|e| e.to_string())
}

/// An operation's detail (see [`crate::action::OpDetail`]): `mode` in
/// octal, `uid`/`gid` in decimal (absent: unchanged), `target` as bytes.
fn encode_detail(d: &OpDetail) -> Members<'_> {
    let mut m = Vec::with_capacity(2);
    match d {
        OpDetail::Mode(mode) => put(&mut m, "mode", Value::String(format!("{mode:04o}").into())),
        OpDetail::Owner { uid, gid } => {
            if let Some(g) = gid {
                put(&mut m, "gid", u64s((*g).into()));
            }
            if let Some(u) = uid {
                put(&mut m, "uid", u64s((*u).into()));
            }
        }
        OpDetail::Target(t) => put(&mut m, "target", os(t)),
    }
    m
}

/// The caller's program (`process` of open and connect actions): `dev`,
/// `injected`, `ino`, `program`, `sha256`, in JCS order.
fn encode_process(p: &crate::action::ProcessInfo) -> Value<'_> {
    let mut m = Vec::with_capacity(5);
    if let Some((dev, _)) = p.file {
        put(&mut m, "dev", u64s(dev));
    }
    if let Some(why) = &p.injected {
        put(&mut m, "injected", s(why));
    }
    if let Some((_, ino)) = p.file {
        put(&mut m, "ino", u64s(ino));
    }
    put(&mut m, "program", os(p.program.as_os_str()));
    if let Some(h) = &p.sha256 {
        put(&mut m, "sha256", Value::String(hex_hash(h).into()));
    }
    Value::Object(m)
}

pub(crate) fn encode_action(action: &Action) -> Members<'_> {
    encode_action_with(action, None, false)
}

/// Whether an exec's argv is its path alone, which a format-2 decision
/// leaves out.
pub(crate) fn argv_is_path(e: &crate::action::ExecAction) -> bool {
    matches!(e.argv.as_slice(), [a] if a.as_os_str() == e.path.as_os_str())
}

/// [`encode_action`], with the caller's program of an open or connect
/// action given by the id of its run's `process` record, and (`compact`:
/// the action of a format-2 decision) a plain open's `op` (`open`) and its
/// `access` when it is `["read"]` left out.
fn encode_action_with(action: &Action, process: Option<u64>, compact: bool) -> Members<'_> {
    fn caller(p: &crate::action::ProcessInfo, process: Option<u64>) -> Value<'_> {
        match process {
            Some(id) => u64s(id),
            None => encode_process(p),
        }
    }
    match action {
        Action::Exec(e) => {
            let mut a = Vec::with_capacity(5);
            // A format-2 decision leaves out an argv that is exactly
            // `[path]` (every code mapping's).
            if !(compact && argv_is_path(e)) {
                put(
                    &mut a,
                    "argv",
                    Value::Array(e.argv.iter().map(|x| os(x)).collect()),
                );
            }
            put(&mut a, "cwd", os(e.cwd.as_os_str()));
            put(&mut a, "kind", s("exec"));
            put(&mut a, "path", os(e.path.as_os_str()));
            if let Some(h) = &e.sha256 {
                put(&mut a, "sha256", Value::String(hex_hash(h).into()));
            }
            a
        }
        Action::Open(o) => {
            let mut a = Vec::with_capacity(7);
            let plain = compact && o.op == crate::action::FileOp::Open;
            if !(plain && o.access == crate::action::Access::READ) {
                put(
                    &mut a,
                    "access",
                    Value::Array(o.access.names().into_iter().map(s).collect()),
                );
            }
            // A format-2 decision's open naming a process record has that
            // record's cwd (the writer keys its records by program and cwd).
            if !(compact && process.is_some() && o.process.is_some()) {
                put(&mut a, "cwd", os(o.cwd.as_os_str()));
            }
            if let Some(d) = &o.detail {
                put(&mut a, "detail", Value::Object(encode_detail(d)));
            }
            put(&mut a, "kind", s("open"));
            // Absent in ledgers written before operations were recorded,
            // and for a plain open in format 2.
            if !plain {
                put(&mut a, "op", s(o.op.as_str()));
            }
            put(&mut a, "path", os(o.path.as_os_str()));
            if let Some(p) = &o.process {
                // The caller's program as confirmed at its exec (optional:
                // absent in ledgers written before it was recorded).
                put(&mut a, "process", caller(p, process));
            }
            a
        }
        Action::Connect(c) => encode_connect(c, process),
        Action::Tool(t) => {
            let mut a = Vec::with_capacity(4);
            if !t.cwd.as_os_str().is_empty() {
                put(&mut a, "cwd", os(t.cwd.as_os_str()));
            }
            put(&mut a, "input", json_value(&t.input));
            put(&mut a, "kind", s("tool"));
            put(&mut a, "name", s(&t.name));
            a
        }
    }
}

/// Longest string of a tool's input recorded as it is; a longer one (a
/// whole file given to a `Write` tool) is recorded by its digest.
pub const MAX_RECORDED_INPUT_STRING: usize = 64 * 1024;

/// A JSON value of the tool's input as a record value (numbers as IEEE
/// doubles, as RFC 8785 has them; strings longer than
/// [`MAX_RECORDED_INPUT_STRING`] bytes as `{"lexecon.digest": {"bytes",
/// "sha256"}}`).
fn json_value(v: &serde_json::Value) -> Value<'_> {
    match v {
        serde_json::Value::Null => Value::Null,
        serde_json::Value::Bool(b) => Value::Bool(*b),
        serde_json::Value::Number(n) => Value::Number(n.as_f64().unwrap_or(0.0)),
        serde_json::Value::String(x) if x.len() > MAX_RECORDED_INPUT_STRING => {
            use sha2::{Digest, Sha256};
            let h: [u8; 32] = Sha256::digest(x.as_bytes()).into();
            Value::Object(vec![(
                Cow::Borrowed("lexecon.digest"),
                Value::Object(vec![
                    (Cow::Borrowed("bytes"), u64s(x.len() as u64)),
                    (Cow::Borrowed("sha256"), Value::String(hex_hash(&h).into())),
                ]),
            )])
        }
        serde_json::Value::String(x) => s(x),
        serde_json::Value::Array(items) => Value::Array(items.iter().map(json_value).collect()),
        serde_json::Value::Object(m) => Value::Object(
            m.iter()
                .map(|(k, v)| (Cow::Borrowed(k.as_str()), json_value(v)))
                .collect(),
        ),
    }
}

/// A connection, datagram, bind, listen or DNS query (members in canonical
/// order).
fn encode_connect(c: &crate::action::ConnectAction, process: Option<u64>) -> Members<'_> {
    use crate::action::NetTarget;
    let mut a = Vec::with_capacity(9);
    match &c.target {
        NetTarget::Ip { addr, .. } => put(
            &mut a,
            "address",
            Value::String(Cow::Owned(addr.to_string())),
        ),
        NetTarget::UnixAbstract(n) => put(&mut a, "abstract", os(std::ffi::OsStr::from_bytes(n))),
        _ => {}
    }
    let family = match &c.target {
        NetTarget::Ip { family, .. } => Some(family.as_str()),
        NetTarget::UnixPath(_) | NetTarget::UnixAbstract(_) | NetTarget::UnixUnnamed => {
            Some("unix")
        }
        NetTarget::Name(_) => None,
    };
    if let Some(f) = family {
        put(&mut a, "family", s(f));
    }
    put(&mut a, "kind", s("connect"));
    if let NetTarget::Name(n) = &c.target {
        put(&mut a, "name", s(n.as_str()));
    }
    if !c.names.is_empty() {
        put(
            &mut a,
            "names",
            Value::Array(c.names.iter().map(|n| s(n.as_str())).collect()),
        );
    }
    put(&mut a, "op", s(c.op.as_str()));
    if let NetTarget::UnixPath(p) = &c.target {
        put(&mut a, "path", os(p.as_os_str()));
    }
    if let NetTarget::Ip { port, .. } = &c.target {
        put(&mut a, "port", u64s(u64::from(*port)));
    }
    if let Some(p) = &c.process {
        match process {
            Some(id) => put(&mut a, "process", u64s(id)),
            None => put(&mut a, "process", encode_process(p)),
        }
    }
    put(&mut a, "protocol", s(c.protocol.as_str()));
    a
}

/// The record format this lexecon writes (the run header's `format`;
/// absent: format 1). See docs/ledger.md, "Format versions".
pub const FORMAT: u64 = 2;

/// What a format-2 decision record leaves out because its run already
/// says it: the run's mode, and the caller's program by the id of the
/// run's `process` record.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Compact {
    pub mode: Mode,
    pub process: Option<u64>,
}

/// The reason a decision no rule decided has: the kind's default
/// ([`crate::policy::default_reason`]), or, for a code mapping (an exec
/// action whose note begins with [`super::read::CODE_MAP_NOTE`]),
/// [`crate::policy::CODE_MAP_DEFAULT_REASON`]. Format 2 leaves such a reason
/// out; readers derive it with this function.
pub fn default_reason(action: &Action, verdict: Verdict, note: Option<&str>) -> String {
    if matches!(action, Action::Exec(_))
        && note.is_some_and(|n| n.starts_with(super::read::CODE_MAP_NOTE))
    {
        return crate::policy::CODE_MAP_DEFAULT_REASON.to_string();
    }
    crate::policy::default_reason(action.kind(), verdict)
}

/// A format-2 `process` record: the program of callers that decision
/// records of the run name by `id` (a decimal string, unique in the run,
/// written before the first record that names it).
#[allow(clippy::too_many_arguments)]
pub(crate) fn encode_process_record(
    seq: u64,
    prev: Option<Prev>,
    time_ns: u128,
    id: u64,
    p: &crate::action::ProcessInfo,
    cwd: Option<&std::path::Path>,
    out: &mut String,
) -> Result<(), String> {
    let Value::Object(members) = encode_process(p) else {
        unreachable!("encode_process makes an object")
    };
    let mut m = Vec::with_capacity(members.len() + 5);
    m.extend(members);
    if let Some(c) = cwd {
        put(&mut m, "cwd", os(c.as_os_str()));
    }
    put(&mut m, "id", u64s(id));
    put(&mut m, "kind", s("process"));
    put_prev(&mut m, prev);
    put(&mut m, "seq", u64s(seq));
    put(&mut m, "time", Value::String(time_ns.to_string().into()));
    // Not in key order (`id`, `kind` go between the process's members):
    // `write_canonical` sorts them.
    Value::Object(m)
        .write_canonical(out)
        .map_err(|e| e.to_string())
}

/// A decision record, written straight into `out` (no value is built for
/// its members but the rare ones: a `loaded` action, an action's detail, a
/// caller's program written in full, a non-UTF-8 byte string, a connect or
/// tool action). Members are written in canonical key order; the bytes are
/// those of the record's RFC 8785 encoding.
pub(crate) fn encode_decision(
    seq: u64,
    prev: Option<Prev>,
    time_ns: u128,
    d: &DecisionEntry<'_>,
    compact: Option<Compact>,
    out: &mut String,
) -> Result<(), String> {
    let mut o = Obj::open(out);
    o.key("action");
    write_action(
        d.action,
        compact.and_then(|c| c.process),
        compact.is_some(),
        o.out,
    )?;
    if let Some(id) = &d.identity {
        o.key("identity");
        if compact.is_some() && id.sha256 == identity_hash(d.action) {
            // Format 2: `"DEV:INO"`, the hash that of the action.
            let _ = write!(o.out, "\"{}:{}\"", id.dev, id.ino);
        } else {
            let mut i = Obj::open(o.out);
            i.key("dev");
            write_decimal_string(id.dev.into(), i.out);
            i.key("ino");
            write_decimal_string(id.ino.into(), i.out);
            if let Some(h) = &id.sha256 {
                i.key("sha256");
                write_hex_string(h, i.out);
            }
            i.close();
        }
    }
    o.key("kind");
    o.out.push_str("\"decision\"");
    if let Some(l) = d.loaded {
        o.key("loaded");
        Value::Object(encode_action(l))
            .write_canonical(o.out)
            .map_err(|e| e.to_string())?;
    }
    // Format 2 leaves out what equals its default (see `decision_defaults`).
    let keep = DecisionDefaults::of(d, compact.map(|c| c.mode));
    let map_marker = compact.is_some() && is_code_map_note(d.action, d.note.as_deref());
    if map_marker {
        o.key("map");
        o.out.push_str("true");
    }
    if keep.matched {
        o.key("matched");
        write_str_array(d.matched.iter().map(String::as_str), o.out);
    }
    if keep.mode {
        o.key("mode");
        jcs::write_string(d.mode.as_str(), o.out);
    }
    if let Some(n) = d.note.as_deref().filter(|_| !map_marker) {
        o.key("note");
        jcs::write_string(n, o.out);
    }
    if keep.outcome {
        o.key("outcome");
        jcs::write_string(d.outcome.as_str(), o.out);
    }
    o.key("pid");
    let _ = write!(o.out, "{}", d.pid);
    o.key("ppid");
    let _ = write!(o.out, "{}", d.ppid);
    if let Some(p) = prev {
        o.key("prev");
        p.write(o.out);
    }
    if keep.reason {
        o.key("reason");
        jcs::write_string(&d.reason, o.out);
    }
    if let Some(r) = &d.rule {
        o.key("rule");
        jcs::write_string(r, o.out);
    }
    o.key("seq");
    write_decimal_string(seq.into(), o.out);
    if keep.stage {
        o.key("stage");
        jcs::write_string(d.stage.as_str(), o.out);
    }
    o.key("time");
    write_decimal_string(time_ns, o.out);
    if keep.verdict {
        o.key("verdict");
        jcs::write_string(d.verdict.as_str(), o.out);
    }
    o.close();
    Ok(())
}

/// An object being written member by member, in canonical key order (the
/// caller's duty), into a string.
struct Obj<'o> {
    out: &'o mut String,
    first: bool,
}

impl<'o> Obj<'o> {
    fn open(out: &'o mut String) -> Obj<'o> {
        out.push('{');
        Obj { out, first: true }
    }

    /// The next member's key (ASCII without characters JCS escapes), then
    /// the caller writes its value to `self.out`.
    fn key(&mut self, k: &'static str) {
        if !self.first {
            self.out.push(',');
        }
        self.first = false;
        self.out.push('"');
        self.out.push_str(k);
        self.out.push_str("\":");
    }

    fn close(self) {
        self.out.push('}');
    }
}

/// A decimal in a string (`"123"`), as [`u64s`] writes it.
fn write_decimal_string(n: u128, out: &mut String) {
    let _ = write!(out, "\"{n}\"");
}

/// 64 lowercase hex digits in a string, as [`hex_hash`] writes them.
fn write_hex_string(h: &[u8; 32], out: &mut String) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    out.push('"');
    for b in h {
        out.push(DIGITS[usize::from(b >> 4)] as char);
        out.push(DIGITS[usize::from(b & 15)] as char);
    }
    out.push('"');
}

/// An array of strings.
fn write_str_array<'s>(items: impl Iterator<Item = &'s str>, out: &mut String) {
    out.push('[');
    for (i, x) in items.enumerate() {
        if i > 0 {
            out.push(',');
        }
        jcs::write_string(x, out);
    }
    out.push(']');
}

/// A byte string as [`bytes_value`] writes it.
fn write_bytes(b: &[u8], out: &mut String) -> Result<(), String> {
    match std::str::from_utf8(b) {
        Ok(t) => {
            jcs::write_string(t, out);
            Ok(())
        }
        Err(_) => bytes_value(b)
            .write_canonical(out)
            .map_err(|e| e.to_string()),
    }
}

fn write_os(x: &OsStr, out: &mut String) -> Result<(), String> {
    write_bytes(x.as_bytes(), out)
}

/// [`encode_action_with`], written straight into `out` for exec and open
/// actions (the others through their value).
fn write_action(
    action: &Action,
    process: Option<u64>,
    compact: bool,
    out: &mut String,
) -> Result<(), String> {
    match action {
        Action::Exec(e) => {
            let mut a = Obj::open(out);
            if !(compact && argv_is_path(e)) {
                a.key("argv");
                a.out.push('[');
                for (i, x) in e.argv.iter().enumerate() {
                    if i > 0 {
                        a.out.push(',');
                    }
                    write_os(x, a.out)?;
                }
                a.out.push(']');
            }
            a.key("cwd");
            write_os(e.cwd.as_os_str(), a.out)?;
            a.key("kind");
            a.out.push_str("\"exec\"");
            a.key("path");
            write_os(e.path.as_os_str(), a.out)?;
            if let Some(h) = &e.sha256 {
                a.key("sha256");
                write_hex_string(h, a.out);
            }
            a.close();
        }
        Action::Open(o) => {
            let mut a = Obj::open(out);
            let plain = compact && o.op == crate::action::FileOp::Open;
            if !(plain && o.access == crate::action::Access::READ) {
                a.key("access");
                write_str_array(o.access.names().into_iter(), a.out);
            }
            if !(compact && process.is_some() && o.process.is_some()) {
                a.key("cwd");
                write_os(o.cwd.as_os_str(), a.out)?;
            }
            if let Some(d) = &o.detail {
                a.key("detail");
                Value::Object(encode_detail(d))
                    .write_canonical(a.out)
                    .map_err(|e| e.to_string())?;
            }
            a.key("kind");
            a.out.push_str("\"open\"");
            if !plain {
                a.key("op");
                jcs::write_string(o.op.as_str(), a.out);
            }
            a.key("path");
            write_os(o.path.as_os_str(), a.out)?;
            if let Some(p) = &o.process {
                a.key("process");
                match process {
                    Some(id) => write_decimal_string(id.into(), a.out),
                    None => encode_process(p)
                        .write_canonical(a.out)
                        .map_err(|e| e.to_string())?,
                }
            }
            a.close();
        }
        Action::Connect(_) | Action::Tool(_) => {
            Value::Object(encode_action_with(action, process, compact))
                .write_canonical(out)
                .map_err(|e| e.to_string())?;
        }
    }
    Ok(())
}

/// [`encode_decision`] as it was written first, by building the record's
/// value: the direct encoder must write exactly these bytes (the tests
/// compare them).
#[cfg(test)]
fn encode_decision_values(
    seq: u64,
    prev: Option<Prev>,
    time_ns: u128,
    d: &DecisionEntry<'_>,
    compact: Option<Compact>,
    out: &mut String,
) -> Result<(), String> {
    // Members are pushed in canonical key order, so encoding needs no sort.
    let action = encode_action_with(d.action, compact.and_then(|c| c.process), compact.is_some());
    let mut m = Vec::with_capacity(16);
    put(&mut m, "action", Value::Object(action));
    if let Some(id) = &d.identity {
        if compact.is_some() && id.sha256 == identity_hash(d.action) {
            // Format 2: `"DEV:INO"`, the hash that of the action.
            put(
                &mut m,
                "identity",
                Value::String(format!("{}:{}", id.dev, id.ino).into()),
            );
        } else {
            let mut i = Vec::with_capacity(3);
            put(&mut i, "dev", u64s(id.dev));
            put(&mut i, "ino", u64s(id.ino));
            if let Some(h) = &id.sha256 {
                put(&mut i, "sha256", Value::String(hex_hash(h).into()));
            }
            put(&mut m, "identity", Value::Object(i));
        }
    }
    put(&mut m, "kind", s("decision"));
    if let Some(l) = d.loaded {
        put(&mut m, "loaded", Value::Object(encode_action(l)));
    }
    // Format 2 leaves out what equals its default (see `decision_defaults`).
    let keep = DecisionDefaults::of(d, compact.map(|c| c.mode));
    let map_marker = compact.is_some() && is_code_map_note(d.action, d.note.as_deref());
    if map_marker {
        put(&mut m, "map", Value::Bool(true));
    }
    if keep.matched {
        put(
            &mut m,
            "matched",
            Value::Array(d.matched.iter().map(|x| s(x)).collect()),
        );
    }
    if keep.mode {
        put(&mut m, "mode", s(d.mode.as_str()));
    }
    if let Some(n) = d.note.as_deref().filter(|_| !map_marker) {
        put(&mut m, "note", s(n));
    }
    if keep.outcome {
        put(&mut m, "outcome", s(d.outcome.as_str()));
    }
    put(&mut m, "pid", int(d.pid.into()));
    put(&mut m, "ppid", int(d.ppid.into()));
    put_prev(&mut m, prev);
    if keep.reason {
        put(&mut m, "reason", s(&d.reason));
    }
    if let Some(r) = &d.rule {
        put(&mut m, "rule", s(r));
    }
    put(&mut m, "seq", u64s(seq));
    if keep.stage {
        put(&mut m, "stage", s(d.stage.as_str()));
    }
    put(&mut m, "time", Value::String(time_ns.to_string().into()));
    if keep.verdict {
        put(&mut m, "verdict", s(d.verdict.as_str()));
    }
    Value::Object(m)
        .write_canonical(out)
        .map_err(|e| e.to_string())
}

/// The hash a format-2 decision's identity written as `"DEV:INO"` has:
/// that of its exec action (`None` for every other action, and for an
/// exec whose program's hash is not known). An identity whose hash is
/// another (an exec's file not hashed while its action's was) is written
/// as the object `{"dev","ino","sha256"?}`, which then says exactly what
/// is known.
pub(crate) fn identity_hash(action: &Action) -> Option<[u8; 32]> {
    match action {
        Action::Exec(e) => e.sha256,
        _ => None,
    }
}

/// Whether a decision's note is exactly a code mapping's
/// ([`super::read::CODE_MAP_NOTE`], on an exec action), which a format-2
/// decision writes as `"map":true`.
pub(crate) fn is_code_map_note(action: &Action, note: Option<&str>) -> bool {
    matches!(action, Action::Exec(_)) && note == Some(super::read::CODE_MAP_NOTE)
}

/// Whether a decision's reason is [`default_reason`], compared without
/// building it (this runs for every decision written).
fn is_default_reason(d: &DecisionEntry<'_>) -> bool {
    if matches!(d.action, Action::Exec(_))
        && d.note
            .as_deref()
            .is_some_and(|n| n.starts_with(super::read::CODE_MAP_NOTE))
    {
        return d.reason == crate::policy::CODE_MAP_DEFAULT_REASON;
    }
    // "no rule matched; the default for KIND is VERDICT"
    let expected = [
        "no rule matched; the default for ",
        d.action.kind().as_str(),
        " is ",
        d.verdict.as_str(),
    ];
    let mut rest = d.reason.as_str();
    for part in expected {
        match rest.strip_prefix(part) {
            Some(r) => rest = r,
            None => return false,
        }
    }
    rest.is_empty()
}

/// Which members of a decision record are written: all in format 1; in
/// format 2 (`run_mode` given) each only when it differs from its default:
/// `matched` when not empty, `mode` when not the run's, `outcome` unless
/// the verdict is `allow` and the outcome `allowed`, `reason` unless no
/// rule decided and it is [`default_reason`], `stage` unless `request`,
/// `verdict` unless `allow`.
/// The reader applies the same rules the other way
/// ([`super::decode::Context`]), and refuses a member present with its
/// default value, so that a record keeps exactly one encoding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct DecisionDefaults {
    pub matched: bool,
    pub mode: bool,
    pub outcome: bool,
    pub reason: bool,
    pub stage: bool,
    pub verdict: bool,
}

impl DecisionDefaults {
    fn of(d: &DecisionEntry<'_>, run_mode: Option<Mode>) -> DecisionDefaults {
        let Some(run_mode) = run_mode else {
            return DecisionDefaults {
                matched: true,
                mode: true,
                outcome: true,
                reason: true,
                stage: true,
                verdict: true,
            };
        };
        DecisionDefaults {
            matched: !d.matched.is_empty(),
            mode: d.mode != run_mode,
            outcome: !(d.verdict == Verdict::Allow && d.outcome == Outcome::Allowed),
            reason: d.rule.is_some() || !is_default_reason(d),
            stage: d.stage != Stage::Request,
            verdict: d.verdict != Verdict::Allow,
        }
    }
}

pub(crate) fn encode_intent(
    seq: u64,
    prev: Option<Prev>,
    time_ns: u128,
    d: &IntentEntry<'_>,
    out: &mut String,
) -> Result<(), String> {
    // Members in canonical key order.
    let mut m = Vec::with_capacity(18);
    put(&mut m, "action", Value::Object(encode_action(d.action)));
    put(&mut m, "channel", s(d.channel));
    if !d.judged.is_empty() {
        let items = d
            .judged
            .iter()
            .map(|(a, dec)| {
                let mut j = Vec::with_capacity(4);
                put(&mut j, "action", Value::Object(encode_action(a)));
                put(&mut j, "reason", s(&dec.reason));
                if let Some(r) = &dec.rule {
                    put(&mut j, "rule", s(r));
                }
                put(&mut j, "verdict", s(dec.verdict.as_str()));
                Value::Object(j)
            })
            .collect();
        put(&mut m, "judged", Value::Array(items));
    }
    put(&mut m, "kind", s("intent"));
    put(
        &mut m,
        "matched",
        Value::Array(d.matched.iter().map(|x| s(x)).collect()),
    );
    put(&mut m, "mode", s(d.mode.as_str()));
    if let Some(n) = &d.note {
        put(&mut m, "note", s(n));
    }
    put(&mut m, "outcome", s(d.outcome.as_str()));
    put(&mut m, "pid", int(d.pid.into()));
    put(&mut m, "ppid", int(d.ppid.into()));
    put_prev(&mut m, prev);
    if let Some(p) = d.program {
        put(&mut m, "program", os(p.as_os_str()));
    }
    put(&mut m, "reason", s(&d.reason));
    if let Some(r) = &d.rule {
        put(&mut m, "rule", s(r));
    }
    put(&mut m, "seq", u64s(seq));
    put(&mut m, "time", Value::String(time_ns.to_string().into()));
    put(&mut m, "verdict", s(d.verdict.as_str()));
    Value::Object(m)
        .write_canonical(out)
        .map_err(|e| e.to_string())
}

pub(crate) fn encode_limit(
    seq: u64,
    prev: Option<Prev>,
    time_ns: u128,
    l: &LimitEntry<'_>,
    out: &mut String,
) -> Result<(), String> {
    // Members in canonical key order.
    let mut m = Vec::with_capacity(14);
    put(&mut m, "count", u64s(l.count));
    if let Some(c) = l.counted {
        put(&mut m, "counted", s(c));
    }
    put(&mut m, "event", s(l.event));
    put(&mut m, "kind", s("limit"));
    put(&mut m, "limit", u64s(l.limit));
    put(&mut m, "pid", int(l.pid.into()));
    put(&mut m, "ppid", int(l.ppid.into()));
    put_prev(&mut m, prev);
    put(&mut m, "reason", s(l.reason));
    if let Some(r) = l.rule {
        put(&mut m, "rule", s(r));
    }
    put(&mut m, "seq", u64s(seq));
    if let Some(t) = l.then {
        put(&mut m, "then", s(t));
    }
    put(&mut m, "time", Value::String(time_ns.to_string().into()));
    put(&mut m, "window_ms", u64s(l.window_ms));
    Value::Object(m)
        .write_canonical(out)
        .map_err(|e| e.to_string())
}

pub(crate) fn encode_refusal(
    seq: u64,
    prev: Option<Prev>,
    time_ns: u128,
    r: &RefusalEntry<'_>,
    out: &mut String,
) -> Result<(), String> {
    // Members in canonical key order.
    let mut m = Vec::with_capacity(10);
    put(&mut m, "errno", int(r.errno.into()));
    put(&mut m, "kind", s("refusal"));
    put(&mut m, "pid", int(r.pid.into()));
    put(&mut m, "ppid", int(r.ppid.into()));
    put_prev(&mut m, prev);
    put(&mut m, "reason", s(r.reason));
    put(&mut m, "rule", s(r.rule));
    put(&mut m, "seq", u64s(seq));
    put(&mut m, "syscall", s(r.syscall));
    put(&mut m, "time", Value::String(time_ns.to_string().into()));
    Value::Object(m)
        .write_canonical(out)
        .map_err(|e| e.to_string())
}

pub(crate) fn encode_dns(
    seq: u64,
    prev: Option<Prev>,
    time_ns: u128,
    d: &DnsEntry<'_>,
    out: &mut String,
) -> Result<(), String> {
    // Members in canonical key order.
    let mut m = Vec::with_capacity(10);
    let bindings = d
        .bindings
        .iter()
        .map(|(name, addr)| {
            Value::Object(vec![
                (
                    Cow::Borrowed("address"),
                    Value::String(Cow::Owned(addr.to_string())),
                ),
                (Cow::Borrowed("name"), s(name)),
            ])
        })
        .collect();
    put(&mut m, "bindings", Value::Array(bindings));
    put(&mut m, "kind", s("dns"));
    put(&mut m, "pid", int(d.pid.into()));
    put(&mut m, "ppid", int(d.ppid.into()));
    put_prev(&mut m, prev);
    put(&mut m, "query", s(d.query));
    if let Some(rc) = d.rcode {
        put(&mut m, "rcode", int(rc.into()));
    }
    put(&mut m, "resolver", s(d.resolver));
    put(&mut m, "seq", u64s(seq));
    put(&mut m, "time", Value::String(time_ns.to_string().into()));
    Value::Object(m)
        .write_canonical(out)
        .map_err(|e| e.to_string())
}

pub(crate) fn encode_escalation(
    seq: u64,
    prev: Option<Prev>,
    time_ns: u128,
    e: &EscalationEntry<'_>,
    out: &mut String,
) -> Result<(), String> {
    // Members in canonical key order.
    let mut m = Vec::with_capacity(12);
    put(&mut m, "action", Value::Object(encode_action(e.action)));
    put(
        &mut m,
        "deadline",
        Value::String(e.deadline_ns.to_string().into()),
    );
    put(&mut m, "kind", s("escalation"));
    put(&mut m, "pid", int(e.pid.into()));
    put(&mut m, "ppid", int(e.ppid.into()));
    put_prev(&mut m, prev);
    put(&mut m, "reason", s(e.reason));
    put(&mut m, "request", u64s(e.request));
    put(&mut m, "rule", s(e.rule));
    put(&mut m, "seq", u64s(seq));
    put(&mut m, "syscall", s(e.syscall));
    put(&mut m, "time", Value::String(time_ns.to_string().into()));
    Value::Object(m)
        .write_canonical(out)
        .map_err(|e| e.to_string())
}

pub(crate) fn encode_resolution(
    seq: u64,
    prev: Option<Prev>,
    time_ns: u128,
    r: &ResolutionEntry<'_>,
    out: &mut String,
) -> Result<(), String> {
    // Members in canonical key order.
    let mut m = Vec::with_capacity(11);
    put(&mut m, "by", s(r.by));
    put(&mut m, "escalation", u64s(r.escalation));
    put(&mut m, "kind", s("resolution"));
    put(&mut m, "outcome", s(r.outcome.as_str()));
    if let Some((_, pid)) = r.peer {
        put(&mut m, "peer_pid", int(pid.into()));
    }
    if let Some((uid, _)) = r.peer {
        put(&mut m, "peer_uid", u64s(uid.into()));
    }
    put_prev(&mut m, prev);
    if let Some((key, sig)) = &r.receipt {
        let mut rc = Vec::with_capacity(2);
        put(&mut rc, "key", Value::String(B64.encode(key).into()));
        put(&mut rc, "sig", Value::String(B64.encode(sig).into()));
        put(&mut m, "receipt", Value::Object(rc));
    }
    put(&mut m, "request", u64s(r.request));
    put(&mut m, "scope", s(r.scope));
    put(&mut m, "seq", u64s(seq));
    put(&mut m, "time", Value::String(time_ns.to_string().into()));
    Value::Object(m)
        .write_canonical(out)
        .map_err(|e| e.to_string())
}

pub(crate) fn encode_epoch(
    seq: u64,
    prev: Option<Prev>,
    time_ns: u128,
    epoch: u64,
    key: &[u8; 32],
) -> Result<String, String> {
    let mut m = common("epoch", seq, prev);
    put(&mut m, "time", Value::String(time_ns.to_string().into()));
    put(&mut m, "epoch", u64s(epoch));
    put(&mut m, "key", Value::String(B64.encode(key).into()));
    Value::Object(m).to_canonical().map_err(|e| e.to_string())
}

pub(crate) fn encode_checkpoint(
    seq: u64,
    prev: Option<Prev>,
    note: &str,
    is_final: bool,
) -> Result<String, String> {
    let mut m = common("checkpoint", seq, prev);
    put(&mut m, "note", s(note));
    if is_final {
        put(&mut m, "final", Value::Bool(true));
    }
    Value::Object(m).to_canonical().map_err(|e| e.to_string())
}

fn counts_values(c: &Counts) -> (Value<'static>, Value<'static>) {
    (
        Value::Object(vec![
            (Cow::Borrowed("allow"), u64s(c.allow)),
            (Cow::Borrowed("block"), u64s(c.block)),
            (Cow::Borrowed("escalate"), u64s(c.escalate)),
        ]),
        Value::Object(vec![
            (Cow::Borrowed("allowed"), u64s(c.allowed)),
            (Cow::Borrowed("killed"), u64s(c.killed)),
            (Cow::Borrowed("refused"), u64s(c.refused)),
        ]),
    )
}

pub(crate) fn encode_end(
    seq: u64,
    prev: Option<Prev>,
    time_ns: u128,
    end: &RunEnd,
    counts: &Counts,
) -> Result<String, String> {
    let mut m = common("end", seq, prev);
    put(&mut m, "time", Value::String(time_ns.to_string().into()));
    if let Some(x) = end.exit_status {
        put(&mut m, "exit_status", int(x.into()));
    }
    if let Some(x) = end.signal {
        put(&mut m, "signal", int(x.into()));
    }
    if let Some(n) = &end.note {
        put(&mut m, "note", s(n));
    }
    put(&mut m, "decisions", u64s(counts.decisions));
    let (v, o) = counts_values(counts);
    put(&mut m, "verdicts", v);
    put(&mut m, "outcomes", o);
    Value::Object(m).to_canonical().map_err(|e| e.to_string())
}

pub(crate) struct RecoveryFields<'a> {
    pub id: &'a str,
    pub time_ns: u128,
    pub host_vkey: &'a str,
    pub host_fingerprint: &'a str,
    pub torn_bytes: u64,
    pub torn_sha256: Option<Hash>,
    pub unsealed_run: Option<&'a str>,
    pub prev_run: Option<&'a str>,
}

pub(crate) fn encode_recovery(
    seq: u64,
    prev: Option<Prev>,
    r: &RecoveryFields<'_>,
) -> Result<String, String> {
    let mut m = common("recovery", seq, prev);
    put(&mut m, "run", s(r.id));
    put(&mut m, "time", Value::String(r.time_ns.to_string().into()));
    put(&mut m, "version", s(super::VERSION));
    put(&mut m, "host_key", s(r.host_vkey));
    put(&mut m, "host_fingerprint", s(r.host_fingerprint));
    put(&mut m, "torn_bytes", u64s(r.torn_bytes));
    if let Some(h) = &r.torn_sha256 {
        put(&mut m, "torn_sha256", Value::String(hex_hash(h).into()));
    }
    if let Some(u) = r.unsealed_run {
        put(&mut m, "unsealed_run", s(u));
    }
    if let Some(p) = r.prev_run {
        put(&mut m, "prev_run", s(p));
    }
    Value::Object(m).to_canonical().map_err(|e| e.to_string())
}

// ---------------------------------------------------------------- decoding

/// The kinds of record. Unknown kinds are refused by [`parse`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Run,
    Decision,
    Refusal,
    Escalation,
    Resolution,
    Epoch,
    Checkpoint,
    End,
    Recovery,
    Dns,
    Intent,
    Limit,
    Process,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Run => "run",
            Kind::Decision => "decision",
            Kind::Refusal => "refusal",
            Kind::Escalation => "escalation",
            Kind::Resolution => "resolution",
            Kind::Epoch => "epoch",
            Kind::Checkpoint => "checkpoint",
            Kind::End => "end",
            Kind::Recovery => "recovery",
            Kind::Dns => "dns",
            Kind::Intent => "intent",
            Kind::Limit => "limit",
            Kind::Process => "process",
        }
    }
}

/// What a decision or an intent tells the re-derivation of rate limits:
/// the deciding rule, whether rate limits count it (a decision at its
/// request, or an intent), whether it was a block, and its time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limited {
    pub rule: Option<String>,
    pub counts: bool,
    pub block: bool,
    pub time: u64,
}

/// The fields of a record that verification needs, after its structure was
/// checked.
#[derive(Debug, Clone)]
pub enum Body {
    Run {
        id: String,
        host_key: String,
        host_fingerprint: String,
        epoch_key: [u8; 32],
        prev_run: Option<String>,
        /// The record format of the run (1 when the header has none).
        format: u64,
    },
    /// A format-2 `process` record: a caller's program, by its run-local
    /// id.
    Process {
        id: u64,
    },
    Decision {
        verdict: Verdict,
        outcome: Outcome,
        limited: Limited,
    },
    Refusal,
    Dns,
    Intent {
        limited: Limited,
    },
    Limit {
        /// `rate` or `breaker`.
        event: String,
        /// What a breaker counts: `blocks` or `risk`.
        counted: Option<String>,
        rule: Option<String>,
        count: u64,
        limit: u64,
        window_ms: u64,
        time: u64,
    },
    Escalation {
        request: u64,
    },
    Resolution {
        request: u64,
        escalation: u64,
        allowed: bool,
        scope: String,
        receipt: Option<([u8; 32], [u8; 64])>,
    },
    Epoch {
        epoch: u64,
        key: [u8; 32],
    },
    Checkpoint {
        note: String,
        is_final: bool,
    },
    End {
        counts: Counts,
    },
    Recovery {
        id: String,
        host_key: String,
        host_fingerprint: String,
        torn_bytes: u64,
        torn_sha256: Option<Hash>,
        unsealed_run: Option<String>,
        prev_run: Option<String>,
    },
}

/// A parsed record.
#[derive(Debug, Clone)]
pub struct Parsed {
    pub kind: Kind,
    pub seq: u64,
    pub prev: Option<Hash>,
    pub body: Body,
}

impl Parsed {
    /// The id of a `process` record.
    pub fn body_process_id(&self) -> Option<u64> {
        match self.body {
            Body::Process { id } => Some(id),
            _ => None,
        }
    }
}

struct Fields<'v, 'a> {
    members: &'v [(Cow<'a, str>, Value<'a>)],
    used: usize,
    /// Where the next lookup starts: members are in key order, and lookups
    /// mostly are too, so most are found at the first probe.
    next: usize,
    /// Whether the member names are in strictly increasing byte order (as
    /// in every canonical record): then a name absent from the record is
    /// known absent from the two members around `next`, without a scan.
    sorted: bool,
}

/// Whether two member names are equal (most differ in length or in their
/// first byte, which is tested before the rest).
#[inline]
fn same_name(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x == y)
}

/// Whether member name `a` comes before `b` in byte order (names are
/// short: a byte loop, no call).
#[inline]
fn name_before(a: &[u8], b: &[u8]) -> bool {
    for (x, y) in a.iter().zip(b) {
        if x != y {
            return x < y;
        }
    }
    a.len() < b.len()
}

impl<'v, 'a> Fields<'v, 'a> {
    fn new(members: &'v [(Cow<'a, str>, Value<'a>)]) -> Self {
        let sorted = members
            .windows(2)
            .all(|w| name_before(w[0].0.as_bytes(), w[1].0.as_bytes()));
        Fields {
            members,
            used: 0,
            next: 0,
            sorted,
        }
    }

    fn opt(&mut self, k: &str) -> Option<&'v Value<'a>> {
        let kb = k.as_bytes();
        let n = self.members.len();
        let next = self.next.min(n);
        if self.sorted {
            // Sorted names: `k` is at `next` (the usual case), or it is
            // absent when it falls between `next - 1` and `next`.
            let above = next == n || name_before(kb, self.members[next].0.as_bytes());
            let below = next == 0 || name_before(self.members[next - 1].0.as_bytes(), kb);
            if above && below {
                return None;
            }
        }
        for idx in (next..n).chain(0..next) {
            let (name, v) = &self.members[idx];
            if same_name(name.as_bytes(), kb) {
                self.next = idx + 1;
                self.used += 1;
                return Some(v);
            }
        }
        None
    }
    fn req(&mut self, k: &str) -> Result<&'v Value<'a>, String> {
        self.opt(k).ok_or_else(|| format!("missing field `{k}`"))
    }
    fn str(&mut self, k: &str) -> Result<&'v str, String> {
        self.req(k)?
            .as_str()
            .ok_or_else(|| format!("field `{k}` must be a string"))
    }
    fn opt_str(&mut self, k: &str) -> Result<Option<&'v str>, String> {
        match self.opt(k) {
            None => Ok(None),
            Some(v) => v
                .as_str()
                .map(Some)
                .ok_or_else(|| format!("field `{k}` must be a string")),
        }
    }
    fn u64(&mut self, k: &str) -> Result<u64, String> {
        dec(self.str(k)?).ok_or_else(|| format!("field `{k}` must be a decimal string"))
    }
    fn int(&mut self, k: &str) -> Result<Option<i64>, String> {
        match self.opt(k) {
            None => Ok(None),
            Some(Value::Number(n)) if n.fract() == 0.0 && n.abs() <= i32::MAX as f64 + 1.0 => {
                Ok(Some(*n as i64))
            }
            Some(_) => Err(format!("field `{k}` must be an integer")),
        }
    }
    fn opt_bytes(&mut self, k: &str) -> Result<(), String> {
        match self.opt(k) {
            None => Ok(()),
            Some(v) if is_bytes_value(v) => Ok(()),
            Some(_) => Err(format!("field `{k}` must be a string or {{\"b64\":…}}")),
        }
    }
    fn bytes(&mut self, k: &str) -> Result<(), String> {
        if is_bytes_value(self.req(k)?) {
            Ok(())
        } else {
            Err(format!("field `{k}` must be a string or {{\"b64\":…}}"))
        }
    }
    fn done(&self, kind: &str) -> Result<(), String> {
        if self.used == self.members.len() {
            return Ok(());
        }
        let extra: Vec<&str> = self
            .members
            .iter()
            .map(|(k, _)| k.as_ref())
            .filter(|k| !known(kind, k))
            .collect();
        Err(format!(
            "unexpected field(s) {} in a `{kind}` record",
            extra.join(", ")
        ))
    }
}

/// Checks `policy_layers` of a run header: a non-empty array of objects
/// with exactly `path` (a byte string) and `sha256` (64 hex digits).
pub(crate) fn policy_layers(v: &Value<'_>) -> Result<Vec<PolicyLayer>, String> {
    const SHAPE: &str =
        "`policy_layers` must be a non-empty array of objects with `path` and `sha256`";
    let Value::Array(items) = v else {
        return Err(SHAPE.into());
    };
    if items.is_empty() {
        return Err(SHAPE.into());
    }
    let mut out = Vec::with_capacity(items.len());
    for item in items {
        let Value::Object(members) = item else {
            return Err(SHAPE.into());
        };
        let get = |name: &str| members.iter().find(|(k, _)| k == name).map(|(_, v)| v);
        let (Some(path), Some(sha), 2) = (get("path"), get("sha256"), members.len()) else {
            return Err(SHAPE.into());
        };
        let path = value_bytes(path).ok_or(SHAPE)?;
        let sha = sha
            .as_str()
            .filter(|s| !s.bytes().any(|c| c.is_ascii_uppercase()))
            .and_then(hex32)
            .ok_or("`policy_layers[].sha256` must be 64 lowercase hex digits")?;
        out.push(PolicyLayer {
            path: PathBuf::from(OsString::from_vec(path)),
            sha256: sha,
        });
    }
    Ok(out)
}

fn known(kind: &str, k: &str) -> bool {
    const COMMON: &[&str] = &["kind", "seq", "prev"];
    let own: &[&str] = match kind {
        "run" => &[
            "run",
            "time",
            "version",
            "command",
            "cwd",
            "workspace",
            "policy_sha256",
            "policy_path",
            "mode",
            "ci",
            "host_key",
            "host_fingerprint",
            "epoch_key",
            "prev_run",
            "vars",
            "policy_layers",
            "format",
        ],
        "process" => &[
            "id", "program", "dev", "ino", "sha256", "injected", "cwd", "time",
        ],
        "decision" => &[
            "time", "pid", "ppid", "action", "stage", "verdict", "outcome", "rule", "matched",
            "reason", "mode", "identity", "note", "loaded", "map",
        ],
        "refusal" => &["time", "pid", "ppid", "syscall", "rule", "reason", "errno"],
        "limit" => &[
            "time",
            "event",
            "rule",
            "count",
            "counted",
            "limit",
            "window_ms",
            "then",
            "pid",
            "ppid",
            "reason",
        ],
        "intent" => &[
            "time", "pid", "ppid", "program", "channel", "action", "judged", "verdict", "outcome",
            "rule", "matched", "reason", "mode", "note",
        ],
        "dns" => &[
            "time", "pid", "ppid", "query", "resolver", "rcode", "bindings",
        ],
        "escalation" => &[
            "time", "pid", "ppid", "syscall", "action", "rule", "reason", "request", "deadline",
        ],
        "resolution" => &[
            "time",
            "request",
            "escalation",
            "outcome",
            "by",
            "peer_uid",
            "peer_pid",
            "scope",
            "receipt",
        ],
        "epoch" => &["time", "epoch", "key"],
        "checkpoint" => &["note", "final"],
        "end" => &[
            "time",
            "exit_status",
            "signal",
            "note",
            "decisions",
            "verdicts",
            "outcomes",
        ],
        "recovery" => &[
            "run",
            "time",
            "version",
            "host_key",
            "host_fingerprint",
            "torn_bytes",
            "torn_sha256",
            "unsealed_run",
            "prev_run",
        ],
        _ => &[],
    };
    COMMON.contains(&k) || own.contains(&k)
}

/// A format-2 identity `"DEV:INO"`: two canonical decimals.
pub(crate) fn identity_pair(s: &str) -> Option<(u64, u64)> {
    let (d, i) = s.split_once(':')?;
    Some((dec(d)?, dec(i)?))
}

/// A canonical decimal (no sign, no leading zeros).
fn dec(s: &str) -> Option<u64> {
    if s.is_empty() || !s.bytes().all(|c| c.is_ascii_digit()) || (s.len() > 1 && s.starts_with('0'))
    {
        return None;
    }
    s.parse().ok()
}

/// Decode 64 lowercase hex digits (table-driven: runs for every `prev`).
fn hex32(s: &str) -> Option<Hash> {
    const BAD: u8 = 0xff;
    const TABLE: [u8; 256] = {
        let mut t = [BAD; 256];
        let mut i = 0;
        while i < 10 {
            t[b'0' as usize + i] = i as u8;
            i += 1;
        }
        let mut i = 0;
        while i < 6 {
            t[b'a' as usize + i] = 10 + i as u8;
            i += 1;
        }
        t
    };
    let b = s.as_bytes();
    if b.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    let mut bad = 0u8;
    for (o, pair) in out.iter_mut().zip(b.chunks_exact(2)) {
        let (hi, lo) = (TABLE[usize::from(pair[0])], TABLE[usize::from(pair[1])]);
        bad |= (hi | lo) & 0xf0;
        *o = (hi << 4) | (lo & 0x0f);
    }
    (bad == 0).then_some(out)
}

fn b64_32(s: &str) -> Option<[u8; 32]> {
    let raw = B64.decode(s).ok()?;
    <[u8; 32]>::try_from(raw.as_slice()).ok()
}

fn run_id(s: &str) -> Result<String, String> {
    if s.len() == 32
        && s.bytes()
            .all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(&c))
    {
        Ok(s.to_string())
    } else {
        Err(format!("run id {s:?} is not 32 lowercase hex digits"))
    }
}

fn str_array(v: &Value<'_>, what: &str) -> Result<(), String> {
    match v {
        Value::Array(a) if a.iter().all(|x| x.as_str().is_some()) => Ok(()),
        _ => Err(format!("`{what}` must be an array of strings")),
    }
}

fn check_time(f: &mut Fields<'_, '_>) -> Result<(), String> {
    f.u64("time").map(|_| ())
}

fn check_mode(v: &str) -> Result<(), String> {
    match v {
        "enforce" | "observe" => Ok(()),
        _ => Err(format!("unknown mode {v:?}")),
    }
}

fn check_action(v: &Value<'_>) -> Result<(), String> {
    let Value::Object(m) = v else {
        return Err("`action` must be an object".into());
    };
    let mut f = Fields::new(m);
    let kind = f.str("kind")?;
    match kind {
        "exec" => {
            f.bytes("path")?;
            // Absent only for `[path]` in a format-2 decision, which
            // `decode::Context` checks.
            match f.opt("argv") {
                None => {}
                Some(Value::Array(a)) if a.iter().all(is_bytes_value) => {}
                _ => return Err("`action.argv` must be an array of byte strings".into()),
            }
            f.bytes("cwd")?;
            if let Some(h) = f.opt_str("sha256")? {
                hex32(h).ok_or("`action.sha256` must be 64 hex digits")?;
            }
        }
        "open" => {
            f.bytes("path")?;
            // Absent only for a plain read in a format-2 decision, which
            // `decode::Context` checks.
            match f.opt("access") {
                None => {}
                Some(Value::Array(a))
                    if a.iter().all(|x| {
                        x.as_str()
                            .is_some_and(|n| crate::action::Access::from_name(n).is_some())
                    }) => {}
                _ => return Err("`action.access` must be an array of access names".into()),
            }
            // Absent only in a format-2 decision naming a process record
            // (`decode::Context` checks).
            f.opt_bytes("cwd")?;
            let detail = f.opt("detail");
            let op = match f.opt_str("op")? {
                Some(n) => Some(
                    crate::action::FileOp::from_name(n)
                        .ok_or_else(|| format!("unknown operation {n:?} in `action.op`"))?,
                ),
                None => None,
            };
            check_detail(op, detail)?;
            if let Some(p) = f.opt("process") {
                check_process(p)?;
            }
        }
        "connect" => check_connect(&mut f)?,
        "tool" => {
            if f.opt("cwd").is_some() {
                f.used -= 1;
                f.bytes("cwd")?;
            }
            f.req("input")?;
            if f.str("name")?.is_empty() {
                return Err("`action.name` of a tool action is empty".into());
            }
        }
        other => return Err(format!("unknown action kind {other:?}")),
    }
    if f.used != m.len() {
        return Err(format!("unexpected field in a `{kind}` action"));
    }
    Ok(())
}

/// The detail of an open action: present only with the operations that
/// set something (`mode` for `chmod`, `mkdir`, `mknod`; `uid`/`gid` for
/// `chown`; `target` for `symlink`), never without `op`.
fn check_detail(
    op: Option<crate::action::FileOp>,
    detail: Option<&Value<'_>>,
) -> Result<(), String> {
    use crate::action::FileOp;
    let Some(d) = detail else {
        return match op {
            Some(FileOp::Chmod | FileOp::Chown | FileOp::Symlink) => Err(format!(
                "`action.detail` is missing for operation {:?}",
                op.map(FileOp::as_str).unwrap_or_default()
            )),
            _ => Ok(()),
        };
    };
    let Value::Object(m) = d else {
        return Err("`action.detail` must be an object".into());
    };
    let mut f = Fields::new(m);
    let decimal = |v: &Value<'_>| {
        v.as_str()
            .and_then(dec)
            .is_some_and(|n| n <= u32::MAX.into())
    };
    match op {
        Some(FileOp::Chmod | FileOp::Mkdir | FileOp::Mknod) => {
            let mode = f.str("mode")?;
            let ok = (1..=6).contains(&mode.len())
                && mode.bytes().all(|c| (b'0'..=b'7').contains(&c))
                && u32::from_str_radix(mode, 8).is_ok_and(|v| v <= 0o177_777);
            if !ok {
                return Err("`action.detail.mode` must be an octal mode".into());
            }
        }
        Some(FileOp::Chown) => {
            for k in ["gid", "uid"] {
                if let Some(v) = f.opt(k) {
                    if !decimal(v) {
                        return Err(format!("`action.detail.{k}` must be a decimal string"));
                    }
                }
            }
        }
        Some(FileOp::Symlink) => f.bytes("target")?,
        Some(other) => {
            return Err(format!(
                "`action.detail` is not recorded for operation {:?}",
                other.as_str()
            ))
        }
        None => return Err("`action.detail` without `action.op`".into()),
    }
    if f.used != m.len() {
        return Err("unexpected member in `action.detail`".into());
    }
    Ok(())
}

/// A `connect` action: `op`, `protocol`, and the destination by family
/// (`address`+`port` for `inet`/`inet6`, `path` or `abstract` or nothing
/// for `unix`, `name` with no family for a DNS query), `names`, `process`.
fn check_connect(f: &mut Fields<'_, '_>) -> Result<(), String> {
    let op = f.str("op")?;
    crate::action::NetOp::from_name(op).ok_or(format!("unknown connect op {op:?}"))?;
    let protocol = f.str("protocol")?;
    crate::action::Protocol::from_name(protocol).ok_or(format!("unknown protocol {protocol:?}"))?;
    let family = f.opt_str("family")?;
    match family {
        Some("inet") | Some("inet6") => {
            let a = f.str("address")?;
            let ip: std::net::IpAddr = a
                .parse()
                .map_err(|_| format!("`action.address` {a:?} is not an IP address"))?;
            if family == Some("inet") && !ip.is_ipv4() {
                return Err("an `inet` action needs an IPv4 address".into());
            }
            let port = f.u64("port")?;
            if port > 65535 {
                return Err("`action.port` is not a port number".into());
            }
        }
        Some("unix") => {
            let path = f.opt("path").is_some();
            let abs = f.opt("abstract").is_some();
            if path && abs {
                return Err("a local socket has a path or an abstract name, not both".into());
            }
            if path {
                f.used -= 1;
                f.bytes("path")?;
            }
            if abs {
                f.used -= 1;
                f.bytes("abstract")?;
            }
        }
        None => {
            if op != "resolve" {
                return Err("a `connect` action other than `resolve` needs a `family`".into());
            }
            f.str("name")?;
        }
        Some(other) => return Err(format!("unknown family {other:?}")),
    }
    if let Some(n) = f.opt("names") {
        str_array(n, "action.names")?;
    }
    if let Some(p) = f.opt("process") {
        check_process(p)?;
    }
    Ok(())
}

/// The caller's program of an open action: `program`, and optionally
/// `dev`+`ino`, `sha256`, `injected`.
fn check_process(v: &Value<'_>) -> Result<(), String> {
    if let Value::String(id) = v {
        // Format 2: the id of a `process` record, resolved by the reader
        // (`decode::Context`), which refuses it in format 1.
        return dec(id)
            .map(|_| ())
            .ok_or_else(|| "`action.process` must be an object or a decimal id".into());
    }
    let Value::Object(m) = v else {
        return Err("`action.process` must be an object".into());
    };
    let mut f = Fields::new(m);
    check_program(&mut f, "`action.process`")?;
    if f.used != m.len() {
        return Err("unexpected member in `action.process`".into());
    }
    Ok(())
}

/// A caller's program, in an open's `action.process` or a `process`
/// record (`what`): `program`, and optionally `dev`+`ino`, `sha256`,
/// `injected`.
fn check_program(f: &mut Fields<'_, '_>, what: &str) -> Result<(), String> {
    let dev = f.opt("dev");
    f.opt_str("injected")?;
    let ino = f.opt("ino");
    let decimal = |v: &Value<'_>| v.as_str().and_then(dec).is_some();
    match (dev, ino) {
        (None, None) => {}
        (Some(d), Some(i)) if decimal(d) && decimal(i) => {}
        _ => {
            return Err(format!(
                "`dev` and `ino` of {what} must both be decimal strings, or both absent"
            ))
        }
    }
    f.bytes("program")?;
    if let Some(h) = f.opt_str("sha256")? {
        hex32(h).ok_or_else(|| format!("`sha256` of {what} must be 64 hex digits"))?;
    }
    Ok(())
}

fn parse_counts(f: &mut Fields<'_, '_>) -> Result<Counts, String> {
    let decisions = f.u64("decisions")?;
    let mut c = Counts {
        decisions,
        ..Counts::default()
    };
    let Value::Object(v) = f.req("verdicts")? else {
        return Err("`verdicts` must be an object".into());
    };
    let mut vf = Fields::new(v);
    c.allow = vf.u64("allow")?;
    c.block = vf.u64("block")?;
    c.escalate = vf.u64("escalate")?;
    if vf.used != v.len() {
        return Err("unexpected member in `verdicts`".into());
    }
    let Value::Object(o) = f.req("outcomes")? else {
        return Err("`outcomes` must be an object".into());
    };
    let mut of = Fields::new(o);
    c.allowed = of.u64("allowed")?;
    c.killed = of.u64("killed")?;
    c.refused = of.u64("refused")?;
    if of.used != o.len() {
        return Err("unexpected member in `outcomes`".into());
    }
    Ok(c)
}

/// Check a record's structure and extract what verification needs. Errors
/// name the offending field; unknown kinds are refused.
pub fn parse(v: &Value<'_>) -> Result<Parsed, String> {
    let Value::Object(m) = v else {
        return Err("a record must be a JSON object".into());
    };
    let mut f = Fields::new(m);
    let kind_s = f.str("kind")?;
    let kind = match kind_s {
        "run" => Kind::Run,
        "decision" => Kind::Decision,
        "refusal" => Kind::Refusal,
        "dns" => Kind::Dns,
        "intent" => Kind::Intent,
        "limit" => Kind::Limit,
        "escalation" => Kind::Escalation,
        "resolution" => Kind::Resolution,
        "epoch" => Kind::Epoch,
        "checkpoint" => Kind::Checkpoint,
        "end" => Kind::End,
        "recovery" => Kind::Recovery,
        "process" => Kind::Process,
        other => {
            return Err(format!(
                "unknown record kind {other:?} (this lexecon knows run, process, decision, refusal, dns, intent, limit, escalation, resolution, epoch, checkpoint, end, recovery)"
            ))
        }
    };
    let seq = f.u64("seq")?;
    let prev = match f.opt_str("prev")? {
        None => None,
        Some(p) => Some(prev_hash(p).ok_or(
            "`prev` must be 64 lowercase hex digits (format 1, run headers) or 44 characters of base64 (format 2)",
        )?),
    };
    let body = match kind {
        Kind::Run => {
            let id = run_id(f.str("run")?)?;
            check_time(&mut f)?;
            f.str("version")?;
            match f.req("command")? {
                Value::Array(a) if a.iter().all(is_bytes_value) => {}
                _ => return Err("`command` must be an array of byte strings".into()),
            }
            f.bytes("cwd")?;
            let format = match f.int("format")? {
                None => 1,
                Some(2) => 2,
                Some(n) => {
                    return Err(format!(
                        "record format {n} is not one this lexecon reads (`format` absent: 1; 2)"
                    ))
                }
            };
            if f.opt("workspace").is_some() {
                f.used -= 1;
                f.bytes("workspace")?;
            }
            hex32(f.str("policy_sha256")?).ok_or("`policy_sha256` must be 64 hex digits")?;
            if f.opt("policy_path").is_some() {
                f.used -= 1;
                f.bytes("policy_path")?;
            }
            check_mode(f.str("mode")?)?;
            match f.req("ci")? {
                Value::Object(c) if c.iter().all(|(_, v)| v.as_str().is_some()) => {}
                _ => return Err("`ci` must be an object of strings".into()),
            }
            let host_key = f.str("host_key")?.to_string();
            let host_fingerprint = f.str("host_fingerprint")?.to_string();
            let epoch_key =
                b64_32(f.str("epoch_key")?).ok_or("`epoch_key` must be a base64 32-byte key")?;
            let prev_run = f.opt_str("prev_run")?.map(run_id).transpose()?;
            match f.opt("vars") {
                None => {}
                Some(Value::Object(vs)) if vs.iter().all(|(_, v)| is_bytes_value(v)) => {}
                Some(_) => return Err("`vars` must be an object of byte strings".into()),
            }
            if let Some(layers) = f.opt("policy_layers") {
                policy_layers(layers)?;
            }
            Body::Run {
                id,
                host_key,
                host_fingerprint,
                epoch_key,
                prev_run,
                format,
            }
        }
        Kind::Process => {
            // In key order (see `Fields::next`).
            f.opt_bytes("cwd")?;
            let id = f.u64("id")?;
            check_program(&mut f, "a process record")?;
            check_time(&mut f)?;
            Body::Process { id }
        }
        Kind::Decision => {
            // In key order (see `Fields::next`).
            check_action(f.req("action")?)?;
            match f.opt("identity") {
                None => {}
                // Format 2 (`decode::Context` checks where it may stand).
                Some(Value::String(t)) => {
                    identity_pair(t).ok_or("`identity` must be an object or \"DEV:INO\"")?;
                }
                Some(Value::Object(im)) => {
                    let mut i = Fields::new(im);
                    i.u64("dev")?;
                    i.u64("ino")?;
                    if let Some(h) = i.opt_str("sha256")? {
                        hex32(h).ok_or("`identity.sha256` must be 64 hex digits")?;
                    }
                    if i.used != im.len() {
                        return Err("unexpected member in `identity`".into());
                    }
                }
                Some(_) => return Err("`identity` must be an object or \"DEV:INO\"".into()),
            }
            if let Some(l) = f.opt("loaded") {
                check_action(l)?;
                if l.get("kind").and_then(Value::as_str) != Some("exec") {
                    return Err("`loaded` must be an exec action".into());
                }
            }
            // Format 2: a code mapping's note (`decode::Context` checks it).
            match f.opt("map") {
                None | Some(Value::Bool(true)) => {}
                Some(_) => return Err("`map` must be true".into()),
            }
            // `matched`, `mode`, `outcome`, `reason` and `stage` may be
            // absent in format 2 (their defaults: `DecisionDefaults`); the
            // reader (`decode::Context`) refuses their absence in format 1
            // and their default values present in format 2.
            if let Some(m) = f.opt("matched") {
                str_array(m, "matched")?;
            }
            if let Some(m) = f.opt_str("mode")? {
                check_mode(m)?;
            }
            f.opt_str("note")?;
            let outcome = match f.opt_str("outcome")? {
                Some(o) => Some(Outcome::parse(o).ok_or_else(|| format!("unknown outcome {o:?}"))?),
                None => None,
            };
            f.int("pid")?.ok_or("missing field `pid`")?;
            f.int("ppid")?.ok_or("missing field `ppid`")?;
            let reason = f.opt_str("reason")?;
            let rule = f.opt_str("rule")?.map(str::to_string);
            if reason.is_none() && rule.is_some() {
                return Err("missing field `reason` (only a decision no rule decided may leave its reason out)".into());
            }
            let request = match f.opt_str("stage")? {
                None | Some("request") => true,
                Some("confirm") => false,
                Some(other) => return Err(format!("unknown stage {other:?}")),
            };
            let time = f.u64("time")?;
            // Absent: `allow` (format 2; `decode::Context` refuses its
            // absence in format 1).
            let verdict = match f.opt_str("verdict")? {
                None => Verdict::Allow,
                Some(v) => parse_verdict(v).ok_or_else(|| format!("unknown verdict {v:?}"))?,
            };
            let outcome = match (outcome, verdict) {
                (Some(o), _) => o,
                (None, Verdict::Allow) => Outcome::Allowed,
                (None, _) => {
                    return Err(
                        "missing field `outcome` (only an allow verdict may leave it out)".into(),
                    )
                }
            };
            Body::Decision {
                verdict,
                outcome,
                limited: Limited {
                    rule,
                    counts: request,
                    block: verdict == Verdict::Block,
                    time,
                },
            }
        }
        Kind::Intent => {
            // In key order (see `Fields::next`).
            check_action(f.req("action")?)?;
            match f.str("channel")? {
                "gate" | "decide" => {}
                other => return Err(format!("unknown channel {other:?}")),
            }
            if let Some(j) = f.opt("judged") {
                let Value::Array(items) = j else {
                    return Err("`judged` must be an array".into());
                };
                for item in items {
                    let Value::Object(jm) = item else {
                        return Err("each entry of `judged` must be an object".into());
                    };
                    let mut jf = Fields::new(jm);
                    check_action(jf.req("action")?)?;
                    jf.str("reason")?;
                    jf.opt_str("rule")?;
                    let v = jf.str("verdict")?;
                    parse_verdict(v).ok_or_else(|| format!("unknown verdict {v:?} in `judged`"))?;
                    if jf.used != jm.len() {
                        return Err("unexpected member in an entry of `judged`".into());
                    }
                }
            }
            str_array(f.req("matched")?, "matched")?;
            check_mode(f.str("mode")?)?;
            f.opt_str("note")?;
            let outcome_s = f.str("outcome")?;
            match Outcome::parse(outcome_s) {
                Some(Outcome::Allowed | Outcome::Refused) => {}
                _ => {
                    return Err(format!(
                        "outcome {outcome_s:?} is not an answer to an intent"
                    ))
                }
            }
            f.int("pid")?.ok_or("missing field `pid`")?;
            f.int("ppid")?.ok_or("missing field `ppid`")?;
            if f.opt("program").is_some() {
                f.used -= 1;
                f.bytes("program")?;
            }
            f.str("reason")?;
            let rule = f.opt_str("rule")?.map(str::to_string);
            let time = f.u64("time")?;
            let verdict_s = f.str("verdict")?;
            let verdict =
                parse_verdict(verdict_s).ok_or_else(|| format!("unknown verdict {verdict_s:?}"))?;
            Body::Intent {
                limited: Limited {
                    rule,
                    counts: true,
                    block: verdict == Verdict::Block,
                    time,
                },
            }
        }
        Kind::Limit => {
            // In key order (see `Fields::next`).
            let count = f.u64("count")?;
            let counted = f.opt_str("counted")?;
            let event = f.str("event")?;
            let limit = f.u64("limit")?;
            f.int("pid")?.ok_or("missing field `pid`")?;
            f.int("ppid")?.ok_or("missing field `ppid`")?;
            f.str("reason")?;
            let rule = f.opt_str("rule")?;
            let then = f.opt_str("then")?;
            match (event, rule, then, counted) {
                ("rate", Some(_), None, None) => {}
                (
                    "breaker",
                    None,
                    Some("block-escalations" | "block-all" | "stop"),
                    Some("blocks" | "risk"),
                ) => {}
                _ => {
                    return Err(format!(
                        "a `limit` record of event {event:?} needs `rule` (rate), or `then` and `counted` (breaker)"
                    ))
                }
            }
            let time = f.u64("time")?;
            let window_ms = f.u64("window_ms")?;
            Body::Limit {
                event: event.to_string(),
                counted: counted.map(str::to_string),
                rule: rule.map(str::to_string),
                count,
                limit,
                window_ms,
                time,
            }
        }
        Kind::Refusal => {
            // In key order (see `Fields::next`).
            f.int("errno")?.ok_or("missing field `errno`")?;
            f.int("pid")?.ok_or("missing field `pid`")?;
            f.int("ppid")?.ok_or("missing field `ppid`")?;
            f.str("reason")?;
            f.str("rule")?;
            f.str("syscall")?;
            check_time(&mut f)?;
            Body::Refusal
        }
        Kind::Dns => {
            // In key order (see `Fields::next`).
            match f.req("bindings")? {
                Value::Array(a)
                    if a.iter().all(|b| match b {
                        Value::Object(m) => {
                            m.len() == 2
                                && m[0].0 == "address"
                                && m[0]
                                    .1
                                    .as_str()
                                    .is_some_and(|x| x.parse::<std::net::IpAddr>().is_ok())
                                && m[1].0 == "name"
                                && m[1].1.as_str().is_some()
                        }
                        _ => false,
                    }) => {}
                _ => return Err("`bindings` must be an array of {address, name}".into()),
            }
            f.int("pid")?.ok_or("missing field `pid`")?;
            f.int("ppid")?.ok_or("missing field `ppid`")?;
            f.str("query")?;
            if let Some(rc) = f.int("rcode")? {
                if !(0..=15).contains(&rc) {
                    return Err("`rcode` must be 0 to 15".into());
                }
            }
            f.str("resolver")?;
            check_time(&mut f)?;
            Body::Dns
        }
        Kind::Escalation => {
            // In key order (see `Fields::next`).
            check_action(f.req("action")?)?;
            f.u64("deadline")?;
            f.int("pid")?.ok_or("missing field `pid`")?;
            f.int("ppid")?.ok_or("missing field `ppid`")?;
            f.str("reason")?;
            let request = f.u64("request")?;
            f.str("rule")?;
            f.str("syscall")?;
            check_time(&mut f)?;
            Body::Escalation { request }
        }
        Kind::Resolution => {
            // In key order (see `Fields::next`).
            match f.str("by")? {
                "approver" | "timeout" | "withdrawn" | "end" | "terminal" => {}
                other => return Err(format!("unknown resolver {other:?}")),
            }
            let escalation = f.u64("escalation")?;
            let allowed = match f.str("outcome")? {
                "allowed" => true,
                "refused" => false,
                other => return Err(format!("unknown resolution outcome {other:?}")),
            };
            f.int("peer_pid")?;
            if f.opt("peer_uid").is_some() {
                f.used -= 1;
                f.u64("peer_uid")?;
            }
            let receipt = match f.opt("receipt") {
                None => None,
                Some(Value::Object(rm)) => {
                    let mut rf = Fields::new(rm);
                    let key = b64_32(rf.str("key")?)
                        .ok_or("`receipt.key` must be a base64 32-byte key")?;
                    let sig = B64
                        .decode(rf.str("sig")?)
                        .ok()
                        .and_then(|b| <[u8; 64]>::try_from(b.as_slice()).ok())
                        .ok_or("`receipt.sig` must be a base64 64-byte signature")?;
                    if rf.used != rm.len() {
                        return Err("unexpected member in `receipt`".into());
                    }
                    Some((key, sig))
                }
                Some(_) => return Err("`receipt` must be an object".into()),
            };
            let request = f.u64("request")?;
            let scope = match f.str("scope")? {
                s @ ("once" | "run") => s.to_string(),
                other => return Err(format!("unknown grant scope {other:?}")),
            };
            check_time(&mut f)?;
            Body::Resolution {
                request,
                escalation,
                allowed,
                scope,
                receipt,
            }
        }
        Kind::Epoch => {
            check_time(&mut f)?;
            let epoch = f.u64("epoch")?;
            let key = b64_32(f.str("key")?).ok_or("`key` must be a base64 32-byte key")?;
            Body::Epoch { epoch, key }
        }
        Kind::Checkpoint => {
            let note = f.str("note")?.to_string();
            let is_final = match f.opt("final") {
                None => false,
                Some(Value::Bool(true)) => true,
                Some(_) => return Err("`final` must be true when present".into()),
            };
            Body::Checkpoint { note, is_final }
        }
        Kind::End => {
            check_time(&mut f)?;
            f.int("exit_status")?;
            f.int("signal")?;
            f.opt_str("note")?;
            Body::End {
                counts: parse_counts(&mut f)?,
            }
        }
        Kind::Recovery => {
            let id = run_id(f.str("run")?)?;
            check_time(&mut f)?;
            f.str("version")?;
            let host_key = f.str("host_key")?.to_string();
            let host_fingerprint = f.str("host_fingerprint")?.to_string();
            let torn_bytes = f.u64("torn_bytes")?;
            let torn_sha256 = match f.opt_str("torn_sha256")? {
                Some(h) => Some(hex32(h).ok_or("`torn_sha256` must be 64 hex digits")?),
                None => None,
            };
            let unsealed_run = f.opt_str("unsealed_run")?.map(run_id).transpose()?;
            let prev_run = f.opt_str("prev_run")?.map(run_id).transpose()?;
            Body::Recovery {
                id,
                host_key,
                host_fingerprint,
                torn_bytes,
                torn_sha256,
                unsealed_run,
                prev_run,
            }
        }
    };
    f.done(kind_s)?;
    Ok(Parsed {
        kind,
        seq,
        prev,
        body,
    })
}

#[cfg(test)]
mod connect_shape_tests {
    use super::*;

    fn check(text: &str) -> Result<(), String> {
        let v = super::super::jcs::parse(text, super::super::jcs::Mode::Strict).unwrap();
        check_action(&v)
    }

    #[test]
    fn connect_actions_are_shape_checked() {
        assert!(check(r#"{"address":"10.0.0.1","family":"inet","kind":"connect","op":"connect","port":"443","protocol":"tcp"}"#).is_ok());
        assert!(check(
            r#"{"family":"unix","kind":"connect","op":"connect","path":"/run/x","protocol":"unix"}"#
        )
        .is_ok());
        assert!(
            check(r#"{"kind":"connect","name":"pypi.org","op":"resolve","protocol":"udp"}"#)
                .is_ok()
        );
        for bad in [
            r#"{"address":"10.0.0.1","family":"inet","kind":"connect","op":"connect","port":"70000","protocol":"tcp"}"#,
            r#"{"address":"::1","family":"inet","kind":"connect","op":"connect","port":"1","protocol":"tcp"}"#,
            r#"{"address":"pypi.org","family":"inet6","kind":"connect","op":"connect","port":"1","protocol":"tcp"}"#,
            r#"{"address":"10.0.0.1","family":"inet","kind":"connect","op":"accept","port":"1","protocol":"tcp"}"#,
            r#"{"address":"10.0.0.1","family":"inet","kind":"connect","op":"connect","port":"1","protocol":"sctp"}"#,
            r#"{"abstract":"x","family":"unix","kind":"connect","op":"connect","path":"/x","protocol":"unix"}"#,
            r#"{"kind":"connect","op":"connect","protocol":"tcp"}"#,
            r#"{"address":"10.0.0.1","extra":1,"family":"inet","kind":"connect","op":"connect","port":"1","protocol":"tcp"}"#,
        ] {
            assert!(check(bad).is_err(), "{bad}");
        }
    }
}

#[cfg(test)]
mod tool_input_tests {
    use super::*;

    #[test]
    fn long_input_strings_are_recorded_by_their_digest() {
        let long = "x".repeat(MAX_RECORDED_INPUT_STRING + 1);
        let v = serde_json::json!({"file_path": "/w/a", "content": long, "n": 3});
        let text = json_value(&v).to_canonical().unwrap();
        assert!(text.contains(r#""file_path":"/w/a""#), "{text}");
        assert!(text.contains(r#""n":3"#));
        assert!(text.contains(r#""content":{"lexecon.digest":{"bytes":"65537","sha256":""#));
        assert!(text.len() < 300);
        let short = serde_json::json!({"content": "y"});
        assert_eq!(
            json_value(&short).to_canonical().unwrap(),
            r#"{"content":"y"}"#
        );
    }
}

#[cfg(test)]
mod default_reason_tests {
    use super::*;
    use crate::action::{ExecAction, ToolAction};

    #[test]
    fn the_default_reason_is_recognised_exactly() {
        let exec = Action::Exec(ExecAction {
            path: "/bin/true".into(),
            argv: vec!["true".into()],
            cwd: "/".into(),
            sha256: None,
        });
        let tool = Action::Tool(ToolAction {
            name: "t".into(),
            input: serde_json::Value::Null,
            cwd: PathBuf::new(),
        });
        for a in [&exec, &tool] {
            for v in [Verdict::Allow, Verdict::Escalate, Verdict::Block] {
                for note in [
                    None,
                    Some(format!("{} (mmap)", super::super::read::CODE_MAP_NOTE)),
                ] {
                    let d = |reason: String| DecisionEntry {
                        pid: 1,
                        ppid: 0,
                        action: a,
                        loaded: None,
                        stage: Stage::Request,
                        verdict: v,
                        outcome: Outcome::Allowed,
                        rule: None,
                        matched: vec![],
                        reason,
                        mode: Mode::Enforce,
                        identity: None,
                        note: note.clone(),
                    };
                    let right = default_reason(a, v, note.as_deref());
                    assert!(is_default_reason(&d(right.clone())), "{right}");
                    for wrong in [format!("{right}."), right[1..].to_string(), String::new()] {
                        assert!(!is_default_reason(&d(wrong.clone())), "{wrong}");
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::action::{Access, ExecAction, FileOp, OpenAction, ProcessInfo};
    use std::ffi::OsString;
    use std::os::unix::ffi::OsStringExt;

    /// Actions of every form the direct encoder writes itself, and one it
    /// hands on.
    fn actions() -> Vec<Action> {
        let odd = OsString::from_vec(vec![b'/', 0xff, b'x']);
        let mut v = Vec::new();
        for (path, argv) in [
            ("/usr/bin/git", vec!["git".into(), "st\u{e9}\"\n".into()]),
            ("/usr/bin/ls", vec!["/usr/bin/ls".into()]),
            ("/bin/x", vec![odd.clone(), "\u{1}\t".into()]),
            ("/bin/y", vec![]),
        ] {
            for sha256 in [None, Some([0x5a; 32])] {
                v.push(Action::Exec(ExecAction {
                    path: path.into(),
                    argv: argv.clone(),
                    cwd: "/w\\d".into(),
                    sha256,
                }));
            }
        }
        v.push(Action::Exec(ExecAction {
            path: odd.clone().into(),
            argv: vec![odd.clone()],
            cwd: odd.clone().into(),
            sha256: None,
        }));
        let processes = [
            None,
            Some(ProcessInfo {
                program: "/usr/bin/python3".into(),
                sha256: Some([0x3c; 32]),
                file: Some((66306, 1_357_911)),
                injected: None,
            }),
            Some(ProcessInfo {
                program: odd.clone().into(),
                sha256: None,
                file: None,
                injected: Some("LD_PRELOAD".into()),
            }),
        ];
        for op in [FileOp::Open, FileOp::Delete, FileOp::Chmod] {
            for access in [Access::READ, Access::WRITE, Access::READ | Access::WRITE] {
                for process in &processes {
                    for detail in [None, Some(OpDetail::Mode(0o755))] {
                        v.push(Action::Open(OpenAction {
                            op,
                            detail,
                            path: "/w/src/ma\u{1f600}in.rs".into(),
                            access,
                            cwd: "/w".into(),
                            process: process.clone(),
                        }));
                    }
                }
            }
        }
        v.push(Action::Open(OpenAction {
            op: FileOp::Symlink,
            detail: Some(OpDetail::Target(odd.clone())),
            path: odd.into(),
            access: Access::default(),
            cwd: "".into(),
            process: None,
        }));
        v
    }

    #[test]
    fn the_direct_decision_encoder_writes_the_bytes_of_the_record_value() {
        let actions = actions();
        let code_map = crate::ledger::read::CODE_MAP_NOTE.to_string();
        let mut n = 0u64;
        for (ai, action) in actions.iter().enumerate() {
            for variant in 0..48u64 {
                n += 1;
                let pick = |k: u64, m: u64| (variant / k + ai as u64) % m;
                let verdict =
                    [Verdict::Allow, Verdict::Block, Verdict::Escalate][pick(1, 3) as usize];
                let outcome =
                    [Outcome::Allowed, Outcome::Refused, Outcome::Killed][pick(3, 3) as usize];
                let rule = (pick(2, 2) == 0).then(|| format!("rule-{variant}"));
                let reason = match pick(5, 3) {
                    0 => format!(
                        "no rule matched; the default for {} is {}",
                        action.kind(),
                        verdict.as_str()
                    ),
                    1 => crate::policy::CODE_MAP_DEFAULT_REASON.to_string(),
                    _ => "because \"quoted\"\u{7f}".to_string(),
                };
                let note = match pick(7, 3) {
                    0 => None,
                    1 => Some(code_map.clone()),
                    _ => Some(format!("{code_map} and more")),
                };
                let identity = match pick(4, 3) {
                    0 => None,
                    1 => Some(FileIdentity {
                        dev: 1 << 40,
                        ino: variant,
                        sha256: Some([0x5a; 32]),
                    }),
                    _ => Some(FileIdentity {
                        dev: 0,
                        ino: u64::MAX,
                        sha256: None,
                    }),
                };
                let loaded = (pick(11, 4) == 0).then_some(&actions[0]);
                let d = DecisionEntry {
                    pid: [4242, 0, -1, i32::MAX][pick(2, 4) as usize],
                    ppid: 1,
                    action,
                    loaded,
                    stage: [Stage::Request, Stage::Confirm][pick(6, 2) as usize],
                    verdict,
                    outcome,
                    matched: (0..pick(3, 3)).map(|i| format!("m{i}")).collect(),
                    rule,
                    reason,
                    mode: [Mode::Enforce, Mode::Observe][pick(13, 2) as usize],
                    identity,
                    note,
                };
                let prev = match pick(1, 3) {
                    0 => None,
                    1 => Some(Prev {
                        hash: [variant as u8; 32],
                        base64: false,
                    }),
                    _ => Some(Prev {
                        hash: [0xfe ^ variant as u8; 32],
                        base64: true,
                    }),
                };
                let compact = match pick(2, 3) {
                    0 => None,
                    1 => Some(Compact {
                        mode: Mode::Enforce,
                        process: None,
                    }),
                    _ => Some(Compact {
                        mode: Mode::Observe,
                        process: Some(variant + 1),
                    }),
                };
                let time = u128::from(variant) * 1_000_000_007 + (1 << 62);
                let (mut a, mut b) = (String::new(), String::new());
                let ra = encode_decision(variant, prev, time, &d, compact, &mut a);
                let rb = encode_decision_values(variant, prev, time, &d, compact, &mut b);
                assert_eq!(ra, rb);
                assert_eq!(a, b, "{d:?} {compact:?} {prev:?}");
                // And it is canonical.
                let v = jcs::parse(&a, jcs::Mode::Strict).expect("canonical");
                assert_eq!(v.to_canonical().expect("finite"), a);
            }
        }
        assert!(n > 3000);
    }

    /// `Fields` answers from the members' order when they are sorted (every
    /// canonical record) and by a scan when not: both must give the same
    /// record, or the same error, for every record and for every record
    /// with one member removed or renamed.
    #[test]
    fn member_look_ups_do_not_depend_on_the_members_order() {
        let actions = actions();
        let mut lines = Vec::new();
        for (i, action) in actions.iter().enumerate() {
            let d = DecisionEntry {
                pid: 7,
                ppid: 1,
                action,
                loaded: (i % 5 == 0).then_some(&actions[0]),
                stage: Stage::Request,
                verdict: Verdict::Block,
                outcome: Outcome::Refused,
                rule: (i % 2 == 0).then(|| "r".to_string()),
                matched: vec!["r".into()],
                reason: "because".into(),
                mode: Mode::Enforce,
                identity: Some(FileIdentity {
                    dev: 1,
                    ino: 2,
                    sha256: None,
                }),
                note: (i % 3 == 0).then(|| "n".to_string()),
            };
            let compact = (i % 2 == 1).then_some(Compact {
                mode: Mode::Observe,
                process: Some(3),
            });
            let prev = Some(Prev {
                hash: [9; 32],
                base64: compact.is_some(),
            });
            let mut line = String::new();
            encode_decision(i as u64, prev, 5, &d, compact, &mut line).expect("encodes");
            lines.push(line);
        }
        let outcome = |v: &Value<'_>| format!("{:?}", parse(v));
        let reversed = |v: &Value<'_>| -> Value<'static> {
            fn rev(v: &Value<'_>) -> Value<'static> {
                match v {
                    Value::Object(m) => Value::Object(
                        m.iter()
                            .rev()
                            .map(|(k, x)| (Cow::Owned(k.to_string()), rev(x)))
                            .collect(),
                    ),
                    Value::Array(a) => Value::Array(a.iter().map(rev).collect()),
                    Value::String(t) => Value::String(Cow::Owned(t.to_string())),
                    Value::Number(n) => Value::Number(*n),
                    Value::Bool(b) => Value::Bool(*b),
                    Value::Null => Value::Null,
                }
            }
            rev(v)
        };
        let (mut checked, mut valid) = (0, 0);
        for line in &lines {
            let v = jcs::parse(line, jcs::Mode::Strict).expect("canonical");
            // (Some generated actions are not valid records: an open's
            // `detail` with an operation that has none.)
            valid += usize::from(parse(&v).is_ok());
            assert_eq!(outcome(&v), outcome(&reversed(&v)), "{line}");
            let Value::Object(m) = &v else { unreachable!() };
            for drop_at in 0..m.len() {
                for rename in [None, Some("zz"), Some("a"), Some("pie")] {
                    let mut m2 = m.clone();
                    match rename {
                        None => {
                            m2.remove(drop_at);
                        }
                        Some(n) => m2[drop_at].0 = Cow::Borrowed(n),
                    }
                    let sorted = Value::Object(m2.clone());
                    m2.reverse();
                    let unsorted = Value::Object(m2);
                    assert_eq!(outcome(&sorted), outcome(&unsorted), "{line} {drop_at}");
                    checked += 1;
                }
            }
        }
        assert!(checked > 1000);
        assert!(valid > lines.len() / 2, "{valid} of {}", lines.len());
    }
}
