//! Reading recorded actions back: the inverse of the encoder in
//! [`super::record`].
//!
//! [`decode_action`] turns the `action` member of a `decision` or
//! `escalation` record into the [`Action`] that was judged (every kind the
//! ledger encodes: exec, open with its access, operation, detail and
//! caller's program, and connect with its op, protocol, destination and
//! names); [`decode_record`] turns a whole record into a [`Recorded`] (the
//! action plus pid, verdict, outcome, rules, stage, identity, note), and
//! [`decode_run`] reads a run header. Byte strings come back exactly as
//! recorded (`{"b64":…}` for bytes that are not UTF-8).
//!
//! Record format 2 (docs/ledger.md, "Format versions") needs the records
//! before a decision in its run: a [`Context`] takes in every record in
//! file order and decodes a format-2 decision exactly as the format-1
//! record of the same event reads (references resolved, defaults put
//! back). The context-free [`decode_record`] and [`decode_line`] read
//! format 1 only, and refuse a reference.
//!
//! Decoding checks the shape of what it reads but not the chain or the
//! signatures: read a ledger that [`super::verify`] accepted. Any field it
//! does not understand is an error, never skipped.

use std::collections::{BTreeMap, HashMap};
use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;

use super::jcs::Value;
use super::record::{FileIdentity, Outcome, Stage};
use crate::action::{
    Access, Action, ConnectAction, ExecAction, FileOp, Mode, NetFamily, NetOp, NetTarget, OpDetail,
    OpenAction, ProcessInfo, Protocol, Verdict,
};

/// Which kind of record a [`Recorded`] came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordKind {
    /// A `decision` record: an action judged and carried out or refused.
    Decision,
    /// An `escalation` record: an action held for a human's answer (its
    /// outcome is in the `decision` record that follows the resolution).
    Escalation,
}

/// A recorded action with what was decided about it.
#[derive(Debug, Clone, PartialEq)]
pub struct Recorded {
    pub record: RecordKind,
    pub seq: u64,
    /// ns since the Unix epoch.
    pub time_ns: u128,
    pub pid: i32,
    pub ppid: i32,
    pub action: Action,
    /// For an exec of the dynamic loader asked to run a program: the exec of
    /// that program, judged too (decision records only).
    pub loaded: Option<Action>,
    /// `Escalate` for an escalation record.
    pub verdict: Verdict,
    /// `None` for an escalation record.
    pub outcome: Option<Outcome>,
    /// `None` for an escalation record.
    pub stage: Option<Stage>,
    /// The winning rule (`None`: the kind's default applied).
    pub rule: Option<String>,
    /// Every rule that matched (empty for an escalation record).
    pub matched: Vec<String>,
    pub reason: String,
    /// `None` for an escalation record.
    pub mode: Option<Mode>,
    pub identity: Option<FileIdentity>,
    pub note: Option<String>,
    /// The system call, recorded in escalation records only.
    pub syscall: Option<String>,
    /// The request id of an escalation record.
    pub request: Option<u64>,
}

/// What a run header records about the run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunRecord {
    pub seq: u64,
    pub run_id: String,
    pub time_ns: u128,
    pub version: String,
    pub command: Vec<OsString>,
    pub cwd: PathBuf,
    pub workspace: Option<PathBuf>,
    pub policy_sha256: [u8; 32],
    pub policy_path: Option<PathBuf>,
    pub mode: Mode,
    pub ci: BTreeMap<String, String>,
    /// `HOME`, `TMPDIR` and every `env.NAME` the policy was loaded with
    /// (absent in ledgers written before they were recorded).
    pub vars: Option<BTreeMap<String, OsString>>,
    /// Each file of a layered policy with its own hash, in layer order
    /// (empty for a policy without `include:`).
    pub policy_layers: Vec<super::PolicyLayer>,
}

fn bytes(v: &Value<'_>, what: &str) -> Result<Vec<u8>, String> {
    super::record::value_bytes(v)
        .ok_or_else(|| format!("`{what}` must be a string or {{\"b64\":…}}"))
}

fn os(v: &Value<'_>, what: &str) -> Result<OsString, String> {
    Ok(OsStr::from_bytes(&bytes(v, what)?).to_os_string())
}

fn path(v: &Value<'_>, what: &str) -> Result<PathBuf, String> {
    os(v, what).map(PathBuf::from)
}

fn string<'v>(v: &'v Value<'_>, what: &str) -> Result<&'v str, String> {
    v.as_str()
        .ok_or_else(|| format!("`{what}` must be a string"))
}

fn decimal(v: &Value<'_>, what: &str) -> Result<u64, String> {
    let s = string(v, what)?;
    if s.is_empty() || !s.bytes().all(|c| c.is_ascii_digit()) || (s.len() > 1 && s.starts_with('0'))
    {
        return Err(format!("`{what}` must be a decimal string"));
    }
    s.parse().map_err(|_| format!("`{what}` is out of range"))
}

fn decimal128(v: &Value<'_>, what: &str) -> Result<u128, String> {
    let s = string(v, what)?;
    if s.is_empty() || !s.bytes().all(|c| c.is_ascii_digit()) {
        return Err(format!("`{what}` must be a decimal string"));
    }
    s.parse().map_err(|_| format!("`{what}` is out of range"))
}

fn hash(v: &Value<'_>, what: &str) -> Result<[u8; 32], String> {
    let s = string(v, what)?;
    let mut out = [0u8; 32];
    if s.len() != 64 || s.bytes().any(|c| c.is_ascii_uppercase()) {
        return Err(format!("`{what}` must be 64 lowercase hex digits"));
    }
    hex::decode_to_slice(s, &mut out)
        .map_err(|_| format!("`{what}` must be 64 lowercase hex digits"))?;
    Ok(out)
}

fn int(v: &Value<'_>, what: &str) -> Result<i32, String> {
    match v {
        Value::Number(n) if n.fract() == 0.0 && *n >= i32::MIN as f64 && *n <= i32::MAX as f64 => {
            Ok(*n as i32)
        }
        _ => Err(format!("`{what}` must be an integer")),
    }
}

/// The members of an object, each to be taken once; what is left over is
/// an error.
struct Members<'v, 'a> {
    what: &'static str,
    m: BTreeMap<&'v str, &'v Value<'a>>,
}

impl<'v, 'a> Members<'v, 'a> {
    fn of(v: &'v Value<'a>, what: &'static str) -> Result<Self, String> {
        let Value::Object(m) = v else {
            return Err(format!("`{what}` must be an object"));
        };
        Ok(Members {
            what,
            m: m.iter().map(|(k, v)| (k.as_ref(), v)).collect(),
        })
    }
    fn opt(&mut self, k: &str) -> Option<&'v Value<'a>> {
        self.m.remove(k)
    }
    fn req(&mut self, k: &str) -> Result<&'v Value<'a>, String> {
        self.opt(k)
            .ok_or_else(|| format!("missing `{k}` in `{}`", self.what))
    }
    fn done(self) -> Result<(), String> {
        if self.m.is_empty() {
            return Ok(());
        }
        let extra: Vec<&str> = self.m.keys().copied().collect();
        Err(format!(
            "unknown member(s) {} in `{}`",
            extra.join(", "),
            self.what
        ))
    }
}

/// A format-2 `process` record: the caller's program, and the working
/// directory of the opens that name it (absent for a record first named by
/// a connect).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Caller {
    info: ProcessInfo,
    cwd: Option<PathBuf>,
}

/// The run's `process` records by id (format 2), for resolving
/// `"process":"ID"`; `None` where no reference may stand.
type Processes = HashMap<u64, Caller>;

/// The record a format-2 reference names.
fn caller<'p>(v: &Value<'_>, procs: &'p Processes) -> Result<&'p Caller, String> {
    let id = v.as_str().unwrap_or("");
    id.parse::<u64>()
        .ok()
        .and_then(|n| procs.get(&n))
        .ok_or_else(|| {
            format!("`action.process` refers to process record {id:?}, which its run does not have before it")
        })
}

fn decode_process(v: &Value<'_>, procs: Option<&Processes>) -> Result<ProcessInfo, String> {
    if let Value::String(id) = v {
        let Some(procs) = procs else {
            return Err(format!(
                "`action.process` refers to process record {id:?} where only a decision of a format-2 run may refer to one"
            ));
        };
        return caller(v, procs).map(|c| c.info.clone());
    }
    let mut f = Members::of(v, "action.process")?;
    let dev = f
        .opt("dev")
        .map(|d| decimal(d, "action.process.dev"))
        .transpose()?;
    let ino = f
        .opt("ino")
        .map(|d| decimal(d, "action.process.ino"))
        .transpose()?;
    let file = match (dev, ino) {
        (Some(d), Some(i)) => Some((d, i)),
        (None, None) => None,
        _ => return Err("`action.process.dev` and `ino` must be given together".into()),
    };
    let injected = f
        .opt("injected")
        .map(|x| string(x, "action.process.injected").map(str::to_string))
        .transpose()?;
    let program = path(f.req("program")?, "action.process.program")?;
    let sha256 = f
        .opt("sha256")
        .map(|x| hash(x, "action.process.sha256"))
        .transpose()?;
    f.done()?;
    Ok(ProcessInfo {
        program,
        sha256,
        file,
        injected,
    })
}

