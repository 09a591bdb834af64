//! The seccomp user-notify supervisor: runs a command with every exec and
//! open of its whole process tree paused, judged and answered.
//!
//! It knows nothing of policies or ledgers: it asks a [`Judge`] and carries
//! out the [`Ruling`]. Parts, one idea each:
//!
//! - [`filter`]: the BPF program (arch check, routes, hard denials);
//! - [`launch`]: fork, child set-up, handing over the listener;
//! - [`loader`]: the dynamic loader run as a program, and what it runs;
//! - [`decode`]: notification → request, capped reads of tracee memory;
//! - [`resolve`]: paths resolved as the kernel would for the caller;
//! - [`notify`]: the notification loop and the answers (emulated opens);
//! - [`pathops`]: unlink, rename, link, truncate, judged and performed;
//! - [`fileops`]: mkdir, mknod, symlink and metadata changes, likewise;
//! - [`codemap`]: files mapped executable, judged as loading a program;
//! - [`net`]: connect, bind, listen and sends with an address, judged and
//!   performed on the caller's own socket; DNS queries observed, resolved
//!   by the supervisor itself, and the names bound to addresses;
//! - [`netsys`]: the socket calls it needs;
//! - [`trace`]: ptrace for exec confirmation, containment and reaping;
//! - [`procfs`]: what is read from `/proc`, and program identities;
//! - [`lasting`]: which files' hashes may be kept across runs;
//! - [`creds`]: opening with the caller's credentials when run as root;
//! - [`privilege`]: whether the command would start as root or with
//!   capabilities;
//! - [`tell`]: a line for a caller, written to its stderr without waiting;
//! - [`sys`]: the raw kernel interfaces.
//!
//! Threads: the calling thread forks the command and becomes the tracer;
//! one thread serves notifications; one forwards SIGINT/SIGTERM/SIGHUP/
//! SIGQUIT to the command's process group and calls [`Judge::tick`].

#[allow(unsafe_code)]
pub mod codemap;
#[allow(unsafe_code)]
pub mod creds;
pub mod decode;
pub mod elf;
#[allow(unsafe_code)]
pub mod fileops;
pub mod filter;
pub mod lasting;
#[allow(unsafe_code)]
pub mod launch;
pub mod loader;
pub mod net;
#[allow(unsafe_code)]
pub mod netsys;
pub mod notify;
#[allow(unsafe_code)]
pub mod pathops;
pub mod prehash;
pub mod privilege;
pub mod procfs;
pub mod resolve;
pub mod spin;
#[allow(unsafe_code)]
pub mod sys;
pub mod tell;
pub mod trace;

use std::ffi::{CString, OsString};
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::action::Action;
use crate::os;

pub use procfs::Identity;

/// The thread that made a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Caller {
    /// Thread id.
    pub tid: i32,
    /// Process id (thread group id).
    pub pid: i32,
    /// Parent process id.
    pub ppid: i32,
}

/// The answer to a judged call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ruling {
    Allow,
    /// Fail the call with this errno.
    Deny(i32),
    /// The answer needs a human. Nothing is carried out: the supervisor
    /// hands the notification to a thread of its own and handles it again
    /// from the start there (read, resolve, judge), where [`Judge::judge`]
    /// may block until the answer comes ([`held_call_waiting`] tells it
    /// apart). The asking thread stays in the kernel meanwhile; the loop
    /// serves everyone else.
    Hold,
}

pub use notify::held_call_waiting;

/// Decides about calls. Implemented by the session; called from the
/// supervisor's threads, so it must be `Send + Sync`. Every method returns
/// only once what it needs recorded is recorded.
pub trait Judge: Send + Sync {
    /// A call is waiting for an answer. `loaded`: for an exec of the
    /// dynamic loader asked to run a program, the exec of that program it
    /// amounts to (see [`loader`]).
    fn judge(
        &self,
        caller: &Caller,
        syscall: &'static str,
        action: &Action,
        identity: Option<&Identity>,
        loaded: Option<&Action>,
    ) -> Ruling;
    /// The kernel has replaced `caller`'s program with `action` (what really
    /// runs, read back from the process); `requested` is what was allowed at
    /// the notification, when known. `false` kills the process before its
    /// first instruction.
    fn exec_committed(
        &self,
        caller: &Caller,
        action: &Action,
        identity: Option<&Identity>,
        requested: Option<&Action>,
        loaded: Option<&Action>,
    ) -> bool;
    /// A call was refused without being judged (undecodable, oversized,
    /// aimed at the supervisor).
    fn refused(&self, caller: &Caller, syscall: &str, why: &str, errno: i32);
    /// The supervisor asked `resolver` about `query` (a name the tree's
    /// DNS query asked for, allowed by the judge) and the answer, with
    /// response code `rcode` (`None`: none came), bound these names to
    /// these addresses.
    fn dns_answer(
        &self,
        caller: &Caller,
        query: &str,
        resolver: &str,
        rcode: Option<u8>,
        bindings: &[(String, std::net::IpAddr)],
    ) {
        let _ = (caller, query, resolver, rcode, bindings);
    }
    /// Called about every 100 ms from a supervisor thread, for periodic work.
    fn tick(&self) {}
}

