//! Network calls: `connect`, `bind`, `listen`, and sends that carry a
//! destination (`sendto` with an address, every `sendmsg`/`sendmmsg`).
//!
//! Never `CONTINUE`: the address (and for sends the message) is read from
//! the caller's memory once, judged, and the call is performed by the
//! supervisor on the caller's own socket, taken with `pidfd_getfd` (the
//! same open file description: its flags, options, state and timeouts are
//! the caller's). A racing thread that rewrites the address after the read
//! changes nothing. Results are returned as the kernel gave them:
//! `EINPROGRESS` for a non-blocking connect (the caller's `SO_ERROR` and
//! `poll` then see the same socket), `EPIPE` with a `SIGPIPE` sent to the
//! calling thread unless it asked for `MSG_NOSIGNAL`. A call that may block
//! (a blocking connect, a send on a full buffer of a blocking socket) runs
//! on a worker thread of its own (at most [`MAX_WORKERS`] at once), so the
//! loop keeps serving everyone; the kernel applies the socket's
//! `SO_SNDTIMEO` there as it would for the caller.
//!
//! Local sockets named by a path are resolved as the kernel would for the
//! caller (its cwd, symlinks followed) and reached through the pinned
//! object (`/proc/self/fd/N`), so a symlink swapped in after the check is
//! not followed.
//!
//! DNS: a datagram to port 53 (or to the port of `LEXECON_DNS_UPSTREAM`),
//! sent with an address or on a socket connected to such a port through
//! `sendmsg`/`sendmmsg`, must be a DNS query; each name it asks for is
//! judged (a `resolve` action). An allowed query is also sent by the
//! supervisor itself, from its own socket, to the upstream resolver
//! (`LEXECON_DNS_UPSTREAM`, else the first `nameserver` of
//! `/etc/resolv.conf`); the A, AAAA and CNAME records of that answer bind
//! names to addresses for the rest of the run, and a later connection to
//! an address carries the names bound to it. Only what the supervisor
//! itself resolved is bound: whatever the tree's own resolver answered it
//! binds nothing.

use std::collections::{BTreeSet, HashMap};
use std::ffi::CString;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use crate::action::{Action, ConnectAction, NetFamily, NetOp, NetTarget, Protocol};

use super::creds::AsCaller;
use super::decode::NetRequest;
use super::filter::nr;
use super::netsys::{self, Message};
use super::notify::{lock, Answer, Shared};
use super::resolve::{self, Lookup, Target};
use super::sys::{self, Listener};
use super::{Caller, Ruling};

/// `sizeof(struct sockaddr_storage)`: longer addresses are `EINVAL`.
const MAX_SOCKADDR: usize = 128;
/// Most bytes of one message copied: a datagram beyond is `EMSGSIZE`; a
/// stream send beyond sends this much (a short send, as streams allow).
pub const MAX_PAYLOAD: usize = 256 * 1024;
/// Most ancillary bytes of one message (beyond: `ENOBUFS`).
const MAX_CONTROL: usize = 64 * 1024;
/// `UIO_MAXIOV`: most `iovec`s of a message, and most messages of a
/// `sendmmsg`, as in the kernel.
const MAX_IOV: usize = 1024;
/// Most network calls performed on worker threads at once; beyond, a call
/// that would block fails with `EAGAIN`.
pub const MAX_WORKERS: usize = 64;
/// Most addresses with names bound, and most names per address.
const MAX_BOUND_ADDRS: usize = 65_536;
const MAX_NAMES_PER_ADDR: usize = 32;
/// How long the supervisor waits for the upstream resolver.
const UPSTREAM_TIMEOUT: Duration = Duration::from_secs(3);

static WORKERS: AtomicUsize = AtomicUsize::new(0);

/// Names the supervisor saw resolve to each address in this run.
fn bindings() -> &'static Mutex<HashMap<IpAddr, BTreeSet<String>>> {
    static B: OnceLock<Mutex<HashMap<IpAddr, BTreeSet<String>>>> = OnceLock::new();
    B.get_or_init(|| Mutex::new(HashMap::new()))
}

/// Local sockets bound by path: the supervisor binds them through its own
/// `/proc/self/fd/N/NAME` (the pinned directory), which is the name the
/// kernel then reports; the path judged at the bind, by socket inode, so
/// that a later `listen` is judged on it.
fn bound_paths() -> &'static Mutex<HashMap<u64, PathBuf>> {
    static B: OnceLock<Mutex<HashMap<u64, PathBuf>>> = OnceLock::new();
    B.get_or_init(|| Mutex::new(HashMap::new()))
}

const MAX_BOUND_PATHS: usize = 4096;

/// The names bound to `addr` (IPv4-mapped taken as IPv4).
pub fn names_of(addr: IpAddr) -> Vec<String> {
    let addr = crate::policy::net::canonical(addr);
    lock(bindings())
        .get(&addr)
        .map(|s| s.iter().cloned().collect())
        .unwrap_or_default()
}

fn bind_name(addr: IpAddr, name: &str) {
    let addr = crate::policy::net::canonical(addr);
    let mut b = lock(bindings());
    if b.len() >= MAX_BOUND_ADDRS && !b.contains_key(&addr) {
        return;
    }
    let set = b.entry(addr).or_default();
    if set.len() < MAX_NAMES_PER_ADDR {
        set.insert(name.to_string());
    }
}

/// The resolver the supervisor asks, and the ports taken as DNS.
struct Upstream {
    addr: Option<SocketAddr>,
}

fn upstream() -> &'static Upstream {
    static U: OnceLock<Upstream> = OnceLock::new();
    U.get_or_init(|| {
        let from_env = std::env::var("LEXECON_DNS_UPSTREAM")
            .ok()
            .and_then(|v| v.parse::<SocketAddr>().ok());
        let addr = from_env.or_else(|| {
            let text = std::fs::read_to_string("/etc/resolv.conf").ok()?;
            text.lines().find_map(|l| {
                let mut w = l.split_whitespace();
                (w.next() == Some("nameserver"))
                    .then(|| w.next())
                    .flatten()
                    .and_then(|a| a.parse::<IpAddr>().ok())
                    .map(|ip| SocketAddr::new(ip, 53))
            })
        });
        Upstream { addr }
    })
}

