//! Ledger tests: known-answer vectors (RFC 6962, RFC 8785, C2SP signed
//! note), tamper fixtures (one per verifier check), a byte-flip property
//! test, lossless bytes, locking, concurrent writers, torn tails and
//! recovery.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use ed25519_dalek::SigningKey;
use lexecon::action::{Access, Action, ExecAction, Mode, OpenAction, Verdict};
use lexecon::ledger::jcs::{self, Value};
use lexecon::ledger::merkle::{self, Hash};
use lexecon::ledger::note::{self, Checkpoint, NoteVerifier};
use lexecon::ledger::proof;
use lexecon::ledger::verify::{self, Check, KeySource, Report, Severity, Status};
use lexecon::ledger::{
    DecisionEntry, EscalationEntry, FileIdentity, HostKey, LedgerError, LedgerWriter, LockMode,
    Outcome, ResolutionEntry, RunEnd, RunHeader, Stage, SyncPolicy, WriterOptions,
};

// ------------------------------------------------------------------ helpers

fn host_key() -> HostKey {
    HostKey::from_signing_key("lexecon", SigningKey::from_bytes(&[7u8; 32])).expect("valid name")
}

fn other_key() -> HostKey {
    HostKey::from_signing_key("lexecon", SigningKey::from_bytes(&[9u8; 32])).expect("valid name")
}

fn opts(n: u64) -> WriterOptions {
    WriterOptions {
        checkpoint_every: n,
        checkpoint_interval: Duration::from_secs(3600),
        sync: SyncPolicy::Never,
        lock: LockMode::Fail,
    }
}

fn header() -> RunHeader {
    RunHeader {
        command: vec!["agent".into(), "--task".into(), "fix tests".into()],
        cwd: "/work/repo".into(),
        workspace: None,
        policy_sha256: [0xab; 32],
        policy_path: Some("policies/default.yaml".into()),
        mode: Mode::Enforce,
        ci: BTreeMap::from([("GITHUB_RUN_ID".to_string(), "42".to_string())]),
        vars: None,
        policy_layers: Vec::new(),
    }
}

fn exec_action(i: usize) -> Action {
    Action::Exec(ExecAction {
        path: "/usr/bin/git".into(),
        argv: vec!["git".into(), "status".into(), format!("{i}").into()],
        cwd: "/work/repo".into(),
        sha256: Some([1; 32]),
    })
}

fn decision(action: &Action, verdict: Verdict) -> DecisionEntry<'_> {
    DecisionEntry {
        pid: 1000,
        ppid: 999,
        action,
        loaded: None,
        stage: Stage::Request,
        verdict,
        outcome: if verdict == Verdict::Block {
            Outcome::Refused
        } else {
            Outcome::Allowed
        },
        rule: Some("git-read".into()),
        matched: vec!["git-read".into()],
        reason: "reading the repository is fine".into(),
        mode: Mode::Enforce,
        identity: Some(FileIdentity {
            dev: 2049,
            ino: 1 << 60,
            sha256: Some([2; 32]),
        }),
        note: None,
    }
}

/// Append one run with `decisions` allow decisions (a block at `block`).
fn write_run(path: &Path, n: u64, decisions: usize, block: Option<usize>) {
    let mut w = LedgerWriter::open(path, host_key(), opts(n)).expect("open");
    w.begin_run(header()).expect("begin");
    for i in 0..decisions {
        let a = exec_action(i);
        let v = if Some(i) == block {
            Verdict::Block
        } else {
            Verdict::Allow
        };
        w.append_decision(&decision(&a, v)).expect("append");
    }
    w.end_run(RunEnd {
        exit_status: Some(0),
        signal: None,
        note: None,
    })
    .expect("end");
}

fn tmp() -> (tempfile::TempDir, PathBuf) {
    let d = tempfile::tempdir().expect("tempdir");
    let p = d.path().join("audit/ledger.jsonl");
    (d, p)
}

fn pubkey() -> ed25519_dalek::VerifyingKey {
    *host_key().public().verifying_key()
}

fn check(path: &Path) -> Report {
    verify::verify_file(path, Some(&pubkey())).expect("readable")
}

fn read_lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .expect("read")
        .lines()
        .map(str::to_string)
        .collect()
}

fn write_lines(path: &Path, lines: &[String]) {
    let mut s = lines.join("\n");
    s.push('\n');
    std::fs::write(path, s).expect("write");
}

fn kind_of(line: &str) -> String {
    let v = jcs::parse(line, jcs::Mode::Strict).expect("canonical");
    v.get("kind")
        .and_then(|k| k.as_str())
        .unwrap_or("")
        .to_string()
}

/// Index (0-based) of the `nth` line of `kind`.
fn find(lines: &[String], kind: &str, nth: usize) -> usize {
    lines
        .iter()
        .enumerate()
        .filter(|(_, l)| kind_of(l) == kind)
        .nth(nth)
        .map(|(i, _)| i)
        .expect("line of that kind")
}

/// Replace field `key` of a line, re-encoding canonically.
fn set_field(line: &str, key: &str, value: Value<'static>) -> String {
    let v = jcs::parse(line, jcs::Mode::Strict).expect("canonical");
    let Value::Object(mut m) = v else {
        panic!("not an object")
    };
    match m.iter_mut().find(|(k, _)| k == key) {
        Some(slot) => slot.1 = value,
        None => m.push((key.to_string().into(), value)),
    }
    Value::Object(m).to_canonical().expect("finite")
}

/// Remove field `key` of a line, re-encoding canonically.
fn remove_field(line: &str, key: &str) -> String {
    let v = jcs::parse(line, jcs::Mode::Strict).expect("canonical");
    let Value::Object(mut m) = v else {
        panic!("not an object")
    };
    m.retain(|(k, _)| k != key);
    Value::Object(m).to_canonical().expect("finite")
}

/// A `prev` naming `h` in the encoding the `prev` of `like` has (hex, or
/// base64 in a format-2 run after its header), as an attacker would write it.
fn prev_like(like: &str, h: Hash) -> Value<'static> {
    use base64::Engine as _;
    let v = jcs::parse(like, jcs::Mode::Strict).expect("canonical");
    let base64 = v
        .get("prev")
        .and_then(Value::as_str)
        .is_some_and(|p| p.len() == 44);
    Value::String(
        if base64 {
            base64::engine::general_purpose::STANDARD.encode(h)
        } else {
            hex::encode(h)
        }
        .into(),
    )
}

/// Recompute `prev` of every line after `from`, as an attacker would.
fn rechain(lines: &mut [String], from: usize) {
    for i in from + 1..lines.len() {
        let h = merkle::leaf_hash(lines[i - 1].as_bytes());
        lines[i] = set_field(&lines[i], "prev", prev_like(&lines[i], h));
    }
}

fn first(r: &Report) -> &verify::Problem {
    r.problems.first().expect("a problem")
}

fn hx(s: &str) -> Hash {
    let mut h = [0u8; 32];
    hex::decode_to_slice(s, &mut h).expect("hex");
    h
}

// ------------------------------------------------------- known answers

/// Leaves and roots from the RFC 6962 test data used by
/// certificate-transparency-go and transparency-dev/merkle.
fn ct_leaves() -> Vec<Vec<u8>> {
    vec![
        vec![],
        vec![0x00],
        vec![0x10],
        vec![0x20, 0x21],
        vec![0x30, 0x31],
        vec![0x40, 0x41, 0x42, 0x43],
        vec![0x50, 0x51, 0x52, 0x53, 0x54, 0x55, 0x56, 0x57],
        (0x60..=0x6f).collect(),
    ]
}

const CT_ROOTS: [&str; 8] = [
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
];

#[test]
fn rfc6962_roots_match_published_vectors() {
    assert_eq!(
        merkle::empty_root(),
        hx("e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
    );
    let leaves: Vec<Hash> = ct_leaves().iter().map(|l| merkle::leaf_hash(l)).collect();
    let mut cr = merkle::CompactRange::new();
    for (i, l) in leaves.iter().enumerate() {
        cr.push(*l);
        assert_eq!(cr.root(), hx(CT_ROOTS[i]), "root of size {}", i + 1);
        assert_eq!(merkle::root(&leaves[..=i]), hx(CT_ROOTS[i]));
    }
}

#[test]
fn rfc6962_inclusion_proofs_match_published_vectors() {
    let leaves: Vec<Hash> = ct_leaves().iter().map(|l| merkle::leaf_hash(l)).collect();
    let cases: [(u64, u64, &[&str]); 5] = [
        (0, 1, &[]),
        (
            0,
            8,
            &[
                "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
                "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
            ],
        ),
        (
            5,
            8,
            &[
                "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
                "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
                "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
            ],
        ),
        (
            2,
            3,
            &["fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125"],
        ),
        (
            1,
            5,
            &[
                "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
                "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
            ],
        ),
    ];
    for (index, size, want) in cases {
        let want: Vec<Hash> = want.iter().map(|h| hx(h)).collect();
        let got = merkle::inclusion_proof(&leaves, index, size).expect("in range");
        assert_eq!(got, want, "proof of {index} in {size}");
        let root = hx(CT_ROOTS[size as usize - 1]);
        merkle::verify_inclusion(index, size, &leaves[index as usize], &got, &root)
            .expect("verifies");
        // Any change breaks it.
        assert!(
            merkle::verify_inclusion(index, size, &leaves[7], &got, &root).is_err() || index == 7
        );
        if !got.is_empty() {
            let mut bad = got.clone();
            bad[0][0] ^= 1;
            assert!(
                merkle::verify_inclusion(index, size, &leaves[index as usize], &bad, &root)
                    .is_err()
            );
            assert!(merkle::verify_inclusion(
                index,
                size,
                &leaves[index as usize],
                &got[1..],
                &root
            )
            .is_err());
        }
    }
    // Every proof for every size up to 8 round-trips.
    for size in 1..=8u64 {
        let root = merkle::root(&leaves[..size as usize]);
        for index in 0..size {
            let p = merkle::inclusion_proof(&leaves, index, size).expect("in range");
            merkle::verify_inclusion(index, size, &leaves[index as usize], &p, &root).expect("ok");
        }
    }
}

#[test]
fn rfc8785_canonicalization_examples() {
    // RFC 8785 §3.2.2 example.
    let input = r#"{
  "numbers": [333333333.33333329, 1E30, 4.50, 2e-3, 0.000000000000000000000000001],
  "string": "\u20ac$\u000F\u000aA'\u0042\u0022\u005c\\\"\/",
  "literals": [null, true, false]
}"#;
    assert_eq!(
        jcs::canonicalize(input).expect("valid JSON"),
        r#"{"literals":[null,true,false],"numbers":[333333333.3333333,1e+30,4.5,0.002,1e-27],"string":"€$\u000f\nA'B\"\\\\\"/"}"#
    );
    // RFC 8785 §3.2.3: sorting by UTF-16 code units.
    let input = r#"{
  "\u20ac": "Euro Sign",
  "\r": "Carriage Return",
  "\ufb33": "Hebrew Letter Dalet With Dagesh",
  "1": "One",
  "\ud83d\ude00": "Emoji: Grinning Face",
  "\u0080": "Control",
  "\u00f6": "Latin Small Letter O With Diaeresis"
}"#;
    let out = jcs::canonicalize(input).expect("valid JSON");
    let v = jcs::parse(&out, jcs::Mode::Strict).expect("canonical output parses strictly");
    let Value::Object(m) = v else { panic!() };
    let values: Vec<&str> = m.iter().map(|(_, v)| v.as_str().unwrap_or("")).collect();
    assert_eq!(
        values,
        [
            "Carriage Return",
            "One",
            "Control",
            "Latin Small Letter O With Diaeresis",
            "Euro Sign",
            "Emoji: Grinning Face",
            "Hebrew Letter Dalet With Dagesh"
        ]
    );
}

