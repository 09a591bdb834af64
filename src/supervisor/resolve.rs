//! Resolving a path the way the kernel would for the calling thread.
//!
//! The walk runs in the supervisor, one component at a time, on `O_PATH`
//! descriptors, so that every step is pinned to an object:
//!
//! - the start is the caller's root (`/`), its cwd (`/proc/TID/cwd`) or its
//!   dirfd (`/proc/TID/fd/N`), never the supervisor's;
//! - `..` is taken on the pinned directory (the kernel's own `..`);
//! - ordinary symlinks are read and spliced into the remaining path
//!   (at most [`MAX_SYMLINKS`], then `ELOOP`);
//! - `/proc/self` and `/proc/thread-self` are rewritten to the caller's
//!   `/proc/TGID` and `/proc/TGID/task/TID`;
//! - procfs magic links (`/proc/PID/fd/N`, `cwd`, `root`, `exe`) are jumped
//!   the way the kernel jumps them: to the object they refer to, whose
//!   current path becomes the canonical path.
//!
//! When the directory part of what is left to walk contains no `..` and is
//! not in procfs, it is first tried in one `openat2` that refuses every
//! symlink (`RESOLVE_NO_SYMLINKS`): if that succeeds, the walk above would
//! have opened the same directories and met no symlink. If it met one, once
//! more with ordinary symlinks followed by the kernel (never magic links,
//! `RESOLVE_NO_MAGICLINKS`), taking the directory's canonical path from the
//! kernel; refused when it ends in procfs or at a removed directory. On any
//! error the component-by-component walk decides.
//!
//! The result names the final object by its canonical absolute path (what
//! the policy judges) and keeps the pinned parent directory and last name
//! (or the object itself, for a magic link) for the open that follows, so
//! that what is opened is what was judged.

use std::ffi::{CStr, CString};
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::PathBuf;

use super::sys;

/// Most symlinks followed in one resolution (the kernel's `MAXSYMLINKS`).
pub const MAX_SYMLINKS: usize = 40;
/// procfs' root inode number.
const PROC_ROOT_INO: u64 = 1;

/// Who is asking: the thread and its thread group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Caller {
    pub tid: i32,
    pub tgid: i32,
}

/// How to treat the last component.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lookup {
    /// Follow a symlink in the last component (no `O_NOFOLLOW`, no
    /// `O_CREAT|O_EXCL`).
    pub follow_last: bool,
    /// An empty path means the dirfd itself (`AT_EMPTY_PATH`).
    pub empty_path: bool,
}

/// The object a path names.
#[derive(Debug)]
pub struct Resolved {
    /// Canonical absolute path (no `.`, `..` or symlinks), or for an object
    /// without a path (pipe, socket, deleted file) what procfs calls it
    /// (`pipe:[1234]`, `/tmp/x (deleted)`).
    pub path: PathBuf,
    /// How to reach it.
    pub target: Target,
    /// The caller's cwd as read for the walk (relative paths from
    /// `AT_FDCWD`): the same directory the walk started from, so the record
    /// need not read it again.
    pub cwd: Option<PathBuf>,
}

#[derive(Debug)]
pub enum Target {
    /// The last component exists: its pinned parent directory, its name
    /// (`.` when the path names a directory reached without a name, e.g.
    /// `/`, `..`, `dir/.`), and its `lstat`.
    Entry {
        parent: OwnedFd,
        name: CString,
        stat: libc::stat,
    },
    /// The last component does not exist: the pinned parent and the name,
    /// for `O_CREAT`.
    Missing { parent: OwnedFd, name: CString },
    /// Reached through a procfs magic link: an `O_PATH` descriptor of the
    /// object itself, and its `fstat`.
    Object { fd: OwnedFd, stat: libc::stat },
}

impl Resolved {
    /// The `stat` of the object, when it exists.
    pub fn stat(&self) -> Option<&libc::stat> {
        match &self.target {
            Target::Entry { stat, .. } | Target::Object { stat, .. } => Some(stat),
            Target::Missing { .. } => None,
        }
    }
}

/// Resolution errors carry the errno the kernel would return.
pub type Errno = i32;

fn errno_of(e: &io::Error) -> Errno {
    e.raw_os_error().unwrap_or(libc::EIO)
}

/// Facts about this machine the walk needs, read once.
#[derive(Debug, Clone, Copy)]
pub struct ProcInfo {
    /// Device of the procfs mounted at `/proc`.
    pub dev: u64,
}

impl ProcInfo {
    pub fn detect() -> io::Result<ProcInfo> {
        let fd = open_path(sys_root()?.as_fd(), c"proc", true)?;
        let st = sys::fstat(fd.as_fd())?;
        Ok(ProcInfo { dev: st.st_dev })
    }
}

fn sys_root() -> io::Result<OwnedFd> {
    sys::openat(cwd_fd(), c"/", libc::O_PATH | libc::O_DIRECTORY, 0)
}

/// The supervisor's root directory, opened once: the start of the
/// one-step walk of an absolute path, which then needs no descriptor of
/// its own for `/` (an `openat` and a `close` per path). The supervisor
/// never changes its root, and a fresh open of `/` leads to the same
/// directory (a mount over `/` is not entered by a walk that starts there
/// either); `None` if it could not be opened (each walk opens its own).
fn shared_root() -> Option<BorrowedFd<'static>> {
    static ROOT: std::sync::OnceLock<Option<OwnedFd>> = std::sync::OnceLock::new();
    ROOT.get_or_init(|| sys_root().ok())
        .as_ref()
        .map(|fd| fd.as_fd())
}

