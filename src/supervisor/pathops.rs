//! Calls that remove, move, alias or truncate a file by path: `unlink`,
//! `unlinkat`, `rmdir`, `rename`, `renameat`, `renameat2`, `link`,
//! `linkat`, `truncate`.
//!
//! Without them a path-based policy is walked around: rename a protected
//! file to an unprotected name (or hard-link it) and write or read it there,
//! or delete it outright. Each path is resolved like an open's, judged as an
//! open with the access the operation amounts to and the operation's name
//! ([`crate::action::FileOp`]: delete, rename, link, truncate; each path
//! judged once, see `notify::judge_part`), and the operation is then
//! performed by the supervisor on the pinned parent directories (never
//! continued, so a rewritten path cannot change what was judged):
//!
//! | call | first path judged as | second path judged as |
//! |---|---|---|
//! | `unlink` | write, truncate (its content is destroyed) | |
//! | `rmdir`, `unlinkat(AT_REMOVEDIR)` | write, directory | |
//! | `rename` | read, write (its content moves to a new name) | create, write, truncate (replaced) |
//! | `rename(RENAME_EXCHANGE)` | read, write | read, write |
//! | `link` | read, write (a new name reaches the same content) | create, write |
//! | `truncate` | write, truncate | |

use std::ffi::CString;
use std::io;
use std::os::fd::{AsFd, AsRawFd};
use std::sync::Arc;

use crate::action::{Access, Action, FileOp, OpenAction};

use super::creds::AsCaller;
use super::decode::{PathOp, PathOpRequest};
use super::notify::{cwd_for, Answer, Shared};
use super::procfs::Identity;
use super::resolve::{self, Lookup, Resolved, Target};
use super::sys::{self, OpenHow};
use super::{Caller, Ruling};

fn errno(e: &io::Error) -> i32 {
    e.raw_os_error().unwrap_or(libc::EIO)
}

fn cvt(ret: libc::c_long) -> io::Result<()> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

pub(super) fn handle(shared: &Arc<Shared>, caller: &Caller, r: &PathOpRequest) -> Answer {
    let Ok(_creds) = AsCaller::enter(caller.tid, shared.privileged, &shared.pidfds) else {
        return Answer::Deny(libc::EACCES);
    };
    let rc = resolve::Caller {
        tid: caller.tid,
        tgid: caller.pid,
    };
    let exchange = r.op == PathOp::Rename && r.flags & libc::RENAME_EXCHANGE != 0;
    let first_lookup = Lookup {
        follow_last: match r.op {
            PathOp::Truncate => true,
            PathOp::Link => r.flags & libc::AT_SYMLINK_FOLLOW as u32 != 0,
            PathOp::Unlink | PathOp::Rename => false,
        },
        empty_path: r.op == PathOp::Link && r.flags & libc::AT_EMPTY_PATH as u32 != 0,
    };
    let first = match resolve::resolve(&shared.proc_info, rc, r.dirfd, &r.path, first_lookup) {
        Ok(x) => x,
        Err(e) => return Answer::Deny(e),
    };
    let first_stat = match first.stat() {
        Some(s) => *s,
        None => return Answer::Deny(libc::ENOENT),
    };
    let second = if matches!(r.op, PathOp::Rename | PathOp::Link) {
        let lookup = Lookup {
            follow_last: false,
            empty_path: false,
        };
        match resolve::resolve(&shared.proc_info, rc, r.dirfd2, &r.path2, lookup) {
            Ok(x) => Some(x),
            Err(e) => return Answer::Deny(e),
        }
    } else {
        None
    };
    if let Some(s) = &second {
        let exists = s.stat().is_some();
        if r.op == PathOp::Link && exists {
            return Answer::Deny(libc::EEXIST);
        }
        if exchange && !exists {
            return Answer::Deny(libc::ENOENT);
        }
        if r.op == PathOp::Rename && r.flags & libc::RENAME_NOREPLACE != 0 && exists {
            return Answer::Deny(libc::EEXIST);
        }
    }
    let is_dir = first_stat.st_mode & libc::S_IFMT == libc::S_IFDIR;
    let first_access = match r.op {
        PathOp::Unlink if r.flags & libc::AT_REMOVEDIR as u32 != 0 => {
            Access::WRITE | Access::DIRECTORY
        }
        PathOp::Unlink | PathOp::Truncate => Access::WRITE | Access::TRUNCATE,
        PathOp::Rename | PathOp::Link => Access::READ | Access::WRITE,
    };
    let first_access = if is_dir {
        first_access | Access::DIRECTORY
    } else {
        first_access
    };
    let cwd = cwd_for(&first, caller.tid);
    let identity = Identity {
        dev: first_stat.st_dev,
        ino: first_stat.st_ino,
        sha256: None,
    };
    let process = shared.process_of(caller.tid);
    let op = match r.op {
        PathOp::Unlink => FileOp::Delete,
        PathOp::Rename => FileOp::Rename,
        PathOp::Link => FileOp::Link,
        PathOp::Truncate => FileOp::Truncate,
    };
    let judge = |path: &Resolved, access: Access, identity: Option<&Identity>| {
        let action = Action::Open(OpenAction {
            op,
            detail: None,
            path: path.path.clone(),
            access,
            cwd: cwd.clone(),
            process: process.clone(),
        });
        // Judged once each: handled again on a held call's thread (the
        // second path escalated), the first path is not recorded twice.
        super::notify::judge_part(shared, caller, r.syscall, &action, identity)
    };
    match judge(&first, first_access, Some(&identity)) {
        Ruling::Deny(e) => return Answer::Deny(e),
        Ruling::Hold => return Answer::Hold,
        Ruling::Allow => {}
    }
    if let Some(s) = &second {
        let second_is_dir = s
            .stat()
            .is_some_and(|st| st.st_mode & libc::S_IFMT == libc::S_IFDIR);
        let access = if exchange && second_is_dir {
            // The other directory moves too, with everything beneath it.
            Access::READ | Access::WRITE | Access::DIRECTORY
        } else if exchange {
            Access::READ | Access::WRITE
        } else if r.op == PathOp::Link {
            Access::CREATE | Access::WRITE
        } else {
            Access::CREATE | Access::WRITE | Access::TRUNCATE
        };
        let id2 = s.stat().map(|st| Identity {
            dev: st.st_dev,
            ino: st.st_ino,
            sha256: None,
        });
        match judge(s, access, id2.as_ref()) {
            Ruling::Deny(e) => return Answer::Deny(e),
            Ruling::Hold => return Answer::Hold,
            Ruling::Allow => {}
        }
    }
    match perform(r, &first, second.as_ref()) {
        Ok(()) => Answer::Value(0),
        Err(e) => Answer::Deny(errno(&e)),
    }
}

