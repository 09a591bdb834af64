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

/// Where `init-keys` puts keys for a home directory (no XDG variables set).
const KEYS: &str = ".config/lexecon/keys";

/// `lexecon ARGS` run in `dir`, with `dir` as its home directory and no
/// XDG or LEXECON variables: what it finds by default is in `dir`.
fn lexecon(dir: &Path, args: &[&str]) -> Output {
    lexecon_env(dir, args, &[])
}

/// As [`lexecon`], with extra environment variables.
fn lexecon_env(dir: &Path, args: &[&str], env: &[(&str, &Path)]) -> Output {
    lexecon_in(dir, dir, args, env)
}

/// As [`lexecon_env`], with `home` as the home directory.
fn lexecon_in(home: &Path, dir: &Path, args: &[&str], env: &[(&str, &Path)]) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_lexecon"));
    c.args(args).current_dir(dir).env("HOME", home);
    for v in [
        "XDG_CONFIG_HOME",
        "XDG_STATE_HOME",
        "LEXECON_KEYS",
        "LEXECON_LEDGER",
    ] {
        c.env_remove(v);
    }
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().expect("run lexecon")
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
    let ledger = d.path().join("ledgers/ledger.jsonl");
    let key = keys::load_signing_key(&d.path().join(KEYS)).expect("key");
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
        vars: None,
        policy_layers: Vec::new(),
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
            loaded: None,
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

    let o = lexecon(d.path(), &["init-keys", "--dir", "k", "--force", "--json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json");
    let public = keys::load_public_key(&dir.join("ledger.pub")).expect("public key");
    assert_eq!(v["fingerprint"], public.fingerprint());
    assert_eq!(v["verifier_key"], public.to_vkey());
    assert!(
        v["private_key"].as_str().unwrap().ends_with("k/ledger.key"),
        "{v}"
    );
    assert!(
        v["public_key"].as_str().unwrap().ends_with("k/ledger.pub"),
        "{v}"
    );
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

    // Valid, default key ~/.config/lexecon/keys/ledger.pub.
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
    let other_pub = other.path().join(KEYS).join("ledger.pub");
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
    let args = [
        "verify-proof",
        "--proof",
        "p.tlog-proof",
        "--record",
        "rec.jsonl",
        "--json",
    ];
    let o = lexecon(d.path(), &args);
    assert_eq!(o.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json");
    assert_eq!(v["status"], "INVALID");
    assert!(v["error"].as_str().is_some_and(|e| !e.is_empty()), "{v}");
    std::fs::write(d.path().join("rec.jsonl"), &rec).expect("write");
    let o = lexecon(d.path(), &args);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json");
    assert_eq!(v["status"], "VALID");
    assert_eq!(v["seq"], "3");
    assert_eq!(v["index"], "3");
    assert!(v["origin"].as_str().unwrap().starts_with("lexecon/"), "{v}");

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
    let o = lexecon(d.path(), &["ledger", "recover", l, "--json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json");
    assert_eq!(v["torn_bytes"], 12, "{v}");
    assert_eq!(v["torn_sha256"].as_str().map(str::len), Some(64), "{v}");
    assert!(v["recovery_seq"].is_string(), "{v}");
    let o = lexecon(d.path(), &["verify", l]);
    assert_eq!(o.status.code(), Some(0), "{}", stdout(&o));
    assert!(stdout(&o).contains("warning: line"), "{}", stdout(&o));
    let o = lexecon(d.path(), &["ledger", "recover", l]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("nothing to recover"));
}

// ------------------------------------------------------------------ anchors

/// Appends one run of `decisions` allowed decisions to `ledger`, signed
/// with the key in `dir/KEYS`, and returns its anchor line (what
/// `lexecon-supervise --anchor-out` writes).
fn append_run(dir: &Path, ledger: &Path, decisions: usize) -> String {
    let key = keys::load_signing_key(&dir.join(KEYS)).expect("key");
    let mut w = LedgerWriter::open(
        ledger,
        key,
        WriterOptions {
            checkpoint_every: 4,
            checkpoint_interval: Duration::from_secs(60),
            sync: SyncPolicy::Never,
            // A process another test forks at this moment holds the
            // previous run's lock until its exec closes the descriptor.
            lock: LockMode::Wait,
        },
    )
    .expect("open");
    w.begin_run(RunHeader {
        command: vec!["agent".into()],
        cwd: dir.to_path_buf(),
        workspace: None,
        policy_sha256: [4; 32],
        policy_path: None,
        mode: Mode::Enforce,
        ci: Default::default(),
        vars: None,
        policy_layers: Vec::new(),
    })
    .expect("begin");
    for i in 0..decisions {
        let a = Action::Exec(ExecAction {
            path: "/usr/bin/git".into(),
            argv: vec!["git".into(), format!("{i}").into()],
            cwd: dir.to_path_buf(),
            sha256: None,
        });
        w.append_decision(&DecisionEntry {
            pid: 10,
            ppid: 1,
            action: &a,
            loaded: None,
            stage: Stage::Request,
            verdict: Verdict::Allow,
            outcome: Outcome::Allowed,
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
        exit_status: Some(0),
        signal: None,
        note: None,
    })
    .expect("end");
    let seal = w.last_seal().expect("sealed");
    lexecon::ledger::Anchor::from_note(seal, "")
        .expect("anchor")
        .to_line()
}

/// The run id and tree size an anchor line names.
fn anchor_run(line: &str) -> (String, u64) {
    let w: Vec<&str> = line.split(' ').collect();
    (
        w[1].strip_prefix("lexecon/").expect("origin").to_string(),
        w[2].parse().expect("size"),
    )
}

/// A temp dir with keys and a ledger of two runs; the anchors of both in
/// `anchors.txt`; the ledger's length after run 1.
fn two_runs() -> (tempfile::TempDir, PathBuf, [String; 2], u64) {
    let d = tempfile::tempdir().expect("tempdir");
    assert!(lexecon(d.path(), &["init-keys"]).status.success());
    let ledger = d.path().join("ledgers/ledger.jsonl");
    let a1 = append_run(d.path(), &ledger, 5);
    let cut = std::fs::metadata(&ledger).expect("stat").len();
    let a2 = append_run(d.path(), &ledger, 9);
    std::fs::write(d.path().join("anchors.txt"), format!("{a1}\n{a2}\n")).expect("write");
    (d, ledger, [a1, a2], cut)
}

fn verify_anchored(dir: &Path, ledger: &Path, anchors: &str) -> (Option<i32>, String) {
    let o = lexecon(
        dir,
        &[
            "verify",
            ledger.to_str().expect("utf-8"),
            "--anchor",
            anchors,
        ],
    );
    (o.status.code(), stdout(&o) + &stderr(&o))
}

#[test]
fn anchors_hold_for_the_ledger_they_came_from() {
    let (d, ledger, [a1, a2], _) = two_runs();
    let (code, out) = verify_anchored(d.path(), &ledger, "anchors.txt");
    assert_eq!(code, Some(0), "{out}");
    assert!(out.starts_with("Status: VALID\n"), "{out}");
    assert!(
        out.contains("Anchors: 2 checked, 2 held, 0 not held"),
        "{out}"
    );
    let (id2, m2) = anchor_run(&a2);
    assert!(
        out.contains(&format!(
            "anchor 2 (anchors.txt:2, run {id2}, tree size {m2}) is held"
        )),
        "{out}"
    );
    // The anchor's tree is a strict prefix of its run in the file (the
    // final checkpoint line comes after what it signs): a real
    // consistency proof was checked, not an equality.
    assert!(
        out.contains(&format!("from size {m2} to size {}", m2 + 1)),
        "{out}"
    );

    // The same, as one signed note copied from the ledger.
    let text = std::fs::read_to_string(&ledger).expect("read");
    let last: serde_json::Value =
        serde_json::from_str(text.lines().last().expect("a line")).expect("json");
    std::fs::write(
        d.path().join("note.txt"),
        last["note"].as_str().expect("note"),
    )
    .expect("write");
    let (code, out) = verify_anchored(d.path(), &ledger, "note.txt");
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("Anchors: 1 checked, 1 held"), "{out}");

    // JSON reports every anchor checked.
    let o = lexecon(
        d.path(),
        &[
            "verify",
            ledger.to_str().expect("utf-8"),
            "--anchor",
            "anchors.txt",
            "--anchor",
            "note.txt",
            "--json",
        ],
    );
    assert_eq!(o.status.code(), Some(0));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json");
    let anchors = v["anchors"].as_array().expect("anchors");
    assert_eq!(anchors.len(), 3);
    assert!(anchors.iter().all(|a| a["status"] == "held"), "{v}");
    assert_eq!(anchors[0]["run"], anchor_run(&a1).0);
    assert_eq!(anchors[2]["source"], "note.txt");
    assert_eq!(anchors[2]["tree_size"], m2);
}

#[test]
fn a_cut_at_a_run_boundary_verifies_alone_but_not_against_its_anchor() {
    let (d, ledger, [_, a2], cut) = two_runs();
    let full = std::fs::read(&ledger).expect("read");
    let run1_lines = full[..cut as usize].iter().filter(|&&b| b == b'\n').count();
    std::fs::write(&ledger, &full[..cut as usize]).expect("truncate");
    let (id2, m2) = anchor_run(&a2);

    // The documented limit: what is left is a valid ledger.
    let o = lexecon(d.path(), &["verify", ledger.to_str().expect("utf-8")]);
    assert_eq!(o.status.code(), Some(0), "{}", stdout(&o));

    // The anchor of run 2 is not.
    let (code, out) = verify_anchored(d.path(), &ledger, "anchors.txt");
    assert_eq!(code, Some(1), "{out}");
    assert!(out.starts_with("Status: INVALID\n"), "{out}");
    assert!(
        out.contains("Anchors: 2 checked, 1 held, 1 not held"),
        "{out}"
    );
    assert!(
        out.contains(&format!(
            "[13 anchor] anchor 2 (anchors.txt:2, run {id2}, tree size {m2}) is not in the ledger: the ledger has {run1_lines} lines and no run {id2}"
        )),
        "{out}"
    );
    assert!(
        out.contains(&format!("the run's {m2} records were removed")),
        "{out}"
    );
    let o = lexecon(
        d.path(),
        &[
            "verify",
            ledger.to_str().expect("utf-8"),
            "--anchor",
            "anchors.txt",
            "--json",
        ],
    );
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json");
    assert_eq!(v["status"], "INVALID");
    assert_eq!(v["exit_code"], 1);
    assert_eq!(v["anchors"][0]["status"], "held");
    assert_eq!(v["anchors"][1]["status"], "missing");
    assert!(v["problems"]
        .as_array()
        .expect("problems")
        .iter()
        .any(|p| p["check"] == "anchor" && p["check_number"] == 13));

    // A new run chained onto the cut: the file verifies again on its own,
    // never against the anchor of the run it replaced.
    append_run(d.path(), &ledger, 3);
    let o = lexecon(d.path(), &["verify", ledger.to_str().expect("utf-8")]);
    assert_eq!(o.status.code(), Some(0), "{}", stdout(&o));
    assert!(stdout(&o).contains("Runs: 2 (2 sealed"), "{}", stdout(&o));
    let (code, out) = verify_anchored(d.path(), &ledger, "anchors.txt");
    assert_eq!(code, Some(1), "{out}");
    assert!(
        out.contains(&format!(
            "anchor 2 (anchors.txt:2, run {id2}, tree size {m2}) is not in the ledger"
        )),
        "{out}"
    );
}

#[test]
fn a_shortened_or_changed_run_does_not_match_its_anchor() {
    let (d, ledger, [_, a2], cut) = two_runs();
    let full = std::fs::read_to_string(&ledger).expect("read");
    let (id2, m2) = anchor_run(&a2);
    let run2_first_line = full[..cut as usize].lines().count() + 1;

    // Run 2 cut after its first 6 lines (a line boundary inside the run).
    let lines: Vec<&str> = full.lines().collect();
    let keep = run2_first_line - 1 + 6;
    std::fs::write(&ledger, lines[..keep].join("\n") + "\n").expect("write");
    let (code, out) = verify_anchored(d.path(), &ledger, "anchors.txt");
    assert_eq!(code, Some(1), "{out}");
    assert!(
        out.contains(&format!(
            "the ledger holds only 6 records of run {id2} (lines {run2_first_line}–{keep}); records 6..{m2} of the run, which the anchor signed, were removed"
        )),
        "{out}"
    );

    // One record of run 2 changed.
    std::fs::write(&ledger, full.replacen("\"git\",\"7\"", "\"git\",\"X\"", 1)).expect("write");
    let (code, out) = verify_anchored(d.path(), &ledger, "anchors.txt");
    assert_eq!(code, Some(1), "{out}");
    assert!(
        out.contains(&format!(
            "records up to {m2} of run {id2} (lines {run2_first_line}–{}) differ from what the anchor signed",
            run2_first_line as u64 + m2 - 1
        )),
        "{out}"
    );
    assert!(
        out.contains("Anchors: 2 checked, 1 held, 1 not held"),
        "{out}"
    );
}

#[test]
fn anchors_by_another_key_or_altered_are_refused() {
    let (d, ledger, [a1, a2], _) = two_runs();

    // An anchor of another ledger, signed by another key.
    let other = tempfile::tempdir().expect("tempdir");
    assert!(lexecon(other.path(), &["init-keys"]).status.success());
    let other_ledger = other.path().join("l.jsonl");
    let foreign = append_run(other.path(), &other_ledger, 2);
    std::fs::write(d.path().join("foreign.txt"), format!("{foreign}\n")).expect("write");
    let (code, out) = verify_anchored(d.path(), &ledger, "foreign.txt");
    assert_eq!(code, Some(1), "{out}");
    assert!(
        out.contains("is refused: it is not signed by the host key"),
        "{out}"
    );
    assert!(out.contains("another key"), "{out}");

    // The anchor of run 2 with the root of run 1, or another size.
    let w1: Vec<&str> = a1.split(' ').collect();
    let mut w2: Vec<&str> = a2.split(' ').collect();
    w2[3] = w1[3];
    std::fs::write(d.path().join("root.txt"), w2.join(" ") + "\n").expect("write");
    let (code, out) = verify_anchored(d.path(), &ledger, "root.txt");
    assert_eq!(code, Some(1), "{out}");
    assert!(
        out.contains("is refused: its signature by the host key"),
        "{out}"
    );
    assert!(out.contains("tree size or root was altered"), "{out}");
    let (_, m2) = anchor_run(&a2);
    let resized = a2.replacen(&format!(" {m2} "), &format!(" {} ", m2 - 3), 1);
    std::fs::write(d.path().join("size.txt"), resized + "\n").expect("write");
    let (code, out) = verify_anchored(d.path(), &ledger, "size.txt");
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("was altered"), "{out}");

    // Not an anchor file at all: could not read (2), naming the line.
    std::fs::write(
        d.path().join("bad.txt"),
        format!("{a1}\nlexecon-anchor/v1 x\n"),
    )
    .expect("write");
    let (code, out) = verify_anchored(d.path(), &ledger, "bad.txt");
    assert_eq!(code, Some(2), "{out}");
    assert!(out.contains("bad.txt:2: "), "{out}");
    let (code, out) = verify_anchored(d.path(), &ledger, "no-such-file.txt");
    assert_eq!(code, Some(2), "{out}");
    assert!(
        out.contains("cannot read anchor file no-such-file.txt"),
        "{out}"
    );
}

// ---------------------------------------------------------- default places

/// Where the ledger of workspace `ws` is kept for home directory `home`
/// (no XDG variables set).
fn workspace_ledger(home: &Path, ws: &Path) -> PathBuf {
    let ws = std::fs::canonicalize(ws).expect("canonical");
    home.join(".local/state/lexecon/ledgers")
        .join(lexecon::cli::locations::workspace_id(&ws))
        .join("ledger.jsonl")
}

/// A home directory with keys made by `init-keys` (no `--dir`), a
/// workspace `proj` (with a subdirectory `sub`) and its ledger of one run
/// at the default place.
fn home_with_workspace() -> (tempfile::TempDir, PathBuf, PathBuf) {
    let d = tempfile::tempdir().expect("tempdir");
    let o = lexecon(d.path(), &["init-keys"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let keys = d.path().join(KEYS);
    assert!(
        stdout(&o).contains(&keys.join("ledger.key").display().to_string()),
        "{}",
        stdout(&o)
    );
    assert_eq!(mode(&keys), 0o700);
    assert_eq!(mode(&d.path().join(".config/lexecon")), 0o700);
    assert_eq!(mode(&keys.join("ledger.key")), 0o600);
    let ws = d.path().join("proj");
    std::fs::create_dir_all(ws.join("sub")).expect("mkdir");
    let ledger = workspace_ledger(d.path(), &ws);
    append_run(d.path(), &ledger, 3);
    (d, ws, ledger)
}

#[test]
fn commands_without_a_ledger_argument_find_the_workspaces_ledger() {
    let (d, ws, ledger) = home_with_workspace();
    let shown = format!("Ledger: {}", ledger.display());
    // From the workspace and from below it; the key is found too (exit 0).
    for dir in [ws.clone(), ws.join("sub")] {
        let o = lexecon_in(d.path(), &dir, &["verify"], &[]);
        assert_eq!(o.status.code(), Some(0), "{}{}", stdout(&o), stderr(&o));
        assert!(stdout(&o).contains(&shown), "{}", stdout(&o));
    }
    let o = lexecon_in(
        d.path(),
        &ws,
        &["prove", "2", "--record-out", "rec.jsonl"],
        &[],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    std::fs::write(ws.join("p.tlog-proof"), &o.stdout).expect("write");
    let o = lexecon_in(
        d.path(),
        &ws,
        &[
            "verify-proof",
            "--proof",
            "p.tlog-proof",
            "--record",
            "rec.jsonl",
        ],
        &[],
    );
    assert_eq!(o.status.code(), Some(0), "{}{}", stdout(&o), stderr(&o));
    // `prove LEDGER SEQ` still works.
    let l = ledger.to_str().expect("utf-8");
    assert!(lexecon(d.path(), &["prove", l, "2"]).status.success());
    let o = lexecon_in(d.path(), &ws, &["ledger", "recover"], &[]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains(&format!("nothing to recover: the last run in {l}")),
        "{}",
        stderr(&o)
    );
    // pending/approve/deny look for the socket next to that ledger.
    for args in [&["pending"][..], &["approve", "1"], &["deny", "1"]] {
        let o = lexecon_in(d.path(), &ws.join("sub"), args, &[]);
        assert_eq!(o.status.code(), Some(2), "{args:?}");
        assert!(
            stderr(&o).contains(&format!("{l}.approval.sock")),
            "{args:?}: {}",
            stderr(&o)
        );
    }
    // Outside any workspace: says where it looked and what to do.
    let o = lexecon(d.path(), &["verify"]);
    assert_eq!(o.status.code(), Some(2));
    let e = stderr(&o);
    assert!(
        e.contains("no ledger found for") && e.contains("name the ledger with the LEDGER argument"),
        "{e}"
    );
    let o = lexecon(d.path(), &["pending"]);
    assert!(stderr(&o).contains("--ledger FILE"), "{}", stderr(&o));
}

#[test]
fn a_ledger_left_by_an_earlier_version_is_named_when_none_is_found() {
    let d = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir_all(d.path().join("old/.audit")).expect("mkdir");
    std::fs::write(d.path().join("old/.audit/ledger.jsonl"), "").expect("write");
    let o = lexecon(&d.path().join("old"), &["verify"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains(".audit/ledger.jsonl is a ledger written by an earlier version"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn lexecon_keys_is_honoured_by_init_keys_verify_and_recover() {
    let d = tempfile::tempdir().expect("tempdir");
    let k = d.path().join("elsewhere/keys");
    let env = [("LEXECON_KEYS", k.as_path())];
    let o = lexecon_env(d.path(), &["init-keys"], &env);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(k.join("ledger.key").is_file());
    assert!(!d.path().join(KEYS).exists());
    let ledger = d.path().join("l/ledger.jsonl");
    let key = keys::load_signing_key(&k).expect("key");
    drop(key);
    // append_run takes the key from dir/KEYS: make that the same key.
    std::fs::create_dir_all(d.path().join(KEYS).parent().expect("parent")).expect("mkdir");
    std::os::unix::fs::symlink(&k, d.path().join(KEYS)).expect("symlink");
    append_run(d.path(), &ledger, 2);
    std::fs::remove_file(d.path().join(KEYS)).expect("unlink");
    let l = ledger.to_str().expect("utf-8");

    let o = lexecon_env(d.path(), &["verify", l], &env);
    assert_eq!(o.status.code(), Some(0), "{}{}", stdout(&o), stderr(&o));
    // Without it, no key is found: exit 4.
    assert_eq!(lexecon(d.path(), &["verify", l]).status.code(), Some(4));

    let mut bytes = std::fs::read(&ledger).expect("read");
    bytes.extend_from_slice(b"{\"kind\":");
    std::fs::write(&ledger, &bytes).expect("write");
    // Without it, recover finds no key and says how to make one.
    let o = lexecon(d.path(), &["ledger", "recover", l]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("no ledger signing key"),
        "{}",
        stderr(&o)
    );
    let o = lexecon_env(d.path(), &["ledger", "recover", l], &env);
    assert!(o.status.success(), "{}", stderr(&o));
    let o = lexecon_env(d.path(), &["verify", l], &env);
    assert_eq!(o.status.code(), Some(0), "{}", stdout(&o));
}

#[test]
fn xdg_variables_and_lexecon_ledger_choose_the_places() {
    let d = tempfile::tempdir().expect("tempdir");
    let cfg = d.path().join("cfg");
    let o = lexecon_env(d.path(), &["init-keys"], &[("XDG_CONFIG_HOME", &cfg)]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(cfg.join("lexecon/keys/ledger.pub").is_file());
    // A relative XDG value is ignored, as the specification says.
    let o = lexecon_env(
        d.path(),
        &["init-keys"],
        &[("XDG_CONFIG_HOME", Path::new("rel"))],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(d.path().join(KEYS).join("ledger.pub").is_file());
    assert!(!d.path().join("rel").exists());

    let ledger = d.path().join("mine.jsonl");
    append_run(d.path(), &ledger, 1);
    let o = lexecon_env(d.path(), &["verify"], &[("LEXECON_LEDGER", &ledger)]);
    assert_eq!(o.status.code(), Some(0), "{}{}", stdout(&o), stderr(&o));
    assert!(stdout(&o).contains(&format!("Ledger: {}", ledger.display())));

    let state = d.path().join("state");
    let ws = d.path().join("w");
    std::fs::create_dir(&ws).expect("mkdir");
    let id = lexecon::cli::locations::workspace_id(&std::fs::canonicalize(&ws).expect("c"));
    let at = state.join("lexecon/ledgers").join(id).join("ledger.jsonl");
    append_run(d.path(), &at, 1);
    let o = lexecon_in(d.path(), &ws, &["verify"], &[("XDG_STATE_HOME", &state)]);
    assert_eq!(o.status.code(), Some(0), "{}{}", stdout(&o), stderr(&o));
    assert!(stdout(&o).contains(&format!("Ledger: {}", at.display())));
}

/// A ledger written by lexecon before record formats were numbered
/// (format 1: `sh -c 'cat secret; echo hi > out'` under
/// `tests/data/format1/policy.yaml`, the open of `secret` blocked by a
/// rule), with its public key.
fn format_1_fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/format1")
}

#[test]
fn a_ledger_written_in_format_1_still_verifies_and_reads_as_before() {
    use lexecon::ledger::{decode, jcs, read, verify};
    let dir = format_1_fixture();
    let ledger = dir.join("ledger.jsonl");
    let text = std::fs::read_to_string(&ledger).unwrap();
    assert!(!text.contains(r#""format""#) && !text.contains(r#""kind":"process""#));
    let key = keys::load_public_key(&dir.join("ledger.pub")).unwrap();
    let report = verify::verify_file(&ledger, Some(key.verifying_key())).unwrap();
    assert!(report.is_valid(), "{:?}", report.problems);
    // Its decisions read through a context exactly as without one (format
    // 1 knows no references), and none is rewritten.
    let mut ctx = decode::Context::new();
    let mut decisions = 0;
    for line in text.lines() {
        let v = jcs::parse(line, jcs::Mode::Strict).unwrap();
        ctx.observe(&v).unwrap();
        assert_eq!(ctx.format(), 1);
        assert_eq!(
            ctx.decode_record(&v).unwrap(),
            decode::decode_record(&v).unwrap()
        );
        assert_eq!(ctx.expanded(&v).unwrap(), None);
        decisions += usize::from(line.contains(r#""kind":"decision""#));
    }
    assert!(decisions > 10);
    let mut blocked = Vec::new();
    read::read(&ledger, Some(&report), |e| {
        if e.is_blocked() {
            blocked.push(e);
        }
        Ok(())
    })
    .unwrap();
    assert_eq!(blocked.len(), 1);
    match &blocked[0].item {
        read::Item::Action(r) => {
            assert_eq!(r.rule.as_deref(), Some("no-secret"));
            assert_eq!(r.reason, "secrets stay");
        }
        other => panic!("{other:?}"),
    }
    // And its decisions are re-derived from the policy it pinned.
    let tmp = tempfile::tempdir().unwrap();
    let d = dir.display().to_string();
    let out = lexecon(
        tmp.path(),
        &[
            "verify",
            &format!("{d}/ledger.jsonl"),
            "--pubkey",
            &format!("{d}/ledger.pub"),
            "--policy",
            &format!("{d}/policy.yaml"),
        ],
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    assert!(stdout.contains("Status: VALID"), "{stdout}");
}