fn is_dns_port(port: u16) -> bool {
    port == 53 || upstream().addr.is_some_and(|a| a.port() == port)
}

/// What a socket is.
#[derive(Clone, Copy)]
struct SockInfo {
    stype: i32,
    protocol: Protocol,
}

fn sock_info(fd: &OwnedFd) -> io::Result<SockInfo> {
    let domain = netsys::getsockopt_int(fd.as_fd(), libc::SOL_SOCKET, libc::SO_DOMAIN)?;
    let stype = netsys::getsockopt_int(fd.as_fd(), libc::SOL_SOCKET, libc::SO_TYPE)?;
    let proto = netsys::getsockopt_int(fd.as_fd(), libc::SOL_SOCKET, libc::SO_PROTOCOL)?;
    let protocol = match (domain, proto) {
        (libc::AF_UNIX, _) => Protocol::Unix,
        (libc::AF_INET | libc::AF_INET6, libc::IPPROTO_TCP) => Protocol::Tcp,
        (libc::AF_INET | libc::AF_INET6, libc::IPPROTO_UDP) => Protocol::Udp,
        _ => Protocol::Other,
    };
    Ok(SockInfo { stype, protocol })
}

/// A destination decoded from sockaddr bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Dest {
    Ip {
        family: NetFamily,
        addr: IpAddr,
        port: u16,
    },
    UnixPath(Vec<u8>),
    UnixAbstract(Vec<u8>),
    UnixUnnamed,
    /// `AF_UNSPEC`: dissolves a connection.
    Unspec,
    /// `AF_NETLINK`: the kernel itself, not the network.
    Netlink,
    Other(u16),
}

/// Decodes the sockaddr bytes a call gave (`Err`: the errno the kernel
/// gives for a malformed one).
pub fn parse_sockaddr(b: &[u8]) -> Result<Dest, i32> {
    if b.len() < 2 {
        return Err(libc::EINVAL);
    }
    let family = u16::from_ne_bytes([b[0], b[1]]);
    match i32::from(family) {
        libc::AF_INET => {
            if b.len() < 16 {
                return Err(libc::EINVAL);
            }
            let port = u16::from_be_bytes([b[2], b[3]]);
            let addr = Ipv4Addr::new(b[4], b[5], b[6], b[7]);
            Ok(Dest::Ip {
                family: NetFamily::Inet,
                addr: IpAddr::V4(addr),
                port,
            })
        }
        libc::AF_INET6 => {
            // SIN6_LEN_RFC2133: the scope id is optional.
            if b.len() < 24 {
                return Err(libc::EINVAL);
            }
            let port = u16::from_be_bytes([b[2], b[3]]);
            let mut a = [0u8; 16];
            a.copy_from_slice(&b[8..24]);
            let addr = crate::policy::net::canonical(IpAddr::V6(Ipv6Addr::from(a)));
            Ok(Dest::Ip {
                family: NetFamily::Inet6,
                addr,
                port,
            })
        }
        libc::AF_UNIX => {
            let rest = &b[2..];
            if rest.is_empty() {
                Ok(Dest::UnixUnnamed)
            } else if rest[0] == 0 {
                Ok(Dest::UnixAbstract(rest[1..].to_vec()))
            } else {
                let end = rest.iter().position(|&c| c == 0).unwrap_or(rest.len());
                Ok(Dest::UnixPath(rest[..end].to_vec()))
            }
        }
        libc::AF_UNSPEC => Ok(Dest::Unspec),
        libc::AF_NETLINK => Ok(Dest::Netlink),
        _ => Ok(Dest::Other(family)),
    }
}

fn sockaddr_un(path: &[u8]) -> Result<Vec<u8>, i32> {
    // sun_path is 108 bytes, NUL included.
    if path.len() >= 108 {
        return Err(libc::ENAMETOOLONG);
    }
    let mut v = (libc::AF_UNIX as u16).to_ne_bytes().to_vec();
    v.extend_from_slice(path);
    v.push(0);
    Ok(v)
}

/// Reads exactly `len` bytes of the caller's memory (`EFAULT` otherwise).
fn read_mem(tid: i32, addr: u64, len: usize) -> Result<Vec<u8>, i32> {
    let mut buf = vec![0u8; len];
    let mut done = 0;
    while done < len {
        match sys::read_process_memory(tid, addr + done as u64, &mut buf[done..]) {
            Ok(0) => return Err(libc::EFAULT),
            Ok(n) => done += n,
            Err(e) if e.raw_os_error() == Some(libc::EFAULT) => return Err(libc::EFAULT),
            Err(_) => return Err(libc::EPERM),
        }
    }
    Ok(buf)
}

fn u64_at(b: &[u8], off: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[off..off + 8]);
    u64::from_ne_bytes(a)
}

fn u32_at(b: &[u8], off: usize) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[off..off + 4]);
    u32::from_ne_bytes(a)
}

/// The caller's descriptor `fd`, as one of ours.
fn caller_fd(caller: &Caller, fd: i32) -> Result<OwnedFd, i32> {
    if fd < 0 {
        return Err(libc::EBADF);
    }
    let pidfd = sys::pidfd_open(caller.tid, libc::PIDFD_THREAD)
        .or_else(|_| sys::pidfd_open(caller.pid, 0))
        .map_err(|_| libc::EPERM)?;
    sys::pidfd_getfd(pidfd.as_fd(), fd).map_err(|e| match e.raw_os_error() {
        Some(libc::EBADF) => libc::EBADF,
        // Not readable (e.g. the caller made itself non-dumpable): fail
        // closed.
        _ => libc::EPERM,
    })
}

