//! Decoding a notification into a request: which syscall, with which
//! arguments, read from the caller's memory with explicit caps.
//!
//! Memory is read through the [`TraceeMemory`] trait so that the decoder is
//! unit-tested against a fake address space, without root or a real tracee.
//! The caller (the notification loop) re-checks `NOTIF_ID_VALID` after the
//! decode, before acting on any byte read here.

use std::io;

use super::filter::nr;
use super::sys::Notif;

/// Longest path accepted, terminating NUL included (`PATH_MAX`).
pub const PATH_MAX: usize = 4096;
/// Longest single argv string (`MAX_ARG_STRLEN`: 32 pages).
pub const MAX_ARG_STRLEN: usize = 32 * 4096;
/// Total argv bytes accepted. The kernel's own limit is a quarter of the
/// stack rlimit (2 MiB with the usual 8 MiB stack).
pub const ARG_MAX: usize = 2 * 1024 * 1024;
/// Most argv entries accepted.
pub const MAX_ARGS: usize = 256 * 1024;

const OPEN_HOW_SIZE_VER0: u64 = 24;
const PAGE_SIZE: u64 = 4096;

/// Reads another process's memory.
pub trait TraceeMemory {
    /// Reads up to `buf.len()` bytes at `addr`; a short count means the byte
    /// after the last one read is not mapped.
    fn read(&self, addr: u64, buf: &mut [u8]) -> io::Result<usize>;
}

/// The memory of a real process, through `process_vm_readv`.
pub struct ProcessMemory {
    pub pid: i32,
}

impl TraceeMemory for ProcessMemory {
    fn read(&self, addr: u64, buf: &mut [u8]) -> io::Result<usize> {
        match super::sys::read_process_memory(self.pid, addr, buf) {
            Err(e) if e.raw_os_error() == Some(libc::EFAULT) => Ok(0),
            other => other,
        }
    }
}

/// Another process's memory read a whole page at a time, each page once per
/// decoded call: an exec's argv pointers and strings, which usually share a
/// few pages, cost one `process_vm_readv` per page instead of two per
/// argument. The caller is stopped in the kernel while its call is decoded;
/// another of its threads may still write, so bytes read here are no more
/// trusted than bytes read one argument at a time (the exec is confirmed at
/// its exec event and opens are emulated).
pub struct PageCached<'a> {
    inner: &'a dyn TraceeMemory,
    /// Page address -> its bytes as read from the page's start (fewer than a
    /// page when the rest was not readable).
    pages: std::cell::RefCell<std::collections::HashMap<u64, Vec<u8>>>,
}

impl<'a> PageCached<'a> {
    pub fn new(inner: &'a dyn TraceeMemory) -> PageCached<'a> {
        PageCached {
            inner,
            pages: Default::default(),
        }
    }
}

impl TraceeMemory for PageCached<'_> {
    fn read(&self, addr: u64, buf: &mut [u8]) -> io::Result<usize> {
        let mut done = 0;
        while done < buf.len() {
            let cur = addr.wrapping_add(done as u64);
            let page = cur & !(PAGE_SIZE - 1);
            let off = (cur - page) as usize;
            let mut pages = self.pages.borrow_mut();
            let bytes = match pages.entry(page) {
                std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
                std::collections::hash_map::Entry::Vacant(v) => {
                    let mut bytes = vec![0u8; PAGE_SIZE as usize];
                    let n = self.inner.read(page, &mut bytes)?;
                    bytes.truncate(n);
                    v.insert(bytes)
                }
            };
            if bytes.len() <= off {
                // The page's start was not readable but `cur` may be: read
                // it directly (what was asked, uncached).
                drop(pages);
                return Ok(done + self.inner.read(cur, &mut buf[done..])?);
            }
            let n = (bytes.len() - off).min(buf.len() - done);
            buf[done..done + n].copy_from_slice(&bytes[off..off + n]);
            done += n;
            if off + n < PAGE_SIZE as usize && done < buf.len() {
                // Short page: the byte after it is not readable.
                break;
            }
        }
        Ok(done)
    }
}

/// Why a call could not be decoded. Each maps to the errno the kernel would
/// have returned for the same input, so a refused call looks natural.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("bad address {addr:#x} for the {what}")]
    Fault { what: &'static str, addr: u64 },
    #[error("the {what} is longer than the {cap}-byte limit")]
    TooLong { what: &'static str, cap: usize },
    #[error("argv has more than {cap} entries")]
    TooManyArgs { cap: usize },
    #[error("openat2: unsupported open_how size {size}")]
    BadOpenHowSize { size: u64 },
    #[error("reading the caller's memory failed: {0}")]
    Read(String),
    #[error("unknown `which` {which} for a priority call")]
    BadWhich { which: i32 },
    #[error("invalid flags or values {flags:#x}")]
    BadFlags { flags: u64 },
}

impl DecodeError {
    /// The errno the caller gets.
    pub fn errno(&self) -> i32 {
        match self {
            DecodeError::Fault { .. } => libc::EFAULT,
            DecodeError::TooLong { what, .. } if what.contains("path") => libc::ENAMETOOLONG,
            DecodeError::TooLong { what, .. } if *what == "xattr name" => libc::ERANGE,
            DecodeError::TooLong { .. } | DecodeError::TooManyArgs { .. } => libc::E2BIG,
            DecodeError::BadOpenHowSize { size } if *size < OPEN_HOW_SIZE_VER0 => libc::EINVAL,
            DecodeError::BadOpenHowSize { .. } => libc::E2BIG,
            DecodeError::Read(_) => libc::EPERM,
            DecodeError::BadWhich { .. } | DecodeError::BadFlags { .. } => libc::EINVAL,
        }
    }
}

/// A decoded call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    Open(OpenRequest),
    Exec(ExecRequest),
    /// A call that acts on another process or thread: signals, resource
    /// limits, scheduling, memory placement.
    Process(ProcessRequest),
    PathOp(PathOpRequest),
    /// A call that creates a name or changes a file's metadata.
    FileOp(FileOpRequest),
    /// A mapping made executable: `mmap` of a file with `PROT_EXEC`, or
    /// `mprotect` adding `PROT_EXEC`.
    CodeMap(CodeMapRequest),
    /// A network call (`connect`, `bind`, `listen`, `sendto`, `sendmsg`,
    /// `sendmmsg`): its memory is read by [`super::net`], once, when it is
    /// performed.
    Net(NetRequest),
    /// A notified syscall this decoder does not know: refused.
    Unknown {
        nr: i32,
    },
}

