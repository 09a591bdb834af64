//! One supervised run: decode → decide → record → answer.
//!
//! The only place that joins the policy, the ledger and the supervisor, and
//! the place that fails closed: an action is allowed only after its record
//! is written; if deciding or recording fails, the action is refused.
//!
//! Built-in rules come before the policy and no policy can switch them off
//! (`lexecon.self-protect.*`): the tree may not open the signing keys, open
//! the ledger or its directory, or reach the supervisor's `/proc` entries.

use std::collections::HashMap;
use std::ffi::OsString;
use std::fmt::Write as _;
use std::io::Write as _;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use crate::action::{Access, Action, Decision, FileOp, Mode, OpDetail, Verdict};
use crate::escape;
use crate::ledger::{
    self, Counts, DecisionEntry, FileIdentity, LedgerError, LedgerWriter, Outcome, RunEnd,
    RunHeader, Stage,
};
use crate::policy::Policy;
use crate::supervisor::{self, Caller, Exit, Identity, Judge, Ruling};

pub mod escalation;
pub mod gate;
pub mod limits;
pub mod metrics;
pub mod prompt;
pub mod report;

/// What an `escalate` verdict becomes while no human can be asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnEscalate {
    /// Refuse at once (the default).
    Block,
    /// Allow, and record that it was allowed without approval.
    Allow,
    /// Hold the call until a human answers through the approval socket,
    /// or its deadline passes (then block).
    Wait,
    /// As `Wait`, and ask on the supervisor's terminal too.
    Prompt,
}

impl OnEscalate {
    pub fn as_str(self) -> &'static str {
        match self {
            OnEscalate::Block => "block",
            OnEscalate::Allow => "allow",
            OnEscalate::Wait => "wait",
            OnEscalate::Prompt => "prompt",
        }
    }
}

/// Everything one run needs.
pub struct SessionConfig {
    pub policy: Policy,
    pub policy_path: Option<PathBuf>,
    /// Overrides the policy's own mode.
    pub mode: Option<Mode>,
    pub on_escalate: OnEscalate,
    /// The signing key directory (protected from the tree).
    pub keys_dir: PathBuf,
    /// Print one line per refusal on stderr.
    pub report_blocks: bool,
    /// Write one line to a denied process's own stderr saying what was
    /// refused and why.
    pub tell_process: bool,
    /// How long a held escalation waits for its answer.
    pub escalate_timeout: std::time::Duration,
    /// Most escalations held at once; beyond, new ones are blocked.
    pub max_pending: usize,
    /// The workspace (`${WORKSPACE}` of the policy), recorded in the run
    /// header.
    pub workspace: PathBuf,
    /// A directory of the product's own above the ledger, which the tree may
    /// not write in (for the default location, the directory of every
    /// workspace's ledger). `None`: only the ledger's own files are
    /// protected (the ledger, its approval socket), never their neighbours.
    /// A directory that is the workspace or above it is never protected so.
    pub ledger_dir: Option<PathBuf>,
    /// The commands printed for this run's ledger.
    pub hints: Hints,
    /// Where to write the run's Prometheus metrics (a node_exporter
    /// textfile), if anywhere; read-only to the tree.
    pub metrics_file: Option<PathBuf>,
    /// Offer the tree a gate socket (`$LEXECON_GATE`) to ask about actions
    /// before doing them (see [`gate`]).
    pub gate: bool,
}

/// Commands the supervisor prints for the user to run, made by the caller,
/// which knows how the ledger and the keys were found: each works as
/// printed.
#[derive(Debug, Clone, Default)]
pub struct Hints {
    /// What `lexecon pending/approve/deny` need to reach this run's ledger
    /// (` --ledger FILE`, or empty when they find it themselves).
    pub ledger_args: String,
    /// The command that verifies the ledger with the run's key.
    pub verify: String,
}

/// Rule ids of the built-in protections.
pub mod builtin {
    pub const KEYS: &str = "lexecon.self-protect.keys";
    pub const LEDGER: &str = "lexecon.self-protect.ledger";
    pub const SUPERVISOR: &str = "lexecon.self-protect.supervisor";
    pub const SIGNAL: &str = "lexecon.self-protect.signal";
    /// Calls that act on another process (limits, priorities, scheduling,
    /// memory) aimed at the supervisor.
    pub const PROCESS: &str = "lexecon.self-protect.process";
    /// Calls that act on another process aimed outside the supervised tree.
    pub const OUTSIDE_TREE: &str = "lexecon.contain.outside-tree";
    /// A call that needed a human's answer while the supervisor already
    /// held as many calls as it holds at once.
    pub const HELD_LIMIT: &str = "lexecon.contain.held-limit";
    pub const UNDECODABLE: &str = "lexecon.undecodable";
    /// A datagram to a DNS port that is not a DNS query.
    pub const DNS_PORT: &str = "lexecon.network.dns-port";
    pub const RECORD_FAILED: &str = "lexecon.record-failed";
    pub const APPROVAL: &str = "lexecon.self-protect.approval";
    pub const POLICY: &str = "lexecon.self-protect.policy";
}

/// What the tree may never open (keys, ledger, the supervisor's `/proc`
/// entries) or never change (the policy in force), protected both by path
/// and by object: a file reached under another name (a hard link made
/// before the run) is the same file. Renaming or removing a directory above
/// any of them is refused too, so their paths stay what they were when the
/// run started.
struct Protected {
    keys_dir: PathBuf,
    ledger_file: PathBuf,
    /// The approval socket (see [`crate::approval`]).
    approval_socket: PathBuf,
    /// The gate socket, when the run has one (see [`gate`]).
    gate_socket: Option<PathBuf>,
    /// The product's own directory above the ledger (the default ledger
    /// location; neither the workspace nor one of its ancestors): nothing
    /// may be written in it.
    ledger_dir: Option<PathBuf>,
    supervisor_proc: PathBuf,
    /// The files of the policy in force (the file given, and every file it
    /// includes): read-only to the tree.
    policy_files: Vec<PathBuf>,
    /// The metrics file and its temporary name: written by the supervisor
    /// only (each write replaces the file, so it is protected by name).
    metrics_files: Vec<PathBuf>,
    /// (device, inode) → (rule, reason, only writes are refused).
    objects: HashMap<(u64, u64), (&'static str, &'static str, bool)>,
}

const KEYS_REASON: &str = "the ledger's signing keys are off limits to the supervised tree";
const LEDGER_REASON: &str = "the ledger is written by the supervisor only";
const POLICY_REASON: &str = "the policy in force is read-only to the supervised tree";
const METRICS_REASON: &str = "the run's metrics file is written by the supervisor only";

impl Protected {
    fn new(
        keys_dir: PathBuf,
        ledger_file: PathBuf,
        ledger_dir: Option<PathBuf>,
        policy_files: Vec<PathBuf>,
        metrics_file: Option<PathBuf>,
        supervisor_proc: PathBuf,
    ) -> Protected {
        use std::os::unix::fs::MetadataExt;
        let mut objects = HashMap::new();
        let mut add = |p: &Path, rule, reason, writes_only| {
            if let Ok(m) = std::fs::symlink_metadata(p) {
                objects.insert((m.dev(), m.ino()), (rule, reason, writes_only));
            }
        };
        add(&keys_dir, builtin::KEYS, KEYS_REASON, false);
        for e in std::fs::read_dir(&keys_dir).into_iter().flatten().flatten() {
            add(&e.path(), builtin::KEYS, KEYS_REASON, false);
        }
        add(&ledger_file, builtin::LEDGER, LEDGER_REASON, false);
        for p in &policy_files {
            add(p, builtin::POLICY, POLICY_REASON, true);
        }
        Protected {
            approval_socket: crate::approval::socket_path(&ledger_file),
            gate_socket: None,
            keys_dir,
            ledger_file,
            ledger_dir,
            supervisor_proc,
            policy_files,
            metrics_files: metrics_file
                .iter()
                .flat_map(|p| [Some(p.clone()), metrics::temp_path(p)])
                .flatten()
                .collect(),
            objects,
        }
    }

    /// Protects the object `path` names now (a file created after the run
    /// began, such as the approval socket) as the ledger's.
    fn add_ledger_object(&mut self, path: &Path) {
        use std::os::unix::fs::MetadataExt;
        if let Ok(m) = std::fs::symlink_metadata(path) {
            self.objects
                .insert((m.dev(), m.ino()), (builtin::LEDGER, LEDGER_REASON, false));
        }
    }