/// The directory a walk stands in: its own descriptor, or the shared root.
enum Dir {
    Own(OwnedFd),
    Root(BorrowedFd<'static>),
}

impl Dir {
    /// `/`: the shared root when there is one, else a descriptor of its own.
    fn root() -> Result<Dir, Errno> {
        match shared_root() {
            Some(fd) => Ok(Dir::Root(fd)),
            None => sys_root().map(Dir::Own).map_err(|e| errno_of(&e)),
        }
    }

    fn as_fd(&self) -> BorrowedFd<'_> {
        match self {
            Dir::Own(fd) => fd.as_fd(),
            Dir::Root(fd) => *fd,
        }
    }

    /// A descriptor the result can keep (the shared root is duplicated).
    fn into_owned(self) -> Result<OwnedFd, Errno> {
        match self {
            Dir::Own(fd) => Ok(fd),
            Dir::Root(fd) => fd.try_clone_to_owned().map_err(|e| errno_of(&e)),
        }
    }
}

fn cwd_fd() -> BorrowedFd<'static> {
    sys::at_fdcwd()
}

fn open_path(dir: BorrowedFd<'_>, name: &CStr, follow: bool) -> io::Result<OwnedFd> {
    let flags = libc::O_PATH | if follow { 0 } else { libc::O_NOFOLLOW };
    sys::openat(dir, name, flags, 0)
}

fn is_dir(st: &libc::stat) -> bool {
    st.st_mode & libc::S_IFMT == libc::S_IFDIR
}

fn is_symlink(st: &libc::stat) -> bool {
    st.st_mode & libc::S_IFMT == libc::S_IFLNK
}

fn cstring(bytes: &[u8]) -> Result<CString, Errno> {
    CString::new(bytes).map_err(|_| libc::EINVAL)
}

fn fd_path_of(fd: BorrowedFd<'_>) -> Result<Vec<u8>, Errno> {
    let link = format!("/proc/self/fd/{}", fd.as_raw_fd());
    let link = cstring(link.as_bytes())?;
    sys::readlinkat(cwd_fd(), &link).map_err(|e| errno_of(&e))
}

/// The canonical path as components (`/a/b` → `["a", "b"]`); `None` for
/// what is not an absolute path (`pipe:[…]`).
fn split_abs(path: &[u8]) -> Option<Vec<Vec<u8>>> {
    if !path.starts_with(b"/") {
        return None;
    }
    Some(
        path.split(|&b| b == b'/')
            .filter(|c| !c.is_empty())
            .map(<[u8]>::to_vec)
            .collect(),
    )
}

fn join(components: &[Vec<u8>]) -> PathBuf {
    let mut out = Vec::with_capacity(components.iter().map(|c| c.len() + 1).sum::<usize>().max(1));
    for c in components {
        out.push(b'/');
        out.extend_from_slice(c);
    }
    if out.is_empty() {
        out.push(b'/');
    }
    PathBuf::from(std::ffi::OsStr::from_bytes(&out))
}

/// The entries of the supervisor's `/proc` directory that are resolved for
/// real (the others are only named): what the built-in rules may let the
/// tree read.
pub const PUBLIC_SUPERVISOR_ENTRIES: [&str; 3] = ["stat", "status", "cmdline"];

/// The supervisor's pid, read once (`getpid` is a syscall each time).
fn own_pid() -> i32 {
    static PID: std::sync::OnceLock<i32> = std::sync::OnceLock::new();
    *PID.get_or_init(|| std::process::id() as i32)
}

/// When `comp`, looked up in `dir`, is the `/proc` entry of the supervisor
/// (its pid, or the tid of any of its threads, which `/proc` does not list
/// but resolves) and the caller is not the supervisor itself: the canonical
/// name of what the rest of the path would reach, `/proc/PID/…` or
/// `/proc/PID/task/TID/…`, without following anything in it.
fn supervisor_proc_entry(
    proc_info: &ProcInfo,
    caller: Caller,
    dir: BorrowedFd<'_>,
    comp: &[u8],
    rest: &std::collections::VecDeque<Vec<u8>>,
) -> Result<Option<PathBuf>, Errno> {
    let Some(n) = std::str::from_utf8(comp)
        .ok()
        .and_then(|s| s.parse::<i32>().ok())
    else {
        return Ok(None);
    };
    let own = own_pid();
    if caller.tgid == own {
        return Ok(None);
    }
    // Where the name is looked up first (one fstat): a number anywhere but
    // in `/proc` (`.git/objects/62`) is not the supervisor's entry.
    let st = sys::fstat(dir).map_err(|e| errno_of(&e))?;
    if st.st_dev != proc_info.dev || st.st_ino != PROC_ROOT_INO {
        return Ok(None);
    }
    if !(n == own || super::procfs::is_own_task(n)) {
        return Ok(None);
    }
    let mut canon: Vec<Vec<u8>> = vec![b"proc".to_vec(), own.to_string().into_bytes()];
    if n != own {
        canon.push(b"task".to_vec());
        canon.push(comp.to_vec());
    }
    canon.extend(rest.iter().cloned());
    Ok(Some(join(&canon)))
}