/// A network call and its raw arguments.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NetRequest {
    pub syscall: &'static str,
    pub nr: u32,
    pub args: [u64; 6],
}

/// `open`, `openat`, `openat2`, `creat`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenRequest {
    pub syscall: &'static str,
    /// `AT_FDCWD` or a descriptor of the caller.
    pub dirfd: i32,
    pub path: Vec<u8>,
    /// Open flags, as `openat2` takes them (validated by the real `openat2`
    /// when the supervisor performs the open).
    pub flags: u64,
    pub mode: u64,
    pub resolve: u64,
}

/// `execve`, `execveat`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecRequest {
    pub syscall: &'static str,
    pub dirfd: i32,
    pub path: Vec<u8>,
    pub argv: Vec<Vec<u8>>,
    /// `execveat` flags (`AT_EMPTY_PATH`, `AT_SYMLINK_NOFOLLOW`).
    pub flags: i32,
}

/// A call that removes, moves, aliases or truncates a file by path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathOpRequest {
    pub syscall: &'static str,
    pub op: PathOp,
    pub dirfd: i32,
    pub path: Vec<u8>,
    /// The second path (`link`, `rename`): its dirfd and bytes.
    pub dirfd2: i32,
    pub path2: Vec<u8>,
    /// `*at` flags (`AT_REMOVEDIR`, `AT_SYMLINK_FOLLOW`, `AT_EMPTY_PATH`,
    /// `RENAME_*`).
    pub flags: u32,
    /// `truncate`'s length.
    pub length: i64,
}

/// A call that creates a name (`mkdir`, `mknod`, `symlink`) or changes a
/// file's metadata (mode, owner, times, extended attributes, inode flags).
/// Every pointer argument is read here, once: the supervisor performs the
/// call with these values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileOpRequest {
    pub syscall: &'static str,
    pub dirfd: i32,
    pub path: Vec<u8>,
    /// Follow a symlink in the last component.
    pub follow: bool,
    /// The object is the descriptor `dirfd` itself: `fchmod(fd)`,
    /// `futimens(fd)`, `fsetxattr(fd)`, `ioctl(fd)` (an `O_PATH`
    /// descriptor is refused with `EBADF`, as the kernel does), or
    /// `AT_EMPTY_PATH` with an empty path (`O_PATH` allowed).
    pub fd_only: Option<FdUse>,
    pub op: FileOp,
}

/// `mmap(addr, len, prot, flags, fd, off)` with `PROT_EXEC` on a file, or
/// `mprotect(addr, len, prot)` / `pkey_mprotect` with `PROT_EXEC`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CodeMapRequest {
    pub syscall: &'static str,
    /// The file mapped (`mmap`); `None` for `mprotect`, whose mappings are
    /// looked up by address.
    pub fd: Option<i32>,
    pub addr: u64,
    pub len: u64,
}

/// How a call names its object by descriptor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FdUse {
    /// `fchmod(fd)` and the like: an `O_PATH` descriptor is `EBADF`.
    Open,
    /// `AT_EMPTY_PATH`: any descriptor, `O_PATH` included.
    EmptyPath,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FileOp {
    Mkdir {
        mode: u32,
    },
    Mknod {
        mode: u32,
        dev: u64,
    },
    /// `target` is the link's text, recorded, never resolved.
    Symlink {
        target: Vec<u8>,
    },
    Chmod {
        mode: u32,
    },
    Chown {
        uid: u32,
        gid: u32,
    },
    /// As for `utimensat`: (seconds, nanoseconds) of access and
    /// modification (`UTIME_NOW`, `UTIME_OMIT` allowed); `None`: both now.
    Times {
        times: Option<[(i64, i64); 2]>,
    },
    SetXattr {
        name: Vec<u8>,
        value: Vec<u8>,
        flags: i32,
    },
    RemoveXattr {
        name: Vec<u8>,
    },
    /// An inode `ioctl` and the bytes its argument points to.
    Ioctl {
        cmd: u32,
        arg: Vec<u8>,
    },
}

/// Longest extended attribute name, and value (`XATTR_NAME_MAX`,
/// `XATTR_SIZE_MAX`).
const XATTR_NAME_MAX: usize = 255;
const XATTR_SIZE_MAX: usize = 65536;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathOp {
    Unlink,
    Rename,
    Link,
    Truncate,
}

/// A call that acts on other processes: who is aimed at, and with what.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProcessRequest {
    pub syscall: &'static str,
    pub target: ProcessTarget,
    /// For the signal family, the signal (0 only probes); `None` for calls
    /// that change the target otherwise (limits, priority, memory).
    pub signal: Option<i32>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProcessTarget {
    /// `kill(pid > 0)`, `rt_sigqueueinfo`, `pidfd_open`: a process.
    Process(i32),
    /// `kill(0)`, `setpriority(PRIO_PGRP, 0)`: the caller's process group.
    OwnGroup,
    /// `kill(-pgid)`, `setpriority(PRIO_PGRP, pgid)`.
    Group(i32),
    /// `kill(-1)`: every process the caller may signal.
    Everyone,
    /// `setpriority(PRIO_USER, …)`, `ioprio_set(IOPRIO_WHO_USER, …)`:
    /// every process of a user, the supervisor's included.
    User,
    /// `tkill(tid)`, `tgkill(tgid, tid)`, `prlimit64(tid)`, …: a thread.
    Thread { tgid: Option<i32>, tid: i32 },
    /// The calling thread itself (a target of 0).
    Caller,
}

/// Flags `open`/`openat` accept; the kernel silently drops the others
/// (`VALID_OPEN_FLAGS`). `openat2` refuses unknown flags instead.
pub const VALID_OPEN_FLAGS: u64 = (libc::O_ACCMODE
    | libc::O_CREAT
    | libc::O_EXCL
    | libc::O_NOCTTY
    | libc::O_TRUNC
    | libc::O_APPEND
    | libc::O_NONBLOCK
    | libc::O_DSYNC
    | libc::O_SYNC
    | libc::O_ASYNC
    | libc::O_DIRECT
    | libc::O_LARGEFILE
    | libc::O_DIRECTORY
    | libc::O_NOFOLLOW
    | libc::O_NOATIME
    | libc::O_CLOEXEC
    | libc::O_PATH
    | libc::O_TMPFILE) as u64;

/// Whether open flags will create a file (`O_CREAT` or `O_TMPFILE`).
pub fn will_create(flags: u64) -> bool {
    flags & libc::O_CREAT as u64 != 0 || flags & libc::O_TMPFILE as u64 == libc::O_TMPFILE as u64
}

