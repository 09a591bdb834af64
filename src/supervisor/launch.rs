//! Starting the supervised command.
//!
//! Control flow (parent = supervisor, child = the future command):
//!
//! ```text
//! parent                                   child (after fork)
//!   prepare argv/envp/filter (allocates)
//!   fork ───────────────────────────────►  reset signal mask and SIGPIPE,
//!                                           the user's umask
//!                                           PDEATHSIG=SIGKILL, own process group
//!                                           no_new_privs
//!                                           close every fd but 0-2 and the two pipes
//!                                           seccomp(FILTER, NEW_LISTENER) → L
//!   read L's number ◄──── socket ─────────  write L's number and whether
//!   pidfd_getfd(child, L)                   WAIT_KILLABLE_RECV was taken
//!                                           (a sendmsg would be notified)
//!   PTRACE_SEIZE(child, TRACE{FORK,VFORK,
//!     CLONE,EXEC}, EXITKILL)
//!   send "go" ────────────── socket ─────►  close L, close socket
//!                                           execve(CMD)   ← notified, judged like any exec
//!   read errno pipe: EOF = exec done        on failure: write errno, _exit(127)
//! ```
//!
//! The child runs only async-signal-safe raw syscalls between `fork` and
//! `execve`: everything that allocates was prepared before the fork, and the
//! parent forks before it starts any thread. Nothing is logged there: what
//! the child found out (the listener flags) goes back to the parent over the
//! socket, and the parent logs it.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};

use super::filter;
use super::sys;

/// Everything the child needs, prepared before `fork`.
pub struct Prepared {
    program: CString,
    argv: Vec<CString>,
    envp: Vec<CString>,
    argv_ptrs: Vec<*const libc::c_char>,
    envp_ptrs: Vec<*const libc::c_char>,
    filter: Vec<libc::sock_filter>,
    /// The command's umask: the user's. The supervisor runs with umask 0
    /// (emulated creates apply each caller's umask themselves), and the
    /// child would otherwise inherit that.
    umask: libc::mode_t,
}

impl Prepared {
    /// The command `program` with `argv` and `envp`, to be started with
    /// umask `umask`.
    pub fn new(
        program: CString,
        argv: Vec<CString>,
        envp: Vec<CString>,
        umask: libc::mode_t,
    ) -> Prepared {
        let mut p = Prepared {
            program,
            argv,
            envp,
            argv_ptrs: Vec::new(),
            envp_ptrs: Vec::new(),
            filter: filter::to_sock_filter(&filter::build()),
            umask,
        };
        p.argv_ptrs = p
            .argv
            .iter()
            .map(|a| a.as_ptr())
            .chain([std::ptr::null()])
            .collect();
        p.envp_ptrs = p
            .envp
            .iter()
            .map(|a| a.as_ptr())
            .chain([std::ptr::null()])
            .collect();
        p
    }
}

/// The started child: its pid, the listener, and the pipe that reports an
/// exec failure.
pub struct Started {
    pub pid: i32,
    pub listener: OwnedFd,
    /// The listener was created with `SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV`
    /// (Linux 5.19); `false`: the kernel refused it and the child fell back
    /// to a listener without it.
    pub wait_killable_recv: bool,
    sock: OwnedFd,
    errpipe: OwnedFd,
}

const PTRACE_OPTIONS: libc::c_int = libc::PTRACE_O_TRACEFORK
    | libc::PTRACE_O_TRACEVFORK
    | libc::PTRACE_O_TRACECLONE
    | libc::PTRACE_O_TRACEEXEC
    | libc::PTRACE_O_EXITKILL;

/// The child's listener: its number and flags byte, read from `sock`, then
/// the descriptor itself, taken with `pidfd_getfd`. The flags byte is 1 when
/// the listener waits killably (`WAIT_KILLABLE_RECV`), 0 when not.
fn take_listener(pid: i32, sock: BorrowedFd<'_>) -> io::Result<(OwnedFd, bool)> {
    let mut num = [0u8; 5];
    let mut got = 0;
    while got < num.len() {
        // SAFETY: reads at most len - got bytes into a local buffer.
        let n = unsafe {
            libc::read(
                sock.as_raw_fd(),
                num[got..].as_mut_ptr().cast(),
                num.len() - got,
            )
        };
        if n < 0 && io::Error::last_os_error().raw_os_error() == Some(libc::EINTR) {
            continue;
        }
        if n <= 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the child ended before handing over its listener",
            ));
        }
        got += n as usize;
    }
    let killable = match num[4] {
        0 => false,
        1 => true,
        other => {
            return Err(io::Error::other(format!(
                "the child handed over its listener with unknown flags {other}"
            )))
        }
    };
    let pidfd = sys::pidfd_open(pid, 0)?;
    let fd = sys::pidfd_getfd(
        pidfd.as_fd(),
        i32::from_ne_bytes([num[0], num[1], num[2], num[3]]),
    )?;
    Ok((fd, killable))
}

