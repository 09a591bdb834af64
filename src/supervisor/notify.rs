//! The notification loop: receive → decode → check still valid → judge →
//! answer.
//!
//! Answers, by kind:
//! - **open**: never `CONTINUE`. The supervisor resolves the path in the
//!   caller's context, asks the judge, opens the file itself on the pinned
//!   parent directory with the caller's flags, and installs the fd in the
//!   caller with `ADDFD`+`SEND`, so what was judged is what was opened.
//!   `O_PATH` opens cannot be installed (the kernel refuses `O_PATH` files
//!   in `ADDFD`) and are continued after judgement; see the README.
//! - **exec**: judged here, then continued (there is no way to perform an
//!   exec on the caller's behalf); what really runs is confirmed by the
//!   tracer at the exec event before it executes one instruction.
//! - **calls on other processes** (signals, `prlimit64`, priorities,
//!   scheduling, memory placement): refused when aimed at the supervisor or
//!   outside the tree, continued otherwise (their arguments are integers:
//!   nothing to rewrite after the check).
//! - anything undecodable: refused with the errno the kernel would give.

use std::cell::RefCell;
use std::collections::HashMap;
use std::ffi::{CString, OsString};
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStringExt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use crate::action::{Access, Action, ExecAction, OpenAction, ProcessInfo};

use super::creds::{AsCaller, Pidfds};
use super::decode::{
    self, ExecRequest, OpenRequest, ProcessMemory, ProcessRequest, ProcessTarget, Request,
};
use super::procfs::{self, HashCache, Identity};
use super::resolve::{self, Lookup, ProcInfo, Resolved, Target};
use super::sys::{self, Listener, Notif, OpenHow};
use super::{Caller, Judge, Ruling};

/// Most opens that may block (FIFOs) handled on their own threads at once;
/// beyond it such opens fail with `EAGAIN` rather than stall the loop.
const MAX_BLOCKING_OPENS: usize = 64;

/// Most calls held for a human at once, whatever the judge's own limit;
/// beyond it a held call is refused with `EAGAIN`.
const MAX_HELD: usize = 256;

thread_local! {
    /// On a thread that handles one held call: its listener and id.
    static HELD: RefCell<Option<(Arc<Listener>, u64)>> = const { RefCell::new(None) };
    /// The parts of the call being handled that were judged and allowed so
    /// far (a two-path operation judges two actions).
    static ALLOWED: RefCell<Vec<Judged>> = const { RefCell::new(Vec::new()) };
    /// On a held call's thread: the parts allowed (and recorded) when the
    /// loop thread handled the call before handing it over. Handled again
    /// from the start, the call judges them again; the same action on the
    /// same object is not judged (nor recorded) a second time.
    static INHERITED: RefCell<Vec<Judged>> = const { RefCell::new(Vec::new()) };
}

/// A part of a call that was allowed: the action and the object's
/// (device, inode).
type Judged = (Action, Option<(u64, u64)>);

/// Judges one part of a call (one path of a two-path operation) unless the
/// same part was allowed already in an earlier handling of the same call
/// (see [`INHERITED`]): each decision is recorded once.
pub(super) fn judge_part(
    shared: &Shared,
    caller: &Caller,
    syscall: &'static str,
    action: &Action,
    identity: Option<&Identity>,
) -> Ruling {
    let key: Judged = (action.clone(), identity.map(|i| (i.dev, i.ino)));
    let seen = INHERITED.with(|i| {
        let mut i = i.borrow_mut();
        i.iter()
            .position(|k| *k == key)
            .map(|at| i.remove(at))
            .is_some()
    });
    let ruling = if seen {
        Ruling::Allow
    } else {
        shared.judge.judge(caller, syscall, action, identity, None)
    };
    if ruling == Ruling::Allow {
        ALLOWED.with(|a| a.borrow_mut().push(key));
    }
    ruling
}

/// `None` on the loop thread (a judge must not block there: answer
/// [`Ruling::Hold`]); on the thread of a held call, whether that call is
/// still waiting in the kernel (`false` once the caller was killed).
pub fn held_call_waiting() -> Option<bool> {
    HELD.with(|h| {
        h.borrow()
            .as_ref()
            .map(|(listener, id)| listener.id_valid(*id))
    })
}