fn thread_or_caller(tid: i32) -> ProcessTarget {
    if tid == 0 {
        ProcessTarget::Caller
    } else {
        ProcessTarget::Thread { tgid: None, tid }
    }
}

fn process_call_name(nr: u32) -> &'static str {
    match nr {
        nr::PRLIMIT64 => "prlimit64",
        nr::SCHED_SETPARAM => "sched_setparam",
        nr::SCHED_SETSCHEDULER => "sched_setscheduler",
        nr::SCHED_SETAFFINITY => "sched_setaffinity",
        nr::SCHED_SETATTR => "sched_setattr",
        nr::MIGRATE_PAGES => "migrate_pages",
        nr::MOVE_PAGES => "move_pages",
        nr::GET_ROBUST_LIST => "get_robust_list",
        nr::SETPRIORITY => "setpriority",
        nr::IOPRIO_SET => "ioprio_set",
        _ => "unknown",
    }
}

/// Decodes one notification.
pub fn decode(n: &Notif, mem: &dyn TraceeMemory) -> Result<Request, DecodeError> {
    let a = n.args;
    let int = |i: usize| a[i] as i32;
    // open/openat ignore mode bits outside 07777 and the mode itself unless
    // the call creates; openat2 is strict about both, so normalise here.
    let legacy_mode = |flags: u64, mode: u64| if will_create(flags) { mode & 0o7777 } else { 0 };
    let net = |syscall| {
        Request::Net(NetRequest {
            syscall,
            nr: n.nr as u32,
            args: a,
        })
    };
    let req = match n.nr as u32 {
        nr::CONNECT => net("connect"),
        nr::BIND => net("bind"),
        nr::LISTEN => net("listen"),
        nr::SENDTO => net("sendto"),
        nr::SENDMSG => net("sendmsg"),
        nr::SENDMMSG => net("sendmmsg"),
        nr::OPEN => {
            let flags = (a[1] & 0xffff_ffff) & VALID_OPEN_FLAGS | libc::O_LARGEFILE as u64;
            Request::Open(OpenRequest {
                syscall: "open",
                dirfd: libc::AT_FDCWD,
                path: read_path(mem, a[0])?,
                flags,
                mode: legacy_mode(flags, a[2]),
                resolve: 0,
            })
        }
        nr::CREAT => {
            let flags = (libc::O_CREAT | libc::O_WRONLY | libc::O_TRUNC | libc::O_LARGEFILE) as u64;
            Request::Open(OpenRequest {
                syscall: "creat",
                dirfd: libc::AT_FDCWD,
                path: read_path(mem, a[0])?,
                flags,
                mode: a[1] & 0o7777,
                resolve: 0,
            })
        }
        nr::OPENAT => {
            let flags = (a[2] & 0xffff_ffff) & VALID_OPEN_FLAGS | libc::O_LARGEFILE as u64;
            Request::Open(OpenRequest {
                syscall: "openat",
                dirfd: int(0),
                path: read_path(mem, a[1])?,
                flags,
                mode: legacy_mode(flags, a[3]),
                resolve: 0,
            })
        }
        nr::OPENAT2 => {
            let size = a[3];
            if !(OPEN_HOW_SIZE_VER0..=PAGE_SIZE).contains(&size) {
                return Err(DecodeError::BadOpenHowSize { size });
            }
            let mut how = vec![0u8; size as usize];
            read_exact(mem, a[2], &mut how, "open_how")?;
            // Bytes beyond the fields this kernel interface knows must be
            // zero (the kernel's copy_struct_from_user rule).
            if how[OPEN_HOW_SIZE_VER0 as usize..].iter().any(|&b| b != 0) {
                return Err(DecodeError::BadOpenHowSize { size });
            }
            let field =
                |i: usize| u64::from_ne_bytes(how[i * 8..i * 8 + 8].try_into().unwrap_or([0; 8]));
            Request::Open(OpenRequest {
                syscall: "openat2",
                dirfd: int(0),
                path: read_path(mem, a[1])?,
                flags: field(0),
                mode: field(1),
                resolve: field(2),
            })
        }
        nr::EXECVE => Request::Exec(ExecRequest {
            syscall: "execve",
            dirfd: libc::AT_FDCWD,
            path: read_path(mem, a[0])?,
            argv: read_argv(mem, a[1])?,
            flags: 0,
        }),
        nr::EXECVEAT => Request::Exec(ExecRequest {
            syscall: "execveat",
            dirfd: int(0),
            path: read_path(mem, a[1])?,
            argv: read_argv(mem, a[2])?,
            flags: int(4),
        }),
        nr::KILL => {
            let pid = int(0);
            let target = match pid {
                0 => ProcessTarget::OwnGroup,
                -1 => ProcessTarget::Everyone,
                p if p < 0 => ProcessTarget::Group(p.wrapping_neg()),
                p => ProcessTarget::Process(p),
            };
            Request::Process(ProcessRequest {
                syscall: "kill",
                target,
                signal: Some(int(1)),
            })
        }
        nr::TKILL => Request::Process(ProcessRequest {
            syscall: "tkill",
            target: ProcessTarget::Thread {
                tgid: None,
                tid: int(0),
            },
            signal: Some(int(1)),
        }),
        nr::TGKILL => Request::Process(ProcessRequest {
            syscall: "tgkill",
            target: ProcessTarget::Thread {
                tgid: Some(int(0)),
                tid: int(1),
            },
            signal: Some(int(2)),
        }),
        nr::RT_SIGQUEUEINFO => Request::Process(ProcessRequest {
            syscall: "rt_sigqueueinfo",
            target: ProcessTarget::Process(int(0)),
            signal: Some(int(1)),
        }),
        nr::RT_TGSIGQUEUEINFO => Request::Process(ProcessRequest {
            syscall: "rt_tgsigqueueinfo",
            target: ProcessTarget::Thread {
                tgid: Some(int(0)),
                tid: int(1),
            },
            signal: Some(int(2)),
        }),
        nr::PIDFD_OPEN => Request::Process(ProcessRequest {
            syscall: "pidfd_open",
            target: ProcessTarget::Process(int(0)),
            signal: Some(0),
        }),
        nr::PRLIMIT64
        | nr::SCHED_SETPARAM
        | nr::SCHED_SETSCHEDULER
        | nr::SCHED_SETAFFINITY
        | nr::SCHED_SETATTR
        | nr::MIGRATE_PAGES
        | nr::MOVE_PAGES
        | nr::GET_ROBUST_LIST => Request::Process(ProcessRequest {
            syscall: process_call_name(n.nr as u32),
            target: thread_or_caller(int(0)),
            signal: None,
        }),
        nr::SETPRIORITY | nr::IOPRIO_SET => {
            // (which, who): setpriority's PRIO_PROCESS/PGRP/USER are 0/1/2,
            // ioprio_set's IOPRIO_WHO_PROCESS/PGRP/USER are 1/2/3.
            let base = if n.nr as u32 == nr::SETPRIORITY { 0 } else { 1 };
            let who = int(1);
            let target = match int(0) - base {
                0 => thread_or_caller(who),
                1 if who == 0 => ProcessTarget::OwnGroup,
                1 => ProcessTarget::Group(who),
                2 => ProcessTarget::User,
                // The kernel answers EINVAL for any other `which`.
                _ => return Err(DecodeError::BadWhich { which: int(0) }),
            };
            Request::Process(ProcessRequest {
                syscall: process_call_name(n.nr as u32),
                target,
                signal: None,
            })
        }
        nr::UNLINK | nr::RMDIR | nr::UNLINKAT | nr::TRUNCATE => {
            let (syscall, op, dirfd, path, flags, length) = match n.nr as u32 {
                nr::UNLINK => ("unlink", PathOp::Unlink, libc::AT_FDCWD, a[0], 0, 0),
                nr::RMDIR => (
                    "rmdir",
                    PathOp::Unlink,
                    libc::AT_FDCWD,
                    a[0],
                    libc::AT_REMOVEDIR as u32,
                    0,
                ),
                nr::UNLINKAT => ("unlinkat", PathOp::Unlink, int(0), a[1], a[2] as u32, 0),
                _ => (
                    "truncate",
                    PathOp::Truncate,
                    libc::AT_FDCWD,
                    a[0],
                    0,
                    a[1] as i64,
                ),
            };
            Request::PathOp(PathOpRequest {
                syscall,
                op,
                dirfd,
                path: read_path(mem, path)?,
                dirfd2: libc::AT_FDCWD,
                path2: Vec::new(),
                flags,
                length,
            })
        }
        nr::RENAME | nr::RENAMEAT | nr::RENAMEAT2 | nr::LINK | nr::LINKAT => {
            let (syscall, op, d1, p1, d2, p2, flags) = match n.nr as u32 {
                nr::RENAME => (
                    "rename",
                    PathOp::Rename,
                    libc::AT_FDCWD,
                    a[0],
                    libc::AT_FDCWD,
                    a[1],
                    0,
                ),
                nr::RENAMEAT => ("renameat", PathOp::Rename, int(0), a[1], int(2), a[3], 0),
                nr::RENAMEAT2 => (
                    "renameat2",
                    PathOp::Rename,
                    int(0),
                    a[1],
                    int(2),
                    a[3],
                    a[4] as u32,
                ),
                nr::LINK => (
                    "link",
                    PathOp::Link,
                    libc::AT_FDCWD,
                    a[0],
                    libc::AT_FDCWD,
                    a[1],
                    0,
                ),
                _ => (
                    "linkat",
                    PathOp::Link,
                    int(0),
                    a[1],
                    int(2),
                    a[3],
                    a[4] as u32,
                ),
            };
            Request::PathOp(PathOpRequest {
                syscall,
                op,
                dirfd: d1,
                path: read_path(mem, p1)?,
                dirfd2: d2,
                path2: read_path(mem, p2)?,
                flags,
                length: 0,
            })
        }
        nr::MMAP => Request::CodeMap(CodeMapRequest {
            syscall: "mmap",
            fd: Some(int(4)),
            addr: a[0],
            len: a[1],
        }),
        nr::MPROTECT | nr::PKEY_MPROTECT => Request::CodeMap(CodeMapRequest {
            syscall: if n.nr as u32 == nr::MPROTECT {
                "mprotect"
            } else {
                "pkey_mprotect"
            },
            fd: None,
            addr: a[0],
            len: a[1],
        }),
        nr::IOCTL => {
            let cmd = a[1] as u32;
            let len = match cmd {
                // FS_IOC_FSSETXATTR: struct fsxattr.
                0x401c_5820 => 28,
                // FS_IOC_SETFLAGS (both sizes) take an int.
                _ => 4,
            };
            let mut arg = vec![0u8; len];
            read_exact(mem, a[2], &mut arg, "ioctl argument")?;
            file_op(
                "ioctl",
                int(0),
                Vec::new(),
                true,
                Some(FdUse::Open),
                FileOp::Ioctl { cmd, arg },
            )
        }
        nr::MKDIR
        | nr::MKDIRAT
        | nr::MKNOD
        | nr::MKNODAT
        | nr::SYMLINK
        | nr::SYMLINKAT
        | nr::CHMOD
        | nr::FCHMOD
        | nr::FCHMODAT
        | nr::FCHMODAT2
        | nr::CHOWN
        | nr::FCHOWN
        | nr::LCHOWN
        | nr::FCHOWNAT
        | nr::UTIME
        | nr::UTIMES
        | nr::FUTIMESAT
        | nr::UTIMENSAT
        | nr::SETXATTR
        | nr::LSETXATTR
        | nr::FSETXATTR
        | nr::REMOVEXATTR
        | nr::LREMOVEXATTR
        | nr::FREMOVEXATTR => decode_file_op(n.nr as u32, &a, mem)?,
        _ => Request::Unknown { nr: n.nr },
    };
    Ok(req)
}

