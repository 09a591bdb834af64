//! The shared vocabulary: what a supervised process asked to do ([`Action`]) and
//! what was decided about it ([`Verdict`], [`Decision`]).
//!
//! Plain data, no I/O. The supervisor produces actions, the policy judges them,
//! the ledger records them. Paths and argv elements are raw bytes
//! ([`PathBuf`] / [`OsString`]) so that nothing is lost when they are not UTF-8.

use std::ffi::OsString;
use std::fmt;
use std::path::PathBuf;

/// One thing a process in the supervised tree asked the kernel to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Start a program (`execve`, `execveat`).
    Exec(ExecAction),
    /// Open a file (`open`, `openat`, `openat2`, `creat`).
    Open(OpenAction),
    /// Reach the network or a local socket: `connect`, a datagram sent to an
    /// address, `bind`, `listen`, or a DNS query the tree sends.
    Connect(ConnectAction),
    /// A named tool call an agent harness asks about through the gate
    /// (`lexecon decide`, `lexecon hook`, the in-run gate channel): an MCP
    /// tool, a "deploy" tool. Never a system call: what the tool then does
    /// in the tree is judged again when it reaches the kernel.
    Tool(ToolAction),
}

impl Action {
    /// The kind of this action, as named in policies and records.
    pub fn kind(&self) -> ActionKind {
        match self {
            Action::Exec(_) => ActionKind::Exec,
            Action::Open(_) => ActionKind::Open,
            Action::Connect(_) => ActionKind::Connect,
            Action::Tool(_) => ActionKind::Tool,
        }
    }
}

/// The kinds of action Lexecon judges. New kinds are added here.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ActionKind {
    Exec,
    Open,
    Connect,
    Tool,
}

impl ActionKind {
    /// The lowercase name used in policy files and ledger records.
    pub fn as_str(self) -> &'static str {
        match self {
            ActionKind::Exec => "exec",
            ActionKind::Open => "open",
            ActionKind::Connect => "connect",
            ActionKind::Tool => "tool",
        }
    }
}

impl fmt::Display for ActionKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A program execution.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecAction {
    /// Absolute, normalised path of the program file as the kernel resolves it
    /// (symlinks followed). For a `#!` script this is the script; the
    /// interpreter is judged as an exec of its own.
    pub path: PathBuf,
    /// The argument vector exactly as passed (`argv[0]` included).
    pub argv: Vec<OsString>,
    /// Working directory of the process at the time of the call.
    pub cwd: PathBuf,
    /// SHA-256 of the program file's content, when it could be read.
    pub sha256: Option<[u8; 32]>,
}

/// The last component of an [`OpenAction`]'s path for an `O_TMPFILE` open:
/// the file created has no name, and is judged as a file in the directory
/// the call names (`/tmp/<O_TMPFILE>`), so that a rule on `/tmp/**` covers it.
/// No real name is confused with it in a record: the record also carries
/// the `O_TMPFILE` note.
pub const UNNAMED_TMPFILE: &str = "<O_TMPFILE>";

/// A file open.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenAction {
    /// Absolute, normalised path of the file as the kernel resolves it for
    /// the calling process (relative paths, dirfds, `..`, symlinks and
    /// `/proc/self` already resolved).
    pub path: PathBuf,
    /// What the open asks for.
    pub access: Access,
    /// Working directory of the process at the time of the call.
    pub cwd: PathBuf,
    /// The program the calling process runs, as confirmed when it started
    /// running it; `None` when it is not known.
    pub process: Option<ProcessInfo>,
    /// The operation: a plain open, or a call that changes the file
    /// another way (judged on this path with the access it amounts to).
    pub op: FileOp,
    /// What the operation sets, when it is more than its access says (the
    /// new mode, owner, or a symlink's text).
    pub detail: Option<OpDetail>,
}

/// What a call judged as an [`OpenAction`] does to the file. A rule that
/// names no operation judges every one of them by its access; one that
/// names some (`op:` in a policy) judges only those.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, PartialOrd, Ord)]
pub enum FileOp {
    /// `open`, `openat`, `openat2`, `creat`.
    #[default]
    Open,
    /// `unlink`, `unlinkat`, `rmdir`.
    Delete,
    /// `rename`, `renameat`, `renameat2` (either path).
    Rename,
    /// `link`, `linkat` (either path).
    Link,
    /// `mkdir`, `mkdirat`.
    Mkdir,
    /// `symlink`, `symlinkat` (the new name).
    Symlink,
    /// `mknod`, `mknodat`.
    Mknod,
    /// `chmod`, `fchmod`, `fchmodat`, `fchmodat2`.
    Chmod,
    /// `chown`, `fchown`, `lchown`, `fchownat`.
    Chown,
    /// `utime`, `utimes`, `futimesat`, `utimensat`.
    SetTimes,
    /// `setxattr`, `removexattr` and their `l`/`f` forms.
    Xattr,
    /// `truncate(2)` (`ftruncate` acts on a descriptor already judged).
    Truncate,
    /// `ioctl`s that set inode flags (`FS_IOC_SETFLAGS`, `FS_IOC_FSSETXATTR`).
    SetFlags,
}

