//! Ledger benchmark: write and verify a ledger of many decision records.
//!
//! Reports append cost per record (hashing, encoding, write(2); fsync
//! excluded, then separately with fdatasync at each checkpoint), verify
//! throughput, and bytes per record. Run with `scripts/bench-ledger` or
//! `cargo bench --bench ledger [-- RECORDS]`.
//!
//! `BENCH_LEDGER_FORMAT=1` writes record format 1 (the default is the
//! current format), for A/B runs with one build. `BENCH_LEDGER_DEFAULTS=1`
//! writes decisions as a run under the default policy has them (no rule
//! matched, the default's reason, the caller's program on opens) instead of
//! a rule's.

use std::time::{Duration, Instant};

use ed25519_dalek::SigningKey;
use lexecon::action::{Access, Action, ExecAction, Mode, OpenAction, Verdict};
use lexecon::ledger::verify::{self, Status};
use lexecon::ledger::{jcs, merkle, record};
use lexecon::ledger::{
    DecisionEntry, FileIdentity, HostKey, LedgerWriter, LockMode, Outcome, RunEnd, RunHeader,
    Stage, SyncPolicy, WriterOptions,
};

/// CPU time of the calling thread: unlike wall time, not inflated when
/// other processes share the machine.
fn thread_cpu() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec into the valid, exclusively
    // borrowed `ts`.
    let r = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    assert_eq!(r, 0, "clock_gettime");
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

fn env_is(name: &str, value: &str) -> bool {
    std::env::var(name).is_ok_and(|v| v == value)
}