fn decode_detail(op: FileOp, v: &Value<'_>) -> Result<OpDetail, String> {
    let mut f = Members::of(v, "action.detail")?;
    let d = match op {
        FileOp::Chmod | FileOp::Mkdir | FileOp::Mknod => {
            let m = string(f.req("mode")?, "action.detail.mode")?;
            let ok = (1..=6).contains(&m.len()) && m.bytes().all(|c| (b'0'..=b'7').contains(&c));
            let mode = u32::from_str_radix(m, 8)
                .ok()
                .filter(|_| ok)
                .ok_or("`action.detail.mode` must be an octal mode")?;
            OpDetail::Mode(mode)
        }
        FileOp::Chown => {
            let id = |x: Option<&Value<'_>>, k: &str| -> Result<Option<u32>, String> {
                x.map(|x| {
                    decimal(x, k).and_then(|n| {
                        u32::try_from(n).map_err(|_| format!("`{k}` is out of range"))
                    })
                })
                .transpose()
            };
            let gid = id(f.opt("gid"), "action.detail.gid")?;
            let uid = id(f.opt("uid"), "action.detail.uid")?;
            OpDetail::Owner { uid, gid }
        }
        FileOp::Symlink => OpDetail::Target(os(f.req("target")?, "action.detail.target")?),
        other => {
            return Err(format!(
                "`action.detail` is not recorded for operation {:?}",
                other.as_str()
            ))
        }
    };
    f.done()?;
    Ok(d)
}

fn decode_connect(
    mut f: Members<'_, '_>,
    procs: Option<&Processes>,
) -> Result<ConnectAction, String> {
    let op_s = string(f.req("op")?, "action.op")?;
    let op = NetOp::from_name(op_s).ok_or_else(|| format!("unknown connect op {op_s:?}"))?;
    let proto_s = string(f.req("protocol")?, "action.protocol")?;
    let protocol =
        Protocol::from_name(proto_s).ok_or_else(|| format!("unknown protocol {proto_s:?}"))?;
    let family = f
        .opt("family")
        .map(|x| string(x, "action.family"))
        .transpose()?;
    let target = match family {
        Some(fam @ ("inet" | "inet6")) => {
            let a = string(f.req("address")?, "action.address")?;
            let addr: std::net::IpAddr = a
                .parse()
                .map_err(|_| format!("`action.address` {a:?} is not an IP address"))?;
            if fam == "inet" && !addr.is_ipv4() {
                return Err("an `inet` action needs an IPv4 address".into());
            }
            let port = u16::try_from(decimal(f.req("port")?, "action.port")?)
                .map_err(|_| "`action.port` is not a port number".to_string())?;
            let family = if fam == "inet" {
                NetFamily::Inet
            } else {
                NetFamily::Inet6
            };
            NetTarget::Ip { family, addr, port }
        }
        Some("unix") => match (f.opt("path"), f.opt("abstract")) {
            (Some(p), None) => NetTarget::UnixPath(path(p, "action.path")?),
            (None, Some(a)) => NetTarget::UnixAbstract(bytes(a, "action.abstract")?),
            (None, None) => NetTarget::UnixUnnamed,
            (Some(_), Some(_)) => {
                return Err("a local socket has a path or an abstract name, not both".into())
            }
        },
        None if op == NetOp::Resolve => {
            NetTarget::Name(string(f.req("name")?, "action.name")?.to_string())
        }
        None => return Err("a `connect` action other than `resolve` needs a `family`".into()),
        Some(other) => return Err(format!("unknown family {other:?}")),
    };
    let names = match f.opt("names") {
        None => Vec::new(),
        Some(Value::Array(a)) => a
            .iter()
            .map(|n| string(n, "action.names").map(str::to_string))
            .collect::<Result<_, _>>()?,
        Some(_) => return Err("`action.names` must be an array of strings".into()),
    };
    let process = f
        .opt("process")
        .map(|p| decode_process(p, procs))
        .transpose()?;
    f.done()?;
    Ok(ConnectAction {
        op,
        protocol,
        target,
        names,
        process,
    })
}

/// The action recorded in a `decision` or `escalation` record's `action`
/// member.
pub fn decode_action(v: &Value<'_>) -> Result<Action, String> {
    decode_action_in(v, None)
}

/// [`decode_action`], resolving a format-2 reference to a `process`
/// record through `procs`.
fn decode_action_in(v: &Value<'_>, procs: Option<&Processes>) -> Result<Action, String> {
    let mut f = Members::of(v, "action")?;
    let kind = string(f.req("kind")?, "action.kind")?;
    let action = match kind {
        "exec" => {
            let argv = match (f.opt("argv"), procs) {
                (Some(Value::Array(a)), _) => Some(
                    a.iter()
                        .map(|x| os(x, "action.argv"))
                        .collect::<Result<_, _>>()?,
                ),
                (Some(_), _) => return Err("`action.argv` must be an array of byte strings".into()),
                // A format-2 decision's argv of its path alone.
                (None, Some(_)) => None,
                (None, None) => return Err("missing `argv` in `action`".into()),
            };
            let cwd = path(f.req("cwd")?, "action.cwd")?;
            let p = path(f.req("path")?, "action.path")?;
            let argv = argv.unwrap_or_else(|| vec![p.clone().into_os_string()]);
            let sha256 = f
                .opt("sha256")
                .map(|x| hash(x, "action.sha256"))
                .transpose()?;
            f.done()?;
            Action::Exec(ExecAction {
                path: p,
                argv,
                cwd,
                sha256,
            })
        }
        "open" => {
            let mut access = Access::empty();
            let listed = match (f.opt("access"), procs) {
                (Some(v), _) => Some(v),
                // A format-2 decision's plain open of `["read"]`.
                (None, Some(_)) => None,
                (None, None) => return Err("missing `access` in `action`".into()),
            };
            match listed {
                Some(Value::Array(a)) => {
                    for x in a {
                        let n = string(x, "action.access")?;
                        access |= Access::from_name(n)
                            .ok_or_else(|| format!("unknown access {n:?} in `action.access`"))?;
                    }
                }
                Some(_) => return Err("`action.access` must be an array of access names".into()),
                None => access = Access::READ,
            }
            let process_v = f.opt("process");
            let cwd = match (f.opt("cwd"), procs, process_v) {
                (Some(c), _, _) => path(c, "action.cwd")?,
                // Format 2: that of the opens of the process record named.
                (None, Some(procs), Some(r @ Value::String(_))) => caller(r, procs)?
                    .cwd
                    .clone()
                    .ok_or("`action.cwd` is missing and the process record named has none")?,
                (None, _, _) => return Err("missing `cwd` in `action`".into()),
            };
            // Absent in ledgers written before operations were recorded:
            // those recorded plain opens only.
            let op = match f.opt("op") {
                None => FileOp::Open,
                Some(x) => {
                    let n = string(x, "action.op")?;
                    FileOp::from_name(n)
                        .ok_or_else(|| format!("unknown operation {n:?} in `action.op`"))?
                }
            };
            if listed.is_none() && op != FileOp::Open {
                return Err("missing `access` in `action`".into());
            }
            let detail = f.opt("detail").map(|d| decode_detail(op, d)).transpose()?;
            if detail.is_none() && matches!(op, FileOp::Chmod | FileOp::Chown | FileOp::Symlink) {
                return Err(format!(
                    "`action.detail` is missing for operation {:?}",
                    op.as_str()
                ));
            }
            let p = path(f.req("path")?, "action.path")?;
            let process = process_v.map(|p| decode_process(p, procs)).transpose()?;
            f.done()?;
            Action::Open(OpenAction {
                path: p,
                access,
                cwd,
                process,
                op,
                detail,
            })
        }
        "connect" => Action::Connect(decode_connect(f, procs)?),
        "tool" => {
            // Absent when the asker gave no working directory.
            let cwd = f
                .opt("cwd")
                .map(|x| path(x, "action.cwd"))
                .transpose()?
                .unwrap_or_default();
            let input = f.req("input")?;
            let mut text = String::new();
            input
                .write_canonical(&mut text)
                .map_err(|e| format!("`action.input`: {e}"))?;
            let input = serde_json::from_str(&text)
                .map_err(|e| format!("`action.input` is not JSON: {e}"))?;
            let name = string(f.req("name")?, "action.name")?.to_string();
            f.done()?;
            Action::Tool(crate::action::ToolAction { name, input, cwd })
        }
        other => return Err(format!("unknown action kind {other:?}")),
    };
    Ok(action)
}

fn verdict(s: &str) -> Result<Verdict, String> {
    Ok(match s {
        "allow" => Verdict::Allow,
        "escalate" => Verdict::Escalate,
        "block" => Verdict::Block,
        other => return Err(format!("unknown verdict {other:?}")),
    })
}

fn outcome(s: &str) -> Result<Outcome, String> {
    Ok(match s {
        "allowed" => Outcome::Allowed,
        "refused" => Outcome::Refused,
        "killed" => Outcome::Killed,
        other => return Err(format!("unknown outcome {other:?}")),
    })
}

fn mode(s: &str) -> Result<Mode, String> {
    match s {
        "enforce" => Ok(Mode::Enforce),
        "observe" => Ok(Mode::Observe),
        other => Err(format!("unknown mode {other:?}")),
    }
}

/// A `decision` or `escalation` record as a [`Recorded`]; `Ok(None)` for
/// records of every other kind.
pub fn decode_record(v: &Value<'_>) -> Result<Option<Recorded>, String> {
    decode_record_in(v, None)
}