/// One message copied out of the caller.
struct Copied {
    name: Vec<u8>,
    data: Vec<u8>,
    control: Vec<u8>,
    /// Our copies of descriptors passed with `SCM_RIGHTS`, alive until sent.
    _fds: Vec<OwnedFd>,
}

/// Copies a `struct msghdr` at `addr` and what it points to.
fn copy_msghdr(caller: &Caller, addr: u64, stream: bool) -> Result<Copied, i32> {
    let h = read_mem(caller.tid, addr, 56)?;
    let name_ptr = u64_at(&h, 0);
    let namelen = u32_at(&h, 8) as usize;
    let iov_ptr = u64_at(&h, 16);
    let iovlen = u64_at(&h, 24) as usize;
    let ctl_ptr = u64_at(&h, 32);
    let ctllen = u64_at(&h, 40) as usize;
    let name = if name_ptr == 0 || namelen == 0 {
        Vec::new()
    } else if namelen > MAX_SOCKADDR {
        return Err(libc::EINVAL);
    } else {
        read_mem(caller.tid, name_ptr, namelen)?
    };
    if iovlen > MAX_IOV {
        return Err(libc::EMSGSIZE);
    }
    let iovs = if iovlen == 0 {
        Vec::new()
    } else {
        read_mem(caller.tid, iov_ptr, iovlen * 16)?
    };
    let mut data = Vec::new();
    for i in 0..iovlen {
        let base = u64_at(&iovs, i * 16);
        let len = u64_at(&iovs, i * 16 + 8) as usize;
        let room = MAX_PAYLOAD - data.len();
        if len > room && !stream {
            return Err(libc::EMSGSIZE);
        }
        let take = len.min(room);
        if take > 0 {
            data.extend(read_mem(caller.tid, base, take)?);
        }
        if data.len() == MAX_PAYLOAD {
            break;
        }
    }
    let (control, fds) = if ctl_ptr == 0 || ctllen == 0 {
        (Vec::new(), Vec::new())
    } else if ctllen > MAX_CONTROL {
        return Err(libc::ENOBUFS);
    } else {
        translate_control(caller, read_mem(caller.tid, ctl_ptr, ctllen)?)?
    };
    Ok(Copied {
        name,
        data,
        control,
        _fds: fds,
    })
}

/// Ancillary data with every descriptor passed (`SCM_RIGHTS`) replaced by
/// our own copy of it. Credentials (`SCM_CREDENTIALS`) cannot be passed on
/// the caller's behalf: refused with `EPERM`.
fn translate_control(caller: &Caller, mut c: Vec<u8>) -> Result<(Vec<u8>, Vec<OwnedFd>), i32> {
    let mut fds = Vec::new();
    let mut off = 0;
    while off + 16 <= c.len() {
        let len = u64_at(&c, off) as usize;
        if len < 16 || off + len > c.len() {
            return Err(libc::EINVAL);
        }
        let level = u32_at(&c, off + 8) as i32;
        let kind = u32_at(&c, off + 12) as i32;
        if level == libc::SOL_SOCKET && kind == libc::SCM_CREDENTIALS {
            return Err(libc::EPERM);
        }
        if level == libc::SOL_SOCKET && kind == libc::SCM_RIGHTS {
            let n = (len - 16) / 4;
            for i in 0..n {
                let at = off + 16 + 4 * i;
                let theirs = u32_at(&c, at) as i32;
                let ours = caller_fd(caller, theirs)?;
                c[at..at + 4].copy_from_slice(&ours.as_raw_fd().to_ne_bytes());
                fds.push(ours);
            }
        }
        off += (len + 7) & !7;
    }
    Ok((c, fds))
}

/// How a judged call is performed, once allowed.
enum Perform {
    Connect {
        addr: Vec<u8>,
        /// The pinned local socket `addr` names, open until the connect.
        _pin: Option<OwnedFd>,
    },
    Bind {
        addr: Vec<u8>,
        /// For a local socket created by path: its parent and name, and the
        /// mode to give it (the caller's umask applied).
        chmod: Option<(OwnedFd, CString, u32)>,
        /// The judged path of a local socket bound by path.
        path: Option<PathBuf>,
    },
    Listen {
        backlog: i32,
    },
    Send {
        msgs: Vec<Copied>,
        flags: i32,
        /// `sendmmsg`: where each message's `msg_len` goes.
        lens_at: Option<u64>,
    },
}

/// What a destination is judged as, and the sockaddr to use instead of the
/// caller's (a local socket reached through its pinned object). `None`: not
/// judged (the kernel itself, a disconnect).
struct Judged {
    target: Option<NetTarget>,
    replace: Option<Vec<u8>>,
    /// Keeps the pinned object the replacement names alive.
    pin: Option<OwnedFd>,
    chmod: Option<(OwnedFd, CString, u32)>,
    /// A `bind` that creates a local socket's name: also judged as the
    /// creation of that file (an open with `create`), like every other way
    /// of making a name.
    creates: Option<Action>,
}

