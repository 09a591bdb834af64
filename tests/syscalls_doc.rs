//! `docs/syscalls.md` is the filter's decision table for every x86-64
//! syscall, generated from the filter itself: each syscall is run through
//! the real BPF program (in the user-space evaluator) and classified. This
//! test fails when the document and the filter disagree; with
//! `LEXECON_WRITE_DOCS=1` it rewrites the document instead.
//!
//! Syscalls that take a path, a pid, a descriptor that can change a file, or
//! load code, and that the filter passes without notification, must carry a
//! note saying why (`NOTES`): none is passed silently.

use std::collections::BTreeMap;

use lexecon::supervisor::filter::{self, evaluate, RET_ALLOW, RET_ERRNO, RET_USER_NOTIF};
use lexecon::supervisor::sys::AUDIT_ARCH_X86_64;

const NAMES: &str = include_str!("syscalls/x86_64.txt");

/// Why a passed or argument-dependent syscall is treated as it is.
const NOTES: &[(&str, &str)] = &[
    ("clone", "refused (`EPERM`) with any `CLONE_NEW*` flag or `CLONE_UNTRACED`; otherwise passed: every child is attached to the tracer from its first instruction"),
    ("clone3", "its flags are in memory the filter cannot read; libc falls back to `clone`"),
    ("fork", "passed: the child is attached to the tracer from its first instruction"),
    ("vfork", "passed: the child is attached to the tracer from its first instruction"),
    ("seccomp", "refused (`EPERM`) with `SECCOMP_FILTER_FLAG_NEW_LISTENER`; other filters only restrict"),
    ("prctl", "passed: acts on the caller (`PR_SET_SECCOMP` installs filters, which only restrict; no listener)"),
    ("fcntl", "refused (`EPERM`) for `F_SETSIG` with a signal; `F_SETOWN` + the default SIGIO is harmless (ignored by the supervisor); acts on descriptors already judged at their open"),
    ("ioctl", "refused (`EPERM`) for `TIOCSTI`; inode-changing ioctls (`FS_IOC_SETFLAGS`) are not judged yet"),
    ("mmap", "notified when it maps a file with `PROT_EXEC`, judged as loading that program (block and escalate exec rules); every other mapping passes"),
    ("mprotect", "notified when it adds `PROT_EXEC`: each file mapped in the range is judged as loading that program; anonymous memory passes"),
    ("pkey_mprotect", "as `mprotect`"),
    ("remap_file_pages", "passed: rearranges pages of an existing mapping of the same file, keeping its protection"),
    ("memfd_create", "passed: an anonymous file; an exec of it is judged by content, and its hash is never cached"),
    ("memfd_secret", "passed: anonymous memory"),
    ("chdir", "passed: later paths are resolved from the caller's `/proc/PID/cwd`"),
    ("fchdir", "passed: see `chdir`"),
    ("mkdir", "not judged yet: creates a directory"),
    ("mkdirat", "not judged yet: creates a directory"),
    ("mknod", "not judged yet: creates a node (device nodes need `CAP_MKNOD`)"),
    ("mknodat", "not judged yet: see `mknod`"),
    ("symlink", "not judged yet: creates a name"),
    ("symlinkat", "not judged yet: creates a name"),
    ("chmod", "not judged yet: changes a file's mode"),
    ("fchmod", "not judged yet: changes a file's mode"),
    ("fchmodat", "not judged yet: changes a file's mode"),
    ("fchmodat2", "not judged yet: changes a file's mode"),
    ("chown", "not judged yet: changes a file's owner (needs `CAP_CHOWN` but for the group)"),
    ("fchown", "not judged yet: see `chown`"),
    ("lchown", "not judged yet: see `chown`"),
    ("fchownat", "not judged yet: see `chown`"),
    ("utime", "not judged yet: changes a file's times"),
    ("utimes", "not judged yet: changes a file's times"),
    ("futimesat", "not judged yet: changes a file's times"),
    ("utimensat", "not judged yet: changes a file's times"),
    ("setxattr", "not judged yet: changes extended attributes"),
    ("lsetxattr", "not judged yet: changes extended attributes"),
    ("fsetxattr", "not judged yet: changes extended attributes"),
    ("setxattrat", "not judged yet: changes extended attributes"),
    ("removexattr", "not judged yet: changes extended attributes"),
    ("lremovexattr", "not judged yet: changes extended attributes"),
    ("fremovexattr", "not judged yet: changes extended attributes"),
    ("removexattrat", "not judged yet: changes extended attributes"),
    ("file_setattr", "not judged yet: changes inode attributes"),
    ("ftruncate", "passed: the descriptor was opened for writing through a judged open"),
    ("fallocate", "passed: see `ftruncate`"),
    ("write", "passed: on descriptors judged at their open"),
    ("pwrite64", "passed: see `write`"),
    ("writev", "passed: see `write`"),
    ("pwritev", "passed: see `write`"),
    ("pwritev2", "passed: see `write`"),
    ("sendfile", "passed: see `write`"),
    ("splice", "passed: see `write`"),
    ("tee", "passed: see `write`"),
    ("vmsplice", "passed: see `write`"),
    ("copy_file_range", "passed: see `write`"),
    ("connect", "judged (a `connect` action) and performed by the supervisor on the caller's socket"),
    ("bind", "judged (`op: bind`) and performed by the supervisor on the caller's socket"),
    ("listen", "judged (`op: listen`, on the socket's bound address) and performed by the supervisor"),
    ("sendto", "passed without a destination address (a connected socket); with one, notified, judged (`op: send`; a DNS query by its names) and performed from one copy of the message"),
    ("sendmsg", "judged when it names a destination, and always performed by the supervisor from one copy of the message (`msg_name` is in memory another thread can rewrite)"),
    ("sendmmsg", "as `sendmsg`, message by message; `msg_len` written back"),
    ("socket", "refused (`EPERM`) for `AF_PACKET` and `SOCK_RAW`; otherwise passed: what a socket reaches is judged at `connect`, `bind` and sends with an address"),
    ("setpgid", "passed: only the caller or its children; signals to a group check every member"),
    ("waitid", "passed: only the caller's children"),
    ("wait4", "passed: only the caller's children"),
    ("capset", "passed: acts on the caller only"),
    ("init_module", "needs `CAP_SYS_MODULE` (a root tree is refused unless accepted)"),
    ("finit_module", "needs `CAP_SYS_MODULE`"),
    ("delete_module", "needs `CAP_SYS_MODULE`"),
    ("swapon", "needs `CAP_SYS_ADMIN`"),
    ("swapoff", "needs `CAP_SYS_ADMIN`"),
    ("acct", "needs `CAP_SYS_PACCT`"),
    ("quotactl", "needs `CAP_SYS_ADMIN`"),
    ("quotactl_fd", "needs `CAP_SYS_ADMIN`"),
    ("fanotify_init", "needs `CAP_SYS_ADMIN`"),
    ("fanotify_mark", "needs an fanotify descriptor (see `fanotify_init`)"),
    ("reboot", "needs `CAP_SYS_BOOT`"),
    ("landlock_create_ruleset", "passed: Landlock only restricts"),
    ("landlock_add_rule", "passed: Landlock only restricts"),
    ("landlock_restrict_self", "passed: Landlock only restricts"),
    ("getpriority", "passed: reads only"),
    ("sched_getaffinity", "passed: reads only"),
    ("sched_getattr", "passed: reads only"),
    ("sched_getparam", "passed: reads only"),
    ("sched_getscheduler", "passed: reads only"),
    ("ioprio_get", "passed: reads only"),
    ("getpgid", "passed: reads only"),
    ("getsid", "passed: reads only"),
    ("setpriority", "passed for `PRIO_PROCESS` of the caller; any other target is notified: refused for the supervisor, outside the tree, and `PRIO_USER`"),
    ("ioprio_set", "as `setpriority` (`IOPRIO_WHO_*`)"),
    ("statmount", "passed: reads mount information"),
    ("listmount", "passed: reads mount information"),
];

