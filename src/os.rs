//! Safe, typed wrappers over the process-level kernel calls the code outside
//! the supervisor needs: who this process is, advisory file locks, the
//! terminal's foreground group, signal dispositions and masks, the umask,
//! and unix-socket peer credentials; and a file written atomically.
//!
//! This module and the kernel-wrapping modules of [`crate::supervisor`]
//! (`sys`, `netsys`, `creds`, `fileops`, `pathops`, `launch`, `codemap`) are
//! the only places of the crate allowed to hold `unsafe` code; every block
//! says why it is sound. Descriptors are taken as [`BorrowedFd`], so none
//! can be used after it was closed.

use std::ffi::CStr;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};

fn cvt(ret: libc::c_int) -> io::Result<libc::c_int> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

/// This process's pid.
pub fn pid() -> i32 {
    std::process::id() as i32
}

/// The real uid of this process.
pub fn uid() -> u32 {
    // SAFETY: getuid takes no arguments and cannot fail.
    unsafe { libc::getuid() }
}

/// The effective uid of this process.
pub fn euid() -> u32 {
    // SAFETY: geteuid takes no arguments and cannot fail.
    unsafe { libc::geteuid() }
}

/// The effective gid of this process.
pub fn egid() -> u32 {
    // SAFETY: getegid takes no arguments and cannot fail.
    unsafe { libc::getegid() }
}

/// This process's process group.
pub fn pgrp() -> i32 {
    // SAFETY: getpgrp takes no arguments and cannot fail.
    unsafe { libc::getpgrp() }
}

/// Whether to wait for a lock held by someone else.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wait {
    /// Fail at once with `EWOULDBLOCK`.
    No,
    /// Wait until the holder lets go (or a signal interrupts: `EINTR`).
    Yes,
}

/// Takes an exclusive `flock(2)` lock on `fd`'s open file description.
pub fn flock_exclusive(fd: BorrowedFd<'_>, wait: Wait) -> io::Result<()> {
    let op = match wait {
        Wait::No => libc::LOCK_EX | libc::LOCK_NB,
        Wait::Yes => libc::LOCK_EX,
    };
    // SAFETY: flock takes an integer fd, valid for the borrow, and touches
    // no memory of ours.
    cvt(unsafe { libc::flock(fd.as_raw_fd(), op) }).map(|_| ())
}

/// Waits at most `ms` milliseconds (negative: no limit) for `fd` to be
/// readable; `false` when the time ran out. An interrupted wait is an error
/// (`EINTR`), as `poll(2)` reports it.
pub fn poll_in(fd: BorrowedFd<'_>, ms: i32) -> io::Result<bool> {
    let mut pfd = libc::pollfd {
        fd: fd.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid, writable pollfd, and a count of 1.
    let n = cvt(unsafe { libc::poll(&mut pfd, 1, ms) })?;
    Ok(n > 0)
}

/// Waits up to `ms` for `fd` or `wake` to be readable: (`fd` is, `wake` is).
pub fn poll_in_or(fd: BorrowedFd<'_>, wake: BorrowedFd<'_>, ms: i32) -> io::Result<(bool, bool)> {
    let mut pfd = [
        libc::pollfd {
            fd: fd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        },
        libc::pollfd {
            fd: wake.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        },
    ];
    // SAFETY: two valid, writable pollfds, and a count of 2.
    cvt(unsafe { libc::poll(pfd.as_mut_ptr(), 2, ms) })?;
    Ok((pfd[0].revents != 0, pfd[1].revents != 0))
}

/// A non-blocking, close-on-exec eventfd: a waker for [`poll_in_or`].
pub fn eventfd() -> io::Result<std::os::fd::OwnedFd> {
    // SAFETY: integer arguments only.
    let fd = cvt(unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) })?;
    // SAFETY: eventfd returned a new descriptor that nothing else owns.
    Ok(unsafe { <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) })
}

