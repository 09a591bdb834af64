//! The adversarial suite: one small program per escape route (sources in
//! `tests/escapes/`), each first run natively to show that the attack works
//! there (so a test cannot silently rot into testing nothing), then under
//! supervision with a policy that forbids its target, checking that the
//! forbidden *effect* is absent (file unchanged, marker not written,
//! supervisor alive) and that the ledger verifies.
//!
//! Where an attack cannot work natively on this kernel or as this user
//! (x32 compiled out, an operation that needs root), the test asserts that
//! fact explicitly instead of skipping silently.
//!
//! The protected file is `WS/protected/data` ("original\n"); the forbidden
//! program is the marker (`MARKER_C`), blocked by path and by content hash.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::*;

const ORIGINAL: &str = "original\n";

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// Compiles `src` with extra compiler flags into the env's bin directory.
fn cc_with(env: &Env, name: &str, src: &str, flags: &[&str]) -> PathBuf {
    env.cc_with(name, src, flags)
}

fn sha256_hex(path: &Path) -> String {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(std::fs::read(path).unwrap());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// A test's world: the env, the protected file and the marker program.
struct World {
    env: Env,
    marker: PathBuf,
}

impl World {
    fn new() -> World {
        let env = Env::new();
        let marker = env.cc("marker", MARKER_C);
        let w = World { env, marker };
        w.reset();
        w
    }

    fn ws(&self) -> &Path {
        &self.env.ws
    }

    fn data(&self) -> PathBuf {
        self.ws().join("protected/data")
    }

    /// Empties the workspace, then recreates `protected/data` and `allowed/`.
    fn reset(&self) {
        for e in std::fs::read_dir(self.ws()).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() && !p.is_symlink() {
                std::fs::remove_dir_all(&p).unwrap();
            } else {
                std::fs::remove_file(&p).unwrap();
            }
        }
        std::fs::create_dir(self.ws().join("protected")).unwrap();
        std::fs::create_dir(self.ws().join("allowed")).unwrap();
        std::fs::write(self.data(), ORIGINAL).unwrap();
        std::fs::write(self.ws().join("allowed/data"), "allowed\n").unwrap();
    }

    fn content(&self) -> String {
        std::fs::read_to_string(self.data()).unwrap_or_default()
    }

    fn exists(&self, name: &str) -> bool {
        self.ws().join(name).symlink_metadata().is_ok()
    }

    /// The policy: writes under `protected/` and the marker (by path and by
    /// content) are forbidden; `extra` rules are appended.
    fn policy(&self, extra: &str) -> PathBuf {
        self.env.policy(&format!(
            r#"version: 1
mode: enforce
defaults:
  exec: allow
  open: allow
rules:
  - id: protect
    open:
      path: ["{ws}/protected/**"]
      access: [write, create, truncate, append]
    decision: block
    reason: protected data
  - id: block-marker
    exec:
      program: "{marker}"
    decision: block
    reason: the marker program is forbidden
  - id: block-marker-content
    exec:
      sha256: ["{sha}"]
    decision: block
    reason: the marker program is forbidden, whatever its name
{extra}"#,
            ws = self.ws().display(),
            marker = self.marker.display(),
            sha = sha256_hex(&self.marker),
        ))
    }

    /// Runs natively (in the workspace); returns stdout.
    fn native<S: AsRef<std::ffi::OsStr>>(&self, cmd: &[S]) -> String {
        let out = self.env.native(cmd);
        format!("{}{}", stdout(&out), stderr(&out))
    }

    /// Runs supervised with `policy`; asserts the supervisor survived (the
    /// command's status, or 128+N when a refused image was killed; never
    /// 125, Lexecon's own failure) and sealed a valid ledger.
    fn supervise<S: AsRef<std::ffi::OsStr>>(&self, policy: &Path, cmd: &[S]) -> Output {
        self.ended_normally(self.env.supervise(policy, cmd))
    }

    /// `out`, of a supervised run, once its end and its ledger are checked.
    fn ended_normally(&self, out: Output) -> Output {
        assert!(
            out.status.code().is_some_and(|c| c != 125),
            "the supervised run did not end normally ({:?}):\n{}\n{}",
            out.status,
            stdout(&out),
            stderr(&out)
        );
        self.env.assert_valid();
        out
    }

    /// Asserts the protected file is untouched and nothing was created in
    /// `protected/`.
    fn assert_protected(&self, out: &Output) {
        assert_eq!(
            self.content(),
            ORIGINAL,
            "the protected file was changed:\n{}\n{}",
            stdout(out),
            stderr(out)
        );
        let entries: Vec<_> = std::fs::read_dir(self.ws().join("protected"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(
            entries.len(),
            1,
            "files appeared in protected/: {entries:?}"
        );
    }
}

/// `key=value` from a program's output.
fn field<'a>(out: &'a str, key: &str) -> Option<&'a str> {
    out.lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix('='))
        .map(str::trim)
}

fn fields<'a>(out: &'a str, key: &str) -> Vec<&'a str> {
    out.lines()
        .filter_map(|l| l.strip_prefix(key)?.strip_prefix('='))
        .map(str::trim)
        .collect()
}

fn errno_str(e: i32) -> String {
    format!("-{e}")
}

// ------------------------------------------------------------ foreign ABIs

const FOREIGN_ABI_C: &str = include_str!("escapes/foreign_abi.c");

fn foreign_abi(w: &World) -> PathBuf {
    cc_with(
        &w.env,
        "foreign_abi",
        FOREIGN_ABI_C,
        &["-static", "-no-pie"],
    )
}

#[test]
fn i386_int80_open_truncates_protected_file() {
    let w = World::new();
    let prog = foreign_abi(&w);
    let args = [
        prog.as_os_str(),
        "i386-open".as_ref(),
        "protected/data".as_ref(),
    ];
    let native = w.native(&args);
    assert_eq!(
        w.content(),
        "pwned\n",
        "i386 open via int $0x80 must work natively (IA32 emulation): {native}"
    );
    w.reset();
    let out = w.supervise(&w.policy(""), &args);
    w.assert_protected(&out);
    assert_eq!(field(&stdout(&out), "ret"), Some("-38"), "ENOSYS expected");
}

#[test]
fn i386_int80_execve_runs_forbidden_program() {
    let w = World::new();
    let prog = foreign_abi(&w);
    let args = [
        prog.as_os_str(),
        "i386-exec".as_ref(),
        w.marker.as_os_str(),
        "ran.txt".as_ref(),
    ];
    let native = w.native(&args);
    assert!(
        w.exists("ran.txt"),
        "i386 execve must work natively: {native}"
    );
    w.reset();
    let out = w.supervise(&w.policy(""), &args);
    assert!(!w.exists("ran.txt"), "the marker ran: {}", stderr(&out));
    assert_eq!(field(&stdout(&out), "ret"), Some("-38"), "ENOSYS expected");
}

/// Whether the kernel has the x32 ABI: an x32 `getpid` works natively.
fn x32_supported(w: &World, prog: &Path) -> bool {
    // x32 openat of a file that need not exist: ENOSYS means no x32 at all.
    let out = w.native(&[
        prog.as_os_str(),
        "x32-open".as_ref(),
        "/nonexistent".as_ref(),
    ]);
    field(&out, "ret") != Some("-38")
}

#[test]
fn x32_openat_truncates_protected_file() {
    let w = World::new();
    let prog = foreign_abi(&w);
    let args = [
        prog.as_os_str(),
        "x32-open".as_ref(),
        "protected/data".as_ref(),
    ];
    let native = w.native(&args);
    if x32_supported(&w, &prog) {
        assert_eq!(w.content(), "pwned\n", "x32 openat natively: {native}");
    } else {
        // CONFIG_X86_X32_ABI is off: the kernel itself answers ENOSYS, so
        // the attack cannot work natively; the filter must still refuse it.
        assert_eq!(field(&native, "ret"), Some("-38"), "{native}");
        assert_eq!(w.content(), ORIGINAL);
    }
    w.reset();
    let out = w.supervise(&w.policy(""), &args);
    w.assert_protected(&out);
    assert_eq!(field(&stdout(&out), "ret"), Some("-38"));
}

#[test]
fn x32_execve_runs_forbidden_program() {
    let w = World::new();
    let prog = foreign_abi(&w);
    let args = [
        prog.as_os_str(),
        "x32-exec".as_ref(),
        w.marker.as_os_str(),
        "ran.txt".as_ref(),
    ];
    let native = w.native(&args);
    if x32_supported(&w, &prog) {
        assert!(w.exists("ran.txt"), "x32 execve natively: {native}");
    } else {
        // No x32 in this kernel (see above).
        assert_eq!(field(&native, "ret"), Some("-38"), "{native}");
    }
    w.reset();
    let out = w.supervise(&w.policy(""), &args);
    assert!(!w.exists("ran.txt"), "the marker ran");
    assert_eq!(field(&stdout(&out), "ret"), Some("-38"));
}

// --------------------------------------------------------- bypass syscalls

#[test]
fn io_uring_openat_writes_protected_file() {
    let w = World::new();
    let prog = w.env.cc("io_uring", include_str!("escapes/io_uring.c"));
    let args = [prog.as_os_str(), "protected/data".as_ref()];
    let disabled = std::fs::read_to_string("/proc/sys/kernel/io_uring_disabled")
        .map(|s| s.trim() != "0")
        .unwrap_or(false);
    let native = w.native(&args);
    if disabled && !is_root() {
        // kernel.io_uring_disabled keeps io_uring from this user natively.
        assert!(field(&native, "setup").is_some_and(|s| s.starts_with('-')));
    } else {
        assert_eq!(w.content(), "pwned\n", "io_uring open natively: {native}");
    }
    w.reset();
    let out = w.supervise(&w.policy(""), &args);
    w.assert_protected(&out);
    assert_eq!(
        field(&stdout(&out), "setup"),
        Some("-38"),
        "ENOSYS expected"
    );
}