fn judge_dest(shared: &Shared, caller: &Caller, dest: &Dest, op: NetOp) -> Result<Judged, i32> {
    let plain = |target| Judged {
        target,
        replace: None,
        pin: None,
        chmod: None,
        creates: None,
    };
    match dest {
        Dest::Ip { family, addr, port } => Ok(plain(Some(NetTarget::Ip {
            family: *family,
            addr: *addr,
            port: *port,
        }))),
        Dest::UnixAbstract(n) => Ok(plain(Some(NetTarget::UnixAbstract(n.clone())))),
        Dest::UnixUnnamed => Ok(plain(Some(NetTarget::UnixUnnamed))),
        Dest::Unspec | Dest::Netlink => Ok(plain(None)),
        Dest::Other(_) => Err(libc::EAFNOSUPPORT),
        Dest::UnixPath(p) => {
            let rc = resolve::Caller {
                tid: caller.tid,
                tgid: caller.pid,
            };
            let lookup = Lookup {
                follow_last: op != NetOp::Bind,
                empty_path: false,
            };
            let r = resolve::resolve(&shared.proc_info, rc, libc::AT_FDCWD, p, lookup)?;
            let path = r.path.clone();
            let cwd = super::notify::cwd_for(&r, caller.tid);
            match (op, r.target) {
                (NetOp::Bind, Target::Missing { parent, name }) => {
                    let link = format!("/proc/self/fd/{}/", parent.as_raw_fd());
                    let mut full = link.into_bytes();
                    full.extend_from_slice(name.as_bytes());
                    let umask = super::procfs::umask(caller.tid);
                    let creates = Action::Open(crate::action::OpenAction {
                        path: path.clone(),
                        access: crate::action::Access::CREATE | crate::action::Access::WRITE,
                        cwd,
                        process: shared.process_of(caller.tid),
                        // A socket's name is a new node in the directory.
                        op: crate::action::FileOp::Mknod,
                        detail: None,
                    });
                    Ok(Judged {
                        target: Some(NetTarget::UnixPath(path)),
                        replace: Some(sockaddr_un(&full)?),
                        pin: None,
                        chmod: Some((parent, name, 0o777 & !umask)),
                        creates: Some(creates),
                    })
                }
                (NetOp::Bind, _) => Err(libc::EADDRINUSE),
                (_, Target::Missing { .. }) => Err(libc::ENOENT),
                (_, Target::Entry { parent, name, stat }) => {
                    let _ = cwd;
                    if stat.st_mode & libc::S_IFMT != libc::S_IFSOCK {
                        return Err(libc::ECONNREFUSED);
                    }
                    let pin =
                        sys::openat(parent.as_fd(), &name, libc::O_PATH | libc::O_NOFOLLOW, 0)
                            .map_err(|e| e.raw_os_error().unwrap_or(libc::EACCES))?;
                    let link = format!("/proc/self/fd/{}", pin.as_raw_fd());
                    Ok(Judged {
                        target: Some(NetTarget::UnixPath(path)),
                        replace: Some(sockaddr_un(link.as_bytes())?),
                        pin: Some(pin),
                        chmod: None,
                        creates: None,
                    })
                }
                (_, Target::Object { .. }) => Err(libc::ECONNREFUSED),
            }
        }
    }
}

fn action(
    shared: &Shared,
    caller: &Caller,
    op: NetOp,
    info: SockInfo,
    target: NetTarget,
) -> Action {
    let names = match (&target, op) {
        (NetTarget::Ip { addr, .. }, NetOp::Connect | NetOp::Send) => names_of(*addr),
        _ => Vec::new(),
    };
    Action::Connect(ConnectAction {
        op,
        protocol: info.protocol,
        target,
        names,
        process: shared.process_of(caller.tid),
    })
}

/// Judges one action; `None` to go on, else the answer.
fn ask(shared: &Shared, caller: &Caller, syscall: &'static str, a: &Action) -> Option<Answer> {
    match shared.judge.judge(caller, syscall, a, None, None) {
        Ruling::Allow => None,
        Ruling::Deny(e) => Some(Answer::Deny(e)),
        Ruling::Hold => Some(Answer::Hold),
    }
}

/// Judges, then performs, one network call.
pub(super) fn handle(
    listener: &Arc<Listener>,
    shared: &Arc<Shared>,
    caller: &Caller,
    id: u64,
    r: &NetRequest,
) -> Answer {
    match prepare(shared, caller, r) {
        Err(errno) => {
            if !listener.id_valid(id) {
                return Answer::Done;
            }
            Answer::Deny(errno)
        }
        Ok(Prepared::Answer(a)) => a,
        Ok(Prepared::Go {
            sock,
            perform,
            dns,
            nonblocking,
        }) => {
            if !listener.id_valid(id) {
                return Answer::Done;
            }
            run(
                listener,
                shared,
                caller,
                id,
                sock,
                perform,
                dns,
                nonblocking,
            )
        }
    }
}

enum Prepared {
    Answer(Answer),
    Go {
        sock: OwnedFd,
        perform: Perform,
        /// DNS queries to resolve upstream first.
        dns: Vec<Vec<u8>>,
        nonblocking: bool,
    },
}

