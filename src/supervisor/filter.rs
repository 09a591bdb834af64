//! The seccomp BPF program installed in the supervised tree.
//!
//! Hand-assembled classic BPF (no C library needed at build or run time).
//! Order of checks, each before the next:
//!
//! 1. `arch` must be `AUDIT_ARCH_X86_64`; anything else (i386 `int 0x80`
//!    calls) fails with `ENOSYS`. It never reaches a syscall-number test, so
//!    i386 numbers (`open` = 5, `execve` = 11) cannot alias x86-64 ones.
//! 2. x32 syscall numbers (bit 30 set) fail with `ENOSYS`.
//! 3. Syscalls the supervisor judges go to user notification: the exec and
//!    open families, the calls that remove, move, alias or truncate a file
//!    by path (`unlink`, `rmdir`, `rename`, `link`, `truncate` and their
//!    `*at` forms), the calls that create a name or change a file's metadata
//!    (`mkdir`, `mknod`, `symlink`, `chmod`, `chown`, `utimes`, the xattr
//!    calls, and `ioctl`s that set inode flags), the signal family and the
//!    calls aimed at other processes (to protect the supervisor and what is
//!    outside the tree).
//! 4. Syscalls that would bypass or subvert the gate fail with a fixed errno
//!    ([`DENIED`]); `clone` only when it asks for a new namespace, `seccomp`
//!    only when it asks for a new user-notify listener.
//! 5. Everything else is allowed.
//!
//! [`evaluate`] runs a program on a `seccomp_data` in user space, so the
//! decision table is unit-tested without installing anything.