/// The note of a syscall the filter passes only when it is aimed at the
/// caller itself.
const AIMED: &str = "passed when aimed at the caller (0); any other target is notified, and refused when it is the supervisor or outside the tree";

fn note(nr: u32, name: &str) -> Option<&'static str> {
    if filter::PID_TARGETED.contains(&nr) {
        return Some(AIMED);
    }
    NOTES.iter().find(|(n, _)| *n == name).map(|(_, w)| *w)
}

fn names() -> Vec<(u32, &'static str)> {
    NAMES
        .lines()
        .filter_map(|l| {
            let (n, name) = l.split_once(' ')?;
            Some((n.parse().ok()?, name))
        })
        .collect()
}

fn errno_name(e: u32) -> &'static str {
    match e as i32 {
        libc::EPERM => "EPERM",
        libc::ENOSYS => "ENOSYS",
        libc::EACCES => "EACCES",
        _ => "errno",
    }
}

fn render() -> String {
    let prog = filter::build();
    let denied_why: BTreeMap<u32, &str> = filter::DENIED.iter().map(|&(n, _, w)| (n, w)).collect();
    let mut out = String::from(
        "# Syscalls: what the filter does with each\n\n\
         Generated from the filter by `tests/syscalls_doc.rs` (`LEXECON_WRITE_DOCS=1 cargo test --test syscalls_doc` rewrites it; the test fails when it is stale). \
         Every x86-64 syscall, with the filter's treatment for zero arguments and, where arguments change it, a note. \
         Calls with another architecture (`int 0x80`) or an x32 number fail with `ENOSYS` before any of this.\n\n\
         - **notified**: paused and handed to the supervisor, which judges it (exec, open, file changes by path) or checks whom it is aimed at (calls on other processes), then performs it, continues it or refuses it;\n\
         - **refused**: fails at once with the errno shown;\n\
         - **passed**: runs without the supervisor; the note says why that is safe, or that it is not judged yet.\n\n\
         | nr | syscall | treatment | why |\n|---:|---|---|---|\n",
    );
    for (nr, name) in names() {
        let ret = evaluate(&prog, nr, AUDIT_ARCH_X86_64, [0; 6]).expect("the filter returns");
        let treatment = if ret == RET_ALLOW {
            "passed".to_string()
        } else if ret == RET_USER_NOTIF {
            "notified".to_string()
        } else if ret & 0xffff_0000 == RET_ERRNO {
            format!("refused (`{}`)", errno_name(ret & 0xffff))
        } else {
            format!("{ret:#x}")
        };
        let why = note(nr, name)
            .or_else(|| denied_why.get(&nr).copied())
            .unwrap_or(match ret {
                RET_USER_NOTIF => "judged or checked by the supervisor",
                _ => "takes no path, no other process, no code to load",
            });
        out.push_str(&format!("| {nr} | `{name}` | {treatment} | {why} |\n"));
    }
    out
}