fn prepare(shared: &Shared, caller: &Caller, r: &NetRequest) -> Result<Prepared, i32> {
    let a = r.args;
    let sock = caller_fd(caller, a[0] as i32)?;
    let st = sys::fstat(sock.as_fd()).map_err(|_| libc::EBADF)?;
    if st.st_mode & libc::S_IFMT != libc::S_IFSOCK {
        return Err(libc::ENOTSOCK);
    }
    let info = sock_info(&sock).map_err(|e| e.raw_os_error().unwrap_or(libc::EPERM))?;
    let fl = sys::getfl(sock.as_fd()).map_err(|_| libc::EBADF)?;
    let stream = info.stype == libc::SOCK_STREAM;
    // A local socket's peer learns the credentials of the task that
    // connects or sends (SO_PEERCRED, SCM_CREDENTIALS with SO_PASSCRED):
    // a root supervisor acting for a caller of another uid would lend it
    // root's. Not done: refused.
    if info.protocol == Protocol::Unix && shared.privileged && r.nr != nr::LISTEN {
        let me = crate::os::euid();
        let theirs = super::procfs::status(caller.tid).map(|s| s.uid[1]).ok();
        if theirs != Some(me) {
            return Err(libc::EACCES);
        }
    }
    let read_addr = |ptr: u64, len: u64| -> Result<Vec<u8>, i32> {
        let len = len as i32;
        if len < 0 || len as usize > MAX_SOCKADDR {
            return Err(libc::EINVAL);
        }
        read_mem(caller.tid, ptr, len as usize)
    };
    match r.nr {
        nr::CONNECT | nr::BIND => {
            let op = if r.nr == nr::CONNECT {
                NetOp::Connect
            } else {
                NetOp::Bind
            };
            let bytes = read_addr(a[1], a[2])?;
            let dest = parse_sockaddr(&bytes)?;
            let j = judge_dest(shared, caller, &dest, op)?;
            if let Some(t) = j.target {
                if let Some(ans) = ask(
                    shared,
                    caller,
                    r.syscall,
                    &action(shared, caller, op, info, t),
                ) {
                    return Ok(Prepared::Answer(ans));
                }
            }
            if let Some(a) = &j.creates {
                if let Some(ans) = ask(shared, caller, r.syscall, a) {
                    return Ok(Prepared::Answer(ans));
                }
            }
            let addr = j.replace.unwrap_or(bytes);
            let perform = if op == NetOp::Connect {
                Perform::Connect { addr, _pin: j.pin }
            } else {
                if shared.privileged {
                    if let (Dest::Ip { port, .. }, Some(start)) = (&dest, unprivileged_port_start())
                    {
                        if *port != 0 && u32::from(*port) < start && !may_bind_low(caller.tid) {
                            return Err(libc::EACCES);
                        }
                    }
                }
                Perform::Bind {
                    addr,
                    chmod: j.chmod,
                    path: match &dest {
                        Dest::UnixPath(_) => j.creates.as_ref().and_then(|a| match a {
                            Action::Open(o) => Some(o.path.clone()),
                            _ => None,
                        }),
                        _ => None,
                    },
                }
            };
            Ok(Prepared::Go {
                sock,
                perform,
                dns: Vec::new(),
                nonblocking: fl & libc::O_NONBLOCK != 0,
            })
        }
        nr::LISTEN => {
            let bytes = netsys::sockname(sock.as_fd(), false)
                .map_err(|e| e.raw_os_error().unwrap_or(libc::EINVAL))?;
            // An unbound socket is bound to a port of the kernel's choice
            // by listen: judged as the unspecified address, port 0.
            let dest = match parse_sockaddr(&bytes) {
                Ok(d) => d,
                Err(_) => Dest::UnixUnnamed,
            };
            let target = match dest {
                Dest::Ip { family, addr, port } => Some(NetTarget::Ip { family, addr, port }),
                Dest::UnixPath(p) => {
                    let judged = lock(bound_paths()).get(&st.st_ino).cloned();
                    Some(NetTarget::UnixPath(judged.unwrap_or_else(|| {
                        PathBuf::from(std::ffi::OsStr::from_bytes(&p))
                    })))
                }
                Dest::UnixAbstract(n) => Some(NetTarget::UnixAbstract(n)),
                Dest::UnixUnnamed => Some(NetTarget::UnixUnnamed),
                _ => None,
            };
            if let Some(t) = target {
                if let Some(ans) = ask(
                    shared,
                    caller,
                    r.syscall,
                    &action(shared, caller, NetOp::Listen, info, t),
                ) {
                    return Ok(Prepared::Answer(ans));
                }
            }
            Ok(Prepared::Go {
                sock,
                perform: Perform::Listen {
                    backlog: a[1] as i32,
                },
                dns: Vec::new(),
                nonblocking: true,
            })
        }
        nr::SENDTO | nr::SENDMSG | nr::SENDMMSG => {
            let (msgs, flags, lens_at) = match r.nr {
                nr::SENDTO => {
                    let len = a[2] as usize;
                    if len > MAX_PAYLOAD && !stream {
                        return Err(libc::EMSGSIZE);
                    }
                    let data = read_mem(caller.tid, a[1], len.min(MAX_PAYLOAD))?;
                    let name = if a[4] == 0 {
                        Vec::new()
                    } else {
                        read_addr(a[4], a[5])?
                    };
                    (
                        vec![Copied {
                            name,
                            data,
                            control: Vec::new(),
                            _fds: Vec::new(),
                        }],
                        a[3] as i32,
                        None,
                    )
                }
                nr::SENDMSG => (vec![copy_msghdr(caller, a[1], stream)?], a[2] as i32, None),
                _ => {
                    let vlen = (a[2] as u32 as usize).min(MAX_IOV);
                    let mut msgs = Vec::with_capacity(vlen);
                    for i in 0..vlen {
                        // struct mmsghdr: a msghdr (56 bytes), msg_len, padding.
                        msgs.push(copy_msghdr(caller, a[1] + 64 * i as u64, stream)?);
                    }
                    (msgs, a[3] as i32, Some(a[1]))
                }
            };
            let fastopen = flags & libc::MSG_FASTOPEN != 0 && info.protocol == Protocol::Tcp;
            let op = if fastopen {
                NetOp::Connect
            } else {
                NetOp::Send
            };
            let mut dns = Vec::new();
            let peer = if msgs.iter().any(|m| m.name.is_empty()) && info.protocol == Protocol::Udp {
                netsys::sockname(sock.as_fd(), true)
                    .ok()
                    .and_then(|b| parse_sockaddr(&b).ok())
            } else {
                None
            };
            let mut out = Vec::with_capacity(msgs.len());
            let mut pins = Vec::new();
            for mut m in msgs {
                let dest = if m.name.is_empty() {
                    peer.clone()
                } else {
                    Some(parse_sockaddr(&m.name)?)
                };
                // A stream socket ignores the address unless it connects
                // (MSG_FASTOPEN): judged all the same.
                if !m.name.is_empty() {
                    let d = dest.clone().unwrap_or(Dest::Unspec);
                    let j = judge_dest(shared, caller, &d, op)?;
                    let dns_dest = matches!(&d, Dest::Ip { port, .. } if is_dns_port(*port))
                        && info.protocol == Protocol::Udp;
                    if let (Some(t), false) = (j.target, dns_dest) {
                        if let Some(ans) = ask(
                            shared,
                            caller,
                            r.syscall,
                            &action(shared, caller, op, info, t),
                        ) {
                            return Ok(Prepared::Answer(ans));
                        }
                    }
                    if let Some(rep) = j.replace {
                        m.name = rep;
                    }
                    if let Some(p) = j.pin {
                        pins.push(p);
                    }
                }
                if let Some(Dest::Ip { port, .. }) = dest {
                    if info.protocol == Protocol::Udp && is_dns_port(port) {
                        match dns_names(&m.data) {
                            Some(names) => {
                                for n in names {
                                    let a = Action::Connect(ConnectAction {
                                        op: NetOp::Resolve,
                                        protocol: Protocol::Udp,
                                        target: NetTarget::Name(n),
                                        names: Vec::new(),
                                        process: shared.process_of(caller.tid),
                                    });
                                    if let Some(ans) = ask(shared, caller, r.syscall, &a) {
                                        return Ok(Prepared::Answer(ans));
                                    }
                                }
                                dns.push(m.data.clone());
                            }
                            None => {
                                shared.judge.refused(
                                    caller,
                                    r.syscall,
                                    &format!(
                                        "a datagram to DNS port {port} that is not a DNS query"
                                    ),
                                    libc::EPERM,
                                );
                                return Err(libc::EPERM);
                            }
                        }
                    }
                }
                out.push(m);
            }
            // The pinned objects are kept by the replacement addresses'
            // lifetime: hold them in the first message's fds.
            if let Some(first) = out.first_mut() {
                first._fds.extend(pins);
            }
            let nonblocking = fl & libc::O_NONBLOCK != 0 || flags & libc::MSG_DONTWAIT != 0;
            Ok(Prepared::Go {
                sock,
                perform: Perform::Send {
                    msgs: out,
                    // Zero-copy would leave the kernel reading our buffer
                    // after it is freed; the caller's completion
                    // notifications are not reproduced.
                    flags: flags & !libc::MSG_ZEROCOPY,
                    lens_at,
                },
                dns,
                nonblocking,
            })
        }
        _ => Err(libc::ENOSYS),
    }
}