#[test]
fn second_seccomp_listener_approves_forbidden_exec() {
    let w = World::new();
    let prog = w.env.cc("listener", include_str!("escapes/listener.c"));
    let args = [prog.as_os_str(), w.marker.as_os_str(), "ran.txt".as_ref()];
    let native = w.native(&args);
    assert!(
        field(&native, "notified") == Some("1") && w.exists("ran.txt"),
        "natively the tree's own listener approves the exec: {native}"
    );
    w.reset();
    let out = w.supervise(&w.policy(""), &args);
    let s = stdout(&out);
    assert!(!w.exists("ran.txt"), "the marker ran: {s}");
    assert_eq!(field(&s, "listener"), Some("-1"), "EPERM expected: {s}");
    assert_eq!(field(&s, "notified"), None);
}

fn sibling_attack(mode: &str) {
    let w = World::new();
    let prog = w.env.cc("sibling", include_str!("escapes/sibling.c"));
    let args = [prog.as_os_str(), mode.as_ref(), "poked.txt".as_ref()];
    let native = w.native(&args);
    assert_eq!(
        field(&native, "attack"),
        Some("0"),
        "{mode} natively: {native}"
    );
    if mode == "pvr" {
        assert_eq!(field(&native, "read"), Some("SECRET"), "{native}");
    } else {
        assert!(w.exists("poked.txt"), "{mode} natively: {native}");
    }
    w.reset();
    let out = w.supervise(&w.policy(""), &args);
    let s = stdout(&out);
    assert!(!w.exists("poked.txt"), "the sibling was rewritten: {s}");
    assert_eq!(field(&s, "read"), None, "the sibling was read: {s}");
    assert_eq!(field(&s, "attack"), Some("-1"), "EPERM expected: {s}");
}

#[test]
fn ptrace_attach_of_a_sibling() {
    sibling_attack("ptrace-attach");
}

#[test]
fn ptrace_seize_of_a_sibling() {
    sibling_attack("ptrace-seize");
}

#[test]
fn process_vm_writev_into_a_sibling() {
    sibling_attack("pvw");
}

#[test]
fn process_vm_readv_of_a_sibling() {
    sibling_attack("pvr");
}

#[test]
fn open_by_handle_at_writes_protected_file() {
    let w = World::new();
    let prog = w.env.cc("handle", include_str!("escapes/handle.c"));
    let handle = w.env.root.join("handle.bin");
    let save = [
        prog.as_os_str(),
        "save".as_ref(),
        "protected/data".as_ref(),
        handle.as_os_str(),
    ];
    let open = [
        prog.as_os_str(),
        "open".as_ref(),
        ".".as_ref(),
        handle.as_os_str(),
    ];
    let native = w.native(&save);
    assert_eq!(
        field(&native, "name"),
        Some("0"),
        "name_to_handle_at: {native}"
    );
    let native = w.native(&open);
    if is_root() {
        assert_eq!(
            w.content(),
            "pwned\n",
            "open_by_handle_at natively: {native}"
        );
    } else {
        // open_by_handle_at needs CAP_DAC_READ_SEARCH: an ordinary user
        // cannot use it even natively.
        assert_eq!(field(&native, "open"), Some("-1"), "{native}");
    }
    // Same inode (a handle names an inode): the handle saved natively still
    // names the protected file, and it is its use that must be refused.
    std::fs::write(w.data(), ORIGINAL).unwrap();
    let policy = w.policy("");
    let out = w.supervise(&policy, &save);
    assert_eq!(field(&stdout(&out), "name"), Some("-1"), "EPERM expected");
    let out = w.supervise(&policy, &open);
    w.assert_protected(&out);
    assert_eq!(field(&stdout(&out), "open"), Some("-1"), "EPERM expected");
}

fn namespaces(w: &World) -> PathBuf {
    w.env.cc("namespaces", include_str!("escapes/namespaces.c"))
}

/// Whether this user may create user namespaces natively.
fn userns_available() -> bool {
    Command::new("unshare")
        .args(["--user", "true"])
        .output()
        .is_ok_and(|o| o.status.success())
}

#[test]
fn unshare_mount_namespace_bind_over_allowed_path() {
    let w = World::new();
    let prog = namespaces(&w);
    let args = [
        prog.as_os_str(),
        "unshare-bind".as_ref(),
        w.ws().as_os_str(),
    ];
    let native = w.native(&args);
    if is_root() || userns_available() {
        assert_eq!(
            w.content(),
            "pwned\n",
            "the bind mount reaches the protected file natively: {native}"
        );
    } else {
        // User namespaces are disabled for this user: no mount namespace
        // without privilege.
        assert!(field(&native, "unshare").is_some_and(|r| r != "0"));
    }
    w.reset();
    let out = w.supervise(&w.policy(""), &args);
    w.assert_protected(&out);
    assert_eq!(
        field(&stdout(&out), "unshare"),
        Some("-1"),
        "EPERM expected"
    );
}

fn clone_newuser(mode: &str, errno: i32) {
    let w = World::new();
    let prog = namespaces(&w);
    let args = [prog.as_os_str(), mode.as_ref(), "inside.txt".as_ref()];
    let native = w.native(&args);
    if is_root() || userns_available() {
        assert!(w.exists("inside.txt"), "{mode} natively: {native}");
    } else {
        // No user namespaces for this user (see above).
        assert!(!w.exists("inside.txt"));
    }
    w.reset();
    let out = w.supervise(&w.policy(""), &args);
    assert!(
        !w.exists("inside.txt"),
        "a child ran in a new user namespace"
    );
    let step = mode.split('-').next().unwrap();
    assert_eq!(field(&stdout(&out), step), Some(&*errno_str(errno)));
}

#[test]
fn clone_with_new_user_namespace() {
    clone_newuser("clone-newuser", libc::EPERM);
}

#[test]
fn clone3_with_new_user_namespace() {
    clone_newuser("clone3-newuser", libc::ENOSYS);
}

#[test]
fn chroot_changes_what_absolute_paths_mean() {
    let w = World::new();
    let prog = namespaces(&w);
    let args = [prog.as_os_str(), "chroot".as_ref(), w.ws().as_os_str()];
    let native = w.native(&args);
    if is_root() {
        assert_eq!(w.content(), "pwned\n", "chroot natively: {native}");
    } else {
        // chroot needs CAP_SYS_CHROOT.
        assert_eq!(field(&native, "chroot"), Some("-1"), "{native}");
    }
    w.reset();
    let out = w.supervise(&w.policy(""), &args);
    w.assert_protected(&out);
    assert_eq!(field(&stdout(&out), "chroot"), Some("-1"), "EPERM expected");
}

/// How a refused syscall behaves natively.
enum Native {
    /// It succeeds (returns a non-negative value).
    Works,
    /// It succeeds as root; as an ordinary user the kernel refuses it
    /// (a privilege or a sysctl), so the filter's errno is all there is to
    /// check.
    NeedsRoot,
    /// It reaches the kernel (any result but the filter's errno).
    Reaches,
    /// Not run natively: it would change the host (mounts, the kernel).
    Unsafe,
    /// May be compiled out of the kernel (`CONFIG_USELIB`): natively it
    /// either reaches the kernel or fails with `ENOSYS` from the kernel.
    Optional,
}

/// Runs one syscall of the refused list natively (as `native` says) and
/// supervised, where it must fail with `errno` (the README's table).
fn refused(name: &str, native: Native, errno: i32) {
    let w = World::new();
    let prog = w.env.cc("refused", include_str!("escapes/refused.c"));
    let scratch = w.ws().join("allowed");
    let args = [prog.as_os_str(), name.as_ref(), scratch.as_os_str()];
    let ret = |out: &str| -> i64 {
        field(out, "ret")
            .and_then(|r| r.parse().ok())
            .unwrap_or_else(|| panic!("{name}: no result in {out}"))
    };
    match native {
        Native::Works => {
            let out = w.native(&args);
            assert!(ret(&out) >= 0, "{name} natively: {out}");
        }
        Native::NeedsRoot if is_root() => {
            let out = w.native(&args);
            assert!(ret(&out) >= 0, "{name} natively as root: {out}");
        }
        Native::Reaches => {
            let out = w.native(&args);
            assert_ne!(ret(&out), -(errno as i64), "{name} natively: {out}");
        }
        Native::Optional => {
            let out = w.native(&args);
            assert!(ret(&out) != -1, "{name} natively: {out}");
        }
        Native::NeedsRoot | Native::Unsafe => {}
    }
    let out = w.supervise(&w.policy(""), &args);
    assert_eq!(
        ret(&stdout(&out)),
        -(errno as i64),
        "{name} under supervision: {}",
        stdout(&out)
    );
}

#[test]
fn bpf_is_refused() {
    refused("bpf", Native::NeedsRoot, libc::EPERM);
}

#[test]
fn userfaultfd_is_refused() {
    refused("userfaultfd", Native::Works, libc::EPERM);
}

#[test]
fn kcmp_is_refused() {
    refused("kcmp", Native::Works, libc::EPERM);
}

#[test]
fn pidfd_getfd_of_a_sibling_is_refused() {
    refused("pidfd_getfd", Native::Works, libc::EPERM);
}

#[test]
fn pidfd_send_signal_is_refused() {
    refused("pidfd_send_signal", Native::Works, libc::EPERM);
}

#[test]
fn perf_event_open_is_refused() {
    refused("perf_event_open", Native::Works, libc::EPERM);
}