fn file_op(
    syscall: &'static str,
    dirfd: i32,
    path: Vec<u8>,
    follow: bool,
    fd_only: Option<FdUse>,
    op: FileOp,
) -> Request {
    Request::FileOp(FileOpRequest {
        syscall,
        dirfd,
        path,
        follow,
        fd_only,
        op,
    })
}

/// `*at` flags: (follow the last symlink, the descriptor itself when the
/// path is empty).
fn at_flags(flags: u64, path: &[u8]) -> Result<(bool, Option<FdUse>), DecodeError> {
    let known = (libc::AT_SYMLINK_NOFOLLOW | libc::AT_EMPTY_PATH) as u64;
    if flags & !known != 0 {
        return Err(DecodeError::BadFlags { flags });
    }
    let follow = flags & libc::AT_SYMLINK_NOFOLLOW as u64 == 0;
    let empty = flags & libc::AT_EMPTY_PATH as u64 != 0 && path.is_empty();
    Ok((follow, empty.then_some(FdUse::EmptyPath)))
}

fn read_name(mem: &dyn TraceeMemory, addr: u64) -> Result<Vec<u8>, DecodeError> {
    let name = read_cstr(mem, addr, XATTR_NAME_MAX + 1, "xattr name")?;
    if name.is_empty() {
        return Err(DecodeError::BadFlags { flags: 0 });
    }
    Ok(name)
}

