//! Calls that create a name or change a file's metadata: `mkdir`, `mknod`,
//! `symlink` (and their `*at` forms), `chmod`, `chown`, `utime`/`utimes`/
//! `utimensat`/`futimesat`, `setxattr`/`removexattr` (path, `l` and `f`
//! forms), and `ioctl`s that set inode flags (`chattr`).
//!
//! Each is resolved like an open (by path, by `*at` directory, or by the
//! descriptor it names), judged as an open of the object with the access it
//! amounts to, the operation's name ([`crate::action::FileOp`]) and what it
//! sets ([`crate::action::OpDetail`]: mode, owner, symlink text), and
//! performed by the supervisor: a creation in the pinned
//! parent directory, a metadata change through an `O_PATH` descriptor of the
//! object that was judged (its device and inode checked again after pinning),
//! with the argument values read once at decoding. Never continued, so a
//! rewritten path or buffer cannot change what was judged.
//!
//! | call | judged as an open of | with |
//! |---|---|---|
//! | `mkdir` | the new directory | create, directory |
//! | `mknod`, `symlink` | the new name | create, write |
//! | `chmod`, `chown`, times, xattrs, inode flags | the object | write |

use std::ffi::CString;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::sync::Arc;

use std::os::unix::ffi::OsStringExt;

use crate::action::{Access, Action, FileOp as Op, OpDetail, OpenAction};

use super::creds::AsCaller;
use super::decode::{FdUse, FileOp, FileOpRequest};
use super::notify::{cwd_for, Answer, Shared};
use super::procfs::{self, Identity};
use super::resolve::{self, Lookup, Resolved, Target};
use super::sys;
use super::{Caller, Ruling};

fn cvt(ret: libc::c_long) -> io::Result<()> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

fn errno(e: &io::Error) -> i32 {
    e.raw_os_error().unwrap_or(libc::EIO)
}

impl FileOp {
    fn creates(&self) -> bool {
        matches!(
            self,
            FileOp::Mkdir { .. } | FileOp::Mknod { .. } | FileOp::Symlink { .. }
        )
    }

    /// The operation, as the vocabulary names it, and what it sets.
    fn kind(&self) -> (Op, Option<OpDetail>) {
        let id = |n: u32| (n != u32::MAX).then_some(n);
        match self {
            FileOp::Mkdir { mode } => (Op::Mkdir, Some(OpDetail::Mode(mode & 0o7777))),
            FileOp::Mknod { mode, .. } => (
                Op::Mknod,
                Some(OpDetail::Mode(mode & (libc::S_IFMT | 0o7777))),
            ),
            FileOp::Symlink { target } => (
                Op::Symlink,
                Some(OpDetail::Target(std::ffi::OsString::from_vec(
                    target.clone(),
                ))),
            ),
            FileOp::Chmod { mode } => (Op::Chmod, Some(OpDetail::Mode(mode & 0o7777))),
            FileOp::Chown { uid, gid } => (
                Op::Chown,
                Some(OpDetail::Owner {
                    uid: id(*uid),
                    gid: id(*gid),
                }),
            ),
            FileOp::Times { .. } => (Op::SetTimes, None),
            FileOp::SetXattr { .. } | FileOp::RemoveXattr { .. } => (Op::Xattr, None),
            FileOp::Ioctl { .. } => (Op::SetFlags, None),
        }
    }

    /// The access the call amounts to, judged on its path.
    fn access(&self) -> Access {
        match self {
            // A new, empty directory: created, not written.
            FileOp::Mkdir { .. } => Access::CREATE | Access::DIRECTORY,
            FileOp::Mknod { .. } | FileOp::Symlink { .. } => Access::CREATE | Access::WRITE,
            _ => Access::WRITE,
        }
    }
}

