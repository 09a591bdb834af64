//! Acting with the caller's filesystem credentials.
//!
//! Emulated opens are performed by the supervisor. When it runs as an
//! ordinary user, the tree has exactly its credentials (no_new_privs: no
//! set-id programs, and an unprivileged process cannot change its ids to
//! anything else), so nothing needs switching. When the supervisor runs as
//! root, the tree may have dropped privileges (`setuid`, `su` from a root
//! shell): then the handling thread takes the caller's filesystem uid, gid
//! and groups for the duration of the path walk and the open, so the kernel
//! checks permissions exactly as for the caller. `setfsuid`, `setfsgid` and
//! the raw `setgroups` syscall change only the calling thread.

use std::collections::HashMap;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use super::notify::lock;
use super::procfs;

/// Filesystem credentials switched to the caller's; restored on drop.
pub struct AsCaller {
    restore: Option<(u32, u32, Vec<u32>)>,
}

fn setgroups(groups: &[u32]) -> io::Result<()> {
    // SAFETY: the raw syscall (not libc's, which changes every thread)
    // reads `len` gids from the slice.
    let r = unsafe { libc::syscall(libc::SYS_setgroups, groups.len(), groups.as_ptr()) };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

fn set_fs_ids(uid: u32, gid: u32) -> io::Result<()> {
    // SAFETY: setfsuid/setfsgid take integers; they return the previous id
    // and never fail visibly, so success is checked by reading back.
    unsafe {
        libc::syscall(libc::SYS_setfsgid, gid);
        libc::syscall(libc::SYS_setfsuid, uid);
        let now_uid = libc::syscall(libc::SYS_setfsuid, u32::MAX) as u32;
        let now_gid = libc::syscall(libc::SYS_setfsgid, u32::MAX) as u32;
        if now_uid != uid || now_gid != gid {
            return Err(io::Error::from_raw_os_error(libc::EPERM));
        }
    }
    Ok(())
}

fn own_groups() -> io::Result<Vec<u32>> {
    // SAFETY: first call asks for the count; the second fills a buffer of
    // that size.
    unsafe {
        let n = libc::getgroups(0, std::ptr::null_mut());
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        let mut g = vec![0 as libc::gid_t; n as usize];
        let n = libc::getgroups(n, g.as_mut_ptr());
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        g.truncate(n as usize);
        Ok(g)
    }
}

/// Set once the kernel turned out to lack thread pidfds (before Linux 6.9)
/// or `PIDFD_GET_INFO` (before 6.13): no pidfd is opened again, every
/// caller uses `/proc` (rather than a `pidfd_open` and a `close` more for
/// each thread).
static NO_PIDFD_INFO: AtomicBool = AtomicBool::new(false);

fn pidfd_open(tid: i32) -> Option<OwnedFd> {
    if NO_PIDFD_INFO.load(Ordering::Relaxed) {
        return None;
    }
    // SAFETY: pidfd_open takes integers; a non-negative result is a new fd
    // that nobody else owns.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, tid, libc::PIDFD_THREAD) };
    if fd < 0 {
        if io::Error::last_os_error().raw_os_error() == Some(libc::EINVAL) {
            // PIDFD_THREAD unknown (a tid that is not a thread gives ESRCH).
            NO_PIDFD_INFO.store(true, Ordering::Relaxed);
        }
        return None;
    }
    // SAFETY: as above.
    Some(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

/// What `PIDFD_GET_INFO` (Linux 6.13) says of the thread a pidfd refers
/// to, credentials included; `None` when the kernel lacks it or the thread
/// is gone (reaped).
fn pidfd_info(fd: BorrowedFd<'_>) -> Option<libc::pidfd_info> {
    // SAFETY: pidfd_info is plain old data; all-zero is a valid value.
    let mut info: libc::pidfd_info = unsafe { std::mem::zeroed() };
    info.mask = libc::PIDFD_INFO_CREDS as u64;
    // SAFETY: PIDFD_GET_INFO reads and writes one pidfd_info (the size is
    // encoded in the request) in a buffer we own.
    let r = unsafe {
        libc::ioctl(
            fd.as_raw_fd(),
            libc::PIDFD_GET_INFO,
            &mut info as *mut libc::pidfd_info,
        )
    };
    if r < 0 {
        if matches!(
            io::Error::last_os_error().raw_os_error(),
            Some(libc::ENOTTY) | Some(libc::EINVAL)
        ) {
            // The request is unknown (a reaped thread gives ESRCH).
            NO_PIDFD_INFO.store(true, Ordering::Relaxed);
        }
        return None;
    }
    Some(info)
}

/// The filesystem uid and gid of the thread a pidfd refers to.
fn pidfd_fs_ids(fd: BorrowedFd<'_>) -> Option<(u32, u32)> {
    let info = pidfd_info(fd)?;
    if info.mask & libc::PIDFD_INFO_CREDS as u64 == 0 {
        return None;
    }
    Some((info.fsuid, info.fsgid))
}

/// The thread group and parent process of thread `tid`, from its pidfd:
/// `None` unless the kernel reports the ids of that very thread.
fn pidfd_tgid_ppid(fd: BorrowedFd<'_>, tid: i32) -> Option<(i32, i32)> {
    let info = pidfd_info(fd)?;
    if info.mask & libc::PIDFD_INFO_PID as u64 == 0 || info.pid as i32 != tid || info.tgid == 0 {
        return None;
    }
    Some((info.tgid as i32, info.ppid as i32))
}

/// `tid`'s filesystem uid and gid from a pidfd (thread pidfds, Linux 6.9):
/// a few cheap syscalls, where formatting and parsing `/proc/TID/status`
/// costs several microseconds on every open. `None` when the kernel lacks
/// either (or the thread is gone): the caller falls back to `/proc`.
#[cfg(test)]
fn fs_ids(tid: i32) -> Option<(u32, u32)> {
    pidfd_fs_ids(pidfd_open(tid)?.as_fd())
}

/// Most pidfds kept at once; threads beyond get a pidfd per open.
const MAX_PIDFDS: usize = 512;

/// One pidfd per thread of the tree, opened at its first open and kept
/// until the tracer sees it exit, so that an open costs one
/// `PIDFD_GET_INFO`. Only the descriptor is kept, never the ids: they are
/// read afresh at every open (the tree may change them at any time without
/// the supervisor seeing it). A kept pidfd always names the thread that
/// now has that id or a thread that is gone: a thread id is not reused
/// while a pidfd's thread still exists, and the info of a reaped thread
/// fails, which drops the entry and opens a new pidfd.
pub struct Pidfds {
    fds: Mutex<HashMap<i32, OwnedFd>>,
    /// The supervisor's effective uid and gid (never changed while it runs).
    own: (u32, u32),
}

impl Default for Pidfds {
    fn default() -> Self {
        Self::new()
    }
}

impl Pidfds {
    pub fn new() -> Pidfds {
        // SAFETY: geteuid/getegid take no arguments.
        let own = unsafe { (libc::geteuid(), libc::getegid()) };
        Pidfds {
            fds: Mutex::new(HashMap::new()),
            own,
        }
    }

    /// `tid` exited (or exec'd): close its pidfd.
    pub fn forget(&self, tid: i32) {
        lock(&self.fds).remove(&tid);
    }

    /// `tid`'s filesystem uid and gid, read now.
    fn fs_ids(&self, tid: i32) -> Option<(u32, u32)> {
        let mut fds = lock(&self.fds);
        if let Some(fd) = fds.get(&tid) {
            if let Some(ids) = pidfd_fs_ids(fd.as_fd()) {
                return Some(ids);
            }
            // The thread this pidfd named is gone: the id is someone
            // else's now.
            fds.remove(&tid);
        }
        let fd = pidfd_open(tid)?;
        let ids = pidfd_fs_ids(fd.as_fd())?;
        if fds.len() < MAX_PIDFDS {
            fds.insert(tid, fd);
        }
        Some(ids)
    }

    /// `tid`'s thread group and parent process, read now from its pidfd
    /// (opened and kept for its later opens): one `pidfd_open` and one
    /// `PIDFD_GET_INFO` where `/proc/TID/status` costs four syscalls and
    /// formatting the whole file. `None` when the kernel lacks either, or
    /// the thread is gone: the caller falls back to `/proc`.
    pub fn tgid_ppid(&self, tid: i32) -> Option<(i32, i32)> {
        let mut fds = lock(&self.fds);
        if let Some(fd) = fds.get(&tid) {
            if let Some(ids) = pidfd_tgid_ppid(fd.as_fd(), tid) {
                return Some(ids);
            }
            fds.remove(&tid);
        }
        let fd = pidfd_open(tid)?;
        let ids = pidfd_tgid_ppid(fd.as_fd(), tid)?;
        if fds.len() < MAX_PIDFDS {
            fds.insert(tid, fd);
        }
        Some(ids)
    }

    #[cfg(test)]
    fn kept(&self) -> usize {
        lock(&self.fds).len()
    }
}

impl AsCaller {
    /// Takes `tid`'s filesystem credentials when `privileged` (the
    /// supervisor is root) and they differ from the supervisor's.
    pub fn enter(tid: i32, privileged: bool, pidfds: &Pidfds) -> io::Result<AsCaller> {
        if !privileged {
            return Ok(AsCaller { restore: None });
        }
        let (my_uid, my_gid) = pidfds.own;
        if pidfds.fs_ids(tid) == Some((my_uid, my_gid)) {
            // The caller is root too (the usual case when the supervisor
            // runs as root): its supplementary groups make no difference to
            // what root may open, so nothing needs switching.
            return Ok(AsCaller { restore: None });
        }
        let st = procfs::status(tid)?;
        let (fsuid, fsgid) = (st.uid[3], st.gid[3]);
        let mine = own_groups()?;
        if fsuid == my_uid && fsgid == my_gid && st.groups == mine {
            return Ok(AsCaller { restore: None });
        }
        let guard = AsCaller {
            restore: Some((my_uid, my_gid, mine)),
        };
        setgroups(&st.groups)?;
        set_fs_ids(fsuid, fsgid)?;
        Ok(guard)
    }
}

impl Drop for AsCaller {
    fn drop(&mut self) {
        if let Some((uid, gid, groups)) = self.restore.take() {
            // Order: regain the fs uid first (it restores the capability to
            // change groups), then groups and gid.
            // SAFETY: integer arguments only.
            unsafe {
                libc::syscall(libc::SYS_setfsuid, uid);
            }
            let _ = setgroups(&groups);
            let _ = set_fs_ids(uid, gid);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Whether `released` becomes true within 10 s: a joined thread has
    /// cleared its tid but may not be released by the kernel yet.
    fn gone(released: impl Fn() -> bool) -> bool {
        for _ in 0..1000 {
            if released() {
                return true;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        false
    }

    /// The pidfd read gives the filesystem ids of that very thread (they are
    /// per thread), matching `/proc/TID/status`.
    #[test]
    fn fs_ids_are_the_threads_own() {
        let me = super::super::sys::gettid();
        let st = procfs::status(me).unwrap();
        match fs_ids(me) {
            // Kernel without thread pidfds or PIDFD_GET_INFO: the /proc path
            // is used instead.
            None => return,
            Some(ids) => assert_eq!(ids, (st.uid[3], st.gid[3])),
        }
        // SAFETY: geteuid takes no arguments.
        if unsafe { libc::geteuid() } != 0 {
            return;
        }
        // A thread that changed its own fs uid: only that thread reports it.
        let (tx, rx) = std::sync::mpsc::channel();
        let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
        let t = std::thread::spawn(move || {
            // SAFETY: integer argument; changes this thread only.
            unsafe { libc::syscall(libc::SYS_setfsuid, 65534) };
            tx.send(super::super::sys::gettid()).unwrap();
            done_rx.recv().unwrap();
        });
        let tid = rx.recv().unwrap();
        let theirs = fs_ids(tid);
        let mine = fs_ids(me);
        done_tx.send(()).unwrap();
        t.join().unwrap();
        assert_eq!(theirs, Some((65534, st.gid[3])));
        assert_eq!(mine, Some((st.uid[3], st.gid[3])));
    }

    /// The thread group and parent read from a pidfd are those of
    /// `/proc/TID/status`, for the main thread and for another thread.
    #[test]
    fn tgid_and_parent_match_proc() {
        let pidfds = Pidfds::new();
        let me = super::super::sys::gettid();
        let Some(ids) = pidfds.tgid_ppid(me) else {
            // Kernel without thread pidfds or PIDFD_GET_INFO.
            return;
        };
        let st = procfs::status(me).unwrap();
        assert_eq!(ids, (st.tgid, st.ppid));
        assert_eq!(ids.0, std::process::id() as i32);
        assert_eq!(pidfds.kept(), 1);
        let (tx, rx) = std::sync::mpsc::channel();
        let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
        let t = std::thread::spawn(move || {
            tx.send(super::super::sys::gettid()).unwrap();
            done_rx.recv().unwrap();
        });
        let tid = rx.recv().unwrap();
        let theirs = pidfds.tgid_ppid(tid);
        let st = procfs::status(tid).unwrap();
        done_tx.send(()).unwrap();
        t.join().unwrap();
        assert_ne!(tid, me);
        assert_eq!(theirs, Some((st.tgid, st.ppid)));
        // Gone (once the kernel released it, a moment after `join`): no
        // answer, and its pidfd is dropped.
        assert!(
            gone(|| pidfds.tgid_ppid(tid).is_none()),
            "a thread that exited still has ids"
        );
        assert_eq!(pidfds.kept(), 1);
    }

    /// A kept pidfd gives the ids the thread has now, not those it had when
    /// the pidfd was opened; a pidfd of a thread that is gone is dropped.
    #[test]
    fn kept_pidfds_read_the_current_ids() {
        let pidfds = Pidfds::new();
        let me = super::super::sys::gettid();
        if pidfds.fs_ids(me).is_none() {
            // Kernel without thread pidfds or PIDFD_GET_INFO.
            return;
        }
        assert_eq!(pidfds.kept(), 1);
        let (tx, rx) = std::sync::mpsc::channel();
        let (go_tx, go_rx) = std::sync::mpsc::channel::<()>();
        let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
        // SAFETY: geteuid takes no arguments.
        let root = unsafe { libc::geteuid() } == 0;
        let t = std::thread::spawn(move || {
            tx.send(super::super::sys::gettid()).unwrap();
            go_rx.recv().unwrap();
            if root {
                // SAFETY: integer argument; changes this thread only.
                unsafe { libc::syscall(libc::SYS_setfsuid, 65534) };
            }
            tx.send(0).unwrap();
            done_rx.recv().unwrap();
        });
        let tid = rx.recv().unwrap();
        let before = pidfds.fs_ids(tid).unwrap();
        assert_eq!(pidfds.kept(), 2);
        go_tx.send(()).unwrap();
        rx.recv().unwrap();
        let after = pidfds.fs_ids(tid).unwrap();
        if root {
            assert_eq!(before.0, 0);
            assert_eq!(after, (65534, before.1));
        } else {
            assert_eq!(after, before);
        }
        done_tx.send(()).unwrap();
        t.join().unwrap();
        // Joined: the thread is gone, its pidfd no longer reads anything.
        // (`join` returns when the thread has cleared its tid, a moment
        // before the kernel releases it: wait for that.)
        assert!(
            gone(|| pidfds.fs_ids(tid).is_none()),
            "the pidfd of a thread that exited still reads ids"
        );
        assert_eq!(pidfds.kept(), 1);
        pidfds.forget(me);
        assert_eq!(pidfds.kept(), 0);
    }
}