/// Two `struct timeval`s (`utimes`, `futimesat`) as `utimensat` times.
fn read_timevals(
    mem: &dyn TraceeMemory,
    addr: u64,
) -> Result<Option<[(i64, i64); 2]>, DecodeError> {
    if addr == 0 {
        return Ok(None);
    }
    let mut b = [0u8; 32];
    read_exact(mem, addr, &mut b, "times")?;
    let f = |i: usize| i64::from_ne_bytes(b[i * 8..i * 8 + 8].try_into().unwrap_or([0; 8]));
    for usec in [f(1), f(3)] {
        if !(0..1_000_000).contains(&usec) {
            return Err(DecodeError::BadFlags { flags: usec as u64 });
        }
    }
    Ok(Some([(f(0), f(1) * 1000), (f(2), f(3) * 1000)]))
}

fn decode_file_op(nr: u32, a: &[u64; 6], mem: &dyn TraceeMemory) -> Result<Request, DecodeError> {
    let int = |i: usize| a[i] as i32;
    let cwd = libc::AT_FDCWD;
    let fd = Some(FdUse::Open);
    Ok(match nr {
        nr::MKDIR => file_op(
            "mkdir",
            cwd,
            read_path(mem, a[0])?,
            false,
            None,
            FileOp::Mkdir { mode: a[1] as u32 },
        ),
        nr::MKDIRAT => file_op(
            "mkdirat",
            int(0),
            read_path(mem, a[1])?,
            false,
            None,
            FileOp::Mkdir { mode: a[2] as u32 },
        ),
        nr::MKNOD => file_op(
            "mknod",
            cwd,
            read_path(mem, a[0])?,
            false,
            None,
            FileOp::Mknod {
                mode: a[1] as u32,
                dev: a[2],
            },
        ),
        nr::MKNODAT => file_op(
            "mknodat",
            int(0),
            read_path(mem, a[1])?,
            false,
            None,
            FileOp::Mknod {
                mode: a[2] as u32,
                dev: a[3],
            },
        ),
        nr::SYMLINK => {
            let target = read_path(mem, a[0])?;
            file_op(
                "symlink",
                cwd,
                read_path(mem, a[1])?,
                false,
                None,
                FileOp::Symlink { target },
            )
        }
        nr::SYMLINKAT => {
            let target = read_path(mem, a[0])?;
            file_op(
                "symlinkat",
                int(1),
                read_path(mem, a[2])?,
                false,
                None,
                FileOp::Symlink { target },
            )
        }
        nr::CHMOD => file_op(
            "chmod",
            cwd,
            read_path(mem, a[0])?,
            true,
            None,
            FileOp::Chmod { mode: a[1] as u32 },
        ),
        nr::FCHMOD => file_op(
            "fchmod",
            int(0),
            Vec::new(),
            true,
            fd,
            FileOp::Chmod { mode: a[1] as u32 },
        ),
        nr::FCHMODAT => file_op(
            "fchmodat",
            int(0),
            read_path(mem, a[1])?,
            true,
            None,
            FileOp::Chmod { mode: a[2] as u32 },
        ),
        nr::FCHMODAT2 => {
            let path = read_path_or_empty(mem, a[1], a[3])?;
            let (follow, fd_only) = at_flags(a[3], &path)?;
            file_op(
                "fchmodat2",
                int(0),
                path,
                follow,
                fd_only,
                FileOp::Chmod { mode: a[2] as u32 },
            )
        }
        nr::CHOWN | nr::LCHOWN => {
            let (name, follow) = if nr == nr::CHOWN {
                ("chown", true)
            } else {
                ("lchown", false)
            };
            file_op(
                name,
                cwd,
                read_path(mem, a[0])?,
                follow,
                None,
                FileOp::Chown {
                    uid: a[1] as u32,
                    gid: a[2] as u32,
                },
            )
        }
        nr::FCHOWN => file_op(
            "fchown",
            int(0),
            Vec::new(),
            true,
            fd,
            FileOp::Chown {
                uid: a[1] as u32,
                gid: a[2] as u32,
            },
        ),
        nr::FCHOWNAT => {
            let path = read_path_or_empty(mem, a[1], a[4])?;
            let (follow, fd_only) = at_flags(a[4], &path)?;
            file_op(
                "fchownat",
                int(0),
                path,
                follow,
                fd_only,
                FileOp::Chown {
                    uid: a[2] as u32,
                    gid: a[3] as u32,
                },
            )
        }
        nr::UTIME => {
            let times = if a[1] == 0 {
                None
            } else {
                let mut b = [0u8; 16];
                read_exact(mem, a[1], &mut b, "times")?;
                let f =
                    |i: usize| i64::from_ne_bytes(b[i * 8..i * 8 + 8].try_into().unwrap_or([0; 8]));
                Some([(f(0), 0), (f(1), 0)])
            };
            file_op(
                "utime",
                cwd,
                read_path(mem, a[0])?,
                true,
                None,
                FileOp::Times { times },
            )
        }
        nr::UTIMES => {
            let times = read_timevals(mem, a[1])?;
            file_op(
                "utimes",
                cwd,
                read_path(mem, a[0])?,
                true,
                None,
                FileOp::Times { times },
            )
        }
        nr::FUTIMESAT => {
            let times = read_timevals(mem, a[2])?;
            file_op(
                "futimesat",
                int(0),
                read_path(mem, a[1])?,
                true,
                None,
                FileOp::Times { times },
            )
        }
        nr::UTIMENSAT => {
            let times = if a[2] == 0 {
                None
            } else {
                let mut b = [0u8; 32];
                read_exact(mem, a[2], &mut b, "times")?;
                let f =
                    |i: usize| i64::from_ne_bytes(b[i * 8..i * 8 + 8].try_into().unwrap_or([0; 8]));
                Some([(f(0), f(1)), (f(2), f(3))])
            };
            let op = FileOp::Times { times };
            if a[1] == 0 {
                // utimensat(fd, NULL, …): futimens; no flags allowed.
                if a[3] & libc::AT_SYMLINK_NOFOLLOW as u64 != 0 {
                    return Err(DecodeError::BadFlags { flags: a[3] });
                }
                file_op("utimensat", int(0), Vec::new(), true, fd, op)
            } else {
                let path = read_path_or_empty(mem, a[1], a[3])?;
                let (follow, fd_only) = at_flags(a[3], &path)?;
                file_op("utimensat", int(0), path, follow, fd_only, op)
            }
        }
        nr::SETXATTR | nr::LSETXATTR | nr::FSETXATTR => {
            let name = read_name(mem, a[1])?;
            let size = a[3] as usize;
            if size > XATTR_SIZE_MAX {
                return Err(DecodeError::TooLong {
                    what: "xattr value",
                    cap: XATTR_SIZE_MAX,
                });
            }
            let mut value = vec![0u8; size];
            if size > 0 {
                read_exact(mem, a[2], &mut value, "xattr value")?;
            }
            let op = FileOp::SetXattr {
                name,
                value,
                flags: int(4),
            };
            match nr {
                nr::SETXATTR => file_op("setxattr", cwd, read_path(mem, a[0])?, true, None, op),
                nr::LSETXATTR => file_op("lsetxattr", cwd, read_path(mem, a[0])?, false, None, op),
                _ => file_op("fsetxattr", int(0), Vec::new(), true, fd, op),
            }
        }
        _ => {
            let op = FileOp::RemoveXattr {
                name: read_name(mem, a[1])?,
            };
            match nr {
                nr::REMOVEXATTR => {
                    file_op("removexattr", cwd, read_path(mem, a[0])?, true, None, op)
                }
                nr::LREMOVEXATTR => {
                    file_op("lremovexattr", cwd, read_path(mem, a[0])?, false, None, op)
                }
                _ => file_op("fremovexattr", int(0), Vec::new(), true, fd, op),
            }
        }
    })
}