/// x86-64 syscall numbers used by the filter and the decoder, from the C
/// library's tables (`libc::SYS_*`, the same for glibc and musl on x86-64).
pub mod nr {
    pub const OPEN: u32 = libc::SYS_open as u32;
    pub const TRUNCATE: u32 = libc::SYS_truncate as u32;
    pub const RENAME: u32 = libc::SYS_rename as u32;
    pub const RMDIR: u32 = libc::SYS_rmdir as u32;
    pub const LINK: u32 = libc::SYS_link as u32;
    pub const UNLINK: u32 = libc::SYS_unlink as u32;
    pub const CLONE: u32 = libc::SYS_clone as u32;
    pub const FCNTL: u32 = libc::SYS_fcntl as u32;
    pub const EXECVE: u32 = libc::SYS_execve as u32;
    pub const KILL: u32 = libc::SYS_kill as u32;
    pub const CREAT: u32 = libc::SYS_creat as u32;
    pub const PTRACE: u32 = libc::SYS_ptrace as u32;
    pub const RT_SIGQUEUEINFO: u32 = libc::SYS_rt_sigqueueinfo as u32;
    pub const USELIB: u32 = libc::SYS_uselib as u32;
    pub const PIVOT_ROOT: u32 = libc::SYS_pivot_root as u32;
    pub const CHROOT: u32 = libc::SYS_chroot as u32;
    pub const MOUNT: u32 = libc::SYS_mount as u32;
    pub const UMOUNT2: u32 = libc::SYS_umount2 as u32;
    pub const TKILL: u32 = libc::SYS_tkill as u32;
    pub const TGKILL: u32 = libc::SYS_tgkill as u32;
    pub const KEXEC_LOAD: u32 = libc::SYS_kexec_load as u32;
    pub const ADD_KEY: u32 = libc::SYS_add_key as u32;
    pub const REQUEST_KEY: u32 = libc::SYS_request_key as u32;
    pub const KEYCTL: u32 = libc::SYS_keyctl as u32;
    pub const OPENAT: u32 = libc::SYS_openat as u32;
    pub const UNLINKAT: u32 = libc::SYS_unlinkat as u32;
    pub const RENAMEAT: u32 = libc::SYS_renameat as u32;
    pub const LINKAT: u32 = libc::SYS_linkat as u32;
    pub const UNSHARE: u32 = libc::SYS_unshare as u32;
    pub const RT_TGSIGQUEUEINFO: u32 = libc::SYS_rt_tgsigqueueinfo as u32;
    pub const PERF_EVENT_OPEN: u32 = libc::SYS_perf_event_open as u32;
    pub const RENAMEAT2: u32 = libc::SYS_renameat2 as u32;
    pub const NAME_TO_HANDLE_AT: u32 = libc::SYS_name_to_handle_at as u32;
    pub const OPEN_BY_HANDLE_AT: u32 = libc::SYS_open_by_handle_at as u32;
    pub const SETNS: u32 = libc::SYS_setns as u32;
    pub const PROCESS_VM_READV: u32 = libc::SYS_process_vm_readv as u32;
    pub const PROCESS_VM_WRITEV: u32 = libc::SYS_process_vm_writev as u32;
    pub const KCMP: u32 = libc::SYS_kcmp as u32;
    pub const SECCOMP: u32 = libc::SYS_seccomp as u32;
    pub const IOCTL: u32 = libc::SYS_ioctl as u32;
    pub const KEXEC_FILE_LOAD: u32 = libc::SYS_kexec_file_load as u32;
    pub const BPF: u32 = libc::SYS_bpf as u32;
    pub const EXECVEAT: u32 = libc::SYS_execveat as u32;
    pub const USERFAULTFD: u32 = libc::SYS_userfaultfd as u32;
    pub const PIDFD_SEND_SIGNAL: u32 = libc::SYS_pidfd_send_signal as u32;
    pub const IO_URING_SETUP: u32 = libc::SYS_io_uring_setup as u32;
    pub const IO_URING_ENTER: u32 = libc::SYS_io_uring_enter as u32;
    pub const IO_URING_REGISTER: u32 = libc::SYS_io_uring_register as u32;
    pub const OPEN_TREE: u32 = libc::SYS_open_tree as u32;
    pub const MOVE_MOUNT: u32 = libc::SYS_move_mount as u32;
    pub const FSOPEN: u32 = libc::SYS_fsopen as u32;
    pub const FSCONFIG: u32 = libc::SYS_fsconfig as u32;
    pub const FSMOUNT: u32 = libc::SYS_fsmount as u32;
    pub const FSPICK: u32 = libc::SYS_fspick as u32;
    pub const PIDFD_OPEN: u32 = libc::SYS_pidfd_open as u32;
    pub const CLONE3: u32 = libc::SYS_clone3 as u32;
    pub const OPENAT2: u32 = libc::SYS_openat2 as u32;
    pub const PIDFD_GETFD: u32 = libc::SYS_pidfd_getfd as u32;
    pub const MOUNT_SETATTR: u32 = libc::SYS_mount_setattr as u32;
    pub const SETPRIORITY: u32 = libc::SYS_setpriority as u32;
    pub const SCHED_SETPARAM: u32 = libc::SYS_sched_setparam as u32;
    pub const SCHED_SETSCHEDULER: u32 = libc::SYS_sched_setscheduler as u32;
    pub const SCHED_SETAFFINITY: u32 = libc::SYS_sched_setaffinity as u32;
    pub const IOPRIO_SET: u32 = libc::SYS_ioprio_set as u32;
    pub const MIGRATE_PAGES: u32 = libc::SYS_migrate_pages as u32;
    pub const GET_ROBUST_LIST: u32 = libc::SYS_get_robust_list as u32;
    pub const MOVE_PAGES: u32 = libc::SYS_move_pages as u32;
    pub const PRLIMIT64: u32 = libc::SYS_prlimit64 as u32;
    pub const SCHED_SETATTR: u32 = libc::SYS_sched_setattr as u32;
    pub const PROCESS_MADVISE: u32 = libc::SYS_process_madvise as u32;
    pub const PROCESS_MRELEASE: u32 = libc::SYS_process_mrelease as u32;
    pub const MMAP: u32 = libc::SYS_mmap as u32;
    pub const MPROTECT: u32 = libc::SYS_mprotect as u32;
    pub const PKEY_MPROTECT: u32 = libc::SYS_pkey_mprotect as u32;
    pub const MKDIR: u32 = libc::SYS_mkdir as u32;
    pub const SYMLINK: u32 = libc::SYS_symlink as u32;
    pub const CHMOD: u32 = libc::SYS_chmod as u32;
    pub const FCHMOD: u32 = libc::SYS_fchmod as u32;
    pub const CHOWN: u32 = libc::SYS_chown as u32;
    pub const FCHOWN: u32 = libc::SYS_fchown as u32;
    pub const LCHOWN: u32 = libc::SYS_lchown as u32;
    pub const UTIME: u32 = libc::SYS_utime as u32;
    pub const MKNOD: u32 = libc::SYS_mknod as u32;
    pub const SETXATTR: u32 = libc::SYS_setxattr as u32;
    pub const LSETXATTR: u32 = libc::SYS_lsetxattr as u32;
    pub const FSETXATTR: u32 = libc::SYS_fsetxattr as u32;
    pub const REMOVEXATTR: u32 = libc::SYS_removexattr as u32;
    pub const LREMOVEXATTR: u32 = libc::SYS_lremovexattr as u32;
    pub const FREMOVEXATTR: u32 = libc::SYS_fremovexattr as u32;
    pub const UTIMES: u32 = libc::SYS_utimes as u32;
    pub const MKDIRAT: u32 = libc::SYS_mkdirat as u32;
    pub const MKNODAT: u32 = libc::SYS_mknodat as u32;
    pub const FCHOWNAT: u32 = libc::SYS_fchownat as u32;
    pub const FUTIMESAT: u32 = libc::SYS_futimesat as u32;
    pub const SYMLINKAT: u32 = libc::SYS_symlinkat as u32;
    pub const FCHMODAT: u32 = libc::SYS_fchmodat as u32;
    pub const UTIMENSAT: u32 = libc::SYS_utimensat as u32;
    pub const FCHMODAT2: u32 = libc::SYS_fchmodat2 as u32;
    pub const SOCKET: u32 = libc::SYS_socket as u32;
    pub const CONNECT: u32 = libc::SYS_connect as u32;
    pub const SENDTO: u32 = libc::SYS_sendto as u32;
    pub const SENDMSG: u32 = libc::SYS_sendmsg as u32;
    pub const BIND: u32 = libc::SYS_bind as u32;
    pub const LISTEN: u32 = libc::SYS_listen as u32;
    pub const SENDMMSG: u32 = libc::SYS_sendmmsg as u32;
    // Calls newer than the `libc` crate's tables (Linux 6.13–6.17), from
    // the kernel's arch/x86/entry/syscalls/syscall_64.tbl.
    pub const OPEN_TREE_ATTR: u32 = 467;
    pub const SETXATTRAT: u32 = 463;
    pub const REMOVEXATTRAT: u32 = 466;
    pub const FILE_SETATTR: u32 = 469;
}

/// Network calls, always notified: their addresses and messages are in
/// memory (`sendmsg`'s `msg_name` too, so even a `sendmsg` without one is
/// performed by the supervisor from one copy). `sendto` is notified only
/// with a destination address (below).
pub const NET_NOTIFIED: &[u32] = &[nr::CONNECT, nr::BIND, nr::LISTEN, nr::SENDMSG, nr::SENDMMSG];