/// Makes the eventfd `fd` readable (adds one to its counter).
pub fn eventfd_signal(fd: BorrowedFd<'_>) -> io::Result<()> {
    let one: u64 = 1;
    // SAFETY: writes 8 bytes from a local u64.
    let n = unsafe { libc::write(fd.as_raw_fd(), (&one as *const u64).cast(), 8) };
    if n == 8 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Whether `path` names a file this process may execute (`access(X_OK)`).
pub fn executable(path: &CStr) -> bool {
    // SAFETY: path is NUL-terminated; access reads nothing else of ours.
    unsafe { libc::access(path.as_ptr(), libc::X_OK) == 0 }
}

/// The foreground process group of the terminal `fd`.
pub fn tcgetpgrp(fd: BorrowedFd<'_>) -> io::Result<i32> {
    // SAFETY: integer argument only.
    cvt(unsafe { libc::tcgetpgrp(fd.as_raw_fd()) })
}

/// Makes `pgrp` the foreground process group of the terminal `fd`.
pub fn tcsetpgrp(fd: BorrowedFd<'_>, pgrp: i32) -> io::Result<()> {
    // SAFETY: integer arguments only.
    cvt(unsafe { libc::tcsetpgrp(fd.as_raw_fd(), pgrp) }).map(|_| ())
}

/// Discards input typed on the terminal `fd` and not read yet.
pub fn tcflush_input(fd: BorrowedFd<'_>) -> io::Result<()> {
    // SAFETY: integer arguments only.
    cvt(unsafe { libc::tcflush(fd.as_raw_fd(), libc::TCIFLUSH) }).map(|_| ())
}

/// Puts process `pid` into process group `pgid` (`setpgid(2)`).
pub fn setpgid(pid: i32, pgid: i32) -> io::Result<()> {
    // SAFETY: integer arguments only.
    cvt(unsafe { libc::setpgid(pid, pgid) }).map(|_| ())
}

/// A signal disposition as `signal(2)` returned it, to put back later.
#[derive(Debug, Clone, Copy)]
pub struct Disposition(libc::sighandler_t);

/// Ignores `sig`; returns the disposition it had.
pub fn ignore_signal(sig: i32) -> Disposition {
    // SAFETY: SIG_IGN runs no code of ours; sig is a plain integer (an
    // invalid one fails with EINVAL and changes nothing).
    Disposition(unsafe { libc::signal(sig, libc::SIG_IGN) })
}

/// Restores the default action of `sig`.
pub fn default_signal(sig: i32) {
    // SAFETY: SIG_DFL runs no code of ours.
    unsafe {
        libc::signal(sig, libc::SIG_DFL);
    }
}

/// Puts back a disposition [`ignore_signal`] returned.
pub fn restore_signal(sig: i32, old: Disposition) {
    // SAFETY: `old` came from signal(2) for this process: SIG_DFL, SIG_IGN,
    // or a handler installed before, which stays valid (no Rust code
    // unloads handlers).
    unsafe {
        libc::signal(sig, old.0);
    }
}

/// A set of signals.
pub fn sigset(sigs: &[i32]) -> libc::sigset_t {
    // SAFETY: sigset_t is plain data; sigemptyset initialises it before
    // sigaddset uses it.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for &s in sigs {
            libc::sigaddset(&mut set, s);
        }
        set
    }
}

/// Blocks (`true`) or unblocks the signals of `set` for the calling thread.
pub fn mask_signals(set: &libc::sigset_t, block: bool) {
    let how = if block {
        libc::SIG_BLOCK
    } else {
        libc::SIG_UNBLOCK
    };
    // SAFETY: set is a valid sigset_t; the old mask is not asked for.
    unsafe {
        libc::pthread_sigmask(how, set, std::ptr::null_mut());
    }
}