/// What reading a record needs from the records before it in its run: the
/// run's record format and mode, and (format 2) its `process` records.
/// Every reader of a ledger feeds each record to [`Context::observe`], in
/// file order, and decodes decisions with [`Context::decode_record`], so
/// that a format-2 record reads exactly as the format-1 record of the same
/// event would.
///
/// [`Context::observe`] also checks what a record may leave out or refer
/// to, failing closed: in format 1 nothing may be left out and no `process`
/// record or reference may appear; in format 2 a reference must name a
/// `process` record of the same run written before it, ids are unique in
/// a run, and a member left out must not be present with its default
/// value (one encoding per record).
#[derive(Debug, Clone)]
pub struct Context {
    format: u64,
    mode: Option<Mode>,
    processes: Processes,
}

impl Default for Context {
    fn default() -> Self {
        Context {
            format: 1,
            mode: None,
            processes: HashMap::new(),
        }
    }
}

/// The members of a decision record [`Context::observe`] checks.
#[derive(Default)]
struct DecisionMembers<'v, 'a> {
    action: Option<&'v Value<'a>>,
    loaded: Option<&'v Value<'a>>,
    matched: Option<&'v Value<'a>>,
    mode: Option<&'v Value<'a>>,
    note: Option<&'v Value<'a>>,
    outcome: Option<&'v Value<'a>>,
    reason: Option<&'v Value<'a>>,
    rule: Option<&'v Value<'a>>,
    stage: Option<&'v Value<'a>>,
    verdict: Option<&'v Value<'a>>,
    identity: Option<&'v Value<'a>>,
    map: Option<&'v Value<'a>>,
}

/// What of an action's form [`Context::observe`] checks, in one pass.
#[derive(Default)]
struct ActionForm<'v, 'a> {
    kind: Option<&'v str>,
    op: Option<&'v str>,
    access: Option<&'v Value<'a>>,
    cwd: bool,
    process: Option<&'v Value<'a>>,
    argv: Option<&'v Value<'a>>,
    path: Option<&'v Value<'a>>,
    sha256: Option<&'v Value<'a>>,
}

impl<'v, 'a> ActionForm<'v, 'a> {
    fn of(action: Option<&'v Value<'a>>) -> Self {
        let mut f = ActionForm::default();
        if let Some(Value::Object(m)) = action {
            for (k, x) in m {
                match k.as_ref() {
                    "kind" => f.kind = x.as_str(),
                    "op" => f.op = x.as_str(),
                    "access" => f.access = Some(x),
                    "cwd" => f.cwd = true,
                    "process" => f.process = Some(x),
                    "argv" => f.argv = Some(x),
                    "path" => f.path = Some(x),
                    "sha256" => f.sha256 = Some(x),
                    _ => {}
                }
            }
        }
        f
    }

    /// A form only a format-2 decision's own action may take: a reference
    /// to a `process` record, an open without `access` or `cwd`, an exec
    /// without `argv`.
    fn compact(&self) -> bool {
        matches!(self.process, Some(Value::String(_)))
            || (self.kind == Some("open") && (self.access.is_none() || !self.cwd))
            || (self.kind == Some("exec") && self.argv.is_none())
    }
}

/// Whether an action value names its caller's program by reference, or
/// leaves out an open's `access` or `cwd` or an exec's `argv`: forms only
/// a format-2 decision's own action may take.
fn refers(action: Option<&Value<'_>>) -> bool {
    action.is_some_and(|a| ActionForm::of(Some(a)).compact())
}

impl Context {
    pub fn new() -> Self {
        Self::default()
    }

    /// A context of a format-2 run of which nothing else is known: for
    /// reading a `process` record on its own (an inclusion proof's).
    pub fn for_process_records() -> Self {
        Context {
            format: 2,
            mode: None,
            processes: HashMap::new(),
        }
    }

    /// The record format of the current run (1 before any run header).
    pub fn format(&self) -> u64 {
        self.format
    }

    /// The caller's program a format-2 `process` record of the current run
    /// gave id `id`.
    pub fn process(&self, id: u64) -> Option<&ProcessInfo> {
        self.processes.get(&id).map(|c| &c.info)
    }

    /// Takes in one record (any kind), in file order: a run header starts a
    /// run's context, a `process` record adds to it. Errors are the rules
    /// of the run's format a record breaks (see the type's docs).
    pub fn observe(&mut self, v: &Value<'_>) -> Result<(), String> {
        let kind = v.get("kind").and_then(Value::as_str).unwrap_or("");
        // `prev` in base64 in a format-2 run but for the records that open
        // a run (`record::Prev`), in hex everywhere else.
        if let Some(p) = v.get("prev").and_then(Value::as_str) {
            let base64 = self.format >= 2 && !matches!(kind, "run" | "recovery");
            if (p.len() == super::record::PREV_BASE64_LEN) != base64 {
                return Err(if base64 {
                    "`prev` is in hex, which record format 2 writes in base64".into()
                } else if self.format >= 2 {
                    "`prev` of a run header or recovery record is in base64, which is written in hex".into()
                } else {
                    "`prev` is in base64 in a run of record format 1, which writes hex".into()
                });
            }
        }
        match kind {
            "run" => {
                self.format = match v.get("format") {
                    None => 1,
                    Some(Value::Number(n)) if *n == 2.0 => 2,
                    Some(_) => return Err("unknown record format".into()),
                };
                self.mode = Some(mode(v.get("mode").and_then(Value::as_str).unwrap_or(""))?);
                self.processes.clear();
            }
            "recovery" => {
                *self = Context::default();
            }
            "process" => {
                if self.format < 2 {
                    return Err("a `process` record in a run of record format 1".into());
                }
                let Value::Object(m) = v else {
                    return Err("a record must be an object".into());
                };
                let id = v
                    .get("id")
                    .map(|x| decimal(x, "id"))
                    .transpose()?
                    .ok_or("missing `id` in a `process` record")?;
                let own: Vec<_> = m
                    .iter()
                    .filter(|(k, _)| {
                        !matches!(k.as_ref(), "cwd" | "id" | "kind" | "prev" | "seq" | "time")
                    })
                    .cloned()
                    .collect();
                let info = decode_process(&Value::Object(own), None)?;
                let cwd = v.get("cwd").map(|c| path(c, "cwd")).transpose()?;
                if self.processes.insert(id, Caller { info, cwd }).is_some() {
                    return Err(format!(
                        "a second `process` record with id {id} in the same run"
                    ));
                }
            }
            "decision" => self.check_decision(v)?,
            "escalation" if refers(v.get("action")) => {
                return Err(
                    "an escalation's action refers to a `process` record or leaves out `access`, `cwd` or `argv`"
                        .into(),
                );
            }
            "intent" => {
                let judged = match v.get("judged") {
                    Some(Value::Array(a)) => a.iter().any(|j| refers(j.get("action"))),
                    _ => false,
                };
                if refers(v.get("action")) || judged {
                    return Err(
                        "an intent's action refers to a `process` record or leaves out `access`, `cwd` or `argv`"
                            .into(),
                    );
                }
            }
            _ => {}
        }
        Ok(())
    }

