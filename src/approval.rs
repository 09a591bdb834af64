//! The approval channel: a unix socket of the running supervisor through
//! which `lexecon pending`, `lexecon approve` and `lexecon deny` list and
//! answer held escalations.
//!
//! **Where.** Next to the ledger: `<ledger>.approval.sock` (for a
//! workspace's default ledger, in its directory under
//! `~/.local/state/lexecon/ledgers/`), mode 0600, created when a
//! run with `--on-escalate wait` starts and removed when it ends. A stale
//! socket left by a killed run is replaced: the ledger's lock guarantees
//! that no other run of the same ledger is alive. Both ends reach it through
//! an `O_PATH` descriptor of the directory (`/proc/self/fd/N/NAME`), so the
//! 108-byte limit of socket paths does not apply to the ledger's path.
//!
//! **Who may answer.** Every connection is authenticated with
//! `SO_PEERCRED` (filled in by the kernel at `connect(2)`, not forgeable by
//! the peer). A peer is refused when:
//! - its uid is neither the supervisor's nor root's; or
//! - it is part of the supervised tree: its `TracerPid` is the supervisor
//!   (every process of the tree is ptrace-attached to the supervisor from
//!   its fork until it exits, and a tracee cannot detach itself), or the
//!   supervisor is among its ancestors (orphans of the tree are re-parented
//!   to the supervisor, a subreaper); or
//! - its `/proc` entry cannot be read (fail closed).
//!
//! `connect(2)` is not a judged call, so the tree *can* connect: the check
//! above is what stops it, and the refusal is recorded in the ledger (a
//! `refusal` record, rule `lexecon.self-protect.approval`). The tree cannot
//! replace the socket either: writing, renaming over or removing it is
//! refused by the built-in rule `lexecon.self-protect.ledger`.

use std::io::{self, BufRead, BufReader, Write};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

pub use crate::os::Cred;
use crate::session::escalation::{Answer, By, Escalations, Scope};

/// Longest request line accepted.
const MAX_REQUEST: u64 = 4096;

/// The approval socket of the run writing `ledger`.
pub fn socket_path(ledger: &Path) -> PathBuf {
    let mut name = ledger.file_name().unwrap_or_default().to_os_string();
    name.push(".approval.sock");
    ledger.with_file_name(name)
}

/// An `O_PATH` descriptor of `path`'s directory and the address that names
/// `path` through it.
fn via_dir(path: &Path) -> io::Result<(OwnedFd, PathBuf)> {
    use std::os::unix::fs::OpenOptionsExt;
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let name = path
        .file_name()
        .ok_or_else(|| io::Error::other("the socket path has no file name"))?;
    let fd: OwnedFd = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC)
        .open(dir)?
        .into();
    let addr = PathBuf::from(format!("/proc/self/fd/{}", fd.as_raw_fd())).join(name);
    Ok((fd, addr))
}

/// The listening socket of a run.
pub struct Server {
    listener: UnixListener,
    path: PathBuf,
    _dir: OwnedFd,
    /// Wakes [`Server::serve_with`] to see its stop flag at once.
    wake: OwnedFd,
}

/// Wakes a serving [`Server`] so that it sees its stop flag at once
/// rather than at its next poll timeout.
pub struct Waker(OwnedFd);

impl Waker {
    /// A waker of whoever polls `fd`, an eventfd (see [`crate::os::eventfd`]).
    pub fn of(fd: &OwnedFd) -> io::Result<Waker> {
        fd.try_clone().map(Waker)
    }

    pub fn wake(&self) {
        let _ = crate::os::eventfd_signal(self.0.as_fd());
    }
}

impl Server {
    /// Creates the socket at `path` (mode 0600), replacing a stale one.
    pub fn bind(path: &Path) -> io::Result<Server> {
        let (dir, addr) = via_dir(path)?;
        match std::fs::symlink_metadata(&addr) {
            Ok(m) if std::os::unix::fs::FileTypeExt::is_socket(&m.file_type()) => {
                std::fs::remove_file(&addr)?
            }
            Ok(_) => {
                return Err(io::Error::other(format!(
                    "{} exists and is not a socket",
                    path.display()
                )))
            }
            Err(_) => {}
        }
        let listener = UnixListener::bind(&addr)?;
        if let Err(e) =
            std::fs::set_permissions(&addr, std::os::unix::fs::PermissionsExt::from_mode(0o600))
        {
            let _ = std::fs::remove_file(&addr);
            return Err(e);
        }
        listener.set_nonblocking(true)?;
        let wake = crate::os::eventfd()?;
        Ok(Server {
            listener,
            path: path.to_path_buf(),
            _dir: dir,
            wake,
        })
    }