/// A path that may be empty when the call passes `AT_EMPTY_PATH`.
fn read_path_or_empty(
    mem: &dyn TraceeMemory,
    addr: u64,
    flags: u64,
) -> Result<Vec<u8>, DecodeError> {
    match read_path(mem, addr) {
        Err(DecodeError::Fault { .. }) if addr == 0 && flags & libc::AT_EMPTY_PATH as u64 != 0 => {
            Ok(Vec::new())
        }
        other => other,
    }
}

fn read_exact(
    mem: &dyn TraceeMemory,
    addr: u64,
    buf: &mut [u8],
    what: &'static str,
) -> Result<(), DecodeError> {
    let mut done = 0;
    while done < buf.len() {
        let n = mem
            .read(addr.wrapping_add(done as u64), &mut buf[done..])
            .map_err(|e| DecodeError::Read(e.to_string()))?;
        if n == 0 {
            return Err(DecodeError::Fault { what, addr });
        }
        done += n;
    }
    Ok(())
}

/// Reads a NUL-terminated string of at most `cap` bytes (NUL included).
/// Reads page by page so that a string ending just before an unmapped page
/// is read correctly.
pub fn read_cstr(
    mem: &dyn TraceeMemory,
    addr: u64,
    cap: usize,
    what: &'static str,
) -> Result<Vec<u8>, DecodeError> {
    if addr == 0 {
        return Err(DecodeError::Fault { what, addr });
    }
    let mut out = Vec::new();
    let mut chunk = [0u8; PAGE_SIZE as usize];
    let mut cur = addr;
    loop {
        let to_page_end = (PAGE_SIZE - cur % PAGE_SIZE) as usize;
        let want = to_page_end.min(cap + 1 - out.len().min(cap));
        let n = mem
            .read(cur, &mut chunk[..want])
            .map_err(|e| DecodeError::Read(e.to_string()))?;
        if n == 0 {
            return Err(DecodeError::Fault { what, addr });
        }
        if let Some(pos) = chunk[..n].iter().position(|&b| b == 0) {
            out.extend_from_slice(&chunk[..pos]);
            if out.len() + 1 > cap {
                return Err(DecodeError::TooLong { what, cap });
            }
            return Ok(out);
        }
        out.extend_from_slice(&chunk[..n]);
        if out.len() + 1 > cap {
            return Err(DecodeError::TooLong { what, cap });
        }
        cur = cur.wrapping_add(n as u64);
    }
}

fn read_path(mem: &dyn TraceeMemory, addr: u64) -> Result<Vec<u8>, DecodeError> {
    read_cstr(mem, addr, PATH_MAX, "path")
}