    fn check_decision(&self, v: &Value<'_>) -> Result<(), String> {
        // One pass over the members (this runs for every decision `verify`
        // reads).
        let Value::Object(members) = v else {
            return Err("a record must be an object".into());
        };
        let mut d = DecisionMembers::default();
        for (k, x) in members {
            match k.as_ref() {
                "action" => d.action = Some(x),
                "loaded" => d.loaded = Some(x),
                "matched" => d.matched = Some(x),
                "mode" => d.mode = Some(x),
                "note" => d.note = Some(x),
                "outcome" => d.outcome = Some(x),
                "reason" => d.reason = Some(x),
                "rule" => d.rule = Some(x),
                "stage" => d.stage = Some(x),
                "verdict" => d.verdict = Some(x),
                "identity" => d.identity = Some(x),
                "map" => d.map = Some(x),
                _ => {}
            }
        }
        if d.loaded.is_some() && ActionForm::of(d.loaded).compact() {
            return Err(
                "a decision's `loaded` refers to a `process` record or leaves out `access`, `cwd` or `argv`".into(),
            );
        }
        let a = ActionForm::of(d.action);
        if self.format < 2 {
            for (k, x) in [
                ("matched", d.matched),
                ("mode", d.mode),
                ("outcome", d.outcome),
                ("reason", d.reason),
                ("stage", d.stage),
                ("verdict", d.verdict),
            ] {
                if x.is_none() {
                    return Err(format!("missing `{k}` in a decision of record format 1"));
                }
            }
            if d.map.is_some() {
                return Err("`map` in a decision of record format 1".into());
            }
            if matches!(d.identity, Some(Value::String(_))) {
                return Err(
                    "an `identity` of record format 2 in a decision of record format 1".into(),
                );
            }
            if a.compact() {
                return Err("a decision of record format 1 refers to a `process` record or leaves out `access`, `cwd` or `argv`".into());
            }
            return Ok(());
        }
        let text = |x: Option<&Value<'_>>| x.and_then(Value::as_str).map(str::to_string);
        let default = |k: &str| {
            format!("`{k}` is written with its default value, which record format 2 leaves out")
        };
        if a.kind == Some("open") {
            if a.op == Some("open") {
                return Err(default("action.op"));
            }
            let read_only = matches!(a.access, Some(Value::Array(x)) if x.len() == 1 && x[0].as_str() == Some("read"));
            if a.op.is_none() && read_only {
                return Err(default("action.access"));
            }
        }
        if a.kind == Some("exec") {
            if let (Some(Value::Array(x)), Some(p)) = (a.argv, a.path) {
                if x.len() == 1 && &x[0] == p {
                    return Err(default("action.argv"));
                }
            }
        }
        // A code mapping's note is `"map":true`.
        if a.kind == Some("exec")
            && d.note.and_then(Value::as_str) == Some(super::read::CODE_MAP_NOTE)
        {
            return Err(
                "a code mapping's note is written in full, which record format 2 writes as `\"map\":true`"
                    .into(),
            );
        }
        if d.map.is_some() && (a.kind != Some("exec") || d.note.is_some()) {
            return Err("`map` stands only in a decision of an exec action, without `note`".into());
        }
        // An identity whose hash is its action's is `"DEV:INO"`.
        if let Some(Value::Object(i)) = d.identity {
            let own = i.iter().find(|(k, _)| k == "sha256").map(|(_, x)| x);
            let action = if a.kind == Some("exec") {
                a.sha256
            } else {
                None
            };
            if own == action {
                return Err(
                    "`identity` is written as an object with the hash of its action, which record format 2 writes as \"DEV:INO\""
                        .into(),
                );
            }
        }
        if let Some(Value::Object(_)) = a.process {
            return Err(
                "`action.process` is written in full, which record format 2 writes as a process record"
                    .into(),
            );
        }
        if let Some(r @ Value::String(_)) = a.process {
            let c = caller(r, &self.processes)?;
            // An open naming a process record has that record's cwd.
            if a.kind == Some("open") {
                if a.cwd {
                    return Err(default("action.cwd"));
                }
                if c.cwd.is_none() {
                    return Err("an open names a process record without `cwd`".into());
                }
            }
        }
        if matches!(d.matched, Some(Value::Array(x)) if x.is_empty()) {
            return Err(default("matched"));
        }
        if let (Some(m), Some(run)) = (d.mode.and_then(Value::as_str), self.mode) {
            if m == run.as_str() {
                return Err(default("mode"));
            }
        }
        if d.stage.and_then(Value::as_str) == Some("request") {
            return Err(default("stage"));
        }
        let verdict_s = d.verdict.and_then(Value::as_str).unwrap_or("allow");
        if d.verdict.is_some() && verdict_s == "allow" {
            return Err(default("verdict"));
        }
        if verdict_s == "allow" && d.outcome.and_then(Value::as_str) == Some("allowed") {
            return Err(default("outcome"));
        }
        if let (Some(reason), None) = (d.reason.and_then(Value::as_str), d.rule) {
            let note = text(d.note);
            if reason
                == default_reason_of(a.kind.unwrap_or(""), verdict(verdict_s)?, note.as_deref())?
            {
                return Err(default("reason"));
            }
        }
        Ok(())
    }

    /// A format-2 decision record of this context's run written out as
    /// format 1 writes the same event: every member present, the caller's
    /// program in full (`seq`, `prev` and `time` as in the record; the line
    /// is not in the chain). `Ok(None)` for every other record, which reads
    /// the same in both formats, and for decisions of format-1 runs. For
    /// tools that read records as plain JSON.
    pub fn expanded(&self, v: &Value<'_>) -> Result<Option<String>, String> {
        if self.format < 2 || v.get("kind").and_then(Value::as_str) != Some("decision") {
            return Ok(None);
        }
        let Some(r) = self.decode_record(v)? else {
            return Ok(None);
        };
        // Format 1 writes `prev` in hex.
        let prev = v
            .get("prev")
            .map(|p| {
                p.as_str()
                    .and_then(super::record::prev_hash)
                    .map(|hash| super::record::Prev {
                        hash,
                        base64: false,
                    })
                    .ok_or_else(|| "`prev` is not a hash".to_string())
            })
            .transpose()?;
        let (Some(stage), Some(outcome), Some(mode)) = (r.stage, r.outcome, r.mode) else {
            return Err("a decision without its stage, outcome or mode".into());
        };
        let d = super::record::DecisionEntry {
            pid: r.pid,
            ppid: r.ppid,
            action: &r.action,
            loaded: r.loaded.as_ref(),
            stage,
            verdict: r.verdict,
            outcome,
            rule: r.rule.clone(),
            matched: r.matched.clone(),
            reason: r.reason.clone(),
            mode,
            identity: r.identity,
            note: r.note.clone(),
        };
        let mut out = String::new();
        super::record::encode_decision(r.seq, prev, r.time_ns, &d, None, &mut out)?;
        Ok(Some(out))
    }

    /// [`decode_record`] for a record of this context's run: what format 2
    /// left out is put back, references are resolved.
    pub fn decode_record(&self, v: &Value<'_>) -> Result<Option<Recorded>, String> {
        decode_record_in(v, Some(self))
    }
}

/// [`super::record::default_reason`] from the action's kind name.
fn default_reason_of(kind: &str, v: Verdict, note: Option<&str>) -> Result<String, String> {
    use crate::action::ActionKind;
    let k = match kind {
        "exec" => ActionKind::Exec,
        "open" => ActionKind::Open,
        "connect" => ActionKind::Connect,
        "tool" => ActionKind::Tool,
        other => return Err(format!("unknown action kind {other:?}")),
    };
    if k == ActionKind::Exec && note.is_some_and(|n| n.starts_with(super::read::CODE_MAP_NOTE)) {
        return Ok(crate::policy::CODE_MAP_DEFAULT_REASON.to_string());
    }
    Ok(crate::policy::default_reason(k, v))
}

fn decode_record_in(v: &Value<'_>, ctx: Option<&Context>) -> Result<Option<Recorded>, String> {
    let kind = v
        .get("kind")
        .and_then(Value::as_str)
        .ok_or("a record needs a string `kind`")?;
    let record = match kind {
        "decision" => RecordKind::Decision,
        "escalation" => RecordKind::Escalation,
        _ => return Ok(None),
    };
    let mut f = Members::of(v, "record")?;
    f.req("kind")?;
    f.opt("prev");
    let seq = decimal(f.req("seq")?, "seq")?;
    let time_ns = decimal128(f.req("time")?, "time")?;
    let pid = int(f.req("pid")?, "pid")?;
    let ppid = int(f.req("ppid")?, "ppid")?;
    // Format 2 (a context of a format-2 run): members left out take their
    // defaults (`record::DecisionDefaults`), `"process":"ID"` is resolved.
    let ctx = ctx.filter(|c| c.format >= 2);
    let procs = match record {
        RecordKind::Decision => ctx.map(|c| &c.processes),
        RecordKind::Escalation => None,
    };
    let action = decode_action_in(f.req("action")?, procs)?;
    let reason = match (f.opt("reason"), ctx, record) {
        (Some(r), _, _) => Some(string(r, "reason")?.to_string()),
        (None, Some(_), RecordKind::Decision) => None,
        (None, _, _) => return Err("missing `reason` in `record`".into()),
    };
    let r = match record {
        RecordKind::Decision => {
            let identity = match (f.opt("identity"), ctx) {
                (None, _) => None,
                // Format 2: `"DEV:INO"`, the hash that of the action.
                (Some(Value::String(t)), Some(_)) => {
                    let (dev, ino) = super::record::identity_pair(t)
                        .ok_or("`identity` must be an object or \"DEV:INO\"")?;
                    Some(FileIdentity {
                        dev,
                        ino,
                        sha256: super::record::identity_hash(&action),
                    })
                }
                (Some(iv), _) => {
                    let mut i = Members::of(iv, "identity")?;
                    let dev = decimal(i.req("dev")?, "identity.dev")?;
                    let ino = decimal(i.req("ino")?, "identity.ino")?;
                    let sha256 = i
                        .opt("sha256")
                        .map(|x| hash(x, "identity.sha256"))
                        .transpose()?;
                    i.done()?;
                    Some(FileIdentity { dev, ino, sha256 })
                }
            };
            let omitted = |k: &str| match ctx {
                Some(_) => Ok(()),
                None => Err(format!("missing `{k}` in `record`")),
            };
            let matched = match f.opt("matched") {
                Some(Value::Array(a)) => a
                    .iter()
                    .map(|x| string(x, "matched").map(str::to_string))
                    .collect::<Result<_, _>>()?,
                Some(_) => return Err("`matched` must be an array of strings".into()),
                None => omitted("matched").map(|_| Vec::new())?,
            };
            let stage = match f.opt("stage") {
                Some(x) => match string(x, "stage")? {
                    "request" => Stage::Request,
                    "confirm" => Stage::Confirm,
                    other => return Err(format!("unknown stage {other:?}")),
                },
                None => omitted("stage").map(|_| Stage::Request)?,
            };
            let verdict = match f.opt("verdict") {
                Some(x) => verdict(string(x, "verdict")?)?,
                None => omitted("verdict").map(|_| Verdict::Allow)?,
            };
            let outcome = match f.opt("outcome") {
                Some(x) => outcome(string(x, "outcome")?)?,
                None if verdict == Verdict::Allow => {
                    omitted("outcome").map(|_| Outcome::Allowed)?
                }
                None => return Err("missing `outcome` in `record`".into()),
            };
            let mode = match (f.opt("mode"), ctx.and_then(|c| c.mode)) {
                (Some(x), _) => mode(string(x, "mode")?)?,
                (None, Some(run)) => run,
                (None, None) => return Err("missing `mode` in `record`".into()),
            };
            let rule = f
                .opt("rule")
                .map(|x| string(x, "rule").map(str::to_string))
                .transpose()?;
            let note = f
                .opt("note")
                .map(|x| string(x, "note").map(str::to_string))
                .transpose()?;
            // Format 2: a code mapping's note.
            let note = match (f.opt("map"), ctx, note) {
                (None, _, note) => note,
                (Some(Value::Bool(true)), Some(_), None) if matches!(action, Action::Exec(_)) => {
                    Some(super::read::CODE_MAP_NOTE.to_string())
                }
                (Some(_), _, _) => {
                    return Err(
                        "`map` stands only in a format-2 decision of an exec action, as `true` and without `note`"
                            .into(),
                    )
                }
            };
            let reason = match (reason, &rule) {
                (Some(r), _) => r,
                (None, None) => super::record::default_reason(&action, verdict, note.as_deref()),
                (None, Some(_)) => return Err("missing `reason` in `record`".into()),
            };
            let loaded = f.opt("loaded").map(decode_action).transpose()?;
            if loaded
                .as_ref()
                .is_some_and(|l| !matches!(l, Action::Exec(_)))
            {
                return Err("`loaded` must be an exec action".into());
            }
            Recorded {
                record,
                seq,
                time_ns,
                pid,
                ppid,
                action,
                loaded,
                verdict,
                outcome: Some(outcome),
                stage: Some(stage),
                rule,
                matched,
                reason,
                mode: Some(mode),
                identity,
                note,
                syscall: None,
                request: None,
            }
        }
        RecordKind::Escalation => {
            f.req("deadline")?;
            Recorded {
                record,
                seq,
                time_ns,
                pid,
                ppid,
                action,
                loaded: None,
                verdict: Verdict::Escalate,
                outcome: None,
                stage: None,
                rule: Some(string(f.req("rule")?, "rule")?.to_string()),
                matched: Vec::new(),
                reason: reason.unwrap_or_default(),
                mode: None,
                identity: None,
                note: None,
                syscall: Some(string(f.req("syscall")?, "syscall")?.to_string()),
                request: Some(decimal(f.req("request")?, "request")?),
            }
        }
    };
    f.done()?;
    Ok(Some(r))
}