/// `socket(2)` domains refused: packet sockets see and forge every frame.
pub const SOCKET_DOMAINS_REFUSED: &[u32] = &[libc::AF_PACKET as u32];
/// `SOCK_RAW`: the low bits of `socket`'s type (flags above them).
const SOCK_TYPE_MASK: u32 = 0xf;

/// `ioctl` commands that change an inode (`chattr`): notified and judged
/// as a change of the file the descriptor refers to.
pub const INODE_IOCTLS: &[u32] = &[
    // FS_IOC_SETFLAGS, and its 32-bit twin.
    0x4008_6602,
    0x4004_6602,
    // FS_IOC_FSSETXATTR
    0x401c_5820,
];

/// Calls whose first argument names a thread (0: the caller itself) and
/// that act on it: notified unless that argument is 0, and then refused when
/// aimed at the supervisor or outside the tree. They need only a matching
/// uid, not a signal: a lowered `RLIMIT_NOFILE` or `RLIMIT_FSIZE` on the
/// supervisor would make its own opens fail or get it killed by `SIGXFSZ`.
pub const PID_TARGETED: &[u32] = &[
    nr::PRLIMIT64,
    nr::SCHED_SETPARAM,
    nr::SCHED_SETSCHEDULER,
    nr::SCHED_SETAFFINITY,
    nr::SCHED_SETATTR,
    nr::MIGRATE_PAGES,
    nr::MOVE_PAGES,
    nr::GET_ROBUST_LIST,
];

/// `setpriority(which, who, …)` and `ioprio_set(which, who, …)`: `which`
/// selects a thread, a process group or every process of a user. Only
/// (the caller's own thread, `who == 0`) passes without notification.
pub const WHICH_WHO_TARGETED: &[(u32, u32)] = &[
    // PRIO_PROCESS
    (nr::SETPRIORITY, 0),
    // IOPRIO_WHO_PROCESS
    (nr::IOPRIO_SET, 1),
];

/// Syscalls routed to the supervisor.
pub const NOTIFIED: &[u32] = &[
    nr::OPENAT,
    nr::OPEN,
    nr::EXECVE,
    nr::EXECVEAT,
    nr::OPENAT2,
    nr::CREAT,
    nr::KILL,
    nr::TKILL,
    nr::TGKILL,
    nr::RT_SIGQUEUEINFO,
    nr::RT_TGSIGQUEUEINFO,
    nr::PIDFD_OPEN,
    nr::UNLINK,
    nr::UNLINKAT,
    nr::RMDIR,
    nr::RENAME,
    nr::RENAMEAT,
    nr::RENAMEAT2,
    nr::LINK,
    nr::LINKAT,
    nr::TRUNCATE,
    nr::MKDIR,
    nr::MKDIRAT,
    nr::MKNOD,
    nr::MKNODAT,
    nr::SYMLINK,
    nr::SYMLINKAT,
    nr::CHMOD,
    nr::FCHMOD,
    nr::FCHMODAT,
    nr::FCHMODAT2,
    nr::CHOWN,
    nr::FCHOWN,
    nr::LCHOWN,
    nr::FCHOWNAT,
    nr::UTIME,
    nr::UTIMES,
    nr::FUTIMESAT,
    nr::UTIMENSAT,
    nr::SETXATTR,
    nr::LSETXATTR,
    nr::FSETXATTR,
    nr::REMOVEXATTR,
    nr::LREMOVEXATTR,
    nr::FREMOVEXATTR,
];