    /// The paths that must keep their names for the run.
    fn roots(&self) -> impl Iterator<Item = (&Path, &'static str)> {
        [
            (Some(self.keys_dir.as_path()), builtin::KEYS),
            (Some(self.ledger_file.as_path()), builtin::LEDGER),
            (Some(self.approval_socket.as_path()), builtin::LEDGER),
            (self.gate_socket.as_deref(), builtin::LEDGER),
            (self.ledger_dir.as_deref(), builtin::LEDGER),
        ]
        .into_iter()
        .filter_map(|(p, rule)| p.map(|p| (p, rule)))
        .chain(
            self.policy_files
                .iter()
                .map(|p| (p.as_path(), builtin::POLICY)),
        )
    }

    /// The supervisor's `/proc` entries the tree may read: `stat`, `status`
    /// and `cmdline` (what `ps` and a process checking on its parent read),
    /// opened for reading only and not by a removal or rename. They hold
    /// its state, ids and command line, which the tree knows already;
    /// everything else (`mem`, `environ`, `fd`, `maps`, `task/…`) stays off
    /// limits.
    fn public_proc_entry(&self, p: &Path, access: Access) -> bool {
        use crate::supervisor::resolve::PUBLIC_SUPERVISOR_ENTRIES as PUBLIC;
        access == Access::READ
            && p.parent() == Some(self.supervisor_proc.as_path())
            && p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| PUBLIC.contains(&n))
    }

    fn check(&self, action: &Action, identity: Option<&Identity>) -> Option<Decision> {
        let Action::Open(o) = action else { return None };
        let p = o.path.as_path();
        let writes = o
            .access
            .intersects(Access::WRITE | Access::CREATE | Access::TRUNCATE | Access::APPEND);
        let in_ledger_dir = self.ledger_dir.as_ref().is_some_and(|d| p.starts_with(d));
        let object = identity.and_then(|i| self.objects.get(&(i.dev, i.ino)));
        let (rule, reason) = if p.starts_with(&self.keys_dir) {
            (builtin::KEYS, KEYS_REASON)
        } else if p == self.ledger_file
            || p == self.approval_socket
            || self.gate_socket.as_deref() == Some(p)
        {
            (builtin::LEDGER, LEDGER_REASON)
        } else if in_ledger_dir && writes {
            (
                builtin::LEDGER,
                "the ledger's directory is written by the supervisor only",
            )
        } else if p.starts_with(&self.supervisor_proc) && !self.public_proc_entry(p, o.access) {
            (
                builtin::SUPERVISOR,
                "the supervisor's /proc entries are off limits to the supervised tree",
            )
        } else if let Some(&(rule, reason, _)) =
            object.filter(|&&(_, _, writes_only)| writes || !writes_only)
        {
            (rule, reason)
        } else if writes && self.policy_files.iter().any(|f| f == p) {
            (builtin::POLICY, POLICY_REASON)
        } else if (writes || matches!(o.op, FileOp::Delete | FileOp::Rename))
            && self.metrics_files.iter().any(|m| m == p)
        {
            (builtin::LEDGER, METRICS_REASON)
        } else if let Some((_, rule)) = self.roots().find(|(root, _)| {
            matches!(o.op, FileOp::Delete | FileOp::Rename) && root.starts_with(p)
        }) {
            (
                rule,
                "moving or removing a directory above the ledger, its keys or the policy is refused",
            )
        } else {
            return None;
        };
        Some(Decision {
            verdict: Verdict::Block,
            matched: vec![rule.to_string()],
            rule: Some(rule.to_string()),
            reason: reason.to_string(),
        })
    }
}

/// (device, inode) of every program a policy names literally; programs that
/// do not exist are left out (their path still matches as written).
pub fn program_identities(policy: &Policy) -> HashMap<(u64, u64), PathBuf> {
    use std::os::unix::fs::MetadataExt;
    policy
        .literal_programs()
        .into_iter()
        .filter_map(|p| std::fs::metadata(&p).ok().map(|m| ((m.dev(), m.ino()), p)))
        .collect()
}

/// The variable values `policy` was loaded with (from this process's
/// environment), as the run header records them (`HOME`, `WORKSPACE`,
/// `TMPDIR`, `env.NAME`): what re-deriving its
/// decisions offline needs, and with the policy's text exactly what its
/// hash covers.
pub fn recorded_vars(policy: &Policy) -> std::collections::BTreeMap<String, OsString> {
    let v = policy.vars();
    let mut m = std::collections::BTreeMap::new();
    m.insert("HOME".to_string(), v.home.clone().into_os_string());
    m.insert("TMPDIR".to_string(), v.tmpdir.clone().into_os_string());
    m.insert(
        "WORKSPACE".to_string(),
        v.workspace.clone().into_os_string(),
    );
    // A variable that was set is recorded as the path it expanded to; one
    // that was unset or empty as empty (its default applied, which the
    // policy text and the other values give again).
    for (name, value) in policy.env_vars() {
        let set = std::env::var_os(name).is_some_and(|v| !v.is_empty());
        let v = if set {
            OsString::from(value)
        } else {
            OsString::new()
        };
        m.insert(format!("env.{name}"), v);
    }
    m
}

/// The files of a layered policy as the run header records them (each
/// with its own hash, in layer order); empty for a policy without
/// `include:`.
pub fn recorded_layers(policy: &Policy) -> Vec<ledger::PolicyLayer> {
    if !policy.is_layered() {
        return Vec::new();
    }
    policy
        .layers()
        .into_iter()
        .map(|l| ledger::PolicyLayer {
            path: PathBuf::from(l.path),
            sha256: l.sha256,
        })
        .collect()
}

/// The files of the policy in force, read-only to the tree: the file
/// given (when it is a file) and every file it includes (the shipped
/// policies it includes are in the binary).
fn policy_files(given: Option<&Path>, policy: &Policy) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = given
        .filter(|p| p.is_file())
        .map(canonical_or_absolute)
        .into_iter()
        .collect();
    let layers = policy.layers();
    let included = &layers[..layers.len().saturating_sub(1)];
    for l in included {
        if l.path.starts_with("builtin:") {
            continue;
        }
        let p = canonical_or_absolute(Path::new(&l.path));
        if !out.contains(&p) {
            out.push(p);
        }
    }
    out
}

/// How the note of a code mapping's decision record begins: what tells
/// `lexecon replay`, `verify --policy` and the reading commands that the
/// action was judged as a mapping ([`crate::policy::Circumstances::code_map`]).
/// Defined with the records, in [`crate::ledger::read`].
pub const CODE_MAP_NOTE: &str = crate::ledger::read::CODE_MAP_NOTE;

/// Calls that map a file executable, judged as loading it.
fn is_code_map(syscall: &str) -> bool {
    matches!(syscall, "mmap" | "mprotect" | "pkey_mprotect")
}

/// For an `O_TMPFILE` open, what the record says.
fn tmpfile_note(action: &Action) -> Option<&'static str> {
    match action {
        Action::Open(o)
            if o.path.file_name() == Some(std::ffi::OsStr::new(crate::action::UNNAMED_TMPFILE)) =>
        {
            Some("O_TMPFILE: an unnamed file created in the directory")
        }
        _ => None,
    }
}

/// The hint on the line of an escalation refused because no human can be
/// asked.
const NO_APPROVER_HINT: &str = "it needs a human's approval and no approver is attached: run with --on-escalate wait (answer with `lexecon approve`) or --on-escalate prompt to be asked";

/// Which list of the summary an event goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ListKind {
    /// Refused or killed.
    Blocked,
    /// Observe mode: allowed, would have been refused or escalated.
    WouldBlock,
}

/// The judge of one run.
pub struct Session {
    policy: Policy,
    mode: Mode,
    on_escalate: OnEscalate,
    protected: Protected,
    /// File identity (device, inode) of each program a `program:` rule
    /// names literally, resolved when the run starts.
    programs: HashMap<(u64, u64), PathBuf>,
    writer: Mutex<LedgerWriter>,
    report_blocks: bool,
    tell_process: bool,
    policy_path: Option<PathBuf>,
    policy_sha256: [u8; 32],
    state: Mutex<State>,
    /// Rate limits and the breaker over the run (locked inside the
    /// ledger's lock only).
    limits: Mutex<limits::Limits>,
    escalations: Arc<escalation::Escalations>,
    approval_server: Mutex<Option<crate::approval::Server>>,
    approval_thread: Mutex<Option<std::thread::JoinHandle<()>>>,
    /// The gate socket and the session it serves, until a supervisor thread
    /// starts serving it (see [`Session::gate_tick`]).
    gate_start: Mutex<Option<(crate::approval::Server, Arc<Session>)>>,
    gate_server: Mutex<Option<gate::GateServer>>,
    approval_stop: Arc<std::sync::atomic::AtomicBool>,
    /// Wake the approval socket's and the terminal prompt's threads to see
    /// `approval_stop` at once.
    approval_wakers: Mutex<Vec<crate::approval::Waker>>,
    terminal: Mutex<Option<prompt::Terminal>>,
    terminal_thread: Mutex<Option<std::thread::JoinHandle<()>>>,
    /// The commands printed to the user.
    hints: Hints,
    /// Taken after the writer when both are (never the other way).
    metrics: Option<Mutex<metrics::Metrics>>,
}