/// How the command ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    Code(i32),
    Signal(i32),
}

/// The result of a supervised run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The command ran and ended.
    Ran(Exit),
    /// The command could not be executed (`errno` of its `execve`, e.g.
    /// `EPERM` when the policy refused it, `ENOENT`, `EACCES`).
    NotStarted(i32),
}

/// Errors of the supervisor itself.
#[derive(Debug, thiserror::Error)]
pub enum SupervisorError {
    #[error("failed to {op}: {source}")]
    Sys {
        op: &'static str,
        #[source]
        source: io::Error,
    },
    #[error("the command contains a NUL byte: {0:?}")]
    Nul(OsString),
}

fn sys_err(op: &'static str) -> impl FnOnce(io::Error) -> SupervisorError {
    move |source| SupervisorError::Sys { op, source }
}

/// A command to run.
#[derive(Debug, Clone)]
pub struct Command {
    /// The program file (already searched in `PATH`).
    pub program: PathBuf,
    /// Its argv, `argv[0]` included.
    pub argv: Vec<OsString>,
    /// Its environment.
    pub env: Vec<(OsString, OsString)>,
    /// Hashes of files kept across runs (see [`lasting`]); `None`: this
    /// run's only.
    pub lasting_hashes: Option<Arc<lasting::LastingHashes>>,
    /// Hashes taken before the command started (see [`prehash`]).
    pub prehashed: Option<Arc<procfs::Prehashed>>,
    /// How long idle CPUs are kept awake after each notification (see
    /// [`spin`]); zero: never.
    pub wake_spin: std::time::Duration,
}

/// Finds `name` the way a shell would: as given when it contains a `/`,
/// else the first executable file of that name in `path_var`.
pub fn find_program(name: &Path, path_var: Option<&std::ffi::OsStr>) -> Option<PathBuf> {
    if name.as_os_str().as_bytes().contains(&b'/') {
        return Some(name.to_path_buf());
    }
    let path_var = path_var?;
    for dir in path_var.as_bytes().split(|&b| b == b':') {
        let dir = if dir.is_empty() { b"." as &[u8] } else { dir };
        let candidate = Path::new(std::ffi::OsStr::from_bytes(dir)).join(name);
        let Ok(c) = CString::new(candidate.as_os_str().as_bytes()) else {
            continue;
        };
        if crate::os::executable(&c) && candidate.is_file() {
            return Some(candidate);
        }
    }
    None
}

fn cstr(s: &std::ffi::OsStr) -> Result<CString, SupervisorError> {
    CString::new(s.as_bytes()).map_err(|_| SupervisorError::Nul(s.to_os_string()))
}

const FORWARDED: [i32; 4] = [libc::SIGINT, libc::SIGTERM, libc::SIGHUP, libc::SIGQUIT];

fn forwarded_set() -> libc::sigset_t {
    crate::os::sigset(&FORWARDED)
}