/// State shared between the notification loop and the tracer.
pub struct Shared {
    pub judge: Arc<dyn Judge>,
    pub proc_info: ProcInfo,
    pub hashes: HashCache,
    pub loaders: super::loader::Loaders,
    /// Exec requests allowed at the notification and not yet confirmed,
    /// by thread id.
    pub pending_exec: Mutex<HashMap<i32, Action>>,
    /// Thread id → (thread group, parent), filled lazily, cleared by the
    /// tracer when a thread exits.
    pub threads: Mutex<HashMap<i32, (i32, i32)>>,
    /// Thread id → the program its process runs, as confirmed at the exec
    /// event, inherited by every task it creates; cleared when the task
    /// exits. A task missing here runs a program that is not known.
    pub images: Mutex<HashMap<i32, Arc<ProcessInfo>>>,
    pub supervisor_pid: i32,
    pub supervisor_pgid: i32,
    /// The supervisor runs as root: opens switch to the caller's credentials.
    pub privileged: bool,
    /// The threads' pidfds, to read their credentials when `privileged`.
    pub pidfds: Pidfds,
    blocking: AtomicUsize,
    /// Threads of held calls, joined at the end of the run.
    held: Mutex<Vec<std::thread::JoinHandle<()>>>,
}

impl Shared {
    pub fn new(
        judge: Arc<dyn Judge>,
        lasting: Option<Arc<super::lasting::LastingHashes>>,
        prehashed: Option<&super::procfs::Prehashed>,
    ) -> io::Result<Shared> {
        let (pid, pgid) = (crate::os::pid(), crate::os::pgrp());
        let hashes = HashCache::with_lasting(lasting);
        if let Some(pre) = prehashed {
            hashes.seed(pre);
        }
        // The command inherits stdin, stdout and stderr: a regular file
        // among them opened for writing is writable by the tree.
        let (stdin, stdout, stderr) = (io::stdin(), io::stdout(), io::stderr());
        for fd in [stdin.as_fd(), stdout.as_fd(), stderr.as_fd()] {
            // A closed one fails with EBADF.
            if matches!(sys::getfl(fd), Ok(fl) if fl & libc::O_ACCMODE != libc::O_RDONLY) {
                hashes.written(fd);
            }
        }
        Ok(Shared {
            judge,
            proc_info: ProcInfo::detect()?,
            loaders: super::loader::Loaders::detect(&hashes),
            hashes,
            pending_exec: Mutex::new(HashMap::new()),
            threads: Mutex::new(HashMap::new()),
            images: Mutex::new(HashMap::new()),
            supervisor_pid: pid,
            supervisor_pgid: pgid,
            privileged: crate::os::euid() == 0,
            pidfds: Pidfds::new(),
            blocking: AtomicUsize::new(0),
            held: Mutex::new(Vec::new()),
        })
    }

    /// Thread group and parent of `tid`.
    pub fn caller(&self, tid: i32) -> io::Result<Caller> {
        if let Some(&(tgid, ppid)) = lock(&self.threads).get(&tid) {
            return Ok(Caller {
                tid,
                pid: tgid,
                ppid,
            });
        }
        let (tgid, ppid) = match self.pidfds.tgid_ppid(tid) {
            Some(ids) => ids,
            None => {
                let st = procfs::status(tid)?;
                (st.tgid, st.ppid)
            }
        };
        lock(&self.threads).insert(tid, (tgid, ppid));
        Ok(Caller {
            tid,
            pid: tgid,
            ppid,
        })
    }

    /// The program the process of `tid` runs, when known.
    pub fn process_of(&self, tid: i32) -> Option<ProcessInfo> {
        lock(&self.images).get(&tid).map(|i| ProcessInfo::clone(i))
    }

    /// `child` was created by `parent` and runs its program until it
    /// executes another (an image already known for `child` is kept: it is
    /// newer).
    pub fn inherit_image(&self, parent: i32, child: i32) {
        let mut images = lock(&self.images);
        if images.contains_key(&child) {
            return;
        }
        if let Some(i) = images.get(&parent).cloned() {
            images.insert(child, i);
        }
    }

    /// A task seen before its creator reported creating it: it has not run
    /// one instruction, and runs its creator's program, which is the file
    /// its `/proc/PID/exe` names. Known only when every known image of that
    /// file agrees on the program (a hard link under another path would
    /// not); then the strictest of them (code injected, if any is).
    pub fn infer_image(&self, tid: i32) {
        let Ok(file) = procfs::exe_file(tid) else {
            return;
        };
        let mut images = lock(&self.images);
        if images.contains_key(&tid) {
            return;
        }
        let mut found: Option<Arc<ProcessInfo>> = None;
        for i in images.values().filter(|i| i.file == Some(file)) {
            match &found {
                None => found = Some(Arc::clone(i)),
                Some(f) if f.program != i.program || f.sha256 != i.sha256 => return,
                Some(f) if f.injected.is_none() && i.injected.is_some() => {
                    found = Some(Arc::clone(i))
                }
                Some(_) => {}
            }
        }
        if let Some(i) = found {
            images.insert(tid, i);
        }
    }

    pub fn forget_thread(&self, tid: i32) {
        self.forget_program(tid);
        self.pidfds.forget(tid);
    }