pub(super) fn handle(shared: &Arc<Shared>, caller: &Caller, r: &FileOpRequest) -> Answer {
    let Ok(_creds) = AsCaller::enter(caller.tid, shared.privileged, &shared.pidfds) else {
        return Answer::Deny(libc::EACCES);
    };
    if r.fd_only == Some(FdUse::Open) {
        // fchmod(fd) and the like refuse an O_PATH descriptor (EBADF), as
        // they would natively; an unreadable fdinfo fails closed.
        match procfs::fd_flags(caller.pid, r.dirfd) {
            Ok(f) if f & libc::O_PATH == 0 => {}
            Ok(_) => return Answer::Deny(libc::EBADF),
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Answer::Deny(libc::EBADF),
            Err(_) => return Answer::Deny(libc::EPERM),
        }
    }
    let rc = resolve::Caller {
        tid: caller.tid,
        tgid: caller.pid,
    };
    let lookup = Lookup {
        follow_last: r.follow && !r.op.creates(),
        empty_path: r.fd_only.is_some(),
    };
    for _ in 0..3 {
        let resolved = match resolve::resolve(&shared.proc_info, rc, r.dirfd, &r.path, lookup) {
            Ok(x) => x,
            Err(e) => return Answer::Deny(e),
        };
        let identity = match (&resolved.target, r.op.creates()) {
            (Target::Missing { .. }, true) => None,
            // Creating a name that exists.
            (_, true) => return Answer::Deny(libc::EEXIST),
            (Target::Missing { .. }, false) => return Answer::Deny(libc::ENOENT),
            (Target::Entry { stat, .. } | Target::Object { stat, .. }, false) => Some(Identity {
                dev: stat.st_dev,
                ino: stat.st_ino,
                sha256: None,
            }),
        };
        if r.op.creates() && r.path.ends_with(b"/") && !matches!(r.op, FileOp::Mkdir { .. }) {
            return Answer::Deny(libc::ENOENT);
        }
        let (op, detail) = r.op.kind();
        let action = Action::Open(OpenAction {
            op,
            detail,
            path: resolved.path.clone(),
            access: r.op.access(),
            cwd: cwd_for(&resolved, caller.tid),
            process: shared.process_of(caller.tid),
        });
        match shared
            .judge
            .judge(caller, r.syscall, &action, identity.as_ref(), None)
        {
            Ruling::Deny(e) => return Answer::Deny(e),
            Ruling::Hold => return Answer::Hold,
            Ruling::Allow => {}
        }
        return match perform(r, &resolved, caller.tid) {
            Ok(()) => Answer::Value(0),
            // The entry changed between the walk and the pinning: judge
            // again from scratch.
            Err(Retry::Changed) => continue,
            Err(Retry::Failed(e)) => Answer::Deny(errno(&e)),
        };
    }
    Answer::Deny(libc::EAGAIN)
}

enum Retry {
    Changed,
    Failed(io::Error),
}

impl From<io::Error> for Retry {
    fn from(e: io::Error) -> Retry {
        Retry::Failed(e)
    }
}

/// An `O_PATH` descriptor of the object that was judged.
fn pin(r: &Resolved) -> Result<OwnedFd, Retry> {
    match &r.target {
        Target::Entry { parent, name, stat } => {
            let fd = sys::openat(parent.as_fd(), name, libc::O_PATH | libc::O_NOFOLLOW, 0)?;
            let now = sys::fstat(fd.as_fd())?;
            if (now.st_dev, now.st_ino) != (stat.st_dev, stat.st_ino) {
                return Err(Retry::Changed);
            }
            Ok(fd)
        }
        Target::Object { fd, .. } => Ok(procfs::dup(fd.as_fd())?),
        Target::Missing { .. } => Err(Retry::Failed(io::Error::from_raw_os_error(libc::ENOENT))),
    }
}

/// `/proc/self/fd/N` of a pinned descriptor: the object itself for calls
/// that take only a path (the magic link is followed to the object).
fn magic(fd: BorrowedFd<'_>) -> io::Result<CString> {
    CString::new(format!("/proc/self/fd/{}", fd.as_raw_fd())).map_err(io::Error::other)
}

/// Creates `name` in `dir` as `op` says, with the caller's umask.
fn create(op: &FileOp, dir: BorrowedFd<'_>, name: &CString, umask: u32) -> io::Result<()> {
    let dir = dir.as_raw_fd();
    let ret = match op {
        FileOp::Mkdir { mode } => {
            // SAFETY: a valid directory descriptor and a NUL-terminated name.
            unsafe { libc::mkdirat(dir, name.as_ptr(), (mode & 0o7777 & !umask) as libc::mode_t) }
        }
        FileOp::Mknod { mode, dev } => {
            let m = (mode & libc::S_IFMT) | (mode & 0o7777 & !umask);
            // SAFETY: as above.
            unsafe { libc::mknodat(dir, name.as_ptr(), m as libc::mode_t, *dev as libc::dev_t) }
        }
        FileOp::Symlink { target } => {
            let t = CString::new(target.clone()).map_err(io::Error::other)?;
            // SAFETY: as above.
            unsafe { libc::symlinkat(t.as_ptr(), dir, name.as_ptr()) }
        }
        _ => return Err(io::Error::from_raw_os_error(libc::EINVAL)),
    };
    cvt(ret as libc::c_long)
}

