//! Thin, safe wrappers over the raw kernel interfaces the supervisor uses:
//! seccomp (filter installation and the user-notify ioctls), `openat2`,
//! `process_vm_readv`, ptrace, and fd passing over a unix socket.
//!
//! `unsafe` code is allowed only here and in the other kernel-wrapping
//! modules of the supervisor: [`super::netsys`] (sockets), [`super::creds`]
//! (credentials and pidfd info), [`super::fileops`] and [`super::pathops`]
//! (the emulated file changes), [`super::launch`] (the code between `fork`
//! and `exec`) and [`super::codemap`] (`PROCMAP_QUERY`); the crate denies it
//! everywhere else. Raw fds are wrapped into [`OwnedFd`] as soon as the
//! kernel returns them.

use std::ffi::CStr;
use std::io;
use std::mem;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

/// `AUDIT_ARCH_X86_64`: `EM_X86_64 | __AUDIT_ARCH_64BIT | __AUDIT_ARCH_LE`.
pub const AUDIT_ARCH_X86_64: u32 = 0xC000_003E;
/// Syscall numbers with this bit set are x32 ABI calls.
pub const X32_SYSCALL_BIT: u32 = 0x4000_0000;
/// `SECCOMP_USER_NOTIF_FD_SYNC_WAKE_UP` (Linux 6.6): wake the supervisor on
/// the CPU of the notifying thread.
pub const SECCOMP_USER_NOTIF_FD_SYNC_WAKE_UP: u64 = 1;

fn cvt(ret: libc::c_long) -> io::Result<libc::c_long> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

fn cvt_int(ret: libc::c_int) -> io::Result<libc::c_int> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

/// Retries a call while it fails with `EINTR`.
pub fn retry<T>(mut f: impl FnMut() -> io::Result<T>) -> io::Result<T> {
    loop {
        match f() {
            Err(e) if e.raw_os_error() == Some(libc::EINTR) => continue,
            other => return other,
        }
    }
}

/// A user-notify listener fd. Closed on drop; when the last copy closes, the
/// kernel answers every pending and future notification with `ENOSYS`.
#[derive(Debug)]
pub struct Listener {
    fd: OwnedFd,
}

/// One notification: the raw `seccomp_notif`.
#[derive(Clone, Copy)]
pub struct Notif {
    pub id: u64,
    /// Thread id of the caller, in the supervisor's pid namespace.
    pub pid: u32,
    pub nr: i32,
    pub arch: u32,
    pub args: [u64; 6],
}

impl Listener {
    pub fn from_fd(fd: OwnedFd) -> Listener {
        Listener { fd }
    }