    /// What was known of `tid`'s program (its image, a pending exec, its
    /// group and parent), for the leader of a process that has just
    /// executed another program. Its pidfd is kept: after the exec it names
    /// the same id, now the process's only thread (the kernel gives an
    /// exec'ing thread the leader's id).
    pub fn forget_program(&self, tid: i32) {
        lock(&self.threads).remove(&tid);
        lock(&self.images).remove(&tid);
        lock(&self.pending_exec).remove(&tid);
    }
}

pub(crate) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // Every critical section is a single map operation: a panicking holder
    // cannot leave the map half-updated.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Runs the loop until `stop` becomes readable.
pub fn serve(
    listener: Arc<Listener>,
    shared: Arc<Shared>,
    stop: OwnedFd,
    spinners: Option<&super::spin::Spinners>,
) {
    loop {
        let revents = match sys::poll_readable(&[listener.as_fd(), stop.as_fd()], -1) {
            Ok(r) => r,
            Err(_) => return,
        };
        if revents[1] != 0 {
            return;
        }
        if revents[0] & libc::POLLIN == 0 {
            if revents[0] & (libc::POLLHUP | libc::POLLERR) != 0 {
                // No task uses the filter any more.
                return;
            }
            continue;
        }
        let n = match listener.recv() {
            Ok(n) => n,
            // The caller went away (killed, or interrupted) before we received.
            Err(e) if matches!(e.raw_os_error(), Some(libc::ENOENT) | Some(libc::EINTR)) => {
                continue
            }
            Err(_) => return,
        };
        if let Some(s) = spinners {
            s.notified();
        }
        handle(&listener, &shared, n);
    }
}

fn syscall_name(nr: i32) -> &'static str {
    use super::filter::nr::*;
    match nr as u32 {
        OPEN => "open",
        OPENAT => "openat",
        OPENAT2 => "openat2",
        CREAT => "creat",
        EXECVE => "execve",
        EXECVEAT => "execveat",
        KILL => "kill",
        TKILL => "tkill",
        TGKILL => "tgkill",
        RT_SIGQUEUEINFO => "rt_sigqueueinfo",
        RT_TGSIGQUEUEINFO => "rt_tgsigqueueinfo",
        PIDFD_OPEN => "pidfd_open",
        PRLIMIT64 => "prlimit64",
        SETPRIORITY => "setpriority",
        IOPRIO_SET => "ioprio_set",
        SCHED_SETPARAM => "sched_setparam",
        SCHED_SETSCHEDULER => "sched_setscheduler",
        SCHED_SETAFFINITY => "sched_setaffinity",
        SCHED_SETATTR => "sched_setattr",
        MIGRATE_PAGES => "migrate_pages",
        MOVE_PAGES => "move_pages",
        GET_ROBUST_LIST => "get_robust_list",
        UNLINK => "unlink",
        UNLINKAT => "unlinkat",
        RMDIR => "rmdir",
        RENAME => "rename",
        RENAMEAT => "renameat",
        RENAMEAT2 => "renameat2",
        LINK => "link",
        LINKAT => "linkat",
        TRUNCATE => "truncate",
        MKDIR => "mkdir",
        MKDIRAT => "mkdirat",
        MKNOD => "mknod",
        MKNODAT => "mknodat",
        SYMLINK => "symlink",
        SYMLINKAT => "symlinkat",
        CHMOD => "chmod",
        FCHMOD => "fchmod",
        FCHMODAT => "fchmodat",
        FCHMODAT2 => "fchmodat2",
        CHOWN => "chown",
        FCHOWN => "fchown",
        LCHOWN => "lchown",
        FCHOWNAT => "fchownat",
        UTIME => "utime",
        UTIMES => "utimes",
        FUTIMESAT => "futimesat",
        UTIMENSAT => "utimensat",
        SETXATTR => "setxattr",
        LSETXATTR => "lsetxattr",
        FSETXATTR => "fsetxattr",
        REMOVEXATTR => "removexattr",
        LREMOVEXATTR => "lremovexattr",
        FREMOVEXATTR => "fremovexattr",
        IOCTL => "ioctl",
        MMAP => "mmap",
        MPROTECT => "mprotect",
        PKEY_MPROTECT => "pkey_mprotect",
        CONNECT => "connect",
        BIND => "bind",
        LISTEN => "listen",
        SENDTO => "sendto",
        SENDMSG => "sendmsg",
        SENDMMSG => "sendmmsg",
        _ => "unknown",
    }
}