#[derive(Default)]
struct State {
    counts: Counts,
    blocked: report::List,
    would_block: report::List,
    escalations: report::List,
    record_failures: u64,
    first_record_error: Option<String>,
}

/// How a run went, for the summary and the exit code.
#[derive(Debug, Clone)]
pub struct Summary {
    pub outcome: supervisor::Outcome,
    pub counts: Counts,
    /// What was refused or killed, each distinct line once with its count.
    pub blocked: report::List,
    /// Observe mode: what would have been refused (or escalated).
    pub would_block: report::List,
    /// Escalated actions and how each ended.
    pub escalations: report::List,
    pub record_failures: u64,
    pub ledger: PathBuf,
    pub run_id: String,
    pub mode: Mode,
    /// The policy file (`None`: the built-in default policy).
    pub policy_path: Option<PathBuf>,
    pub policy_sha256: [u8; 32],
    /// The exit code `lexecon-supervise` returns and why, once decided
    /// ([`Summary::decide_exit`]).
    pub exit: Option<(u8, ExitReason)>,
    /// Set when the run could not be sealed.
    pub seal_error: Option<String>,
    /// The run's final checkpoint as a one-line anchor
    /// (`lexecon-anchor/v1 …`), once sealed.
    pub anchor: Option<String>,
    /// The command that verifies the ledger (see [`Hints`]).
    pub verify_hint: String,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // Critical sections leave the state consistent even if they panic
    // midway (plain counters and pushes).
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// A short human description of an action: `exec rm -rf ./x`,
/// `open /etc/x (write)`. Every byte from the tree is shown escaped
/// ([`crate::escape`]): the result holds no control or invisible character.
pub fn describe(action: &Action) -> String {
    match action {
        Action::Exec(x) => {
            let mut s = String::from("exec");
            if x.argv.is_empty() {
                let _ = write!(s, " {}", escape::path(&x.path));
            }
            for a in &x.argv {
                let _ = write!(s, " {}", escape::os(a));
            }
            s
        }
        Action::Open(o) => format!("open {} ({})", escape::path(&o.path), o.access),
        Action::Connect(c) => describe_connect(c),
        Action::Tool(t) => describe_tool(t),
    }
}

/// `tool deploy {"env":"prod"}`: the name and the input as compact JSON,
/// escaped, the input cut after 200 characters.
fn describe_tool(t: &crate::action::ToolAction) -> String {
    const MAX: usize = 200;
    let mut input = t.input.to_string();
    if input.chars().count() > MAX {
        input = input.chars().take(MAX).collect::<String>() + "…";
    }
    format!("tool {} {}", escape::text(&t.name), escape::text(&input))
}

/// `connect pypi.org:443 (151.101.0.223, tcp)`, `send 10.0.0.1:53 (udp)`,
/// `resolve evil.example`, `connect /var/run/docker.sock (unix)`.
fn describe_connect(c: &crate::action::ConnectAction) -> String {
    use crate::action::NetTarget;
    let target = crate::policy::net::target_text(&c.target);
    let shown = match &c.target {
        NetTarget::UnixPath(p) => escape::path(p).to_string(),
        NetTarget::UnixAbstract(n) => {
            let mut v = b"@".to_vec();
            v.extend_from_slice(n);
            escape::os(std::ffi::OsStr::from_bytes(&v)).to_string()
        }
        NetTarget::Name(n) => escape::os(std::ffi::OsStr::new(n)).to_string(),
        _ => target.clone(),
    };
    match (&c.target, c.names.as_slice()) {
        (NetTarget::Name(_), _) => format!("{} {shown}", c.op.as_str()),
        (NetTarget::Ip { port, .. }, [first, ..]) => format!(
            "{} {}:{port} ({shown}, {})",
            c.op.as_str(),
            escape::os(std::ffi::OsStr::new(first)),
            c.protocol.as_str()
        ),
        _ => format!("{} {shown} ({})", c.op.as_str(), c.protocol.as_str()),
    }
}

/// A short description of the call a judged action stands for, naming the
/// real operation: `unlink ./x`, `rename to /w/y`, `truncate /w/f`,
/// `chmod 0755 /w/f`, `creat /w/f`, `open O_TMPFILE in /tmp (…)`; opens and
/// execs as [`describe`]. Escaped like [`describe`].
pub fn describe_call(syscall: &str, action: &Action) -> String {
    if let (true, Action::Exec(x)) = (is_code_map(syscall), action) {
        return format!("map executable {}", escape::path(&x.path));
    }
    let Action::Open(o) = action else {
        return describe(action);
    };
    let p = escape::path(&o.path);
    let a = o.access;
    let mode = match &o.detail {
        Some(OpDetail::Mode(m)) => format!("{m:04o} "),
        _ => String::new(),
    };
    match o.op {
        // A local socket's name, created by bind(2).
        FileOp::Mknod if syscall == "bind" => format!("bind {p}"),
        FileOp::Delete if a.contains(Access::DIRECTORY) && !a.contains(Access::TRUNCATE) => {
            format!("rmdir {p}")
        }
        FileOp::Delete => format!("unlink {p}"),
        FileOp::Rename if a.contains(Access::CREATE) => format!("rename to {p}"),
        FileOp::Rename => format!("rename {p}"),
        FileOp::Link if a.contains(Access::CREATE) => format!("link as {p}"),
        FileOp::Link => format!("link {p}"),
        FileOp::Truncate => format!("truncate {p}"),
        FileOp::Mkdir => format!("mkdir {mode}{p}"),
        FileOp::Mknod => format!("mknod {mode}{p}"),
        FileOp::Symlink => match &o.detail {
            Some(OpDetail::Target(t)) => format!("symlink {p} -> {}", escape::os(t)),
            _ => format!("symlink {p}"),
        },
        FileOp::Chmod => format!("chmod {mode}{p}"),
        FileOp::Chown => match &o.detail {
            Some(OpDetail::Owner { uid, gid }) => {
                let id = |n: &Option<u32>| n.map_or_else(String::new, |n| n.to_string());
                format!("chown {}:{} {p}", id(uid), id(gid))
            }
            _ => format!("chown {p}"),
        },
        FileOp::SetTimes => format!("set times of {p}"),
        FileOp::Xattr if syscall.contains("remove") => format!("removexattr {p}"),
        FileOp::Xattr => format!("setxattr {p}"),
        FileOp::SetFlags => format!("set inode flags of {p}"),
        FileOp::Open if syscall == "creat" => format!("creat {p}"),
        FileOp::Open
            if o.path.file_name() == Some(std::ffi::OsStr::new(crate::action::UNNAMED_TMPFILE)) =>
        {
            let dir = o.path.parent().map(escape::path).unwrap_or_default();
            format!("open O_TMPFILE in {dir} ({a})")
        }
        FileOp::Open => describe(action),
    }
}

fn canonical_or_absolute(p: &Path) -> PathBuf {
    std::fs::canonicalize(p).unwrap_or_else(|_| {
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            std::env::current_dir().unwrap_or_default().join(p)
        }
    })
}

