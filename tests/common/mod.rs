//! Helpers for tests that run real supervised processes: a fresh directory
//! per test with a workspace, a key pair and a ledger outside the workspace,
//! a command builder for `lexecon supervise`, a C compiler wrapper, and
//! ledger readers.
#![allow(dead_code)]

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

pub const LEXECON: &str = env!("CARGO_BIN_EXE_lexecon");

/// The `lexecon` binary the helpers run: `LEXECON_TEST_BIN` when set (a
/// copy an unprivileged user can reach, see `scripts/test-unprivileged`),
/// else the one cargo built.
pub fn lexecon() -> std::ffi::OsString {
    std::env::var_os("LEXECON_TEST_BIN").unwrap_or_else(|| LEXECON.into())
}

/// A policy that allows everything (for "behaves like native" tests).
pub const ALLOW_ALL: &str =
    "version: 1\nmode: enforce\ndefaults:\n  exec: allow\n  open: allow\nrules: []\n";

pub struct Env {
    _dir: tempfile::TempDir,
    pub root: PathBuf,
    pub ws: PathBuf,
    pub keys: PathBuf,
    pub ledger: PathBuf,
    pub bin: PathBuf,
}

impl Env {
    pub fn new() -> Env {
        let dir = tempfile::Builder::new()
            .prefix("lexecon-test-")
            .tempdir()
            .unwrap();
        let root = std::fs::canonicalize(dir.path()).unwrap();
        let ws = root.join("ws");
        let bin = root.join("bin");
        std::fs::create_dir(&ws).unwrap();
        std::fs::create_dir(&bin).unwrap();
        let keys = root.join("keys");
        let out = Command::new(lexecon())
            .arg("init-keys")
            .arg("--dir")
            .arg(&keys)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "init-keys failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Env {
            ledger: root.join("ledger/ledger.jsonl"),
            _dir: dir,
            root,
            ws,
            keys,
            bin,
        }
    }

    /// Writes a policy file and returns its path.
    pub fn policy(&self, yaml: &str) -> PathBuf {
        let p = self.root.join(format!("policy-{}.yaml", fastrand_name()));
        std::fs::write(&p, yaml).unwrap();
        p
    }

    /// `lexecon supervise` with this env's keys and ledger, run in the
    /// workspace, with the given policy and command.
    pub fn supervise_cmd<S: AsRef<OsStr>>(&self, policy: &Path, cmd: &[S]) -> Command {
        self.supervise_cmd_with(policy, &[], cmd)
    }

    /// As [`Env::supervise_cmd`], with `extra` options before the `--`.
    pub fn supervise_cmd_with<S: AsRef<OsStr>>(
        &self,
        policy: &Path,
        extra: &[&str],
        cmd: &[S],
    ) -> Command {
        let mut c = Command::new(lexecon());
        // The suite runs as root on CI: accept a root tree (the tests of
        // that refusal run without this helper).
        c.arg("supervise")
            .arg("--allow-root-tree")
            .arg("--policy")
            .arg(policy)
            .arg("--ledger")
            .arg(&self.ledger)
            .arg("--keys")
            .arg(&self.keys)
            .arg("--sync")
            .arg("never")
            .args(extra)
            .arg("--")
            .args(cmd)
            .current_dir(&self.ws)
            .stdin(Stdio::null());
        c
    }

    pub fn supervise<S: AsRef<OsStr>>(&self, policy: &Path, cmd: &[S]) -> Output {
        self.supervise_cmd(policy, cmd).output().unwrap()
    }

    /// The same command run natively in the workspace.
    pub fn native<S: AsRef<OsStr>>(&self, cmd: &[S]) -> Output {
        Command::new(&cmd[0])
            .args(&cmd[1..])
            .current_dir(&self.ws)
            .stdin(Stdio::null())
            .output()
            .unwrap()
    }

    /// `lexecon verify` of this env's ledger with its public key:
    /// (exit code, stdout).
    pub fn verify(&self) -> (i32, String) {
        let out = Command::new(lexecon())
            .arg("verify")
            .arg(&self.ledger)
            .arg("--pubkey")
            .arg(self.pubkey())
            .output()
            .unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    }

    pub fn assert_valid(&self) {
        let (code, out) = self.verify();
        assert!(
            out.contains("Status: VALID") && code == 0,
            "ledger does not verify VALID (exit {code}):\n{out}"
        );
    }

    pub fn pubkey(&self) -> PathBuf {
        let entries = std::fs::read_dir(&self.keys).unwrap();
        for e in entries {
            let p = e.unwrap().path();
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            if name.contains("pub") {
                return p;
            }
        }
        panic!("no public key file in {}", self.keys.display());
    }

    /// Every record of the ledger, parsed; decisions of format-2 runs as
    /// format 1 has them (every member present, the caller's program in
    /// full: `lexecon::ledger::decode::Context::expanded`).
    pub fn records(&self) -> Vec<serde_json::Value> {
        let text = std::fs::read_to_string(&self.ledger).unwrap_or_default();
        expanded_records(&text)
    }

    /// The lines of the ledger as written.
    pub fn raw_records(&self) -> Vec<serde_json::Value> {
        let text = std::fs::read_to_string(&self.ledger).unwrap_or_default();
        text.lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    /// Decision records for execs whose argv[0] or path ends with `name`.
    pub fn exec_records(&self, name: &str) -> Vec<serde_json::Value> {
        self.records()
            .into_iter()
            .filter(|r| r["kind"] == "decision" && r["action"]["kind"] == "exec")
            .filter(|r| {
                r["action"]["path"]
                    .as_str()
                    .is_some_and(|p| p.ends_with(name))
                    || r["action"]["argv"][0]
                        .as_str()
                        .is_some_and(|a| a.ends_with(name))
            })
            .collect()
    }

    /// Decision records for opens of exactly `path`.
    pub fn open_records(&self, path: &Path) -> Vec<serde_json::Value> {
        let p = path.to_string_lossy();
        self.records()
            .into_iter()
            .filter(|r| {
                r["kind"] == "decision"
                    && r["action"]["kind"] == "open"
                    && r["action"]["path"] == *p
            })
            .collect()
    }

    /// Compiles a C program into this env's bin directory.
    pub fn cc(&self, name: &str, src: &str) -> PathBuf {
        self.cc_with(name, src, &[])
    }

    /// Compiles a C program with extra compiler flags.
    pub fn cc_with(&self, name: &str, src: &str, flags: &[&str]) -> PathBuf {
        let c = self.root.join(format!("{name}.c"));
        std::fs::write(&c, src).unwrap();
        let out_path = self.bin.join(name);
        let out = Command::new("gcc")
            .args(["-O1", "-pthread"])
            .args(flags)
            .arg("-o")
            .arg(&out_path)
            .arg(&c)
            .output()
            .expect("gcc must be installed to run these tests");
        assert!(
            out.status.success(),
            "gcc failed for {name}:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        out_path
    }

    /// Creates `protected/data` ("original\n") in the workspace and returns
    /// a policy that blocks every write, create, truncate or append under
    /// `protected/` (rule `protect`).
    pub fn protected_data(&self) -> PathBuf {
        std::fs::create_dir(self.ws.join("protected")).unwrap();
        std::fs::write(self.ws.join("protected/data"), "original\n").unwrap();
        self.policy(&format!(
            "version: 1\nmode: enforce\ndefaults:\n  exec: allow\n  open: allow\nrules:\n  - id: protect\n    open:\n      path: [\"{ws}/protected/**\"]\n      access: [write, create, truncate, append]\n    decision: block\n    reason: protected data\n",
            ws = self.ws.display()
        ))
    }
}

fn fastrand_name() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    format!(
        "{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst)
    )
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// A marker program: writes its argv[1] file, then exits 0. Used as "the
/// forbidden program": if the marker file exists, it ran.
pub const MARKER_C: &str = r#"
#include <stdio.h>
int main(int argc, char **argv) {
    if (argc < 2) return 2;
    FILE *f = fopen(argv[1], "w");
    if (!f) return 3;
    fputs("ran\n", f);
    fclose(f);
    return 0;
}
"#;

/// The records of a ledger's text, parsed, with the decisions of format-2
/// runs written out as format 1 has them; lines that are not records (a
/// torn tail) are left out.
pub fn expanded_records(text: &str) -> Vec<serde_json::Value> {
    use lexecon::ledger::{decode::Context, jcs};
    let mut ctx = Context::new();
    text.lines()
        .filter_map(|l| {
            let v = jcs::parse(l, jcs::Mode::Strict).ok()?;
            let line = match ctx.observe(&v).and_then(|_| ctx.expanded(&v)) {
                Ok(Some(x)) => x,
                _ => l.to_string(),
            };
            serde_json::from_str(&line).ok()
        })
        .collect()
}