/// Runs `cmd` under supervision. Must be called before the process starts
/// any other thread (it forks).
pub fn run(cmd: &Command, judge: Arc<dyn Judge>) -> Result<Outcome, SupervisorError> {
    let mut argv = Vec::with_capacity(cmd.argv.len());
    for a in &cmd.argv {
        argv.push(cstr(a)?);
    }
    let mut envp = Vec::with_capacity(cmd.env.len());
    for (k, v) in &cmd.env {
        let mut kv = k.as_bytes().to_vec();
        kv.push(b'=');
        kv.extend_from_slice(v.as_bytes());
        envp.push(CString::new(kv).map_err(|_| SupervisorError::Nul(k.clone()))?);
    }
    let program = cstr(cmd.program.as_os_str())?;

    // Nobody may ptrace the supervisor or open its /proc entries.
    let _ = os::set_undumpable();
    // Orphans of the tree are re-parented here, so they stay reapable.
    let _ = os::set_child_subreaper();
    os::mask_signals(&forwarded_set(), true);
    // The tree can aim SIGIO at any process of its uid (F_SETOWN on a
    // file it owns, then I/O): its default action would kill us. The
    // child restores the default before exec.
    os::ignore_signal(libc::SIGIO);
    // A tree that takes the terminal's foreground and sets `tostop`
    // would stop a background supervisor the next time it writes to the
    // terminal (SIGTTOU), or reads it (SIGTTIN): never stop.
    os::ignore_signal(libc::SIGTTOU);
    os::ignore_signal(libc::SIGTTIN);
    // Emulated opens apply the caller's umask themselves. The command
    // is given the user's umask back in the child before its exec.
    let old_umask = os::umask(0) as libc::mode_t;
    log::info!(
        "umask: the command's is {old_umask:04o} (the user's); the supervisor's is 0, emulated creates apply each caller's own"
    );
    let prepared = launch::Prepared::new(program, argv, envp, old_umask);
    let result = run_inner(&prepared, judge, cmd);
    // Restores the umask and signal mask set above.
    os::umask(old_umask as u32);
    os::mask_signals(&forwarded_set(), false);
    result
}

fn run_inner(
    prepared: &launch::Prepared,
    judge: Arc<dyn Judge>,
    cmd: &Command,
) -> Result<Outcome, SupervisorError> {
    let shared = notify::Shared::new(
        Arc::clone(&judge),
        cmd.lasting_hashes.clone(),
        cmd.prehashed.as_deref(),
    );
    let shared = Arc::new(shared.map_err(sys_err("read /proc"))?);
    let started = launch::spawn(prepared).map_err(sys_err("start the command"))?;
    crate::timing::mark("command forked, listener received");
    let child = started.pid;
    log_machine(started.wait_killable_recv);
    let tty = Foreground::take(child);

    let listener = Arc::new(sys::Listener::from_fd(
        started
            .listener
            .try_clone()
            .map_err(sys_err("duplicate the listener"))?,
    ));
    // Best effort: wake the supervisor on the caller's CPU (Linux 6.6+).
    match listener.set_sync_wakeup() {
        Ok(true) => log::info!("listener: SYNC_WAKE_UP on"),
        Ok(false) => log::info!(
            "listener: SYNC_WAKE_UP off (the kernel lacks it, before Linux 6.6): every judged call costs a cross-CPU wake-up"
        ),
        Err(e) => log::info!("listener: SYNC_WAKE_UP off (refused: {e})"),
    }
    let stop = sys::eventfd().map_err(sys_err("create an eventfd"))?;
    let stop_rx = stop.try_clone().map_err(sys_err("duplicate an eventfd"))?;
    let loop_listener = Arc::clone(&listener);
    let loop_shared = Arc::clone(&shared);
    let wake_spin = cmd.wake_spin;
    let server = std::thread::Builder::new()
        .name("lexecon-notify".into())
        .spawn(move || {
            let spinners = spin::Spinners::start(wake_spin);
            notify::serve(loop_listener, loop_shared, stop_rx, spinners.as_ref())
        })
        .map_err(sys_err("start the notification thread"))?;
    let signals_stop = stop.try_clone().map_err(sys_err("duplicate an eventfd"))?;
    let signals = {
        let judge = Arc::clone(&judge);
        std::thread::Builder::new()
            .name("lexecon-signals".into())
            .spawn(move || forward_signals(child, &signals_stop, judge.as_ref()))
            .map_err(sys_err("start the signal thread"))?
    };

    crate::timing::mark("notification and signal threads started");
    let released = started.release();
    crate::timing::mark("command attached and released");
    let outcome = match released {
        Err(e) => Err(sys_err("attach to the command")(e)),
        Ok(Err(errno)) => {
            let _ = sys::waitpid(child, libc::__WALL);
            Ok(Outcome::NotStarted(errno))
        }
        Ok(Ok(())) => trace::trace(child, &shared)
            .map(Outcome::Ran)
            .map_err(sys_err("wait for the command")),
    };
    crate::timing::mark("command reaped");
    if outcome.is_err() {
        let _ = sys::kill(child, libc::SIGKILL);
    }
    // Wakes both the notification loop and the signal thread at once.
    let _ = sys::eventfd_signal(stop.as_fd());
    let _ = server.join();
    // Held calls end when their callers do: the tree is gone.
    notify::join_held(&shared);
    let _ = signals.join();
    drop(tty);
    outcome
}

