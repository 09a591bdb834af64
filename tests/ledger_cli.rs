//! The ledger commands through the built `lexecon` binary: init-keys,
//! verify (exit codes, text and JSON output), prove / verify-proof,
//! ledger recover.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use lexecon::action::{Action, ExecAction, Mode, Verdict};
use lexecon::ledger::keys;
use lexecon::ledger::{
    DecisionEntry, LedgerWriter, LockMode, Outcome, RunEnd, RunHeader, Stage, SyncPolicy,
    WriterOptions,
};

fn lexecon(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_lexecon"))
        .args(args)
        .current_dir(dir)
        .output()
        .expect("run lexecon")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).expect("stat").permissions().mode() & 0o777
}

/// A temp dir with keys made by `init-keys` and a ledger of one run.
fn setup() -> (tempfile::TempDir, PathBuf) {
    let d = tempfile::tempdir().expect("tempdir");
    let o = lexecon(d.path(), &["init-keys"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let ledger = d.path().join(".audit/ledger.jsonl");
    let key = keys::load_signing_key(&d.path().join(".lexecon")).expect("key");
    let mut w = LedgerWriter::open(
        &ledger,
        key,
        WriterOptions {
            checkpoint_every: 3,
            checkpoint_interval: Duration::from_secs(60),
            sync: SyncPolicy::Never,
            lock: LockMode::Fail,
        },
    )
    .expect("open");
    w.begin_run(RunHeader {
        command: vec!["sh".into(), "-c".into(), "rm -rf ./important_data".into()],
        cwd: d.path().to_path_buf(),
        workspace: None,
        policy_sha256: [3; 32],
        policy_path: None,
        mode: Mode::Enforce,
        ci: Default::default(),
    })
    .expect("begin");
    for (i, verdict) in [
        Verdict::Allow,
        Verdict::Allow,
        Verdict::Block,
        Verdict::Allow,
    ]
    .into_iter()
    .enumerate()
    {
        let a = Action::Exec(ExecAction {
            path: "/usr/bin/rm".into(),
            argv: vec!["rm".into(), "-rf".into(), format!("./d{i}").into()],
            cwd: d.path().to_path_buf(),
            sha256: None,
        });
        w.append_decision(&DecisionEntry {
            pid: 10 + i as i32,
            ppid: 1,
            action: &a,
            stage: Stage::Request,
            verdict,
            outcome: if verdict == Verdict::Block {
                Outcome::Refused
            } else {
                Outcome::Allowed
            },
            rule: None,
            matched: vec![],
            reason: "default".into(),
            mode: Mode::Enforce,
            identity: None,
            note: None,
        })
        .expect("append");
    }
    w.end_run(RunEnd {
        exit_status: Some(1),
        signal: None,
        note: None,
    })
    .expect("end");
    (d, ledger)
}

#[test]
fn init_keys_modes_refusal_and_force() {
    let d = tempfile::tempdir().expect("tempdir");
    let o = lexecon(d.path(), &["init-keys", "--dir", "k"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    let fp = out
        .lines()
        .find_map(|l| l.strip_prefix("Fingerprint: "))
        .expect("fingerprint line")
        .to_string();
    assert_eq!(fp.len(), 64);
    let dir = d.path().join("k");
    assert_eq!(mode(&dir), 0o700);
    assert_eq!(mode(&dir.join("ledger.key")), 0o600);
    let public = keys::load_public_key(&dir.join("ledger.pub")).expect("public key");
    assert_eq!(public.fingerprint(), fp);
    assert_eq!(
        keys::load_signing_key(&dir).expect("private").public(),
        public
    );

    let o = lexecon(d.path(), &["init-keys", "--dir", "k"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("refusing to overwrite"),
        "{}",
        stderr(&o)
    );
    assert!(stderr(&o).contains("--force"));
    assert_eq!(keys::load_public_key(&dir).expect("kept"), public);

    let o = lexecon(d.path(), &["init-keys", "--dir", "k", "--force"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(!stdout(&o).contains(&fp));
    assert_eq!(mode(&dir.join("ledger.key")), 0o600);
}

#[test]
fn missing_key_says_how_to_create_one() {
    let d = tempfile::tempdir().expect("tempdir");
    let e = keys::load_signing_key(&d.path().join("nokeys")).expect_err("missing");
    assert!(e.to_string().contains("lexecon init-keys --dir"), "{e}");
    let o = lexecon(
        d.path(),
        &["ledger", "recover", "x.jsonl", "--keys", "nokeys"],
    );
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("run `lexecon init-keys --dir nokeys`"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn verify_exit_codes_and_output() {
    let (d, ledger) = setup();
    let l = ledger.to_str().expect("utf-8 path");

    // Valid, default key .lexecon/ledger.pub.
    let o = lexecon(d.path(), &["verify", l]);
    assert_eq!(o.status.code(), Some(0), "{}{}", stdout(&o), stderr(&o));
    let out = stdout(&o);
    assert!(out.starts_with("Status: VALID\n"), "{out}");
    assert!(
        out.contains("Runs: 1 (1 sealed, 0 recovered, 0 not sealed)"),
        "{out}"
    );
    assert!(
        out.contains("4 decisions: 3 allow, 0 escalate, 1 block"),
        "{out}"
    );

    // No key available: valid, but exit 4 and said plainly.
    let elsewhere = tempfile::tempdir().expect("tempdir");
    let o = lexecon(elsewhere.path(), &["verify", l]);
    assert_eq!(o.status.code(), Some(4));
    assert!(stdout(&o).contains("NOT independently supplied"));

    // Explicit wrong key: invalid.
    let other = tempfile::tempdir().expect("tempdir");
    assert!(lexecon(other.path(), &["init-keys"]).status.success());
    let other_pub = other.path().join(".lexecon/ledger.pub");
    let o = lexecon(
        d.path(),
        &["verify", l, "--pubkey", other_pub.to_str().expect("utf-8")],
    );
    assert_eq!(o.status.code(), Some(1));
    assert!(stdout(&o).contains("[10 host-key]"), "{}", stdout(&o));

    // Tampered: invalid, with line, seq and check.
    let text = std::fs::read_to_string(&ledger).expect("read");
    let tampered = text.replacen("./d1", "./dX", 1);
    std::fs::write(&ledger, &tampered).expect("write");
    let o = lexecon(d.path(), &["verify", l]);
    assert_eq!(o.status.code(), Some(1));
    let out = stdout(&o);
    assert!(out.starts_with("Status: INVALID\n"), "{out}");
    assert!(out.contains("error: line 4 (seq 3): [5 chain]"), "{out}");

    // JSON.
    let o = lexecon(d.path(), &["verify", l, "--json"]);
    assert_eq!(o.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json");
    assert_eq!(v["status"], "INVALID");
    assert_eq!(v["problems"][0]["line"], 4);
    assert_eq!(v["problems"][0]["seq"], 3);
    assert_eq!(v["problems"][0]["check"], "chain");

    // Truncated mid-line: incomplete.
    std::fs::write(&ledger, &text[..text.len() - 10]).expect("write");
    let o = lexecon(d.path(), &["verify", l]);
    assert_eq!(o.status.code(), Some(3));
    assert!(stdout(&o).starts_with("Status: INCOMPLETE\n"));
    let o = lexecon(d.path(), &["verify", l, "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json");
    assert_eq!(v["status"], "INCOMPLETE");
    assert_eq!(v["exit_code"], 3);

    // Unreadable.
    let o = lexecon(d.path(), &["verify", "no/such/ledger.jsonl"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("cannot open ledger"), "{}", stderr(&o));
}

#[test]
fn prove_and_verify_proof_round_trip() {
    let (d, ledger) = setup();
    let l = ledger.to_str().expect("utf-8");
    let o = lexecon(d.path(), &["prove", l, "3", "--record-out", "rec.jsonl"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).starts_with("c2sp.org/tlog-proof@v1\nindex 3\n"));
    std::fs::write(d.path().join("p.tlog-proof"), &o.stdout).expect("write");
    let o = lexecon(
        d.path(),
        &[
            "verify-proof",
            "--proof",
            "p.tlog-proof",
            "--record",
            "rec.jsonl",
        ],
    );
    assert_eq!(o.status.code(), Some(0), "{}{}", stdout(&o), stderr(&o));
    assert!(stdout(&o).contains("Proof: VALID"));
    assert!(stdout(&o).contains("Record seq 3 is leaf 3"));

    // A changed record does not verify.
    let rec = std::fs::read_to_string(d.path().join("rec.jsonl")).expect("read");
    std::fs::write(
        d.path().join("rec.jsonl"),
        rec.replacen("default", "defaulT", 1),
    )
    .expect("write");
    let o = lexecon(
        d.path(),
        &[
            "verify-proof",
            "--proof",
            "p.tlog-proof",
            "--record",
            "rec.jsonl",
        ],
    );
    assert_eq!(o.status.code(), Some(1));
    assert!(stdout(&o).contains("Proof: INVALID"));

    // No such record.
    let o = lexecon(d.path(), &["prove", l, "999"]);
    assert_eq!(o.status.code(), Some(2));
}

#[test]
fn ledger_recover_seals_a_torn_tail() {
    let (d, ledger) = setup();
    let l = ledger.to_str().expect("utf-8");
    let mut bytes = std::fs::read(&ledger).expect("read");
    bytes.extend_from_slice(b"{\"kind\":\"dec");
    std::fs::write(&ledger, &bytes).expect("write");
    assert_eq!(lexecon(d.path(), &["verify", l]).status.code(), Some(3));
    let o = lexecon(d.path(), &["ledger", "recover", l]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stdout(&o).contains("Removed a partial record of 12 bytes"),
        "{}",
        stdout(&o)
    );
    let o = lexecon(d.path(), &["verify", l]);
    assert_eq!(o.status.code(), Some(0), "{}", stdout(&o));
    assert!(stdout(&o).contains("warning: line"), "{}", stdout(&o));
    let o = lexecon(d.path(), &["ledger", "recover", l]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("nothing to recover"));
}