/// Syscalls refused outright, with the errno the caller gets. `ENOSYS` where
/// runtimes have a fallback (io_uring → plain syscalls, clone3 → clone).
pub const DENIED: &[(u32, i32, &str)] = &[
    (
        nr::IO_URING_SETUP,
        libc::ENOSYS,
        "io_uring performs opens seccomp never sees",
    ),
    (
        nr::IO_URING_ENTER,
        libc::ENOSYS,
        "io_uring performs opens seccomp never sees",
    ),
    (
        nr::IO_URING_REGISTER,
        libc::ENOSYS,
        "io_uring performs opens seccomp never sees",
    ),
    (
        nr::CLONE3,
        libc::ENOSYS,
        "its flags live in memory the filter cannot read; libc falls back to clone",
    ),
    (
        nr::USELIB,
        libc::ENOSYS,
        "loads a library by path, bypassing open",
    ),
    (
        nr::PTRACE,
        libc::EPERM,
        "would let the tree rewrite other processes' calls",
    ),
    (
        nr::PROCESS_VM_READV,
        libc::EPERM,
        "cross-process memory access",
    ),
    (
        nr::PROCESS_VM_WRITEV,
        libc::EPERM,
        "cross-process memory rewrite (TOCTOU tool)",
    ),
    (
        nr::NAME_TO_HANDLE_AT,
        libc::EPERM,
        "file handles open files without a path",
    ),
    (
        nr::OPEN_BY_HANDLE_AT,
        libc::EPERM,
        "file handles open files without a path",
    ),
    (
        nr::UNSHARE,
        libc::EPERM,
        "new namespaces change what paths mean",
    ),
    (
        nr::SETNS,
        libc::EPERM,
        "joining namespaces changes what paths mean",
    ),
    (nr::MOUNT, libc::EPERM, "mounts change what paths mean"),
    (nr::UMOUNT2, libc::EPERM, "mounts change what paths mean"),
    (nr::PIVOT_ROOT, libc::EPERM, "changes the root"),
    (nr::CHROOT, libc::EPERM, "changes the root"),
    (
        nr::OPEN_TREE,
        libc::EPERM,
        "opens a path outside the open family",
    ),
    (
        nr::OPEN_TREE_ATTR,
        libc::EPERM,
        "opens a path outside the open family",
    ),
    (nr::MOVE_MOUNT, libc::EPERM, "mounts change what paths mean"),
    (nr::FSOPEN, libc::EPERM, "mounts change what paths mean"),
    (nr::FSCONFIG, libc::EPERM, "mounts change what paths mean"),
    (nr::FSMOUNT, libc::EPERM, "mounts change what paths mean"),
    (nr::FSPICK, libc::EPERM, "mounts change what paths mean"),
    (
        nr::MOUNT_SETATTR,
        libc::EPERM,
        "mounts change what paths mean",
    ),
    (nr::BPF, libc::EPERM, "kernel programs"),
    (
        nr::USERFAULTFD,
        libc::EPERM,
        "stalls the supervisor's reads of tracee memory",
    ),
    (nr::KCMP, libc::EPERM, "probes other processes' fds"),
    (
        nr::PIDFD_GETFD,
        libc::EPERM,
        "steals fds from other processes",
    ),
    (
        nr::PIDFD_SEND_SIGNAL,
        libc::EPERM,
        "signals by pidfd; use kill",
    ),
    (nr::PERF_EVENT_OPEN, libc::EPERM, "observes other processes"),
    (nr::KEXEC_LOAD, libc::EPERM, "replaces the kernel"),
    (nr::KEXEC_FILE_LOAD, libc::EPERM, "replaces the kernel"),
    (nr::ADD_KEY, libc::EPERM, "kernel keyrings"),
    (nr::REQUEST_KEY, libc::EPERM, "kernel keyrings"),
    (nr::KEYCTL, libc::EPERM, "kernel keyrings"),
    (
        nr::SETXATTRAT,
        libc::ENOSYS,
        "changes extended attributes; libc falls back to setxattr",
    ),
    (
        nr::REMOVEXATTRAT,
        libc::ENOSYS,
        "changes extended attributes; libc falls back to removexattr",
    ),
    (
        nr::FILE_SETATTR,
        libc::ENOSYS,
        "changes inode attributes; tools fall back to ioctl",
    ),
    (
        nr::PROCESS_MADVISE,
        libc::EPERM,
        "changes another process's memory through a pidfd",
    ),
    (
        nr::PROCESS_MRELEASE,
        libc::EPERM,
        "reaps another process's memory through a pidfd",
    ),
];

/// `clone` flags refused: those that create namespaces, and
/// `CLONE_UNTRACED`, which makes a child the tracer is never attached to
/// (no exec confirmation, no `PTRACE_O_EXITKILL`). All in the low 32 bits.
pub const CLONE_REFUSED_MASK: u32 = (libc::CLONE_UNTRACED
    | libc::CLONE_NEWNS
    | libc::CLONE_NEWCGROUP
    | libc::CLONE_NEWUTS
    | libc::CLONE_NEWIPC
    | libc::CLONE_NEWUSER
    | libc::CLONE_NEWPID
    | libc::CLONE_NEWNET) as u32;

const SECCOMP_SET_MODE_FILTER: u32 = 1;
const F_SETSIG: u32 = 10;
/// ioctl(2) that pushes bytes into a terminal's input queue.
const TIOCSTI: u32 = 0x5412;
const SECCOMP_FILTER_FLAG_NEW_LISTENER: u32 = 1 << 3;

pub const RET_ALLOW: u32 = 0x7fff_0000;
pub const RET_USER_NOTIF: u32 = 0x7fc0_0000;
pub const RET_ERRNO: u32 = 0x0005_0000;

const OFF_NR: u32 = 0;
const OFF_ARCH: u32 = 4;
const fn off_arg_lo(i: u32) -> u32 {
    16 + 8 * i
}

// Classic BPF opcodes.
const LD_W_ABS: u16 = 0x20;
const JMP_JEQ_K: u16 = 0x15;
const JMP_JGE_K: u16 = 0x35;
const JMP_JSET_K: u16 = 0x45;
const RET_K: u16 = 0x06;

/// One instruction (`struct sock_filter`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Insn {
    pub code: u16,
    pub jt: u8,
    pub jf: u8,
    pub k: u32,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Label {
    /// The following instruction.
    Next,
    /// A `Mark` placed further down.
    At(Mark),
    Allow,
    Notify,
    Errno(i32),
}

/// A place in the program that jumps can name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Mark {
    Named(&'static str),
    /// Just after the checks of one syscall's arguments.
    After(u32),
}

enum Item {
    Load(u32),
    Jump {
        code: u16,
        k: u32,
        t: Label,
        f: Label,
    },
    Ret(u32),
    Mark(Mark),
}