impl Session {
    /// Begins a run in `writer` (writes the run header).
    pub fn begin(
        cfg: SessionConfig,
        mut writer: LedgerWriter,
        command: &[OsString],
        cwd: &Path,
    ) -> Result<(Session, String), LedgerError> {
        let mode = cfg.mode.unwrap_or_else(|| cfg.policy.mode());
        let info = writer.begin_run(RunHeader {
            command: command.to_vec(),
            cwd: cwd.to_path_buf(),
            workspace: Some(canonical_or_absolute(&cfg.workspace)),
            policy_sha256: cfg.policy.sha256(),
            policy_path: cfg.policy_path.clone(),
            mode,
            ci: ledger::ci_identifiers_from_env(),
            vars: Some(recorded_vars(&cfg.policy)),
            policy_layers: recorded_layers(&cfg.policy),
        })?;
        let ledger_file = canonical_or_absolute(writer.path());
        let workspace = canonical_or_absolute(&cfg.workspace);
        // A directory is protected whole only when it is the product's own
        // (the caller says so: the default ledger location). Any other
        // directory holding a ledger (`--ledger /tmp/run.jsonl`) stays the
        // tree's: only the ledger's own files are refused.
        let ledger_dir = cfg
            .ledger_dir
            .as_deref()
            .map(canonical_or_absolute)
            .filter(|d| ledger_file.starts_with(d))
            .filter(|d| !workspace.starts_with(d));
        let pid = crate::os::pid();
        let metrics_file = cfg.metrics_file.as_deref().map(canonical_or_absolute);
        let protected = Protected::new(
            canonical_or_absolute(&cfg.keys_dir),
            ledger_file,
            ledger_dir,
            policy_files(cfg.policy_path.as_deref(), &cfg.policy),
            metrics_file.clone(),
            PathBuf::from(format!("/proc/{pid}")),
        );
        let programs = program_identities(&cfg.policy);
        let policy_sha256 = cfg.policy.sha256();
        let metrics = metrics_file
            .map(|p| metrics::Metrics::new(p, &info.run_id, mode.as_str(), &policy_sha256));
        let session = (
            Session {
                policy: cfg.policy,
                mode,
                on_escalate: cfg.on_escalate,
                protected,
                programs,
                writer: Mutex::new(writer),
                report_blocks: cfg.report_blocks,
                tell_process: cfg.tell_process,
                policy_path: cfg.policy_path.clone(),
                policy_sha256,
                state: Mutex::new(State::default()),
                limits: Mutex::new(limits::Limits::default()),
                escalations: Arc::new(escalation::Escalations::new(
                    cfg.escalate_timeout,
                    cfg.max_pending.max(1),
                )),
                approval_server: Mutex::new(None),
                approval_thread: Mutex::new(None),
                gate_start: Mutex::new(None),
                gate_server: Mutex::new(None),
                approval_stop: Arc::new(std::sync::atomic::AtomicBool::new(false)),
                approval_wakers: Mutex::new(Vec::new()),
                terminal: Mutex::new(None),
                terminal_thread: Mutex::new(None),
                hints: cfg.hints,
                metrics: metrics.map(Mutex::new),
            },
            info.run_id,
        );
        // The metrics file exists from the start, so that the tree finds it
        // protected rather than a name it may take.
        session.0.write_metrics(false);
        Ok(session)
    }

    fn decide(
        &self,
        action: &Action,
        identity: Option<&Identity>,
        loaded: Option<&Action>,
        code_map: bool,
    ) -> (Decision, bool) {
        if let Some(d) = self.protected.check(action, identity) {
            return (d, true);
        }
        if let Some(d) = self.gate_connect(action) {
            return (d, true);
        }
        // The same program under other names: `ld.so PROG` runs PROG without
        // an execve of PROG, and a hard link gives a program another path.
        let same_file_as = match (action, identity) {
            (Action::Exec(_), Some(id)) => self.programs.get(&(id.dev, id.ino)),
            _ => None,
        };
        let how = crate::policy::Circumstances {
            loaded,
            same_file_as: same_file_as.map(PathBuf::as_path),
            code_map,
        };
        let d = self.policy.judge(action, &how);
        (d, false)
    }

    /// What is done about a verdict: (outcome, note).
    fn carry_out(
        &self,
        verdict: Verdict,
        builtin: bool,
        refused: Outcome,
    ) -> (Outcome, Option<String>) {
        match verdict {
            Verdict::Allow => (Outcome::Allowed, None),
            Verdict::Block if builtin => (refused, None),
            Verdict::Block if self.mode == Mode::Observe => (
                Outcome::Allowed,
                Some("observe mode: would have been blocked".into()),
            ),
            Verdict::Block => (refused, None),
            Verdict::Escalate if self.mode == Mode::Observe => (
                Outcome::Allowed,
                Some("observe mode: would have been escalated".into()),
            ),
            Verdict::Escalate => match self.on_escalate {
                OnEscalate::Block => (
                    refused,
                    Some(
                        "escalation resolved by non-interactive rule: block (no approver attached)"
                            .into(),
                    ),
                ),
                OnEscalate::Allow => (
                    Outcome::Allowed,
                    Some(
                        "escalation resolved by --on-escalate allow: allowed without approval"
                            .into(),
                    ),
                ),
                // Held escalations are resolved in `escalated`; an escalated
                // exec seen only at its confirmation was never approved.
                OnEscalate::Wait | OnEscalate::Prompt => {
                    (refused, Some("escalation without an answer".into()))
                }
            },
        }
    }

    /// Records one decision. `None` when the record could not be written.
    #[allow(clippy::too_many_arguments)]
    fn record(
        &self,
        caller: &Caller,
        action: &Action,
        loaded: Option<&Action>,
        stage: Stage,
        decision: &Decision,
        outcome: Outcome,
        identity: Option<&Identity>,
        note: Option<String>,
    ) -> Option<u64> {
        let mut w = lock(&self.writer);
        let now = ledger::writer::now_ns();
        self.write_decision(
            &mut w, now, caller, action, loaded, stage, decision, outcome, identity, note,
        )
    }

    /// Records one decision at its request through the run's rate limits
    /// and breaker ([`limits`]): under the ledger's lock, with the time the
    /// record carries, the decision may be changed (to a block) and the
    /// change recorded first (a `limit` record); `decision`, `outcome` and
    /// `note` are then what was recorded. `refused`: the outcome of a
    /// refusal.
    #[allow(clippy::too_many_arguments)]
    fn record_request(
        &self,
        caller: &Caller,
        action: &Action,
        loaded: Option<&Action>,
        decision: &mut Decision,
        outcome: &mut Outcome,
        builtin: bool,
        identity: Option<&Identity>,
        note: &mut Option<String>,
    ) -> Option<u64> {
        let mut w = lock(&self.writer);
        let now = ledger::writer::now_ns();
        if self.policy.has_limits()
            && !self.limit_changes(&mut w, now, caller, decision, outcome, builtin, note)
        {
            drop(w);
            return None;
        }
        self.write_decision(
            &mut w,
            now,
            caller,
            action,
            loaded,
            Stage::Request,
            decision,
            *outcome,
            identity,
            note.clone(),
        )
    }

    /// Applies the limits to `decision` at `now` and writes their changes;
    /// false when a change could not be recorded (the action is then
    /// refused unrecorded, as any other).
    #[allow(clippy::too_many_arguments)]
    fn limit_changes(
        &self,
        w: &mut LedgerWriter,
        now: u128,
        caller: &Caller,
        decision: &mut Decision,
        outcome: &mut Outcome,
        builtin: bool,
        note: &mut Option<String>,
    ) -> bool {
        let before = decision.verdict;
        let mut limits = lock(&self.limits);
        let changes = limits.apply(&self.policy, decision, builtin, now);
        for c in &changes {
            let entry = ledger::LimitEntry {
                event: c.event,
                rule: c.rule.as_deref(),
                count: c.count,
                limit: c.limit,
                window_ms: c.window_ms,
                then: c.then,
                counted: c.counted,
                pid: caller.pid,
                ppid: caller.ppid,
                reason: &c.reason,
            };
            match w.append_limit(&entry, now) {
                Ok(seq) => {
                    if c.event == "breaker" {
                        limits.breaker_recorded(seq);
                        eprintln!(
                            "lexecon: breaker tripped (record {seq}): {}",
                            escape::text(&c.reason)
                        );
                    }
                }
                Err(e) => {
                    let mut st = lock(&self.state);
                    st.record_failures += 1;
                    if st.first_record_error.is_none() {
                        eprintln!("lexecon: cannot write the ledger: {e}; refusing actions until records can be written");
                        st.first_record_error = Some(e.to_string());
                    }
                    return false;
                }
            }
        }
        if limits.stops() && !builtin {
            stop_tree(caller);
        }
        if decision.verdict != before {
            let refused = if *outcome == Outcome::Killed {
                Outcome::Killed
            } else {
                Outcome::Refused
            };
            let (o, n) = self.carry_out(decision.verdict, builtin, refused);
            *outcome = o;
            if let Some(n) = n {
                *note = Some(match note.take() {
                    Some(old) => format!("{n}; {old}"),
                    None => n,
                });
            }
        }
        true
    }