    /// A [`Waker`] for this server: set the stop flag, then wake it.
    pub fn waker(&self) -> io::Result<Waker> {
        Waker::of(&self.wake)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Sets `SO_PASSCRED` on the listening socket, which every accepted
    /// connection inherits from the start: the kernel then attaches the
    /// writer's credentials to every byte the peer sends, even before the
    /// connection is accepted (see [`read_line_with_creds`]).
    pub fn pass_credentials(&self) -> io::Result<()> {
        crate::os::set_passcred(self.listener.as_fd())
    }

    /// Serves requests until `stop` is set; removes the socket then.
    pub fn serve(self, table: Arc<Escalations>, stop: Arc<AtomicBool>) {
        let me = crate::os::pid();
        self.serve_with(stop, |stream| {
            let _ = serve_one(stream, &table, me);
        });
    }

    /// Hands every connection to `handle` until `stop` is set; removes the
    /// socket then. (The approval socket and the gate socket share this.)
    pub fn serve_with(self, stop: Arc<AtomicBool>, mut handle: impl FnMut(UnixStream)) {
        while !stop.load(Ordering::SeqCst) {
            // The timeout only bounds how late a stop without a wake-up
            // is seen.
            match crate::os::poll_in_or(self.listener.as_fd(), self.wake.as_fd(), 100) {
                Ok((true, _)) => {}
                _ => continue,
            }
            while let Ok((stream, _)) = self.listener.accept() {
                handle(stream);
            }
        }
        if let Ok((_d, addr)) = via_dir(&self.path) {
            let _ = std::fs::remove_file(addr);
        }
    }
}

/// uid and pid of the peer of `s`, from the kernel.
fn peer_cred(s: &UnixStream) -> io::Result<(u32, i32)> {
    crate::os::peer_cred(s.as_fd()).map(|c| (c.uid, c.pid))
}

fn status_field(pid: i32, field: &str) -> io::Result<i32> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    text.lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().parse().ok())
        .ok_or_else(|| io::Error::other(format!("no {field} in /proc/{pid}/status")))
}

/// Why `pid` may not answer, or `None` when it may. `me` is the supervisor.
pub fn refuse_reason(pid: i32, uid: u32, me: i32) -> Option<String> {
    let own = crate::os::uid();
    if uid != own && uid != 0 {
        return Some(format!("peer uid {uid} is not the supervisor's ({own})"));
    }
    if pid <= 0 {
        return Some("the peer's pid is unknown".into());
    }
    match in_tree(pid, me) {
        Ok(Some(why)) => Some(why),
        Ok(None) => None,
        Err(e) => Some(e),
    }
}

/// Whether `pid` is part of the tree supervised by `me`: `Ok(Some(how))`
/// when it is, `Ok(None)` when it is not, `Err` when its `/proc` entry or
/// ancestry cannot be read (callers fail closed either way).
pub fn in_tree(pid: i32, me: i32) -> Result<Option<String>, String> {
    let is_me = |t: i32| t == me || crate::supervisor::procfs::is_own_task(t);
    match status_field(pid, "TracerPid:") {
        Ok(t) if t != 0 && is_me(t) => {
            return Ok(Some(format!(
                "pid {pid} is part of the supervised tree (traced by the supervisor)"
            )))
        }
        Ok(_) => {}
        Err(e) => return Err(format!("cannot read the peer's /proc entry: {e}")),
    }
    let mut p = pid;
    for _ in 0..4096 {
        if p == me {
            return Ok(Some(format!(
                "pid {pid} is part of the supervised tree (a descendant of the supervisor)"
            )));
        }
        if p <= 1 {
            return Ok(None);
        }
        p = match status_field(p, "PPid:") {
            Ok(pp) => pp,
            Err(e) => return Err(format!("cannot read the peer's ancestry: {e}")),
        };
    }
    Err("the peer's ancestry is too deep".into())
}