#[test]
fn keyring_calls_are_refused() {
    refused("add_key", Native::Works, libc::EPERM);
    refused("keyctl", Native::Works, libc::EPERM);
    refused("request_key", Native::Reaches, libc::EPERM);
}

#[test]
fn setns_is_refused() {
    refused("setns", Native::NeedsRoot, libc::EPERM);
}

#[test]
fn mount_family_is_refused() {
    for name in [
        "mount",
        "umount2",
        "pivot_root",
        "open_tree",
        "move_mount",
        "fsopen",
        "fsconfig",
        "fsmount",
        "fspick",
        "mount_setattr",
    ] {
        refused(name, Native::Unsafe, libc::EPERM);
    }
}

#[test]
fn kexec_and_uselib_are_refused() {
    refused("kexec_load", Native::Unsafe, libc::EPERM);
    refused("kexec_file_load", Native::Unsafe, libc::EPERM);
    refused("uselib", Native::Optional, libc::ENOSYS);
}

// ------------------------------------------------ path routes to a file

/// Runs `paths MODE` natively (it must change the protected file) and
/// supervised (it must not; every attempt is refused).
fn path_route(mode: &str) -> Output {
    let w = World::new();
    let prog = w.env.cc("paths", include_str!("escapes/paths.c"));
    let args = [prog.as_os_str(), mode.as_ref()];
    let native = w.native(&args);
    assert_eq!(w.content(), "pwned\n", "{mode} natively: {native}");
    assert!(
        fields(&native, "open").iter().all(|r| !r.starts_with('-')),
        "every route of {mode} works natively: {native}"
    );
    w.reset();
    let out = w.supervise(&w.policy(""), &args);
    w.assert_protected(&out);
    let s = stdout(&out);
    let results = fields(&s, "open");
    assert!(!results.is_empty(), "{s}");
    for r in &results {
        assert!(
            r.starts_with('-'),
            "{mode}: an open for write succeeded: {s}"
        );
    }
    out
}

#[test]
fn symlink_to_protected_file() {
    path_route("symlink");
}

#[test]
fn hard_link_to_protected_file() {
    path_route("hardlink");
}

#[test]
fn dotdot_to_protected_file() {
    path_route("dotdot");
}

#[test]
fn relative_path_to_protected_file() {
    path_route("relative");
}

#[test]
fn dirfd_openat_to_protected_file() {
    path_route("dirfd");
}

#[test]
fn fchdir_cwd_to_protected_file() {
    path_route("fchdir");
}

#[test]
fn proc_self_root_to_protected_file() {
    path_route("proc-root");
}

#[test]
fn proc_self_cwd_to_protected_file() {
    path_route("proc-cwd");
}

#[test]
fn proc_self_fd_reopen_of_read_only_fd_for_write() {
    let out = path_route("proc-fd-rdonly");
    // Judged as a write of the real file, under its own name.
    assert!(stderr(&out).contains("protected/data"), "{}", stderr(&out));
}

#[test]
fn proc_self_fd_reopen_of_o_path_fd_for_write() {
    let out = path_route("proc-fd-opath");
    assert!(stderr(&out).contains("protected/data"), "{}", stderr(&out));
}

#[test]
fn openat2_to_protected_file() {
    path_route("openat2");
}

#[test]
fn legacy_open_and_creat_of_protected_file() {
    path_route("legacy");
}

// ---------------------------------------------------------- exec identity

/// Runs `cmd` natively (the marker must run and write `ran.txt`) and
/// supervised with `policy` (it must not).
fn exec_route(w: &World, policy: &Path, cmd: &[&std::ffi::OsStr]) -> Output {
    let native = w.native(cmd);
    assert!(w.exists("ran.txt"), "the marker runs natively: {native}");
    std::fs::remove_file(w.ws().join("ran.txt")).unwrap();
    let out = w.supervise(policy, cmd);
    assert!(
        !w.exists("ran.txt"),
        "the forbidden program ran:\n{}\n{}",
        stdout(&out),
        stderr(&out)
    );
    out
}

fn exec_prog(w: &World) -> PathBuf {
    w.env.cc("exec", include_str!("escapes/exec.c"))
}

fn os(s: &str) -> &std::ffi::OsStr {
    s.as_ref()
}

/// A policy with only the rule by path for the marker.
fn path_only_policy(w: &World) -> PathBuf {
    w.env.policy(&format!(
        "version: 1\nmode: enforce\ndefaults: {{exec: allow, open: allow}}\nrules:\n  - id: block-marker\n    exec: {{program: \"{}\"}}\n    decision: block\n    reason: forbidden\n",
        w.marker.display()
    ))
}

#[test]
fn exec_through_a_symlink() {
    let w = World::new();
    let prog = exec_prog(&w);
    let link = w.env.root.join("link-to-marker");
    std::os::unix::fs::symlink(&w.marker, &link).unwrap();
    // Only the rule by path: the symlink must resolve to it.
    let policy = path_only_policy(&w);
    let cmd = [
        prog.as_os_str(),
        os("path"),
        link.as_os_str(),
        os("ran.txt"),
    ];
    exec_route(&w, &policy, &cmd);
}

#[test]
fn exec_through_a_hard_link_with_a_path_rule() {
    let w = World::new();
    let prog = exec_prog(&w);
    let link = w.env.root.join("hardlink-to-marker");
    std::fs::hard_link(&w.marker, &link).unwrap();
    let policy = path_only_policy(&w);
    let cmd = [
        prog.as_os_str(),
        os("path"),
        link.as_os_str(),
        os("ran.txt"),
    ];
    exec_route(&w, &policy, &cmd);
}

#[test]
fn exec_through_a_hard_link_with_a_content_rule() {
    let w = World::new();
    let prog = exec_prog(&w);
    let link = w.env.root.join("hardlink-to-marker");
    std::fs::hard_link(&w.marker, &link).unwrap();
    let cmd = [
        prog.as_os_str(),
        os("path"),
        link.as_os_str(),
        os("ran.txt"),
    ];
    exec_route(&w, &w.policy(""), &cmd);
}