    #[allow(clippy::too_many_arguments)]
    fn write_decision(
        &self,
        w: &mut LedgerWriter,
        now: u128,
        caller: &Caller,
        action: &Action,
        loaded: Option<&Action>,
        stage: Stage,
        decision: &Decision,
        outcome: Outcome,
        identity: Option<&Identity>,
        note: Option<String>,
    ) -> Option<u64> {
        let entry = DecisionEntry {
            pid: caller.pid,
            ppid: caller.ppid,
            action,
            loaded,
            stage,
            verdict: decision.verdict,
            outcome,
            rule: decision.rule.clone(),
            matched: decision.matched.clone(),
            reason: decision.reason.clone(),
            mode: self.mode,
            identity: identity.map(|i| FileIdentity {
                dev: i.dev,
                ino: i.ino,
                sha256: i.sha256,
            }),
            note,
        };
        let result = w.append_decision_at(&entry, now);
        if result.is_ok() {
            if let Some(m) = &self.metrics {
                let mut m = lock(m);
                m.decision(
                    action.kind().as_str(),
                    decision.verdict,
                    outcome,
                    decision.rule.as_deref().unwrap_or("default"),
                );
            }
        }
        let mut st = lock(&self.state);
        match result {
            Ok(seq) => {
                // An exec is judged twice, at its request and at its exec
                // event: one action, counted at its request (see
                // `count_confirmation`).
                if stage == Stage::Request {
                    st.counts.add(decision.verdict, outcome);
                }
                Some(seq)
            }
            Err(e) => {
                st.record_failures += 1;
                if st.first_record_error.is_none() {
                    let msg = e.to_string();
                    eprintln!("lexecon: cannot write the ledger: {msg}; refusing actions until records can be written");
                    st.first_record_error = Some(msg);
                }
                None
            }
        }
    }

    /// Counts the confirmation of an exec at its exec event: an action of
    /// its own only when no request of it was seen; otherwise it changes
    /// the count only when it kills what its request allowed.
    fn count_confirmation(&self, decision: &Decision, outcome: Outcome, requested: bool) {
        let mut st = lock(&self.state);
        let c = &mut st.counts;
        if !requested {
            c.add(decision.verdict, outcome);
        } else if outcome != Outcome::Allowed {
            c.allowed = c.allowed.saturating_sub(1);
            match outcome {
                Outcome::Killed => c.killed += 1,
                Outcome::Refused => c.refused += 1,
                Outcome::Allowed => {}
            }
        }
    }

    /// Shows one refusal (or, in observe mode, one action that would have
    /// been refused): the line on the supervisor's stderr, folded when it
    /// repeats ([`report`]), the entry of the summary's list, and, when
    /// `tell` names the denied caller, the same line on that caller's own
    /// stderr.
    #[allow(clippy::too_many_arguments)]
    fn show(
        &self,
        list: ListKind,
        tell: Option<&Caller>,
        verb: &str,
        what: &str,
        rule: &str,
        reason: &str,
        hint: &str,
        seq: Option<u64>,
    ) {
        let key = report::line(verb, what, rule, None, reason, hint);
        let (shown, tell) = {
            let now = std::time::Instant::now();
            let mut st = lock(&self.state);
            let l = match list {
                ListKind::Blocked => &mut st.blocked,
                ListKind::WouldBlock => &mut st.would_block,
            };
            let shown = l.add(&key, what, rule, reason, verb, seq, now);
            let tell = tell.filter(|c| self.tell_process && l.tell(&key, c.pid, now));
            (shown, tell)
        };
        let record = seq.map_or_else(|| "not recorded".to_string(), |s| format!("record {s}"));
        let line = format!(
            "lexecon: {}",
            report::line(verb, what, rule, Some(&record), reason, hint)
        );
        if self.report_blocks {
            match shown {
                report::Show::Folded => {}
                report::Show::Line { folded: 0 } => eprintln!("{line}"),
                report::Show::Line { folded } => {
                    eprintln!("{line} [and {folded} more like it since this line was last shown]")
                }
            }
        }
        if let Some(caller) = tell {
            supervisor::tell::tell(caller, &line, self.report_blocks);
        }
    }

    /// Shows a refused or killed action (see [`Session::show`]).
    #[allow(clippy::too_many_arguments)]
    fn report(
        &self,
        caller: &Caller,
        syscall: &str,
        seq: Option<u64>,
        action: &Action,
        decision: &Decision,
        verb: &str,
        hint: &str,
    ) {
        let rule = decision.rule.as_deref().unwrap_or("default");
        self.show(
            ListKind::Blocked,
            Some(caller),
            verb,
            &describe_call(syscall, action),
            rule,
            &decision.reason,
            hint,
            seq,
        );
    }

    /// Shows an action refused because its record could not be written.
    fn report_record_failed(&self, caller: &Caller, syscall: &str, action: &Action, verb: &str) {
        self.show(
            ListKind::Blocked,
            Some(caller),
            verb,
            &describe_call(syscall, action),
            builtin::RECORD_FAILED,
            "the ledger could not be written, and nothing is allowed unrecorded",
            "",
            None,
        );
    }

    /// Counts an escalated action and how it ended, for the summaries.
    fn note_escalation(
        &self,
        syscall: &str,
        action: &Action,
        decision: &Decision,
        ended: &str,
        seq: Option<u64>,
    ) {
        let what = describe_call(syscall, action);
        let rule = decision.rule.as_deref().unwrap_or("default");
        let key = format!("{what}\0{rule}\0{ended}");
        lock(&self.state).escalations.add(
            &key,
            &what,
            rule,
            &decision.reason,
            ended,
            seq,
            std::time::Instant::now(),
        );
    }

    /// The answer to a call whose decision was recorded as `seq` (`None`:
    /// the record could not be written, so the call is refused). `hint`
    /// goes on the block line.
    #[allow(clippy::too_many_arguments)]
    fn answer(
        &self,
        caller: &Caller,
        syscall: &str,
        seq: Option<u64>,
        action: &Action,
        decision: &Decision,
        outcome: Outcome,
        hint: &str,
    ) -> Ruling {
        if outcome != Outcome::Allowed {
            self.report(caller, syscall, seq, action, decision, "blocked", hint);
            return Ruling::Deny(libc::EPERM);
        }
        match seq {
            Some(_) => Ruling::Allow,
            None => {
                self.report_record_failed(caller, syscall, action, "blocked");
                Ruling::Deny(libc::EPERM)
            }
        }
    }

    /// Writes the metrics file, if there is one: when `ended` (after the
    /// run is sealed), else only when a write is due. The writer's
    /// statistics are read before the metrics are locked (records lock the
    /// writer, then the metrics).
    fn write_metrics(&self, ended: bool) {
        let Some(m) = &self.metrics else { return };
        if !ended && !lock(m).due() {
            return;
        }
        let gauges = metrics::Gauges {
            held_escalations: self.escalations.list().len(),
            ledger: lock(&self.writer).stats(),
            ended,
        };
        if let Some(e) = lock(m).write(&gauges) {
            eprintln!("lexecon: {e}; the run goes on without metrics");
        }
    }

    /// Opens what answers held escalations: the approval socket (`wait`;
    /// protected from the tree as the ledger's own) and the terminal prompt
    /// (`ask`). Their threads start later ([`Session::approval_tick`]).
    fn open_approvers(&mut self, wait: bool, ask: bool) -> Result<(), String> {
        if wait {
            let path = self.protected.approval_socket.clone();
            let s = crate::approval::Server::bind(&path).map_err(|e| {
                format!("cannot create the approval socket {}: {e}", path.display())
            })?;
            self.protected.add_ledger_object(&path);
            *lock(&self.approval_server) = Some(s);
        }
        if ask {
            let t = prompt::Terminal::open().ok_or(
                "--on-escalate prompt needs a controlling terminal, and the supervisor has none (use wait and answer with `lexecon approve/deny`)",
            )?;
            *lock(&self.terminal) = Some(t);
        }
        Ok(())
    }

    /// Seals a run that failed with `e` before its command's outcome was
    /// known (its set-up, or supervising it): what was recorded is sealed,
    /// with `e` as the run's failure. Returns `e`, to be reported.
    fn abandon(self, run_id: String, e: anyhow::Error) -> anyhow::Error {
        self.finish(
            supervisor::Outcome::NotStarted(libc::EIO),
            run_id,
            Some(e.to_string()),
        );
        e
    }

    /// Seals the run and returns the summary.
    pub fn finish(
        self,
        outcome: supervisor::Outcome,
        run_id: String,
        failure: Option<String>,
    ) -> Summary {
        self.approval_stop();
        let (exit_status, signal, mut note) = match outcome {
            supervisor::Outcome::Ran(Exit::Code(c)) => (Some(c), None, None),
            supervisor::Outcome::Ran(Exit::Signal(s)) => (None, Some(s), None),
            supervisor::Outcome::NotStarted(e) => (
                None,
                None,
                Some(format!(
                    "the command could not be executed: {}",
                    std::io::Error::from_raw_os_error(e)
                )),
            ),
        };
        if let Some(f) = failure {
            note = Some(format!("the supervisor failed: {f}"));
        }
        let seal_error = lock(&self.writer)
            .end_run(RunEnd {
                exit_status,
                signal,
                note,
            })
            .err()
            .map(|e| e.to_string());
        if seal_error.is_none() {
            self.write_metrics(true);
        }
        let writer = self.writer.into_inner().unwrap_or_else(|p| p.into_inner());
        let anchor = writer
            .last_seal()
            .and_then(|n| crate::ledger::Anchor::from_note(n, "").ok())
            .map(|a| a.to_line());
        let st = self.state.into_inner().unwrap_or_else(|p| p.into_inner());
        Summary {
            outcome,
            counts: st.counts,
            blocked: st.blocked,
            would_block: st.would_block,
            escalations: st.escalations,
            record_failures: st.record_failures,
            ledger: writer.path().to_path_buf(),
            run_id,
            mode: self.mode,
            policy_path: self.policy_path,
            policy_sha256: self.policy_sha256,
            exit: None,
            seal_error,
            anchor,
            verify_hint: self.hints.verify,
        }
    }
}