/// Waits at most `timeout` for one signal of `set` (which must be blocked);
/// `None` when none came.
pub fn sigtimedwait(set: &libc::sigset_t, timeout: std::time::Duration) -> Option<i32> {
    let ts = libc::timespec {
        // `as _`: time_t differs between the C libraries; 32 bits hold it.
        tv_sec: timeout.as_secs().min(i32::MAX as u64) as _,
        tv_nsec: timeout.subsec_nanos() as _,
    };
    // SAFETY: set and ts are valid for reads; siginfo may be null.
    let sig = unsafe { libc::sigtimedwait(set, std::ptr::null_mut(), &ts) };
    (sig > 0).then_some(sig)
}

/// Sets the umask; returns the previous one.
pub fn umask(mask: u32) -> u32 {
    // SAFETY: umask takes an integer and cannot fail.
    unsafe { libc::umask(mask as libc::mode_t) as u32 }
}

/// Puts the calling thread under `SCHED_IDLE`: it runs only when nothing
/// else wants its CPU. (An unprivileged thread cannot leave it again.)
pub fn set_sched_idle() -> io::Result<()> {
    // SAFETY: sched_param is plain old data (its fields differ between the
    // C libraries); all zeroes is priority 0, the only one SCHED_IDLE takes.
    let param: libc::sched_param = unsafe { std::mem::zeroed() };
    // SAFETY: param is a valid sched_param for the call; pid 0 is the
    // calling thread.
    cvt(unsafe { libc::sched_setscheduler(0, libc::SCHED_IDLE, &param) }).map(|_| ())
}

/// Makes this process undumpable (`PR_SET_DUMPABLE 0`): no process of the
/// same uid may ptrace it or open its sensitive `/proc` entries.
pub fn set_undumpable() -> io::Result<()> {
    // SAFETY: integer arguments only.
    cvt(unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0) }).map(|_| ())
}

/// Makes this process a child subreaper (`PR_SET_CHILD_SUBREAPER`):
/// orphaned descendants are re-parented to it.
pub fn set_child_subreaper() -> io::Result<()> {
    // SAFETY: integer arguments only.
    cvt(unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) }).map(|_| ())
}

/// The credentials the kernel vouches for on a unix socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cred {
    pub pid: i32,
    pub uid: u32,
    pub gid: u32,
}

impl From<libc::ucred> for Cred {
    fn from(c: libc::ucred) -> Cred {
        Cred {
            pid: c.pid,
            uid: c.uid,
            gid: c.gid,
        }
    }
}

/// The credentials of the peer of the connected unix socket `fd`, as of
/// when it connected (`SO_PEERCRED`).
pub fn peer_cred(fd: BorrowedFd<'_>) -> io::Result<Cred> {
    let mut cred = libc::ucred {
        pid: 0,
        uid: 0,
        gid: 0,
    };
    let mut len = std::mem::size_of::<libc::ucred>() as libc::socklen_t;
    // SAFETY: cred and len are valid for writes of the sizes given.
    cvt(unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_PEERCRED,
            (&mut cred as *mut libc::ucred).cast(),
            &mut len,
        )
    })?;
    if len as usize != std::mem::size_of::<libc::ucred>() {
        return Err(io::Error::other("SO_PEERCRED returned a short answer"));
    }
    Ok(cred.into())
}

/// Sets `SO_PASSCRED` on the unix socket `fd`: the kernel attaches the
/// writer's credentials to every message received on it.
pub fn set_passcred(fd: BorrowedFd<'_>) -> io::Result<()> {
    let one: libc::c_int = 1;
    // SAFETY: `one` is a valid c_int for the size given.
    cvt(unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_PASSCRED,
            (&one as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    })
    .map(|_| ())
}