fn handle(listener: &Arc<Listener>, shared: &Arc<Shared>, n: Notif) {
    let tid = n.pid as i32;
    let decoded = decode::decode(&n, &decode::PageCached::new(&ProcessMemory { pid: tid }));
    let caller = shared.caller(tid);
    // Everything read so far is trusted only if the call is still waiting:
    // otherwise the tid may already name another thread. An open checks it
    // once, later, after its walk and before anything is judged, recorded
    // or opened (see `open`): until then it only looks, and a denial sent
    // to a call that is gone reaches nobody.
    let checked_later = matches!(decoded, Ok(Request::Open(_)));
    if !checked_later && !listener.id_valid(n.id) {
        return;
    }
    let caller = match caller {
        Ok(c) => c,
        Err(_) => {
            // The thread exists (the notification is valid; for an open,
            // a denial of a call that is gone is dropped by the kernel) but
            // its ids cannot be read: fail closed.
            let _ = listener.deny(n.id, libc::EPERM);
            return;
        }
    };
    let answer = match decoded {
        Err(e) => {
            let errno = e.errno();
            shared
                .judge
                .refused(&caller, syscall_name(n.nr), &e.to_string(), errno);
            Answer::Deny(errno)
        }
        Ok(Request::Open(o)) => open(listener, shared, &caller, n.id, &o),
        Ok(Request::Exec(x)) => exec(shared, &caller, &x),
        Ok(Request::Process(s)) => process_call(shared, &caller, &s),
        Ok(Request::PathOp(p)) => super::pathops::handle(shared, &caller, &p),
        Ok(Request::FileOp(f)) => super::fileops::handle(shared, &caller, &f),
        Ok(Request::CodeMap(m)) => super::codemap::handle(shared, &caller, &m),
        Ok(Request::Net(r)) => super::net::handle(listener, shared, &caller, n.id, &r),
        Ok(Request::Unknown { nr }) => {
            shared.judge.refused(
                &caller,
                "unknown",
                &format!("notified syscall {nr} has no handler"),
                libc::ENOSYS,
            );
            Answer::Deny(libc::ENOSYS)
        }
    };
    let allowed = ALLOWED.with(|a| std::mem::take(&mut *a.borrow_mut()));
    INHERITED.with(|i| i.borrow_mut().clear());
    let result = match answer {
        Answer::Hold => hold(listener, shared, n, &caller, allowed),
        Answer::Deny(errno) => listener.deny(n.id, errno),
        Answer::Continue => listener.continue_call(n.id),
        Answer::Value(v) => listener.reply(n.id, v),
        Answer::Done => Ok(()),
    };
    // ENOENT: the caller was interrupted or killed meanwhile; nothing
    // happened on its side. Any other failure leaves the call to the kernel,
    // which fails it with ENOSYS when the listener goes away.
    let _ = result;
}

/// Hands a notification whose answer needs a human to a thread of its own,
/// which handles it again from the start and answers it.
/// `allowed`: the parts of the call already allowed (and recorded) here.
fn hold(
    listener: &Arc<Listener>,
    shared: &Arc<Shared>,
    n: Notif,
    caller: &Caller,
    allowed: Vec<Judged>,
) -> io::Result<()> {
    if HELD.with(|h| h.borrow().is_some()) {
        // Already on a held call's thread: the judge must decide here.
        return listener.deny(n.id, libc::EPERM);
    }
    let syscall = syscall_name(n.nr);
    let refuse = |why: String| {
        shared.judge.refused(caller, syscall, &why, libc::EAGAIN);
        listener.deny(n.id, libc::EAGAIN)
    };
    let mut held = lock(&shared.held);
    held.retain(|t| !t.is_finished());
    if held.len() >= MAX_HELD {
        drop(held);
        return refuse(format!(
            "{syscall} needs a human's answer and {MAX_HELD} held calls are already waiting (the supervisor's limit of held calls)"
        ));
    }
    let l = Arc::clone(listener);
    let s = Arc::clone(shared);
    let id = n.id;
    let spawned = std::thread::Builder::new()
        .name("lexecon-held".into())
        .spawn(move || {
            HELD.with(|h| *h.borrow_mut() = Some((Arc::clone(&l), id)));
            INHERITED.with(|i| *i.borrow_mut() = allowed);
            handle(&l, &s, n);
        });
    match spawned {
        Ok(t) => {
            held.push(t);
            Ok(())
        }
        Err(e) => {
            drop(held);
            refuse(format!(
                "{syscall} needs a human's answer and no thread could be started to hold it: {e}"
            ))
        }
    }
}

/// Waits for the threads of held calls.
pub(super) fn join_held(shared: &Shared) {
    let threads = std::mem::take(&mut *lock(&shared.held));
    for t in threads {
        let _ = t.join();
    }
}

pub(super) enum Answer {
    /// Handle again on a thread that may wait for a human.
    Hold,
    Deny(i32),
    Continue,
    /// Completed by the supervisor with this return value.
    Value(i64),
    /// Already answered (fd injected, or handed to a worker thread).
    Done,
}