/// Builds the filter program.
pub fn build() -> Vec<Insn> {
    use Label::*;
    let jeq = |k, t, f| Item::Jump {
        code: JMP_JEQ_K,
        k,
        t,
        f,
    };
    let mut p = vec![
        Item::Load(OFF_ARCH),
        jeq(super::sys::AUDIT_ARCH_X86_64, Next, Errno(libc::ENOSYS)),
        Item::Load(OFF_NR),
        Item::Jump {
            code: JMP_JGE_K,
            k: super::sys::X32_SYSCALL_BIT,
            t: Errno(libc::ENOSYS),
            f: Next,
        },
    ];
    p.extend(NOTIFIED.iter().map(|&n| jeq(n, Notify, Next)));
    p.extend(NET_NOTIFIED.iter().map(|&n| jeq(n, Notify, Next)));
    p.extend(DENIED.iter().map(|&(n, e, _)| jeq(n, Errno(e), Next)));
    // Calls aimed at a thread: the caller itself (0) passes, any other
    // target is judged.
    for &n in PID_TARGETED {
        p.extend([
            jeq(n, Next, At(Mark::After(n))),
            Item::Load(off_arg_lo(0)),
            jeq(0, Allow, Notify),
            Item::Mark(Mark::After(n)),
        ]);
    }
    for &(n, own) in WHICH_WHO_TARGETED {
        p.extend([
            jeq(n, Next, At(Mark::After(n))),
            Item::Load(off_arg_lo(0)),
            jeq(own, Next, Notify),
            Item::Load(off_arg_lo(1)),
            jeq(0, Allow, Notify),
            Item::Mark(Mark::After(n)),
        ]);
    }
    // Code mappings: mmap(…, prot with PROT_EXEC, flags without
    // MAP_ANONYMOUS, fd, …) and mprotect/pkey_mprotect(…, prot with
    // PROT_EXEC) are judged; every other mapping passes.
    let jset = |k, t, f| Item::Jump {
        code: JMP_JSET_K,
        k,
        t,
        f,
    };
    p.extend([
        jeq(nr::MMAP, Next, At(Mark::After(nr::MMAP))),
        Item::Load(off_arg_lo(2)),
        jset(libc::PROT_EXEC as u32, Next, Allow),
        Item::Load(off_arg_lo(3)),
        jset(libc::MAP_ANONYMOUS as u32, Allow, Notify),
        Item::Mark(Mark::After(nr::MMAP)),
    ]);
    for n in [nr::MPROTECT, nr::PKEY_MPROTECT] {
        p.extend([
            jeq(n, Next, At(Mark::After(n))),
            Item::Load(off_arg_lo(2)),
            jset(libc::PROT_EXEC as u32, Notify, Allow),
            Item::Mark(Mark::After(n)),
        ]);
    }
    p.extend([
        // clone(flags, …): refuse namespace flags and CLONE_UNTRACED.
        jeq(nr::CLONE, Next, At(Mark::Named("seccomp"))),
        Item::Load(off_arg_lo(0)),
        Item::Jump {
            code: JMP_JSET_K,
            k: CLONE_REFUSED_MASK,
            t: Errno(libc::EPERM),
            f: Allow,
        },
        // seccomp(SECCOMP_SET_MODE_FILTER, flags, …): refuse a new listener.
        Item::Mark(Mark::Named("seccomp")),
        jeq(nr::SECCOMP, Next, At(Mark::Named("fcntl"))),
        Item::Load(off_arg_lo(0)),
        jeq(SECCOMP_SET_MODE_FILTER, Next, Allow),
        Item::Load(off_arg_lo(1)),
        Item::Jump {
            code: JMP_JSET_K,
            k: SECCOMP_FILTER_FLAG_NEW_LISTENER,
            t: Errno(libc::EPERM),
            f: Allow,
        },
        // fcntl(fd, F_SETSIG, sig != 0): refused. With F_SETOWN the tree can
        // have the kernel signal any process of its uid when I/O is ready,
        // the supervisor included; F_SETSIG would make that SIGKILL. The
        // default SIGIO is ignored by the supervisor.
        Item::Mark(Mark::Named("fcntl")),
        jeq(nr::FCNTL, Next, At(Mark::Named("sendto"))),
        Item::Load(off_arg_lo(1)),
        jeq(F_SETSIG, Next, Allow),
        Item::Load(off_arg_lo(2)),
        jeq(0, Allow, Errno(libc::EPERM)),
        // sendto(fd, buf, len, flags, addr, alen): with no address (a
        // connected socket) it goes nowhere the connect did not: allowed,
        // so data on connected sockets never meets the supervisor.
        Item::Mark(Mark::Named("sendto")),
        jeq(nr::SENDTO, Next, At(Mark::Named("socket"))),
        Item::Load(off_arg_lo(4)),
        jeq(0, Next, Notify),
        Item::Load(off_arg_lo(4) + 4),
        jeq(0, Allow, Notify),
        // socket(domain, type, …): no packet or raw sockets.
        Item::Mark(Mark::Named("socket")),
        jeq(nr::SOCKET, Next, At(Mark::Named("ioctl"))),
        Item::Load(off_arg_lo(0)),
        jeq(SOCKET_DOMAINS_REFUSED[0], Errno(libc::EPERM), Next),
        Item::Load(off_arg_lo(1)),
        Item::Jump {
            code: JMP_JSET_K,
            // SOCK_RAW is 3: both low bits set and none of the others of
            // the type field (checked below).
            k: SOCK_TYPE_MASK & !(libc::SOCK_RAW as u32),
            t: Allow,
            f: Next,
        },
        Item::Jump {
            code: JMP_JSET_K,
            k: libc::SOCK_RAW as u32,
            t: Next,
            f: Allow,
        },
        Item::Jump {
            code: JMP_JSET_K,
            k: 1,
            t: Next,
            f: Allow,
        },
        Item::Jump {
            code: JMP_JSET_K,
            k: 2,
            t: Errno(libc::EPERM),
            f: Allow,
        },
        // ioctl(fd, TIOCSTI, …): refused. The tree shares the supervisor's
        // terminal; with TIOCSTI it could type into it, e.g. an answer to
        // the escalation prompt. (The command is an unsigned int: the low
        // 32 bits are what the kernel compares.)
        Item::Mark(Mark::Named("ioctl")),
        jeq(nr::IOCTL, Next, Allow),
        Item::Load(off_arg_lo(1)),
        jeq(TIOCSTI, Errno(libc::EPERM), Next),
    ]);
    // ioctl(fd, FS_IOC_SETFLAGS, …) and the like: judged.
    p.extend(INODE_IOCTLS.iter().map(|&c| jeq(c, Notify, Next)));
    p.push(Item::Ret(RET_ALLOW));
    assemble(p)
}

