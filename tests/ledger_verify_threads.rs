//! The two-thread verifier reports exactly what the one-thread verifier
//! reports (status, problems in file order with the same text, counts,
//! warnings, last hash), whatever the segment and batch boundaries and
//! whatever was changed in the file: lines altered, removed, duplicated,
//! swapped, made non-canonical or not UTF-8, a torn tail, no final
//! newline.

use std::path::Path;
use std::time::Duration;

use ed25519_dalek::SigningKey;
use lexecon::action::{Access, Action, ExecAction, FileOp, Mode, OpenAction, Verdict};
use lexecon::ledger::verify::{self, Report, Status};
use lexecon::ledger::{
    DecisionEntry, FileIdentity, HostKey, LedgerWriter, LockMode, Outcome, RunEnd, RunHeader,
    Stage, SyncPolicy, WriterOptions,
};

fn host_key() -> HostKey {
    HostKey::from_signing_key("lexecon", SigningKey::from_bytes(&[7u8; 32])).expect("valid name")
}

fn pubkey() -> ed25519_dalek::VerifyingKey {
    *host_key().public().verifying_key()
}

fn header() -> RunHeader {
    RunHeader {
        command: vec!["agent".into()],
        cwd: "/work/repo".into(),
        workspace: None,
        policy_sha256: [0xab; 32],
        policy_path: None,
        mode: Mode::Enforce,
        ci: Default::default(),
        vars: None,
        policy_layers: Vec::new(),
    }
}

/// Three runs (checkpoints every 4 records) of exec and open decisions,
/// some blocked, some opens naming their caller's program.
fn ledger(path: &Path) -> Vec<u8> {
    for run in 0..3u64 {
        let opts = WriterOptions {
            checkpoint_every: 4,
            checkpoint_interval: Duration::from_secs(3600),
            sync: SyncPolicy::Never,
            lock: LockMode::Fail,
        };
        let mut w = LedgerWriter::open(path, host_key(), opts).expect("open");
        w.begin_run(header()).expect("begin");
        for i in 0..(9 + run as usize * 4) {
            let action = if i % 3 == 0 {
                Action::Exec(ExecAction {
                    path: "/usr/bin/git".into(),
                    argv: vec!["git".into(), format!("st\u{e9}{i}").into()],
                    cwd: "/work/repo".into(),
                    sha256: Some([3; 32]),
                })
            } else {
                Action::Open(OpenAction {
                    op: FileOp::Open,
                    detail: None,
                    path: format!("/work/repo/f{i}\n\"x\"").into(),
                    access: Access::READ,
                    cwd: "/work/repo".into(),
                    process: (i % 2 == 0).then(|| lexecon::action::ProcessInfo {
                        program: "/usr/bin/python3".into(),
                        sha256: Some([4; 32]),
                        file: Some((66, 77 + run)),
                        injected: None,
                    }),
                })
            };
            let verdict = if i % 5 == 4 {
                Verdict::Block
            } else {
                Verdict::Allow
            };
            w.append_decision(&DecisionEntry {
                pid: 1000 + i as i32,
                ppid: 999,
                action: &action,
                loaded: None,
                stage: Stage::Request,
                verdict,
                outcome: if verdict == Verdict::Block {
                    Outcome::Refused
                } else {
                    Outcome::Allowed
                },
                rule: (i % 4 != 0).then(|| "r".to_string()),
                matched: Vec::new(),
                reason: if i % 4 != 0 {
                    "by rule r".into()
                } else {
                    format!(
                        "no rule matched; the default for {} is {}",
                        action.kind(),
                        verdict.as_str()
                    )
                },
                mode: Mode::Enforce,
                identity: Some(FileIdentity {
                    dev: 2049,
                    ino: i as u64,
                    sha256: None,
                }),
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
    }
    std::fs::read(path).expect("read")
}

/// Everything a report says, as text.
fn summary(r: &Report) -> String {
    format!(
        "{:?} {:?}\nproblems: {:#?}\nomitted: {}\nwarnings: {:#?}\nkeys: {:?} {:?}\nlines {} runs {} sealed {} recovered {}\ncounts {:?}\nruns: {:?} {}\nlast {:?}",
        r.status,
        r.key_source,
        r.problems.iter().map(|p| p.to_string()).collect::<Vec<_>>(),
        r.problems_omitted,
        r.warnings,
        r.host_keys,
        r.exit_code(),
        r.lines,
        r.runs,
        r.sealed_runs,
        r.recovered_runs,
        r.counts,
        r.run_list,
        r.runs_omitted,
        r.last_hash,
    )
}

/// Verify `data` with one thread and with two threads at several segment
/// and batch sizes; all must agree. Returns the one-thread report.
fn agree(data: &[u8], what: &str) -> Report {
    let key = pubkey();
    let one = verify::verify_reader_one_thread(data, Some(&key), None).expect("in memory");
    let expected = summary(&one);
    // (read size, segment, batch): a segment per line, a batch per line,
    // several lines per batch, batches cutting lines, one segment.
    for (read, segment, batch) in [
        (1, 1, 400),
        (64, 97, 16),
        (700, 700, 64),
        (4096, 4096, 700),
        (1 << 16, 1 << 20, 32 << 10),
    ] {
        let r = std::io::BufReader::with_capacity(read, data);
        let two = verify::verify_reader_batched(r, Some(&key), None, segment, batch).expect("mem");
        assert_eq!(
            summary(&two),
            expected,
            "{what}: reads of {read} bytes, segments of {segment}, batches of {batch}"
        );
    }
    // The default sizes, through a reader that gives a few bytes at a time.
    let slow = std::io::BufReader::with_capacity(61, data);
    let two = verify::verify_reader(slow, Some(&key)).expect("in memory");
    assert_eq!(summary(&two), expected, "{what}: default sizes");
    one
}

fn split_lines(data: &[u8]) -> Vec<Vec<u8>> {
    data.split_inclusive(|&b| b == b'\n')
        .map(<[u8]>::to_vec)
        .collect()
}

#[test]
fn an_intact_ledger_reads_the_same_on_two_threads() {
    let d = tempfile::tempdir().expect("tempdir");
    let data = ledger(&d.path().join("l.jsonl"));
    let r = agree(&data, "intact");
    assert_eq!(r.status, Status::Valid, "{:?}", r.problems);
    assert!(r.lines > 60);
    assert_eq!(agree(b"", "empty").status, Status::Incomplete);
}

#[test]
fn the_fixture_ledger_reads_the_same_on_two_threads() {
    let data = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/data/format1/ledger.jsonl"
    ))
    .expect("fixture");
    let key = lexecon::ledger::keys::load_public_key(Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/data/format1/ledger.pub"
    )))
    .expect("fixture key");
    let one = verify::verify_reader_one_thread(&data[..], Some(key.verifying_key()), None)
        .expect("in memory");
    assert_eq!(one.status, Status::Valid, "{:?}", one.problems);
    for (segment, batch) in [(1, 400), (333, 40), (1 << 22, 32 << 10)] {
        let two = verify::verify_reader_batched(
            std::io::BufReader::with_capacity(segment.min(4096), &data[..]),
            Some(key.verifying_key()),
            None,
            segment,
            batch,
        )
        .expect("in memory");
        assert_eq!(summary(&two), summary(&one));
    }
}