fn unprivileged_port_start() -> Option<u32> {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_unprivileged_port_start")
        .ok()
        .and_then(|s| s.trim().parse().ok())
}

/// Whether the caller holds `CAP_NET_BIND_SERVICE` (effective).
fn may_bind_low(tid: i32) -> bool {
    let Ok(text) = std::fs::read_to_string(format!("/proc/{tid}/status")) else {
        return false;
    };
    text.lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        .is_some_and(|caps| caps & (1 << 10) != 0)
}

/// Carries out an allowed call: at once when it cannot block, else on a
/// worker thread.
#[allow(clippy::too_many_arguments)]
fn run(
    listener: &Arc<Listener>,
    shared: &Arc<Shared>,
    caller: &Caller,
    id: u64,
    sock: OwnedFd,
    perform: Perform,
    dns: Vec<Vec<u8>>,
    nonblocking: bool,
) -> Answer {
    let inline = dns.is_empty()
        && match &perform {
            Perform::Connect { .. } => nonblocking,
            Perform::Bind { .. } | Perform::Listen { .. } => true,
            Perform::Send { .. } => true,
        };
    if inline {
        // A blocking send that would block goes on to a worker.
        if let Some(result) = execute(shared, caller, &sock, &perform, !nonblocking, false) {
            return finish(caller, result);
        }
    }
    if WORKERS.fetch_add(1, Ordering::SeqCst) >= MAX_WORKERS {
        WORKERS.fetch_sub(1, Ordering::SeqCst);
        return Answer::Deny(libc::EAGAIN);
    }
    let listener = Arc::clone(listener);
    let shared2 = Arc::clone(shared);
    let caller2 = *caller;
    let spawned = std::thread::Builder::new()
        .name("lexecon-net".into())
        .spawn(move || {
            for q in &dns {
                resolve_upstream(shared2.judge.as_ref(), &caller2, q);
            }
            let result = execute(&shared2, &caller2, &sock, &perform, false, true)
                .unwrap_or(Err(libc::EAGAIN));
            let _ = match finish(&caller2, result) {
                Answer::Value(v) => listener.reply(id, v),
                Answer::Deny(e) => listener.deny(id, e),
                _ => Ok(()),
            };
            WORKERS.fetch_sub(1, Ordering::SeqCst);
        });
    match spawned {
        Ok(_) => Answer::Done,
        Err(_) => {
            WORKERS.fetch_sub(1, Ordering::SeqCst);
            Answer::Deny(libc::EAGAIN)
        }
    }
}

/// The answer for a result.
fn finish(caller: &Caller, result: Result<i64, i32>) -> Answer {
    let _ = caller;
    match result {
        Ok(v) => Answer::Value(v),
        Err(e) => Answer::Deny(e),
    }
}