/// The parent directory and name of an entry; `None` for an object reached
/// through a magic link (it has no directory entry to act on).
fn entry(r: &Resolved) -> Option<(std::os::fd::BorrowedFd<'_>, &CString)> {
    match &r.target {
        Target::Entry { parent, name, .. } | Target::Missing { parent, name } => {
            Some((parent.as_fd(), name))
        }
        Target::Object { .. } => None,
    }
}

fn perform(r: &PathOpRequest, first: &Resolved, second: Option<&Resolved>) -> io::Result<()> {
    let no_entry = || io::Error::from_raw_os_error(libc::EPERM);
    match r.op {
        PathOp::Unlink => {
            let (dir, name) = entry(first).ok_or_else(no_entry)?;
            // SAFETY: valid dirfd and NUL-terminated name.
            cvt(unsafe {
                libc::unlinkat(
                    dir.as_raw_fd(),
                    name.as_ptr(),
                    (r.flags & libc::AT_REMOVEDIR as u32) as i32,
                )
            } as libc::c_long)
        }
        PathOp::Rename => {
            let (od, on) = entry(first).ok_or_else(no_entry)?;
            let (nd, nn) = second.and_then(entry).ok_or_else(no_entry)?;
            // SAFETY: valid dirfds and NUL-terminated names.
            cvt(unsafe {
                libc::syscall(
                    libc::SYS_renameat2,
                    od.as_raw_fd(),
                    on.as_ptr(),
                    nd.as_raw_fd(),
                    nn.as_ptr(),
                    r.flags,
                )
            })
        }
        PathOp::Link => {
            let (nd, nn) = second.and_then(entry).ok_or_else(no_entry)?;
            match &first.target {
                Target::Entry { parent, name, .. } => {
                    // SAFETY: valid dirfds and NUL-terminated names.
                    cvt(unsafe {
                        libc::linkat(
                            parent.as_raw_fd(),
                            name.as_ptr(),
                            nd.as_raw_fd(),
                            nn.as_ptr(),
                            0,
                        )
                    } as libc::c_long)
                }
                Target::Object { fd, .. } => {
                    let link = CString::new(format!("/proc/self/fd/{}", fd.as_raw_fd()))
                        .map_err(io::Error::other)?;
                    // SAFETY: as above; AT_SYMLINK_FOLLOW links the object the
                    // magic link refers to (no CAP_DAC_READ_SEARCH needed).
                    cvt(unsafe {
                        libc::linkat(
                            libc::AT_FDCWD,
                            link.as_ptr(),
                            nd.as_raw_fd(),
                            nn.as_ptr(),
                            libc::AT_SYMLINK_FOLLOW,
                        )
                    } as libc::c_long)
                }
                Target::Missing { .. } => Err(io::Error::from_raw_os_error(libc::ENOENT)),
            }
        }
        PathOp::Truncate => {
            let flags = (libc::O_WRONLY | libc::O_NOCTTY | libc::O_NONBLOCK) as u64;
            let fd = match &first.target {
                Target::Entry { parent, name, .. } => sys::openat2(
                    parent.as_fd(),
                    name,
                    &OpenHow {
                        flags,
                        mode: 0,
                        resolve: libc::RESOLVE_NO_SYMLINKS
                            | libc::RESOLVE_NO_MAGICLINKS
                            | libc::RESOLVE_BENEATH,
                    },
                )?,
                Target::Object { fd, .. } => {
                    let link = CString::new(format!("/proc/self/fd/{}", fd.as_raw_fd()))
                        .map_err(io::Error::other)?;
                    sys::openat2(
                        super::notify::at_fdcwd(),
                        &link,
                        &OpenHow {
                            flags,
                            mode: 0,
                            resolve: 0,
                        },
                    )?
                }
                Target::Missing { .. } => return Err(io::Error::from_raw_os_error(libc::ENOENT)),
            };
            // SAFETY: valid fd, integer length.
            cvt(unsafe { libc::ftruncate(fd.as_raw_fd(), r.length) } as libc::c_long)
        }
    }
}