/// The access an open asks for, from its flags and (when it exists) the
/// object's type.
pub fn access_of(flags: u64, stat: Option<&libc::stat>) -> Access {
    let f = flags as i32;
    let mut a = Access::empty();
    if f & libc::O_PATH != 0 {
        a |= Access::READ;
    } else {
        match f & libc::O_ACCMODE {
            libc::O_RDONLY => a |= Access::READ,
            libc::O_WRONLY => a |= Access::WRITE,
            _ => a |= Access::READ | Access::WRITE,
        }
        if f & libc::O_TRUNC != 0 {
            // The kernel requires write permission for O_TRUNC, whatever the
            // access mode: it is a write.
            a |= Access::TRUNCATE | Access::WRITE;
        }
        if f & libc::O_APPEND != 0 {
            a |= Access::APPEND;
        }
        if decode::will_create(flags) {
            a |= Access::CREATE;
            if f & libc::O_TMPFILE == libc::O_TMPFILE {
                a |= Access::WRITE;
            }
        }
    }
    let is_dir = stat.is_some_and(|s| s.st_mode & libc::S_IFMT == libc::S_IFDIR);
    if f & libc::O_DIRECTORY != 0 || is_dir {
        a |= Access::DIRECTORY;
    }
    a
}

pub(super) fn cwd_of(tid: i32) -> PathBuf {
    procfs::readlink(tid, "cwd").unwrap_or_default()
}

/// The caller's cwd for the record: the one the walk started from when it
/// read it, else read now.
pub(super) fn cwd_for(r: &Resolved, tid: i32) -> PathBuf {
    match &r.cwd {
        Some(cwd) => cwd.clone(),
        None => cwd_of(tid),
    }
}

fn open(
    listener: &Arc<Listener>,
    shared: &Arc<Shared>,
    caller: &Caller,
    id: u64,
    o: &OpenRequest,
) -> Answer {
    if o.resolve != 0 {
        // openat2's RESOLVE_* constraints are not emulated: callers fall
        // back to openat on ENOSYS.
        return Answer::Deny(libc::ENOSYS);
    }
    let Ok(_creds) = AsCaller::enter(caller.tid, shared.privileged, &shared.pidfds) else {
        // The caller's credentials cannot be read: do not open anything
        // with ours.
        return Answer::Deny(libc::EACCES);
    };
    let flags = o.flags as i32;
    let excl_create = flags & libc::O_CREAT != 0 && flags & libc::O_EXCL != 0;
    let lookup = Lookup {
        follow_last: flags & libc::O_NOFOLLOW == 0 && !excl_create,
        empty_path: false,
    };
    let rc = resolve::Caller {
        tid: caller.tid,
        tgid: caller.pid,
    };
    let mut attempts = 0;
    loop {
        attempts += 1;
        let resolved = match resolve::resolve(&shared.proc_info, rc, o.dirfd, &o.path, lookup) {
            Ok(r) => r,
            // Nothing was opened: answered as the kernel would, not judged.
            Err(errno) => return Answer::Deny(errno),
        };
        if let Some(errno) = precheck(&resolved, flags, &o.path) {
            return Answer::Deny(errno);
        }
        let action = Action::Open(open_action(shared, &resolved, o.flags, caller.tid));
        // The one check of this call's validity (see `handle`): the path,
        // the caller's ids and credentials and the walk are trusted from
        // here on. Nothing before it was recorded or carried out.
        if !listener.id_valid(id) {
            return Answer::Done;
        }
        let identity = match &resolved.target {
            Target::Entry { stat, .. } | Target::Object { stat, .. } => Some(Identity {
                dev: stat.st_dev,
                ino: stat.st_ino,
                sha256: None,
            }),
            Target::Missing { .. } => None,
        };
        match shared
            .judge
            .judge(caller, o.syscall, &action, identity.as_ref(), None)
        {
            Ruling::Deny(errno) => return Answer::Deny(errno),
            Ruling::Hold => return Answer::Hold,
            Ruling::Allow => {}
        }
        if flags & libc::O_PATH != 0 {
            // O_PATH descriptors cannot be installed with ADDFD. They grant
            // no read or write; every use that does (reopen via
            // /proc/self/fd, exec) is judged on the object itself.
            return Answer::Continue;
        }
        let is_fifo = resolved
            .stat()
            .is_some_and(|s| s.st_mode & libc::S_IFMT == libc::S_IFIFO);
        if is_fifo && flags & libc::O_NONBLOCK == 0 {
            return open_blocking(listener, shared, id, resolved, o.clone(), caller.tid);
        }
        let umask = umask_for(o.flags, caller.tid);
        match perform_open(&resolved, o, umask) {
            Ok(fd) => {
                if flags & libc::O_ACCMODE != libc::O_RDONLY {
                    shared.hashes.written(fd.as_fd());
                }
                let _ = listener.inject_fd_and_reply(id, fd.as_fd(), flags & libc::O_CLOEXEC != 0);
                return Answer::Done;
            }
            // A symlink appeared in place of the judged name between the
            // walk and the open: judge again from scratch.
            Err(e)
                if e.raw_os_error() == Some(libc::ELOOP) && lookup.follow_last && attempts < 3 =>
            {
                continue
            }
            Err(e) => return Answer::Deny(e.raw_os_error().unwrap_or(libc::EIO)),
        }
    }
}