impl FileOp {
    /// Every operation, in a fixed order.
    pub const ALL: [FileOp; 13] = [
        FileOp::Open,
        FileOp::Delete,
        FileOp::Rename,
        FileOp::Link,
        FileOp::Mkdir,
        FileOp::Symlink,
        FileOp::Mknod,
        FileOp::Chmod,
        FileOp::Chown,
        FileOp::SetTimes,
        FileOp::Xattr,
        FileOp::Truncate,
        FileOp::SetFlags,
    ];

    /// The name used in policy files and ledger records.
    pub fn as_str(self) -> &'static str {
        match self {
            FileOp::Open => "open",
            FileOp::Delete => "delete",
            FileOp::Rename => "rename",
            FileOp::Link => "link",
            FileOp::Mkdir => "mkdir",
            FileOp::Symlink => "symlink",
            FileOp::Mknod => "mknod",
            FileOp::Chmod => "chmod",
            FileOp::Chown => "chown",
            FileOp::SetTimes => "set-times",
            FileOp::Xattr => "xattr",
            FileOp::Truncate => "truncate",
            FileOp::SetFlags => "set-flags",
        }
    }

    /// The operation with this name, if any.
    pub fn from_name(name: &str) -> Option<FileOp> {
        FileOp::ALL.into_iter().find(|o| o.as_str() == name)
    }

    /// The operation's bit in a [`FileOps`] set.
    const fn bit(self) -> u16 {
        1 << self as u16
    }
}

impl fmt::Display for FileOp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A set of [`FileOp`]s.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct FileOps(u16);

impl FileOps {
    pub const fn empty() -> FileOps {
        FileOps(0)
    }

    pub fn insert(&mut self, op: FileOp) {
        self.0 |= op.bit();
    }

    pub const fn contains(self, op: FileOp) -> bool {
        self.0 & op.bit() != 0
    }

    /// The set as names, in the order of [`FileOp::ALL`].
    pub fn names(self) -> Vec<&'static str> {
        FileOp::ALL
            .into_iter()
            .filter(|o| self.contains(*o))
            .map(FileOp::as_str)
            .collect()
    }
}

impl fmt::Display for FileOps {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.names().join(","))
    }
}

/// What an operation sets, as the call asked (read once from the caller).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum OpDetail {
    /// `chmod`: the new mode (`0o7777` bits); `mkdir`: the mode asked for,
    /// before the umask; `mknod`: the file type and mode asked for.
    Mode(u32),
    /// `chown`: the new owner and group; `None` leaves it unchanged (`-1`).
    Owner { uid: Option<u32>, gid: Option<u32> },
    /// `symlink`: the link's text, never resolved.
    Target(OsString),
}

/// The program a process runs, as the supervisor confirmed it at the
/// process's exec (after the kernel committed to the new image, before its
/// first instruction), and inherited across `fork` (a child runs its
/// parent's image until it executes another). Never `argv[0]` or the
/// process's name, which the process chooses.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ProcessInfo {
    /// Absolute path of the program file as the kernel resolved it at the
    /// exec (symlinks followed). For a `#!` script, the interpreter.
    pub program: PathBuf,
    /// SHA-256 of the program file's content at the exec, when known.
    pub sha256: Option<[u8; 32]>,
    /// (device, inode) of the program file, when known.
    pub file: Option<(u64, u64)>,
    /// Set when the program's identity says nothing about the code that
    /// runs in the process: its initial environment asks the dynamic loader
    /// to load other code into it (`LD_PRELOAD`, `LD_AUDIT`,
    /// `LD_LIBRARY_PATH`), or could not be read. Names the reason.
    pub injected: Option<String>,
}

impl ProcessInfo {
    /// The program, as far as conditions on it may rely on it: `None` when
    /// other code was injected into it.
    pub fn trusted(&self) -> Option<&ProcessInfo> {
        self.injected.is_none().then_some(self)
    }
}

