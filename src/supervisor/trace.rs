//! The tracer: every process of the tree is attached with ptrace (children
//! automatically, from their first instruction), for three things only:
//!
//! - **exec confirmation**: at `PTRACE_EVENT_EXEC` the new image is in place
//!   and has not run one instruction. What it really is (`/proc/PID/exe`,
//!   `/proc/PID/cmdline`) is handed to the judge; if the judge refuses, the
//!   process is killed before it runs.
//! - **containment**: `PTRACE_O_EXITKILL` kills every traced process if the
//!   supervisor dies, and an attached process cannot be attached by anyone
//!   else.
//! - **reaping**: the supervisor is a child subreaper; when the command
//!   exits, whatever it left behind is killed and reaped.
//!
//! All other stops are passed through: signals are re-injected unchanged,
//! group-stops are honoured with `PTRACE_LISTEN`.

use std::collections::HashSet;
use std::io;

use crate::action::{Action, ExecAction, ProcessInfo};

use super::decode::ARG_MAX;
use super::notify::{lock, Shared};
use super::procfs;
use super::sys;
use super::{Caller, Exit};

/// Runs until every traced process has exited. Returns how the command
/// (`main_pid`) ended.
pub fn trace(main_pid: i32, shared: &Shared) -> io::Result<Exit> {
    let mut main_exit: Option<Exit> = None;
    let mut tracked: HashSet<i32> = HashSet::from([main_pid]);
    loop {
        let (pid, status) = match sys::waitpid(-1, libc::__WALL) {
            Ok(r) => r,
            Err(e) if e.raw_os_error() == Some(libc::ECHILD) => break,
            Err(e) => return Err(e),
        };
        if libc::WIFEXITED(status) || libc::WIFSIGNALED(status) {
            tracked.remove(&pid);
            shared.forget_thread(pid);
            if pid == main_pid {
                main_exit = Some(if libc::WIFEXITED(status) {
                    Exit::Code(libc::WEXITSTATUS(status))
                } else {
                    Exit::Signal(libc::WTERMSIG(status))
                });
                // The command is done: nothing it left behind keeps running.
                for &p in &tracked {
                    let _ = sys::kill(p, libc::SIGKILL);
                }
            }
            continue;
        }
        if !libc::WIFSTOPPED(status) {
            continue;
        }
        let announced = !tracked.insert(pid);
        if main_exit.is_some() {
            let _ = sys::kill(pid, libc::SIGKILL);
            let _ = sys::ptrace(libc::PTRACE_CONT, pid, 0);
            continue;
        }
        let sig = libc::WSTOPSIG(status);
        let event = (status >> 16) & 0xff;
        if event == libc::PTRACE_EVENT_STOP && !announced && pid != main_pid {
            // A new task's first stop, reported before its creator's event:
            // it has not run yet; find its program before it does.
            shared.infer_image(pid);
        }
        let resume = match event {
            libc::PTRACE_EVENT_EXEC => {
                confirm_exec(pid, shared);
                0
            }
            libc::PTRACE_EVENT_FORK | libc::PTRACE_EVENT_VFORK | libc::PTRACE_EVENT_CLONE => {
                if let Ok(child) = sys::ptrace_event_msg(pid) {
                    tracked.insert(child as i32);
                    // The child (process or thread) runs this program until
                    // it executes another.
                    shared.inherit_image(pid, child as i32);
                }
                0
            }
            libc::PTRACE_EVENT_STOP => {
                if matches!(
                    sig,
                    libc::SIGSTOP | libc::SIGTSTP | libc::SIGTTIN | libc::SIGTTOU
                ) {
                    // A group-stop: stay stopped until SIGCONT, but keep
                    // reporting events.
                    let _ = sys::ptrace(libc::PTRACE_LISTEN, pid, 0);
                    continue;
                }
                0
            }
            // A signal is being delivered: deliver it unchanged.
            0 => sig,
            _ => 0,
        };
        // ESRCH: killed meanwhile; its exit is reported by waitpid.
        let _ = sys::ptrace(libc::PTRACE_CONT, pid, resume as usize);
    }
    Ok(main_exit.unwrap_or(Exit::Code(0)))
}

fn confirm_exec(pid: i32, shared: &Shared) {
    // The thread that called exec, before the kernel gave it the leader's id.
    let former = sys::ptrace_event_msg(pid).map(|t| t as i32).unwrap_or(pid);
    let requested = lock(&shared.pending_exec).remove(&former);
    // The parent as the exec notification saw it (the same process, which
    // exec does not change), else read now.
    let known = lock(&shared.threads).get(&former).map(|&(_, ppid)| ppid);
    if former != pid {
        shared.forget_thread(former);
    }
    shared.forget_program(pid);
    let ppid = match known {
        Some(ppid) => ppid,
        None => procfs::status(pid).map(|s| s.ppid).unwrap_or(0),
    };
    // After exec the process has this one thread, the leader: the loader's
    // opens that follow need not read /proc again.
    lock(&shared.threads).insert(pid, (pid, ppid));
    let caller = Caller {
        tid: pid,
        pid,
        ppid,
    };
    let path = procfs::readlink(pid, "exe");
    let argv = procfs::cmdline(pid, ARG_MAX);
    let (path, argv) = match (path, argv) {
        (Ok(p), Ok(a)) => (p, a),
        (p, a) => {
            let why = p
                .err()
                .or(a.err())
                .map(|e| e.to_string())
                .unwrap_or_default();
            shared.judge.refused(
                &caller,
                "execve",
                &format!("cannot read the new program image: {why}"),
                libc::EPERM,
            );
            let _ = sys::kill(pid, libc::SIGKILL);
            return;
        }
    };
    let identity = super::notify::identify_exe(shared, pid);
    // What the process runs from now on, for the judgements of its opens
    // (and of the tasks it creates): the image confirmed here, and whether
    // its environment loads other code into it.
    lock(&shared.images).insert(
        pid,
        std::sync::Arc::new(ProcessInfo {
            program: path.clone(),
            sha256: identity.and_then(|i| i.sha256),
            file: identity.map(|i| (i.dev, i.ino)),
            injected: procfs::injection(pid, ARG_MAX),
        }),
    );
    let cwd = procfs::readlink(pid, "cwd").unwrap_or_default();
    let loaded =
        super::notify::loaded_program(shared, &caller, &path, identity.as_ref(), &argv, &cwd);
    let action = Action::Exec(ExecAction {
        path,
        argv,
        cwd,
        sha256: identity.and_then(|i| i.sha256),
    });
    if !shared.judge.exec_committed(
        &caller,
        &action,
        identity.as_ref(),
        requested.as_ref(),
        loaded.as_ref(),
    ) {
        let _ = sys::kill(pid, libc::SIGKILL);
    }
}