#[test]
fn rfc8785_number_formatting() {
    // RFC 8785 Appendix B.
    let cases: [(u64, &str); 21] = [
        (0x0000000000000000, "0"),
        (0x8000000000000000, "0"),
        (0x0000000000000001, "5e-324"),
        (0x8000000000000001, "-5e-324"),
        (0x7fefffffffffffff, "1.7976931348623157e+308"),
        (0xffefffffffffffff, "-1.7976931348623157e+308"),
        (0x4340000000000000, "9007199254740992"),
        (0xc340000000000000, "-9007199254740992"),
        (0x4430000000000000, "295147905179352830000"),
        (0x44b52d02c7e14af5, "9.999999999999997e+22"),
        (0x44b52d02c7e14af6, "1e+23"),
        (0x44b52d02c7e14af7, "1.0000000000000001e+23"),
        (0x444b1ae4d6e2ef4e, "999999999999999700000"),
        (0x444b1ae4d6e2ef4f, "999999999999999900000"),
        (0x444b1ae4d6e2ef50, "1e+21"),
        (0x3eb0c6f7a0b5ed8c, "9.999999999999997e-7"),
        (0x3eb0c6f7a0b5ed8d, "0.000001"),
        (0x41b3de4355555553, "333333333.3333332"),
        (0x41b3de4355555557, "333333333.33333343"),
        (0xbecbf647612f3696, "-0.0000033333333333333333"),
        (0x43143ff3c1cb0959, "1424953923781206.2"),
    ];
    for (bits, want) in cases {
        let v = f64::from_bits(bits);
        assert_eq!(jcs::format_number(v).expect("finite"), want, "{bits:#x}");
        if bits != 0x8000000000000000 {
            let parsed = jcs::parse(want, jcs::Mode::Strict).expect("canonical number");
            assert_eq!(parsed, Value::Number(v));
        }
    }
    assert!(jcs::format_number(f64::NAN).is_err());
    assert!(jcs::format_number(f64::INFINITY).is_err());
}

#[test]
fn signed_note_matches_go_sumdb_vector() {
    // golang.org/x/mod/sumdb/note test vector.
    let skey = "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz";
    let vkey = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW";
    let text = "If you think cryptography is the answer to your problem,\nthen you don't know what your problem is.\n";
    let want = format!("{text}\n\u{2014} PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n");
    let (name, sk) = note::parse_signer(skey).expect("valid signer key");
    assert_eq!(name, "PeterNeumann");
    let signed = note::sign(text, &[(&name, &sk)]);
    assert_eq!(signed, want);
    let v = NoteVerifier::parse(vkey).expect("valid verifier key");
    assert_eq!(v.to_vkey(), vkey);
    assert_eq!(v.key, sk.verifying_key());
    let (t, sigs) = note::parse(&want).expect("parses");
    assert_eq!(t, text);
    assert!(sigs[0].verifies(t, &v));
    assert!(!sigs[0].verifies("other text\n", &v));
    assert!(NoteVerifier::parse(
        "PeterNeumann+c74f20a4+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"
    )
    .is_err());
}

#[test]
fn fixed_key_checkpoint_key_id_follows_the_spec() {
    let sk = SigningKey::from_bytes(&[7u8; 32]);
    let name = "example.com/log";
    // Key ID computed by hand from the spec: SHA-256(name || 0x0A || 0x01 || key)[:4].
    let mut pre = name.as_bytes().to_vec();
    pre.push(0x0a);
    pre.push(0x01);
    pre.extend_from_slice(sk.verifying_key().as_bytes());
    use sha2::Digest;
    let d = sha2::Sha256::digest(&pre);
    assert_eq!(
        note::key_id(name, &sk.verifying_key()),
        [d[0], d[1], d[2], d[3]]
    );

    let cp = Checkpoint {
        origin: "example.com/log".into(),
        size: 8,
        root: hx(CT_ROOTS[7]),
    };
    let body = cp.body();
    use base64::Engine as _;
    let b64_root = base64::engine::general_purpose::STANDARD.encode(hx(CT_ROOTS[7]));
    assert_eq!(body, format!("example.com/log\n8\n{b64_root}\n"));
    let signed = note::sign(&body, &[(name, &sk)]);
    // Ed25519 is deterministic: this exact note is what the key produces.
    let (text, sigs) = note::parse(&signed).expect("parses");
    assert_eq!(text, body);
    assert_eq!(sigs.len(), 1);
    assert_eq!(sigs[0].key_id, [d[0], d[1], d[2], d[3]]);
    let v = NoteVerifier {
        name: name.into(),
        key: sk.verifying_key(),
    };
    assert!(sigs[0].verifies(text, &v));
    assert_eq!(Checkpoint::parse(text).expect("valid"), cp);
    assert!(signed.starts_with(&body));
    assert!(signed[body.len()..].starts_with("\n\u{2014} example.com/log "));
    // Same key, same note, same bytes.
    assert_eq!(note::sign(&body, &[(name, &sk)]), signed);
}

// ---------------------------------------------------------- writer basics

#[test]
fn a_written_ledger_verifies_and_counts() {
    let (_d, p) = tmp();
    write_run(&p, 4, 6, Some(2));
    write_run(&p, 1024, 3, None);
    let r = check(&p);
    assert_eq!(r.status, Status::Valid, "{:?}", r.problems);
    assert!(r.is_valid());
    assert_eq!(r.runs, 2);
    assert_eq!(r.sealed_runs, 2);
    assert_eq!(r.counts.decisions, 9);
    assert_eq!(r.counts.block, 1);
    assert_eq!(r.counts.refused, 1);
    // Without a key: still VALID, but marked as not independently keyed.
    let r = verify::verify_file(&p, None).expect("readable");
    assert_eq!(r.status, Status::Valid);
    assert_eq!(r.key_source, KeySource::LedgerHeader);
    assert!(!r.is_valid());
    assert_eq!(r.exit_code(), verify::EXIT_VALID_UNAUTHENTICATED);
    // The wrong key: INVALID with a host-key problem.
    let r = verify::verify_file(&p, Some(other_key().public().verifying_key())).expect("readable");
    assert_eq!(r.status, Status::Invalid);
    assert_eq!(first(&r).check, Check::HostKey);
    assert_eq!(first(&r).line, 1);
}

#[test]
fn checkpoints_follow_block_every_n_and_end() {
    let (_d, p) = tmp();
    write_run(&p, 4, 6, Some(0));
    let kinds: Vec<String> = read_lines(&p).iter().map(|l| kind_of(l)).collect();
    assert_eq!(
        kinds,
        [
            "run",
            "checkpoint", // first, host-signed
            "decision",
            "epoch",
            "checkpoint", // right after the block
            "decision",
            "decision",
            "decision",
            "decision",
            "epoch",
            "checkpoint", // N = 4
            "decision",
            "end",
            "checkpoint", // final
        ]
    );
    let lines = read_lines(&p);
    let cp = |i: usize| {
        let v = jcs::parse(&lines[i], jcs::Mode::Strict).expect("canonical");
        let n = v
            .get("note")
            .and_then(|n| n.as_str())
            .expect("note")
            .to_string();
        note::parse(&n)
            .expect("note")
            .1
            .iter()
            .map(|s| s.name.clone())
            .collect::<Vec<_>>()
    };
    assert_eq!(cp(1), ["lexecon"]);
    assert_eq!(cp(4), ["lexecon-epoch-0"]);
    assert_eq!(cp(10), ["lexecon-epoch-1"]);
    assert_eq!(cp(13), ["lexecon-epoch-2", "lexecon"]);
}

#[test]
fn every_record_signed_with_n_equal_1() {
    let (_d, p) = tmp();
    write_run(&p, 1, 3, None);
    let kinds: Vec<String> = read_lines(&p).iter().map(|l| kind_of(l)).collect();
    assert_eq!(kinds.iter().filter(|k| *k == "checkpoint").count(), 5);
    assert_eq!(check(&p).status, Status::Valid);
}

#[test]
fn time_based_checkpoint_when_due() {
    let (_d, p) = tmp();
    let mut o = opts(1000);
    o.checkpoint_interval = Duration::from_millis(20);
    let mut w = LedgerWriter::open(&p, host_key(), o).expect("open");
    w.begin_run(header()).expect("begin");
    let a = exec_action(0);
    w.append_decision(&decision(&a, Verdict::Allow))
        .expect("append");
    w.checkpoint_if_due().expect("not due yet");
    assert_eq!(read_lines(&p).len(), 3);
    std::thread::sleep(Duration::from_millis(30));
    w.checkpoint_if_due().expect("due");
    let lines = read_lines(&p);
    assert_eq!(kind_of(&lines[lines.len() - 1]), "checkpoint");
    assert_eq!(lines.len(), 5);
    // The run is open: INCOMPLETE until ended.
    assert_eq!(check(&p).status, Status::Incomplete);
    w.end_run(RunEnd::default()).expect("end");
    assert_eq!(check(&p).status, Status::Valid);
}