    pub fn as_fd(&self) -> BorrowedFd<'_> {
        // SAFETY: the listener owns `fd` for its whole lifetime; the borrow
        // cannot outlive `self`.
        unsafe { BorrowedFd::borrow_raw(self.fd.as_raw_fd()) }
    }

    /// Asks the kernel to wake the supervisor on the notifying thread's CPU
    /// (`SECCOMP_USER_NOTIF_FD_SYNC_WAKE_UP`). `Ok(false)` on kernels that
    /// lack the flag.
    pub fn set_sync_wakeup(&self) -> io::Result<bool> {
        let flags: u64 = SECCOMP_USER_NOTIF_FD_SYNC_WAKE_UP;
        // SAFETY: SET_FLAGS takes the flags by value in the argument.
        let ret = unsafe {
            libc::ioctl(
                self.fd.as_raw_fd(),
                libc::SECCOMP_IOCTL_NOTIF_SET_FLAGS,
                flags,
            )
        };
        match cvt_int(ret) {
            Ok(_) => Ok(true),
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Receives one notification (blocking). `ENOENT` means the caller went
    /// away between the wake-up and the receive: the caller retries.
    pub fn recv(&self) -> io::Result<Notif> {
        // SAFETY: seccomp_notif is plain old data; all-zero is a valid value
        // and the kernel requires the buffer zeroed.
        let mut n: libc::seccomp_notif = unsafe { mem::zeroed() };
        // SAFETY: RECV writes one seccomp_notif into the buffer we own.
        let ret = unsafe {
            libc::ioctl(
                self.fd.as_raw_fd(),
                libc::SECCOMP_IOCTL_NOTIF_RECV,
                &mut n as *mut libc::seccomp_notif,
            )
        };
        cvt_int(ret)?;
        Ok(Notif {
            id: n.id,
            pid: n.pid,
            nr: n.data.nr,
            arch: n.data.arch,
            args: n.data.args,
        })
    }

    /// Whether notification `id` is still pending (its caller still waits).
    /// Must be checked after every read of the caller's memory or `/proc`
    /// entries and before acting on what was read.
    pub fn id_valid(&self, id: u64) -> bool {
        let mut id = id;
        // SAFETY: ID_VALID reads one u64 from the pointer.
        let ret = unsafe {
            libc::ioctl(
                self.fd.as_raw_fd(),
                libc::SECCOMP_IOCTL_NOTIF_ID_VALID,
                &mut id as *mut u64,
            )
        };
        ret == 0
    }

    fn send(&self, resp: &mut libc::seccomp_notif_resp) -> io::Result<()> {
        // SAFETY: SEND reads one seccomp_notif_resp from the pointer.
        let ret = unsafe {
            libc::ioctl(
                self.fd.as_raw_fd(),
                libc::SECCOMP_IOCTL_NOTIF_SEND,
                resp as *mut libc::seccomp_notif_resp,
            )
        };
        cvt_int(ret).map(drop)
    }

    /// Fails the call with `errno`.
    pub fn deny(&self, id: u64, errno: i32) -> io::Result<()> {
        let mut resp = libc::seccomp_notif_resp {
            id,
            val: 0,
            error: -errno,
            flags: 0,
        };
        self.send(&mut resp)
    }

    /// Completes the call with return value `val` without running it.
    pub fn reply(&self, id: u64, val: i64) -> io::Result<()> {
        let mut resp = libc::seccomp_notif_resp {
            id,
            val,
            error: 0,
            flags: 0,
        };
        self.send(&mut resp)
    }

    /// Lets the kernel run the call as the caller asked. Only for calls whose
    /// outcome is verified afterwards (exec) — never a decision on its own.
    pub fn continue_call(&self, id: u64) -> io::Result<()> {
        let mut resp = libc::seccomp_notif_resp {
            id,
            val: 0,
            error: 0,
            flags: libc::SECCOMP_USER_NOTIF_FLAG_CONTINUE as u32,
        };
        self.send(&mut resp)
    }

    /// Installs `fd` in the caller and completes its call with the new fd
    /// number as return value, atomically (`ADDFD` + `SEND`).
    pub fn inject_fd_and_reply(
        &self,
        id: u64,
        fd: BorrowedFd<'_>,
        cloexec: bool,
    ) -> io::Result<i32> {
        let addfd = libc::seccomp_notif_addfd {
            id,
            flags: libc::SECCOMP_ADDFD_FLAG_SEND as u32,
            srcfd: fd.as_raw_fd() as u32,
            newfd: 0,
            newfd_flags: if cloexec { libc::O_CLOEXEC as u32 } else { 0 },
        };
        // SAFETY: ADDFD reads one seccomp_notif_addfd from the pointer.
        let ret = unsafe {
            libc::ioctl(
                self.fd.as_raw_fd(),
                libc::SECCOMP_IOCTL_NOTIF_ADDFD,
                &addfd as *const libc::seccomp_notif_addfd,
            )
        };
        cvt_int(ret)
    }
}

/// `struct open_how` for `openat2`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct OpenHow {
    pub flags: u64,
    pub mode: u64,
    pub resolve: u64,
}