/// Reads a NULL-terminated array of string pointers (argv). A NULL array is
/// an empty argv, as Linux accepts it.
pub fn read_argv(mem: &dyn TraceeMemory, addr: u64) -> Result<Vec<Vec<u8>>, DecodeError> {
    let mut argv = Vec::new();
    if addr == 0 {
        return Ok(argv);
    }
    let mut total = 0usize;
    for i in 0.. {
        if i >= MAX_ARGS {
            return Err(DecodeError::TooManyArgs { cap: MAX_ARGS });
        }
        let mut ptr = [0u8; 8];
        read_exact(mem, addr.wrapping_add(8 * i as u64), &mut ptr, "argv array")?;
        let p = u64::from_ne_bytes(ptr);
        if p == 0 {
            break;
        }
        let s = read_cstr(mem, p, MAX_ARG_STRLEN, "argv string")?;
        total += s.len() + 1;
        if total > ARG_MAX {
            return Err(DecodeError::TooLong {
                what: "argv",
                cap: ARG_MAX,
            });
        }
        argv.push(s);
    }
    Ok(argv)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::collections::BTreeMap;

    /// A fake address space: mapped regions at fixed addresses.
    #[derive(Default)]
    pub struct FakeMemory {
        regions: BTreeMap<u64, Vec<u8>>,
    }

    impl FakeMemory {
        pub fn map(&mut self, addr: u64, bytes: &[u8]) {
            self.regions.insert(addr, bytes.to_vec());
        }
    }

    impl TraceeMemory for FakeMemory {
        fn read(&self, addr: u64, buf: &mut [u8]) -> io::Result<usize> {
            for (&start, bytes) in &self.regions {
                let end = start + bytes.len() as u64;
                if addr >= start && addr < end {
                    let off = (addr - start) as usize;
                    let n = buf.len().min(bytes.len() - off);
                    buf[..n].copy_from_slice(&bytes[off..off + n]);
                    return Ok(n);
                }
            }
            Ok(0)
        }
    }

    fn notif(nr: u32, args: [u64; 6]) -> Notif {
        Notif {
            id: 1,
            pid: 100,
            nr: nr as i32,
            arch: super::super::sys::AUDIT_ARCH_X86_64,
            args,
        }
    }

    #[test]
    fn openat_reads_path_and_masks_flags() {
        let mut m = FakeMemory::default();
        m.map(0x1000, b"etc/passwd\0junk");
        let flags = (libc::O_RDONLY | libc::O_CLOEXEC) as u64 | 0x8000_0000; // unknown bit dropped
        let r = decode(
            &notif(
                nr::OPENAT,
                [libc::AT_FDCWD as u32 as u64, 0x1000, flags, 0o777, 0, 0],
            ),
            &m,
        )
        .unwrap();
        let Request::Open(o) = r else {
            panic!("not an open: {r:?}")
        };
        assert_eq!(o.path, b"etc/passwd");
        assert_eq!(o.dirfd, libc::AT_FDCWD);
        assert_eq!(o.flags & 0x8000_0000, 0);
        assert_ne!(o.flags & libc::O_CLOEXEC as u64, 0);
        assert_eq!(o.mode, 0, "mode is ignored without O_CREAT");
    }

    #[test]
    fn creat_is_an_open_for_write_create_truncate() {
        let mut m = FakeMemory::default();
        m.map(0x2000, b"out.txt\0");
        let Request::Open(o) =
            decode(&notif(nr::CREAT, [0x2000, 0o100644, 0, 0, 0, 0]), &m).unwrap()
        else {
            panic!()
        };
        assert_eq!(o.flags & 3, libc::O_WRONLY as u64);
        assert_ne!(o.flags & libc::O_CREAT as u64, 0);
        assert_ne!(o.flags & libc::O_TRUNC as u64, 0);
        assert_eq!(o.mode, 0o644);
    }

    #[test]
    fn path_spanning_into_an_unmapped_page_is_a_fault() {
        let mut m = FakeMemory::default();
        // 10 bytes right before the end of a page, no NUL, next page unmapped.
        m.map(0x3000 - 10, b"abcdefghij");
        let e = decode(&notif(nr::OPEN, [0x3000 - 10, 0, 0, 0, 0, 0]), &m).unwrap_err();
        assert_eq!(e.errno(), libc::EFAULT);
    }

    #[test]
    fn path_ending_at_a_page_boundary_is_read() {
        let mut m = FakeMemory::default();
        m.map(0x4000 - 4, b"abc\0");
        let Request::Open(o) = decode(&notif(nr::OPEN, [0x4000 - 4, 0, 0, 0, 0, 0]), &m).unwrap()
        else {
            panic!()
        };
        assert_eq!(o.path, b"abc");
    }

    #[test]
    fn null_path_is_a_fault() {
        let m = FakeMemory::default();
        let e = decode(&notif(nr::OPEN, [0, 0, 0, 0, 0, 0]), &m).unwrap_err();
        assert_eq!(
            e,
            DecodeError::Fault {
                what: "path",
                addr: 0
            }
        );
    }

    #[test]
    fn path_at_path_max_is_refused_never_truncated() {
        let mut m = FakeMemory::default();
        let mut long = vec![b'a'; PATH_MAX];
        long.push(0);
        m.map(0x10000, &long);
        let e = decode(&notif(nr::OPEN, [0x10000, 0, 0, 0, 0, 0]), &m).unwrap_err();
        assert_eq!(e.errno(), libc::ENAMETOOLONG);
        // One byte shorter fits (PATH_MAX counts the NUL).
        let mut ok = vec![b'a'; PATH_MAX - 1];
        ok.push(0);
        m.map(0x20000, &ok);
        let Request::Open(o) = decode(&notif(nr::OPEN, [0x20000, 0, 0, 0, 0, 0]), &m).unwrap()
        else {
            panic!()
        };
        assert_eq!(o.path.len(), PATH_MAX - 1);
    }

    #[test]
    fn execve_reads_argv_exactly_including_non_utf8() {
        let mut m = FakeMemory::default();
        m.map(0x1000, b"/bin/rm\0");
        m.map(0x2000, b"rm\0");
        m.map(0x2100, b"-rf\0");
        m.map(0x2200, b"\xff\xfe\x01dir\0");
        let mut arr = Vec::new();
        for p in [0x2000u64, 0x2100, 0x2200, 0] {
            arr.extend_from_slice(&p.to_ne_bytes());
        }
        m.map(0x5000, &arr);
        let Request::Exec(x) =
            decode(&notif(nr::EXECVE, [0x1000, 0x5000, 0, 0, 0, 0]), &m).unwrap()
        else {
            panic!()
        };
        assert_eq!(x.path, b"/bin/rm");
        assert_eq!(
            x.argv,
            vec![b"rm".to_vec(), b"-rf".to_vec(), b"\xff\xfe\x01dir".to_vec()]
        );
    }

    /// Counts the reads that reach the memory it wraps.
    struct Counting<'a>(&'a FakeMemory, std::cell::Cell<usize>);

    impl TraceeMemory for Counting<'_> {
        fn read(&self, addr: u64, buf: &mut [u8]) -> io::Result<usize> {
            self.1.set(self.1.get() + 1);
            self.0.read(addr, buf)
        }
    }

    #[test]
    fn page_cached_argv_costs_one_read_per_page() {
        // Pointers and strings in one page, as a shell or make lays them out.
        let mut page = Vec::new();
        let args: Vec<Vec<u8>> = (0..40).map(|i| format!("-Darg{i}").into_bytes()).collect();
        let strings_at = 0x3000u64 + 8 * (args.len() as u64 + 1);
        let mut strings = Vec::new();
        for a in &args {
            page.extend_from_slice(&(strings_at + strings.len() as u64).to_ne_bytes());
            strings.extend_from_slice(a);
            strings.push(0);
        }
        page.extend_from_slice(&0u64.to_ne_bytes());
        page.extend_from_slice(&strings);
        page.resize(PAGE_SIZE as usize, 0xaa);
        let mut m = FakeMemory::default();
        m.map(0x1000, b"/usr/bin/gcc\0");
        m.map(0x3000, &page);
        let n = notif(nr::EXECVE, [0x1000, 0x3000, 0, 0, 0, 0]);

        let direct = Counting(&m, Default::default());
        let Request::Exec(a) = decode(&n, &direct).unwrap() else {
            panic!()
        };
        let counted = Counting(&m, Default::default());
        let Request::Exec(b) = decode(&n, &PageCached::new(&counted)).unwrap() else {
            panic!()
        };
        assert_eq!(a.argv, args);
        assert_eq!((&b.path, &b.argv), (&a.path, &a.argv));
        // The path's page and the argv page, instead of two reads per argument.
        assert_eq!(counted.1.get(), 2);
        assert!(direct.1.get() > 2 * args.len(), "{}", direct.1.get());
    }

    #[test]
    fn page_cached_reads_what_the_memory_holds() {
        let mut m = FakeMemory::default();
        // Starts mid-page (the page's start is not readable), crosses into
        // the next page and ends mid-page there.
        let long: Vec<u8> = (0..6000u32).map(|i| b'a' + (i % 26) as u8).collect();
        let mut s = long.clone();
        s.push(0);
        m.map(0x10_0f00, &s);
        // A page-aligned string that ends the readable memory mid-page.
        m.map(0x20_0000, b"short\0");
        let c = PageCached::new(&m);
        assert_eq!(read_cstr(&c, 0x10_0f00, PATH_MAX * 2, "s").unwrap(), long);
        assert_eq!(
            read_cstr(&c, 0x10_0f00 + 5000, PATH_MAX, "s").unwrap(),
            &long[5000..]
        );
        assert_eq!(read_cstr(&c, 0x20_0000, PATH_MAX, "s").unwrap(), b"short");
        assert_eq!(read_cstr(&c, 0x20_0002, PATH_MAX, "s").unwrap(), b"ort");
        let mut buf = [0u8; 64];
        assert_eq!(
            c.read(0x20_0000, &mut buf).unwrap(),
            6,
            "stops where the memory ends"
        );
        assert_eq!(c.read(0x30_0000, &mut buf).unwrap(), 0, "unmapped");
        assert!(matches!(
            read_cstr(&c, 0x30_0000, PATH_MAX, "s"),
            Err(DecodeError::Fault { .. })
        ));
        // Too long is still too long.
        assert!(matches!(
            read_cstr(&c, 0x10_0f00, 100, "path"),
            Err(DecodeError::TooLong { .. })
        ));
    }

    #[test]
    fn oversized_argv_is_refused() {
        let mut m = FakeMemory::default();
        m.map(0x1000, b"/bin/echo\0");
        let big = vec![b'x'; MAX_ARG_STRLEN - 1];
        let mut s = big.clone();
        s.push(0);
        m.map(0x100000, &s);
        // Enough copies of the same 128 KiB string to pass ARG_MAX.
        let count = ARG_MAX / MAX_ARG_STRLEN + 1;
        let mut arr = Vec::new();
        for _ in 0..count {
            arr.extend_from_slice(&0x100000u64.to_ne_bytes());
        }
        arr.extend_from_slice(&0u64.to_ne_bytes());
        m.map(0x5000, &arr);
        let e = decode(&notif(nr::EXECVE, [0x1000, 0x5000, 0, 0, 0, 0]), &m).unwrap_err();
        assert_eq!(e.errno(), libc::E2BIG);
    }

    #[test]
    fn openat2_reads_open_how_and_checks_size() {
        let mut m = FakeMemory::default();
        m.map(0x1000, b"/tmp/x\0");
        let mut how = Vec::new();
        for v in [
            (libc::O_WRONLY | libc::O_CREAT) as u64,
            0o600,
            libc::RESOLVE_NO_SYMLINKS,
        ] {
            how.extend_from_slice(&v.to_ne_bytes());
        }
        how.extend_from_slice(&[0u8; 8]); // a larger, zero-extended struct is fine
        m.map(0x6000, &how);
        let Request::Open(o) =
            decode(&notif(nr::OPENAT2, [3, 0x1000, 0x6000, 32, 0, 0]), &m).unwrap()
        else {
            panic!()
        };
        assert_eq!(
            (o.dirfd, o.mode, o.resolve),
            (3, 0o600, libc::RESOLVE_NO_SYMLINKS)
        );
        let e = decode(&notif(nr::OPENAT2, [3, 0x1000, 0x6000, 16, 0, 0]), &m).unwrap_err();
        assert_eq!(e.errno(), libc::EINVAL);
        how[30] = 1;
        m.map(0x6000, &how);
        let e = decode(&notif(nr::OPENAT2, [3, 0x1000, 0x6000, 32, 0, 0]), &m).unwrap_err();
        assert_eq!(e.errno(), libc::E2BIG);
    }

    #[test]
    fn kill_targets() {
        let m = FakeMemory::default();
        let target =
            |pid: i64| match decode(&notif(nr::KILL, [pid as u64, 9, 0, 0, 0, 0]), &m).unwrap() {
                Request::Process(s) => s.target,
                other => panic!("{other:?}"),
            };
        assert_eq!(target(0), ProcessTarget::OwnGroup);
        assert_eq!(target(-1), ProcessTarget::Everyone);
        assert_eq!(target(-42), ProcessTarget::Group(42));
        assert_eq!(target(42), ProcessTarget::Process(42));
    }

    #[test]
    fn process_call_targets() {
        let m = FakeMemory::default();
        let target = |nr: u32, args: [u64; 6]| match decode(&notif(nr, args), &m) {
            Ok(Request::Process(s)) => Ok((s.syscall, s.target, s.signal)),
            Ok(other) => panic!("{other:?}"),
            Err(e) => Err(e.errno()),
        };
        let thread = |tid| ProcessTarget::Thread { tgid: None, tid };
        assert_eq!(
            target(nr::PRLIMIT64, [42, 7, 0, 0, 0, 0]),
            Ok(("prlimit64", thread(42), None))
        );
        assert_eq!(
            target(nr::SCHED_SETAFFINITY, [0, 8, 0, 0, 0, 0]).map(|t| t.1),
            Ok(ProcessTarget::Caller)
        );
        // setpriority: PRIO_PROCESS, PRIO_PGRP, PRIO_USER.
        assert_eq!(
            target(nr::SETPRIORITY, [0, 42, 5, 0, 0, 0]).map(|t| t.1),
            Ok(thread(42))
        );
        assert_eq!(
            target(nr::SETPRIORITY, [1, 0, 5, 0, 0, 0]).map(|t| t.1),
            Ok(ProcessTarget::OwnGroup)
        );
        assert_eq!(
            target(nr::SETPRIORITY, [1, 42, 5, 0, 0, 0]).map(|t| t.1),
            Ok(ProcessTarget::Group(42))
        );
        assert_eq!(
            target(nr::SETPRIORITY, [2, 0, 5, 0, 0, 0]).map(|t| t.1),
            Ok(ProcessTarget::User)
        );
        // ioprio_set counts `which` from 1.
        assert_eq!(
            target(nr::IOPRIO_SET, [1, 42, 0, 0, 0, 0]).map(|t| t.1),
            Ok(thread(42))
        );
        assert_eq!(
            target(nr::IOPRIO_SET, [3, 1000, 0, 0, 0, 0]).map(|t| t.1),
            Ok(ProcessTarget::User)
        );
        assert_eq!(
            target(nr::IOPRIO_SET, [0, 1, 0, 0, 0, 0]),
            Err(libc::EINVAL)
        );
        assert_eq!(
            target(nr::SETPRIORITY, [7, 1, 0, 0, 0, 0]),
            Err(libc::EINVAL)
        );
    }
}