/// What an open amounts to. An `O_TMPFILE` open names a directory and
/// creates an unnamed file in it: judged as that file
/// ([`crate::action::UNNAMED_TMPFILE`] in the directory), not as a write of
/// the directory.
fn open_action(shared: &Shared, resolved: &Resolved, flags: u64, tid: i32) -> OpenAction {
    let mut access = access_of(flags, resolved.stat());
    let mut path = resolved.path.clone();
    if flags as i32 & libc::O_TMPFILE == libc::O_TMPFILE {
        path.push(crate::action::UNNAMED_TMPFILE);
        access = access.difference(Access::DIRECTORY);
    }
    OpenAction {
        path,
        access,
        cwd: cwd_for(resolved, tid),
        process: shared.process_of(tid),
        op: crate::action::FileOp::Open,
        detail: None,
    }
}

/// Errors the kernel reports from the lookup alone, before any open.
fn precheck(r: &Resolved, flags: i32, path: &[u8]) -> Option<i32> {
    match &r.target {
        Target::Missing { .. } => {
            if flags & libc::O_CREAT == 0 {
                Some(libc::ENOENT)
            } else if path.ends_with(b"/") {
                Some(libc::EISDIR)
            } else {
                None
            }
        }
        Target::Entry { stat, .. } => {
            let is_link = stat.st_mode & libc::S_IFMT == libc::S_IFLNK;
            if flags & libc::O_CREAT != 0 && flags & libc::O_EXCL != 0 {
                Some(libc::EEXIST)
            } else if is_link && flags & libc::O_PATH == 0 {
                // O_NOFOLLOW on a symlink.
                Some(libc::ELOOP)
            } else {
                None
            }
        }
        Target::Object { .. } => None,
    }
}

fn umask_for(flags: u64, tid: i32) -> u32 {
    if !decode::will_create(flags) {
        return 0;
    }
    procfs::umask(tid)
}

/// Opens what `r` names with the caller's flags. The supervisor runs with
/// umask 0; the caller's umask is applied to the mode here.
fn perform_open(r: &Resolved, o: &OpenRequest, umask: u32) -> io::Result<OwnedFd> {
    let mode = if decode::will_create(o.flags) {
        o.mode & !(umask as u64)
    } else {
        0
    };
    match &r.target {
        Target::Entry { parent, name, .. } | Target::Missing { parent, name } => {
            let how = OpenHow {
                flags: o.flags,
                mode,
                // The walk already followed every symlink but a last one the
                // caller asked not to follow: any symlink now is a race.
                resolve: libc::RESOLVE_NO_SYMLINKS
                    | libc::RESOLVE_NO_MAGICLINKS
                    | libc::RESOLVE_BENEATH,
            };
            sys::openat2(parent.as_fd(), name, &how)
        }
        Target::Object { fd, .. } => {
            // Reopen the object behind the magic link, exactly as the kernel
            // does for /proc/PID/fd/N: through our own fd table.
            let link = CString::new(format!("/proc/self/fd/{}", fd.as_raw_fd()))
                .map_err(io::Error::other)?;
            let flags = (o.flags as i32) & !(libc::O_CREAT | libc::O_EXCL | libc::O_NOFOLLOW);
            let how = OpenHow {
                flags: flags as u64,
                mode: 0,
                resolve: 0,
            };
            sys::openat2(at_fdcwd(), &link, &how)
        }
    }
}

pub(super) fn at_fdcwd() -> BorrowedFd<'static> {
    sys::at_fdcwd()
}

/// Opens of FIFOs block until the other end shows up: do them on a thread
/// of their own so that the loop keeps serving everyone else.
fn open_blocking(
    listener: &Arc<Listener>,
    shared: &Arc<Shared>,
    id: u64,
    resolved: Resolved,
    o: OpenRequest,
    tid: i32,
) -> Answer {
    if shared.blocking.fetch_add(1, Ordering::SeqCst) >= MAX_BLOCKING_OPENS {
        shared.blocking.fetch_sub(1, Ordering::SeqCst);
        return Answer::Deny(libc::EAGAIN);
    }
    let listener = Arc::clone(listener);
    let shared2 = Arc::clone(shared);
    let umask = umask_for(o.flags, tid);
    let spawned = std::thread::Builder::new()
        .name("lexecon-fifo".into())
        .spawn(move || {
            let opened = AsCaller::enter(tid, shared2.privileged, &shared2.pidfds)
                .map_err(|_| io::Error::from_raw_os_error(libc::EACCES))
                .and_then(|_creds| perform_open(&resolved, &o, umask));
            match opened {
                Ok(fd) => {
                    if o.flags as i32 & libc::O_ACCMODE != libc::O_RDONLY {
                        shared2.hashes.written(fd.as_fd());
                    }
                    let _ = listener.inject_fd_and_reply(
                        id,
                        fd.as_fd(),
                        o.flags as i32 & libc::O_CLOEXEC != 0,
                    );
                }
                Err(e) => {
                    let _ = listener.deny(id, e.raw_os_error().unwrap_or(libc::EIO));
                }
            }
            shared2.blocking.fetch_sub(1, Ordering::SeqCst);
        });
    match spawned {
        Ok(_) => Answer::Done,
        Err(_) => {
            shared.blocking.fetch_sub(1, Ordering::SeqCst);
            Answer::Deny(libc::EAGAIN)
        }
    }
}