/// `openat2(dirfd, path, how)`. The returned fd always has `O_CLOEXEC` in
/// the supervisor (it is ours until injected).
pub fn openat2(dirfd: BorrowedFd<'_>, path: &CStr, how: &OpenHow) -> io::Result<OwnedFd> {
    // SAFETY: open_how is plain old data.
    let mut raw: libc::open_how = unsafe { mem::zeroed() };
    raw.flags = how.flags | libc::O_CLOEXEC as u64;
    raw.mode = how.mode;
    raw.resolve = how.resolve;
    retry(|| {
        // SAFETY: path is NUL-terminated; raw is a valid open_how of the size
        // we pass.
        let ret = unsafe {
            libc::syscall(
                libc::SYS_openat2,
                dirfd.as_raw_fd(),
                path.as_ptr(),
                &raw as *const libc::open_how,
                mem::size_of::<libc::open_how>(),
            )
        };
        // SAFETY: on success the kernel returned a new fd that nothing else owns.
        cvt(ret).map(|fd| unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
    })
}

/// `openat` with an owned result (`O_CLOEXEC` added).
pub fn openat(dirfd: BorrowedFd<'_>, path: &CStr, flags: i32, mode: u32) -> io::Result<OwnedFd> {
    retry(|| {
        // SAFETY: path is NUL-terminated.
        let fd = unsafe {
            libc::openat(
                dirfd.as_raw_fd(),
                path.as_ptr(),
                flags | libc::O_CLOEXEC,
                mode as libc::c_uint,
            )
        };
        // SAFETY: a new fd that nothing else owns.
        cvt_int(fd).map(|fd| unsafe { OwnedFd::from_raw_fd(fd) })
    })
}

/// `fstat` of an fd.
pub fn fstat(fd: BorrowedFd<'_>) -> io::Result<libc::stat> {
    // SAFETY: stat is plain old data, fully written by a successful fstat.
    let mut st: libc::stat = unsafe { mem::zeroed() };
    // SAFETY: valid fd and a buffer of the right type.
    cvt_int(unsafe { libc::fstat(fd.as_raw_fd(), &mut st) })?;
    Ok(st)
}

/// The filesystem a file is on, from `fstatfs`: its type (`f_type`, a
/// magic number) and its identity (`f_fsid`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Filesystem {
    pub kind: i64,
    pub fsid: u64,
}

/// `fstatfs(fd)`: the filesystem the file open as `fd` is on.
pub fn fstatfs(fd: BorrowedFd<'_>) -> io::Result<Filesystem> {
    // SAFETY: statfs is plain old data, fully written by a successful fstatfs.
    let mut st: libc::statfs = unsafe { mem::zeroed() };
    // SAFETY: valid fd and a buffer of the right type.
    cvt_int(unsafe { libc::fstatfs(fd.as_raw_fd(), &mut st) })?;
    // SAFETY: fsid_t is two C ints (its fields are private in libc), plain
    // old data of the same size as [i32; 2].
    let words: [i32; 2] = unsafe { mem::transmute::<libc::fsid_t, [i32; 2]>(st.f_fsid) };
    Ok(Filesystem {
        kind: st.f_type as i64,
        fsid: (u64::from(words[0] as u32) << 32) | u64::from(words[1] as u32),
    })
}

/// `fstatat(dirfd, path, AT_SYMLINK_NOFOLLOW)`: the `lstat` of a name in a
/// directory, without opening it.
pub fn lstatat(dirfd: BorrowedFd<'_>, path: &CStr) -> io::Result<libc::stat> {
    // SAFETY: stat is plain old data, fully written by a successful fstatat.
    let mut st: libc::stat = unsafe { mem::zeroed() };
    // SAFETY: valid fd, NUL-terminated path and a buffer of the right type.
    cvt_int(unsafe {
        libc::fstatat(
            dirfd.as_raw_fd(),
            path.as_ptr(),
            &mut st,
            libc::AT_SYMLINK_NOFOLLOW,
        )
    })?;
    Ok(st)
}

/// `fstatat(dirfd, path, 0)`: the `stat` of what a name leads to, symlinks
/// (and procfs magic links) followed, without opening it.
pub fn statat(dirfd: BorrowedFd<'_>, path: &CStr) -> io::Result<libc::stat> {
    // SAFETY: stat is plain old data, fully written by a successful fstatat.
    let mut st: libc::stat = unsafe { mem::zeroed() };
    // SAFETY: valid fd, NUL-terminated path and a buffer of the right type.
    cvt_int(unsafe { libc::fstatat(dirfd.as_raw_fd(), path.as_ptr(), &mut st, 0) })?;
    Ok(st)
}

