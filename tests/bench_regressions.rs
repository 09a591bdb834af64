//! Regressions found by the benchmark workloads (`scripts/bench`).

use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_lexecon");

/// The user the supervisor runs as when the tests run as root.
const NOBODY: u32 = 65534;

fn policy() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("policies/default.yaml")
}

fn chown_tree(path: &Path, uid: u32) {
    std::os::unix::fs::chown(path, Some(uid), Some(uid)).unwrap();
    if path.is_dir() {
        for e in std::fs::read_dir(path).unwrap() {
            chown_tree(&e.unwrap().path(), uid);
        }
    }
}

/// Without CAP_SYS_PTRACE the supervisor must still be able to attach to its
/// own child: the child inherited the supervisor's "not dumpable" flag, and
/// `PTRACE_SEIZE` of a non-dumpable process needs that capability, so every
/// unprivileged run failed with "failed to attach to the command: EPERM".
#[test]
fn supervises_without_cap_sys_ptrace() {
    let dir = tempfile::tempdir().unwrap();
    let keys = dir.path().join("keys");
    let out = Command::new(BIN)
        .args(["init-keys", "--dir"])
        .arg(&keys)
        .output()
        .unwrap();
    assert!(out.status.success(), "init-keys: {out:?}");
    let ledger_dir = dir.path().join("ledger");
    std::fs::create_dir(&ledger_dir).unwrap();
    std::fs::set_permissions(&ledger_dir, std::fs::Permissions::from_mode(0o1777)).unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o711)).unwrap();

    let mut cmd = Command::new(BIN);
    cmd.arg("supervise")
        .arg("--allow-root-tree")
        .arg("--keys")
        .arg(&keys)
        .arg("--ledger")
        .arg(ledger_dir.join("ledger.jsonl"))
        .arg("--policy")
        .arg(policy())
        .args(["--", "/bin/sh", "-c", "exit 7"])
        .current_dir(dir.path());
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        // As root the capability hides the bug: run as an unprivileged user.
        chown_tree(&keys, NOBODY);
        cmd.uid(NOBODY).gid(NOBODY);
    }
    let out = cmd.output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("failed to attach"), "{stderr}");
    assert_eq!(out.status.code(), Some(7), "{stderr}");
}