/// Lays out the items, then appends one `ret` per distinct return label and
/// resolves every jump to a relative offset.
fn assemble(items: Vec<Item>) -> Vec<Insn> {
    let insn = |code, k| Insn {
        code,
        jt: 0,
        jf: 0,
        k,
    };
    let mut code: Vec<(Insn, Option<(Label, Label)>)> = Vec::new();
    let mut marks: Vec<(Mark, usize)> = Vec::new();
    let mut rets: Vec<Label> = Vec::new();
    for item in items {
        match item {
            Item::Load(off) => code.push((insn(LD_W_ABS, off), None)),
            Item::Ret(k) => code.push((insn(RET_K, k), None)),
            Item::Mark(name) => marks.push((name, code.len())),
            Item::Jump { code: c, k, t, f } => {
                for l in [t, f] {
                    let is_ret = matches!(l, Label::Allow | Label::Notify | Label::Errno(_));
                    if is_ret && !rets.contains(&l) {
                        rets.push(l);
                    }
                }
                code.push((insn(c, k), Some((t, f))));
            }
        }
    }
    let body_len = code.len();
    let target = |i: usize, l: Label| -> usize {
        match l {
            Label::Next => i + 1,
            Label::At(name) => marks
                .iter()
                .find(|(n, _)| *n == name)
                .map(|(_, pos)| *pos)
                // An unknown mark is a bug in `build`; the tests catch it
                // through the out-of-range offset.
                .unwrap_or(usize::MAX),
            ret => body_len + rets.iter().position(|r| *r == ret).unwrap_or(0),
        }
    };
    let offset = |i: usize, to: usize| -> u8 {
        // Offsets are relative to the next instruction; the program is small
        // enough that they fit in a u8 (checked by the tests).
        to.checked_sub(i + 1)
            .and_then(|d| u8::try_from(d).ok())
            .unwrap_or(u8::MAX)
    };
    let mut out: Vec<Insn> = code
        .into_iter()
        .enumerate()
        .map(|(i, (mut ins, targets))| {
            if let Some((t, f)) = targets {
                ins.jt = offset(i, target(i, t));
                ins.jf = offset(i, target(i, f));
            }
            ins
        })
        .collect();
    out.extend(rets.into_iter().map(|l| {
        let k = match l {
            Label::Allow => RET_ALLOW,
            Label::Notify => RET_USER_NOTIF,
            Label::Errno(e) => RET_ERRNO | (e as u32 & 0xffff),
            // Never collected (see above); the safe action regardless.
            Label::Next | Label::At(_) => RET_ERRNO | libc::ENOSYS as u32,
        };
        insn(RET_K, k)
    }));
    out
}

/// Runs `prog` on a `seccomp_data` the way the kernel would (only the
/// opcodes [`build`] emits). Returns the action, or `None` for a malformed
/// program.
pub fn evaluate(prog: &[Insn], nr: u32, arch: u32, args: [u64; 6]) -> Option<u32> {
    let mut data = [0u8; 64];
    data[0..4].copy_from_slice(&nr.to_le_bytes());
    data[4..8].copy_from_slice(&arch.to_le_bytes());
    for (i, a) in args.iter().enumerate() {
        data[16 + 8 * i..24 + 8 * i].copy_from_slice(&a.to_le_bytes());
    }
    let mut acc: u32 = 0;
    let mut pc = 0usize;
    for _ in 0..=prog.len() {
        let insn = prog.get(pc)?;
        match insn.code {
            LD_W_ABS => {
                let off = insn.k as usize;
                acc = u32::from_le_bytes(data.get(off..off + 4)?.try_into().ok()?);
                pc += 1;
            }
            RET_K => return Some(insn.k),
            JMP_JEQ_K | JMP_JGE_K | JMP_JSET_K => {
                let cond = match insn.code {
                    JMP_JEQ_K => acc == insn.k,
                    JMP_JGE_K => acc >= insn.k,
                    _ => acc & insn.k != 0,
                };
                pc += 1 + if cond { insn.jt } else { insn.jf } as usize;
            }
            _ => return None,
        }
    }
    None
}