/// `readlinkat(dirfd, path)`; `path` may be empty to read the link an
/// `O_PATH|O_NOFOLLOW` fd refers to.
pub fn readlinkat(dirfd: BorrowedFd<'_>, path: &CStr) -> io::Result<Vec<u8>> {
    let mut buf = vec![0u8; 256];
    loop {
        // SAFETY: buf is writable for buf.len() bytes; path is NUL-terminated.
        let n = unsafe {
            libc::readlinkat(
                dirfd.as_raw_fd(),
                path.as_ptr(),
                buf.as_mut_ptr().cast(),
                buf.len(),
            )
        };
        let n = cvt(n as libc::c_long)? as usize;
        if n < buf.len() {
            buf.truncate(n);
            return Ok(buf);
        }
        if buf.len() >= 1 << 16 {
            return Err(io::Error::from_raw_os_error(libc::ENAMETOOLONG));
        }
        buf.resize(buf.len() * 4, 0);
    }
}

/// Reads from another process's memory (`process_vm_readv`). Returns how
/// many bytes were read; a short read means the next byte is unmapped.
pub fn read_process_memory(pid: i32, addr: u64, buf: &mut [u8]) -> io::Result<usize> {
    let local = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    let remote = libc::iovec {
        iov_base: addr as usize as *mut libc::c_void,
        iov_len: buf.len(),
    };
    // SAFETY: local describes memory we own; the remote range is only read
    // by the kernel, which checks it against the target's mappings.
    let n = unsafe { libc::process_vm_readv(pid, &local, 1, &remote, 1, 0) };
    cvt(n as libc::c_long).map(|n| n as usize)
}

/// Sends `fd` over a unix socket with `SCM_RIGHTS`.
pub fn send_fd(sock: BorrowedFd<'_>, fd: RawFd) -> io::Result<()> {
    let mut byte = [0u8; 1];
    let mut iov = libc::iovec {
        iov_base: byte.as_mut_ptr().cast(),
        iov_len: 1,
    };
    let mut cmsg_buf = [0u64; 4]; // aligned, large enough for one fd
                                  // SAFETY: msghdr is plain old data; zero is a valid start.
    let mut msg: libc::msghdr = unsafe { mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = cmsg_buf.as_mut_ptr().cast();
    // SAFETY: CMSG_SPACE is a pure computation.
    msg.msg_controllen = unsafe { libc::CMSG_SPACE(mem::size_of::<RawFd>() as u32) } as _;
    // SAFETY: msg_control points at a buffer of msg_controllen bytes, so the
    // first header and its data fit.
    unsafe {
        let cmsg = libc::CMSG_FIRSTHDR(&msg);
        (*cmsg).cmsg_level = libc::SOL_SOCKET;
        (*cmsg).cmsg_type = libc::SCM_RIGHTS;
        (*cmsg).cmsg_len = libc::CMSG_LEN(mem::size_of::<RawFd>() as u32) as _;
        std::ptr::write_unaligned(libc::CMSG_DATA(cmsg).cast::<RawFd>(), fd);
    }
    // SAFETY: msg describes valid buffers for the duration of the call.
    let ret = unsafe { libc::sendmsg(sock.as_raw_fd(), &msg, libc::MSG_NOSIGNAL) };
    cvt(ret as libc::c_long).map(drop)
}

/// Receives one fd sent with [`send_fd`].
pub fn recv_fd(sock: BorrowedFd<'_>) -> io::Result<OwnedFd> {
    let mut byte = [0u8; 1];
    let mut iov = libc::iovec {
        iov_base: byte.as_mut_ptr().cast(),
        iov_len: 1,
    };
    let mut cmsg_buf = [0u64; 4];
    // SAFETY: msghdr is plain old data.
    let mut msg: libc::msghdr = unsafe { mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = cmsg_buf.as_mut_ptr().cast();
    msg.msg_controllen = mem::size_of_val(&cmsg_buf) as _;
    let n = retry(|| {
        // SAFETY: msg describes valid buffers for the duration of the call.
        let n = unsafe { libc::recvmsg(sock.as_raw_fd(), &mut msg, libc::MSG_CMSG_CLOEXEC) };
        cvt(n as libc::c_long)
    })?;
    if n == 0 {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "the child closed the socket before sending the seccomp listener",
        ));
    }
    // SAFETY: the kernel filled msg_control; CMSG_FIRSTHDR checks bounds.
    unsafe {
        let cmsg = libc::CMSG_FIRSTHDR(&msg);
        if cmsg.is_null()
            || (*cmsg).cmsg_level != libc::SOL_SOCKET
            || (*cmsg).cmsg_type != libc::SCM_RIGHTS
        {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "no file descriptor in the child's message",
            ));
        }
        let fd = std::ptr::read_unaligned(libc::CMSG_DATA(cmsg).cast::<RawFd>());
        Ok(OwnedFd::from_raw_fd(fd))
    }
}