/// The pid of the process tracing this one (`TracerPid`; 0: none), when
/// `/proc/self/status` can be read. A process of a supervised tree is
/// traced by its supervisor.
pub fn own_tracer() -> io::Result<i32> {
    status_field(std::process::id() as i32, "TracerPid:")
}

/// The parent of `pid` (0 when it cannot be read).
pub fn parent_of(pid: i32) -> i32 {
    status_field(pid, "PPid:").unwrap_or(0)
}

/// One request line from `s` with the credentials the kernel attached to
/// its bytes (`SCM_CREDENTIALS`, with `SO_PASSCRED` set on `s`): the pid,
/// uid and gid of the process that wrote them, whatever task connected the
/// socket. Every chunk of the line must carry the same credentials (the
/// kernel never joins chunks of different writers in one read); a line
/// longer than `max` bytes, or one that does not end before the read
/// timeout, is an error.
/// (The listening socket must have [`Server::pass_credentials`] set, so
/// that no byte arrives without them; a chunk without credentials, or with
/// pid 0, is an error.)
pub fn read_line_with_creds(s: &UnixStream, max: usize) -> io::Result<(Vec<u8>, Cred)> {
    crate::os::set_passcred(s.as_fd())?;
    let mut line: Vec<u8> = Vec::new();
    let mut creds: Option<Cred> = None;
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let (n, got) = crate::os::recv_with_creds(s.as_fd(), &mut buf)?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the request ended before its newline",
            ));
        }
        let Some(got) = got.filter(|c| c.pid > 0) else {
            return Err(io::Error::other(
                "the request carries no credentials from the kernel",
            ));
        };
        match creds {
            None => creds = Some(got),
            Some(c) if c == got => {}
            Some(_) => {
                return Err(io::Error::other(
                    "the request was written by more than one process",
                ))
            }
        }
        let chunk = &buf[..n];
        match chunk.iter().position(|b| *b == b'\n') {
            Some(i) => {
                line.extend_from_slice(&chunk[..i]);
                break;
            }
            None => line.extend_from_slice(chunk),
        }
        if line.len() > max {
            return Err(io::Error::other(format!(
                "the request is longer than {max} bytes"
            )));
        }
    }
    if line.len() > max {
        return Err(io::Error::other(format!(
            "the request is longer than {max} bytes"
        )));
    }
    match creds {
        Some(c) => Ok((line, c)),
        None => Err(io::Error::other("no credentials")),
    }
}

/// Writes one reply line and lets the peer finish writing (unread) before
/// the socket closes, so that it reads the reply rather than `EPIPE`; at
/// most 200 ms in all, however slowly it writes.
pub fn reply_and_close(stream: &UnixStream, reply: &Value, max: u64) -> io::Result<()> {
    let mut out = stream;
    out.write_all(format!("{reply}\n").as_bytes())?;
    let _ = stream.shutdown(std::net::Shutdown::Write);
    let until = Instant::now() + Duration::from_millis(200);
    let mut buf = [0u8; 512];
    let mut left = max;
    while left > 0 {
        let Some(t) = until
            .checked_duration_since(Instant::now())
            .filter(|t| !t.is_zero())
        else {
            break;
        };
        stream.set_read_timeout(Some(t))?;
        match io::Read::read(&mut &*stream, &mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => left = left.saturating_sub(n as u64),
        }
    }
    Ok(())
}

fn serve_one(stream: UnixStream, table: &Escalations, me: i32) -> io::Result<()> {
    stream.set_nonblocking(false)?;
    stream.set_read_timeout(Some(Duration::from_secs(2)))?;
    stream.set_write_timeout(Some(Duration::from_secs(2)))?;
    let reply = match peer_cred(&stream) {
        Err(e) => json!({"ok": false, "error": format!("cannot identify the peer: {e}")}),
        Ok((uid, pid)) => match refuse_reason(pid, uid, me) {
            Some(why) => {
                let ppid = status_field(pid, "PPid:").unwrap_or(0);
                table.note_refused_peer(pid, ppid, uid, why.clone());
                json!({"ok": false, "error": format!("refused: {why}")})
            }
            None => {
                let mut line = String::new();
                BufReader::new(io::Read::take(&stream, MAX_REQUEST)).read_line(&mut line)?;
                match serde_json::from_str::<Value>(&line) {
                    Ok(req) => answer(&req, table, uid, pid),
                    Err(e) => json!({"ok": false, "error": format!("bad request: {e}")}),
                }
            }
        },
    };
    reply_and_close(&stream, &reply, MAX_REQUEST)
}