/// Forks the child and receives its listener. The caller then starts the
/// notification loop and calls [`Started::release`] from the thread that
/// will be the tracer.
pub fn spawn(p: &Prepared) -> io::Result<Started> {
    let (sock_parent, sock_child) = sys::socketpair()?;
    let (err_read, err_write) = sys::pipe()?;
    // SAFETY: getpid has no preconditions.
    let parent_pid = unsafe { libc::getpid() };
    // SAFETY: the process is single-threaded here (the supervisor forks
    // before starting threads), and the child only calls async-signal-safe
    // functions before exec or _exit.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(io::Error::last_os_error());
    }
    if pid == 0 {
        // SAFETY: in the child; see `child`'s contract.
        unsafe { child(p, parent_pid, sock_child.as_raw_fd(), err_write.as_raw_fd()) }
    }
    drop(sock_child);
    drop(err_write);
    let (listener, wait_killable_recv) = match take_listener(pid, sock_parent.as_fd()) {
        Ok(l) => l,
        Err(e) => {
            // The child failed before installing the filter: reap it.
            let _ = sys::kill(pid, libc::SIGKILL);
            let _ = sys::waitpid(pid, libc::__WALL);
            let mut code = [0u8; 4];
            // SAFETY: reads at most 4 bytes into a local buffer.
            let n = unsafe { libc::read(err_read.as_raw_fd(), code.as_mut_ptr().cast(), 4) };
            if n == 4 {
                let errno = i32::from_ne_bytes(code);
                let why = match errno {
                    // A listener above: another supervisor, or a sandbox
                    // that refuses new listeners (EPERM), or one the kernel
                    // will not nest (EBUSY).
                    libc::EBUSY | libc::EPERM => "; this process already runs under a seccomp user-notify supervisor or a sandbox that refuses a second listener, so the policy cannot be enforced here (`lexecon doctor` tells more)",
                    libc::EINVAL | libc::ENOSYS => "; this kernel lacks seccomp user notification (Linux ≥ 5.19 is needed; `lexecon doctor` tells more)",
                    _ => "",
                };
                return Err(io::Error::new(
                    io::Error::from_raw_os_error(errno).kind(),
                    format!(
                        "installing the seccomp filter in the child failed: {}{why}",
                        io::Error::from_raw_os_error(errno)
                    ),
                ));
            }
            return Err(e);
        }
    };
    Ok(Started {
        pid,
        listener,
        wait_killable_recv,
        sock: sock_parent,
        errpipe: err_read,
    })
}

impl Started {
    /// Attaches ptrace (from the calling thread, which becomes the tracer),
    /// lets the child exec, and waits for the outcome of that exec: `Ok(())`
    /// once the command's image is in place, `Err(errno)` if it could not be
    /// executed (the child has exited).
    pub fn release(self) -> io::Result<Result<(), i32>> {
        sys::ptrace(libc::PTRACE_SEIZE, self.pid, PTRACE_OPTIONS as usize)?;
        let go = [1u8];
        // SAFETY: writes one byte from a local buffer.
        let n = unsafe { libc::write(self.sock.as_raw_fd(), go.as_ptr().cast(), 1) };
        if n != 1 {
            return Err(io::Error::last_os_error());
        }
        drop(self.sock);
        let mut code = [0u8; 4];
        let n = sys::retry(|| {
            // SAFETY: reads at most 4 bytes into a local buffer.
            let n = unsafe { libc::read(self.errpipe.as_raw_fd(), code.as_mut_ptr().cast(), 4) };
            if n < 0 {
                Err(io::Error::last_os_error())
            } else {
                Ok(n)
            }
        })?;
        if n == 4 {
            Ok(Err(i32::from_ne_bytes(code)))
        } else {
            Ok(Ok(()))
        }
    }
}