/// `ptrace(request, pid, 0, data)`. The request is taken as glibc and musl
/// spell its type (`c_uint`, `c_int`) and passed to the raw syscall.
pub fn ptrace(request: impl Into<i64>, pid: i32, data: usize) -> io::Result<libc::c_long> {
    // SAFETY: the requests used by this crate take no pointer in `addr` and
    // an integer (options, signal) in `data`; none is a PEEK request, whose
    // result the libc wrapper would store differently.
    let ret = unsafe { libc::syscall(libc::SYS_ptrace, request.into(), pid, 0usize, data) };
    cvt(ret)
}

/// `PTRACE_GETEVENTMSG`.
pub fn ptrace_event_msg(pid: i32) -> io::Result<u64> {
    let mut msg: libc::c_ulong = 0;
    // SAFETY: GETEVENTMSG writes one unsigned long to the pointer in data.
    let ret = unsafe {
        libc::ptrace(
            libc::PTRACE_GETEVENTMSG,
            pid,
            0usize,
            &mut msg as *mut libc::c_ulong,
        )
    };
    cvt(ret)?;
    Ok(msg as u64)
}

/// `waitpid` that retries on `EINTR`. Returns `(pid, status)`.
pub fn waitpid(pid: i32, flags: i32) -> io::Result<(i32, i32)> {
    retry(|| {
        let mut status = 0;
        // SAFETY: status is a valid out pointer.
        let ret = unsafe { libc::waitpid(pid, &mut status, flags) };
        cvt_int(ret).map(|p| (p, status))
    })
}

/// `kill(pid, sig)`.
pub fn kill(pid: i32, sig: i32) -> io::Result<()> {
    // SAFETY: kill has no memory arguments.
    cvt_int(unsafe { libc::kill(pid, sig) }).map(drop)
}

/// A pipe with both ends close-on-exec: `(read, write)`.
pub fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0; 2];
    // SAFETY: fds is a valid out array of two ints.
    cvt_int(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) })?;
    // SAFETY: both fds are new and owned by nobody else.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// A connected pair of unix stream sockets, both close-on-exec.
pub fn socketpair() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0; 2];
    // SAFETY: fds is a valid out array of two ints.
    cvt_int(unsafe {
        libc::socketpair(
            libc::AF_UNIX,
            libc::SOCK_STREAM | libc::SOCK_CLOEXEC,
            0,
            fds.as_mut_ptr(),
        )
    })?;
    // SAFETY: both fds are new and owned by nobody else.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// An eventfd (close-on-exec, non-blocking), used to wake a polling thread.
pub fn eventfd() -> io::Result<OwnedFd> {
    // SAFETY: no memory arguments.
    let fd = cvt_int(unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) })?;
    // SAFETY: a new fd owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Writes a counter increment to an eventfd.
pub fn eventfd_signal(fd: BorrowedFd<'_>) -> io::Result<()> {
    let one: u64 = 1;
    // SAFETY: writes 8 bytes from a local.
    let n = unsafe { libc::write(fd.as_raw_fd(), (&one as *const u64).cast(), 8) };
    cvt(n as libc::c_long).map(drop)
}