/// Performs the call. `try_first`: a send on a blocking socket is tried
/// without waiting first (`None` if it would block). `may_block`: on a
/// worker, where waiting is fine. Ok: the return value. `EPIPE` raises
/// `SIGPIPE` in the calling thread, as the kernel would have, unless it
/// asked for `MSG_NOSIGNAL`.
fn execute(
    shared: &Shared,
    caller: &Caller,
    sock: &OwnedFd,
    p: &Perform,
    try_first: bool,
    may_block: bool,
) -> Option<Result<i64, i32>> {
    let errno = |e: io::Error| e.raw_os_error().unwrap_or(libc::EIO);
    let creds = AsCaller::enter(caller.tid, shared.privileged, &shared.pidfds);
    if creds.is_err() {
        return Some(Err(libc::EACCES));
    }
    Some(match p {
        Perform::Connect { addr, .. } => netsys::connect(sock.as_fd(), addr)
            .map(|_| 0)
            .map_err(errno),
        Perform::Bind { addr, chmod, path } => {
            let r = netsys::bind(sock.as_fd(), addr).map(|_| 0).map_err(errno);
            if r.is_ok() {
                if let Some((dir, name, mode)) = chmod {
                    let _ = netsys::fchmodat(dir.as_fd(), name, *mode);
                }
                if let (Some(p), Ok(st)) = (path, sys::fstat(sock.as_fd())) {
                    let mut b = lock(bound_paths());
                    if b.len() < MAX_BOUND_PATHS {
                        b.insert(st.st_ino, p.clone());
                    }
                }
            }
            r
        }
        Perform::Listen { backlog } => netsys::listen(sock.as_fd(), *backlog)
            .map(|_| 0)
            .map_err(errno),
        Perform::Send {
            msgs,
            flags,
            lens_at,
        } => {
            let base = flags | libc::MSG_NOSIGNAL;
            let mut sent = 0usize;
            let mut last = 0usize;
            let mut err = None;
            for (i, m) in msgs.iter().enumerate() {
                let msg = Message {
                    name: &m.name,
                    data: &m.data,
                    control: &m.control,
                };
                let f = if try_first && !may_block {
                    base | libc::MSG_DONTWAIT
                } else {
                    base
                };
                match netsys::sendmsg(sock.as_fd(), &msg, f) {
                    Ok(n) => {
                        last = n;
                        if let Some(at) = lens_at {
                            let _ = netsys::write_process_memory(
                                caller.pid,
                                at + 64 * i as u64 + 56,
                                &(n as u32).to_ne_bytes(),
                            );
                        }
                        sent += 1;
                    }
                    Err(e) => {
                        let e = errno(e);
                        if try_first && !may_block && e == libc::EAGAIN {
                            if i == 0 {
                                return None;
                            }
                            // Some sent: a partial count, as a send
                            // interrupted by a full buffer returns.
                            break;
                        }
                        err = Some(e);
                        break;
                    }
                }
            }
            match (err, sent) {
                (Some(e), 0) => {
                    if e == libc::EPIPE && flags & libc::MSG_NOSIGNAL == 0 {
                        let _ = netsys::tgkill(caller.pid, caller.tid, libc::SIGPIPE);
                    }
                    Err(e)
                }
                _ if lens_at.is_some() => Ok(sent as i64),
                _ => Ok(last as i64),
            }
        }
    })
}

/// The names a DNS query asks about (lowercase, no final dot); `None`
/// when the bytes are not a well-formed query.
pub fn dns_names(q: &[u8]) -> Option<Vec<String>> {
    if q.len() < 12 || q[2] & 0x80 != 0 {
        return None;
    }
    let qd = u16::from_be_bytes([q[4], q[5]]) as usize;
    if qd == 0 || qd > 8 {
        return None;
    }
    let mut off = 12;
    let mut out = Vec::new();
    for _ in 0..qd {
        let (name, next) = read_name(q, off, false)?;
        if next + 4 > q.len() {
            return None;
        }
        off = next + 4;
        out.push(name);
    }
    Some(out)
}

/// A domain name at `off`: (name, offset after it). `compress`: follow
/// compression pointers (answers), at most 16.
fn read_name(m: &[u8], mut off: usize, compress: bool) -> Option<(String, usize)> {
    let mut labels: Vec<String> = Vec::new();
    let mut end = None;
    let mut jumps = 0;
    loop {
        let len = *m.get(off)? as usize;
        if len == 0 {
            off += 1;
            break;
        }
        if len & 0xc0 == 0xc0 {
            if !compress || jumps >= 16 {
                return None;
            }
            let p = ((len & 0x3f) << 8) | *m.get(off + 1)? as usize;
            end.get_or_insert(off + 2);
            off = p;
            jumps += 1;
            continue;
        }
        if len > 63 {
            return None;
        }
        let l = m.get(off + 1..off + 1 + len)?;
        labels.push(String::from_utf8_lossy(l).to_ascii_lowercase());
        off += 1 + len;
        if labels.iter().map(|l| l.len() + 1).sum::<usize>() > 255 {
            return None;
        }
    }
    Some((labels.join("."), end.unwrap_or(off)))
}

/// The (name, address) pairs an answer binds: every A/AAAA record, under
/// its owner and every name whose CNAME chain (in this answer) leads to it.
pub fn dns_bindings(m: &[u8]) -> Vec<(String, IpAddr)> {
    let mut out = Vec::new();
    if m.len() < 12 || m[2] & 0x80 == 0 {
        return out;
    }
    let qd = u16::from_be_bytes([m[4], m[5]]) as usize;
    let an = u16::from_be_bytes([m[6], m[7]]) as usize;
    let mut off = 12;
    for _ in 0..qd {
        let Some((_, next)) = read_name(m, off, true) else {
            return out;
        };
        off = next + 4;
    }
    let mut cnames: Vec<(String, String)> = Vec::new();
    let mut addrs: Vec<(String, IpAddr)> = Vec::new();
    for _ in 0..an.min(256) {
        let Some((owner, next)) = read_name(m, off, true) else {
            break;
        };
        let Some(h) = m.get(next..next + 10) else {
            break;
        };
        let rtype = u16::from_be_bytes([h[0], h[1]]);
        let class = u16::from_be_bytes([h[2], h[3]]);
        let rdlen = u16::from_be_bytes([h[8], h[9]]) as usize;
        let rd_at = next + 10;
        let Some(rd) = m.get(rd_at..rd_at + rdlen) else {
            break;
        };
        if class == 1 {
            match (rtype, rdlen) {
                (1, 4) => {
                    addrs.push((owner, IpAddr::V4(Ipv4Addr::new(rd[0], rd[1], rd[2], rd[3]))))
                }
                (28, 16) => {
                    let mut a = [0u8; 16];
                    a.copy_from_slice(rd);
                    addrs.push((owner, IpAddr::V6(Ipv6Addr::from(a))));
                }
                (5, _) => {
                    if let Some((target, _)) = read_name(m, rd_at, true) {
                        cnames.push((owner, target));
                    }
                }
                _ => {}
            }
        }
        off = rd_at + rdlen;
    }
    for (owner, ip) in addrs {
        let mut names = vec![owner.clone()];
        let mut i = 0;
        while i < names.len() && names.len() < MAX_NAMES_PER_ADDR {
            let n = names[i].clone();
            for (alias, target) in &cnames {
                if *target == n && !names.contains(alias) {
                    names.push(alias.clone());
                }
            }
            i += 1;
        }
        out.extend(names.into_iter().map(|n| (n, ip)));
    }
    out
}