impl Judge for Session {
    fn judge(
        &self,
        caller: &Caller,
        syscall: &'static str,
        action: &Action,
        identity: Option<&Identity>,
        loaded: Option<&Action>,
    ) -> Ruling {
        let started = std::time::Instant::now();
        let (mut decision, builtin) = self.decide(action, identity, loaded, is_code_map(syscall));
        if let Some(r) = self.escalated(
            caller, syscall, action, identity, loaded, &decision, builtin,
        ) {
            return r;
        }
        let (mut outcome, mut note) = self.carry_out(decision.verdict, builtin, Outcome::Refused);
        let ended = note.clone();
        let code_map = is_code_map(syscall).then_some(CODE_MAP_NOTE);
        if let Some(what) = tmpfile_note(action).or(code_map) {
            note = Some(note.map_or_else(|| what.to_string(), |n| format!("{what}; {n}")));
        }
        let seq = self.record_request(
            caller,
            action,
            loaded,
            &mut decision,
            &mut outcome,
            builtin,
            identity,
            &mut note,
        );
        if let Some(m) = &self.metrics {
            let mut m = lock(m);
            m.judged(started.elapsed());
        }
        let hint = match (decision.verdict, outcome) {
            (Verdict::Escalate, Outcome::Refused) if self.on_escalate == OnEscalate::Block => {
                NO_APPROVER_HINT
            }
            _ => "",
        };
        let observed = self.mode == Mode::Observe && !builtin && outcome == Outcome::Allowed;
        match decision.verdict {
            Verdict::Block | Verdict::Escalate if observed => {
                let (verb, hint) = if decision.verdict == Verdict::Block {
                    ("would block", "observe mode: allowed")
                } else {
                    ("would escalate", "observe mode: allowed without asking")
                };
                self.show(
                    ListKind::WouldBlock,
                    None,
                    verb,
                    &describe_call(syscall, action),
                    decision.rule.as_deref().unwrap_or("default"),
                    &decision.reason,
                    hint,
                    seq,
                );
            }
            Verdict::Escalate if !builtin => {
                let ended = if hint.is_empty() {
                    ended.unwrap_or_else(|| outcome.as_str().to_string())
                } else {
                    "blocked: no approver attached (--on-escalate block)".to_string()
                };
                self.note_escalation(syscall, action, &decision, &ended, seq);
            }
            _ => {}
        }
        self.answer(caller, syscall, seq, action, &decision, outcome, hint)
    }

    fn exec_committed(
        &self,
        caller: &Caller,
        action: &Action,
        identity: Option<&Identity>,
        requested: Option<&Action>,
        loaded: Option<&Action>,
    ) -> bool {
        let (decision, builtin) = self.decide(action, identity, loaded, false);
        let (outcome, mut note) = self
            .confirm_escalated(action, &decision, builtin)
            .unwrap_or_else(|| self.carry_out(decision.verdict, builtin, Outcome::Killed));
        if requested.is_none() {
            let n = "no matching exec request was seen for this thread".to_string();
            note = Some(note.map_or(n.clone(), |m| format!("{m}; {n}")));
        }
        let hint = if outcome == Outcome::Allowed {
            String::new()
        } else {
            let why = note.clone().unwrap_or_default();
            if why.is_empty() {
                "refused at the exec itself, after the program was loaded".to_string()
            } else {
                format!("refused at the exec itself: {why}")
            }
        };
        let seq = self.record(
            caller,
            action,
            loaded,
            Stage::Confirm,
            &decision,
            outcome,
            identity,
            note,
        );
        if seq.is_some() {
            self.count_confirmation(&decision, outcome, requested.is_some());
        }
        if outcome != Outcome::Allowed {
            self.report(caller, "execve", seq, action, &decision, "killed", &hint);
            return false;
        }
        if seq.is_none() {
            self.report_record_failed(caller, "execve", action, "killed");
            return false;
        }
        true
    }

    fn dns_answer(
        &self,
        caller: &Caller,
        query: &str,
        resolver: &str,
        rcode: Option<u8>,
        bindings: &[(String, std::net::IpAddr)],
    ) {
        let entry = ledger::DnsEntry {
            pid: caller.pid,
            ppid: caller.ppid,
            query,
            resolver,
            rcode,
            bindings,
        };
        if let Err(e) = lock(&self.writer).append_dns(&entry) {
            let mut st = lock(&self.state);
            st.record_failures += 1;
            if st.first_record_error.is_none() {
                eprintln!("lexecon: cannot write the ledger: {e}");
                st.first_record_error = Some(e.to_string());
            }
        }
    }

    fn refused(&self, caller: &Caller, syscall: &str, why: &str, errno: i32) {
        let rule = if why.contains("aimed at the supervisor (signal") {
            builtin::SIGNAL
        } else if why.contains("aimed at the supervisor") {
            builtin::PROCESS
        } else if why.contains("aimed outside the supervised tree") {
            builtin::OUTSIDE_TREE
        } else if why.contains("held calls are already waiting")
            || why.contains("no thread could be started to hold it")
        {
            builtin::HELD_LIMIT
        } else if why.contains("to DNS port") {
            builtin::DNS_PORT
        } else if syscall == "connect" {
            // Only the approval socket reports refused connections.
            builtin::APPROVAL
        } else {
            builtin::UNDECODABLE
        };
        let entry = ledger::RefusalEntry {
            pid: caller.pid,
            ppid: caller.ppid,
            syscall,
            rule,
            reason: why,
            errno,
        };
        let seq = match lock(&self.writer).append_refusal(&entry) {
            Ok(seq) => {
                if let Some(m) = &self.metrics {
                    let mut m = lock(m);
                    m.refusal();
                }
                Some(seq)
            }
            Err(e) => {
                let mut st = lock(&self.state);
                st.record_failures += 1;
                if st.first_record_error.is_none() {
                    eprintln!("lexecon: cannot write the ledger: {e}");
                    st.first_record_error = Some(e.to_string());
                }
                None
            }
        };
        // Refusals by a built-in rule are told to the caller; calls that
        // could not be decoded are noise to it, and a refused connection to
        // the approval socket has already been answered.
        let tell = matches!(
            rule,
            builtin::SIGNAL | builtin::PROCESS | builtin::OUTSIDE_TREE | builtin::HELD_LIMIT
        );
        self.show(
            ListKind::Blocked,
            tell.then_some(caller),
            "refused",
            &format!("{syscall} by pid {}", caller.pid),
            rule,
            why,
            &std::io::Error::from_raw_os_error(errno).to_string(),
            seq,
        );
    }

    fn tick(&self) {
        self.approval_tick();
        self.write_metrics(false);
        self.gate_tick();
        if let Err(e) = lock(&self.writer).checkpoint_if_due() {
            let mut st = lock(&self.state);
            if st.first_record_error.is_none() {
                eprintln!("lexecon: cannot write a ledger checkpoint: {e}");
                st.first_record_error = Some(e.to_string());
            }
        }
    }
}

/// Stops the tree, for a breaker that says so: kills `caller` and the
/// process of its ancestry whose parent is the supervisor (the command, or
/// an orphan re-parented to it); when the command dies the tracer kills
/// every process left. Every later action of a process still running is
/// blocked, and the process killed, as its call reaches the judge.
/// Nothing is killed that is not part of the supervised tree (a one-shot
/// decision's asker is not).
fn stop_tree(caller: &Caller) {
    let me = crate::os::pid();
    if !matches!(crate::approval::in_tree(caller.pid, me), Ok(Some(_))) {
        return;
    }
    let mut top = caller.pid;
    for _ in 0..4096 {
        let parent = crate::approval::parent_of(top);
        if parent == me || parent <= 1 {
            break;
        }
        top = parent;
    }
    let _ = supervisor::sys::kill(caller.pid, libc::SIGKILL);
    if crate::approval::parent_of(top) == me {
        let _ = supervisor::sys::kill(top, libc::SIGKILL);
    }
}