/// A non-blocking `signalfd` for `set` (the signals must be blocked in every
/// thread, or they are delivered instead of queued for the fd).
pub fn signalfd(set: &libc::sigset_t) -> io::Result<OwnedFd> {
    // SAFETY: `set` is a valid sigset_t for the duration of the call.
    let fd = cvt_int(unsafe { libc::signalfd(-1, set, libc::SFD_CLOEXEC | libc::SFD_NONBLOCK) })?;
    // SAFETY: a new fd owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Reads one signal from a non-blocking signalfd: `Ok(None)` when none is
/// pending.
pub fn signalfd_read(fd: BorrowedFd<'_>) -> io::Result<Option<i32>> {
    // SAFETY: signalfd_siginfo is plain old data; all-zero is valid.
    let mut info: libc::signalfd_siginfo = unsafe { mem::zeroed() };
    let size = mem::size_of::<libc::signalfd_siginfo>();
    let n = retry(|| {
        // SAFETY: reads at most `size` bytes into `info`, which we own.
        let n = unsafe {
            libc::read(
                fd.as_raw_fd(),
                (&mut info as *mut libc::signalfd_siginfo).cast(),
                size,
            )
        };
        cvt(n as libc::c_long)
    });
    match n {
        Ok(n) if n as usize == size => Ok(Some(info.ssi_signo as i32)),
        Ok(_) => Ok(None),
        Err(e) if e.raw_os_error() == Some(libc::EAGAIN) => Ok(None),
        Err(e) => Err(e),
    }
}

/// `poll` on a set of fds for readability; returns the `revents` of each.
pub fn poll_readable(fds: &[BorrowedFd<'_>], timeout_ms: i32) -> io::Result<Vec<i16>> {
    let mut pfds: Vec<libc::pollfd> = fds
        .iter()
        .map(|fd| libc::pollfd {
            fd: fd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        })
        .collect();
    retry(|| {
        // SAFETY: pfds is a valid array of pfds.len() entries.
        let n = unsafe { libc::poll(pfds.as_mut_ptr(), pfds.len() as libc::nfds_t, timeout_ms) };
        cvt_int(n)
    })?;
    Ok(pfds.iter().map(|p| p.revents).collect())
}

/// Whether the kernel supports a seccomp return action
/// (`SECCOMP_GET_ACTION_AVAIL`), e.g. `SECCOMP_RET_USER_NOTIF`.
pub fn seccomp_action_available(action: u32) -> io::Result<()> {
    // SAFETY: GET_ACTION_AVAIL reads one u32 from the pointer.
    let r = unsafe {
        libc::syscall(
            libc::SYS_seccomp,
            libc::SECCOMP_GET_ACTION_AVAIL,
            0,
            &action as *const u32,
        )
    };
    cvt(r).map(|_| ())
}

/// The sizes of the user-notification structures the kernel uses
/// (`SECCOMP_GET_NOTIF_SIZES`): notification, response, data.
pub fn seccomp_notif_sizes() -> io::Result<(u16, u16, u16)> {
    let mut sizes = [0u16; 3];
    // SAFETY: GET_NOTIF_SIZES writes three u16 into the buffer.
    let r = unsafe {
        libc::syscall(
            libc::SYS_seccomp,
            libc::SECCOMP_GET_NOTIF_SIZES,
            0,
            sizes.as_mut_ptr(),
        )
    };
    cvt(r).map(|_| (sizes[0], sizes[1], sizes[2]))
}

/// The kernel's release (`uname -r`).
pub fn kernel_release() -> String {
    // SAFETY: utsname is plain old data; uname fills it.
    let mut u: libc::utsname = unsafe { std::mem::zeroed() };
    // SAFETY: a valid pointer to a utsname.
    if unsafe { libc::uname(&mut u) } != 0 {
        return String::new();
    }
    let bytes: Vec<u8> = u
        .release
        .iter()
        .take_while(|&&c| c != 0)
        .map(|&c| c as u8)
        .collect();
    String::from_utf8_lossy(&bytes).into_owned()
}

/// The major and minor version of a kernel release (`6.8.0-41-generic` →
/// `(6, 8)`).
pub fn release_version(release: &str) -> Option<(u32, u32)> {
    let mut it = release.split(|c: char| !c.is_ascii_digit());
    Some((it.next()?.parse().ok()?, it.next()?.parse().ok()?))
}

/// Restores the default action of `SIGPIPE` (the Rust runtime ignores it):
/// a reporting command whose output goes to a pipe that closed (`| head`)
/// ends quietly, as other command-line tools do, instead of failing on the
/// write. Not for the supervisor, which must outlive a closed stderr.
pub fn default_sigpipe() {
    // SAFETY: sets a signal disposition; no handler runs Rust code.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

/// The calling thread's id.
pub fn gettid() -> i32 {
    // SAFETY: no arguments.
    unsafe { libc::gettid() }
}

/// `pidfd_open(pid, flags)`.
pub fn pidfd_open(pid: i32, flags: u32) -> io::Result<OwnedFd> {
    // SAFETY: integer arguments only.
    let fd = cvt(unsafe { libc::syscall(libc::SYS_pidfd_open, pid, flags) })?;
    // SAFETY: a new fd owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

/// `pidfd_getfd(pidfd, target, 0)`: a descriptor of this process for the
/// same open file description as `target` in the process `pidfd` names
/// (close-on-exec).
pub fn pidfd_getfd(pidfd: BorrowedFd<'_>, target: i32) -> io::Result<OwnedFd> {
    // SAFETY: integer arguments only.
    let fd = cvt(unsafe { libc::syscall(libc::SYS_pidfd_getfd, pidfd.as_raw_fd(), target, 0) })?;
    // SAFETY: a new fd owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

/// The file status flags of an open file description (`F_GETFL`).
pub fn getfl(fd: BorrowedFd<'_>) -> io::Result<i32> {
    // SAFETY: F_GETFL only reads the flags of a valid fd.
    cvt_int(unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GETFL) })
}

/// Whether `fd` is a terminal.
pub fn isatty(fd: BorrowedFd<'_>) -> bool {
    // SAFETY: isatty only queries a valid fd (TCGETS).
    unsafe { libc::isatty(fd.as_raw_fd()) == 1 }
}

/// One `write(2)`: the number of bytes written (no retry on a short write).
pub fn write(fd: BorrowedFd<'_>, buf: &[u8]) -> io::Result<usize> {
    retry(|| {
        // SAFETY: buf is valid for buf.len() bytes.
        let n = unsafe { libc::write(fd.as_raw_fd(), buf.as_ptr().cast(), buf.len()) };
        cvt(n as libc::c_long).map(|n| n as usize)
    })
}

/// One `send(2)` that never waits and raises no `SIGPIPE`.
pub fn send_nowait(fd: BorrowedFd<'_>, buf: &[u8]) -> io::Result<usize> {
    retry(|| {
        // SAFETY: buf is valid for buf.len() bytes.
        let n = unsafe {
            libc::send(
                fd.as_raw_fd(),
                buf.as_ptr().cast(),
                buf.len(),
                libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL,
            )
        };
        cvt(n as libc::c_long).map(|n| n as usize)
    })
}

/// `AT_FDCWD` as a descriptor: the *at calls resolve relative paths from the
/// current directory.
pub fn at_fdcwd() -> BorrowedFd<'static> {
    // SAFETY: AT_FDCWD is a valid dirfd value for the *at family for the
    // whole life of the process; it is never closed.
    unsafe { BorrowedFd::borrow_raw(libc::AT_FDCWD) }
}

/// A shared, writable mapping of the first `len` bytes of a file (for tests
/// of what writes through a mapping change). Unmapped on drop.
#[cfg(test)]
pub struct SharedMapping {
    addr: std::ptr::NonNull<u8>,
    len: usize,
}

#[cfg(test)]
impl SharedMapping {
    pub fn new(fd: BorrowedFd<'_>, len: usize) -> io::Result<SharedMapping> {
        // SAFETY: a fresh mapping chosen by the kernel; nothing of ours is
        // overlapped (no MAP_FIXED).
        let addr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                fd.as_raw_fd(),
                0,
            )
        };
        if addr == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let addr = std::ptr::NonNull::new(addr.cast()).ok_or_else(|| io::Error::other("null"))?;
        Ok(SharedMapping { addr, len })
    }

    /// Writes one byte at `offset` (checked against the length).
    pub fn set(&mut self, offset: usize, byte: u8) {
        assert!(offset < self.len, "offset {offset} outside the mapping");
        // SAFETY: offset is inside the mapping, which is writable and lives
        // until drop; `&mut self` excludes other writers of ours.
        unsafe { self.addr.as_ptr().add(offset).write_volatile(byte) };
    }
}

#[cfg(test)]
impl Drop for SharedMapping {
    fn drop(&mut self) {
        // SAFETY: unmaps exactly the mapping made in `new`, once.
        unsafe { libc::munmap(self.addr.as_ptr().cast(), self.len) };
    }
}