fn answer(req: &Value, table: &Escalations, uid: u32, pid: i32) -> Value {
    match req["op"].as_str() {
        Some("pending") => {
            let now = Instant::now();
            let list: Vec<Value> = table
                .list()
                .iter()
                .map(|p| {
                    json!({
                        "id": p.id,
                        "age_ms": now.saturating_duration_since(p.since).as_millis() as u64,
                        "left_ms": p.deadline.saturating_duration_since(now).as_millis() as u64,
                        "action": p.what,
                        "rule": p.rule,
                        "reason": p.reason,
                        "pid": p.pid,
                    })
                })
                .collect();
            json!({"ok": true, "pending": list})
        }
        Some("answer") => {
            let (Some(id), Some(allow)) = (req["id"].as_u64(), req["allow"].as_bool()) else {
                return json!({"ok": false, "error": "bad request: `id` and `allow` are needed"});
            };
            let scope = if req["for_run"].as_bool() == Some(true) {
                Scope::Run
            } else {
                Scope::Once
            };
            let receipt = match (
                req["receipt"]["key"].as_str(),
                req["receipt"]["sig"].as_str(),
            ) {
                (Some(k), Some(s)) => {
                    use base64::Engine as _;
                    let b64 = base64::engine::general_purpose::STANDARD;
                    let key = b64
                        .decode(k)
                        .ok()
                        .and_then(|b| <[u8; 32]>::try_from(b).ok());
                    let sig = b64
                        .decode(s)
                        .ok()
                        .and_then(|b| <[u8; 64]>::try_from(b).ok());
                    match (key, sig) {
                        (Some(k), Some(s)) => Some((k, s)),
                        _ => return json!({"ok": false, "error": "bad request: malformed receipt"}),
                    }
                }
                _ => None,
            };
            let a = Answer {
                allow,
                scope,
                by: By::Approver { uid, pid },
                receipt,
            };
            match table.answer(id, a) {
                Ok(()) => json!({"ok": true}),
                Err(e) => json!({"ok": false, "error": e}),
            }
        }
        _ => json!({"ok": false, "error": "bad request: unknown op"}),
    }
}

/// Sends one request line on `s` and reads the one reply line (the framing
/// of the approval and gate sockets).
pub fn exchange(mut s: UnixStream, req: &Value, timeout: Duration) -> anyhow::Result<Value> {
    use anyhow::Context;
    s.set_read_timeout(Some(timeout))?;
    // A refused peer is answered without being read: its write may fail
    // (EPIPE) while the reply is already waiting to be read.
    let _ = s.write_all(format!("{req}\n").as_bytes());
    let mut line = String::new();
    BufReader::new(&s)
        .read_line(&mut line)
        .context("no reply from the supervisor")?;
    serde_json::from_str(&line).context("the supervisor's reply is not JSON")
}

/// Sends one request to the run writing `ledger`; its reply.
pub fn request(ledger: &Path, req: &Value) -> anyhow::Result<Value> {
    use anyhow::Context;
    let path = socket_path(ledger);
    let (_dir, addr) = via_dir(&path)
        .with_context(|| format!("no supervised run is waiting at {}", path.display()))?;
    let s = UnixStream::connect(&addr).with_context(|| {
        format!(
            "cannot reach the supervisor at {} (is a run with --on-escalate wait using this ledger?)",
            path.display()
        )
    })?;
    let v = exchange(s, req, Duration::from_secs(10))?;
    if v["ok"].as_bool() != Some(true) {
        anyhow::bail!(
            "{}",
            v["error"]
                .as_str()
                .unwrap_or("the supervisor refused the request")
        );
    }
    Ok(v)
}