/// Forwards the signals in [`FORWARDED`] to the command and calls
/// [`Judge::tick`] about every 100 ms, until `stop` becomes readable. The
/// stop fd is polled with the signals, so the thread ends as soon as the
/// run does rather than at the end of its current wait.
fn forward_signals(child: i32, stop: &OwnedFd, judge: &dyn Judge) {
    let set = forwarded_set();
    let forward = |sig: i32| {
        // To the command's process group, as a terminal would; to the
        // command alone if it left its group.
        if sys::kill(-child, sig).is_err() {
            let _ = sys::kill(child, sig);
        }
    };
    let sfd = match sys::signalfd(&set) {
        Ok(fd) => fd,
        Err(e) => {
            log::info!("signals: no signalfd ({e}); waiting for them in 100 ms slices");
            // No signalfd: wait for signals in slices, checking `stop`.
            let timeout = std::time::Duration::from_millis(100);
            while !matches!(sys::poll_readable(&[stop.as_fd()], 0), Ok(r) if r[0] != 0) {
                if let Some(sig) = os::sigtimedwait(&set, timeout) {
                    forward(sig);
                }
                judge.tick();
            }
            return;
        }
    };
    loop {
        let revents = match sys::poll_readable(&[sfd.as_fd(), stop.as_fd()], 100) {
            Ok(r) => r,
            Err(_) => return,
        };
        if revents[1] != 0 {
            return;
        }
        if revents[0] != 0 {
            while let Ok(Some(sig)) = sys::signalfd_read(sfd.as_fd()) {
                forward(sig);
            }
        }
        judge.tick();
    }
}

/// Logs what the supervisor knows of the kernel's features: the listener's
/// flags (`wait_killable_recv` as the child found it), and what the kernel
/// release implies for `ADDFD` and `PROCMAP_QUERY`.
fn log_machine(wait_killable_recv: bool) {
    if !log::log_enabled!(log::Level::Info) {
        return;
    }
    if wait_killable_recv {
        log::info!("listener: WAIT_KILLABLE_RECV on");
    } else {
        log::info!(
            "listener: WAIT_KILLABLE_RECV off (the kernel refused it, before Linux 5.19): a judged caller interrupted by a signal is notified again"
        );
    }
    let release = sys::kernel_release();
    let version = sys::release_version(&release);
    let at_least = |v: (u32, u32)| version.is_some_and(|have| have >= v);
    log::info!("kernel: Linux {}", crate::escape::word(release.as_bytes()));
    if at_least((5, 14)) {
        log::info!("ADDFD with SEND: available (opens are performed for the tree and installed atomically)");
    } else {
        log::info!(
            "ADDFD with SEND: not available (before Linux 5.14, or the release is unknown): opens cannot be performed for the tree"
        );
    }
    if at_least((6, 11)) {
        log::debug!("PROCMAP_QUERY: expected (Linux 6.11); mprotect(PROT_EXEC) is judged with it");
    } else {
        log::debug!("PROCMAP_QUERY: not expected (before Linux 6.11): mprotect(PROT_EXEC) is judged by reading /proc/PID/maps");
    }
    log::debug!("supervisor: pid {}, euid {}", os::pid(), os::euid());
}

/// While the command runs, its process group is the terminal's foreground
/// group (when the supervisor had the terminal): job control and Ctrl-C
/// reach the command, not the supervisor.
struct Foreground {
    pgrp: i32,
}

impl Foreground {
    fn take(child: i32) -> Option<Foreground> {
        let stdin = std::io::stdin();
        let fd = stdin.as_fd();
        if !sys::isatty(fd) {
            return None;
        }
        let pgrp = os::pgrp();
        if os::tcgetpgrp(fd).ok() != Some(pgrp) {
            return None;
        }
        // The child calls setpgid(0,0) itself; call it here too so that
        // the group exists before tcsetpgrp, whichever runs first.
        let _ = os::setpgid(child, child);
        os::tcsetpgrp(fd, child).ok()?;
        Some(Foreground { pgrp })
    }
}

impl Drop for Foreground {
    fn drop(&mut self) {
        // SIGTTOU is ignored around the call because the supervisor is now
        // in a background group.
        let old = os::ignore_signal(libc::SIGTTOU);
        let _ = os::tcsetpgrp(std::io::stdin().as_fd(), self.pgrp);
        os::restore_signal(libc::SIGTTOU, old);
    }
}