/// A run header (`kind: run`); `Ok(None)` for records of every other kind.
pub fn decode_run(v: &Value<'_>) -> Result<Option<RunRecord>, String> {
    if v.get("kind").and_then(Value::as_str) != Some("run") {
        return Ok(None);
    }
    let mut f = Members::of(v, "run")?;
    for k in [
        "kind",
        "prev",
        "format",
        "host_key",
        "host_fingerprint",
        "epoch_key",
        "prev_run",
    ] {
        f.opt(k);
    }
    let seq = decimal(f.req("seq")?, "seq")?;
    let run_id = string(f.req("run")?, "run")?.to_string();
    let time_ns = decimal128(f.req("time")?, "time")?;
    let version = string(f.req("version")?, "version")?.to_string();
    let command = match f.req("command")? {
        Value::Array(a) => a
            .iter()
            .map(|x| os(x, "command"))
            .collect::<Result<_, _>>()?,
        _ => return Err("`command` must be an array of byte strings".into()),
    };
    let cwd = path(f.req("cwd")?, "cwd")?;
    let workspace = f
        .opt("workspace")
        .map(|x| path(x, "workspace"))
        .transpose()?;
    let policy_sha256 = hash(f.req("policy_sha256")?, "policy_sha256")?;
    let policy_path = f
        .opt("policy_path")
        .map(|x| path(x, "policy_path"))
        .transpose()?;
    let mode = mode(string(f.req("mode")?, "mode")?)?;
    let ci = match f.req("ci")? {
        Value::Object(m) => m
            .iter()
            .map(|(k, v)| string(v, "ci").map(|s| (k.to_string(), s.to_string())))
            .collect::<Result<_, _>>()?,
        _ => return Err("`ci` must be an object of strings".into()),
    };
    let vars = match f.opt("vars") {
        None => None,
        Some(Value::Object(m)) => Some(
            m.iter()
                .map(|(k, v)| os(v, "vars").map(|s| (k.to_string(), s)))
                .collect::<Result<_, _>>()?,
        ),
        Some(_) => return Err("`vars` must be an object of byte strings".into()),
    };
    let policy_layers = match f.opt("policy_layers") {
        None => Vec::new(),
        Some(v) => super::record::policy_layers(v)?,
    };
    f.done()?;
    Ok(Some(RunRecord {
        seq,
        run_id,
        time_ns,
        version,
        command,
        cwd,
        workspace,
        policy_sha256,
        policy_path,
        mode,
        ci,
        vars,
        policy_layers,
    }))
}