fn os(bytes: &[u8]) -> OsString {
    OsString::from_vec(bytes.to_vec())
}

fn exec(shared: &Arc<Shared>, caller: &Caller, x: &ExecRequest) -> Answer {
    let lookup = Lookup {
        follow_last: x.flags & libc::AT_SYMLINK_NOFOLLOW == 0,
        empty_path: x.flags & libc::AT_EMPTY_PATH != 0,
    };
    let rc = resolve::Caller {
        tid: caller.tid,
        tgid: caller.pid,
    };
    let resolved = match resolve::resolve(&shared.proc_info, rc, x.dirfd, &x.path, lookup) {
        Ok(r) => r,
        Err(errno) => return Answer::Deny(errno),
    };
    let stat = match resolved.stat() {
        Some(s) => *s,
        None => return Answer::Deny(libc::ENOENT),
    };
    match stat.st_mode & libc::S_IFMT {
        libc::S_IFLNK => return Answer::Deny(libc::ELOOP),
        libc::S_IFREG => {}
        _ => return Answer::Deny(libc::EACCES),
    }
    let identity = identify_resolved(shared, &resolved);
    let argv: Vec<OsString> = x.argv.iter().map(|a| os(a)).collect();
    let cwd = cwd_for(&resolved, caller.tid);
    let loaded = loaded_program(
        shared,
        caller,
        &resolved.path,
        identity.as_ref(),
        &argv,
        &cwd,
    );
    let action = Action::Exec(ExecAction {
        path: resolved.path.clone(),
        argv,
        cwd,
        sha256: identity.and_then(|i| i.sha256),
    });
    match shared.judge.judge(
        caller,
        x.syscall,
        &action,
        identity.as_ref(),
        loaded.as_ref(),
    ) {
        Ruling::Deny(errno) => Answer::Deny(errno),
        Ruling::Hold => Answer::Hold,
        Ruling::Allow => {
            lock(&shared.pending_exec).insert(caller.tid, action);
            Answer::Continue
        }
    }
}

/// When `path` (with `identity`) is the dynamic loader asked to run a
/// program: the exec of that program it performs, with the program resolved
/// as the caller would resolve it and hashed without blocking.
pub(super) fn loaded_program(
    shared: &Shared,
    caller: &Caller,
    path: &std::path::Path,
    identity: Option<&Identity>,
    argv: &[OsString],
    cwd: &std::path::Path,
) -> Option<Action> {
    use std::os::unix::ffi::OsStrExt;
    if !shared.loaders.is_loader(path, identity) {
        return None;
    }
    let bytes: Vec<&[u8]> = argv.iter().map(|a| a.as_bytes()).collect();
    let i = super::loader::program_arg(&bytes)?;
    let prog = bytes[i];
    let rc = resolve::Caller {
        tid: caller.tid,
        tgid: caller.pid,
    };
    let lookup = Lookup {
        follow_last: true,
        empty_path: false,
    };
    let (path, sha256) = match resolve::resolve(&shared.proc_info, rc, libc::AT_FDCWD, prog, lookup)
    {
        Ok(r) => {
            let id = identify_resolved(shared, &r);
            (r.path, id.and_then(|i| i.sha256))
        }
        // Not there (yet): judged by the name the caller gave, hash unknown.
        Err(_) => (cwd.join(std::ffi::OsStr::from_bytes(prog)), None),
    };
    Some(Action::Exec(ExecAction {
        path,
        argv: argv[i..].to_vec(),
        cwd: cwd.to_path_buf(),
        sha256,
    }))
}

/// An `O_PATH` descriptor of the resolved object.
fn object_fd(r: &Resolved) -> io::Result<OwnedFd> {
    match &r.target {
        Target::Entry { parent, name, .. } => {
            sys::openat(parent.as_fd(), name, libc::O_PATH | libc::O_NOFOLLOW, 0)
        }
        Target::Object { fd, .. } => procfs::dup(fd.as_fd()),
        Target::Missing { .. } => Err(io::Error::from_raw_os_error(libc::ENOENT)),
    }
}