impl OpenAction {
    /// Whether the call moves a directory, and with it everything beneath
    /// it (a `rename` of a directory, either side of a `RENAME_EXCHANGE`):
    /// the only calls judged with `read`, `write` and `directory` together.
    /// (`rmdir` removes only an empty directory.)
    pub fn moves_subtree(&self) -> bool {
        self.access
            .contains(Access::READ | Access::WRITE | Access::DIRECTORY)
    }
}

/// The access an open asks for: a set of [`Access`] flags.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Access(u8);

impl Access {
    /// Read the content (`O_RDONLY`, `O_RDWR`; also `O_PATH`, judged as a read).
    pub const READ: Access = Access(1 << 0);
    /// Write the content (`O_WRONLY`, `O_RDWR`).
    pub const WRITE: Access = Access(1 << 1);
    /// May create the file (`O_CREAT`, `O_TMPFILE`, `creat`).
    pub const CREATE: Access = Access(1 << 2);
    /// Truncates the file (`O_TRUNC`, `creat`).
    pub const TRUNCATE: Access = Access(1 << 3);
    /// Appends (`O_APPEND`).
    pub const APPEND: Access = Access(1 << 4);
    /// Opens a directory (`O_DIRECTORY`, or the path is a directory).
    pub const DIRECTORY: Access = Access(1 << 5);

    /// Every flag, with its name, in a fixed order.
    pub const ALL: [(Access, &'static str); 6] = [
        (Access::READ, "read"),
        (Access::WRITE, "write"),
        (Access::CREATE, "create"),
        (Access::TRUNCATE, "truncate"),
        (Access::APPEND, "append"),
        (Access::DIRECTORY, "directory"),
    ];

    /// The empty set.
    pub const fn empty() -> Access {
        Access(0)
    }

    /// The raw bits (stable: used in tests and benchmarks, not in records).
    pub const fn bits(self) -> u8 {
        self.0
    }

    /// Whether every flag of `other` is in `self`.
    pub const fn contains(self, other: Access) -> bool {
        self.0 & other.0 == other.0
    }

    /// Whether any flag of `other` is in `self`.
    pub const fn intersects(self, other: Access) -> bool {
        self.0 & other.0 != 0
    }

    /// The flags of `self` that are not in `other`.
    pub const fn difference(self, other: Access) -> Access {
        Access(self.0 & !other.0)
    }

    /// Whether the set is empty.
    pub const fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// The set as names, in the fixed order of [`Access::ALL`].
    pub fn names(self) -> Vec<&'static str> {
        Access::ALL
            .iter()
            .filter(|(a, _)| self.contains(*a))
            .map(|(_, n)| *n)
            .collect()
    }

    /// The flag with this name, if any.
    pub fn from_name(name: &str) -> Option<Access> {
        Access::ALL
            .iter()
            .find(|(_, n)| *n == name)
            .map(|(a, _)| *a)
    }
}

impl std::ops::BitOr for Access {
    type Output = Access;
    fn bitor(self, rhs: Access) -> Access {
        Access(self.0 | rhs.0)
    }
}

impl std::ops::BitOrAssign for Access {
    fn bitor_assign(&mut self, rhs: Access) {
        self.0 |= rhs.0;
    }
}

impl fmt::Display for Access {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.names().join(","))
    }
}

/// What a [`ConnectAction`] does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NetOp {
    /// `connect(2)` (also `sendto` with `MSG_FASTOPEN`, which connects).
    Connect,
    /// A datagram sent to an explicit address (`sendto`, `sendmsg`,
    /// `sendmmsg` with a destination).
    Send,
    /// `bind(2)`: a local address taken.
    Bind,
    /// `listen(2)` on the socket's bound address.
    Listen,
    /// A DNS query the tree sends: judged by the names it asks for.
    Resolve,
}

impl NetOp {
    pub const ALL: [(NetOp, &'static str); 5] = [
        (NetOp::Connect, "connect"),
        (NetOp::Send, "send"),
        (NetOp::Bind, "bind"),
        (NetOp::Listen, "listen"),
        (NetOp::Resolve, "resolve"),
    ];
    pub fn as_str(self) -> &'static str {
        NetOp::ALL
            .iter()
            .find(|(o, _)| *o == self)
            .map_or("connect", |(_, n)| n)
    }
    pub fn from_name(name: &str) -> Option<NetOp> {
        NetOp::ALL.iter().find(|(_, n)| *n == name).map(|(o, _)| *o)
    }
}

/// The transport of a socket, as the kernel reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Protocol {
    Tcp,
    Udp,
    /// A local (`AF_UNIX`) socket, of any type.
    Unix,
    /// Anything else (SCTP, ICMP datagram sockets, raw sockets …).
    Other,
}