#[test]
fn exec_through_a_copy() {
    let w = World::new();
    let prog = exec_prog(&w);
    let copy = w.env.root.join("copy-of-marker");
    std::fs::copy(&w.marker, &copy).unwrap();
    let cmd = [
        prog.as_os_str(),
        os("path"),
        copy.as_os_str(),
        os("ran.txt"),
    ];
    let out = exec_route(&w, &w.policy(""), &cmd);
    assert!(
        stderr(&out).contains("block-marker-content"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn execveat_empty_path_of_an_o_path_fd() {
    let w = World::new();
    let prog = exec_prog(&w);
    let cmd = [
        prog.as_os_str(),
        os("execveat"),
        w.marker.as_os_str(),
        os("ran.txt"),
    ];
    exec_route(&w, &path_only_policy(&w), &cmd);
}

#[test]
fn fexecve_of_an_open_fd() {
    let w = World::new();
    let prog = exec_prog(&w);
    let cmd = [
        prog.as_os_str(),
        os("fexecve"),
        w.marker.as_os_str(),
        os("ran.txt"),
    ];
    exec_route(&w, &path_only_policy(&w), &cmd);
}

#[test]
fn memfd_create_and_fexecve() {
    let w = World::new();
    let prog = exec_prog(&w);
    let cmd = [
        prog.as_os_str(),
        os("memfd"),
        w.marker.as_os_str(),
        os("ran.txt"),
    ];
    exec_route(&w, &w.policy(""), &cmd);
}

#[test]
fn shebang_script_naming_the_forbidden_interpreter() {
    let w = World::new();
    let prog = exec_prog(&w);
    let script = w.env.root.join("script");
    // The kernel runs `MARKER ran.txt script`.
    std::fs::write(&script, format!("#!{} ran.txt\n", w.marker.display())).unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    let cmd = [prog.as_os_str(), os("path"), script.as_os_str()];
    let out = exec_route(&w, &path_only_policy(&w), &cmd);
    // Allowed as a script at the request, killed as the marker at the
    // exec event, before its first instruction.
    assert!(stderr(&out).contains("lexecon: killed"), "{}", stderr(&out));
}

const LD_SO: &str = "/lib64/ld-linux-x86-64.so.2";

#[test]
fn dynamic_loader_runs_the_forbidden_program() {
    let w = World::new();
    assert!(Path::new(LD_SO).exists(), "no {LD_SO} on this system");
    let cmd = [os(LD_SO), w.marker.as_os_str(), os("ran.txt")];
    exec_route(&w, &w.policy(""), &cmd);
}

#[test]
fn ld_preload_constructor_execs_the_forbidden_program() {
    let w = World::new();
    let lib = cc_with(
        &w.env,
        "preload.so",
        include_str!("escapes/preload.c"),
        &["-shared", "-fPIC"],
    );
    let preload = format!("LD_PRELOAD={}", lib.display());
    let marker = format!("LX_MARKER={}", w.marker.display());
    let cmd = [
        os("/usr/bin/env"),
        os(&preload),
        os(&marker),
        os("LX_OUT=ran.txt"),
        os("/bin/true"),
    ];
    exec_route(&w, &path_only_policy(&w), &cmd);
}

// -------------------------------------------------------- self-protection

const SELF_C: &str = include_str!("escapes/self.c");

/// The multi-threaded stand-in parent for native runs of `self`.
fn stand_in(w: &World) -> PathBuf {
    w.env
        .cc("threads_parent", include_str!("escapes/threads_parent.c"))
}

fn private_key(w: &World) -> PathBuf {
    let key = w.env.keys.join("ledger.key");
    assert!(key.exists(), "no private key at {}", key.display());
    key
}

fn leaked(w: &World) -> Vec<u8> {
    std::fs::read(w.ws().join("leak.bin")).unwrap_or_default()
}

fn bytes(out: &str, key: &str) -> i64 {
    field(out, key)
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no {key} in {out}"))
}

#[test]
fn self_protection_keys_ledger_and_supervisor_proc_entries() {
    let w = World::new();
    let prog = cc_with(&w.env, "self", SELF_C, &[]);
    let parent = stand_in(&w);
    let key = private_key(&w);
    // Natively, against stand-in keys, ledger and supervisor (the parent):
    // everything is reachable. (The real key must not be written to.)
    let fake_dir = w.env.root.join("fake-ledger");
    std::fs::create_dir(&fake_dir).unwrap();
    let fake_keys = w.env.root.join("fake-keys");
    std::fs::create_dir(&fake_keys).unwrap();
    let fake_key = fake_keys.join("ledger.key");
    std::fs::copy(&key, &fake_key).unwrap();
    let fake_ledger = fake_dir.join("ledger.jsonl");
    std::fs::write(&fake_ledger, "{}\n").unwrap();
    let native = w.native(&[
        parent.as_os_str(),
        prog.as_os_str(),
        os("files"),
        fake_keys.as_os_str(),
        fake_key.as_os_str(),
        fake_ledger.as_os_str(),
    ]);
    for what in [
        "keys-dir",
        "key-read",
        "key-symlink",
        "ledger-read",
        "ledger-write",
        "ledger-dir-create",
        "sup-environ",
        "sup-maps",
        "sup-mem",
        "sup-task-environ",
    ] {
        assert!(bytes(&native, what) >= 0, "{what} natively: {native}");
    }
    assert!(bytes(&native, "key-read") > 0, "{native}");
    let key_bytes = std::fs::read(&fake_key).unwrap();
    assert!(leaked(&w)
        .windows(key_bytes.len())
        .any(|win| win == key_bytes.as_slice()));
    w.reset();

    let ledger_before = std::fs::read(&w.env.ledger).unwrap_or_default();
    let out = w.supervise(
        &w.policy(""),
        &[
            prog.as_os_str(),
            os("files"),
            w.env.keys.as_os_str(),
            key.as_os_str(),
            w.env.ledger.as_os_str(),
        ],
    );
    let s = stdout(&out);
    let attempts: Vec<&str> = s.lines().collect();
    assert!(attempts.len() > 100, "{s}");
    // Reading the supervisor's stat, status and cmdline is allowed: exactly
    // those, for reading, named as the process's own entries.
    let public = ["public-stat", "public-status", "public-cmdline"];
    for line in &attempts {
        let (what, r) = line.split_once('=').unwrap();
        if what == "ledger-dir-create" {
            // A new file next to a ledger named with --ledger: the
            // directory is not the product's own, only the ledger's own
            // files are protected.
            assert!(!r.starts_with('-'), "{line}\n{s}");
            continue;
        }
        if public.contains(&what) {
            assert!(
                r.parse::<i64>().is_ok_and(|n| n > 0),
                "{what} is readable: {line}\n{s}"
            );
            continue;
        }
        assert!(
            r.starts_with('-'),
            "{what} reached the supervisor's secrets: {line}\n{s}"
        );
    }
    for what in public {
        assert!(bytes(&s, what) > 0, "{what}: {s}");
    }
    // What was read is the supervisor's own (its pid, its name), not the
    // directory above it.
    let leak = leaked(&w);
    let text = String::from_utf8_lossy(&leak);
    assert!(
        text.contains("Name:\t") && text.contains("\nPPid:\t"),
        "{text}"
    );
    assert!(
        !leak
            .windows(key_bytes.len())
            .any(|win| win == key_bytes.as_slice()),
        "the key leaked"
    );
    for secret in ["PRIVATE+KEY", "environ", "HOME="] {
        assert!(!text.contains(secret), "{secret} leaked: {text}");
    }
    let ledger_after = std::fs::read(&w.env.ledger).unwrap();
    assert!(ledger_after.starts_with(&ledger_before));
    // Nothing the tree wrote reached the ledger: every line is still one of
    // the supervisor's records (a bare substring check would be fooled by
    // the base64 of a key or signature that happens to spell the word).
    for line in String::from_utf8_lossy(&ledger_after).lines() {
        assert!(
            serde_json::from_str::<serde_json::Value>(line).is_ok_and(|v| v.is_object()),
            "a line the supervisor did not write reached the ledger: {line:?}"
        );
    }
    let err = stderr(&out);
    for rule in [
        "lexecon.self-protect.keys",
        "lexecon.self-protect.ledger",
        "lexecon.self-protect.supervisor",
    ] {
        assert!(err.contains(rule), "{rule} not reported: {err}");
    }
}

#[test]
fn self_protection_proc_entries_of_the_supervisors_other_threads() {
    let w = World::new();
    let prog = cc_with(&w.env, "self", SELF_C, &[]);
    let parent = stand_in(&w);
    let tids = w.ws().join("tids");
    // Natively: the stand-in's threads are reachable by tid, though /proc
    // does not list them.
    let mut native = std::process::Command::new(&parent);
    native
        .args([prog.as_os_str(), os("threads"), tids.as_os_str()])
        .current_dir(w.ws());
    let native = stdout(&with_threads_listed(native, &tids));
    assert_eq!(field(&native, "threads-listed"), Some("2"), "{native}");
    assert_eq!(field(&native, "threads-found"), Some("2"), "{native}");
    assert!(bytes(&native, "thread-1-maps") > 0, "{native}");
    assert!(bytes(&native, "thread-1-environ") > 0, "{native}");
    w.reset();
    let cmd = w.env.supervise_cmd(
        &w.policy(""),
        &[prog.as_os_str(), os("threads"), tids.as_os_str()],
    );
    let out = w.ended_normally(with_threads_listed(cmd, &tids));
    let s = stdout(&out);
    let listed = bytes(&s, "threads-listed");
    assert!(listed >= 2, "the supervisor has other threads: {s}");
    // Every one of them is still the supervisor's (or refused as such).
    assert_eq!(bytes(&s, "threads-found"), listed, "{s}");
    for line in s.lines().filter(|l| l.starts_with("thread-")) {
        let (what, r) = line.split_once('=').unwrap();
        assert!(
            r.starts_with('-'),
            "{what}: the supervisor's thread was reached: {line}"
        );
    }
    assert!(leaked(&w).is_empty(), "{} bytes leaked", leaked(&w).len());
}

/// Runs `cmd` (whose process is the supervisor or its stand-in) and, once
/// it has at least two threads besides its main one, writes their tids to
/// `file` for the program it runs (`self threads FILE`), which waits for it:
/// the thread ids are taken from outside, where /proc lists them, so the
/// test does not depend on how far the machine's pid counter moved.
fn with_threads_listed(mut cmd: std::process::Command, file: &Path) -> Output {
    let child = cmd
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let task = format!("/proc/{pid}/task");
    let mut others: Vec<String> = Vec::new();
    for _ in 0..2000 {
        others = std::fs::read_dir(&task)
            .map(|d| {
                d.filter_map(|e| e.ok()?.file_name().into_string().ok())
                    .filter(|t| *t != pid.to_string())
                    .collect()
            })
            .unwrap_or_default();
        if others.len() >= 2 {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    let tmp = file.with_extension("tmp");
    std::fs::write(&tmp, others.join("\n") + "\nend\n").unwrap();
    std::fs::rename(&tmp, file).unwrap();
    child.wait_with_output().unwrap()
}

#[test]
fn self_protection_hard_link_to_the_private_key() {
    let w = World::new();
    let prog = cc_with(&w.env, "self", SELF_C, &[]);
    let key = private_key(&w);
    let args = [prog.as_os_str(), os("keylink"), key.as_os_str()];
    let native = w.native(&args);
    assert!(bytes(&native, "key-hardlink") > 0, "{native}");
    w.reset();
    let out = w.supervise(&w.policy(""), &args);
    assert!(
        leaked(&w).is_empty(),
        "the private key was read: {}",
        stdout(&out)
    );
}

#[test]
fn self_protection_signals_and_ptrace_aimed_at_the_supervisor() {
    use std::os::unix::process::CommandExt;
    let w = World::new();
    let prog = cc_with(&w.env, "self", SELF_C, &[]);
    let native = w.native(&[prog.as_os_str(), os("signals"), os("native")]);
    for what in [
        "kill",
        "kill-pgid",
        "kill-own-group",
        "tkill",
        "tgkill",
        "rt_sigqueueinfo",
        "rt_tgsigqueueinfo",
        "pidfd",
        "f_setown",
        "f_setown-sigio",
    ] {
        assert_eq!(field(&native, what), Some("killed"), "{what}: {native}");
    }
    assert_eq!(field(&native, "kill-all-0"), Some("allowed"), "{native}");
    assert_eq!(field(&native, "ptrace-attach"), Some("0"), "{native}");
    assert_eq!(field(&native, "ptrace-seize"), Some("0"), "{native}");

    // Supervised, aimed at the supervisor (the parent of the command), in a
    // process group of its own so that nothing else can be hit.
    let out = w
        .env
        .supervise_cmd(
            &w.policy(""),
            &[prog.as_os_str(), os("signals"), os("supervisor")],
        )
        .process_group(0)
        .output()
        .unwrap();
    let s = stdout(&out);
    assert_eq!(
        out.status.code(),
        Some(0),
        "the supervisor did not survive ({:?}):\n{s}\n{}",
        out.status,
        stderr(&out)
    );
    w.env.assert_valid();
    for line in s.lines() {
        let (what, r) = line.split_once('=').unwrap();
        if what == "f_setown-sigio" {
            // Allowed (programs use signal-driven I/O); the supervisor
            // ignores SIGIO, and survived (above).
            continue;
        }
        assert_eq!(r, "-1", "{what} was not refused with EPERM: {s}");
    }
    assert!(s.lines().count() >= 13, "{s}");
    assert!(
        stderr(&out).contains("lexecon.self-protect.signal"),
        "{}",
        stderr(&out)
    );
}

// --------------------------------------------------- resource exhaustion

fn exhaust(w: &World) -> PathBuf {
    w.env.cc("exhaust", include_str!("escapes/exhaust.c"))
}

#[test]
fn fork_storm_then_forbidden_exec() {
    let w = World::new();
    let prog = exhaust(&w);
    let allowed = w.env.bin.join("allowed-true");
    std::fs::copy("/bin/true", &allowed).unwrap();
    let args = [
        prog.as_os_str(),
        os("forks"),
        os("300"),
        allowed.as_os_str(),
        w.marker.as_os_str(),
    ];
    let native = w.native(&args);
    assert!(native.contains("ok=300 bad=0"), "{native}");
    assert!(w.exists("after.txt"), "{native}");
    w.reset();
    let out = w.supervise(&w.policy(""), &args);
    let s = stdout(&out);
    assert!(s.contains("ok=300 bad=0"), "the storm was not served: {s}");
    assert!(
        !w.exists("after.txt"),
        "the forbidden exec ran after the storm"
    );
    assert_eq!(
        w.env.exec_records("allowed-true").len(),
        600,
        "request + confirm each"
    );
}

#[test]
fn thousand_threads_opening_at_once() {
    let w = World::new();
    let prog = exhaust(&w);
    let args = [
        prog.as_os_str(),
        os("threads"),
        os("1000"),
        w.marker.as_os_str(),
    ];
    let native = w.native(&args);
    assert!(
        native.contains("started=1000 opened=1000 refused=0"),
        "{native}"
    );
    assert!(w.exists("after.txt"));
    w.reset();
    let out = w.supervise(&w.policy(""), &args);
    let s = stdout(&out);
    assert!(s.contains("started=1000 opened=0 refused=1000"), "{s}");
    w.assert_protected(&out);
    assert!(
        !w.exists("after.txt"),
        "the forbidden exec ran after the flood"
    );
    let refused = w
        .env
        .open_records(&w.data())
        .iter()
        .filter(|r| r["outcome"] == "refused")
        .count();
    assert_eq!(refused, 1000);
}

#[test]
fn huge_argv_is_refused_never_truncated() {
    let w = World::new();
    let prog = exhaust(&w);
    let args = [prog.as_os_str(), os("argv"), w.marker.as_os_str()];
    let native = w.native(&args);
    if let Some(limit) = field(&native, "stack-limit") {
        panic!("the hard stack limit ({limit}) keeps the kernel from taking > 2 MiB of argv");
    }
    assert!(
        w.exists("big.txt"),
        "the kernel runs a program with ~3 MiB of argv natively: {native}"
    );
    w.reset();
    // Only the last word of argv makes the exec forbidden: truncating argv
    // would allow it.
    let policy = w.env.policy(
        "version: 1\nmode: enforce\ndefaults: {exec: allow, open: allow}\nrules:\n  - id: no-forbidden-word\n    exec: {argv_regex: \"FORBIDDEN\"}\n    decision: block\n    reason: forbidden word\n",
    );
    let out = w.supervise(&policy, &args);
    assert!(!w.exists("big.txt"), "the exec with a huge argv ran");
    assert_eq!(
        field(&stdout(&out), "exec"),
        Some(&*errno_str(libc::E2BIG)),
        "{}",
        stdout(&out)
    );
}

#[test]
fn path_of_path_max_to_protected_file() {
    let w = World::new();
    let prog = exhaust(&w);
    let args = [prog.as_os_str(), os("pathmax"), w.marker.as_os_str()];
    let native = w.native(&args);
    assert_eq!(field(&native, "len4095"), Some("0"), "{native}");
    assert_eq!(
        field(&native, "len4096"),
        Some(&*errno_str(libc::ENAMETOOLONG))
    );
    assert_eq!(w.content(), "pwned\n");
    w.reset();
    let out = w.supervise(&w.policy(""), &args);
    let s = stdout(&out);
    w.assert_protected(&out);
    assert_eq!(field(&s, "len4095"), Some(&*errno_str(libc::EPERM)), "{s}");
    assert_eq!(field(&s, "len4096"), Some(&*errno_str(libc::ENAMETOOLONG)));
    assert!(!w.exists("after.txt"));
}

// ------------------------------- descendants and calls on other processes

const PROCS_C: &str = include_str!("escapes/procs.c");

fn procs(w: &World) -> PathBuf {
    cc_with(&w.env, "procs", PROCS_C, &["-pthread"])
}

#[test]
fn clone_untraced_child_runs_the_forbidden_program() {
    let w = World::new();
    let prog = procs(&w);
    let args = [
        prog.as_os_str(),
        os("untraced"),
        w.marker.as_os_str(),
        os("ran.txt"),
    ];
    let native = w.native(&args);
    assert_eq!(field(&native, "clone-untraced"), Some("0"), "{native}");
    assert!(
        w.exists("ran.txt"),
        "natively the untraced child runs the marker"
    );
    w.reset();
    let out = w.supervise(&w.policy(""), &args);
    let s = stdout(&out);
    assert_eq!(
        field(&s, "clone-untraced"),
        Some(&*errno_str(libc::EPERM)),
        "{s}"
    );
    assert!(!w.exists("ran.txt"), "the forbidden program ran");
}

/// Every task whose chain of parents reaches `root` (threads included),
/// with its `TracerPid`.
fn descendants_with_tracer(root: i32) -> Vec<(i32, i32)> {
    let status = |p: &Path| std::fs::read_to_string(p).unwrap_or_default();
    let num = |text: &str, key: &str| -> Option<i32> {
        text.lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|v| v.trim().parse().ok())
    };
    let mut parent = std::collections::HashMap::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        if let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() {
            if let Some(pp) = num(&status(&e.path().join("status")), "PPid:") {
                parent.insert(pid, pp);
            }
        }
    }
    let under = |mut p: i32| {
        for _ in 0..64 {
            match parent.get(&p) {
                Some(&pp) if pp == root => return true,
                Some(&pp) if pp > 1 => p = pp,
                _ => return false,
            }
        }
        false
    };
    let mut out = Vec::new();
    for &pid in parent.keys().filter(|&&p| under(p)) {
        let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
            continue;
        };
        for t in tasks.flatten() {
            let tid: i32 = t.file_name().to_string_lossy().parse().unwrap();
            let text = status(&t.path().join("status"));
            if let Some(tracer) = num(&text, "TracerPid:") {
                out.push((tid, tracer));
            }
        }
    }
    out
}

/// Runs `procs tree` under `cmd`; returns the stdout and every descendant
/// task of the process `cmd` starts, with its tracer.
fn tree_walk(w: &World, mut cmd: Command) -> (String, Vec<(i32, i32)>, i32) {
    use std::io::Read;
    let sync = w.env.root.join("tree-sync");
    let _ = std::fs::remove_dir_all(&sync);
    std::fs::create_dir(&sync).unwrap();
    let mut child = cmd.stdout(std::process::Stdio::piped()).spawn().unwrap();
    let root = child.id() as i32;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while !sync.join("ready").exists() {
        assert!(
            std::time::Instant::now() < deadline,
            "the tree never got ready"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let tasks = descendants_with_tracer(root);
    std::fs::write(sync.join("done"), "").unwrap();
    let mut s = String::new();
    child.stdout.take().unwrap().read_to_string(&mut s).unwrap();
    child.wait().unwrap();
    (s, tasks, root)
}

#[test]
fn every_task_of_the_tree_is_traced_by_the_supervisor() {
    let w = World::new();
    let prog = procs(&w);
    let sync = w.env.root.join("tree-sync");
    let args = [prog.as_os_str(), os("tree"), sync.as_os_str()];
    // Natively the untraced clone succeeds: the route exists.
    let mut native = Command::new(&prog);
    native.args(&args[1..]).current_dir(w.ws());
    let (s, tasks, _) = tree_walk(&w, native);
    assert_eq!(field(&s, "clone-untraced"), Some("0"), "{s}");
    // fork, vfork, posix_spawn, CLONE_VM and the untraced clone (the
    // CLONE_PARENT child and the daemon end up elsewhere natively).
    assert!(tasks.len() >= 5, "too few descendants natively: {tasks:?}");

    let cmd = w.env.supervise_cmd(&w.policy(""), &args);
    let (s, tasks, supervisor) = tree_walk(&w, cmd);
    assert_eq!(
        field(&s, "clone-untraced"),
        Some(&*errno_str(libc::EPERM)),
        "{s}"
    );
    // The supervisor's own threads are its tasks, not descendants; every
    // other task below it — fork, vfork, posix_spawn, thread, CLONE_VM,
    // CLONE_PARENT, the setsid daemon — is traced by it.
    assert!(tasks.len() >= 8, "too few descendants: {tasks:?}");
    for (tid, tracer) in &tasks {
        assert_eq!(
            *tracer, supervisor,
            "task {tid} is not traced by the supervisor: {tasks:?}"
        );
    }
    w.env.assert_valid();
}

const AIMED_CALLS: &[&str] = &[
    "prlimit-nofile",
    "prlimit-fsize",
    "setpriority",
    "setpriority-pgrp",
    "sched_setaffinity",
    "sched_setscheduler",
    "sched_setparam",
    "sched_setattr",
    "ioprio_set",
    "ioprio_set-pgrp",
    "migrate_pages",
    "move_pages",
    "get_robust_list",
];

#[test]
fn calls_that_change_another_process_aimed_at_the_supervisor() {
    use std::os::unix::process::CommandExt;
    let w = World::new();
    let prog = procs(&w);
    // Natively each call changes another process of the same uid.
    let native = w.native(&[prog.as_os_str(), os("aim"), os("child")]);
    for what in AIMED_CALLS {
        assert_eq!(field(&native, what), Some("0"), "{what}: {native}");
    }
    // Supervised, aimed at the supervisor (the command's parent): refused,
    // and the supervisor keeps its limits (it writes the ledger after each
    // refusal: with RLIMIT_FSIZE=1 the kernel would kill it).
    let out = w
        .env
        .supervise_cmd(&w.policy(""), &[prog.as_os_str(), os("aim"), os("parent")])
        .process_group(0)
        .output()
        .unwrap();
    let s = stdout(&out);
    assert_eq!(out.status.code(), Some(0), "{s}\n{}", stderr(&out));
    w.env.assert_valid();
    for what in AIMED_CALLS.iter().chain(&["process_madvise"]) {
        assert_eq!(
            field(&s, what),
            Some(&*errno_str(libc::EPERM)),
            "{what} was not refused: {s}"
        );
    }
    let err = stderr(&out);
    assert!(err.contains("lexecon.self-protect.process"), "{err}");
    // Within the tree the same calls work as natively.
    let out = w.supervise(&w.policy(""), &[prog.as_os_str(), os("aim"), os("child")]);
    let s = stdout(&out);
    for what in AIMED_CALLS {
        assert_eq!(
            field(&s, what),
            Some("0"),
            "{what} refused inside the tree: {s}"
        );
    }
}

/// A process outside the tree, in a process group of its own.
struct Outsider(std::process::Child);

impl Outsider {
    fn start() -> Outsider {
        use std::os::unix::process::CommandExt;
        Outsider(
            Command::new("sleep")
                .arg("60")
                .process_group(0)
                .spawn()
                .unwrap(),
        )
    }

    fn pid(&self) -> String {
        self.0.id().to_string()
    }

    /// Whether it has ended within `ms` milliseconds (a killed process may
    /// take a while to be scheduled on a loaded machine).
    fn ends_within(&mut self, ms: u64) -> bool {
        let end = std::time::Instant::now() + std::time::Duration::from_millis(ms);
        loop {
            if self.0.try_wait().unwrap().is_some() {
                return true;
            }
            if std::time::Instant::now() > end {
                return false;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
    }
}

impl Drop for Outsider {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn calls_on_processes_outside_the_tree() {
    let w = World::new();
    let prog = procs(&w);
    // Natively the tree can signal and re-limit any process of its uid.
    let mut victim = Outsider::start();
    let native = w.native(&[prog.as_os_str(), os("aim"), os(&victim.pid())]);
    for what in AIMED_CALLS {
        assert_eq!(field(&native, what), Some("0"), "{what}: {native}");
    }
    let native = w.native(&[prog.as_os_str(), os("signals"), os(&victim.pid())]);
    assert_eq!(field(&native, "kill"), Some("0"), "{native}");
    assert!(
        victim.ends_within(10_000),
        "natively the outsider is killed"
    );

    let mut outsider = Outsider::start();
    let out = w.supervise(
        &w.policy(""),
        &[prog.as_os_str(), os("aim"), os(&outsider.pid())],
    );
    let s = stdout(&out);
    for what in AIMED_CALLS {
        assert_eq!(
            field(&s, what),
            Some(&*errno_str(libc::EPERM)),
            "{what} reached a process outside the tree: {s}"
        );
    }
    let out = w.supervise(
        &w.policy(""),
        &[prog.as_os_str(), os("signals"), os(&outsider.pid())],
    );
    let s = stdout(&out);
    // A probe says the process exists; nothing else reaches it.
    assert_eq!(field(&s, "kill-probe"), Some("0"), "{s}");
    for what in ["kill", "kill-pgid", "tkill", "tgkill", "rt_sigqueueinfo"] {
        assert_eq!(
            field(&s, what),
            Some(&*errno_str(libc::EPERM)),
            "{what}: {s}"
        );
    }
    assert!(
        !outsider.ends_within(300),
        "a signal from the tree killed a process outside it"
    );
    assert!(
        stderr(&out).contains("lexecon.contain.outside-tree"),
        "{}",
        stderr(&out)
    );
    w.env.assert_valid();
}

// ------------------------------------------------ identities that lie

/// SHA-256 of `path`'s content zero-padded to `n` bytes.
fn padded_sha256_hex(path: &Path, n: usize) -> String {
    use sha2::{Digest, Sha256};
    let mut b = std::fs::read(path).unwrap();
    b.resize(n, 0);
    Sha256::digest(&b)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[test]
fn program_rewritten_through_a_shared_mapping_keeps_its_old_hash() {
    let w = World::new();
    let prog = w.env.cc("stale_hash", include_str!("escapes/stale_hash.c"));
    let good = w.env.cc("good", "int main(void) { return 0; }");
    let size = |p: &Path| std::fs::metadata(p).unwrap().len() as usize;
    let n = size(&good).max(size(&w.marker)).div_ceil(4096) * 4096;
    let args = [
        prog.as_os_str(),
        os("run"),
        os("swapped"),
        good.as_os_str(),
        w.marker.as_os_str(),
        os("ran.txt"),
    ];
    let native = w.native(&args);
    assert_eq!(
        field(&native, "first"),
        Some(&*errno_str(libc::ETXTBSY)),
        "{native}"
    );
    assert_eq!(field(&native, "second"), Some("0"), "{native}");
    assert!(w.exists("ran.txt"), "natively the rewritten program runs");
    w.reset();
    // Only the forbidden content (as it lies in the file) is blocked.
    let policy = w.env.policy(&format!(
        "version: 1\nmode: enforce\ndefaults: {{exec: allow, open: allow}}\nrules:\n  - id: block-marker-content\n    exec:\n      sha256: [\"{}\"]\n    decision: block\n    reason: forbidden content\n",
        padded_sha256_hex(&w.marker, n)
    ));
    let out = w.supervise(&policy, &args);
    let s = stdout(&out);
    assert_eq!(field(&s, "first"), Some(&*errno_str(libc::ETXTBSY)), "{s}");
    assert!(
        !w.exists("ran.txt"),
        "the rewritten program ran with its old hash: {s}"
    );
    assert_eq!(field(&s, "second"), Some(&*errno_str(libc::EPERM)), "{s}");
}

/// The same attack across two runs: a first run hashes the program (at an
/// exec the kernel then refuses), the bytes change through the mapping with
/// no metadata changing, and a second run executes it. A hash kept from the
/// first run is never used for a file the tree's user owns: the second run
/// hashes the program again and refuses the forbidden content.
#[test]
fn program_rewritten_through_a_shared_mapping_between_runs_is_hashed_again() {
    use std::io::{BufRead, Write};
    use std::os::unix::fs::MetadataExt;
    let w = World::new();
    let holder = w.env.cc("stale_hash", include_str!("escapes/stale_hash.c"));
    let good = w.env.cc("good", "int main(void) { return 0; }");
    let size = |p: &Path| std::fs::metadata(p).unwrap().len() as usize;
    let n = size(&good).max(size(&w.marker)).div_ceil(4096) * 4096;
    let policy = w.env.policy(&format!(
        "version: 1\nmode: enforce\ndefaults: {{exec: allow, open: allow}}\nrules:\n  - id: block-marker-content\n    exec:\n      sha256: [\"{}\"]\n    decision: block\n    reason: forbidden content\n",
        padded_sha256_hex(&w.marker, n)
    ));
    let prog = w.ws().join("prog");
    let mut hold = Command::new(&holder)
        .args([
            os("hold"),
            prog.as_os_str(),
            good.as_os_str(),
            w.marker.as_os_str(),
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = std::io::BufReader::new(hold.stdout.take().unwrap()).lines();
    assert_eq!(lines.next().unwrap().unwrap(), "ready");
    let first = w.supervise(&policy, &["/bin/sh", "-c", "./prog ran.txt; echo first=$?"]);
    let s = stdout(&first);
    assert_eq!(field(&s, "first"), Some("126"), "ETXTBSY: {s}");
    let meta = |p: &Path| {
        let m = std::fs::metadata(p).unwrap();
        (
            m.size(),
            m.mtime(),
            m.mtime_nsec(),
            m.ctime(),
            m.ctime_nsec(),
        )
    };
    let before = meta(&prog);
    hold.stdin.take().unwrap().write_all(b"x").unwrap();
    assert_eq!(lines.next().unwrap().unwrap(), "swapped");
    assert!(hold.wait().unwrap().success());
    assert_eq!(
        meta(&prog),
        before,
        "the bytes changed, the metadata did not"
    );
    assert_eq!(sha256_hex(&prog), padded_sha256_hex(&w.marker, n));
    let second = w.supervise(
        &policy,
        &["/bin/sh", "-c", "./prog ran.txt; echo second=$?"],
    );
    let s = stdout(&second);
    assert!(
        !w.exists("ran.txt"),
        "the rewritten program ran with the first run's hash: {s}"
    );
    assert_eq!(field(&s, "second"), Some("126"), "refused: {s}");
    // Natively it runs.
    let native = w.native(&["/bin/sh", "-c", "./prog ran.txt; echo native=$?"]);
    assert_eq!(field(&native, "native"), Some("0"), "{native}");
    assert!(w.exists("ran.txt"));
}

// ------------------------------------ self-protection that follows objects

/// `key=status` lines from a shell script run in the workspace.
fn script(lines: &[String]) -> Vec<std::ffi::OsString> {
    vec!["/bin/sh".into(), "-c".into(), lines.join("\n").into()]
}

#[test]
fn renaming_an_ancestor_of_the_keys_or_the_ledger() {
    let w = World::new();
    let root = w.env.root.display().to_string();
    let key = private_key(&w);
    let s = script(&[
        format!("mv '{root}' '{root}.moved'; echo rename=$?"),
        format!("cat '{root}.moved/keys/ledger.key' > leak.bin; echo read=$?"),
        format!("echo forged >> '{root}.moved/ledger/ledger.jsonl'; echo forge=$?"),
        format!("[ -d '{root}.moved' ] && mv '{root}.moved' '{root}'; echo back=$?"),
    ]);
    // Natively the key is read and the ledger written under the new name.
    std::fs::create_dir_all(w.env.ledger.parent().unwrap()).unwrap();
    std::fs::write(&w.env.ledger, "").unwrap();
    let native = w.native(&s);
    assert_eq!(field(&native, "rename"), Some("0"), "{native}");
    assert_eq!(field(&native, "read"), Some("0"), "{native}");
    assert_eq!(field(&native, "forge"), Some("0"), "{native}");
    assert_eq!(leaked(&w), std::fs::read(&key).unwrap());
    std::fs::remove_file(&w.env.ledger).unwrap();
    w.reset();

    let out = w.supervise(&w.policy(""), &s);
    let s = stdout(&out);
    assert_ne!(
        field(&s, "rename"),
        Some("0"),
        "the ancestor was renamed: {s}"
    );
    assert!(leaked(&w).is_empty(), "the key leaked: {s}");
    assert!(
        !std::fs::read_to_string(&w.env.ledger)
            .unwrap()
            .lines()
            .any(|l| l == "forged"),
        "a forged line reached the ledger"
    );
    let refused_move = w.env.records().iter().any(|r| {
        r.to_string()
            .contains("moving or removing a directory above the ledger")
    });
    assert!(
        refused_move,
        "no record names the refused move: {}",
        stderr(&out)
    );
}

#[test]
fn a_hard_link_to_the_key_made_before_the_run() {
    let w = World::new();
    let key = private_key(&w);
    let link = w.ws().join("innocent.txt");
    std::fs::hard_link(&key, &link).unwrap();
    let cmd = script(&["cat innocent.txt > leak.bin; echo read=$?".to_string()]);
    let native = w.native(&cmd);
    assert_eq!(field(&native, "read"), Some("0"), "{native}");
    assert_eq!(leaked(&w), std::fs::read(&key).unwrap());
    std::fs::remove_file(w.ws().join("leak.bin")).unwrap();
    let out = w.supervise(&w.policy(""), &cmd);
    assert_ne!(field(&stdout(&out), "read"), Some("0"), "{}", stdout(&out));
    assert!(leaked(&w).is_empty(), "the key leaked through a hard link");
    assert!(
        stderr(&out).contains("lexecon.self-protect.keys"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn the_policy_in_force_is_read_only_to_the_tree() {
    let w = World::new();
    let policy = w.policy("");
    let before = std::fs::read(&policy).unwrap();
    let p = policy.display();
    let cmd = script(&[
        format!("cat '{p}' > /dev/null; echo read=$?"),
        format!("echo '# loosened' >> '{p}'; echo append=$?"),
        format!("mv '{p}' '{p}.old'; echo rename=$?"),
    ]);
    let out = w.supervise(&policy, &cmd);
    let s = stdout(&out);
    assert_eq!(field(&s, "read"), Some("0"), "{s}");
    assert_ne!(field(&s, "append"), Some("0"), "{s}");
    assert_ne!(field(&s, "rename"), Some("0"), "{s}");
    assert_eq!(
        std::fs::read(&policy).unwrap(),
        before,
        "the policy was changed"
    );
    assert!(
        stderr(&out).contains("lexecon.self-protect.policy"),
        "{}",
        stderr(&out)
    );
    // The same script changes an ordinary copy natively.
    let copy = w.env.root.join("copy.yaml");
    std::fs::copy(&policy, &copy).unwrap();
    let c = copy.display();
    let native = w.native(&script(&[format!(
        "echo '# loosened' >> '{c}'; echo append=$?"
    )]));
    assert_eq!(field(&native, "append"), Some("0"), "{native}");
}

/// Every file of a layered policy is read-only to the tree, as the file
/// given is: by path, through a hard link made before the run, by a rename
/// of the file or of a directory above it. The same script changes all of
/// them natively.
#[test]
fn every_layer_of_the_policy_is_read_only_to_the_tree() {
    use std::os::unix::fs::MetadataExt;
    let w = World::new();
    let layers = w.env.root.join("layers");
    std::fs::create_dir_all(layers.join("org")).unwrap();
    let org = layers.join("org/org.yaml");
    let org_text = "version: 1\nrules:\n  - id: org-block-secrets\n    open: {path: [\"/nonexistent-secrets/**\"]}\n    decision: block\n    reason: the organisation's secrets\n";
    let user = layers.join("user.yaml");
    let user_text = "version: 1\ninclude: org/org.yaml\nrules: []\n";
    let write_layers = || {
        std::fs::write(&org, org_text).unwrap();
        std::fs::write(&user, user_text).unwrap();
    };
    write_layers();
    let policy = w.policy(&format!("include: '{}'\n", user.display()));
    let link = w.ws().join("innocent.yaml");
    std::fs::hard_link(&org, &link).unwrap();
    let (o, u, l, d) = (
        org.display(),
        user.display(),
        link.display(),
        layers.join("org").display().to_string(),
    );
    let cmd = script(&[
        format!("cat '{o}' > /dev/null; echo read=$?"),
        format!("echo '# loosened' >> '{o}'; echo append=$?"),
        format!("echo '# loosened' >> '{l}'; echo link=$?"),
        format!("mv '{u}' '{u}.old'; echo rename=$?"),
        format!("mv '{d}' '{d}.old'; echo dir=$?"),
    ]);
    // Natively, every one of them works.
    let native = w.native(&cmd);
    for k in ["read", "append", "link", "rename", "dir"] {
        assert_eq!(field(&native, k), Some("0"), "{k}: {native}");
    }
    std::fs::rename(format!("{u}.old"), &user).unwrap();
    std::fs::rename(format!("{d}.old"), &d).unwrap();
    write_layers();
    assert_eq!(
        std::fs::metadata(&link).unwrap().ino(),
        std::fs::metadata(&org).unwrap().ino()
    );
    let out = w.supervise(&policy, &cmd);
    let s = stdout(&out);
    assert_eq!(field(&s, "read"), Some("0"), "{s}");
    for k in ["append", "link", "rename", "dir"] {
        assert_ne!(field(&s, k), Some("0"), "{k}: {s}");
    }
    assert_eq!(std::fs::read_to_string(&org).unwrap(), org_text);
    assert_eq!(std::fs::read_to_string(&user).unwrap(), user_text);
    assert!(
        stderr(&out).contains("lexecon.self-protect.policy"),
        "{}",
        stderr(&out)
    );
    // The run header names every layer with its own hash.
    let header = w
        .env
        .records()
        .into_iter()
        .find(|r| r["kind"] == "run")
        .unwrap();
    let recorded: Vec<String> = header["policy_layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["path"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        recorded,
        [
            org.display().to_string(),
            user.display().to_string(),
            policy.display().to_string()
        ]
    );
}

// -------------------------------------- the dynamic loader, by what it is

#[test]
fn a_renamed_copy_of_the_loader_runs_the_forbidden_program() {
    let w = World::new();
    let copy = w.env.bin.join("innocent");
    // Copied by another process: a writable descriptor held here could be
    // inherited by a test running a program at that moment (ETXTBSY).
    let cp = Command::new("cp").arg(LD_SO).arg(&copy).status().unwrap();
    assert!(cp.success());
    let cmd = [copy.as_os_str(), w.marker.as_os_str(), os("ran.txt")];
    exec_route(&w, &path_only_policy(&w), &cmd);
}

#[test]
fn the_loader_given_the_callers_own_fd() {
    // `ld.so /proc/self/fd/N` names the caller's descriptor N: resolved in
    // the supervisor's context it would name nothing (or the supervisor's).
    let w = World::new();
    let m = w.marker.display();
    let cmd = script(&[format!("exec 7< '{m}'; {LD_SO} /proc/self/fd/7 ran.txt")]);
    let os_cmd: Vec<&std::ffi::OsStr> = cmd.iter().map(|s| s.as_os_str()).collect();
    exec_route(&w, &path_only_policy(&w), &os_cmd);
}

#[test]
fn the_loader_given_a_fifo_or_an_endless_file_stalls_nobody() {
    // Reading the program argument in the notification loop would stall
    // every call of the tree on a FIFO nobody writes, and never end on
    // /dev/zero. Both loader runs must fail on their own while the rest of
    // the tree goes on.
    let w = World::new();
    let cmd = script(&[
        "mkfifo f".to_string(),
        format!("{LD_SO} ./f & L=$!"),
        format!("{LD_SO} /dev/zero; echo zero=$?"),
        "echo after > after.txt; echo after=$?".to_string(),
        "kill $L; wait $L; echo done".to_string(),
    ]);
    let out = w.supervise(&w.policy(""), &cmd);
    let s = stdout(&out);
    assert_eq!(field(&s, "after"), Some("0"), "{s}\n{}", stderr(&out));
    assert_ne!(field(&s, "zero"), Some("0"), "{s}");
    assert!(s.contains("done"), "{s}");
    assert!(w.exists("after.txt"));
}

// ------------------------------- creations and metadata changes of files

const META_C: &str = include_str!("escapes/meta.c");

/// What a metadata change would show: mode, owner, modification time,
/// extended attributes, inode flags, and the change time (which every
/// metadata change moves; the access time is left out: reading the file to
/// check it moves that).
fn metadata_of(p: &Path) -> (u32, u32, u32, i64, i64, i64, Vec<u8>, i64) {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(p).unwrap();
    let c = std::ffi::CString::new(p.as_os_str().as_encoded_bytes()).unwrap();
    let mut names = vec![0u8; 4096];
    // SAFETY: a NUL-terminated path and a buffer of the size given.
    let n = unsafe { libc::listxattr(c.as_ptr(), names.as_mut_ptr().cast(), names.len()) };
    names.truncate(n.max(0) as usize);
    let f = std::fs::File::open(p).unwrap();
    let mut flags: libc::c_long = 0;
    // SAFETY: FS_IOC_GETFLAGS writes an int into `flags`.
    unsafe {
        use std::os::fd::AsRawFd;
        libc::ioctl(f.as_raw_fd(), 0x8008_6601, &mut flags);
    }
    (
        m.mode(),
        m.uid(),
        m.gid(),
        m.mtime(),
        m.mtime_nsec(),
        m.ctime() * 1_000_000_000 + m.ctime_nsec(),
        names,
        flags,
    )
}

fn results(out: &str) -> Vec<(String, String)> {
    out.lines()
        .filter_map(|l| l.split_once('='))
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect()
}

#[test]
fn creations_and_metadata_changes_in_a_protected_tree() {
    let w = World::new();
    let prog = cc_with(&w.env, "meta", META_C, &[]);
    let args = [prog.as_os_str(), os("protected")];
    // Natively each call changes the protected tree (fchmod of an O_PATH
    // descriptor is EBADF in the kernel).
    let native = results(&w.native(&args));
    assert!(native.len() >= 29, "{native:?}");
    for (what, r) in &native {
        let want = if what == "fchmod-opath" {
            errno_str(libc::EBADF)
        } else {
            "0".into()
        };
        assert_eq!(*r, want, "{what} natively: {native:?}");
    }
    w.reset();
    let before = metadata_of(&w.data());
    let out = w.supervise(&w.policy(""), &args);
    let supervised = results(&stdout(&out));
    assert_eq!(supervised.len(), native.len(), "{}", stderr(&out));
    for (what, r) in &supervised {
        let want = if what == "fchmod-opath" {
            errno_str(libc::EBADF)
        } else {
            errno_str(libc::EPERM)
        };
        assert_eq!(*r, want, "{what} was not refused: {supervised:?}");
    }
    w.assert_protected(&out);
    assert_eq!(
        metadata_of(&w.data()),
        before,
        "the protected file's metadata changed"
    );
    let ops: Vec<String> = w
        .env
        .records()
        .iter()
        .filter(|r| r["outcome"] == "refused")
        .filter_map(|r| r["action"]["op"].as_str().map(String::from))
        .collect();
    for n in [
        "mkdir",
        "symlink",
        "chmod",
        "chown",
        "set-times",
        "xattr",
        "set-flags",
    ] {
        assert!(
            ops.iter().any(|x| x == n),
            "no refusal recorded as {n}: {ops:?}"
        );
    }
}

#[test]
fn creations_and_metadata_changes_behave_as_natively_where_allowed() {
    let w = World::new();
    let prog = cc_with(&w.env, "meta", META_C, &[]);
    let args = [prog.as_os_str(), os("allowed")];
    let native = results(&w.native(&args));
    let after_native = metadata_of(&w.ws().join("allowed/data"));
    let entries = |w: &World| {
        let mut e: Vec<_> = std::fs::read_dir(w.ws().join("allowed"))
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                let m = e.path().symlink_metadata().unwrap();
                use std::os::unix::fs::MetadataExt;
                (e.file_name(), m.mode())
            })
            .collect();
        e.sort();
        e
    };
    let native_entries = entries(&w);
    w.reset();
    let out = w.supervise(&w.policy(""), &args);
    let supervised = results(&stdout(&out));
    assert_eq!(supervised, native, "{}", stderr(&out));
    let after = metadata_of(&w.ws().join("allowed/data"));
    // Mode, owner, the times set, xattrs and flags as natively (the access
    // time of the last call is set explicitly by it).
    assert_eq!(
        (after.0, after.1, after.2, after.3, after.6.clone(), after.7),
        (
            after_native.0,
            after_native.1,
            after_native.2,
            after_native.3,
            after_native.6.clone(),
            after_native.7
        )
    );
    assert_eq!(
        entries(&w),
        native_entries,
        "created names or their modes differ"
    );
}

#[test]
fn chmod_path_race_never_changes_a_protected_file() {
    let w = World::new();
    let prog = cc_with(&w.env, "meta", META_C, &["-pthread"]);
    // Natively the flipping thread needs CPU time to win: many calls.
    let native = w.native(&[prog.as_os_str(), os("race"), os("protected"), os("200000")]);
    let args = [prog.as_os_str(), os("race"), os("protected"), os("5000")];
    let wins: i64 = bytes(&native, "race-wins");
    assert!(wins > 0, "the race never wins natively: {native}");
    w.reset();
    let before = metadata_of(&w.data());
    let out = w.supervise(&w.policy(""), &args);
    assert_eq!(
        field(&stdout(&out), "race-wins"),
        Some("0"),
        "{}",
        stdout(&out)
    );
    assert_eq!(metadata_of(&w.data()).0, before.0);
}

#[test]
fn moving_a_directory_above_a_protected_path_at_any_depth() {
    let w = World::new();
    let ws = w.ws().display().to_string();
    let policy = w.env.policy(&format!(
        "version: 1\nmode: enforce\ndefaults: {{exec: allow, open: allow}}\nrules:\n  - id: secret\n    open:\n      path: [\"{ws}/tree/a/b/secret/**\"]\n      access: [write, create, truncate]\n    decision: block\n    reason: secret\n"
    ));
    let setup = || {
        let _ = std::fs::remove_dir_all(w.ws().join("tree"));
        std::fs::create_dir_all(w.ws().join("tree/a/b/secret")).unwrap();
        std::fs::create_dir_all(w.ws().join("tree/a/other")).unwrap();
        std::fs::write(w.ws().join("tree/a/b/secret/key"), "k").unwrap();
    };
    for dir in ["tree/a/b/secret", "tree/a/b", "tree/a", "tree"] {
        let cmd = script(&[format!("mv {dir} {dir}.moved; echo mv=$?")]);
        setup();
        let native = w.native(&cmd);
        assert_eq!(field(&native, "mv"), Some("0"), "{dir}: {native}");
        setup();
        let out = w.supervise(&policy, &cmd);
        assert_ne!(
            field(&stdout(&out), "mv"),
            Some("0"),
            "{dir} was moved: {}",
            stderr(&out)
        );
        assert!(w.ws().join("tree/a/b/secret/key").exists(), "{dir}");
    }
    // A sibling, and a directory the rule does not reach, move freely.
    setup();
    let out = w.supervise(
        &policy,
        &script(&["mv tree/a/other tree/a/other2; echo mv=$?".into()]),
    );
    assert_eq!(field(&stdout(&out), "mv"), Some("0"), "{}", stderr(&out));
}

// ------------------------------------------- code loaded without an exec

#[test]
fn a_modified_loader_runs_the_forbidden_program() {
    // A copy of ld.so with one byte more: neither its name nor its content
    // is the system loader's, so only the executable mapping of the
    // program it loads can be judged.
    let w = World::new();
    let loader = w.env.bin.join("my-loader");
    let cp = Command::new("cp").arg(LD_SO).arg(&loader).status().unwrap();
    assert!(cp.success());
    let grow = Command::new("sh")
        .arg("-c")
        .arg(format!("printf x >> '{}'", loader.display()))
        .status()
        .unwrap();
    assert!(grow.success());
    let cmd = [loader.as_os_str(), w.marker.as_os_str(), os("ran.txt")];
    let out = exec_route(&w, &w.policy(""), &cmd);
    assert!(stderr(&out).contains("map executable"), "{}", stderr(&out));
    // The same loader still runs an allowed program.
    let good = w.env.cc("good", "int main(void) { return 7; }");
    let out = w.supervise(&w.policy(""), &[loader.as_os_str(), good.as_os_str()]);
    assert_eq!(out.status.code(), Some(7), "{}", stderr(&out));
}

#[test]
fn a_forbidden_program_mapped_executable_by_hand() {
    let w = World::new();
    let prog = w.env.cc("codemap", include_str!("escapes/codemap.c"));
    let args = [prog.as_os_str(), w.marker.as_os_str()];
    let native = w.native(&args);
    for what in [
        "mmap-exec",
        "mmap-read",
        "mprotect-exec",
        "anon-exec",
        "anon-mprotect",
    ] {
        assert_eq!(field(&native, what), Some("0"), "{what}: {native}");
    }
    let out = w.supervise(&w.policy(""), &args);
    let s = stdout(&out);
    assert_eq!(
        field(&s, "mmap-exec"),
        Some(&*errno_str(libc::EPERM)),
        "{s}"
    );
    assert_eq!(field(&s, "mmap-read"), Some("0"), "{s}");
    assert_eq!(
        field(&s, "mprotect-exec"),
        Some(&*errno_str(libc::EPERM)),
        "{s}"
    );
    // Anonymous memory is out of reach of a file-based check, and passes.
    assert_eq!(field(&s, "anon-exec"), Some("0"), "{s}");
    assert_eq!(field(&s, "anon-mprotect"), Some("0"), "{s}");
    // An allowed file maps as natively.
    let other = w.env.cc("other", "int main(void) { return 0; }");
    let s = stdout(&w.supervise(&w.policy(""), &[prog.as_os_str(), other.as_os_str()]));
    for what in ["mmap-exec", "mprotect-exec"] {
        assert_eq!(field(&s, what), Some("0"), "{what}: {s}");
    }
}