/// The program in the kernel's `struct sock_filter` layout.
pub fn to_sock_filter(prog: &[Insn]) -> Vec<libc::sock_filter> {
    prog.iter()
        .map(|i| libc::sock_filter {
            code: i.code,
            jt: i.jt,
            jf: i.jf,
            k: i.k,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::supervisor::sys::AUDIT_ARCH_X86_64;

    const I386: u32 = 0x4000_0003;

    fn run(nr: u32, arch: u32, args: [u64; 6]) -> u32 {
        evaluate(&build(), nr, arch, args).expect("program runs to a ret")
    }

    fn errno(e: i32) -> u32 {
        RET_ERRNO | e as u32
    }

    #[test]
    fn jump_offsets_fit_and_every_path_returns() {
        let prog = build();
        assert!(prog.len() < 200, "program too long: {}", prog.len());
        for insn in &prog {
            assert_ne!(insn.jt, u8::MAX);
            assert_ne!(insn.jf, u8::MAX);
        }
        for n in 0..600 {
            assert!(evaluate(&prog, n, AUDIT_ARCH_X86_64, [0; 6]).is_some());
        }
    }

    #[test]
    fn foreign_arch_never_reaches_a_number_test() {
        // i386 open = 5 and execve = 11; x86-64 read = 0.
        for n in [0, 5, 11, 59, 257, 322] {
            assert_eq!(run(n, I386, [0; 6]), errno(libc::ENOSYS), "i386 nr {n}");
        }
    }

    #[test]
    fn x32_numbers_are_refused() {
        for n in [nr::OPENAT, nr::EXECVE, 0, 545, 520] {
            assert_eq!(
                run(n | 0x4000_0000, AUDIT_ARCH_X86_64, [0; 6]),
                errno(libc::ENOSYS)
            );
        }
    }

    #[test]
    fn gate_syscalls_are_notified() {
        for &n in NOTIFIED {
            assert_eq!(run(n, AUDIT_ARCH_X86_64, [0; 6]), RET_USER_NOTIF, "nr {n}");
        }
    }

    #[test]
    fn bypass_syscalls_are_denied_with_their_errno() {
        for &(n, e, _) in DENIED {
            assert_eq!(run(n, AUDIT_ARCH_X86_64, [0; 6]), errno(e), "nr {n}");
        }
    }

    #[test]
    fn clone_with_namespace_flags_is_denied_plain_clone_allowed() {
        let thread_flags = (libc::CLONE_VM
            | libc::CLONE_FS
            | libc::CLONE_FILES
            | libc::CLONE_SIGHAND
            | libc::CLONE_THREAD) as u64;
        assert_eq!(
            run(nr::CLONE, AUDIT_ARCH_X86_64, [thread_flags, 0, 0, 0, 0, 0]),
            RET_ALLOW
        );
        assert_eq!(
            run(
                nr::CLONE,
                AUDIT_ARCH_X86_64,
                [libc::SIGCHLD as u64, 0, 0, 0, 0, 0]
            ),
            RET_ALLOW
        );
        for flag in [
            libc::CLONE_NEWUSER,
            libc::CLONE_NEWNS,
            libc::CLONE_NEWPID,
            libc::CLONE_NEWNET,
            libc::CLONE_NEWUTS,
            libc::CLONE_NEWIPC,
            libc::CLONE_NEWCGROUP,
        ] {
            let flags = flag as u64 | libc::SIGCHLD as u64;
            assert_eq!(
                run(nr::CLONE, AUDIT_ARCH_X86_64, [flags, 0, 0, 0, 0, 0]),
                errno(libc::EPERM),
                "flag {flag:#x}"
            );
        }
    }

    #[test]
    fn seccomp_new_listener_is_denied_other_filters_allowed() {
        let listener = [1, 1 << 3, 0, 0, 0, 0];
        assert_eq!(
            run(nr::SECCOMP, AUDIT_ARCH_X86_64, listener),
            errno(libc::EPERM)
        );
        let with_tsync = [1, (1 << 3) | 1, 0, 0, 0, 0];
        assert_eq!(
            run(nr::SECCOMP, AUDIT_ARCH_X86_64, with_tsync),
            errno(libc::EPERM)
        );
        let plain = [1, 0, 0, 0, 0, 0];
        assert_eq!(run(nr::SECCOMP, AUDIT_ARCH_X86_64, plain), RET_ALLOW);
        let get_action_avail = [2, 0, 0, 0, 0, 0];
        assert_eq!(
            run(nr::SECCOMP, AUDIT_ARCH_X86_64, get_action_avail),
            RET_ALLOW
        );
    }

    #[test]
    fn fcntl_setsig_is_denied_other_commands_allowed() {
        let setsig_kill = [3, 10, libc::SIGKILL as u64, 0, 0, 0];
        assert_eq!(
            run(nr::FCNTL, AUDIT_ARCH_X86_64, setsig_kill),
            errno(libc::EPERM)
        );
        let setsig_default = [3, 10, 0, 0, 0, 0];
        assert_eq!(run(nr::FCNTL, AUDIT_ARCH_X86_64, setsig_default), RET_ALLOW);
        for cmd in [
            libc::F_GETFL,
            libc::F_SETFL,
            libc::F_SETOWN,
            libc::F_DUPFD_CLOEXEC,
        ] {
            let args = [3, cmd as u64, 9, 0, 0, 0];
            assert_eq!(run(nr::FCNTL, AUDIT_ARCH_X86_64, args), RET_ALLOW, "{cmd}");
        }
    }

    #[test]
    fn tiocsti_is_denied_other_ioctls_allowed() {
        let sti = [0, 0x5412, 0x7fff_0000, 0, 0, 0];
        assert_eq!(run(nr::IOCTL, AUDIT_ARCH_X86_64, sti), errno(libc::EPERM));
        // Upper bits of the command are ignored by the kernel, and here.
        let sti_high = [0, 0xffff_ffff_0000_5412, 0, 0, 0, 0];
        assert_eq!(
            run(nr::IOCTL, AUDIT_ARCH_X86_64, sti_high),
            errno(libc::EPERM)
        );
        for cmd in [
            libc::TCGETS,
            libc::TIOCGWINSZ,
            libc::FIONREAD,
            libc::TIOCSPGRP,
        ] {
            let args = [0, cmd, 0, 0, 0, 0];
            assert_eq!(run(nr::IOCTL, AUDIT_ARCH_X86_64, args), RET_ALLOW, "{cmd}");
        }
        for &cmd in INODE_IOCTLS {
            let args = [3, cmd as u64, 0x1000, 0, 0, 0];
            assert_eq!(run(nr::IOCTL, AUDIT_ARCH_X86_64, args), RET_USER_NOTIF);
        }
    }

    #[test]
    fn only_executable_file_mappings_are_notified() {
        let exec = libc::PROT_READ | libc::PROT_EXEC;
        let file = libc::MAP_PRIVATE;
        let anon = libc::MAP_PRIVATE | libc::MAP_ANONYMOUS;
        let mmap = |prot: i32, flags: i32| {
            run(
                nr::MMAP,
                AUDIT_ARCH_X86_64,
                [0, 4096, prot as u64, flags as u64, 3, 0],
            )
        };
        assert_eq!(mmap(exec, file), RET_USER_NOTIF);
        assert_eq!(mmap(exec, anon), RET_ALLOW);
        assert_eq!(mmap(libc::PROT_READ, file), RET_ALLOW);
        assert_eq!(mmap(libc::PROT_READ | libc::PROT_WRITE, anon), RET_ALLOW);
        for n in [nr::MPROTECT, nr::PKEY_MPROTECT] {
            assert_eq!(
                run(n, AUDIT_ARCH_X86_64, [0, 4096, exec as u64, 0, 0, 0]),
                RET_USER_NOTIF
            );
            assert_eq!(run(n, AUDIT_ARCH_X86_64, [0, 4096, 1, 0, 0, 0]), RET_ALLOW);
        }
    }

    #[test]
    fn network_calls_are_notified_sendto_only_with_an_address() {
        for &n in NET_NOTIFIED {
            assert_eq!(
                run(n, AUDIT_ARCH_X86_64, [3, 0, 0, 0, 0, 0]),
                RET_USER_NOTIF
            );
        }
        // sendto(fd, buf, len, flags, NULL, 0): a connected socket.
        assert_eq!(
            run(nr::SENDTO, AUDIT_ARCH_X86_64, [3, 0x1000, 10, 0, 0, 0]),
            RET_ALLOW
        );
        for addr in [0x7ffd_0000_1000u64, 0x1_0000_0000, 0x10] {
            assert_eq!(
                run(nr::SENDTO, AUDIT_ARCH_X86_64, [3, 0x1000, 10, 0, addr, 16]),
                RET_USER_NOTIF,
                "{addr:#x}"
            );
        }
    }

    #[test]
    fn packet_and_raw_sockets_are_refused() {
        let eperm = errno(libc::EPERM);
        let sock = |d: i32, t: i32| {
            run(
                nr::SOCKET,
                AUDIT_ARCH_X86_64,
                [d as u64, t as u64, 0, 0, 0, 0],
            )
        };
        assert_eq!(sock(libc::AF_PACKET, libc::SOCK_DGRAM), eperm);
        assert_eq!(sock(libc::AF_PACKET, libc::SOCK_RAW), eperm);
        assert_eq!(sock(libc::AF_INET, libc::SOCK_RAW), eperm);
        assert_eq!(
            sock(libc::AF_INET6, libc::SOCK_RAW | libc::SOCK_CLOEXEC),
            eperm
        );
        assert_eq!(
            sock(libc::AF_UNIX, libc::SOCK_RAW | libc::SOCK_NONBLOCK),
            eperm
        );
        for t in [
            libc::SOCK_STREAM,
            libc::SOCK_DGRAM,
            libc::SOCK_SEQPACKET,
            4,
            5,
            10,
        ] {
            for d in [
                libc::AF_INET,
                libc::AF_INET6,
                libc::AF_UNIX,
                libc::AF_NETLINK,
            ] {
                assert_eq!(sock(d, t | libc::SOCK_CLOEXEC), RET_ALLOW, "{d} {t}");
                assert_eq!(sock(d, t), RET_ALLOW, "{d} {t}");
            }
        }
    }

    #[test]
    fn clone_untraced_is_denied() {
        let flags = (libc::CLONE_UNTRACED | libc::SIGCHLD) as u64;
        assert_eq!(
            run(nr::CLONE, AUDIT_ARCH_X86_64, [flags, 0, 0, 0, 0, 0]),
            errno(libc::EPERM)
        );
    }

    #[test]
    fn calls_aimed_at_another_thread_are_notified_at_the_caller_allowed() {
        for &n in PID_TARGETED {
            assert_eq!(run(n, AUDIT_ARCH_X86_64, [0, 7, 0, 0, 0, 0]), RET_ALLOW);
            for pid in [1u64, 4242, 0xffff_ffff] {
                assert_eq!(
                    run(n, AUDIT_ARCH_X86_64, [pid, 7, 0, 0, 0, 0]),
                    RET_USER_NOTIF,
                    "nr {n} pid {pid}"
                );
            }
        }
        for &(n, own) in WHICH_WHO_TARGETED {
            assert_eq!(
                run(n, AUDIT_ARCH_X86_64, [own as u64, 0, 5, 0, 0, 0]),
                RET_ALLOW
            );
            for (which, who) in [(own as u64, 42), (own as u64 + 1, 0), (own as u64 + 2, 0)] {
                assert_eq!(
                    run(n, AUDIT_ARCH_X86_64, [which, who, 5, 0, 0, 0]),
                    RET_USER_NOTIF,
                    "nr {n} which {which} who {who}"
                );
            }
        }
    }

    #[test]
    fn ordinary_syscalls_are_allowed() {
        for n in [0u32, 1, 3, 9, 39, 57, 60, 231] {
            assert_eq!(run(n, AUDIT_ARCH_X86_64, [0; 6]), RET_ALLOW, "nr {n}");
        }
    }
}