/// Sends `query` to the upstream resolver from the supervisor's own socket,
/// binds what the answer says, and tells the judge (which records it).
fn resolve_upstream(judge: &dyn super::Judge, caller: &Caller, query: &[u8]) {
    let Some(up) = upstream().addr else { return };
    let asked = dns_names(query).unwrap_or_default().join(",");
    let (rcode, bound) = ask_upstream(up, query);
    for (name, ip) in &bound {
        bind_name(*ip, name);
    }
    judge.dns_answer(caller, &asked, &up.to_string(), rcode, &bound);
}

/// The response code and bindings of the upstream's answer to `query`.
fn ask_upstream(up: SocketAddr, query: &[u8]) -> (Option<u8>, Vec<(String, IpAddr)>) {
    let none = || (None, Vec::new());
    let local: SocketAddr = if up.is_ipv4() {
        (Ipv4Addr::UNSPECIFIED, 0).into()
    } else {
        (Ipv6Addr::UNSPECIFIED, 0).into()
    };
    let Ok(s) = UdpSocket::bind(local) else {
        return none();
    };
    if s.connect(up).is_err() || s.set_read_timeout(Some(UPSTREAM_TIMEOUT)).is_err() {
        return none();
    }
    if s.send(query).is_err() {
        return none();
    }
    let mut buf = vec![0u8; 4096];
    let deadline = std::time::Instant::now() + UPSTREAM_TIMEOUT;
    while std::time::Instant::now() < deadline {
        let Ok(n) = s.recv(&mut buf) else {
            return none();
        };
        let m = &buf[..n];
        if n >= 4 && m[..2] == query[..2] {
            return (Some(m[3] & 0x0f), dns_bindings(m));
        }
    }
    none()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query(name: &str) -> Vec<u8> {
        let mut q = vec![0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
        for l in name.split('.') {
            q.push(l.len() as u8);
            q.extend_from_slice(l.as_bytes());
        }
        q.extend_from_slice(&[0, 0, 1, 0, 1]);
        q
    }

    #[test]
    fn query_names_are_read_and_garbage_refused() {
        assert_eq!(
            dns_names(&query("PyPI.org")),
            Some(vec!["pypi.org".to_string()])
        );
        assert_eq!(dns_names(b"hello, world, not dns"), None);
        let mut answer = query("a.b");
        answer[2] |= 0x80;
        assert_eq!(dns_names(&answer), None);
        let mut ptr = query("x");
        ptr[12] = 0xc0;
        assert_eq!(dns_names(&ptr), None);
    }

    #[test]
    fn answers_bind_cname_chains() {
        let mut m = query("www.example.com");
        m[2] = 0x81;
        m[7] = 2; // two answers
                  // www.example.com CNAME cdn.example.net (pointer to the question for the owner)
        m.extend_from_slice(&[0xc0, 12, 0, 5, 0, 1, 0, 0, 0, 60]);
        let mut target = Vec::new();
        for l in ["cdn", "example", "net"] {
            target.push(l.len() as u8);
            target.extend_from_slice(l.as_bytes());
        }
        target.push(0);
        m.extend_from_slice(&(target.len() as u16).to_be_bytes());
        let target_at = m.len();
        m.extend_from_slice(&target);
        // cdn.example.net A 127.0.0.9
        m.extend_from_slice(&[
            0xc0,
            target_at as u8,
            0,
            1,
            0,
            1,
            0,
            0,
            0,
            60,
            0,
            4,
            127,
            0,
            0,
            9,
        ]);
        let b = dns_bindings(&m);
        let ip: IpAddr = "127.0.0.9".parse().unwrap();
        assert!(b.contains(&("cdn.example.net".into(), ip)), "{b:?}");
        assert!(b.contains(&("www.example.com".into(), ip)), "{b:?}");
    }

    #[test]
    fn sockaddrs() {
        let mut v4 = vec![0u8; 16];
        v4[..2].copy_from_slice(&(libc::AF_INET as u16).to_ne_bytes());
        v4[2..4].copy_from_slice(&443u16.to_be_bytes());
        v4[4..8].copy_from_slice(&[10, 0, 0, 1]);
        assert_eq!(
            parse_sockaddr(&v4),
            Ok(Dest::Ip {
                family: NetFamily::Inet,
                addr: "10.0.0.1".parse().unwrap(),
                port: 443
            })
        );
        assert_eq!(parse_sockaddr(&v4[..8]), Err(libc::EINVAL));
        let mut v6 = vec![0u8; 28];
        v6[..2].copy_from_slice(&(libc::AF_INET6 as u16).to_ne_bytes());
        v6[2..4].copy_from_slice(&80u16.to_be_bytes());
        let mapped: Ipv6Addr = "::ffff:127.0.0.1".parse().unwrap();
        v6[8..24].copy_from_slice(&mapped.octets());
        assert_eq!(
            parse_sockaddr(&v6),
            Ok(Dest::Ip {
                family: NetFamily::Inet6,
                addr: "127.0.0.1".parse().unwrap(),
                port: 80
            })
        );
        let mut un = (libc::AF_UNIX as u16).to_ne_bytes().to_vec();
        un.extend_from_slice(b"/run/x.sock\0junk");
        assert_eq!(
            parse_sockaddr(&un),
            Ok(Dest::UnixPath(b"/run/x.sock".to_vec()))
        );
        let mut ab = (libc::AF_UNIX as u16).to_ne_bytes().to_vec();
        ab.extend_from_slice(b"\0name");
        assert_eq!(
            parse_sockaddr(&ab),
            Ok(Dest::UnixAbstract(b"name".to_vec()))
        );
    }
}