/// The directory part of a path, opened in one step.
struct FastDir {
    dir: OwnedFd,
    /// How many components of the queue it consumed.
    n: usize,
    /// Its canonical path, when ordinary symlinks were followed on the way
    /// (then it replaces the walk's; else the consumed components extend
    /// it).
    canon: Option<Vec<Vec<u8>>>,
}

/// `None` (the component-by-component walk decides) when the path has no
/// directory part, contains `..`, or starts in or ends up in procfs (where
/// `self` is rewritten and the supervisor's entries are named, never
/// walked), and on any error, whose errno the full walk reproduces.
///
/// First without following any symlink. When one is met (`ELOOP`), once
/// more letting the kernel follow ordinary symlinks (never magic links),
/// as it would for the caller, and taking the canonical path of the
/// directory reached from the kernel (`/proc/self/fd/N`): the directory is
/// the one the component walk would reach, by the path it would build
/// (`/lib/x86_64-linux-gnu` with `/lib -> usr/lib`: `/usr/lib/x86_64-linux-gnu`,
/// in three syscalls where the component walk takes seven).
fn fast_dir_walk(
    proc_info: &ProcInfo,
    start: BorrowedFd<'_>,
    start_canon: &[Vec<u8>],
    queue: &std::collections::VecDeque<Vec<u8>>,
) -> Option<FastDir> {
    let n = queue.len().checked_sub(1).filter(|&n| n > 0)?;
    let dir_part = queue.range(..n);
    if start_canon.first().is_some_and(|c| c == b"proc") {
        return None;
    }
    if start_canon.is_empty() && queue.front().is_some_and(|c| c == b"proc") {
        return None;
    }
    let mut rel = Vec::with_capacity(queue.iter().map(|c| c.len() + 1).sum());
    for c in dir_part {
        if c == b".." {
            return None;
        }
        if !rel.is_empty() {
            rel.push(b'/');
        }
        rel.extend_from_slice(c);
    }
    let rel = CString::new(rel).ok()?;
    let how = sys::OpenHow {
        flags: (libc::O_PATH | libc::O_DIRECTORY) as u64,
        mode: 0,
        resolve: libc::RESOLVE_NO_SYMLINKS | libc::RESOLVE_NO_MAGICLINKS,
    };
    match sys::openat2(start, &rel, &how) {
        Ok(dir) => {
            let st = sys::fstat(dir.as_fd()).ok()?;
            if st.st_dev == proc_info.dev {
                return None;
            }
            Some(FastDir {
                dir,
                n,
                canon: None,
            })
        }
        Err(e) if e.raw_os_error() == Some(libc::ELOOP) => {
            let how = sys::OpenHow {
                resolve: libc::RESOLVE_NO_MAGICLINKS,
                ..how
            };
            let dir = sys::openat2(start, &rel, &how).ok()?;
            let st = sys::fstat(dir.as_fd()).ok()?;
            // Into procfs (where `self` would be the supervisor's), or a
            // directory that was removed (its path is no longer one):
            // the component walk decides.
            if st.st_dev == proc_info.dev || st.st_nlink == 0 {
                return None;
            }
            let path = fd_path_of(dir.as_fd()).ok()?;
            if path.ends_with(b" (deleted)") {
                return None;
            }
            let canon = split_abs(&path)?;
            Some(FastDir {
                dir,
                n,
                canon: Some(canon),
            })
        }
        Err(_) => None,
    }
}

impl FastDir {
    /// Moves the walk into the directory reached: `canon` and `queue`
    /// updated, and a symlink counted when some were followed (at least
    /// one was; the kernel's own walk counted the others against its
    /// limit).
    fn enter(
        self,
        cur: &mut Dir,
        canon: &mut Vec<Vec<u8>>,
        queue: &mut std::collections::VecDeque<Vec<u8>>,
        symlinks: &mut usize,
    ) {
        let consumed = queue.drain(..self.n);
        match self.canon {
            Some(c) => {
                drop(consumed);
                *canon = c;
                *symlinks += 1;
            }
            None => canon.extend(consumed),
        }
        *cur = Dir::Own(self.dir);
    }
}

/// Resolves `path` (relative to `dirfd` of `caller`) as the kernel would.
pub fn resolve(
    proc_info: &ProcInfo,
    caller: Caller,
    dirfd: i32,
    path: &[u8],
    lookup: Lookup,
) -> Result<Resolved, Errno> {
    let mut cwd = None;
    let mut r = walk(proc_info, caller, dirfd, path, lookup, true, &mut cwd)?;
    r.cwd = cwd;
    Ok(r)
}