/// Where a call that acts on other processes lands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Aim {
    /// The caller, the tree, or nobody (the kernel answers `ESRCH`).
    Tree,
    Supervisor,
    /// A process the supervisor does not trace, or one it cannot tell.
    Outside(i32),
}

impl Shared {
    /// Where a call aimed at thread or process `tid` lands. Every task of
    /// the tree is traced by the supervisor from its first instruction, so
    /// its `TracerPid` says whether it belongs to the tree.
    fn aim_at(&self, tid: i32) -> Aim {
        if tid == self.supervisor_pid || procfs::is_own_task(tid) {
            return Aim::Supervisor;
        }
        match procfs::status(tid) {
            Ok(st) if st.tracer == self.supervisor_pid => Aim::Tree,
            // A zombie (an exited child not yet reaped, no longer traced)
            // runs nothing: a signal or a limit changes nothing, as natively.
            Ok(st) if matches!(st.state, 'Z' | 'X') => Aim::Tree,
            Ok(_) => Aim::Outside(tid),
            // Gone: the call fails with ESRCH in the kernel.
            Err(e) if e.kind() == io::ErrorKind::NotFound => Aim::Tree,
            // Unknown never helps the tree.
            Err(_) => Aim::Outside(tid),
        }
    }

    /// Where a call aimed at process group `pgid` lands: its members, all of
    /// them (the tree may join a group of the supervisor's session).
    fn aim_at_group(&self, pgid: i32) -> Aim {
        if pgid == self.supervisor_pgid {
            return Aim::Supervisor;
        }
        let Ok(all) = procfs::processes() else {
            return Aim::Outside(pgid);
        };
        let mut aim = Aim::Tree;
        for pid in all {
            if procfs::pgid(pid).is_ok_and(|g| g == pgid) {
                match self.aim_at(pid) {
                    Aim::Tree => {}
                    Aim::Supervisor => return Aim::Supervisor,
                    outside => aim = outside,
                }
            }
        }
        aim
    }
}

/// Calls that act on other processes (signals, resource limits, scheduling,
/// memory placement): refused when aimed at the supervisor, and — except a
/// signal 0, which only probes — when aimed at a process outside the tree.
/// Their arguments are integers, so they are continued after the check.
fn process_call(shared: &Arc<Shared>, caller: &Caller, s: &ProcessRequest) -> Answer {
    let aim = match s.target {
        ProcessTarget::Caller => Aim::Tree,
        ProcessTarget::Process(p) => shared.aim_at(p),
        ProcessTarget::Thread { tgid, tid } => match tgid.map(|g| shared.aim_at(g)) {
            Some(Aim::Tree) | None => shared.aim_at(tid),
            Some(other) => other,
        },
        ProcessTarget::Group(g) => shared.aim_at_group(g),
        ProcessTarget::OwnGroup => match procfs::pgid(caller.pid) {
            Ok(g) => shared.aim_at_group(g),
            Err(_) => Aim::Outside(0),
        },
        // Every process the caller may signal, every process of a uid: the
        // supervisor among them.
        ProcessTarget::Everyone | ProcessTarget::User => Aim::Supervisor,
    };
    let why = match (aim, s.signal) {
        (Aim::Tree, _) | (Aim::Outside(_), Some(0)) => return Answer::Continue,
        (Aim::Supervisor, Some(sig)) => {
            format!("{} aimed at the supervisor (signal {sig})", s.syscall)
        }
        (Aim::Supervisor, None) => format!("{} aimed at the supervisor", s.syscall),
        (Aim::Outside(pid), _) => format!(
            "{} aimed outside the supervised tree (pid or group {pid})",
            s.syscall
        ),
    };
    shared.judge.refused(caller, s.syscall, &why, libc::EPERM);
    Answer::Deny(libc::EPERM)
}

/// Identity (device, inode, hash) of the program `pid` runs.
pub fn identify_exe(shared: &Shared, pid: i32) -> Option<Identity> {
    // A program file hashed before and not writable by the tree: its
    // `stat` alone (the process is stopped; its program cannot change).
    if let Some(id) = procfs::exe_stat(pid)
        .ok()
        .and_then(|st| shared.hashes.cached(&st))
    {
        return Some(id);
    }
    let fd = procfs::open_exe(pid).ok()?;
    shared.hashes.identify(fd.as_fd()).ok()
}

/// Identity of the file a resolved exec names: from the cache when the
/// walk's `stat` of the name finds a hash there, else by opening it.
fn identify_resolved(shared: &Shared, r: &Resolved) -> Option<Identity> {
    if let Target::Entry { stat, .. } = &r.target {
        if let Some(id) = shared.hashes.cached(stat) {
            return Some(id);
        }
    }
    object_fd(r)
        .and_then(|fd| shared.hashes.identify(fd.as_fd()))
        .ok()
}