/// The child side. Never returns.
///
/// # Safety
/// Must be called only in the child right after `fork` of a single-threaded
/// process; uses only async-signal-safe calls and memory prepared before the
/// fork.
unsafe fn child(p: &Prepared, parent_pid: i32, sock: RawFd, errpipe: RawFd) -> ! {
    let fail = |errno: i32| -> ! {
        let bytes = errno.to_ne_bytes();
        // SAFETY: async-signal-safe write of a local buffer, then _exit.
        unsafe {
            libc::write(errpipe, bytes.as_ptr().cast(), 4);
            libc::_exit(127)
        }
    };
    let last_errno = || {
        io::Error::last_os_error()
            .raw_os_error()
            .unwrap_or(libc::EIO)
    };
    // SAFETY: each call below is an async-signal-safe syscall wrapper on
    // memory owned by this function or prepared before the fork.
    unsafe {
        let mut empty: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut empty);
        libc::sigprocmask(libc::SIG_SETMASK, &empty, std::ptr::null_mut());
        // The Rust runtime ignores SIGPIPE; programs expect the default.
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
        // Ignored by the supervisor only (see `supervisor::run`).
        libc::signal(libc::SIGIO, libc::SIG_DFL);
        libc::signal(libc::SIGTTOU, libc::SIG_DFL);
        libc::signal(libc::SIGTTIN, libc::SIG_DFL);
        // The supervisor's umask is 0; the command gets the user's. The
        // child has its own copy of the umask since the fork, so this
        // cannot race with the supervisor's threads.
        libc::umask(p.umask);
        if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0) != 0 {
            fail(last_errno());
        }
        if libc::getppid() != parent_pid {
            // The supervisor died before we set PDEATHSIG.
            libc::_exit(125);
        }
        // Own process group: `kill(0, …)` from the tree stays in the tree.
        libc::setpgid(0, 0);
        if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 {
            fail(last_errno());
        }
        // Close every inherited fd except stdio and our two channels.
        let (lo, hi) = if sock < errpipe {
            (sock, errpipe)
        } else {
            (errpipe, sock)
        };
        close_range(3, lo - 1);
        close_range(lo + 1, hi - 1);
        close_range(hi + 1, u32::MAX as i32);

        let prog = libc::sock_fprog {
            len: p.filter.len() as u16,
            filter: p.filter.as_ptr() as *mut libc::sock_filter,
        };
        let flags =
            libc::SECCOMP_FILTER_FLAG_NEW_LISTENER | libc::SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV;
        let mut listener = libc::syscall(
            libc::SYS_seccomp,
            libc::SECCOMP_SET_MODE_FILTER,
            flags,
            &prog as *const libc::sock_fprog,
        );
        let mut killable = 1u8;
        if listener < 0 && last_errno() == libc::EINVAL {
            killable = 0;
            // Kernels before 5.19 lack WAIT_KILLABLE_RECV.
            listener = libc::syscall(
                libc::SYS_seccomp,
                libc::SECCOMP_SET_MODE_FILTER,
                libc::SECCOMP_FILTER_FLAG_NEW_LISTENER,
                &prog as *const libc::sock_fprog,
            );
        }
        if listener < 0 {
            fail(last_errno());
        }
        let listener = listener as RawFd;
        // The supervisor made itself non-dumpable before the fork and the
        // child inherited it; without CAP_SYS_PTRACE the supervisor could
        // not PTRACE_SEIZE a non-dumpable child. Dumpable again from here
        // until execve, which sets it from the new program anyway.
        if libc::prctl(libc::PR_SET_DUMPABLE, 1, 0, 0, 0) != 0 {
            fail(last_errno());
        }
        // The listener's number goes over `sock` with a plain write: the
        // filter is in force already and notifies every `sendmsg` (which
        // nobody could answer yet). The supervisor takes the listener with
        // `pidfd_getfd`; it stays open here until the supervisor says go.
        let n = listener.to_ne_bytes();
        let num = [n[0], n[1], n[2], n[3], killable];
        if libc::write(sock, num.as_ptr().cast(), num.len()) != num.len() as isize {
            fail(last_errno());
        }
        // Wait until the supervisor has attached.
        let mut go = [0u8; 1];
        loop {
            let n = libc::read(sock, go.as_mut_ptr().cast(), 1);
            if n == 1 {
                break;
            }
            if n < 0 && last_errno() == libc::EINTR {
                continue;
            }
            libc::_exit(125);
        }
        libc::close(listener);
        libc::close(sock);
        libc::execve(
            p.program.as_ptr(),
            p.argv_ptrs.as_ptr(),
            p.envp_ptrs.as_ptr(),
        );
        fail(last_errno())
    }
}

/// `close_range(first, last)`, ignoring empty ranges.
///
/// # Safety
/// Closes descriptors: the caller must own every fd in the range.
unsafe fn close_range(first: RawFd, last: RawFd) {
    if first <= last {
        // SAFETY: no memory arguments; ownership is the caller's contract.
        unsafe {
            libc::syscall(libc::SYS_close_range, first as u32, last as u32, 0u32);
        }
    }
}