impl Protocol {
    pub const ALL: [(Protocol, &'static str); 4] = [
        (Protocol::Tcp, "tcp"),
        (Protocol::Udp, "udp"),
        (Protocol::Unix, "unix"),
        (Protocol::Other, "other"),
    ];
    pub fn as_str(self) -> &'static str {
        Protocol::ALL
            .iter()
            .find(|(o, _)| *o == self)
            .map_or("other", |(_, n)| n)
    }
    pub fn from_name(name: &str) -> Option<Protocol> {
        Protocol::ALL
            .iter()
            .find(|(_, n)| *n == name)
            .map(|(o, _)| *o)
    }
}

/// Where a [`ConnectAction`] goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NetTarget {
    /// An IPv4 or IPv6 address and port. An IPv4-mapped IPv6 address
    /// (`::ffff:a.b.c.d`) is given as the IPv4 address; `family` still says
    /// which socket family the call used.
    Ip {
        family: NetFamily,
        addr: std::net::IpAddr,
        port: u16,
    },
    /// A local socket named by a path: absolute, resolved as the kernel
    /// would for the caller (its cwd, symlinks followed).
    UnixPath(PathBuf),
    /// A local socket in the abstract namespace (the name without its
    /// leading NUL byte).
    UnixAbstract(Vec<u8>),
    /// An unnamed local socket (`bind` with only the family: autobind).
    UnixUnnamed,
    /// A host name the tree asks DNS about.
    Name(String),
}

/// The address family of the socket a call used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NetFamily {
    Inet,
    Inet6,
}

impl NetFamily {
    pub fn as_str(self) -> &'static str {
        match self {
            NetFamily::Inet => "inet",
            NetFamily::Inet6 => "inet6",
        }
    }
}

/// A connection, datagram, bind, listen or DNS query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectAction {
    pub op: NetOp,
    pub protocol: Protocol,
    pub target: NetTarget,
    /// For an IP target: the host names the supervisor saw resolve to this
    /// address in this run (sorted, lowercase, without the final dot).
    /// Empty when none did: names are never guessed.
    pub names: Vec<String>,
    /// The program the calling process runs (see [`OpenAction::process`]).
    pub process: Option<ProcessInfo>,
}

/// A tool call asked about through the gate: the tool's name as the
/// harness names it (`Bash`, `mcp__github__create_issue`, `deploy`) and its
/// input, as the harness gave it. A claim by the asker, not an observation:
/// the ledger records it as such (an `intent` record).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ToolAction {
    pub name: String,
    /// The tool's input (any JSON value; usually an object).
    pub input: serde_json::Value,
    /// The working directory the asker gave (empty when not given).
    pub cwd: PathBuf,
}

/// What should happen to an action. Ordered by strength: when several rules
/// match, the greatest wins (`Block` > `Escalate` > `Allow`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Verdict {
    Allow,
    Escalate,
    Block,
}

impl Verdict {
    /// The lowercase name used in policies and records.
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Allow => "allow",
            Verdict::Escalate => "escalate",
            Verdict::Block => "block",
        }
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Whether refusals are carried out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Mode {
    /// Verdicts are carried out.
    Enforce,
    /// Everything is judged and recorded, nothing is refused; the record says
    /// what would have been refused.
    Observe,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Enforce => "enforce",
            Mode::Observe => "observe",
        }
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The outcome of judging one action against a policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// The verdict: the strongest among matching rules, or the kind's default.
    pub verdict: Verdict,
    /// Ids of every rule that matched, in policy order.
    pub matched: Vec<String>,
    /// Id of the rule whose verdict won, or `None` when the default applied.
    pub rule: Option<String>,
    /// Why: the winning rule's reason, or a sentence naming the default.
    pub reason: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verdict_order_is_block_over_escalate_over_allow() {
        assert!(Verdict::Block > Verdict::Escalate);
        assert!(Verdict::Escalate > Verdict::Allow);
        let strongest = [Verdict::Allow, Verdict::Block, Verdict::Escalate]
            .into_iter()
            .max();
        assert_eq!(strongest, Some(Verdict::Block));
    }

    #[test]
    fn access_names_round_trip() {
        let a = Access::READ | Access::TRUNCATE | Access::DIRECTORY;
        assert_eq!(a.names(), vec!["read", "truncate", "directory"]);
        for (flag, name) in Access::ALL {
            assert_eq!(Access::from_name(name), Some(flag));
        }
        assert_eq!(Access::from_name("execute"), None);
        assert!(a.contains(Access::READ | Access::TRUNCATE));
        assert!(!a.contains(Access::WRITE));
        assert!(a.intersects(Access::WRITE | Access::READ));
    }
}