#[test]
fn non_utf8_and_control_bytes_round_trip_exactly() {
    let (_d, p) = tmp();
    let weird_path = PathBuf::from(OsString::from_vec(b"/tmp/\xff\xfeodd\x00name".to_vec()));
    let argv: Vec<OsString> = vec![
        OsString::from_vec(b"rm".to_vec()),
        OsString::from_vec(b"-rf".to_vec()),
        OsString::from_vec(b"caf\xe9".to_vec()),
        OsString::from_vec(b"tab\there\nnewline\x1b[31m\x7f\"quote\\".to_vec()),
        OsString::from_vec("\u{2028}\u{1F600}".as_bytes().to_vec()),
    ];
    let action = Action::Exec(ExecAction {
        path: weird_path.clone(),
        argv: argv.clone(),
        cwd: PathBuf::from(OsString::from_vec(b"/w/\x80".to_vec())),
        sha256: None,
    });
    let open = Action::Open(OpenAction {
        op: lexecon::action::FileOp::Open,
        detail: None,
        path: weird_path.clone(),
        access: Access::WRITE | Access::CREATE | Access::TRUNCATE,
        cwd: "/".into(),
        process: None,
    });
    let mut w = LedgerWriter::open(&p, host_key(), opts(4)).expect("open");
    let mut h = header();
    h.command = argv.clone();
    w.begin_run(h).expect("begin");
    w.append_decision(&decision(&action, Verdict::Block))
        .expect("append");
    w.append_decision(&decision(&open, Verdict::Allow))
        .expect("append");
    w.end_run(RunEnd::default()).expect("end");
    drop(w);
    let lines = read_lines(&p);
    let d = &lines[find(&lines, "decision", 0)];
    let v = jcs::parse(d, jcs::Mode::Strict).expect("canonical");
    let a = v.get("action").expect("action");
    let bytes = |v: &Value| lexecon::ledger::record::value_bytes(v).expect("byte string");
    assert_eq!(
        bytes(a.get("path").expect("path")),
        weird_path.as_os_str().as_bytes()
    );
    let Some(Value::Array(got)) = a.get("argv") else {
        panic!("argv")
    };
    let got: Vec<Vec<u8>> = got.iter().map(bytes).collect();
    let want: Vec<Vec<u8>> = argv.iter().map(|a| a.as_bytes().to_vec()).collect();
    assert_eq!(got, want);
    assert_eq!(bytes(a.get("cwd").expect("cwd")), b"/w/\x80");
    let h = jcs::parse(&lines[0], jcs::Mode::Strict).expect("canonical");
    let Some(Value::Array(cmd)) = h.get("command") else {
        panic!("command")
    };
    assert_eq!(cmd.iter().map(bytes).collect::<Vec<_>>(), want);
    let o = jcs::parse(&lines[find(&lines, "decision", 1)], jcs::Mode::Strict).expect("canonical");
    let oa = o.get("action").expect("action");
    assert_eq!(
        bytes(oa.get("path").expect("path")),
        weird_path.as_os_str().as_bytes()
    );
    assert!(
        lines[find(&lines, "decision", 1)].contains(r#""access":["write","create","truncate"]"#)
    );
    // Big integers are strings.
    assert!(d.contains(&format!(r#""ino":"{}""#, 1u64 << 60)));
    assert_eq!(check(&p).status, Status::Valid);
}

#[test]
fn second_writer_fails_fast_or_waits() {
    let (_d, p) = tmp();
    let w = LedgerWriter::open(&p, host_key(), opts(4)).expect("open");
    let e = LedgerWriter::open(&p, host_key(), opts(4)).expect_err("locked");
    assert!(matches!(e, LedgerError::Locked { .. }), "{e}");
    // The holder is named: here, this very process.
    let holder = format!("in use by another run (pid {}: ", std::process::id());
    assert!(e.to_string().contains(&holder), "{e}");
    drop(w);
    LedgerWriter::open(&p, host_key(), opts(4)).expect("free again");
}

#[test]
fn a_waiting_writer_is_told_at_once_who_holds_the_lock() {
    let (_d, p) = tmp();
    let w = LedgerWriter::open(&p, host_key(), opts(4)).expect("open");
    let (tx, rx) = std::sync::mpsc::channel();
    let q = p.clone();
    let waiter = std::thread::spawn(move || {
        let mut wait_opts = opts(4);
        wait_opts.lock = LockMode::Wait;
        LedgerWriter::open_notify(&q, host_key(), wait_opts, &mut |e| {
            tx.send(e.to_string()).expect("send");
        })
        .map(|_| ())
    });
    let told = rx
        .recv_timeout(Duration::from_secs(30))
        .expect("told while waiting");
    assert!(
        told.contains(&format!("(pid {}: ", std::process::id())),
        "{told}"
    );
    assert!(!waiter.is_finished(), "it waits");
    drop(w);
    waiter.join().expect("join").expect("opened once free");
    // Not told when nobody holds it.
    let mut told = false;
    let mut wait_opts = opts(4);
    wait_opts.lock = LockMode::Wait;
    LedgerWriter::open_notify(&p, host_key(), wait_opts, &mut |_| told = true).expect("open");
    assert!(!told);
}

#[test]
fn files_and_directories_are_private() {
    use std::os::unix::fs::PermissionsExt;
    let (d, p) = tmp();
    write_run(&p, 4, 1, None);
    let mode = |q: &Path| std::fs::metadata(q).expect("stat").permissions().mode() & 0o777;
    assert_eq!(mode(&p), 0o600);
    assert_eq!(mode(&d.path().join("audit")), 0o700);
}

#[test]
fn misuse_is_an_error() {
    let (_d, p) = tmp();
    let mut w = LedgerWriter::open(&p, host_key(), opts(4)).expect("open");
    let a = exec_action(0);
    assert!(matches!(
        w.append_decision(&decision(&a, Verdict::Allow)),
        Err(LedgerError::Misuse(_))
    ));
    assert!(matches!(
        w.end_run(RunEnd::default()),
        Err(LedgerError::Misuse(_))
    ));
    w.begin_run(header()).expect("begin");
    assert!(matches!(w.begin_run(header()), Err(LedgerError::Misuse(_))));
}

#[test]
fn a_failed_write_is_returned_not_swallowed() {
    let Ok(f) = std::fs::OpenOptions::new().write(true).open("/dev/full") else {
        return; // no /dev/full here
    };
    drop(f);
    // A ledger on /dev/full: opening works, the first write fails.
    let p = Path::new("/dev/full");
    let mut w = match LedgerWriter::open(p, host_key(), opts(4)) {
        Ok(w) => w,
        Err(e) => panic!("open /dev/full: {e}"),
    };
    let e = w.begin_run(header()).expect_err("disk full");
    assert!(e.to_string().contains("append a record to"), "{e}");
    let a = exec_action(0);
    assert!(w.append_decision(&decision(&a, Verdict::Allow)).is_err());
}

// ------------------------------------------------------- tamper fixtures

/// Two runs; the first with checkpoints at N = 4 and a block.
fn fixture() -> (tempfile::TempDir, PathBuf, Vec<String>) {
    let (d, p) = tmp();
    write_run(&p, 4, 9, Some(6));
    write_run(&p, 4, 2, None);
    let lines = read_lines(&p);
    assert_eq!(check(&p).status, Status::Valid);
    (d, p, lines)
}

fn seq_of(line: &str) -> u64 {
    let v = jcs::parse(line, jcs::Mode::Strict).expect("canonical");
    v.get("seq")
        .and_then(|s| s.as_str())
        .and_then(|s| s.parse().ok())
        .expect("seq")
}

#[test]
fn tamper_edit_a_field_is_located_exactly() {
    let (_d, p, mut lines) = fixture();
    let i = find(&lines, "decision", 1);
    lines[i] = lines[i].replace(
        "reading the repository is fine",
        "reading the repository is FINE",
    );
    write_lines(&p, &lines);
    let r = check(&p);
    assert_eq!(r.status, Status::Invalid);
    let f = first(&r);
    assert_eq!(
        (f.line, f.seq, f.check),
        (i as u64 + 1, Some(seq_of(&lines[i])), Check::Chain)
    );
    assert!(f.message.contains("was changed"), "{}", f.message);
}

#[test]
fn tamper_delete_a_middle_record() {
    let (_d, p, mut lines) = fixture();
    let i = find(&lines, "decision", 2);
    lines.remove(i);
    write_lines(&p, &lines);
    let r = check(&p);
    assert_eq!(r.status, Status::Invalid);
    let f = first(&r);
    assert_eq!((f.line, f.check), (i as u64 + 1, Check::Sequence));
    assert!(f.message.contains("1 record(s) missing"), "{}", f.message);
    assert!(r.problems.iter().any(|p| p.check == Check::Merkle));
}

#[test]
fn tamper_delete_the_last_records() {
    let (_d, p, mut lines) = fixture();
    let n = lines.len();
    lines.truncate(n - 3);
    write_lines(&p, &lines);
    let r = check(&p);
    assert_eq!(r.status, Status::Incomplete);
    let f = first(&r);
    assert_eq!(
        (f.line, f.check, f.severity),
        (n as u64 - 3, Check::Complete, Severity::Incomplete)
    );
    assert!(f.message.contains("has no end seal"), "{}", f.message);
}

#[test]
fn tamper_reorder_two_records() {
    let (_d, p, mut lines) = fixture();
    let i = find(&lines, "decision", 3);
    lines.swap(i, i + 1);
    write_lines(&p, &lines);
    let r = check(&p);
    assert_eq!(r.status, Status::Invalid);
    let f = first(&r);
    assert_eq!((f.line, f.check), (i as u64 + 1, Check::Sequence));
    assert_eq!(r.problems[1].line, i as u64 + 2);
}

#[test]
fn tamper_insert_a_forged_record() {
    let (_d, p, mut lines) = fixture();
    let i = find(&lines, "decision", 0);
    // A well-formed record with the right seq and prev, inserted after i.
    let forged = set_field(
        &lines[i],
        "seq",
        Value::String((seq_of(&lines[i]) + 1).to_string().into()),
    );
    let forged = set_field(
        &forged,
        "prev",
        prev_like(&lines[i], merkle::leaf_hash(lines[i].as_bytes())),
    );
    lines.insert(i + 1, forged);
    write_lines(&p, &lines);
    let r = check(&p);
    assert_eq!(r.status, Status::Invalid);
    let f = first(&r);
    assert_eq!((f.line, f.check), (i as u64 + 3, Check::Sequence));
    assert!(f.message.contains("inserted"), "{}", f.message);
}

#[test]
fn tamper_append_a_forged_record_after_the_seal() {
    let (_d, p, mut lines) = fixture();
    let last = lines.len() - 1;
    let d = find(&lines, "decision", 0);
    let forged = set_field(
        &lines[d],
        "seq",
        Value::String((seq_of(&lines[last]) + 1).to_string().into()),
    );
    let forged = set_field(
        &forged,
        "prev",
        prev_like(&lines[d], merkle::leaf_hash(lines[last].as_bytes())),
    );
    lines.push(forged);
    write_lines(&p, &lines);
    let r = check(&p);
    assert_eq!(r.status, Status::Invalid);
    let f = first(&r);
    assert_eq!((f.line, f.check), (lines.len() as u64, Check::Run));
    assert!(f.message.contains("outside any run"), "{}", f.message);
}

#[test]
fn tamper_duplicate_a_record() {
    let (_d, p, mut lines) = fixture();
    let i = find(&lines, "decision", 4);
    let dup = lines[i].clone();
    lines.insert(i + 1, dup);
    write_lines(&p, &lines);
    let r = check(&p);
    assert_eq!(r.status, Status::Invalid);
    let f = first(&r);
    assert_eq!((f.line, f.check), (i as u64 + 2, Check::Sequence));
    assert!(f.message.contains("repeats"), "{}", f.message);
}

#[test]
fn tamper_remove_a_run_from_the_middle() {
    let (_d, p) = tmp();
    write_run(&p, 4, 2, None);
    write_run(&p, 4, 2, None);
    write_run(&p, 4, 2, None);
    let lines = read_lines(&p);
    let r2 = find(&lines, "run", 1);
    let r3 = find(&lines, "run", 2);
    let mut spliced: Vec<String> = lines[..r2].to_vec();
    spliced.extend_from_slice(&lines[r3..]);
    write_lines(&p, &spliced);
    let r = check(&p);
    assert_eq!(r.status, Status::Invalid);
    let f = first(&r);
    assert_eq!((f.line, f.check), (r2 as u64 + 1, Check::Sequence));
    assert!(r
        .problems
        .iter()
        .any(|p| p.check == Check::CrossRun && p.line == r2 as u64 + 1));
}

#[test]
fn tamper_change_a_checkpoint_signature() {
    let (_d, p, mut lines) = fixture();
    let i = find(&lines, "checkpoint", 2);
    // Flip one base64 character of the signature (not the key ID).
    let pos = lines[i].rfind("\\n\"").expect("note end") - 10;
    let mut b = lines[i].clone().into_bytes();
    b[pos] = if b[pos] == b'A' { b'B' } else { b'A' };
    lines[i] = String::from_utf8(b).expect("ascii");
    write_lines(&p, &lines);
    let r = check(&p);
    assert_eq!(r.status, Status::Invalid);
    let f = first(&r);
    assert_eq!((f.line, f.check), (i as u64 + 1, Check::Signature));
    assert!(f.message.contains("does not verify"), "{}", f.message);
}

#[test]
fn tamper_truncate_mid_line() {
    let (_d, p, lines) = fixture();
    let mut s = lines.join("\n");
    s.push('\n');
    let cut = s.len() - 40;
    std::fs::write(&p, &s[..cut]).expect("write");
    let r = check(&p);
    assert_eq!(r.status, Status::Incomplete);
    let f = first(&r);
    assert_eq!((f.line, f.check), (lines.len() as u64, Check::Framing));
    assert!(f.message.contains("partial record"));
}

#[test]
fn tamper_remove_the_end_seal() {
    let (_d, p, mut lines) = fixture();
    lines.truncate(lines.len() - 2); // end record and final checkpoint
    write_lines(&p, &lines);
    let r = check(&p);
    assert_eq!(r.status, Status::Incomplete);
    assert_eq!(first(&r).check, Check::Complete);
    // Removing only the final checkpoint is also incomplete, and says so.
    let (_d2, p2, mut lines2) = fixture();
    lines2.pop();
    write_lines(&p2, &lines2);
    let r = check(&p2);
    assert_eq!(r.status, Status::Incomplete);
    assert!(first(&r).message.contains("final checkpoint is missing"));
}

#[test]
fn tamper_edit_with_chain_recomputed_is_located_to_its_interval() {
    let (_d, p, mut lines) = fixture();
    let i = find(&lines, "decision", 4);
    // An allow (format 2 leaves its verdict out).
    lines[i] = remove_field(&lines[i], "verdict");
    lines[i] = set_field(&lines[i], "reason", Value::str("nothing to see"));
    rechain(&mut lines, i);
    write_lines(&p, &lines);
    let r = check(&p);
    assert_eq!(r.status, Status::Invalid);
    let f = first(&r);
    // The next checkpoint after line i+1.
    let next_cp = (i..lines.len())
        .find(|&j| kind_of(&lines[j]) == "checkpoint")
        .expect("cp");
    let prev_cp = (0..i)
        .rev()
        .find(|&j| kind_of(&lines[j]) == "checkpoint")
        .expect("cp");
    assert_eq!((f.line, f.check), (next_cp as u64 + 1, Check::Merkle));
    assert!(
        f.message.contains(&format!(
            "between line {} and line {}",
            prev_cp + 2,
            next_cp
        )),
        "{}",
        f.message
    );
    assert!((prev_cp + 2..=next_cp).contains(&(i + 1)));
}

#[test]
fn tamper_end_counts_with_chain_recomputed() {
    let (_d, p, mut lines) = fixture();
    let i = find(&lines, "end", 0);
    let v = Value::Object(vec![
        ("allow".into(), Value::str("9")),
        ("block".into(), Value::str("0")),
        ("escalate".into(), Value::str("0")),
    ]);
    lines[i] = set_field(&lines[i], "verdicts", v);
    rechain(&mut lines, i);
    write_lines(&p, &lines);
    let r = check(&p);
    assert_eq!(r.status, Status::Invalid);
    let f = first(&r);
    assert_eq!((f.line, f.check), (i as u64 + 1, Check::Run));
    assert!(
        f.message.contains("end record's counts differ")
            && f.message
                .contains("verdict allow: the end record says 9, the run holds"),
        "{}",
        f.message
    );
}

/// Outcome counts that differ while the verdict counts agree: the message
/// names the outcome, not the same numbers twice.
#[test]
fn tamper_end_outcome_counts_names_what_differs() {
    let (_d, p, mut lines) = fixture();
    let i = find(&lines, "end", 0);
    let v: serde_json::Value = serde_json::from_str(&lines[i]).unwrap();
    let o = &v["outcomes"];
    let n = |k: &str| o[k].as_str().unwrap().parse::<u64>().unwrap();
    let (allowed, refused) = (n("allowed"), n("refused"));
    assert!(allowed > 0, "the fixture has an allowed decision");
    let (a, k, r) = (
        (allowed - 1).to_string(),
        n("killed").to_string(),
        (refused + 1).to_string(),
    );
    let swapped = Value::Object(vec![
        ("allowed".into(), Value::String(a.into())),
        ("killed".into(), Value::String(k.into())),
        ("refused".into(), Value::String(r.into())),
    ]);
    lines[i] = set_field(&lines[i], "outcomes", swapped);
    rechain(&mut lines, i);
    write_lines(&p, &lines);
    let r = check(&p);
    assert_eq!(r.status, Status::Invalid);
    let f = first(&r);
    assert_eq!((f.line, f.check), (i as u64 + 1, Check::Run));
    let want = format!(
        "outcome allowed: the end record says {}, the run holds {allowed}; outcome refused: the end record says {}, the run holds {refused}",
        allowed - 1,
        refused + 1
    );
    assert!(f.message.contains(&want), "{}", f.message);
    assert!(!f.message.contains("verdict"), "{}", f.message);
}

#[test]
fn tamper_unknown_record_kind_is_rejected_clearly() {
    let (_d, p, mut lines) = fixture();
    let i = find(&lines, "decision", 0);
    lines[i] = set_field(&lines[i], "kind", Value::str("approval"));
    write_lines(&p, &lines);
    let r = check(&p);
    let f = first(&r);
    assert_eq!((f.line, f.check), (i as u64 + 1, Check::Structure));
    assert!(
        f.message.contains("unknown record kind \"approval\""),
        "{}",
        f.message
    );
}

#[test]
fn tamper_non_canonical_encoding() {
    let (_d, p, mut lines) = fixture();
    let i = find(&lines, "decision", 0);
    lines[i] = lines[i].replacen("\"pid\":1000", "\"pid\": 1000", 1);
    write_lines(&p, &lines);
    let r = check(&p);
    let f = first(&r);
    assert_eq!((f.line, f.check), (i as u64 + 1, Check::Canonical));
}

#[test]
fn tamper_replace_an_epoch_key() {
    let (_d, p, mut lines) = fixture();
    let i = find(&lines, "epoch", 1);
    let k = SigningKey::from_bytes(&[5u8; 32]);
    use base64::Engine as _;
    let b = base64::engine::general_purpose::STANDARD.encode(k.verifying_key().as_bytes());
    lines[i] = set_field(&lines[i], "key", Value::String(b.into()));
    rechain(&mut lines, i);
    write_lines(&p, &lines);
    let r = check(&p);
    assert_eq!(r.status, Status::Invalid);
    assert_eq!(first(&r).check, Check::Merkle);
    assert_eq!(first(&r).line, i as u64 + 2);
    // The next checkpoint is signed by the real key, not the substituted one.
    assert!(r.problems.iter().any(|p| p.check == Check::Signature));
}

#[test]
fn stolen_host_key_cannot_reseal_an_edited_run() {
    // An attacker with the host key (but no epoch keys) edits a record,
    // recomputes the chain and re-signs every checkpoint with the host key.
    let (_d, p, mut lines) = fixture();
    let i = find(&lines, "decision", 1);
    lines[i] = set_field(&lines[i], "reason", Value::str("forged"));
    rechain(&mut lines, i);
    let hk = host_key();
    let sk = SigningKey::from_bytes(&[7u8; 32]);
    let run2 = find(&lines, "run", 1);
    let mut tree = merkle::CompactRange::new();
    for j in 0..run2 {
        if kind_of(&lines[j]) == "checkpoint" {
            let v = jcs::parse(&lines[j], jcs::Mode::Strict).expect("canonical");
            let n = v
                .get("note")
                .and_then(|x| x.as_str())
                .expect("note")
                .to_string();
            let (text, sigs) = note::parse(&n).expect("note");
            let mut cp = Checkpoint::parse(text).expect("body");
            cp.root = tree.root();
            let names: Vec<String> = sigs.iter().map(|s| s.name.clone()).collect();
            let signers: Vec<(&str, &SigningKey)> =
                names.iter().map(|n| (n.as_str(), &sk)).collect();
            let resigned = note::sign(&cp.body(), &signers);
            lines[j] = set_field(&lines[j], "note", Value::String(resigned.into()));
            rechain(&mut lines, j);
        }
        tree.push(merkle::leaf_hash(lines[j].as_bytes()));
    }
    drop(hk);
    write_lines(&p, &lines);
    let r = check(&p);
    assert_eq!(r.status, Status::Invalid);
    assert!(r
        .problems
        .iter()
        .any(|p| p.check == Check::Signature && p.message.contains("epoch")));
    // The next run's link and signatures also no longer match.
    assert!(r.problems.iter().any(|p| p.line as usize > run2));
}

// ------------------------------------------------ torn tails and recovery

#[test]
fn torn_tail_is_refused_then_recovered() {
    let (_d, p) = tmp();
    write_run(&p, 4, 3, None);
    let mut s = std::fs::read(&p).expect("read");
    s.extend_from_slice(b"{\"kind\":\"run\",\"seq\":\"");
    std::fs::write(&p, &s).expect("write");
    let e = LedgerWriter::open(&p, host_key(), opts(4)).expect_err("torn");
    assert!(matches!(e, LedgerError::TornTail { len: 21, .. }), "{e}");
    assert!(e.to_string().contains("lexecon ledger recover"));
    assert_eq!(check(&p).status, Status::Incomplete);

    let rec = lexecon::ledger::recover(&p, host_key()).expect("recover");
    assert_eq!(rec.torn_bytes, 21);
    assert_eq!(rec.unsealed_run, None);
    let r = check(&p);
    assert_eq!(r.status, Status::Valid, "{:?}", r.problems);
    assert!(r
        .warnings
        .iter()
        .any(|w| w.contains("partial record of 21 bytes")));
    write_run(&p, 4, 1, None);
    assert_eq!(check(&p).status, Status::Valid);
    assert!(matches!(
        lexecon::ledger::recover(&p, host_key()),
        Err(LedgerError::NothingToRecover { .. })
    ));
}

#[test]
fn killed_writer_leaves_an_incomplete_run_that_recover_seals() {
    let (_d, p) = tmp();
    write_run(&p, 4, 2, None);
    {
        let mut w = LedgerWriter::open(&p, host_key(), opts(4)).expect("open");
        w.begin_run(header()).expect("begin");
        for i in 0..6 {
            let a = exec_action(i);
            w.append_decision(&decision(&a, Verdict::Allow))
                .expect("append");
        }
        // Dropped without end_run: as if the supervisor was killed.
    }
    let r = check(&p);
    assert_eq!(r.status, Status::Incomplete);
    let f = first(&r);
    assert_eq!(f.check, Check::Complete);
    assert!(
        f.message.contains("2 record(s) after its last checkpoint"),
        "{}",
        f.message
    );
    let e = LedgerWriter::open(&p, host_key(), opts(4)).expect_err("unsealed");
    assert!(matches!(e, LedgerError::Unsealed { .. }));
    assert!(e.to_string().contains("lexecon ledger recover"));
    let rec = lexecon::ledger::recover(&p, host_key()).expect("recover");
    assert!(rec.unsealed_run.is_some());
    write_run(&p, 4, 1, None);
    let r = check(&p);
    assert_eq!(r.status, Status::Valid, "{:?}", r.problems);
    assert_eq!(r.recovered_runs, 1);
    assert_eq!(r.sealed_runs, 2);
    assert!(r
        .warnings
        .iter()
        .any(|w| w.contains("was not sealed by its writer")));
}

// ------------------------------------------------------------- proofs

#[test]
fn inclusion_proof_round_trip() {
    let (_d, p, lines) = fixture();
    let i = find(&lines, "decision", 5);
    let seq = seq_of(&lines[i]);
    let proved = proof::prove(&p, seq, None).expect("prove");
    assert!(proved.host_signed);
    assert_eq!(proved.record, lines[i]);
    let text = proved.proof.to_text();
    assert!(text.starts_with("c2sp.org/tlog-proof@v1\nindex "));
    let parsed = proof::Proof::parse(&text).expect("parse");
    assert_eq!(parsed, proved.proof);
    let c = proof::verify_proof(&parsed, &lines[i], &host_key().public()).expect("verifies");
    assert_eq!(c.seq, seq);
    assert_eq!(c.index, i as u64);
    // Another record, another key: refused.
    assert!(proof::verify_proof(&parsed, &lines[i - 1], &host_key().public()).is_err());
    assert!(proof::verify_proof(&parsed, &lines[i], &other_key().public()).is_err());
    // Against an intermediate checkpoint (epoch-signed only).
    let cp = find(&lines, "checkpoint", 1);
    let proved = proof::prove(&p, seq_of(&lines[2]), Some(seq_of(&lines[cp]))).expect("prove");
    assert!(!proved.host_signed);
    // A record of the second run.
    let j = find(&lines, "decision", 10);
    let proved = proof::prove(&p, seq_of(&lines[j]), None).expect("prove");
    proof::verify_proof(&proved.proof, &lines[j], &host_key().public()).expect("verifies");
}

// ----------------------------------------------- C2SP interop: tlog-proof

/// A `cosignature/v1` line (c2sp.org/tlog-cosignature) by an Ed25519
/// witness key over the checkpoint `body` at time `ts`.
fn cosignature_line(name: &str, key: &SigningKey, ts: u64, body: &str) -> String {
    use base64::Engine as _;
    use ed25519_dalek::Signer as _;
    use sha2::Digest;
    let mut pre = name.as_bytes().to_vec();
    pre.push(b'\n');
    pre.push(0x04);
    pre.extend_from_slice(key.verifying_key().as_bytes());
    let id = sha2::Sha256::digest(&pre);
    let msg = format!("cosignature/v1\ntime {ts}\n{body}");
    let mut blob = id[..4].to_vec();
    blob.extend_from_slice(&ts.to_be_bytes());
    blob.extend_from_slice(&key.sign(msg.as_bytes()).to_bytes());
    assert_eq!(blob.len(), 76);
    format!(
        "\u{2014} {name} {}\n",
        base64::engine::general_purpose::STANDARD.encode(blob)
    )
}

/// A proof of a decision of the fixture against its run's final
/// checkpoint, and that record's line.
fn fixture_proof() -> (tempfile::TempDir, proof::Proof, String) {
    let (d, p, lines) = fixture();
    let i = find(&lines, "decision", 3);
    let proved = proof::prove(&p, seq_of(&lines[i]), None).expect("prove");
    (d, proved.proof, lines[i].clone())
}

#[test]
fn tlog_proof_with_witness_cosignatures_and_unknown_keys_is_accepted() {
    use base64::Engine as _;
    let (_d, pr, record) = fixture_proof();
    let (body, _) = note::parse(&pr.checkpoint).expect("parses");
    let body = body.to_string();
    let w1 = SigningKey::from_bytes(&[21u8; 32]);
    let w2 = SigningKey::from_bytes(&[22u8; 32]);
    // A signature type this verifier does not know, of arbitrary length
    // (a post-quantum signature is kilobytes).
    let long: Vec<u8> = (0..2424u32).map(|i| (i * 7 + 3) as u8).collect();
    let unknown = format!(
        "\u{2014} pq.example/log {}\n",
        base64::engine::general_purpose::STANDARD.encode(&long)
    );
    // Shares the host key's name but not its key ID: ignored as well.
    let mut same_name = vec![0xde, 0xad, 0xbe, 0xef];
    same_name.extend_from_slice(&[5u8; 64]);
    let same_name = format!(
        "\u{2014} lexecon {}\n",
        base64::engine::general_purpose::STANDARD.encode(&same_name)
    );
    let mut cosigned = pr.clone();
    // Body, blank line, a witness line, the log's own lines (epoch key,
    // host key), then the others.
    let own = &pr.checkpoint[body.len() + 1..];
    cosigned.checkpoint = format!(
        "{body}\n{}{own}{}{unknown}{same_name}",
        cosignature_line("witness.example/w1", &w1, 1_700_000_000, &body),
        cosignature_line("witness.example/w2", &w2, 1_700_000_001, &body),
    );
    let text = cosigned.to_text();
    let parsed = proof::Proof::parse(&text).expect("a standard tlog-proof parses");
    assert_eq!(parsed.checkpoint.matches('\u{2014}').count(), 6);
    let c = proof::verify_proof(&parsed, &record, &host_key().public())
        .expect("witness cosignatures and unknown keys are ignored");
    assert_eq!(c.seq, seq_of(&record));
    // With an `extra` line too.
    let extra = text.replacen(
        "c2sp.org/tlog-proof@v1\n",
        "c2sp.org/tlog-proof@v1\nextra bGV4ZWNvbg==\n",
        1,
    );
    let parsed = proof::Proof::parse(&extra).expect("parses");
    proof::verify_proof(&parsed, &record, &host_key().public()).expect("verifies");
    // The host key is still required: without its line nothing verifies.
    let mut no_host = parsed.clone();
    let host_line = no_host
        .checkpoint
        .lines()
        .find(|l| l.starts_with("\u{2014} lexecon ") && !l.contains(&same_name[12..30]))
        .expect("host line")
        .to_string();
    no_host.checkpoint = no_host.checkpoint.replace(&format!("{host_line}\n"), "");
    let e = proof::verify_proof(&no_host, &record, &host_key().public()).unwrap_err();
    assert!(e.to_string().contains("no signature by key lexecon"), "{e}");
}

#[test]
fn a_note_may_carry_many_unknown_signatures_but_not_without_bound_or_control_bytes() {
    use base64::Engine as _;
    let (_d, pr, record) = fixture_proof();
    let line = |i: usize| {
        format!(
            "\u{2014} w{i}.example {}\n",
            base64::engine::general_purpose::STANDARD.encode([i as u8; 80])
        )
    };
    let with = |n: usize| {
        let mut p = pr.clone();
        for i in 0..n {
            p.checkpoint.push_str(&line(i));
        }
        p
    };
    // 2 lines of its own + 20 others: accepted (C2SP: at least 16).
    proof::verify_proof(&with(20), &record, &host_key().public()).expect("verifies");
    // 2 + 99 = 101 lines: beyond the bound.
    let e = proof::verify_proof(&with(99), &record, &host_key().public()).unwrap_err();
    assert!(
        e.to_string().contains("more than 100 signature lines"),
        "{e}"
    );
    // A control character anywhere refuses the note.
    let mut p = pr.clone();
    p.checkpoint = p.checkpoint.replacen("lexecon/", "lexecon\r/", 1);
    let e = proof::verify_proof(&p, &record, &host_key().public()).unwrap_err();
    assert!(e.to_string().contains("control characters"), "{e}");
    // A line too short to hold a key ID and a signature is malformed.
    let mut p = pr.clone();
    p.checkpoint.push_str("\u{2014} w.example AAAA\n");
    let e = proof::verify_proof(&p, &record, &host_key().public()).unwrap_err();
    assert!(e.to_string().contains("too short"), "{e}");
}

#[test]
fn tlog_proof_with_a_leading_zero_or_sign_in_its_index_is_refused() {
    let (_d, pr, record) = fixture_proof();
    assert!(pr.index > 0);
    let text = pr.to_text();
    let line = format!("\nindex {}\n", pr.index);
    for bad in [
        format!("\nindex 0{}\n", pr.index),
        format!("\nindex +{}\n", pr.index),
        format!("\nindex -{}\n", pr.index),
        format!("\nindex  {}\n", pr.index),
        format!("\nindex {} \n", pr.index),
        "\nindex 00\n".to_string(),
        "\nindex \n".to_string(),
    ] {
        let t = text.replacen(&line, &bad, 1);
        let e = proof::Proof::parse(&t).expect_err(&bad);
        assert!(e.to_string().contains("invalid index line"), "{bad:?}: {e}");
    }
    // `index 0` itself is fine (as syntax: this proof is for another leaf).
    let t = text.replacen(&line, "\nindex 0\n", 1);
    let p = proof::Proof::parse(&t).expect("index 0 parses");
    assert!(proof::verify_proof(&p, &record, &host_key().public()).is_err());
    // An extra line that is not base64 is malformed.
    let t = text.replacen(
        "c2sp.org/tlog-proof@v1\n",
        "c2sp.org/tlog-proof@v1\nextra !!\n",
        1,
    );
    assert!(proof::Proof::parse(&t).is_err());
}

#[test]
fn a_bad_signature_line_from_the_host_key_refuses_the_note_even_beside_a_good_one() {
    use base64::Engine as _;
    let (_d, pr, record) = fixture_proof();
    let host_line = pr
        .checkpoint
        .lines()
        .find(|l| l.starts_with("\u{2014} lexecon "))
        .expect("host line")
        .to_string();
    let b64 = host_line.rsplit(' ').next().unwrap();
    let mut blob = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .unwrap();
    blob[40] ^= 1;
    let bad = format!(
        "\u{2014} lexecon {}",
        base64::engine::general_purpose::STANDARD.encode(&blob)
    );
    // A line with the host key's name and ID but a signature of the wrong
    // length is a bad line from that key too.
    let short = format!(
        "\u{2014} lexecon {}",
        base64::engine::general_purpose::STANDARD.encode(&blob[..40])
    );
    for extra in [&bad, &short] {
        for before in [true, false] {
            let mut p = pr.clone();
            p.checkpoint = if before {
                p.checkpoint
                    .replace(&host_line, &format!("{extra}\n{host_line}"))
            } else {
                p.checkpoint
                    .replace(&host_line, &format!("{host_line}\n{extra}"))
            };
            let e = proof::verify_proof(&p, &record, &host_key().public()).unwrap_err();
            assert!(e.to_string().contains("does not verify"), "{e}");
        }
    }
    // The note as written verifies.
    proof::verify_proof(&pr, &record, &host_key().public()).expect("verifies");
    // Anchors follow the same rule.
    let (_d2, p2, lines) = fixture();
    let seal_line = &lines[lines.len() - 1];
    let seal = jcs::parse(seal_line, jcs::Mode::Strict).expect("canonical");
    let seal = seal
        .get("note")
        .and_then(|n| n.as_str())
        .expect("note")
        .to_string();
    let host_line = seal
        .lines()
        .find(|l| l.starts_with("\u{2014} lexecon "))
        .expect("host line")
        .to_string();
    let b64 = host_line.rsplit(' ').next().unwrap();
    let mut blob = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .unwrap();
    blob[40] ^= 1;
    let bad = format!(
        "\u{2014} lexecon {}",
        base64::engine::general_purpose::STANDARD.encode(&blob)
    );
    let anchored = |n: &str| {
        let a = lexecon::ledger::Anchor::from_note(n, "t:1").expect("anchor parses");
        verify::verify_file_anchored(&p2, Some(&pubkey()), None, vec![a]).expect("readable")
    };
    assert!(anchored(&seal).anchors[0].held());
    let doubled = seal.replace(&host_line, &format!("{host_line}\n{bad}"));
    let r = anchored(&doubled);
    assert!(!r.anchors[0].held(), "{:?}", r.anchors);
    assert_eq!(r.status, Status::Invalid);
}

// --------------------------------------------------- property: byte flips

fn small_ledger() -> Vec<u8> {
    let (_d, p) = tmp();
    write_run(&p, 2, 3, Some(1));
    std::fs::read(&p).expect("read")
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig { cases: 800, .. Default::default() })]
    #[test]
    fn any_single_byte_change_is_detected(pos in 0usize..100_000, byte in 0u8..=255) {
        thread_local!(static L: Vec<u8> = small_ledger());
        let mut data = L.with(|l| l.clone());
        let pos = pos % data.len();
        proptest::prop_assume!(data[pos] != byte);
        data[pos] = byte;
        // With the key supplied, and (every other case) with the ledger's own.
        let key = pubkey();
        let r = verify::verify_reader(&data[..], (pos % 2 == 0).then_some(&key)).expect("in memory");
        proptest::prop_assert_ne!(r.status, Status::Valid);
    }
}

// ------------------------------------------------- concurrent writers

const CHILD_ENV: &str = "LEXECON_LEDGER_TEST_CHILD";

/// Not a test on its own: run by `two_processes_append_concurrently` in two
/// child processes at once.
#[test]
#[ignore = "helper process for two_processes_append_concurrently"]
fn concurrent_child() {
    let Ok(path) = std::env::var(CHILD_ENV) else {
        return;
    };
    let path = PathBuf::from(path);
    for _ in 0..10 {
        let mut o = opts(3);
        o.lock = LockMode::Wait;
        let mut w = LedgerWriter::open(&path, host_key(), o).expect("open");
        w.begin_run(header()).expect("begin");
        for i in 0..20 {
            let a = exec_action(i);
            w.append_decision(&decision(&a, Verdict::Allow))
                .expect("append");
        }
        w.end_run(RunEnd::default()).expect("end");
    }
}

#[test]
fn two_processes_append_concurrently() {
    let (_d, p) = tmp();
    let exe = std::env::current_exe().expect("test binary");
    let spawn = || {
        std::process::Command::new(&exe)
            .args([
                "--exact",
                "concurrent_child",
                "--ignored",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD_ENV, &p)
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("spawn")
    };
    let mut a = spawn();
    let mut b = spawn();
    assert!(a.wait().expect("wait").success());
    assert!(b.wait().expect("wait").success());
    let r = check(&p);
    assert_eq!(r.status, Status::Valid, "{:?}", r.problems);
    assert_eq!(r.runs, 20);
    assert_eq!(r.counts.decisions, 400);
}

#[test]
fn tamper_remove_an_epoch_record_with_seq_and_chain_recomputed() {
    let (_d, p, mut lines) = fixture();
    let i = find(&lines, "epoch", 0);
    lines.remove(i);
    for (j, line) in lines.iter_mut().enumerate().skip(i) {
        *line = set_field(line, "seq", Value::String(j.to_string().into()));
    }
    rechain(&mut lines, i - 1);
    write_lines(&p, &lines);
    let r = check(&p);
    assert_eq!(r.status, Status::Invalid);
    let f = first(&r);
    // The checkpoint that should have handed over to the next epoch.
    assert_eq!((f.line, f.check), (i as u64 + 1, Check::EpochKey));
    assert!(
        f.message
            .contains("no epoch record declares the next epoch key"),
        "{}",
        f.message
    );
}

// --------------------------------------------------- escalation records

/// One run: an escalation, its resolution (when `resolve`), the decision.
fn write_escalated_run(path: &Path, resolve: bool) {
    let mut w = LedgerWriter::open(path, host_key(), opts(100)).expect("open");
    w.begin_run(header()).expect("begin");
    let a = exec_action(0);
    w.append_decision(&decision(&a, Verdict::Allow))
        .expect("append");
    let (asked, _) = w
        .append_escalation(&EscalationEntry {
            request: 1,
            pid: 1000,
            ppid: 999,
            syscall: "execve",
            action: &a,
            rule: "ask",
            reason: "a human decides",
            deadline_ns: 1_800_000_000_000_000_000,
        })
        .expect("escalation");
    if resolve {
        w.append_resolution(&ResolutionEntry {
            request: 1,
            escalation: asked,
            outcome: Outcome::Allowed,
            by: "approver",
            peer: Some((1000, 4242)),
            scope: "run",
            receipt: None,
        })
        .expect("resolution");
        w.append_decision(&decision(&a, Verdict::Escalate))
            .expect("append");
    }
    w.end_run(RunEnd {
        exit_status: Some(0),
        signal: None,
        note: None,
    })
    .expect("end");
}

#[test]
fn escalation_and_resolution_records_verify() {
    let (_d, p) = tmp();
    write_escalated_run(&p, true);
    let r = check(&p);
    assert_eq!(r.status, Status::Valid, "{:?}", r.problems);
    let lines = read_lines(&p);
    let e = find(&lines, "escalation", 0);
    let res = find(&lines, "resolution", 0);
    assert!(e < res);
    assert!(lines[res].contains("\"by\":\"approver\""), "{}", lines[res]);
    assert!(lines[res].contains("\"scope\":\"run\""), "{}", lines[res]);
    assert!(lines[e].contains("\"request\":\"1\""), "{}", lines[e]);
}

#[test]
fn an_escalation_never_resolved_in_a_sealed_run_is_reported() {
    let (_d, p) = tmp();
    write_escalated_run(&p, false);
    let r = check(&p);
    assert_eq!(r.status, Status::Invalid);
    let f = first(&r);
    assert_eq!(f.check, Check::Run);
    assert!(
        f.message.contains("never resolved: request 1"),
        "{}",
        f.message
    );
}

#[test]
fn tamper_a_resolution_is_detected() {
    let (_d, p) = tmp();
    write_escalated_run(&p, true);
    let lines = read_lines(&p);
    let i = find(&lines, "resolution", 0);

    // Turned from allowed to refused: the chain breaks.
    let mut edited = lines.clone();
    edited[i] = edited[i].replace("\"outcome\":\"allowed\"", "\"outcome\":\"refused\"");
    assert_ne!(edited[i], lines[i]);
    write_lines(&p, &edited);
    let r = check(&p);
    assert_eq!(r.status, Status::Invalid);
    assert_eq!(first(&r).line, i as u64 + 1);

    // Pointed at another request, with the chain recomputed: the signed
    // checkpoints no longer match, and the request is unknown.
    let mut moved = lines.clone();
    moved[i] = set_field(&moved[i], "request", Value::str("7"));
    rechain(&mut moved, i);
    write_lines(&p, &moved);
    let r = check(&p);
    assert_eq!(r.status, Status::Invalid);
    assert!(
        r.problems
            .iter()
            .any(|f| f.message.contains("resolution of request 7")),
        "{:?}",
        r.problems
    );

    // Removed: the escalation is left unanswered (and the chain breaks).
    let mut removed = lines.clone();
    removed.remove(i);
    write_lines(&p, &removed);
    let r = check(&p);
    assert_eq!(r.status, Status::Invalid);
}

// ------------------------------------------------------- approval receipts

fn approver() -> SigningKey {
    SigningKey::from_bytes(&[11u8; 32])
}

/// How the receipt of the one allowed escalation is made.
enum Receipt {
    None,
    /// By the approver, over this escalation and answer.
    Good,
    /// By another key.
    OtherKey,
    /// By the approver, over the other escalation of the run (a replay).
    Replayed,
    /// By the approver, for a refusal, recorded as an allow.
    OtherAnswer,
}

fn write_receipt_run(path: &Path, how: Receipt) {
    use ed25519_dalek::Signer as _;
    let mut w = LedgerWriter::open(path, host_key(), opts(100)).expect("open");
    w.begin_run(header()).expect("begin");
    let mut hashes = Vec::new();
    let mut seqs = Vec::new();
    for (i, a) in [exec_action(1), exec_action(2)].iter().enumerate() {
        let (seq, hash) = w
            .append_escalation(&EscalationEntry {
                request: i as u64 + 1,
                pid: 1000,
                ppid: 999,
                syscall: "execve",
                action: a,
                rule: "ask",
                reason: "a human decides",
                deadline_ns: 1_800_000_000_000_000_000,
            })
            .expect("escalation");
        hashes.push(hash);
        seqs.push(seq);
    }
    let sign = |k: &SigningKey, h: &Hash, allow: bool| {
        let sig = k.sign(&lexecon::ledger::receipt_message(h, allow, "once"));
        Some((k.verifying_key().to_bytes(), sig.to_bytes()))
    };
    let receipt = match how {
        Receipt::None => None,
        Receipt::Good => sign(&approver(), &hashes[0], true),
        Receipt::OtherKey => sign(&SigningKey::from_bytes(&[12u8; 32]), &hashes[0], true),
        Receipt::Replayed => sign(&approver(), &hashes[1], true),
        Receipt::OtherAnswer => sign(&approver(), &hashes[0], false),
    };
    w.append_resolution(&ResolutionEntry {
        request: 1,
        escalation: seqs[0],
        outcome: Outcome::Allowed,
        by: "approver",
        peer: Some((1000, 4242)),
        scope: "once",
        receipt,
    })
    .expect("resolution");
    w.append_resolution(&ResolutionEntry {
        request: 2,
        escalation: seqs[1],
        outcome: Outcome::Refused,
        by: "timeout",
        peer: None,
        scope: "once",
        receipt: None,
    })
    .expect("resolution");
    w.end_run(RunEnd {
        exit_status: Some(0),
        signal: None,
        note: None,
    })
    .expect("end");
}

fn check_approver(path: &Path, approver: Option<&SigningKey>) -> Report {
    let a = approver.map(|k| k.verifying_key());
    verify::verify_file_with(path, Some(&pubkey()), a.as_ref()).expect("readable")
}

#[test]
fn signed_receipts_verify_against_the_approver_key() {
    let (_d, p) = tmp();
    write_receipt_run(&p, Receipt::Good);
    let r = check_approver(&p, Some(&approver()));
    assert_eq!(r.status, Status::Valid, "{:?}", r.problems);
    // Another approver key is not the one that signed.
    let r = check_approver(&p, Some(&SigningKey::from_bytes(&[13u8; 32])));
    assert_eq!(r.status, Status::Invalid);
    assert!(first(&r)
        .message
        .contains("not by the approver key supplied"));
}

#[test]
fn forged_replayed_or_altered_receipts_fail() {
    for (how, name) in [
        (Receipt::OtherKey, "other key"),
        (Receipt::Replayed, "replayed"),
        (Receipt::OtherAnswer, "other answer"),
    ] {
        let (_d, p) = tmp();
        write_receipt_run(&p, how);
        let r = check_approver(&p, Some(&approver()));
        assert_eq!(r.status, Status::Invalid, "{name}");
        let msg = &first(&r).message;
        assert!(
            msg.contains("does not verify") || msg.contains("not by the approver key"),
            "{name}: {msg}"
        );
    }
    // A receipt altered in place: the chain breaks, and the signature no
    // longer verifies once the chain is recomputed.
    let (_d, p) = tmp();
    write_receipt_run(&p, Receipt::Good);
    let mut lines = read_lines(&p);
    let i = find(&lines, "resolution", 0);
    let v = jcs::parse(&lines[i], jcs::Mode::Strict).expect("canonical");
    let sig = v
        .get("receipt")
        .and_then(|r| r.get("sig"))
        .and_then(|s| s.as_str())
        .expect("sig")
        .to_string();
    let mut raw = base64::Engine::decode(&base64::engine::general_purpose::STANDARD, &sig).unwrap();
    raw[5] ^= 1;
    let altered = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, raw);
    lines[i] = lines[i].replace(&sig, &altered);
    rechain(&mut lines, i);
    write_lines(&p, &lines);
    let r = check_approver(&p, None);
    assert_eq!(r.status, Status::Invalid);
    assert!(
        r.problems
            .iter()
            .any(|f| f.message.contains("does not verify for this escalation")),
        "{:?}",
        r.problems
    );
}

#[test]
fn an_allow_without_a_receipt_fails_only_when_an_approver_key_is_required() {
    let (_d, p) = tmp();
    write_receipt_run(&p, Receipt::None);
    assert_eq!(check_approver(&p, None).status, Status::Valid);
    let r = check_approver(&p, Some(&approver()));
    assert_eq!(r.status, Status::Invalid);
    assert!(
        first(&r).message.contains("allowed without a receipt"),
        "{}",
        first(&r).message
    );
}

#[test]
fn the_program_of_an_opens_caller_is_recorded_and_verifies() {
    use lexecon::action::ProcessInfo;
    let (_d, p) = tmp();
    let by = |process| {
        Action::Open(OpenAction {
            op: lexecon::action::FileOp::Open,
            detail: None,
            path: "/home/u/.ssh/id_ed25519".into(),
            access: Access::READ,
            cwd: "/w".into(),
            process,
        })
    };
    let full = by(Some(ProcessInfo {
        program: PathBuf::from(OsString::from_vec(b"/usr/bin/ss\xffh".to_vec())),
        sha256: Some([3; 32]),
        file: Some((2049, 1 << 60)),
        injected: Some("LD_PRELOAD".into()),
    }));
    let bare = by(Some(ProcessInfo {
        program: "/usr/bin/ssh".into(),
        sha256: None,
        file: None,
        injected: None,
    }));
    let unknown = by(None);
    // Format 1 keeps the caller's program in the decision (format 2 moves
    // it to a `process` record: `format_2_reads_back_exactly_as_format_1`).
    let mut w = LedgerWriter::open(&p, host_key(), opts(4))
        .expect("open")
        .with_format(1)
        .expect("format 1");
    w.begin_run(header()).expect("begin");
    for a in [&full, &bare, &unknown] {
        w.append_decision(&decision(a, Verdict::Allow))
            .expect("append");
    }
    w.end_run(RunEnd::default()).expect("end");
    drop(w);
    let lines = read_lines(&p);
    let rec = |n| jcs::parse(&lines[find(&lines, "decision", n)], jcs::Mode::Strict).expect("jcs");
    let v = rec(0);
    let proc_ = v
        .get("action")
        .and_then(|a| a.get("process"))
        .expect("process");
    let bytes = |v: &Value| lexecon::ledger::record::value_bytes(v).expect("byte string");
    assert_eq!(
        bytes(proc_.get("program").expect("program")),
        b"/usr/bin/ss\xffh"
    );
    assert_eq!(
        proc_.get("injected").and_then(|x| x.as_str()),
        Some("LD_PRELOAD")
    );
    assert_eq!(proc_.get("dev").and_then(|x| x.as_str()), Some("2049"));
    assert!(lines[find(&lines, "decision", 0)].contains(&format!(r#""ino":"{}""#, 1u64 << 60)));
    assert!(lines[find(&lines, "decision", 1)].contains(r#""process":{"program":"/usr/bin/ssh"}"#));
    assert!(!lines[find(&lines, "decision", 2)].contains("process"));
    assert_eq!(check(&p).status, Status::Valid);
}

// ------------------------------------------------------------- operations

fn op_action(
    path: &str,
    access: Access,
    op: lexecon::action::FileOp,
    detail: Option<lexecon::action::OpDetail>,
) -> Action {
    Action::Open(OpenAction {
        op,
        detail,
        path: path.into(),
        access,
        cwd: "/w".into(),
        process: None,
    })
}

/// A ledger with one decision per operation that carries a detail.
fn ops_ledger() -> (tempfile::TempDir, PathBuf, Vec<String>) {
    use lexecon::action::{FileOp, OpDetail};
    let (d, p) = tmp();
    let actions = [
        op_action(
            "/w/run.sh",
            Access::WRITE,
            FileOp::Chmod,
            Some(OpDetail::Mode(0o4755)),
        ),
        op_action(
            "/w/f",
            Access::WRITE,
            FileOp::Chown,
            Some(OpDetail::Owner {
                uid: None,
                gid: Some(100),
            }),
        ),
        op_action(
            "/w/l",
            Access::CREATE | Access::WRITE,
            FileOp::Symlink,
            Some(OpDetail::Target(OsString::from_vec(
                b"../\xffsecret".to_vec(),
            ))),
        ),
        op_action(
            "/w/x",
            Access::WRITE | Access::TRUNCATE,
            FileOp::Delete,
            None,
        ),
        op_action("/w/y", Access::READ, FileOp::Open, None),
    ];
    let mut w = LedgerWriter::open(&p, host_key(), opts(4)).expect("open");
    w.begin_run(header()).expect("begin");
    for a in &actions {
        w.append_decision(&decision(a, Verdict::Allow))
            .expect("append");
    }
    w.end_run(RunEnd::default()).expect("end");
    drop(w);
    let lines = read_lines(&p);
    (d, p, lines)
}

#[test]
fn operations_and_their_details_are_recorded_and_verify() {
    let (_d, p, lines) = ops_ledger();
    assert_eq!(check(&p).status, Status::Valid);
    let action = |n: usize| {
        let l = &lines[find(&lines, "decision", n)];
        let start = l.find(r#""action":"#).unwrap();
        l[start..start + l[start..].find(r#","identity""#).unwrap()].to_string()
    };
    assert!(
        action(0).contains(r#""detail":{"mode":"4755"},"kind":"open","op":"chmod""#),
        "{}",
        action(0)
    );
    assert!(action(1).contains(r#""detail":{"gid":"100"},"kind":"open","op":"chown""#));
    assert!(action(2).contains(r#""detail":{"target":{"b64":"Li4v/3NlY3JldA=="}}"#));
    assert!(action(3).contains(r#""op":"delete""#) && !action(3).contains("detail"));
    // A plain open: record format 2 leaves its `op` (and a read `access`)
    // out.
    assert!(!action(4).contains(r#""op""#), "{}", action(4));
    assert!(!action(4).contains(r#""access""#), "{}", action(4));
}

#[test]
fn tamper_edit_an_operation_or_its_detail_is_located_exactly() {
    for (from, to) in [
        (r#""mode":"4755""#, r#""mode":"0755""#),
        (r#""op":"delete""#, r#""op":"truncate""#),
        (r#""gid":"100""#, r#""gid":"0""#),
    ] {
        let (_d, p, mut lines) = ops_ledger();
        let i = lines.iter().position(|l| l.contains(from)).unwrap();
        lines[i] = lines[i].replace(from, to);
        write_lines(&p, &lines);
        let r = check(&p);
        assert_eq!(r.status, Status::Invalid, "{from}");
        let f = first(&r);
        assert_eq!((f.line, f.check), (i as u64 + 1, Check::Chain), "{from}");
    }
}

#[test]
fn the_shape_of_operations_is_checked_and_ledgers_without_them_are_accepted() {
    use lexecon::ledger::record;
    use serde_json::{json, Value as J};
    let (_d, _p, lines) = ops_ledger();
    let line: J = serde_json::from_str(&lines[find(&lines, "decision", 0)]).unwrap();
    let with_action = |f: &dyn Fn(&mut serde_json::Map<String, J>)| {
        let mut v = line.clone();
        f(v["action"].as_object_mut().unwrap());
        let text = v.to_string();
        record::parse(&jcs::parse(&text, jcs::Mode::Lenient).unwrap())
    };
    type Edit = Box<dyn Fn(&mut serde_json::Map<String, J>)>;
    let set = |k: &'static str, v: J| -> Edit {
        Box::new(move |a| {
            if v.is_null() {
                a.remove(k);
            } else {
                a.insert(k.to_string(), v.clone());
            }
        })
    };
    assert!(with_action(&|_| {}).is_ok());
    // A ledger written before operations were recorded: no op, no detail.
    assert!(with_action(&|a| {
        a.remove("op");
        a.remove("detail");
    })
    .is_ok());
    let both = |x: Edit, y: Edit| -> Edit {
        Box::new(move |a| {
            x(a);
            y(a);
        })
    };
    let bad: Vec<(&str, Edit)> = vec![
        ("unknown operation", set("op", json!("unlink"))),
        ("must be a string", set("op", json!(1))),
        ("without `action.op`", set("op", J::Null)),
        ("is missing", set("detail", J::Null)),
        ("octal mode", set("detail", json!({"mode": "0999"}))),
        ("octal mode", set("detail", json!({"mode": "1777777"}))),
        ("missing field `mode`", set("detail", json!({"uid": "1"}))),
        ("must be an object", set("detail", json!("0755"))),
        ("not recorded for operation", set("op", json!("delete"))),
        (
            "decimal string",
            both(
                set("op", json!("chown")),
                set("detail", json!({"uid": "-1"})),
            ),
        ),
        (
            "unexpected member",
            set("detail", json!({"mode": "0755", "uid": "0"})),
        ),
        (
            "must be a string or",
            both(
                set("op", json!("symlink")),
                set("detail", json!({"target": 7})),
            ),
        ),
    ];
    for (want, f) in bad {
        let e = with_action(&*f).expect_err(want);
        assert!(e.contains(want), "{want}: {e}");
    }
}

/// A run with one rule rate-limited at 2 per second: two decisions let
/// through, then the `limit` record (claiming `count`) and the block.
fn write_rate_limited_run(path: &Path, count: u64, block_follows: bool) {
    let mut w = LedgerWriter::open(path, host_key(), opts(1024)).expect("open");
    w.begin_run(header()).expect("begin");
    let t0: u128 = 1_700_000_000_000_000_000;
    let a = exec_action(0);
    w.append_decision_at(&decision(&a, Verdict::Allow), t0)
        .expect("append");
    w.append_decision_at(&decision(&a, Verdict::Allow), t0 + 100)
        .expect("append");
    // Outside the window (1 s) by the time of the limit: not counted.
    let t = t0 + 1_000_000_050;
    w.append_limit(
        &lexecon::ledger::LimitEntry {
            event: "rate",
            rule: Some("git-read"),
            count,
            limit: 1,
            window_ms: 1000,
            then: None,
            counted: None,
            pid: 1000,
            ppid: 999,
            reason: "rule git-read let 1 actions through in the last 1 s, its limit",
        },
        t,
    )
    .expect("limit");
    let v = if block_follows {
        Verdict::Block
    } else {
        Verdict::Allow
    };
    w.append_decision_at(&decision(&a, v), t).expect("append");
    w.end_run(RunEnd::default()).expect("end");
}

#[test]
fn rate_limit_records_are_re_derived_from_the_decisions_times() {
    let (_d, p) = tmp();
    write_rate_limited_run(&p, 1, true);
    let r = check(&p);
    assert_eq!(r.status, Status::Valid, "{:?}", r.problems);

    // A signed ledger whose limit record miscounts, or whose block does
    // not follow, is invalid: the record's own facts are re-derived.
    let (_d, p) = tmp();
    write_rate_limited_run(&p, 2, true);
    let r = check(&p);
    assert_eq!(r.status, Status::Invalid);
    assert!(
        r.problems.iter().any(|x| x
            .message
            .contains("but the records show 1 actions it let through")),
        "{:?}",
        r.problems
    );
    let (_d, p) = tmp();
    write_rate_limited_run(&p, 1, false);
    let r = check(&p);
    assert_eq!(r.status, Status::Invalid);
    assert!(r
        .problems
        .iter()
        .any(|x| x.message.contains("is not followed by that rule's block")));
}

/// A run whose breaker (counting blocks, threshold 2 within 10 s) trips at
/// its second block; the breaker record claims `count`.
fn write_breaker_run(path: &Path, count: u64) {
    let mut w = LedgerWriter::open(path, host_key(), opts(1024)).expect("open");
    w.begin_run(header()).expect("begin");
    let t0: u128 = 1_700_000_000_000_000_000;
    let a = exec_action(0);
    w.append_decision_at(&decision(&a, Verdict::Block), t0)
        .expect("append");
    let t = t0 + 1_000_000_000;
    w.append_limit(
        &lexecon::ledger::LimitEntry {
            event: "breaker",
            rule: None,
            count,
            limit: 2,
            window_ms: 10_000,
            then: Some("block-all"),
            counted: Some("blocks"),
            pid: 1000,
            ppid: 999,
            reason: "2 blocks within 10 s reached the breaker's threshold of 2",
        },
        t,
    )
    .expect("limit");
    w.append_decision_at(&decision(&a, Verdict::Block), t)
        .expect("append");
    w.end_run(RunEnd::default()).expect("end");
}

#[test]
fn breaker_records_counting_blocks_are_re_derived() {
    let (_d, p) = tmp();
    write_breaker_run(&p, 2);
    let r = check(&p);
    assert_eq!(r.status, Status::Valid, "{:?}", r.problems);
    let (_d, p) = tmp();
    write_breaker_run(&p, 3);
    let r = check(&p);
    assert_eq!(r.status, Status::Invalid);
    assert!(
        r.problems.iter().any(|x| x
            .message
            .contains("but the records show 2 within its window")),
        "{:?}",
        r.problems
    );
}

// ------------------------------------------------------- record format 2

/// A format-2 run: opens by two programs (a `process` record each), a
/// plain exec; returns the ledger's path and lines.
fn format_2_fixture(dir: &Path) -> (PathBuf, Vec<String>) {
    use lexecon::action::ProcessInfo;
    let p = dir.join("f2.jsonl");
    let by = |program: &str, path: &str| {
        Action::Open(OpenAction {
            op: lexecon::action::FileOp::Open,
            detail: None,
            path: path.into(),
            access: Access::READ,
            cwd: "/w".into(),
            process: Some(ProcessInfo {
                program: program.into(),
                sha256: Some([3; 32]),
                file: Some((2049, 7)),
                injected: None,
            }),
        })
    };
    let a = by("/usr/bin/python3", "/etc/hosts");
    let b = by("/usr/bin/sh", "/etc/passwd");
    let mut w = LedgerWriter::open(&p, host_key(), opts(4)).expect("open");
    w.begin_run(header()).expect("begin");
    for x in [&a, &a, &b, &a] {
        w.append_decision(&decision(x, Verdict::Allow))
            .expect("append");
    }
    w.end_run(RunEnd::default()).expect("end");
    drop(w);
    let lines = read_lines(&p);
    (p, lines)
}

#[test]
fn a_format_2_decisions_proof_carries_its_process_record() {
    let dir = tempfile::tempdir().expect("tmp");
    let (p, lines) = format_2_fixture(dir.path());
    assert_eq!(
        lines
            .iter()
            .filter(|l| l.contains(r#""kind":"process""#))
            .count(),
        2
    );
    // The decision of the second program, which names process record 2.
    let i = find(&lines, "decision", 2);
    assert!(lines[i].contains(r#""process":"2""#), "{}", lines[i]);
    let pi = find(&lines, "process", 1);
    let proved = proof::prove(&p, seq_of(&lines[i]), None).expect("prove");
    assert_eq!(proved.record, format!("{}\n{}", lines[i], lines[pi]));
    let text = proved.proof.to_text();
    assert!(text.starts_with("c2sp.org/tlog-proof@v1\nextra "), "{text}");
    let parsed = proof::Proof::parse(&text).expect("parse");
    let key = host_key().public();
    let c = proof::verify_proof(&parsed, &format!("{}\n", proved.record), &key).expect("verifies");
    let (pseq, program) = c.process.expect("the caller's program");
    assert_eq!(pseq, seq_of(&lines[pi]));
    assert_eq!(program.program, PathBuf::from("/usr/bin/sh"));
    // Without the process record, with another one, with it changed, or
    // without its inclusion: refused.
    let other = find(&lines, "process", 0);
    let changed = lines[pi].replace("/usr/bin/sh", "/usr/bin/ls");
    for (record, why) in [
        (lines[i].clone(), "does not hold"),
        (
            format!("{}\n{}", lines[i], lines[other]),
            "not process record 2",
        ),
        (format!("{}\n{}", lines[i], changed), "the process record"),
    ] {
        let e = proof::verify_proof(&parsed, &record, &key).expect_err(why);
        assert!(e.to_string().contains(why), "{e}");
    }
    let mut stripped = parsed.clone();
    stripped.extra = None;
    let e = proof::verify_proof(&stripped, &proved.record, &key).expect_err("no extra");
    assert!(e.to_string().contains("no `extra` line"), "{e}");
    // A proof of a record that names no process record has no `extra`.
    let x = find(&lines, "run", 0);
    let proved = proof::prove(&p, seq_of(&lines[x]), None).expect("prove");
    assert!(proved.proof.extra.is_none());
    assert_eq!(proved.record, lines[x]);
}

#[test]
fn a_changed_or_dangling_process_record_does_not_verify() {
    let dir = tempfile::tempdir().expect("tmp");
    let (p, lines) = format_2_fixture(dir.path());
    let pubkey = *host_key().public().verifying_key();
    let check = |lines: &[String]| {
        let q = dir.path().join("t.jsonl");
        std::fs::write(&q, lines.join("\n") + "\n").expect("write");
        verify::verify_file(&q, Some(&pubkey)).expect("verify")
    };
    assert!(check(&lines).is_valid());
    assert!(verify::verify_file(&p, Some(&pubkey))
        .expect("verify")
        .is_valid());
    // The program changed after the fact: the chain breaks.
    let pi = find(&lines, "process", 0);
    let mut changed = lines.clone();
    changed[pi] = changed[pi].replace("/usr/bin/python3", "/usr/bin/true");
    let r = check(&changed);
    assert!(!r.is_valid());
    assert!(
        r.problems.iter().any(|x| x.check == Check::Chain),
        "{:?}",
        r.problems
    );
    // A dangling reference is a structure problem, even where the chain
    // would be mended.
    let i = find(&lines, "decision", 0);
    let mut dangling = lines.clone();
    dangling[i] = dangling[i].replace(r#""process":"1""#, r#""process":"5""#);
    let r = check(&dangling);
    assert!(
        r.problems
            .iter()
            .any(|x| x.check == Check::Structure && x.message.contains("does not have before it")),
        "{:?}",
        r.problems
    );
}

#[test]
fn a_second_encoding_of_a_format_2_record_is_a_structure_problem_with_the_chain_mended() {
    // Each edit keeps the record's meaning and recomputes the chain after
    // it: only the one-encoding rule can find it.
    let first_allow = |lines: &[String]| {
        (0..lines.len())
            .find(|&i| kind_of(&lines[i]) == "decision" && !lines[i].contains(r#""verdict""#))
            .expect("an allow")
    };
    /// What is edited, the edit, what the problem must say.
    type Edit = (&'static str, fn(&str) -> String, &'static str);
    let edits: [Edit; 3] = [
        (
            "verdict",
            |l| set_field(l, "verdict", Value::str("allow")),
            "`verdict` is written with its default",
        ),
        (
            "prev in hex",
            |l| {
                let v = jcs::parse(l, jcs::Mode::Strict).expect("canonical");
                let p = v.get("prev").and_then(Value::as_str).expect("prev");
                let h = lexecon::ledger::record::prev_hash(p).expect("a hash");
                set_field(l, "prev", Value::String(hex::encode(h).into()))
            },
            "`prev` is in hex",
        ),
        (
            // The object form with the action's hash (the fixture's file
            // has another), which only `"DEV:INO"` may say.
            "identity object",
            |l| {
                let v = jcs::parse(l, jcs::Mode::Strict).expect("canonical");
                let id = v.get("identity").expect("an identity");
                let own = |k: &str| {
                    let x = id.get(k).and_then(Value::as_str).expect("dev, ino");
                    Value::String(x.to_string().into())
                };
                let h = v
                    .get("action")
                    .and_then(|a| a.get("sha256"))
                    .and_then(Value::as_str)
                    .expect("the action's hash")
                    .to_string();
                assert!(id.get("sha256").is_some_and(|x| x.as_str() != Some(&h)));
                let id = vec![
                    ("dev".to_string().into(), own("dev")),
                    ("ino".to_string().into(), own("ino")),
                    ("sha256".to_string().into(), Value::String(h.into())),
                ];
                set_field(l, "identity", Value::Object(id))
            },
            "written as an object with the hash of its action",
        ),
    ];
    for (what, edit, want) in edits {
        let (_d, p, mut lines) = fixture();
        let i = first_allow(&lines);
        lines[i] = edit(&lines[i]);
        rechain(&mut lines, i);
        write_lines(&p, &lines);
        let r = check(&p);
        assert_eq!(r.status, Status::Invalid, "{what}");
        let f = first(&r);
        assert_eq!(
            (f.line, f.check),
            (i as u64 + 1, Check::Structure),
            "{what}: {}",
            f.message
        );
        assert!(f.message.contains(want), "{what}: {}", f.message);
    }
}