/// Runs `command` supervised in a session; seals the run.
pub fn run(
    cfg: SessionConfig,
    writer: LedgerWriter,
    command: &supervisor::Command,
    cwd: &Path,
) -> anyhow::Result<Summary> {
    let wait = matches!(cfg.on_escalate, OnEscalate::Wait | OnEscalate::Prompt);
    let ask = cfg.on_escalate == OnEscalate::Prompt;
    let gate_wanted = cfg.gate;
    let (mut session, run_id) = Session::begin(cfg, writer, &command.argv, cwd)?;
    crate::timing::mark("run header written");
    if let Err(e) = session.open_approvers(wait, ask) {
        return Err(session.abandon(run_id, anyhow::anyhow!(e)));
    }
    let mut command = command.clone();
    let mut gate_server = None;
    if gate_wanted {
        let path = gate::socket_path(&session.protected.ledger_file);
        if path.as_os_str().len() >= 108 {
            eprintln!(
                "lexecon: no gate for this run: its socket path {} is longer than a socket address may be (107 bytes); use a shorter --ledger path",
                escape::path(&path)
            );
        } else {
            match crate::approval::Server::bind(&path).and_then(|s| {
                s.pass_credentials()?;
                Ok(s)
            }) {
                Ok(s) => {
                    session.protected.add_ledger_object(&path);
                    session.protected.gate_socket = Some(path.clone());
                    command.env.retain(|(k, _)| k != crate::gate::GATE_ENV);
                    command
                        .env
                        .push((crate::gate::GATE_ENV.into(), path.into_os_string()));
                    gate_server = Some(s);
                }
                Err(e) => {
                    let e =
                        anyhow::anyhow!("cannot create the gate socket {}: {e}", path.display());
                    return Err(session.abandon(run_id, e));
                }
            }
        }
    }
    let session = Arc::new(session);
    if let Some(s) = gate_server {
        // Served from a supervisor thread (see `gate_tick`), whose threads
        // leave the signals forwarded to the command to the supervisor.
        *lock(&session.gate_start) = Some((s, Arc::clone(&session)));
    }
    let judge: Arc<dyn Judge> = Arc::clone(&session) as Arc<dyn Judge>;
    let outcome = supervisor::run(&command, judge);
    crate::timing::mark("command ended, supervisor joined");
    session.gate_stop();
    // The loop, the tracer and the held calls' threads are joined; a worker
    // still answering a call of the (now ended) tree — a network call
    // performed on its own thread — ends on its own: wait for it, so that no
    // record can follow the seal.
    let mut session = session;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let session = loop {
        match Arc::try_unwrap(session) {
            Ok(s) => break s,
            Err(still) if std::time::Instant::now() < deadline => {
                session = still;
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
            Err(_) => anyhow::bail!(
                "internal error: a worker thread still used the session 30 s after the run ended; the run is left unsealed (seal it with `lexecon ledger recover`)"
            ),
        }
    };
    crate::timing::mark("session released by every thread");
    match outcome {
        Ok(outcome) => Ok(session.finish(outcome, run_id, None)),
        Err(e) => Err(session.abandon(run_id, e.into())),
    }
}

/// `1 action`, `2 actions`.
fn count(n: u64, noun: &str) -> String {
    if n == 1 {
        format!("1 {noun}")
    } else {
        format!("{n} {noun}s")
    }
}

/// Why `lexecon-supervise` returns the exit code it returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitReason {
    /// The command's own status (or 126/127 when it could not start).
    Command,
    /// `--fail-on-block`: the command succeeded, but something was blocked.
    FailOnBlock,
    /// The run could not be sealed (125).
    NotSealed,
}

impl ExitReason {
    pub fn as_str(self) -> &'static str {
        match self {
            ExitReason::Command => "command",
            ExitReason::FailOnBlock => "fail-on-block",
            ExitReason::NotSealed => "not-sealed",
        }
    }
}

/// Most entries of a list the markdown summary shows.
const MARKDOWN_LISTED: usize = 50;

/// Most entries of a list the text summary shows.
const TEXT_LISTED: usize = 10;

/// `entries` (as `(count, line)`) cut to `max`, and how many occurrences
/// were left out (with `unlisted` ones).
fn first_of(list: &report::List, max: usize) -> (&[report::Listed], u64) {
    let shown = &list.entries[..list.entries.len().min(max)];
    let left = list.total() - shown.iter().map(|e| e.count).sum::<u64>();
    (shown, left)
}

impl Summary {
    /// The exit code the command's own ending maps to.
    pub fn exit_code(&self) -> u8 {
        match self.outcome {
            supervisor::Outcome::Ran(Exit::Code(c)) => c.clamp(0, 255) as u8,
            supervisor::Outcome::Ran(Exit::Signal(s)) => (128 + s).clamp(0, 255) as u8,
            supervisor::Outcome::NotStarted(libc::ENOENT) => 127,
            supervisor::Outcome::NotStarted(_) => 126,
        }
    }

    /// Actions refused or killed.
    pub fn blocks(&self) -> u64 {
        self.counts.refused + self.counts.killed
    }

    /// Decides the exit code of `lexecon-supervise` (kept in
    /// [`Summary::exit`]): the command's, unless `--fail-on-block` turns a
    /// success with blocks into 1, or the run could not be sealed (125).
    pub fn decide_exit(&mut self, fail_on_block: bool) -> u8 {
        let mut exit = (self.exit_code(), ExitReason::Command);
        if fail_on_block && exit.0 == 0 && self.blocks() > 0 {
            exit = (1, ExitReason::FailOnBlock);
        }
        if self.seal_error.is_some() && exit.0 == 0 {
            exit = (125, ExitReason::NotSealed);
        }
        self.exit = Some(exit);
        exit.0
    }

    /// The exit code returned (decided, else the command's).
    pub fn returned(&self) -> (u8, ExitReason) {
        self.exit.unwrap_or((self.exit_code(), ExitReason::Command))
    }

    /// Why the exit code is not the command's, in one line.
    pub fn exit_explanation(&self) -> Option<String> {
        let (code, why) = self.returned();
        match why {
            ExitReason::Command => None,
            ExitReason::FailOnBlock => {
                let n = self.blocks();
                Some(format!(
                    "lexecon: exit status {code} although the command succeeded: {n} action{} blocked and --fail-on-block is set",
                    if n == 1 { " was" } else { "s were" }
                ))
            }
            ExitReason::NotSealed => Some(format!(
                "lexecon: error: exit status {code}: the run was not sealed: {}",
                self.seal_error.as_deref().unwrap_or("")
            )),
        }
    }

    fn command_status(&self) -> String {
        match self.outcome {
            supervisor::Outcome::Ran(Exit::Code(code)) => format!("exited with status {code}"),
            supervisor::Outcome::Ran(Exit::Signal(sig)) => format!("killed by signal {sig}"),
            supervisor::Outcome::NotStarted(e) => {
                format!(
                    "could not be executed: {}",
                    std::io::Error::from_raw_os_error(e)
                )
            }
        }
    }

    fn policy_shown(&self) -> String {
        match &self.policy_path {
            Some(p) => escape::path(p),
            None => "the built-in default policy".to_string(),
        }
    }