fn perform(r: &FileOpRequest, resolved: &Resolved, tid: i32) -> Result<(), Retry> {
    if let (Target::Missing { parent, name }, true) = (&resolved.target, r.op.creates()) {
        return Ok(create(&r.op, parent.as_fd(), name, procfs::umask(tid))?);
    }
    let fd = pin(resolved)?;
    let raw = fd.as_raw_fd();
    let empty = c"";
    match &r.op {
        FileOp::Chmod { mode } => {
            // SAFETY: a valid descriptor and an empty NUL-terminated path.
            let ret = unsafe {
                libc::syscall(
                    libc::SYS_fchmodat2,
                    raw,
                    empty.as_ptr(),
                    mode & 0o7777,
                    libc::AT_EMPTY_PATH,
                )
            };
            if ret < 0 && io::Error::last_os_error().raw_os_error() == Some(libc::ENOSYS) {
                // Before fchmodat2: chmod through the magic link.
                let link = magic(fd.as_fd())?;
                // SAFETY: a NUL-terminated path.
                return Ok(cvt(
                    unsafe { libc::chmod(link.as_ptr(), mode & 0o7777) } as libc::c_long
                )?);
            }
            Ok(cvt(ret)?)
        }
        FileOp::Chown { uid, gid } => {
            // SAFETY: as above.
            let ret =
                unsafe { libc::fchownat(raw, empty.as_ptr(), *uid, *gid, libc::AT_EMPTY_PATH) };
            Ok(cvt(ret as libc::c_long)?)
        }
        FileOp::Times { times } => {
            let ts = times.map(|t| {
                t.map(|(s, ns)| libc::timespec {
                    tv_sec: s as _,
                    tv_nsec: ns as libc::c_long,
                })
            });
            let p = ts.as_ref().map_or(std::ptr::null(), |t| t.as_ptr());
            // SAFETY: a valid descriptor, an empty path, and null or two
            // timespecs.
            let ret = unsafe { libc::utimensat(raw, empty.as_ptr(), p, libc::AT_EMPTY_PATH) };
            Ok(cvt(ret as libc::c_long)?)
        }
        FileOp::SetXattr { name, value, flags } => {
            let link = magic(fd.as_fd())?;
            let name = CString::new(name.clone()).map_err(io::Error::other)?;
            // SAFETY: NUL-terminated path and name; value and its length.
            let ret = unsafe {
                libc::setxattr(
                    link.as_ptr(),
                    name.as_ptr(),
                    value.as_ptr().cast(),
                    value.len(),
                    *flags,
                )
            };
            Ok(cvt(ret as libc::c_long)?)
        }
        FileOp::RemoveXattr { name } => {
            let link = magic(fd.as_fd())?;
            let name = CString::new(name.clone()).map_err(io::Error::other)?;
            // SAFETY: NUL-terminated path and name.
            let ret = unsafe { libc::removexattr(link.as_ptr(), name.as_ptr()) };
            Ok(cvt(ret as libc::c_long)?)
        }
        FileOp::Ioctl { cmd, arg } => {
            // An inode ioctl needs an open file: reopen the object read-only
            // (as chattr itself opens it), never blocking on a FIFO.
            let link = magic(fd.as_fd())?;
            let file = sys::openat(
                super::notify::at_fdcwd(),
                &link,
                libc::O_RDONLY | libc::O_NONBLOCK | libc::O_NOCTTY,
                0,
            )?;
            let mut buf = arg.clone();
            // SAFETY: a valid descriptor; the argument buffer has the size
            // the command reads.
            let ret = unsafe { libc::ioctl(file.as_raw_fd(), *cmd as _, buf.as_mut_ptr()) };
            Ok(cvt(ret as libc::c_long)?)
        }
        FileOp::Mkdir { .. } | FileOp::Mknod { .. } | FileOp::Symlink { .. } => {
            Err(Retry::Failed(io::Error::from_raw_os_error(libc::EEXIST)))
        }
    }
}