#[test]
fn every_changed_line_is_reported_as_on_one_thread() {
    let d = tempfile::tempdir().expect("tempdir");
    let data = ledger(&d.path().join("l.jsonl"));
    let lines = split_lines(&data);
    let join = |ls: &[Vec<u8>]| ls.concat();
    for i in 0..lines.len() {
        // A changed byte in the middle of the line (the chain breaks, or
        // the line is no longer canonical or well-formed).
        let mut ls = lines.clone();
        let mid = ls[i].len() / 2;
        ls[i][mid] ^= 0x01;
        let r = agree(&join(&ls), &format!("byte flipped in line {}", i + 1));
        assert_ne!(r.status, Status::Valid);
        // Not UTF-8.
        let mut ls = lines.clone();
        ls[i][mid] = 0xff;
        agree(&join(&ls), &format!("line {} not UTF-8", i + 1));
        // Not canonical: a space after the first brace.
        let mut ls = lines.clone();
        ls[i].insert(1, b' ');
        agree(&join(&ls), &format!("line {} not canonical", i + 1));
        // Removed, duplicated, swapped with the next.
        let mut ls = lines.clone();
        ls.remove(i);
        agree(&join(&ls), &format!("line {} removed", i + 1));
        let mut ls = lines.clone();
        ls.insert(i, lines[i].clone());
        agree(&join(&ls), &format!("line {} duplicated", i + 1));
        if i + 1 < lines.len() {
            let mut ls = lines.clone();
            ls.swap(i, i + 1);
            agree(
                &join(&ls),
                &format!("lines {} and {} swapped", i + 1, i + 2),
            );
        }
        // An empty line before it.
        let mut ls = lines.clone();
        ls.insert(i, b"\n".to_vec());
        agree(&join(&ls), &format!("empty line before line {}", i + 1));
    }
}

#[test]
fn a_torn_tail_is_reported_as_on_one_thread() {
    let d = tempfile::tempdir().expect("tempdir");
    let data = ledger(&d.path().join("l.jsonl"));
    // Every cut: inside a line (a torn tail), right after a newline.
    for cut in (0..data.len()).step_by(53).chain([data.len() - 1]) {
        let r = agree(&data[..cut], &format!("cut at byte {cut}"));
        if cut > 0 {
            assert_ne!(r.status, Status::Valid);
        }
    }
    // Many problems: more than a report keeps.
    let lines = split_lines(&data);
    let mut ls = lines.clone();
    for l in ls.iter_mut() {
        l.insert(1, b' ');
    }
    for _ in 0..4 {
        ls.extend(ls.clone());
    }
    let r = agree(&ls.concat(), "every line not canonical");
    assert!(r.problems_omitted > 0);
}

/// A reader that fails after `ok` bytes: the error is returned, on two
/// threads as on one.
struct Failing<'a> {
    data: &'a [u8],
    ok: usize,
}

impl std::io::Read for Failing<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.ok == 0 {
            return Err(std::io::Error::other("disk on fire"));
        }
        let n = buf.len().min(self.ok).min(self.data.len());
        buf[..n].copy_from_slice(&self.data[..n]);
        self.data = &self.data[n..];
        self.ok -= n;
        Ok(n)
    }
}

#[test]
fn a_read_error_is_returned_on_two_threads_too() {
    let d = tempfile::tempdir().expect("tempdir");
    let data = ledger(&d.path().join("l.jsonl"));
    for ok in [0, 10, 5000] {
        let r = std::io::BufReader::with_capacity(64, Failing { data: &data, ok });
        let e = verify::verify_reader(r, Some(&pubkey())).expect_err("fails");
        assert_eq!(e.to_string(), "disk on fire");
        let r = std::io::BufReader::with_capacity(64, Failing { data: &data, ok });
        let e = verify::verify_reader_one_thread(r, Some(&pubkey()), None).expect_err("fails");
        assert_eq!(e.to_string(), "disk on fire");
    }
}