    /// The end-of-run summary for humans.
    pub fn text(&self) -> String {
        let c = &self.counts;
        let mut s = String::new();
        let _ = writeln!(s, "lexecon: command {}", self.command_status());
        let _ = writeln!(
            s,
            "lexecon: {} judged ({} mode): {} allowed, {} blocked, {} killed after exec",
            count(c.decisions, "action"),
            self.mode,
            c.allowed,
            c.refused,
            c.killed
        );
        let line = |s: &mut String, e: &report::Listed, verb: &str| {
            let reason = if e.reason.is_empty() {
                String::new()
            } else {
                format!(": {}", escape::text(&e.reason))
            };
            let _ = writeln!(
                s,
                "lexecon:   {verb} {}{} (rule {}, {}){reason}",
                e.what,
                e.times(),
                escape::text(&e.rule),
                e.records()
            );
        };
        let list = |s: &mut String, l: &report::List, head: &str, verb: Option<&str>| {
            if l.is_empty() {
                return;
            }
            let _ = writeln!(s, "lexecon: {head}:");
            let (shown, left) = first_of(l, TEXT_LISTED);
            for e in shown {
                line(s, e, verb.unwrap_or(&e.how));
            }
            if left > 0 {
                let _ = writeln!(s, "lexecon:   and {left} more (the ledger has them all)");
            }
        };
        // Network refusals, counted apart: "3 connections refused: …".
        let net: Vec<&report::Listed> = self
            .blocked
            .entries
            .iter()
            .filter(|e| {
                ["connect ", "send ", "resolve ", "bind ", "listen "]
                    .iter()
                    .any(|v| e.what.starts_with(v))
            })
            .collect();
        if !net.is_empty() {
            let n: u64 = net.iter().map(|e| e.count).sum();
            let mut firsts: Vec<&str> = Vec::new();
            for e in &net {
                let first = e.what.split(" (").next().unwrap_or(&e.what);
                if !firsts.contains(&first) && firsts.len() < 5 {
                    firsts.push(first);
                }
            }
            let _ = writeln!(
                s,
                "lexecon: {} refused: {}{}",
                count(n, "network action"),
                firsts.join(", "),
                if net.len() > firsts.len() {
                    ", …"
                } else {
                    ""
                }
            );
        }
        list(&mut s, &self.blocked, "blocked", None);
        if !self.would_block.is_empty() {
            let n = self.would_block.total();
            list(
                &mut s,
                &self.would_block,
                &format!(
                    "observe mode: {n} action{} would have been refused or escalated",
                    if n == 1 { "" } else { "s" }
                ),
                None,
            );
        }
        if c.escalate > 0 {
            let _ = writeln!(s, "lexecon: {}", count(c.escalate, "escalated action"));
            let (shown, left) = first_of(&self.escalations, TEXT_LISTED);
            for e in shown {
                let _ = writeln!(
                    s,
                    "lexecon:   {}{} (rule {}, {}): {}",
                    e.what,
                    e.times(),
                    escape::text(&e.rule),
                    e.records(),
                    escape::text(&e.how)
                );
            }
            if left > 0 {
                let _ = writeln!(s, "lexecon:   and {left} more (the ledger has them all)");
            }
        }
        if self.record_failures > 0 {
            let _ = writeln!(
                s,
                "lexecon: {} refused because the ledger could not be written",
                count(self.record_failures, "action")
            );
        }
        if let Some(e) = &self.seal_error {
            let _ = writeln!(s, "lexecon: the run could not be sealed: {e}");
        }
        let _ = writeln!(
            s,
            "lexecon: ledger {} (run {}); check it with: {}",
            escape::path(&self.ledger),
            self.run_id,
            self.verify_hint,
        );
        if let Some(a) = &self.anchor {
            let _ = writeln!(s, "lexecon: anchor (keep a copy off this machine; `lexecon verify --anchor FILE` checks it): {a}");
        }
        s
    }

    /// The machine-readable summary (`--json-summary`).
    pub fn json(&self) -> serde_json::Value {
        let (exit_status, signal, exec_errno) = match self.outcome {
            supervisor::Outcome::Ran(Exit::Code(c)) => (Some(c), None, None),
            supervisor::Outcome::Ran(Exit::Signal(s)) => (None, Some(s), None),
            supervisor::Outcome::NotStarted(e) => (None, None, Some(e)),
        };
        let (code, why) = self.returned();
        let entries = |l: &report::List, outcome_key: &str| {
            l.entries
                .iter()
                .map(|e| {
                    serde_json::json!({
                        "record": e.first,
                        "last_record": e.last,
                        "count": e.count,
                        "action": e.what,
                        "rule": e.rule,
                        "reason": e.reason,
                        outcome_key: e.how,
                    })
                })
                .collect::<Vec<_>>()
        };
        serde_json::json!({
            "run_id": self.run_id,
            "ledger": self.ledger.to_string_lossy(),
            "mode": self.mode.as_str(),
            "policy": {
                "path": self.policy_path.as_ref().map(|p| p.to_string_lossy()),
                "sha256": hex::encode(self.policy_sha256),
            },
            "exit_code": code,
            "exit_reason": why.as_str(),
            "command": {
                "exit_code": self.exit_code(),
                "exit_status": exit_status,
                "signal": signal,
                "exec_errno": exec_errno,
            },
            "exit_status": exit_status,
            "signal": signal,
            "exec_errno": exec_errno,
            "counts": {
                "decisions": self.counts.decisions,
                "allow": self.counts.allow,
                "escalate": self.counts.escalate,
                "block": self.counts.block,
                "allowed": self.counts.allowed,
                "refused": self.counts.refused,
                "killed": self.counts.killed,
            },
            "record_failures": self.record_failures,
            "sealed": self.seal_error.is_none(),
            "anchor": self.anchor,
            "blocked": entries(&self.blocked, "outcome"),
            "blocked_unlisted": self.blocked.unlisted,
            "would_block": entries(&self.would_block, "verdict"),
            "would_block_unlisted": self.would_block.unlisted,
            "escalations": entries(&self.escalations, "ended"),
            "escalations_unlisted": self.escalations.unlisted,
        })
    }

    /// Markdown for `$GITHUB_STEP_SUMMARY`.
    pub fn markdown(&self) -> String {
        let c = &self.counts;
        let mut s = String::from("### Lexecon\n\n");
        // Actions, rules, reasons and paths only ever inside code spans
        // (see `escape::code_span`): no line break, link, image or HTML.
        let (code, why) = self.returned();
        let _ = write!(
            s,
            "Exit status **{code}**: the command {}",
            self.command_status()
        );
        match why {
            ExitReason::Command => s.push_str(".\n\n"),
            ExitReason::FailOnBlock => {
                let _ = write!(
                    s,
                    "; {} blocked and `--fail-on-block` is set.\n\n",
                    self.blocks()
                );
            }
            ExitReason::NotSealed => s.push_str("; the run could not be sealed.\n\n"),
        }
        let _ = writeln!(
            s,
            "Policy: {} (SHA-256 `{}`), {} mode.\n",
            escape::code_span(&self.policy_shown()),
            hex::encode(self.policy_sha256),
            self.mode
        );
        let _ = writeln!(
            s,
            "| judged | allowed | blocked | killed | escalated |\n|---:|---:|---:|---:|---:|"
        );
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {} |\n",
            c.decisions, c.allowed, c.refused, c.killed, c.escalate
        );
        let item = |s: &mut String, e: &report::Listed, lead: &str| {
            let reason = if e.reason.is_empty() {
                String::new()
            } else {
                format!(": {}", escape::code_span(&e.reason))
            };
            let _ = writeln!(
                s,
                "- {lead}{}{} (rule {}, {}){reason}",
                escape::code_span(&e.what),
                e.times(),
                escape::code_span(&e.rule),
                e.records()
            );
        };
        let more = |s: &mut String, left: u64| {
            if left > 0 {
                let _ = writeln!(s, "- and {left} more (the ledger has them all)");
            }
        };
        if !self.blocked.is_empty() {
            let _ = writeln!(s, "**Blocked** ({}):\n", self.blocked.total());
            let (shown, left) = first_of(&self.blocked, MARKDOWN_LISTED);
            for e in shown {
                item(&mut s, e, &format!("{} ", e.how));
            }
            more(&mut s, left);
            s.push('\n');
        }
        if !self.escalations.is_empty() {
            let _ = writeln!(s, "**Escalations** ({}):\n", self.escalations.total());
            let (shown, left) = first_of(&self.escalations, MARKDOWN_LISTED);
            for e in shown {
                item(&mut s, e, "");
                let _ = writeln!(s, "  - ended: {}", escape::code_span(&e.how));
            }
            more(&mut s, left);
            s.push('\n');
        }
        if !self.would_block.is_empty() {
            let _ = writeln!(
                s,
                "**Would have been refused or escalated** (observe mode, {}):\n",
                self.would_block.total()
            );
            let (shown, left) = first_of(&self.would_block, MARKDOWN_LISTED);
            for e in shown {
                item(&mut s, e, &format!("{} ", e.how));
            }
            more(&mut s, left);
            s.push('\n');
        }
        let _ = writeln!(
            s,
            "Ledger: {} (run `{}`)",
            escape::code_span(&escape::path(&self.ledger)),
            self.run_id
        );
        if let Some(a) = &self.anchor {
            let _ = writeln!(
                s,
                "\nAnchor (check with `lexecon verify LEDGER --anchor FILE`):\n\n```\n{a}\n```"
            );
        }
        s
    }

    /// Appends the markdown summary to `$GITHUB_STEP_SUMMARY` when set.
    pub fn write_github_step_summary(&self) {
        let Some(path) = std::env::var_os("GITHUB_STEP_SUMMARY") else {
            return;
        };
        if path.as_bytes().is_empty() {
            return;
        }
        if let Ok(mut f) = std::fs::OpenOptions::new()
            .append(true)
            .create(true)
            .open(&path)
        {
            let _ = f.write_all(self.markdown().as_bytes());
        }
    }
}