fn write(path: &std::path::Path, records: u64, sync: SyncPolicy) -> (Duration, Duration) {
    let format = if env_is("BENCH_LEDGER_FORMAT", "1") {
        1
    } else {
        record::FORMAT
    };
    let defaults = env_is("BENCH_LEDGER_DEFAULTS", "1");
    let key = HostKey::from_signing_key("lexecon", SigningKey::from_bytes(&[7u8; 32]))
        .expect("valid name");
    let opts = WriterOptions {
        checkpoint_every: 1024,
        checkpoint_interval: Duration::from_secs(1),
        sync,
        lock: LockMode::Fail,
    };
    let exec = Action::Exec(ExecAction {
        path: "/usr/bin/git".into(),
        argv: vec!["git".into(), "status".into(), "--short".into()],
        cwd: "/home/dev/project".into(),
        sha256: Some([0x5a; 32]),
    });
    let open = Action::Open(OpenAction {
        op: lexecon::action::FileOp::Open,
        detail: None,
        path: "/home/dev/project/src/main.rs".into(),
        access: Access::READ,
        cwd: "/home/dev/project".into(),
        process: defaults.then(|| lexecon::action::ProcessInfo {
            program: "/usr/bin/python3.11".into(),
            sha256: Some([0x3c; 32]),
            file: Some((66306, 1_357_911)),
            injected: None,
        }),
    });
    let start = Instant::now();
    let cpu = thread_cpu();
    let mut w = LedgerWriter::open(path, key, opts)
        .expect("open")
        .with_format(format)
        .expect("format");
    w.begin_run(RunHeader {
        command: vec!["agent".into()],
        cwd: "/home/dev/project".into(),
        workspace: None,
        policy_sha256: [1; 32],
        policy_path: None,
        mode: Mode::Enforce,
        ci: Default::default(),
        vars: None,
        policy_layers: Vec::new(),
    })
    .expect("begin");
    let rule = (!defaults).then(|| "workspace-read".to_string());
    for i in 0..records {
        let action = if i % 4 == 0 { &exec } else { &open };
        let reason = if defaults {
            format!(
                "no rule matched; the default for {} is allow",
                action.kind()
            )
        } else {
            "reading inside the workspace".into()
        };
        w.append_decision(&DecisionEntry {
            pid: 4242,
            ppid: 4241,
            action,
            loaded: None,
            stage: Stage::Request,
            verdict: Verdict::Allow,
            outcome: Outcome::Allowed,
            rule: rule.clone(),
            matched: rule.iter().cloned().collect(),
            reason,
            mode: Mode::Enforce,
            identity: Some(FileIdentity {
                dev: 66306,
                ino: 1_234_567 + i,
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
    (start.elapsed(), thread_cpu() - cpu)
}

fn main() {
    let records: u64 = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(500_000);
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("ledger.jsonl");

    let (t, tc) = write(&path, records, SyncPolicy::Never);
    let size = std::fs::metadata(&path).expect("stat").len();
    let lines = std::fs::read(&path)
        .expect("read")
        .iter()
        .filter(|&&b| b == b'\n')
        .count() as u64;
    println!(
        "records:            {records} decisions ({lines} lines incl. checkpoints), N=1024, format {}{}",
        if env_is("BENCH_LEDGER_FORMAT", "1") { 1 } else { record::FORMAT },
        if env_is("BENCH_LEDGER_DEFAULTS", "1") { ", default-policy decisions" } else { "" }
    );
    println!(
        "append (no fsync):  {:.2} µs/record amortised wall, {:.2} µs/record CPU (incl. write(2) and checkpoint signing)",
        t.as_secs_f64() * 1e6 / records as f64,
        tc.as_secs_f64() * 1e6 / records as f64,
    );
    println!(
        "size:               {size} bytes, {:.0} bytes/record",
        size as f64 / lines as f64
    );

    let start = Instant::now();
    let cpu = thread_cpu();
    let report = verify::verify_file(&path, None).expect("readable");
    let tv = start.elapsed();
    let tvc = thread_cpu() - cpu;
    assert_eq!(report.status, Status::Valid, "{:?}", report.problems);
    assert_eq!(report.counts.decisions, records);
    println!(
        "verify:             {:.0} records/s wall, {:.0} records/s CPU ({lines} lines, one thread)",
        lines as f64 / tv.as_secs_f64(),
        lines as f64 / tvc.as_secs_f64(),
    );

    // Reading it back as `ledger stats` does: the verified lines, checked
    // to be those, decoded and counted.
    let start = Instant::now();
    let cpu = thread_cpu();
    let mut stats = lexecon::ledger::read::Stats::default();
    lexecon::ledger::read::read(&path, Some(&report), |e| {
        stats.add(&e);
        Ok(())
    })
    .expect("reads what was verified");
    let tr = start.elapsed();
    let trc = thread_cpu() - cpu;
    assert_eq!(stats.counts.decisions, records);
    println!(
        "read + stats:       {:.0} records/s wall, {:.0} records/s CPU (after verify; one thread)",
        lines as f64 / tr.as_secs_f64(),
        lines as f64 / trc.as_secs_f64(),
    );

    // Where verification time goes (CPU time per line).
    let data = std::fs::read(&path).expect("read");
    let lines_v: Vec<&[u8]> = data
        .split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .collect();
    let per = |f: &dyn Fn(&[u8])| {
        let c = thread_cpu();
        for l in &lines_v {
            f(l);
        }
        (thread_cpu() - c).as_secs_f64() * 1e9 / lines_v.len() as f64
    };
    let sha = per(&|l| {
        std::hint::black_box(merkle::leaf_hash(l));
    });
    let parse = per(&|l| {
        let t = std::str::from_utf8(l).expect("utf-8");
        std::hint::black_box(jcs::parse(t, jcs::Mode::Strict).expect("canonical"));
    });
    let both = per(&|l| {
        let t = std::str::from_utf8(l).expect("utf-8");
        let v = jcs::parse(t, jcs::Mode::Strict).expect("canonical");
        std::hint::black_box(record::parse(&v).expect("record"));
    });
    println!(
        "verify breakdown:   leaf hash {sha:.0} ns, canonical parse {parse:.0} ns, + record checks {:.0} ns (CPU per line)",
        both - parse
    );

    let synced = (records / 10).max(1);
    let path2 = dir.path().join("ledger-sync.jsonl");
    let (t, _) = write(&path2, synced, SyncPolicy::Checkpoint);
    println!(
        "append (fdatasync at each checkpoint): {:.2} µs/record amortised over {synced} records",
        t.as_secs_f64() * 1e6 / synced as f64
    );
}