/// One ledger line (canonical JSON) decoded as a recorded action; `Ok(None)`
/// for lines of other kinds.
pub fn decode_line(line: &str) -> Result<Option<Recorded>, String> {
    let v = super::jcs::parse(line, super::jcs::Mode::Strict).map_err(|e| e.to_string())?;
    decode_record(&v)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ledger::jcs;
    use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

    fn round_trip(a: &Action) -> Action {
        let text = Value::Object(super::super::record::encode_action(a))
            .to_canonical()
            .unwrap();
        let v = jcs::parse(&text, jcs::Mode::Strict).unwrap();
        decode_action(&v).unwrap_or_else(|e| panic!("{e}: {text}"))
    }

    fn bad_bytes() -> OsString {
        OsStr::from_bytes(b"caf\xe9 \"x\"").to_os_string()
    }

    fn process() -> ProcessInfo {
        ProcessInfo {
            program: PathBuf::from("/usr/bin/python3.11"),
            sha256: Some([7; 32]),
            file: Some((2049, 1234567)),
            injected: Some("LD_PRELOAD set".into()),
        }
    }

    fn open(op: FileOp, detail: Option<OpDetail>, access: Access) -> Action {
        Action::Open(OpenAction {
            path: PathBuf::from(bad_bytes()),
            access,
            cwd: PathBuf::from("/w"),
            process: Some(process()),
            op,
            detail,
        })
    }

    #[test]
    fn every_exec_round_trips() {
        for sha256 in [None, Some([0xab; 32])] {
            let a = Action::Exec(ExecAction {
                path: PathBuf::from("/usr/bin/rm"),
                argv: vec!["rm".into(), "-rf".into(), bad_bytes(), "".into()],
                cwd: PathBuf::from(bad_bytes()),
                sha256,
            });
            assert_eq!(round_trip(&a), a);
        }
    }

    #[test]
    fn every_file_operation_round_trips() {
        let all = Access::ALL.iter().fold(Access::empty(), |a, (f, _)| a | *f);
        for op in FileOp::ALL {
            let details: Vec<Option<OpDetail>> = match op {
                FileOp::Chmod => vec![Some(OpDetail::Mode(0o4755))],
                FileOp::Mkdir => vec![None, Some(OpDetail::Mode(0o777))],
                FileOp::Mknod => vec![None, Some(OpDetail::Mode(0o010644))],
                FileOp::Chown => vec![
                    Some(OpDetail::Owner {
                        uid: Some(0),
                        gid: None,
                    }),
                    Some(OpDetail::Owner {
                        uid: None,
                        gid: Some(4_000_000_000),
                    }),
                    Some(OpDetail::Owner {
                        uid: None,
                        gid: None,
                    }),
                ],
                FileOp::Symlink => vec![Some(OpDetail::Target(bad_bytes()))],
                _ => vec![None],
            };
            for d in details {
                for access in [Access::empty(), Access::READ, all] {
                    let a = open(op, d.clone(), access);
                    assert_eq!(round_trip(&a), a, "{op:?}");
                }
            }
        }
        // Without a process, and a process with nothing but its program.
        let mut a = open(FileOp::Open, None, Access::WRITE | Access::CREATE);
        if let Action::Open(o) = &mut a {
            o.process = None;
        }
        assert_eq!(round_trip(&a), a);
        if let Action::Open(o) = &mut a {
            o.process = Some(ProcessInfo {
                program: PathBuf::from(bad_bytes()),
                sha256: None,
                file: None,
                injected: None,
            });
        }
        assert_eq!(round_trip(&a), a);
    }

    #[test]
    fn every_network_action_round_trips() {
        let targets = [
            NetTarget::Ip {
                family: NetFamily::Inet,
                addr: IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)),
                port: 443,
            },
            NetTarget::Ip {
                family: NetFamily::Inet6,
                addr: IpAddr::V6(Ipv6Addr::LOCALHOST),
                port: 0,
            },
            // An IPv4-mapped address on an IPv6 socket.
            NetTarget::Ip {
                family: NetFamily::Inet6,
                addr: IpAddr::V4(Ipv4Addr::new(127, 0, 0, 1)),
                port: 65535,
            },
            NetTarget::UnixPath(PathBuf::from(bad_bytes())),
            NetTarget::UnixAbstract(b"\xff\x00abs".to_vec()),
            NetTarget::UnixAbstract(b"plain".to_vec()),
            NetTarget::UnixUnnamed,
        ];
        for (op, _) in NetOp::ALL {
            for (protocol, _) in Protocol::ALL {
                for t in &targets {
                    for names in [vec![], vec!["a.example".to_string(), "b.example".into()]] {
                        for process in [None, Some(process())] {
                            let a = Action::Connect(ConnectAction {
                                op,
                                protocol,
                                target: t.clone(),
                                names: names.clone(),
                                process,
                            });
                            assert_eq!(round_trip(&a), a);
                        }
                    }
                }
            }
        }
        let q = Action::Connect(ConnectAction {
            op: NetOp::Resolve,
            protocol: Protocol::Udp,
            target: NetTarget::Name("pypi.org".into()),
            names: vec![],
            process: None,
        });
        assert_eq!(round_trip(&q), q);
    }

    #[test]
    fn records_written_by_the_writer_decode() {
        use crate::ledger::{
            DecisionEntry, EscalationEntry, HostKey, LedgerWriter, LockMode, RunEnd, RunHeader,
            SyncPolicy, WriterOptions,
        };
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("l.jsonl");
        let key =
            HostKey::from_signing_key("lexecon", ed25519_dalek::SigningKey::from_bytes(&[3u8; 32]))
                .unwrap();
        let opts = WriterOptions {
            checkpoint_every: 100,
            checkpoint_interval: std::time::Duration::from_secs(3600),
            sync: SyncPolicy::Never,
            lock: LockMode::Fail,
        };
        let mut w = LedgerWriter::open(&path, key, opts).unwrap();
        let vars = BTreeMap::from([
            ("HOME".to_string(), OsString::from("/home/u")),
            ("TMPDIR".to_string(), bad_bytes()),
        ]);
        let layers = vec![
            crate::ledger::PolicyLayer {
                path: PathBuf::from(bad_bytes()),
                sha256: [7; 32],
            },
            crate::ledger::PolicyLayer {
                path: "builtin:default".into(),
                sha256: [8; 32],
            },
        ];
        w.begin_run(RunHeader {
            command: vec!["agent".into(), bad_bytes()],
            cwd: "/w".into(),
            workspace: Some("/w".into()),
            policy_sha256: [9; 32],
            policy_path: Some("p.yaml".into()),
            mode: Mode::Observe,
            ci: BTreeMap::new(),
            vars: Some(vars.clone()),
            policy_layers: layers.clone(),
        })
        .unwrap();
        let a = open(FileOp::Chmod, Some(OpDetail::Mode(0o600)), Access::WRITE);
        let loaded = Action::Exec(ExecAction {
            path: "/usr/bin/true".into(),
            argv: vec!["true".into()],
            cwd: "/".into(),
            sha256: None,
        });
        let identity = Some(FileIdentity {
            dev: 1,
            ino: 1 << 60,
            sha256: Some([4; 32]),
        });
        let d = DecisionEntry {
            pid: 10,
            ppid: 9,
            action: &a,
            loaded: Some(&loaded),
            stage: Stage::Confirm,
            verdict: Verdict::Block,
            outcome: Outcome::Allowed,
            rule: Some("r".into()),
            matched: vec!["q".into(), "r".into()],
            reason: "why".into(),
            mode: Mode::Observe,
            identity,
            note: Some("observe mode: would have been blocked".into()),
        };
        let seq = w.append_decision(&d).unwrap();
        let eseq = w
            .append_escalation(&EscalationEntry {
                request: 7,
                pid: 11,
                ppid: 10,
                syscall: "openat",
                action: &a,
                rule: "ask",
                reason: "a human decides",
                deadline_ns: 1,
            })
            .unwrap();
        w.end_run(RunEnd::default()).unwrap();
        drop(w);
        let text = std::fs::read_to_string(&path).unwrap();
        let mut got = Vec::new();
        let mut runs = Vec::new();
        let mut ctx = Context::new();
        for line in text.lines() {
            let v = jcs::parse(line, jcs::Mode::Strict).unwrap();
            ctx.observe(&v).unwrap();
            if let Some(r) = decode_run(&v).unwrap() {
                runs.push(r);
            }
            if let Some(r) = ctx.decode_record(&v).unwrap() {
                got.push(r);
            }
        }
        assert_eq!(runs.len(), 1);
        assert_eq!(runs[0].vars.as_ref(), Some(&vars));
        assert_eq!(runs[0].policy_layers, layers);
        // A malformed list is refused by the decoder and the record check.
        let header = text.lines().next().unwrap();
        for bad in [
            r#""policy_layers":[]"#,
            r#""policy_layers":[{"path":"p"}]"#,
            r#""policy_layers":[{"path":"p","sha256":"00","x":1}]"#,
            r#""policy_layers":"p""#,
        ] {
            let start = header.find(r#""policy_layers":"#).unwrap();
            let end = header[start..].find(r#","policy_path""#).unwrap() + start;
            let line = format!("{}{bad}{}", &header[..start], &header[end..]);
            let v = jcs::parse(&line, jcs::Mode::Strict).unwrap();
            assert!(decode_run(&v).is_err(), "{bad}");
            let pl = v.get("policy_layers").unwrap();
            assert!(crate::ledger::record::policy_layers(pl).is_err(), "{bad}");
        }
        assert_eq!(runs[0].workspace, Some(PathBuf::from("/w")));
        assert_eq!(runs[0].command[1], bad_bytes());
        assert_eq!(got.len(), 2);
        let r = &got[0];
        assert_eq!(r.seq, seq);
        assert_eq!(r.record, RecordKind::Decision);
        assert_eq!(r.action, a);
        assert_eq!(r.loaded.as_ref(), Some(&loaded));
        assert_eq!((r.pid, r.ppid), (10, 9));
        assert_eq!(r.stage, Some(Stage::Confirm));
        assert_eq!(r.verdict, Verdict::Block);
        assert_eq!(r.outcome, Some(Outcome::Allowed));
        assert_eq!(r.rule.as_deref(), Some("r"));
        assert_eq!(r.matched, vec!["q".to_string(), "r".into()]);
        assert_eq!(r.mode, Some(Mode::Observe));
        assert_eq!(r.identity, identity);
        assert_eq!(r.note.as_deref(), d.note.as_deref());
        let e = &got[1];
        assert_eq!(e.seq, eseq.0);
        assert_eq!(e.record, RecordKind::Escalation);
        assert_eq!(e.action, a);
        assert_eq!(e.verdict, Verdict::Escalate);
        assert_eq!(e.rule.as_deref(), Some("ask"));
        assert_eq!(e.syscall.as_deref(), Some("openat"));
        assert_eq!(e.request, Some(7));
    }

    /// The same events written in record format 1 and in format 2: every
    /// decision and escalation reads back identical (but for its `seq`,
    /// format 2 having `process` records in between), and both verify.
    fn write_both(dir: &std::path::Path) -> (PathBuf, PathBuf) {
        use crate::action::{ConnectAction, NetFamily, NetOp, NetTarget, Protocol};
        use crate::ledger::{
            DecisionEntry, EscalationEntry, HostKey, LedgerWriter, LockMode, RunEnd, RunHeader,
            SyncPolicy, WriterOptions,
        };
        let other = ProcessInfo {
            program: "/usr/bin/sh".into(),
            sha256: None,
            file: None,
            injected: None,
        };
        let open_by = |p: Option<ProcessInfo>, cwd: &str| {
            Action::Open(OpenAction {
                path: "/etc/hosts".into(),
                access: Access::READ,
                cwd: cwd.into(),
                process: p,
                op: FileOp::Open,
                detail: None,
            })
        };
        let connect = Action::Connect(ConnectAction {
            op: NetOp::Connect,
            protocol: Protocol::Tcp,
            target: NetTarget::Ip {
                family: NetFamily::Inet,
                addr: IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)),
                port: 443,
            },
            names: vec!["a.example".into()],
            process: Some(process()),
        });
        let exec = Action::Exec(ExecAction {
            path: "/usr/bin/true".into(),
            argv: vec!["true".into()],
            cwd: "/w".into(),
            sha256: Some([5; 32]),
        });
        // A code mapping: argv its path, a hash known.
        let mapped = Action::Exec(ExecAction {
            path: "/usr/lib/libx.so".into(),
            argv: vec!["/usr/lib/libx.so".into()],
            cwd: "/w".into(),
            sha256: Some([6; 32]),
        });
        let actions = [
            mapped,
            open_by(Some(process()), "/w"),
            open_by(Some(process()), "/w"),
            open_by(Some(other.clone()), "/w"),
            open_by(None, "/"),
            open(FileOp::Chmod, Some(OpDetail::Mode(0o600)), Access::WRITE),
            connect,
            exec,
        ];
        let default = |a: &Action, v: Verdict| crate::policy::default_reason(a.kind(), v);
        let mut out = Vec::new();
        for format in [1, 2] {
            let path = dir.join(format!("f{format}.jsonl"));
            let key = HostKey::from_signing_key(
                "lexecon",
                ed25519_dalek::SigningKey::from_bytes(&[3u8; 32]),
            )
            .unwrap();
            let opts = WriterOptions {
                checkpoint_every: 5,
                checkpoint_interval: std::time::Duration::from_secs(3600),
                sync: SyncPolicy::Never,
                lock: LockMode::Fail,
            };
            let mut w = LedgerWriter::open(&path, key, opts)
                .unwrap()
                .with_format(format)
                .unwrap();
            // Two runs: ids and the process table start again in each.
            for (run, mode) in [Mode::Enforce, Mode::Observe].into_iter().enumerate() {
                w.begin_run(RunHeader {
                    command: vec!["agent".into()],
                    cwd: "/w".into(),
                    workspace: None,
                    policy_sha256: [9; 32],
                    policy_path: None,
                    mode,
                    ci: BTreeMap::new(),
                    vars: None,
                    policy_layers: Vec::new(),
                })
                .unwrap();
                let mut t = 1_000u128 * (run as u128 + 1);
                for a in &actions {
                    for (i, (stage, verdict, outcome, rule, matched, reason, dmode, note)) in [
                        // Every default at once.
                        (
                            Stage::Request,
                            Verdict::Allow,
                            Outcome::Allowed,
                            None,
                            vec![],
                            default(a, Verdict::Allow),
                            mode,
                            None,
                        ),
                        // None of them.
                        (
                            Stage::Confirm,
                            Verdict::Block,
                            Outcome::Refused,
                            Some("r"),
                            vec!["r".to_string()],
                            "custom".to_string(),
                            Mode::Observe,
                            None,
                        ),
                        (
                            Stage::Request,
                            Verdict::Block,
                            Outcome::Killed,
                            None,
                            vec![],
                            default(a, Verdict::Block),
                            Mode::Enforce,
                            None,
                        ),
                        // The default reason of another verdict is not the default.
                        (
                            Stage::Request,
                            Verdict::Allow,
                            Outcome::Allowed,
                            None,
                            vec![],
                            default(a, Verdict::Block),
                            mode,
                            None,
                        ),
                        (
                            Stage::Request,
                            Verdict::Escalate,
                            Outcome::Allowed,
                            Some("ask"),
                            vec!["ask".into(), "x".into()],
                            "a human said yes".into(),
                            mode,
                            Some("allowed by request 1".to_string()),
                        ),
                        // A code mapping's own default reason.
                        (
                            Stage::Request,
                            Verdict::Allow,
                            Outcome::Allowed,
                            None,
                            vec![],
                            crate::policy::CODE_MAP_DEFAULT_REASON.to_string(),
                            mode,
                            Some(format!("{} (mmap)", crate::ledger::read::CODE_MAP_NOTE)),
                        ),
                        // A code mapping's note exactly (`"map":true`).
                        (
                            Stage::Request,
                            Verdict::Allow,
                            Outcome::Allowed,
                            None,
                            vec![],
                            crate::policy::CODE_MAP_DEFAULT_REASON.to_string(),
                            mode,
                            Some(crate::ledger::read::CODE_MAP_NOTE.to_string()),
                        ),
                    ]
                    .into_iter()
                    .enumerate()
                    {
                        t += 1;
                        let d = DecisionEntry {
                            pid: 10 + i as i32,
                            ppid: 9,
                            action: a,
                            loaded: None,
                            stage,
                            verdict,
                            outcome,
                            rule: rule.map(str::to_string),
                            matched,
                            reason,
                            mode: dmode,
                            // The action's hash (`"DEV:INO"` in format
                            // 2), none, or another.
                            identity: Some(FileIdentity {
                                dev: 1,
                                ino: 2,
                                sha256: match i % 3 {
                                    0 => crate::ledger::record::identity_hash(a),
                                    1 => None,
                                    _ => Some([7; 32]),
                                },
                            }),
                            note,
                        };
                        w.append_decision_at(&d, t).unwrap();
                    }
                }
                let esc = w
                    .append_escalation(&EscalationEntry {
                        request: 7,
                        pid: 11,
                        ppid: 10,
                        syscall: "openat",
                        action: &actions[1],
                        rule: "ask",
                        reason: "a human decides",
                        deadline_ns: 1,
                    })
                    .unwrap();
                w.append_resolution(&crate::ledger::ResolutionEntry {
                    request: 7,
                    escalation: esc.0,
                    outcome: Outcome::Refused,
                    by: "timeout",
                    peer: None,
                    scope: "once",
                    receipt: None,
                })
                .unwrap();
                w.end_run(RunEnd::default()).unwrap();
            }
            out.push(path);
        }
        (out.remove(0), out.remove(0))
    }

    fn read_all(path: &std::path::Path) -> Vec<Recorded> {
        let text = std::fs::read_to_string(path).unwrap();
        let mut ctx = Context::new();
        let mut got = Vec::new();
        for line in text.lines() {
            let v = jcs::parse(line, jcs::Mode::Strict).unwrap();
            ctx.observe(&v).unwrap();
            if let Some(mut r) = ctx.decode_record(&v).unwrap() {
                r.seq = 0;
                if r.record == RecordKind::Escalation {
                    // Written at the time it is written.
                    r.time_ns = 0;
                }
                got.push(r);
            }
        }
        got
    }

    #[test]
    fn format_2_reads_back_exactly_as_format_1() {
        let dir = tempfile::tempdir().unwrap();
        let (f1, f2) = write_both(dir.path());
        let (r1, r2) = (read_all(&f1), read_all(&f2));
        assert_eq!(r1.len(), 2 * (8 * 7 + 1));
        assert_eq!(r1, r2);
        let key = ed25519_dalek::SigningKey::from_bytes(&[3u8; 32]).verifying_key();
        for f in [&f1, &f2] {
            let report = crate::ledger::verify_file(f, Some(&key)).unwrap();
            assert!(report.is_valid(), "{}: {:?}", f.display(), report.problems);
        }
        let t1 = std::fs::read_to_string(&f1).unwrap();
        let t2 = std::fs::read_to_string(&f2).unwrap();
        // Format 1 has no process records and no header `format`.
        assert!(!t1.contains(r#""kind":"process""#) && !t1.contains(r#""format""#));
        // Per run: python3's opens in /w, sh's opens in /w, python3's
        // connect (no cwd).
        assert_eq!(t2.matches(r#""kind":"process""#).count(), 6);
        assert!(t2.len() * 10 < t1.len() * 9, "{} vs {}", t2.len(), t1.len());
        // Written out as format 1, a format-2 decision is the format-1 line
        // of the same event (but for `seq` and `prev`).
        let strip = |l: &str| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            let mut o = v.as_object().unwrap().clone();
            o.remove("seq");
            o.remove("prev");
            o
        };
        let mut ctx = Context::new();
        let mut expanded = Vec::new();
        for line in t2.lines() {
            let v = jcs::parse(line, jcs::Mode::Strict).unwrap();
            ctx.observe(&v).unwrap();
            if let Some(l) = ctx.expanded(&v).unwrap() {
                expanded.push(strip(&l));
            }
        }
        let originals: Vec<_> = t1
            .lines()
            .filter(|l| l.contains(r#""kind":"decision""#))
            .map(strip)
            .collect();
        assert_eq!(expanded.len(), 2 * 8 * 7);
        assert_eq!(expanded, originals);
        // The stateless decoder reads format 1 only: a reference needs its run.
        let line = t2.lines().find(|l| l.contains(r#""process":"1""#)).unwrap();
        assert!(decode_line(line).is_err());
    }

    /// Breaks the rules of format 2 in a line of `text` and returns the first
    /// error the context finds reading the result.
    fn context_error(text: &str, from: &str, to: &str, nth: usize) -> Option<String> {
        let mut ctx = Context::new();
        let mut seen = 0;
        for line in text.lines() {
            let line = if line.contains(from) {
                seen += 1;
                if seen == nth {
                    line.replacen(from, to, 1)
                } else {
                    line.to_string()
                }
            } else {
                line.to_string()
            };
            let v = jcs::parse(&line, jcs::Mode::Lenient).unwrap();
            if let Err(e) = crate::ledger::record::parse(&v) {
                return Some(e);
            }
            if let Err(e) = ctx
                .observe(&v)
                .and_then(|_| ctx.decode_record(&v).map(|_| ()))
            {
                return Some(e);
            }
        }
        None
    }

    #[test]
    fn format_2_rules_fail_closed() {
        let dir = tempfile::tempdir().unwrap();
        let (f1, f2) = write_both(dir.path());
        let t1 = std::fs::read_to_string(&f1).unwrap();
        let t2 = std::fs::read_to_string(&f2).unwrap();
        assert_eq!(context_error(&t2, "@", "@", 1), None);
        assert_eq!(context_error(&t1, "@", "@", 1), None);
        let bad = |text: &str, from: &str, to: &str, nth: usize, want: &str| {
            let e = context_error(text, from, to, nth)
                .unwrap_or_else(|| panic!("{from} -> {to} (#{nth}) was accepted"));
            assert!(e.contains(want), "{from} -> {to}: {e}");
        };
        // A dangling reference; a forward one (the id of a later record).
        bad(
            &t2,
            r#""process":"1""#,
            r#""process":"9""#,
            1,
            "does not have before it",
        );
        bad(
            &t2,
            r#""process":"1""#,
            r#""process":"2""#,
            1,
            "does not have before it",
        );
        // A duplicate id.
        bad(
            &t2,
            r#""id":"2""#,
            r#""id":"1""#,
            1,
            "a second `process` record",
        );
        // A reference across runs: the second run's first reference, after
        // its own process record was renumbered.
        bad(
            &t2,
            r#""id":"1""#,
            r#""id":"3""#,
            2,
            "does not have before it",
        );
        // References and process records have no place in format 1.
        bad(&t2, r#","format":2"#, "", 1, "record format 1");
        // Nor references outside a decision's action.
        let esc = t2
            .lines()
            .find(|l| l.contains(r#""kind":"escalation""#))
            .unwrap();
        let at = esc.find(r#""process":{"#).unwrap();
        let end = at + esc[at..].find('}').unwrap() + 1;
        let forged = format!(r#"{}"process":"1"{}"#, &esc[..at], &esc[end..]);
        let mut ctx = Context::new();
        for l in t2.lines().take_while(|l| *l != esc) {
            ctx.observe(&jcs::parse(l, jcs::Mode::Strict).unwrap())
                .unwrap();
        }
        let v = jcs::parse(&forged, jcs::Mode::Strict).unwrap();
        assert!(crate::ledger::record::parse(&v).is_ok());
        let e = ctx.observe(&v).unwrap_err();
        assert!(e.contains("refers to a `process` record"), "{e}");
        // Members left out only where their default is meant: a rule's
        // reason may not be (the decision would read as the default's).
        bad(
            &t2,
            r#""reason":"custom","#,
            "",
            1,
            "missing field `reason`",
        );
        // A default value written out is a second encoding of the record.
        bad(
            &t2,
            r#""pid":10,"#,
            r#""matched":[],"pid":10,"#,
            1,
            "`matched` is written with its default",
        );
        bad(
            &t2,
            r#""pid":10,"#,
            r#""mode":"enforce","pid":10,"#,
            1,
            "`mode` is written with its default",
        );
        bad(
            &t2,
            r#""seq":"#,
            r#""stage":"request","seq":"#,
            3,
            "`stage` is written with its default",
        );
        bad(
            &t2,
            r#""pid":10,"#,
            r#""outcome":"allowed","pid":10,"#,
            1,
            "`outcome` is written with its default",
        );
        bad(
            &t2,
            r#""pid":10,"#,
            r#""pid":10,"reason":"no rule matched; the default for exec is allow","#,
            1,
            "`reason` is written with its default",
        );
        bad(
            &t2,
            r#""kind":"open","path""#,
            r#""kind":"open","op":"open","path""#,
            1,
            "`action.op` is written with its default",
        );
        bad(
            &t2,
            r#"{"action":{"cwd":"/","kind":"open""#,
            r#"{"action":{"access":["read"],"cwd":"/","kind":"open""#,
            1,
            "`action.access` is written with its default",
        );
        // A caller's program in full is a second encoding in format 2.
        let full = t1.lines().find(|l| l.contains(r#""process":{"#)).unwrap();
        let at = full.find(r#""process":{"#).unwrap();
        let obj = &full[at..at + full[at..].find('}').unwrap() + 1];
        bad(&t2, r#""process":"1""#, obj, 1, "written in full");
        // Format 1 may leave nothing out.
        bad(&t1, r#""matched":[],"#, "", 1, "missing `matched`");
        // A block may not leave its outcome out.
        bad(
            &t2,
            r#""outcome":"killed","#,
            "",
            1,
            "missing field `outcome`",
        );
        // An `allow` verdict, an argv of the path alone, a code mapping's
        // note, an identity with its action's hash: each has one form.
        bad(
            &t2,
            r#""time":"1001"}"#,
            r#""time":"1001","verdict":"allow"}"#,
            1,
            "`verdict` is written with its default",
        );
        bad(&t1, r#","verdict":"allow""#, "", 1, "missing `verdict`");
        let lib = r#"{"action":{"cwd":"/w","kind":"exec","path":"/usr/lib/libx.so""#;
        bad(
            &t2,
            lib,
            r#"{"action":{"argv":["/usr/lib/libx.so"],"cwd":"/w","kind":"exec","path":"/usr/lib/libx.so""#,
            1,
            "`action.argv` is written with its default",
        );
        let full_note = format!(r#""note":"{}""#, crate::ledger::read::CODE_MAP_NOTE);
        bad(&t2, r#""map":true"#, &full_note, 1, "written in full");
        bad(
            &t2,
            r#""map":true"#,
            r#""map":true,"note":"x""#,
            1,
            "`map` stands only",
        );
        bad(
            &t2,
            r#""kind":"decision","pid":10,"#,
            r#""kind":"decision","map":true,"pid":10,"#,
            2,
            "`map` stands only",
        );
        bad(&t1, &full_note, r#""map":true"#, 1, "record format 1");
        bad(
            &t2,
            r#""identity":"1:2""#,
            r#""identity":{"dev":"1","ino":"2"}"#,
            4,
            "written as an object with the hash of its action",
        );
        let hash6 = format!(r#""sha256":"{}""#, "06".repeat(32));
        bad(
            &t2,
            r#""identity":{"dev":"1","ino":"2"}"#,
            &format!(r#""identity":{{"dev":"1","ino":"2",{hash6}}}"#),
            1,
            "written as an object with the hash of its action",
        );
        bad(
            &t1,
            r#""identity":{"dev":"1","ino":"2"}"#,
            r#""identity":"1:2""#,
            1,
            "record format 1",
        );
        bad(
            &t2,
            r#""identity":"1:2""#,
            r#""identity":"1:02""#,
            1,
            "DEV:INO",
        );
        // `prev`: base64 in a format-2 run but for its header, hex in
        // format 1; the chain check reads both.
        let recode = |text: &str, kind: &str, base64: bool| -> String {
            let line = text.lines().find(|l| l.contains(kind)).unwrap();
            let v: serde_json::Value = serde_json::from_str(line).unwrap();
            let p = v["prev"].as_str().unwrap();
            let h = crate::ledger::record::prev_hash(p).unwrap();
            let other = if base64 {
                base64::engine::general_purpose::STANDARD.encode(h)
            } else {
                hex::encode(h)
            };
            format!("{p}@{other}")
        };
        use base64::Engine as _;
        for (text, kind, base64, want) in [
            (&t2, r#""kind":"decision""#, false, "`prev` is in hex"),
            (&t2, r#""kind":"process""#, false, "`prev` is in hex"),
            (
                &t1,
                r#""kind":"decision""#,
                true,
                "record format 1, which writes hex",
            ),
        ] {
            let r = recode(text, kind, base64);
            let (from, to) = r.split_once('@').unwrap();
            bad(text, from, to, 1, want);
        }
        // A format-2 run's second header links in hex.
        let second = t2
            .lines()
            .filter(|l| l.contains(r#""kind":"run""#))
            .nth(1)
            .unwrap();
        let v: serde_json::Value = serde_json::from_str(second).unwrap();
        let p = v["prev"].as_str().unwrap();
        assert_eq!(p.len(), 64);
        let b = base64::engine::general_purpose::STANDARD
            .encode(crate::ledger::record::prev_hash(p).unwrap());
        bad(&t2, p, &b, 1, "run header or recovery record");
        // One base64 per hash: unused bits set, or no padding, are refused.
        let h = [0xabu8; 32];
        let b = base64::engine::general_purpose::STANDARD.encode(h);
        assert_eq!(crate::ledger::record::prev_hash(&b), Some(h));
        let last = b.as_bytes()[42];
        let flipped = format!("{}{}=", &b[..42], char::from(last ^ 1));
        assert_eq!(crate::ledger::record::prev_hash(&flipped), None);
        assert_eq!(crate::ledger::record::prev_hash(&b[..43]), None);
        // A decision whose rule was removed with its custom reason reads as
        // the default, not as that rule's: `verify --policy` re-derives it.
        let line = t2
            .lines()
            .find(|l| l.contains(r#""reason":"custom""#))
            .unwrap();
        let forged = line
            .replacen(r#""reason":"custom","rule":"r","#, "", 1)
            .replacen(r#""matched":["r"],"#, "", 1);
        let v = jcs::parse(&forged, jcs::Mode::Lenient).unwrap();
        let mut ctx = Context::new();
        for l in t2.lines().take_while(|l| *l != line) {
            ctx.observe(&jcs::parse(l, jcs::Mode::Strict).unwrap())
                .unwrap();
        }
        let r = ctx.decode_record(&v).unwrap().unwrap();
        assert_eq!(r.rule, None);
        assert_ne!(r.reason, "custom");
    }

    #[test]
    fn malformed_actions_are_errors() {
        for bad in [
            r#"{"argv":["x"],"cwd":"/","kind":"exec","path":"/x","extra":"1"}"#,
            r#"{"argv":"x","cwd":"/","kind":"exec","path":"/x"}"#,
            r#"{"access":["execute"],"cwd":"/","kind":"open","op":"open","path":"/x"}"#,
            r#"{"access":[],"cwd":"/","kind":"open","op":"chmod","path":"/x"}"#,
            r#"{"access":[],"cwd":"/","detail":{"mode":"9"},"kind":"open","op":"chmod","path":"/x"}"#,
            r#"{"access":[],"cwd":"/","detail":{"mode":"0644"},"kind":"open","op":"delete","path":"/x"}"#,
            r#"{"address":"::1","family":"inet","kind":"connect","op":"connect","port":"1","protocol":"tcp"}"#,
            r#"{"address":"10.0.0.1","family":"inet","kind":"connect","op":"connect","port":"70000","protocol":"tcp"}"#,
            r#"{"kind":"connect","op":"connect","protocol":"tcp"}"#,
            r#"{"kind":"teleport"}"#,
        ] {
            let v = jcs::parse(bad, jcs::Mode::Lenient).unwrap();
            assert!(decode_action(&v).is_err(), "{bad}");
        }
        // Ledgers from before operations were recorded: a plain open.
        let v = jcs::parse(
            r#"{"access":["read"],"cwd":"/","kind":"open","path":"/x"}"#,
            jcs::Mode::Strict,
        )
        .unwrap();
        match decode_action(&v).unwrap() {
            Action::Open(o) => assert_eq!(o.op, FileOp::Open),
            other => panic!("{other:?}"),
        }
    }
}