/// One `recvmsg(2)` into `buf` from the unix socket `fd`: the number of
/// bytes read (0 at end of stream) and the `SCM_CREDENTIALS` the kernel
/// attached, if any (the last one, should there be several).
pub fn recv_with_creds(fd: BorrowedFd<'_>, buf: &mut [u8]) -> io::Result<(usize, Option<Cred>)> {
    // Room for one SCM_CREDENTIALS message (u64-aligned).
    let mut control = [0u64; 8];
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    // SAFETY: msghdr is plain data; zeroed is a valid empty header.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr().cast();
    msg.msg_controllen = std::mem::size_of_val(&control) as _;
    // SAFETY: msg points at the live iovec (over `buf`) and control buffer
    // above, both valid for the lengths given.
    let n = unsafe { libc::recvmsg(fd.as_raw_fd(), &mut msg, libc::MSG_CMSG_CLOEXEC) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    let mut got: Option<Cred> = None;
    // SAFETY: the CMSG_* macros walk the control buffer the kernel filled
    // in, bounded by msg_controllen; a credentials message carries one
    // ucred, read unaligned.
    unsafe {
        let mut c = libc::CMSG_FIRSTHDR(&msg);
        while !c.is_null() {
            if (*c).cmsg_level == libc::SOL_SOCKET && (*c).cmsg_type == libc::SCM_CREDENTIALS {
                let cred: libc::ucred = std::ptr::read_unaligned(libc::CMSG_DATA(c).cast());
                got = Some(cred.into());
            }
            c = libc::CMSG_NXTHDR(&msg, c);
        }
    }
    Ok((n as usize, got))
}

/// Writes `data` as the file `path`, atomically: into a new file `tmp` (a
/// stale one removed first; created exclusively, so nothing already there,
/// such as a planted symlink, is followed) with exactly `mode`, synced,
/// then renamed over `path`. A crash leaves either the old file or the new
/// one; on failure `tmp` is removed.
pub fn write_file_atomically(
    path: &std::path::Path,
    tmp: &std::path::Path,
    mode: u32,
    data: &[u8],
) -> io::Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
    let _ = std::fs::remove_file(tmp);
    let written = (|| {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(tmp)?;
        // The umask may have removed bits; set the exact mode.
        f.set_permissions(std::fs::Permissions::from_mode(mode))?;
        f.write_all(data)?;
        f.sync_all()?;
        std::fs::rename(tmp, path)
    })();
    if written.is_err() {
        let _ = std::fs::remove_file(tmp);
    }
    written
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::os::fd::AsFd;
    use std::os::unix::net::UnixStream;

    #[test]
    fn identity_matches_std() {
        assert_eq!(pid() as u32, std::process::id());
        assert!(pgrp() > 0);
        let status = std::fs::read_to_string("/proc/self/status").unwrap();
        let uid_line = status.lines().find(|l| l.starts_with("Uid:")).unwrap();
        let ids: Vec<u32> = uid_line[4..]
            .split_whitespace()
            .map(|v| v.parse().unwrap())
            .collect();
        assert_eq!((ids[0], ids[1]), (uid(), euid()));
    }

    #[test]
    fn credentials_of_a_socket_pair_are_ours() {
        let (mut a, b) = UnixStream::pair().unwrap();
        let c = peer_cred(b.as_fd()).unwrap();
        assert_eq!((c.pid, c.uid, c.gid), (pid(), euid(), egid()));
        set_passcred(b.as_fd()).unwrap();
        a.write_all(b"hi\n").unwrap();
        let mut buf = [0u8; 16];
        let (n, cred) = recv_with_creds(b.as_fd(), &mut buf).unwrap();
        assert_eq!(&buf[..n], b"hi\n");
        assert_eq!(cred.map(|c| c.pid), Some(pid()));
        assert!(!poll_in(b.as_fd(), 0).unwrap());
        a.write_all(b"x").unwrap();
        assert!(poll_in(b.as_fd(), 1000).unwrap());
    }

    #[test]
    fn a_second_exclusive_lock_fails_without_waiting() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("lock");
        let one = std::fs::File::create(&p).unwrap();
        let two = std::fs::File::open(&p).unwrap();
        flock_exclusive(one.as_fd(), Wait::No).unwrap();
        let e = flock_exclusive(two.as_fd(), Wait::No).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::EWOULDBLOCK));
        drop(one);
        flock_exclusive(two.as_fd(), Wait::No).unwrap();
    }
}