fn walk(
    proc_info: &ProcInfo,
    caller: Caller,
    dirfd: i32,
    path: &[u8],
    lookup: Lookup,
    fast: bool,
    cwd_seen: &mut Option<PathBuf>,
) -> Result<Resolved, Errno> {
    if path.is_empty() && !lookup.empty_path {
        return Err(libc::ENOENT);
    }
    let trailing_slash = path.ends_with(b"/");
    let mut queue: std::collections::VecDeque<Vec<u8>> = path
        .split(|&b| b == b'/')
        .filter(|c| !c.is_empty() && *c != b".")
        .map(<[u8]>::to_vec)
        .collect();
    let mut symlinks = 0usize;
    // Starting point.
    let (mut cur, mut canon): (Dir, Vec<Vec<u8>>) = if path.starts_with(b"/") {
        (Dir::root()?, Vec::new())
    } else {
        let from_cwd = dirfd == libc::AT_FDCWD;
        let link = if from_cwd {
            format!("/proc/{}/cwd", caller.tid)
        } else if dirfd < 0 {
            return Err(libc::EBADF);
        } else {
            format!("/proc/{}/fd/{}", caller.tid, dirfd)
        };
        let link = cstring(link.as_bytes())?;
        let fd = open_path(cwd_fd(), &link, true).map_err(|e| match errno_of(&e) {
            // No such fd in the caller.
            libc::ENOENT => libc::EBADF,
            other => other,
        })?;
        if from_cwd && !path.is_empty() {
            // A working directory is always a directory: no fstat needed.
            let where_ = fd_path_of(fd.as_fd())?;
            let canon = split_abs(&where_).ok_or(libc::ENOTDIR)?;
            *cwd_seen = Some(PathBuf::from(std::ffi::OsString::from_vec(where_)));
            (Dir::Own(fd), canon)
        } else {
            let st = sys::fstat(fd.as_fd()).map_err(|e| errno_of(&e))?;
            let where_ = fd_path_of(fd.as_fd())?;
            if path.is_empty() {
                // AT_EMPTY_PATH: the dirfd's object itself.
                return Ok(Resolved {
                    path: PathBuf::from(std::ffi::OsStr::from_bytes(&where_)),
                    target: Target::Object { fd, stat: st },
                    cwd: None,
                });
            }
            if !is_dir(&st) {
                return Err(libc::ENOTDIR);
            }
            let canon = split_abs(&where_).ok_or(libc::ENOTDIR)?;
            (Dir::Own(fd), canon)
        }
    };

    // `dir/.` and `dir/..` name directories: like a trailing slash.
    let ends_with_dot =
        path.ends_with(b"/.") || path == b"." || path.ends_with(b"/..") || path == b"..";
    let must_be_dir = trailing_slash || ends_with_dot;
    if fast {
        if let Some(f) = fast_dir_walk(proc_info, cur.as_fd(), &canon, &queue) {
            f.enter(&mut cur, &mut canon, &mut queue, &mut symlinks);
        }
    }

    loop {
        let Some(comp) = queue.pop_front() else {
            // The path named the current directory itself.
            let stat = sys::fstat(cur.as_fd()).map_err(|e| errno_of(&e))?;
            return Ok(Resolved {
                path: join(&canon),
                target: Target::Entry {
                    parent: cur.into_owned()?,
                    name: c".".to_owned(),
                    stat,
                },
                cwd: None,
            });
        };
        let last = queue.is_empty();
        if comp == b".." {
            let up = open_path(cur.as_fd(), c"..", false).map_err(|e| errno_of(&e))?;
            canon.pop();
            cur = Dir::Own(up);
            continue;
        }
        // /proc/self and /proc/thread-self mean the caller.
        if comp == b"self" || comp == b"thread-self" {
            let st = sys::fstat(cur.as_fd()).map_err(|e| errno_of(&e))?;
            if st.st_dev == proc_info.dev && st.st_ino == PROC_ROOT_INO {
                let mut repl: Vec<Vec<u8>> = vec![caller.tgid.to_string().into_bytes()];
                if comp == b"thread-self" {
                    repl.push(b"task".to_vec());
                    repl.push(caller.tid.to_string().into_bytes());
                }
                for c in repl.into_iter().rev() {
                    queue.push_front(c);
                }
                continue;
            }
        }
        let name = cstring(&comp)?;
        if let Some(path) = supervisor_proc_entry(proc_info, caller, cur.as_fd(), &comp, &queue)? {
            // Named, never walked: the walk and the open run in the
            // supervisor, to which the kernel always grants its own /proc
            // entries (mem, environ, fd/*), whatever the caller may do.
            // Judged by this name, which the built-in rules refuse.
            let child = open_path(cur.as_fd(), &name, false).map_err(|e| errno_of(&e))?;
            // The supervisor's own `stat`, `status` and `cmdline`, which the
            // built-in rules let the tree read: the entry itself, so that an
            // allowed open opens it (and not the directory above it).
            let own = own_pid().to_string();
            if comp == own.as_bytes() && !must_be_dir && queue.len() == 1 {
                let entry = &queue[0];
                if PUBLIC_SUPERVISOR_ENTRIES
                    .iter()
                    .any(|e| e.as_bytes() == entry.as_slice())
                {
                    let entry = cstring(entry)?;
                    let stat = sys::lstatat(child.as_fd(), &entry).map_err(|e| errno_of(&e))?;
                    return Ok(Resolved {
                        path,
                        target: Target::Entry {
                            parent: child,
                            name: entry,
                            stat,
                        },
                        cwd: None,
                    });
                }
            }
            let stat = sys::fstat(child.as_fd()).map_err(|e| errno_of(&e))?;
            return Ok(Resolved {
                path,
                target: Target::Entry {
                    parent: cur.into_owned()?,
                    name,
                    stat,
                },
                cwd: None,
            });
        }
        // The last component is only looked at (no descriptor needed unless
        // it is a symlink to follow); every other one is pinned.
        let looked = if last {
            sys::lstatat(cur.as_fd(), &name).map(|st| (None, st))
        } else {
            open_path(cur.as_fd(), &name, false)
                .and_then(|fd| sys::fstat(fd.as_fd()).map(|st| (Some(fd), st)))
        };
        let (child, st) = match looked {
            Ok(r) => r,
            Err(e) if errno_of(&e) == libc::ENOENT && last => {
                if must_be_dir && trailing_slash {
                    // open("new/", O_CREAT) fails with EISDIR in the kernel;
                    // a plain lookup with ENOENT. The caller decides.
                }
                canon.push(comp);
                return Ok(Resolved {
                    path: join(&canon),
                    target: Target::Missing {
                        parent: cur.into_owned()?,
                        name,
                    },
                    cwd: None,
                });
            }
            Err(e) => return Err(errno_of(&e)),
        };
        if is_symlink(&st) && (!last || lookup.follow_last || must_be_dir) {
            symlinks += 1;
            if symlinks > MAX_SYMLINKS {
                return Err(libc::ELOOP);
            }
            let in_proc = st.st_dev == proc_info.dev;
            // Only a symlink on procfs needs to know where it lies.
            let parent_is_proc_root = in_proc && {
                let parent_st = sys::fstat(cur.as_fd()).map_err(|e| errno_of(&e))?;
                parent_st.st_dev == proc_info.dev && parent_st.st_ino == PROC_ROOT_INO
            };
            if in_proc && !parent_is_proc_root {
                // A magic link: jump to the object, as the kernel does. The
                // `self` components were rewritten above, so the link is
                // always followed for an explicit pid.
                let obj = open_path(cur.as_fd(), &name, true).map_err(|e| errno_of(&e))?;
                let ost = sys::fstat(obj.as_fd()).map_err(|e| errno_of(&e))?;
                let where_ = fd_path_of(obj.as_fd())?;
                if last {
                    if must_be_dir && !is_dir(&ost) {
                        return Err(libc::ENOTDIR);
                    }
                    return Ok(Resolved {
                        path: PathBuf::from(std::ffi::OsStr::from_bytes(&where_)),
                        target: Target::Object { fd: obj, stat: ost },
                        cwd: None,
                    });
                }
                if !is_dir(&ost) {
                    return Err(libc::ENOTDIR);
                }
                canon = split_abs(&where_).ok_or(libc::ENOTDIR)?;
                cur = Dir::Own(obj);
                continue;
            }
            let target = match &child {
                Some(fd) => sys::readlinkat(fd.as_fd(), c""),
                None => sys::readlinkat(cur.as_fd(), &name),
            }
            .map_err(|e| errno_of(&e))?;
            if target.is_empty() {
                return Err(libc::ENOENT);
            }
            if target.starts_with(b"/") {
                cur = Dir::root()?;
                canon.clear();
            }
            let parts: Vec<Vec<u8>> = target
                .split(|&b| b == b'/')
                .filter(|c| !c.is_empty() && *c != b".")
                .map(<[u8]>::to_vec)
                .collect();
            for c in parts.into_iter().rev() {
                queue.push_front(c);
            }
            // `/lib/x/y` with `/lib -> usr/lib`: the rest in one step again.
            if fast {
                if let Some(f) = fast_dir_walk(proc_info, cur.as_fd(), &canon, &queue) {
                    f.enter(&mut cur, &mut canon, &mut queue, &mut symlinks);
                }
            }
            continue;
        }
        canon.push(comp);
        if last {
            if must_be_dir && !is_dir(&st) {
                return Err(libc::ENOTDIR);
            }
            return Ok(Resolved {
                path: join(&canon),
                target: Target::Entry {
                    parent: cur.into_owned()?,
                    name,
                    stat: st,
                },
                cwd: None,
            });
        }
        if !is_dir(&st) {
            return Err(libc::ENOTDIR);
        }
        cur = Dir::Own(child.ok_or(libc::EIO)?);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use std::os::unix::fs::symlink;

    fn me() -> Caller {
        let pid = crate::os::pid();
        Caller {
            tid: sys::gettid(),
            tgid: pid,
        }
    }

    fn res(path: &[u8], follow: bool) -> Result<Resolved, Errno> {
        let info = ProcInfo::detect().unwrap();
        resolve(
            &info,
            me(),
            libc::AT_FDCWD,
            path,
            Lookup {
                follow_last: follow,
                empty_path: false,
            },
        )
    }

    fn p(s: &str) -> PathBuf {
        PathBuf::from(s)
    }

    #[test]
    fn dotdot_and_symlinks_resolve_to_the_real_path() {
        let dir = tempfile::tempdir().unwrap();
        let d = fs::canonicalize(dir.path()).unwrap();
        fs::create_dir_all(d.join("a/b")).unwrap();
        fs::write(d.join("a/b/secret"), "x").unwrap();
        symlink(d.join("a/b"), d.join("link")).unwrap();
        symlink("../a/b/secret", d.join("a/rel")).unwrap();
        let r = res(
            format!("{}/a/./b/../b/secret", d.display()).as_bytes(),
            true,
        )
        .unwrap();
        assert_eq!(r.path, d.join("a/b/secret"));
        let r = res(format!("{}/link/secret", d.display()).as_bytes(), true).unwrap();
        assert_eq!(r.path, d.join("a/b/secret"));
        // ".." after a symlink is taken on the real directory, as the kernel does.
        let r = res(format!("{}/link/../b/secret", d.display()).as_bytes(), true).unwrap();
        assert_eq!(r.path, d.join("a/b/secret"));
        let r = res(format!("{}/a/rel", d.display()).as_bytes(), true).unwrap();
        assert_eq!(r.path, d.join("a/b/secret"));
        // Not following the last symlink names the link itself.
        let r = res(format!("{}/a/rel", d.display()).as_bytes(), false).unwrap();
        assert_eq!(r.path, d.join("a/rel"));
        assert!(is_symlink(r.stat().unwrap()));
    }

    #[test]
    fn missing_last_component_gives_parent_and_name() {
        let dir = tempfile::tempdir().unwrap();
        let d = fs::canonicalize(dir.path()).unwrap();
        let r = res(format!("{}/new.txt", d.display()).as_bytes(), true).unwrap();
        assert_eq!(r.path, d.join("new.txt"));
        assert!(matches!(r.target, Target::Missing { .. }));
        assert_eq!(
            res(format!("{}/no/such", d.display()).as_bytes(), true).unwrap_err(),
            libc::ENOENT
        );
    }

    #[test]
    fn symlink_loops_end_in_eloop() {
        let dir = tempfile::tempdir().unwrap();
        let d = fs::canonicalize(dir.path()).unwrap();
        symlink(d.join("b"), d.join("a")).unwrap();
        symlink(d.join("a"), d.join("b")).unwrap();
        assert_eq!(
            res(format!("{}/a", d.display()).as_bytes(), true).unwrap_err(),
            libc::ELOOP
        );
    }

    #[test]
    fn file_used_as_directory_is_enotdir() {
        let dir = tempfile::tempdir().unwrap();
        let d = fs::canonicalize(dir.path()).unwrap();
        fs::write(d.join("f"), "x").unwrap();
        assert_eq!(
            res(format!("{}/f/x", d.display()).as_bytes(), true).unwrap_err(),
            libc::ENOTDIR
        );
        assert_eq!(
            res(format!("{}/f/", d.display()).as_bytes(), true).unwrap_err(),
            libc::ENOTDIR
        );
    }

    #[test]
    fn proc_self_means_the_caller() {
        let c = me();
        let r = res(b"/proc/self/status", true).unwrap();
        assert_eq!(r.path, p(&format!("/proc/{}/status", c.tgid)));
        let r = res(b"/proc/thread-self/comm", true).unwrap();
        assert_eq!(r.path, p(&format!("/proc/{}/task/{}/comm", c.tgid, c.tid)));
        // Through an ordinary symlink to /proc/self (/proc/mounts → self/mounts).
        let r = res(b"/proc/mounts", true).unwrap();
        assert_eq!(r.path, p(&format!("/proc/{}/mounts", c.tgid)));
    }

    #[test]
    fn the_supervisors_proc_entries_are_named_never_walked() {
        let info = ProcInfo::detect().unwrap();
        let own = std::process::id();
        // A caller that is not this process (the tree, for a supervisor).
        let other = Caller { tid: 1, tgid: 1 };
        let lookup = Lookup {
            follow_last: true,
            empty_path: false,
        };
        let (tx, rx) = std::sync::mpsc::channel();
        let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
        let t = std::thread::spawn(move || {
            tx.send(sys::gettid()).unwrap();
            let _ = done_rx.recv();
        });
        let tid = rx.recv().unwrap();
        let by_pid = format!("/proc/{own}/fd/0");
        let r = resolve(&info, other, libc::AT_FDCWD, by_pid.as_bytes(), lookup).unwrap();
        assert_eq!(r.path, p(&by_pid), "the fd link is not followed");
        let by_tid = format!("/proc/{tid}/mem");
        let r = resolve(&info, other, libc::AT_FDCWD, by_tid.as_bytes(), lookup).unwrap();
        assert_eq!(r.path, p(&format!("/proc/{own}/task/{tid}/mem")));
        let via_root = format!("/tmp/../proc/./{tid}/environ");
        let r = resolve(&info, other, libc::AT_FDCWD, via_root.as_bytes(), lookup).unwrap();
        assert_eq!(r.path, p(&format!("/proc/{own}/task/{tid}/environ")));
        done_tx.send(()).unwrap();
        t.join().unwrap();
    }

    #[test]
    fn fd_magic_links_resolve_to_the_object() {
        let dir = tempfile::tempdir().unwrap();
        let d = fs::canonicalize(dir.path()).unwrap();
        fs::write(d.join("target"), "x").unwrap();
        let f = fs::File::open(d.join("target")).unwrap();
        let r = res(format!("/proc/self/fd/{}", f.as_raw_fd()).as_bytes(), true).unwrap();
        assert_eq!(r.path, d.join("target"));
        assert!(matches!(r.target, Target::Object { .. }));
        // /dev/fd → /proc/self/fd: the same object.
        let r = res(format!("/dev/fd/{}", f.as_raw_fd()).as_bytes(), true).unwrap();
        assert_eq!(r.path, d.join("target"));
        // A directory through the cwd magic link, then further components.
        let r = res(
            format!("/proc/self/fd/{}/../", f.as_raw_fd()).as_bytes(),
            true,
        );
        assert_eq!(r.unwrap_err(), libc::ENOTDIR);
    }

    #[test]
    fn relative_paths_start_at_the_callers_cwd() {
        let cwd = fs::canonicalize(std::env::current_dir().unwrap()).unwrap();
        let r = res(b"Cargo.toml", true).unwrap();
        assert_eq!(r.path, cwd.join("Cargo.toml"));
        let r = res(b".", true).unwrap();
        assert_eq!(r.path, cwd);
    }

    #[test]
    fn dirfd_relative_and_empty_path() {
        let dir = tempfile::tempdir().unwrap();
        let d = fs::canonicalize(dir.path()).unwrap();
        fs::create_dir(d.join("sub")).unwrap();
        fs::write(d.join("sub/f"), "x").unwrap();
        let dfd = fs::File::open(d.join("sub")).unwrap();
        let info = ProcInfo::detect().unwrap();
        let r = resolve(
            &info,
            me(),
            dfd.as_raw_fd(),
            b"f",
            Lookup {
                follow_last: true,
                empty_path: false,
            },
        )
        .unwrap();
        assert_eq!(r.path, d.join("sub/f"));
        let r = resolve(
            &info,
            me(),
            dfd.as_raw_fd(),
            b"",
            Lookup {
                follow_last: true,
                empty_path: true,
            },
        )
        .unwrap();
        assert_eq!(r.path, d.join("sub"));
        let e = resolve(
            &info,
            me(),
            987_654,
            b"f",
            Lookup {
                follow_last: true,
                empty_path: false,
            },
        )
        .unwrap_err();
        assert_eq!(e, libc::EBADF);
    }

    #[test]
    fn non_utf8_names_survive() {
        let dir = tempfile::tempdir().unwrap();
        let d = fs::canonicalize(dir.path()).unwrap();
        let name = std::ffi::OsStr::from_bytes(b"caf\xe9\x01");
        fs::write(d.join(name), "x").unwrap();
        let mut path = d.as_os_str().as_bytes().to_vec();
        path.extend_from_slice(b"/caf\xe9\x01");
        let r = res(&path, true).unwrap();
        assert_eq!(r.path.as_os_str().as_bytes(), &path[..]);
    }

    /// Both walks of `path` from `dirfd`: (fast path allowed, component by
    /// component only).
    fn both(dirfd: i32, path: &[u8], follow: bool) -> [Result<Resolved, Errno>; 2] {
        let info = ProcInfo::detect().unwrap();
        let lookup = Lookup {
            follow_last: follow,
            empty_path: false,
        };
        [true, false].map(|fast| {
            let mut cwd = None;
            walk(&info, me(), dirfd, path, lookup, fast, &mut cwd)
        })
    }

    /// Canonical path, kind of target and (device, inode, mode).
    type Summary = (PathBuf, String, Option<(u64, u64, u32)>);

    fn summary(r: &Result<Resolved, Errno>) -> Result<Summary, Errno> {
        let r = r.as_ref().map_err(|e| *e)?;
        let kind = match &r.target {
            Target::Entry { name, .. } => format!("entry {name:?}"),
            Target::Missing { name, .. } => format!("missing {name:?}"),
            Target::Object { .. } => "object".to_string(),
        };
        let st = r.stat().map(|s| (s.st_dev, s.st_ino, s.st_mode));
        Ok((r.path.clone(), kind, st))
    }

    /// The system's own symlinked trees (`/lib -> usr/lib`, `/sys/class/net/*`
    /// -> `../../devices/…`, `/dev/fd -> /proc/self/fd`), walked both ways:
    /// every entry, and a name below each.
    #[test]
    fn system_paths_walk_alike_both_ways() {
        let mut checked = 0;
        for dir in [
            "/bin",
            "/lib",
            "/lib/x86_64-linux-gnu",
            "/etc",
            "/etc/alternatives",
            "/dev",
            "/sys/class/net",
            "/sys/class/block",
            "/sys/bus/cpu/devices",
        ] {
            let Ok(entries) = fs::read_dir(dir) else {
                continue;
            };
            for e in entries.take(150).flatten() {
                let base = format!("{dir}/{}", e.file_name().to_string_lossy());
                for p in [base.clone(), format!("{base}/x"), format!("{base}/.")] {
                    for follow in [true, false] {
                        let [fast, slow] = both(libc::AT_FDCWD, p.as_bytes(), follow);
                        assert_eq!(summary(&fast), summary(&slow), "{p} follow={follow}");
                        checked += 1;
                    }
                }
            }
        }
        assert!(checked > 100, "only {checked} paths");
    }

    #[test]
    fn the_one_step_directory_walk_agrees_with_the_full_walk() {
        let dir = tempfile::tempdir().unwrap();
        let d = fs::canonicalize(dir.path()).unwrap();
        fs::create_dir_all(d.join("a/b/c")).unwrap();
        fs::write(d.join("a/b/c/f"), "x").unwrap();
        fs::write(d.join("a/file"), "x").unwrap();
        symlink(d.join("a/b"), d.join("a/lb")).unwrap();
        symlink("b/c/f", d.join("a/lf")).unwrap();
        symlink("loop", d.join("a/loop")).unwrap();
        // Symlinks in the directory part: absolute, relative with `..`,
        // chained, dangling, to a file, into procfs, and to a directory
        // that is removed.
        symlink(d.join("a"), d.join("la")).unwrap();
        symlink("../a/b", d.join("a/up")).unwrap();
        symlink("la/lb", d.join("chain")).unwrap();
        symlink("nowhere", d.join("a/dangling")).unwrap();
        symlink("/proc/self", d.join("a/lproc")).unwrap();
        symlink("/proc/self/../../etc", d.join("a/lthrough")).unwrap();
        fs::create_dir(d.join("gone")).unwrap();
        symlink(d.join("gone"), d.join("a/lgone")).unwrap();
        let gone = std::fs::File::open(d.join("gone")).unwrap();
        fs::remove_dir(d.join("gone")).unwrap();
        let f = std::fs::File::open(d.join("a")).unwrap();
        let fd_link = format!("/proc/self/fd/{}/b/c/f", f.as_raw_fd());
        let thread_fd_link = format!("/proc/thread-self/fd/{}/b/c", f.as_raw_fd());
        let proc_self = format!("/proc/{}/fd/{}/b/c/f", std::process::id(), f.as_raw_fd());
        let cases: Vec<String> = [
            "a/b/c/f",
            "a/b/c/",
            "a/b/c/.",
            "a/b/c/..",
            "a/./b//c/f",
            "a/b/../b/c/f",
            "a/lb/c/f",
            "a/lb/../file",
            "a/b/c/missing",
            "a/missing/c/f",
            "a/file/c",
            "a/b/c/f/",
            "a/lf",
            "a/loop/x",
            "a/b/lf",
            "a/lb/c/lf/x",
            "a/lb/c/../c/f",
            "a/lf/../x",
            "la/b/c/f",
            "la/lb/c/f",
            "a/up/c/f",
            "a/up/c/missing",
            "chain/c/f",
            "chain/c/lf",
            "la/lb/c/",
            "a/dangling/x",
            "a/lf/c/x",
            "a/lproc/status",
            "a/lproc/fd/0",
            "a/lthrough/hostname",
            "a/lgone/x",
        ]
        .iter()
        .map(|p| format!("{}/{p}", d.display()))
        .chain([
            fd_link,
            thread_fd_link,
            proc_self,
            "/proc/self/status".to_string(),
            "/proc/self/cwd/x".to_string(),
            "/proc/sys/kernel/ostype".to_string(),
            "/etc/hostname".to_string(),
            // `/bin -> usr/bin`, `/lib -> usr/lib` on merged-/usr systems.
            "/bin/sh".to_string(),
            "/lib/x86_64-linux-gnu/libc.so.6".to_string(),
        ])
        .collect();
        for p in &cases {
            for follow in [true, false] {
                let [fast, slow] = both(libc::AT_FDCWD, p.as_bytes(), follow);
                assert_eq!(summary(&fast), summary(&slow), "{p} follow={follow}");
            }
        }
        // Relative to a dirfd.
        for p in [
            "b/c/f",
            "lb/c/f",
            "b/../lb/c/f",
            "b/c/missing",
            "b/nope/f",
            "up/c/f",
            "lproc/status",
        ] {
            let [fast, slow] = both(f.as_raw_fd(), p.as_bytes(), true);
            assert_eq!(summary(&fast), summary(&slow), "{p}");
        }
        // The shortcut is taken where it may be, never where it may not.
        let info = ProcInfo::detect().unwrap();
        let root = sys_root().unwrap();
        let q = |p: &str| -> std::collections::VecDeque<Vec<u8>> {
            p.split('/')
                .filter(|c| !c.is_empty())
                .map(|c| c.as_bytes().to_vec())
                .collect()
        };
        let abs = format!("{}/a/b/c/f", d.display());
        assert!(fast_dir_walk(&info, root.as_fd(), &[], &q(&abs)).is_some());
        // Through ordinary symlinks: taken, with the kernel's canonical path.
        let lnk = format!("{}/la/lb/c/f", d.display());
        let via = fast_dir_walk(&info, root.as_fd(), &[], &q(&lnk)).unwrap();
        assert_eq!(via.n, q(&lnk).len() - 1);
        let want = split_abs(format!("{}/a/b/c", d.display()).as_bytes());
        assert_eq!(via.canon, want);
        // Never into procfs, never to a removed directory, never through
        // a magic link.
        for p in ["a/lproc/fd/0", "a/lgone/x", "a/loop/x", "a/dangling/x"] {
            let p = format!("{}/{p}", d.display());
            assert!(
                fast_dir_walk(&info, root.as_fd(), &[], &q(&p)).is_none(),
                "{p}"
            );
        }
        let magic = format!("{}/ml", d.display());
        symlink(format!("/proc/self/fd/{}", f.as_raw_fd()), &magic).unwrap();
        assert!(fast_dir_walk(&info, root.as_fd(), &[], &q(&format!("{magic}/b/c"))).is_none());
        drop(gone);
        let up = format!("{}/a/b/../b/c/f", d.display());
        assert!(fast_dir_walk(&info, root.as_fd(), &[], &q(&up)).is_none());
        assert!(fast_dir_walk(&info, root.as_fd(), &[], &q("/proc/sys/kernel/ostype")).is_none());
        assert!(fast_dir_walk(&info, root.as_fd(), &[], &q("/proc/self/status")).is_none());
        assert!(fast_dir_walk(&info, root.as_fd(), &[], &q("/f")).is_none());
    }
}