/// Syscalls that take a path, a pid, a descriptor that can change a file,
/// or load code: each is notified, refused, or passed with a note.
const SENSITIVE: &[&str] = &[
    "open",
    "openat",
    "openat2",
    "creat",
    "execve",
    "execveat",
    "unlink",
    "unlinkat",
    "rmdir",
    "rename",
    "renameat",
    "renameat2",
    "link",
    "linkat",
    "truncate",
    "mkdir",
    "mkdirat",
    "mknod",
    "mknodat",
    "symlink",
    "symlinkat",
    "chmod",
    "fchmod",
    "fchmodat",
    "fchmodat2",
    "chown",
    "fchown",
    "lchown",
    "fchownat",
    "utime",
    "utimes",
    "futimesat",
    "utimensat",
    "setxattr",
    "lsetxattr",
    "fsetxattr",
    "removexattr",
    "lremovexattr",
    "fremovexattr",
    "setxattrat",
    "removexattrat",
    "file_setattr",
    "ioctl",
    "fcntl",
    "mmap",
    "mprotect",
    "pkey_mprotect",
    "remap_file_pages",
    "uselib",
    "init_module",
    "finit_module",
    "kill",
    "tkill",
    "tgkill",
    "rt_sigqueueinfo",
    "rt_tgsigqueueinfo",
    "pidfd_open",
    "pidfd_send_signal",
    "pidfd_getfd",
    "ptrace",
    "process_vm_readv",
    "process_vm_writev",
    "prlimit64",
    "setpriority",
    "ioprio_set",
    "sched_setparam",
    "sched_setscheduler",
    "sched_setaffinity",
    "sched_setattr",
    "migrate_pages",
    "move_pages",
    "get_robust_list",
    "process_madvise",
    "process_mrelease",
    "kcmp",
    "setpgid",
    "clone",
    "clone3",
    "fork",
    "vfork",
    "ftruncate",
    "fallocate",
    "chdir",
    "fchdir",
    "mount",
    "open_tree",
    "open_tree_attr",
    "name_to_handle_at",
    "open_by_handle_at",
    "connect",
    "bind",
    "sendto",
    "sendmsg",
    "memfd_create",
];

#[test]
fn every_sensitive_syscall_is_accounted_for() {
    let prog = filter::build();
    let all: BTreeMap<&str, u32> = names().into_iter().map(|(n, s)| (s, n)).collect();
    for name in SENSITIVE {
        let nr = *all
            .get(name)
            .unwrap_or_else(|| panic!("{name} is not in the table"));
        let ret = evaluate(&prog, nr, AUDIT_ARCH_X86_64, [0; 6]).unwrap();
        assert!(
            ret != RET_ALLOW || note(nr, name).is_some(),
            "{name} ({nr}) is passed without a note saying why"
        );
    }
}

#[test]
fn docs_syscalls_md_is_the_filter() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/syscalls.md");
    let text = render();
    if std::env::var_os("LEXECON_WRITE_DOCS").is_some() {
        std::fs::write(path, &text).unwrap();
        return;
    }
    let on_disk = std::fs::read_to_string(path).unwrap_or_default();
    assert!(
        on_disk == text,
        "docs/syscalls.md does not match the filter: run `LEXECON_WRITE_DOCS=1 cargo test --test syscalls_doc` and review the diff"
    );
}
