//! The offline verifier: one streaming pass over a ledger file, memory
//! independent of its size (one line buffer, one compact range per run, a
//! capped list of problems; with anchors, the leaf hashes of the runs they
//! name).
//!
//! A [`Report`] can only be made by this module. Its status is `Valid` when
//! every check passed, `Invalid` when something was changed, inserted,
//! removed or reordered, and `Incomplete` when the file is honest as far as
//! it goes but stops early (a partial last line, records after the last
//! checkpoint, a run without its end seal).

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::Path;

use ed25519_dalek::VerifyingKey;

use super::anchor::{Anchor, AnchorCheck, Collector};
use super::error::LedgerError;
use super::jcs;
use super::keys::fingerprint;
use super::merkle::{leaf_hash, CompactRange, Hash};
use super::note::{self, Checkpoint, NoteVerifier};
use super::record::{self, Body, Counts, Kind, Parsed};
use super::writer::{epoch_key_name, origin};

/// `verify` exit code: valid, and the host key was supplied independently.
pub const EXIT_VALID: u8 = 0;
/// `verify` exit code: something was changed, inserted, removed or reordered.
pub const EXIT_INVALID: u8 = 1;
/// `verify` exit code: the ledger or the key could not be read.
pub const EXIT_UNREADABLE: u8 = 2;
/// `verify` exit code: intact as far as it goes, but not completely sealed.
pub const EXIT_INCOMPLETE: u8 = 3;
/// `verify` exit code: valid, but only against the key named in the ledger
/// itself (no `--pubkey`, no `ledger.pub` in the key directory): integrity is checked,
/// authorship is not.
pub const EXIT_VALID_UNAUTHENTICATED: u8 = 4;

/// How many problems a report keeps (the rest are only counted).
pub const MAX_PROBLEMS: usize = 200;

/// How many distinct host keys and warnings a report lists (bounded so
/// that memory does not grow with the file).
pub const MAX_KEYS_LISTED: usize = 16;
pub const MAX_WARNINGS: usize = 200;

/// How many runs a report lists (the last ones; earlier ones are counted in
/// [`Report::runs_omitted`]).
pub const MAX_RUNS_LISTED: usize = 1000;

/// How a run listed in a report ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunEnding {
    /// Its final checkpoint was found.
    Sealed,
    /// Sealed afterwards by `lexecon ledger recover`.
    Recovered,
    /// Neither (yet): the last run of a file being written, or cut off.
    Open,
}

impl RunEnding {
    pub fn as_str(self) -> &'static str {
        match self {
            RunEnding::Sealed => "sealed",
            RunEnding::Recovered => "recovered",
            RunEnding::Open => "not sealed",
        }
    }
}

/// One run as the verifier saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunSeen {
    pub id: String,
    /// Line (1-based) and seq of its header.
    pub line: u64,
    pub seq: u64,
    /// The decisions it holds.
    pub counts: Counts,
    /// Refusals (calls refused before they could be judged).
    pub refusals: u64,
    pub ending: RunEnding,
}

/// Overall result.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Valid,
    Invalid,
    Incomplete,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Valid => "VALID",
            Status::Invalid => "INVALID",
            Status::Incomplete => "INCOMPLETE",
        }
    }
}

/// The checks, numbered as in [`Verifier::line`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Check {
    /// 1. Every line ends in a newline.
    Framing,
    /// 2. Every line is UTF-8 and the RFC 8785 canonical form of its value.
    Canonical,
    /// 3. Every record has a known kind and the fields of that kind.
    Structure,
    /// 4. `seq` increases by one from 0.
    Sequence,
    /// 5. `prev` is the hash of the previous line.
    Chain,
    /// 6. Runs are header, records, end, final checkpoint; counts match.
    Run,
    /// 7. A checkpoint's size and Merkle root match the records before it.
    Merkle,
    /// 8. Checkpoint notes carry exactly the expected valid signatures.
    Signature,
    /// 9. Epoch keys follow one another, each declared before it signs.
    EpochKey,
    /// 10. The host key: matches the supplied key and the header's
    ///     fingerprint, signs the first and the final checkpoint.
    HostKey,
    /// 11. Each run names the run before it.
    CrossRun,
    /// 12. The file ends with every run sealed.
    Complete,
    /// 13. Each anchor given (`--anchor`) is signed by the host key and its
    ///     tree is consistent with its run's lines in the file.
    Anchor,
    /// 14. With `verify --policy`: every recorded verdict and winning rule
    ///     follows from the policy the run pinned and the recorded action
    ///     (checked by [`crate::replay`], added with [`Report::add_problem`]).
    Decision,
}

impl Check {
    pub fn number(self) -> u8 {
        self as u8 + 1
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Check::Framing => "framing",
            Check::Canonical => "canonical",
            Check::Structure => "structure",
            Check::Sequence => "sequence",
            Check::Chain => "chain",
            Check::Run => "run",
            Check::Merkle => "merkle",
            Check::Signature => "signature",
            Check::EpochKey => "epoch-key",
            Check::HostKey => "host-key",
            Check::CrossRun => "cross-run",
            Check::Complete => "complete",
            Check::Anchor => "anchor",
            Check::Decision => "decision",
        }
    }
}

/// How bad a problem is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    /// The ledger was tampered with (or damaged).
    Invalid,
    /// The ledger stops early.
    Incomplete,
}

/// One finding, located by file line (1-based) and, when known, `seq`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub line: u64,
    pub seq: Option<u64>,
    pub check: Check,
    pub severity: Severity,
    pub message: String,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "line {}", self.line)?;
        if let Some(s) = self.seq {
            write!(f, " (seq {s})")?;
        }
        write!(
            f,
            ": [{} {}] {}",
            self.check.number(),
            self.check.as_str(),
            self.message
        )
    }
}

/// Where the host public key came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeySource {
    /// Supplied by the caller (`--pubkey`, the default key file).
    Supplied,
    /// Taken from the run headers in the ledger itself: anyone who can write
    /// the file can make such a ledger, so this proves integrity, not origin.
    LedgerHeader,
}

/// The result of verifying a ledger.
#[derive(Debug, Clone)]
pub struct Report {
    pub status: Status,
    /// Problems in file order (at most [`MAX_PROBLEMS`]).
    pub problems: Vec<Problem>,
    /// Problems found beyond [`MAX_PROBLEMS`].
    pub problems_omitted: u64,
    /// Notable but not wrong: runs sealed by `ledger recover`, removed
    /// partial lines.
    pub warnings: Vec<String>,
    pub key_source: KeySource,
    /// Fingerprints of the host keys that signed runs, in order of first use.
    pub host_keys: Vec<String>,
    /// Lines read (complete ones).
    pub lines: u64,
    /// Runs (headers) seen.
    pub runs: u64,
    /// Runs sealed by their own writer.
    pub sealed_runs: u64,
    /// Runs sealed afterwards by `ledger recover`.
    pub recovered_runs: u64,
    /// Decision counts over the whole file.
    pub counts: Counts,
    /// One result per anchor checked, in the order given (a failed one is
    /// also a problem of check 13).
    pub anchors: Vec<AnchorCheck>,
    /// The last [`MAX_RUNS_LISTED`] runs, in file order.
    pub run_list: Vec<RunSeen>,
    /// Runs before those.
    pub runs_omitted: u64,
    /// The hash of the last complete line: a reader that reads the file
    /// again checks that it reads the lines verified (see
    /// [`super::read`]).
    pub last_hash: Option<Hash>,
}

impl Report {
    /// Valid, with the key supplied independently.
    pub fn is_valid(&self) -> bool {
        self.status == Status::Valid && self.key_source == KeySource::Supplied
    }

    /// Adds a problem found by a check outside this module (check 14), in
    /// line order among the others, and updates the status (INVALID over
    /// INCOMPLETE over VALID).
    pub fn add_problem(&mut self, p: Problem) {
        match p.severity {
            Severity::Invalid => self.status = Status::Invalid,
            Severity::Incomplete if self.status == Status::Valid => {
                self.status = Status::Incomplete
            }
            Severity::Incomplete => {}
        }
        if self.problems.len() >= MAX_PROBLEMS {
            self.problems_omitted += 1;
            return;
        }
        let at = self.problems.partition_point(|q| q.line <= p.line);
        self.problems.insert(at, p);
    }

    /// The `verify` exit code for this report.
    pub fn exit_code(&self) -> u8 {
        match (self.status, self.key_source) {
            (Status::Valid, KeySource::Supplied) => EXIT_VALID,
            (Status::Valid, KeySource::LedgerHeader) => EXIT_VALID_UNAUTHENTICATED,
            (Status::Invalid, _) => EXIT_INVALID,
            (Status::Incomplete, _) => EXIT_INCOMPLETE,
        }
    }
}

/// Verify the ledger at `path`. With `pubkey`, every run must be signed by
/// that host key; without it, each run's own header key is used and the
/// report says so ([`KeySource::LedgerHeader`]). Errors only when the file
/// cannot be read.
pub fn verify_file(path: &Path, pubkey: Option<&VerifyingKey>) -> Result<Report, LedgerError> {
    verify_file_with(path, pubkey, None)
}

/// As [`verify_file_with`]; each of `anchors` must also be held by the
/// ledger: signed by the host key (`pubkey`, or without it a host key named
/// in the ledger), and its tree consistent with its run's lines (check 13).
pub fn verify_file_anchored(
    path: &Path,
    pubkey: Option<&VerifyingKey>,
    approver: Option<&VerifyingKey>,
    anchors: Vec<Anchor>,
) -> Result<Report, LedgerError> {
    let f = File::open(path).map_err(|e| LedgerError::io("open ledger", path, e))?;
    verify_reader_anchored(
        BufReader::with_capacity(256 * 1024, f),
        pubkey,
        approver,
        anchors,
    )
    .map_err(|e| LedgerError::io("read ledger", path, e))
}

/// As [`verify_file`]; with `approver`, every allowed escalation must carry
/// a valid receipt signed by that key.
pub fn verify_file_with(
    path: &Path,
    pubkey: Option<&VerifyingKey>,
    approver: Option<&VerifyingKey>,
) -> Result<Report, LedgerError> {
    verify_file_anchored(path, pubkey, approver, Vec::new())
}

/// Verify a ledger from any buffered reader (see [`verify_file`]).
pub fn verify_reader<R: BufRead>(
    r: R,
    pubkey: Option<&VerifyingKey>,
) -> Result<Report, std::io::Error> {
    verify_reader_with(r, pubkey, None)
}

/// As [`verify_reader`], with an approver key (see [`verify_file_with`]).
pub fn verify_reader_with<R: BufRead>(
    r: R,
    pubkey: Option<&VerifyingKey>,
    approver: Option<&VerifyingKey>,
) -> Result<Report, std::io::Error> {
    verify_reader_anchored(r, pubkey, approver, Vec::new())
}

/// As [`verify_reader_with`], with anchors (see [`verify_file_anchored`]).
pub fn verify_reader_anchored<R: BufRead>(
    mut r: R,
    pubkey: Option<&VerifyingKey>,
    approver: Option<&VerifyingKey>,
    anchors: Vec<Anchor>,
) -> Result<Report, std::io::Error> {
    let mut v = Verifier::new(pubkey.copied());
    v.approver = approver.copied();
    v.anchors = Collector::new(anchors);
    let mut buf = Vec::with_capacity(4096);
    loop {
        buf.clear();
        let n = r.read_until(b'\n', &mut buf)?;
        if n == 0 {
            break;
        }
        if buf.last() != Some(&b'\n') {
            v.torn(buf.len() as u64);
            break;
        }
        v.line(&buf[..buf.len() - 1]);
    }
    Ok(v.finish())
}

#[derive(Debug, PartialEq, Eq, Clone, Copy)]
enum UnitKind {
    Run,
    Recovery,
}

struct Unit {
    kind: UnitKind,
    id: String,
    start_line: u64,
    host: Option<NoteVerifier>,
    tree: CompactRange,
    epoch: u64,
    epoch_key: Option<VerifyingKey>,
    /// Next epoch key, declared by an epoch record on line `.2`.
    pending: Option<(u64, VerifyingKey, u64)>,
    checkpoints: u64,
    last_checkpoint_line: Option<u64>,
    /// First line not yet covered by a verified checkpoint.
    interval_start: u64,
    end_line: Option<u64>,
    root_failed: bool,
    tally: Counts,
    /// Escalations not yet answered: request id → (seq, line, record hash).
    open_escalations: std::collections::BTreeMap<u64, (u64, u64, Hash)>,
    /// Per rule, the times of the actions it let through (decisions at
    /// their request and intents that were not blocks, within the longest
    /// window a rate may have), to re-derive `rate` limit records.
    let_through: std::collections::HashMap<String, std::collections::VecDeque<u64>>,
    /// The block a `rate` limit record announces: (rule, time, its seq).
    rate_block: Option<(String, u64, u64)>,
    /// Times of the blocks a breaker counting `blocks` counts (decisions at
    /// their request and intents, built-in rules' left out).
    blocks: std::collections::VecDeque<u64>,
    /// A `blocks` breaker record, checked with the decision after it:
    /// (blocks before it within its window, count, limit, time, seq).
    breaker_check: Option<(u64, u64, u64, u64, u64)>,
    /// Whether the run's breaker has tripped.
    breaker_seen: bool,
}

impl Unit {
    /// A run or recovery unit starting at `line`, nothing verified yet.
    fn new(
        kind: UnitKind,
        id: String,
        line: u64,
        host: Option<NoteVerifier>,
        epoch_key: Option<VerifyingKey>,
    ) -> Unit {
        Unit {
            kind,
            id,
            start_line: line,
            host,
            tree: CompactRange::new(),
            epoch: 0,
            epoch_key,
            pending: None,
            checkpoints: 0,
            last_checkpoint_line: None,
            interval_start: line,
            end_line: None,
            root_failed: false,
            tally: Counts::default(),
            open_escalations: Default::default(),
            let_through: Default::default(),
            rate_block: None,
            blocks: Default::default(),
            breaker_check: None,
            breaker_seen: false,
        }
    }
}

/// A resolution's receipt against the escalation it answers: `Some(problem)`.
/// With `approver`, an allowed resolution needs a valid receipt by that key.
fn check_receipt(
    escalation: &Hash,
    allowed: bool,
    scope: &str,
    receipt: Option<&([u8; 32], [u8; 64])>,
    approver: Option<&VerifyingKey>,
) -> Option<String> {
    match receipt {
        Some((key, sig)) => {
            let Ok(k) = VerifyingKey::from_bytes(key) else {
                return Some("the receipt's key is not a valid Ed25519 key".into());
            };
            let msg = super::receipt_message(escalation, allowed, scope);
            let sig = ed25519_dalek::Signature::from_bytes(sig);
            if k.verify_strict(&msg, &sig).is_err() {
                return Some(
                    "the approval receipt does not verify for this escalation and answer (forged, altered or replayed)".into(),
                );
            }
            match approver {
                Some(a) if a.as_bytes() != key => Some(format!(
                    "the approval receipt is signed by key {}, not by the approver key supplied",
                    &super::keys::fingerprint(&k)[..16]
                )),
                _ => None,
            }
        }
        None if allowed && approver.is_some() => Some(
            "an escalation was allowed without a receipt from the approver key supplied".into(),
        ),
        None => None,
    }
}

struct Verifier {
    pubkey: Option<VerifyingKey>,
    /// The current run's record format and `process` records (part of
    /// check 3).
    context: super::decode::Context,
    /// With `--approver-pubkey`: allowed escalations need its receipt.
    approver: Option<VerifyingKey>,
    line_no: u64,
    expect_seq: u64,
    prev_hash: Option<Hash>,
    prev_seq: Option<u64>,
    prev_kind: Option<Kind>,
    unit: Option<Unit>,
    last_closed: Option<String>,
    report: Report,
    any_problem: [bool; 2],
    /// The lines of the runs that anchors name.
    anchors: Collector,
}

impl Verifier {
    fn new(pubkey: Option<VerifyingKey>) -> Verifier {
        Verifier {
            pubkey,
            context: super::decode::Context::new(),
            approver: None,
            line_no: 0,
            expect_seq: 0,
            prev_hash: None,
            prev_seq: None,
            prev_kind: None,
            unit: None,
            last_closed: None,
            report: Report {
                status: Status::Valid,
                problems: Vec::new(),
                problems_omitted: 0,
                warnings: Vec::new(),
                key_source: if pubkey.is_some() {
                    KeySource::Supplied
                } else {
                    KeySource::LedgerHeader
                },
                host_keys: Vec::new(),
                lines: 0,
                runs: 0,
                sealed_runs: 0,
                recovered_runs: 0,
                counts: Counts::default(),
                anchors: Vec::new(),
                run_list: Vec::new(),
                runs_omitted: 0,
                last_hash: None,
            },
            any_problem: [false; 2],
            anchors: Collector::default(),
        }
    }

    fn problem(
        &mut self,
        line: u64,
        seq: Option<u64>,
        check: Check,
        severity: Severity,
        msg: String,
    ) {
        self.any_problem[match severity {
            Severity::Invalid => 0,
            Severity::Incomplete => 1,
        }] = true;
        if self.report.problems.len() >= MAX_PROBLEMS {
            self.report.problems_omitted += 1;
            return;
        }
        self.report.problems.push(Problem {
            line,
            seq,
            check,
            severity,
            message: msg,
        });
    }

    fn warn(&mut self, w: String) {
        if self.report.warnings.len() < MAX_WARNINGS {
            self.report.warnings.push(w);
        }
    }

    fn bad(&mut self, seq: Option<u64>, check: Check, msg: String) {
        self.problem(self.line_no, seq, check, Severity::Invalid, msg);
    }

    fn torn(&mut self, len: u64) {
        self.problem(
            self.line_no + 1,
            None,
            Check::Framing,
            Severity::Incomplete,
            format!(
                "the file ends with a partial record ({len} bytes without a newline): a write was interrupted; `lexecon ledger recover` can seal it"
            ),
        );
    }

    /// Verify one line (without its newline). The checks, in order:
    ///
    /// 1. framing — done by the caller: a last line without newline is a
    ///    torn tail (INCOMPLETE).
    /// 2. canonical — UTF-8, and exactly the RFC 8785 encoding of its value.
    /// 3. structure — a known kind with exactly that kind's fields.
    /// 4. sequence — `seq` is one more than the previous line's.
    /// 5. chain — `prev` is `SHA-256(0x00 || previous line)`; when it is not
    ///    (and `seq` is continuous) the previous line was altered.
    /// 6. run — `run` header, decisions/epochs/checkpoints, `end`, final
    ///    checkpoint; a `recovery` unit seals an unsealed run; the end
    ///    record's counts equal the decisions seen.
    /// 7. merkle — each checkpoint's origin, size and RFC 6962 root match
    ///    the run's records before it (computed incrementally).
    /// 8. signature — each checkpoint carries exactly the expected
    ///    signatures, each valid.
    /// 9. epoch-key — epoch `e+1`'s key is declared in the record right
    ///    before the checkpoint signed by epoch `e`'s key; epoch 0's key is
    ///    in the header.
    /// 10. host-key — the header key matches its fingerprint and the
    ///     supplied key; it signs the first and the final checkpoint.
    /// 11. cross-run — each run names the previous run (whose final
    ///     checkpoint its `prev` hashes).
    /// 12. complete — checked in [`Verifier::finish`]: the last run is
    ///     sealed.
    /// 13. anchor — with anchors given, the lines of the runs they name
    ///     are gathered here and checked in [`Verifier::finish`].
    fn line(&mut self, content: &[u8]) {
        self.line_no += 1;
        self.report.lines += 1;
        let h = leaf_hash(content);
        let parsed = self.decode(content);
        let seq = parsed.as_ref().map(|p| p.seq);

        // 4. sequence, 5. chain
        let mut junction_reported = false;
        if let Some(p) = &parsed {
            if p.seq != self.expect_seq {
                junction_reported = true;
                let msg = if p.seq < self.expect_seq {
                    format!(
                        "seq {} repeats or goes back (expected {}): a record was duplicated, reordered or inserted before this line",
                        p.seq, self.expect_seq
                    )
                } else {
                    format!(
                        "seq jumps from {} to {}: {} record(s) missing before this line",
                        self.expect_seq.wrapping_sub(1) as i128,
                        p.seq,
                        p.seq - self.expect_seq
                    )
                    .replace("from -1 ", "from nothing ")
                };
                self.bad(seq, Check::Sequence, msg);
            }
            self.expect_seq = p.seq.wrapping_add(1);
            match (p.prev, self.prev_hash) {
                (None, None) => {}
                (Some(a), Some(b)) if a == b => {}
                (None, Some(_)) => self.bad(
                    seq,
                    Check::Chain,
                    "record has no `prev` link but is not the first line".into(),
                ),
                (Some(_), None) => {
                    if !junction_reported {
                        self.bad(
                            seq,
                            Check::Chain,
                            "the first line links to a previous record: the start of the file was removed".into(),
                        )
                    }
                }
                (Some(_), Some(_)) => {
                    if !junction_reported {
                        let (l, s) = (self.line_no - 1, self.prev_seq);
                        self.problem(
                            l,
                            s,
                            Check::Chain,
                            Severity::Invalid,
                            format!(
                                "the hash of this record does not match the `prev` of the next record (line {}): this record was changed after it was written (or the next record's `prev` was)",
                                self.line_no
                            ),
                        );
                    }
                }
            }
        } else {
            self.expect_seq = self.expect_seq.wrapping_add(1);
        }

        if let Some(p) = &parsed {
            self.unit_rules(p, h);
        }
        if !self.anchors.is_empty() {
            if let Some(Body::Run { id, host_key, .. } | Body::Recovery { id, host_key, .. }) =
                parsed.as_ref().map(|p| &p.body)
            {
                self.anchors.header(id, self.line_no, host_key);
            }
            self.anchors.leaf(h);
        }
        if let Some(u) = self.unit.as_mut() {
            u.tree.push(h);
        }
        self.prev_hash = Some(h);
        self.prev_seq = seq.or(self.prev_seq.map(|s| s + 1));
        self.prev_kind = parsed.map(|p| p.kind);
    }

    /// Checks 2 and 3.
    fn decode(&mut self, content: &[u8]) -> Option<Parsed> {
        let text = match std::str::from_utf8(content) {
            Ok(t) => t,
            Err(e) => {
                self.bad(
                    None,
                    Check::Canonical,
                    format!("not UTF-8 (byte {})", e.valid_up_to()),
                );
                return None;
            }
        };
        let value = match jcs::parse(text, jcs::Mode::Strict) {
            Ok(v) => v,
            Err(e) => {
                self.bad(
                    None,
                    Check::Canonical,
                    format!("not canonical JSON (RFC 8785): {e}"),
                );
                return None;
            }
        };
        match record::parse(&value) {
            Ok(p) => {
                // What the record may leave out or refer to in its run's
                // record format (format 2: `process` records).
                if let Err(e) = self.context.observe(&value) {
                    self.bad(Some(p.seq), Check::Structure, e);
                }
                Some(p)
            }
            Err(e) => {
                let seq = value
                    .get("seq")
                    .and_then(|s| s.as_str())
                    .and_then(|s| s.parse().ok());
                self.bad(seq, Check::Structure, e);
                None
            }
        }
    }

    fn host_key(&mut self, seq: Option<u64>, vkey: &str, fp: &str) -> Option<NoteVerifier> {
        let header_key = match NoteVerifier::parse(vkey) {
            Ok(k) => k,
            Err(e) => {
                self.bad(
                    seq,
                    Check::HostKey,
                    format!("the header's host key is malformed: {e}"),
                );
                return None;
            }
        };
        let real_fp = fingerprint(&header_key.key);
        if real_fp != fp {
            self.bad(
                seq,
                Check::HostKey,
                format!("the header's host_fingerprint {fp} is not the fingerprint of its host key ({real_fp})"),
            );
        }
        let key = match self.pubkey {
            Some(k) => {
                if k != header_key.key {
                    self.bad(
                        seq,
                        Check::HostKey,
                        format!(
                            "this run was signed by host key {real_fp}, not by the supplied key {}",
                            fingerprint(&k)
                        ),
                    );
                }
                NoteVerifier {
                    name: header_key.name,
                    key: k,
                }
            }
            None => header_key,
        };
        let used = fingerprint(&key.key);
        if self.report.host_keys.len() < MAX_KEYS_LISTED && !self.report.host_keys.contains(&used) {
            self.report.host_keys.push(used);
        }
        Some(key)
    }

    fn cross_run(&mut self, seq: Option<u64>, prev_run: &Option<String>) {
        match (prev_run, &self.last_closed) {
            (None, None) => {}
            (Some(a), Some(b)) if a == b => {}
            (Some(a), None) => self.bad(
                seq,
                Check::CrossRun,
                format!("this run follows run {a}, which is not in the file: earlier runs were removed"),
            ),
            (None, Some(b)) => self.bad(
                seq,
                Check::CrossRun,
                format!("this run names no previous run, but follows run {b} in the file"),
            ),
            (Some(a), Some(b)) => self.bad(
                seq,
                Check::CrossRun,
                format!("this run follows run {a}, but the previous run in the file is {b}: a run was removed or the file was spliced"),
            ),
        }
    }

    /// Re-derives rate limits (part of check 6): every `rate` limit record
    /// must count exactly the actions its rule let through within its
    /// window before its time, that count must reach its limit, and the
    /// record right after it must be that rule's block at the same time.
    fn rate_rules(&mut self, p: &Parsed) {
        const LONGEST_WINDOW_NS: u64 = 86_400 * 1_000_000_000;
        let seq = Some(p.seq);
        let Some(u) = self.unit.as_mut() else { return };
        let limited = match &p.body {
            Body::Decision { limited, .. } | Body::Intent { limited } => Some(limited),
            _ => None,
        };
        let mut problems: Vec<String> = Vec::new();
        if let Some((rule, time, at)) = u.rate_block.take() {
            let ok = limited.is_some_and(|l| {
                l.counts && l.block && l.time == time && l.rule.as_deref() == Some(rule.as_str())
            });
            if !ok {
                problems.push(format!(
                    "the rate limit record {at} (rule {rule}) is not followed by that rule's block at its time"
                ));
            }
        }
        if let Some((prior, count, limit, time, at)) = u.breaker_check.take() {
            let this = limited.is_some_and(|l| l.counts && l.block && l.time == time);
            let total = prior + u64::from(this);
            if limited.map(|l| l.time) != Some(time) || total != count || count < limit {
                problems.push(format!(
                    "the breaker record {at} counts {count} blocks (threshold {limit}), but the records show {total} within its window, the decision after it included"
                ));
            }
        }
        if let Some(l) = limited {
            let builtin = l.rule.as_deref().is_some_and(|r| r.starts_with("lexecon."));
            if l.counts && l.block && !builtin {
                while u
                    .blocks
                    .front()
                    .is_some_and(|t| t.saturating_add(LONGEST_WINDOW_NS) < l.time)
                {
                    u.blocks.pop_front();
                }
                u.blocks.push_back(l.time);
            }
            if let (true, false, Some(rule)) = (l.counts, l.block, &l.rule) {
                let times = u.let_through.entry(rule.clone()).or_default();
                while times
                    .front()
                    .is_some_and(|t| t.saturating_add(LONGEST_WINDOW_NS) < l.time)
                {
                    times.pop_front();
                }
                times.push_back(l.time);
            }
        }
        if let Body::Limit {
            event,
            counted,
            limit,
            count,
            window_ms,
            time,
            rule: None,
        } = &p.body
        {
            if event == "breaker" {
                if u.breaker_seen {
                    problems.push("the run's breaker trips a second time".into());
                }
                u.breaker_seen = true;
                if counted.as_deref() == Some("blocks") {
                    let window = window_ms.saturating_mul(1_000_000);
                    let prior = u
                        .blocks
                        .iter()
                        .filter(|t| **t <= *time && t.saturating_add(window) > *time)
                        .count() as u64;
                    u.breaker_check = Some((prior, *count, *limit, *time, p.seq));
                }
            }
        }
        if let Body::Limit {
            event,
            rule: Some(rule),
            count,
            limit,
            window_ms,
            time,
            ..
        } = &p.body
        {
            if event == "rate" {
                let window = window_ms.saturating_mul(1_000_000);
                let within = u.let_through.get(rule).map_or(0, |ts| {
                    ts.iter()
                        .filter(|t| **t <= *time && t.saturating_add(window) > *time)
                        .count() as u64
                });
                if within != *count || count < limit {
                    problems.push(format!(
                        "the rate limit record of rule {rule} counts {count} (limit {limit}), but the records show {within} actions it let through in the {window_ms} ms before it"
                    ));
                }
                u.rate_block = Some((rule.clone(), *time, p.seq));
            }
        }
        for m in problems {
            self.bad(seq, Check::Run, m);
        }
    }

    /// Checks 6–11 for one parsed record.
    fn unit_rules(&mut self, p: &Parsed, h: Hash) {
        let seq = Some(p.seq);
        let line = self.line_no;
        self.rate_rules(p);
        match &p.body {
            Body::Run {
                id,
                host_key,
                host_fingerprint,
                epoch_key,
                prev_run,
                ..
            } => {
                self.close_unsealed_before_header(seq, "run header");
                self.report.runs += 1;
                self.cross_run(seq, prev_run);
                let host = self.host_key(seq, host_key, host_fingerprint);
                let epoch_key = match VerifyingKey::from_bytes(epoch_key) {
                    Ok(k) => Some(k),
                    Err(_) => {
                        self.bad(
                            seq,
                            Check::EpochKey,
                            "the header's epoch_key is not a valid Ed25519 key".into(),
                        );
                        None
                    }
                };
                self.unit = Some(Unit::new(UnitKind::Run, id.clone(), line, host, epoch_key));
                if self.report.run_list.len() == MAX_RUNS_LISTED {
                    self.report.run_list.remove(0);
                    self.report.runs_omitted += 1;
                }
                self.report.run_list.push(RunSeen {
                    id: id.clone(),
                    line,
                    seq: p.seq,
                    counts: Counts::default(),
                    refusals: 0,
                    ending: RunEnding::Open,
                });
            }
            Body::Recovery {
                id,
                host_key,
                host_fingerprint,
                torn_bytes,
                torn_sha256,
                unsealed_run,
                prev_run,
            } => {
                if *torn_bytes > 0 {
                    self.warn(format!(
                        "line {line}: `lexecon ledger recover` removed a partial record of {torn_bytes} bytes (sha256 {}) from the end of the file",
                        torn_sha256.map(hex::encode).unwrap_or_else(|| "unknown".into())
                    ));
                }
                let open = self
                    .unit
                    .as_ref()
                    .map(|u| (u.id.clone(), u.start_line, u.last_checkpoint_line));
                match (&open, unsealed_run) {
                    (Some((uid, start, cp)), Some(named)) if uid == named => {
                        self.report.recovered_runs += 1;
                        if let Some(r) = self.report.run_list.last_mut().filter(|r| &r.id == uid) {
                            r.ending = RunEnding::Recovered;
                        }
                        self.warn(format!(
                            "run {uid} (line {start}) was not sealed by its writer; `lexecon ledger recover` sealed it at line {line} with the host key only{}",
                            match cp {
                                Some(c) => format!(": records after line {c} (its last checkpoint) are attested by the host key, not by an epoch key"),
                                None => String::new(),
                            }
                        ));
                        self.last_closed = Some(uid.clone());
                        self.unit = None;
                    }
                    (Some((uid, _, _)), _) => {
                        self.bad(
                            seq,
                            Check::Run,
                            format!("a recovery record follows unsealed run {uid} but does not name it"),
                        );
                        self.last_closed = Some(uid.clone());
                        self.unit = None;
                    }
                    (None, Some(named)) => self.bad(
                        seq,
                        Check::Run,
                        format!("the recovery record names unsealed run {named}, but the previous run is sealed"),
                    ),
                    (None, None) => {}
                }
                self.cross_run(seq, prev_run);
                let host = self.host_key(seq, host_key, host_fingerprint);
                self.unit = Some(Unit::new(UnitKind::Recovery, id.clone(), line, host, None));
            }
            Body::Decision {
                verdict, outcome, ..
            } => {
                self.report.counts.add(*verdict, *outcome);
                match self.unit.as_mut() {
                    Some(u) if u.kind == UnitKind::Run && u.end_line.is_none() => {
                        u.tally.add(*verdict, *outcome);
                        if let Some(r) = self.report.run_list.last_mut().filter(|r| r.id == u.id) {
                            r.counts.add(*verdict, *outcome);
                        }
                    }
                    Some(u) if u.end_line.is_some() => {
                        let l = u.end_line;
                        self.bad(
                            seq,
                            Check::Run,
                            format!(
                                "a decision after the run's end record (line {})",
                                l.unwrap_or(0)
                            ),
                        )
                    }
                    _ => self.bad(seq, Check::Run, "a decision outside any run".into()),
                }
            }
            Body::Refusal
            | Body::Dns
            | Body::Intent { .. }
            | Body::Limit { .. }
            | Body::Process { .. } => match self.unit.as_ref() {
                Some(u) if u.kind == UnitKind::Run && u.end_line.is_none() => {
                    if p.kind == Kind::Refusal {
                        if let Some(r) = self.report.run_list.last_mut().filter(|r| r.id == u.id) {
                            r.refusals += 1;
                        }
                    }
                }
                Some(u) if u.end_line.is_some() => {
                    let l = u.end_line.unwrap_or(0);
                    self.bad(
                        seq,
                        Check::Run,
                        format!(
                            "a {} record after the run's end record (line {l})",
                            p.kind.as_str()
                        ),
                    )
                }
                _ => self.bad(
                    seq,
                    Check::Run,
                    format!("a {} record outside any run", p.kind.as_str()),
                ),
            },
            Body::Escalation { request } => {
                let msg = match self.unit.as_mut() {
                    Some(u) if u.kind == UnitKind::Run && u.end_line.is_none() => u
                        .open_escalations
                        .insert(*request, (p.seq, line, h))
                        .map(|(s, _, _)| {
                            format!("escalation request {request} is already pending (seq {s})")
                        }),
                    _ => Some("an escalation outside an open run".into()),
                };
                if let Some(m) = msg {
                    self.bad(seq, Check::Run, m);
                }
            }
            Body::Resolution {
                request,
                escalation,
                allowed,
                scope,
                receipt,
            } => {
                let approver = self.approver;
                let msg = match self.unit.as_mut() {
                    Some(u) if u.kind == UnitKind::Run && u.end_line.is_none() => {
                        match u.open_escalations.get(request) {
                            Some((s, _, eh)) if s == escalation => {
                                let eh = *eh;
                                u.open_escalations.remove(request);
                                check_receipt(&eh, *allowed, scope, receipt.as_ref(), approver.as_ref())
                            }
                            Some((s, _, _)) => Some(format!(
                                "the resolution of request {request} names escalation seq {escalation}, but that request was asked at seq {s}"
                            )),
                            None => Some(format!(
                                "a resolution of request {request} (escalation seq {escalation}) with no earlier unanswered escalation in this run"
                            )),
                        }
                    }
                    _ => Some("a resolution outside an open run".into()),
                };
                if let Some(m) = msg {
                    self.bad(seq, Check::Run, m);
                }
            }
            Body::Epoch { epoch, key } => {
                let msg = match self.unit.as_mut() {
                    Some(u) if u.kind == UnitKind::Run && u.end_line.is_none() => {
                        if *epoch != u.epoch + 1 || u.pending.is_some() {
                            Some((Check::EpochKey, format!(
                                "epoch record declares epoch {epoch}, but the run is in epoch {} and expects {}",
                                u.epoch,
                                u.epoch + 1
                            )))
                        } else {
                            match VerifyingKey::from_bytes(key) {
                                Ok(k) => {
                                    u.pending = Some((*epoch, k, line));
                                    None
                                }
                                Err(_) => Some((
                                    Check::EpochKey,
                                    "the epoch key is not a valid Ed25519 key".into(),
                                )),
                            }
                        }
                    }
                    _ => Some((Check::Run, "an epoch record outside an open run".into())),
                };
                if let Some((c, m)) = msg {
                    self.bad(seq, c, m);
                }
            }
            Body::End { counts } => match self.unit.as_mut() {
                Some(u) if u.kind == UnitKind::Run && u.end_line.is_none() => {
                    u.end_line = Some(line);
                    let tally = u.tally;
                    let unanswered: Vec<String> = u
                        .open_escalations
                        .iter()
                        .map(|(r, (s, l, _))| format!("request {r} (seq {s}, line {l})"))
                        .collect();
                    if !unanswered.is_empty() {
                        self.bad(
                            seq,
                            Check::Run,
                            format!(
                                "the run ended with escalations never resolved: {}",
                                unanswered.join(", ")
                            ),
                        );
                    }
                    if *counts != tally {
                        self.bad(
                            seq,
                            Check::Run,
                            format!(
                                "the end record's counts differ from the decisions the run holds: {}",
                                count_differences(counts, &tally)
                            ),
                        );
                    }
                }
                _ => self.bad(seq, Check::Run, "an end record outside an open run".into()),
            },
            Body::Checkpoint { note, is_final } => self.checkpoint(p.seq, note, *is_final, h),
        }
    }

    /// A header while the previous run is still open: its seal was removed.
    fn close_unsealed_before_header(&mut self, seq: Option<u64>, what: &str) {
        if let Some(u) = self.unit.take() {
            self.bad(
                seq,
                Check::Run,
                format!(
                    "a {what} while run {} (line {}) has no end seal: the end of that run was removed",
                    u.id, u.start_line
                ),
            );
            self.last_closed = Some(u.id);
        }
    }

    /// Checks 6–10 for a checkpoint record.
    fn checkpoint(&mut self, seq: u64, signed: &str, is_final: bool, _h: Hash) {
        let line = self.line_no;
        let prev_kind = self.prev_kind;
        let Some(mut u) = self.unit.take() else {
            self.bad(Some(seq), Check::Run, "a checkpoint outside any run".into());
            return;
        };
        let s = Some(seq);
        // Which checkpoint this must be, and who must sign it.
        #[derive(PartialEq)]
        enum Role {
            First,
            Regular,
            Final,
        }
        let role = match u.kind {
            UnitKind::Recovery => Role::Final,
            UnitKind::Run if u.checkpoints == 0 => Role::First,
            UnitKind::Run if u.end_line.is_some() => Role::Final,
            UnitKind::Run => Role::Regular,
        };
        if (role == Role::Final) != is_final {
            self.bad(
                s,
                Check::Run,
                if is_final {
                    "a checkpoint marked final that is not after the run's end record".into()
                } else {
                    "the checkpoint after the run's end record is not marked final".into()
                },
            );
        }
        if role == Role::First && u.tree.size() != 1 {
            self.bad(
                s,
                Check::Run,
                "the first checkpoint of a run must follow its header".into(),
            );
        }
        if role == Role::Final && u.kind == UnitKind::Run && prev_kind != Some(Kind::End) {
            self.bad(
                s,
                Check::Run,
                "the final checkpoint must follow the end record".into(),
            );
        }
        let mut signers: Vec<(NoteVerifier, String)> = Vec::new();
        let next_epoch = if role == Role::Regular {
            match u.pending.take() {
                Some((e, k, l)) if l + 1 == line => Some((e, k)),
                Some((_, _, l)) => {
                    self.bad(s, Check::EpochKey, format!("the next epoch key (line {l}) is not declared right before this checkpoint"));
                    None
                }
                None => {
                    self.bad(
                        s,
                        Check::EpochKey,
                        "no epoch record declares the next epoch key before this checkpoint".into(),
                    );
                    None
                }
            }
        } else {
            if let Some((_, _, l)) = u.pending.take() {
                self.bad(
                    s,
                    Check::EpochKey,
                    format!("the epoch key declared at line {l} is never used"),
                );
            }
            None
        };
        if role != Role::First && u.kind == UnitKind::Run {
            if let Some(k) = u.epoch_key {
                signers.push((
                    NoteVerifier {
                        name: epoch_key_name(u.epoch),
                        key: k,
                    },
                    format!("epoch {} key", u.epoch),
                ));
            }
        }
        if role != Role::Regular {
            if let Some(hk) = &u.host {
                signers.push((hk.clone(), "host key".into()));
            }
        }

        // 7. merkle
        match note::parse(signed) {
            Err(e) => self.bad(
                s,
                Check::Signature,
                format!("malformed checkpoint note: {e}"),
            ),
            Ok((text, sigs)) => {
                let expected = Checkpoint {
                    origin: origin(&u.id),
                    size: u.tree.size(),
                    root: u.tree.root(),
                };
                match Checkpoint::parse(text) {
                    Err(e) => self.bad(s, Check::Merkle, format!("malformed checkpoint body: {e}")),
                    Ok(cp) => {
                        if cp.origin != expected.origin {
                            self.bad(
                                s,
                                Check::Merkle,
                                format!(
                                    "checkpoint origin {:?} is not this run's ({:?})",
                                    cp.origin, expected.origin
                                ),
                            );
                        } else if cp.size != expected.size {
                            self.bad(s, Check::Merkle, format!(
                                "checkpoint covers {} records but the run has {} before it (lines {}–{}): records were added or removed",
                                cp.size, expected.size, u.start_line, line - 1
                            ));
                        } else if cp.root != expected.root {
                            if !u.root_failed {
                                self.bad(s, Check::Merkle, format!(
                                    "the Merkle root of the run's {} records does not match the signed root: a record between line {} and line {} was changed (its chain links were recomputed)",
                                    cp.size, u.interval_start, line - 1
                                ));
                            }
                            u.root_failed = true;
                        } else if text != expected.body() {
                            self.bad(
                                s,
                                Check::Merkle,
                                "checkpoint body is not in canonical form".into(),
                            );
                        }
                    }
                }
                // 8. signatures, 9. epoch key, 10. host key
                let mut seen = vec![false; signers.len()];
                for sig in &sigs {
                    match signers
                        .iter()
                        .position(|(v, _)| v.name == sig.name && v.id() == sig.key_id)
                    {
                        None => self.bad(
                            s,
                            Check::Signature,
                            format!(
                                "signature by unexpected key {:?} ({})",
                                sig.name,
                                hex::encode(sig.key_id)
                            ),
                        ),
                        Some(i) if seen[i] => self.bad(
                            s,
                            Check::Signature,
                            format!("duplicate signature by the {}", signers[i].1),
                        ),
                        Some(i) => {
                            seen[i] = true;
                            if !sig.verifies(text, &signers[i].0) {
                                let c = if signers[i].1 == "host key" {
                                    Check::HostKey
                                } else {
                                    Check::Signature
                                };
                                self.bad(
                                    s,
                                    c,
                                    format!(
                                        "the signature by the {} does not verify",
                                        signers[i].1
                                    ),
                                );
                            }
                        }
                    }
                }
                for (i, (_, who)) in signers.iter().enumerate() {
                    if !seen[i] {
                        let c = if who == "host key" {
                            Check::HostKey
                        } else {
                            Check::Signature
                        };
                        self.bad(s, c, format!("the checkpoint is not signed by the {who}"));
                    }
                }
            }
        }

        u.checkpoints += 1;
        u.last_checkpoint_line = Some(line);
        u.interval_start = line + 1;
        if let Some((e, k)) = next_epoch {
            u.epoch = e;
            u.epoch_key = Some(k);
        }
        if role == Role::Final {
            if u.kind == UnitKind::Run {
                self.report.sealed_runs += 1;
                if let Some(r) = self.report.run_list.last_mut().filter(|r| r.id == u.id) {
                    r.ending = RunEnding::Sealed;
                }
            }
            self.last_closed = Some(u.id);
            // The unit is closed: its tree is not extended by later lines.
        } else {
            self.unit = Some(u);
        }
    }

    fn finish(mut self) -> Report {
        // 12. complete
        if let Some(u) = self.unit.take() {
            let last = self.line_no;
            let msg = match (u.end_line, u.last_checkpoint_line) {
                (Some(e), _) => format!(
                    "run {} ended (end record at line {e}) but its final checkpoint is missing",
                    u.id
                ),
                (None, Some(c)) if c == last => format!(
                    "run {} (line {}) has no end seal: its writer stopped after line {last} (was it killed?)",
                    u.id, u.start_line
                ),
                (None, Some(c)) => format!(
                    "run {} (line {}) has no end seal: its writer stopped (was it killed?); {} record(s) after its last checkpoint (line {c}) are not signed",
                    u.id,
                    u.start_line,
                    last - c
                ),
                (None, None) => format!(
                    "run {} (line {}) has no signed checkpoint at all",
                    u.id, u.start_line
                ),
            };
            let seq = self.prev_seq;
            self.problem(last, seq, Check::Complete, Severity::Incomplete, msg);
        }
        if self.report.lines == 0 && self.report.problems.is_empty() {
            self.problem(
                0,
                None,
                Check::Complete,
                Severity::Incomplete,
                "the ledger holds no records".into(),
            );
        }
        // 13. anchor
        let anchors = std::mem::take(&mut self.anchors);
        if !anchors.is_empty() {
            let checks = anchors.finish(self.pubkey.as_ref(), self.report.lines);
            for c in &checks {
                if !c.held() {
                    self.problem(
                        c.line,
                        None,
                        Check::Anchor,
                        Severity::Invalid,
                        c.message.clone(),
                    );
                }
            }
            self.report.anchors = checks;
        }
        self.report.last_hash = self.prev_hash;
        self.report.status = if self.any_problem[0] {
            Status::Invalid
        } else if self.any_problem[1] {
            Status::Incomplete
        } else {
            Status::Valid
        };
        self.report
    }
}

/// What differs between an end record's counts and the decisions seen:
/// `allowed: the end record says 3, the run holds 2; …` (only the fields
/// that differ).
fn count_differences(end: &Counts, seen: &Counts) -> String {
    let fields = [
        ("decisions", end.decisions, seen.decisions),
        ("verdict allow", end.allow, seen.allow),
        ("verdict escalate", end.escalate, seen.escalate),
        ("verdict block", end.block, seen.block),
        ("outcome allowed", end.allowed, seen.allowed),
        ("outcome refused", end.refused, seen.refused),
        ("outcome killed", end.killed, seen.killed),
    ];
    fields
        .iter()
        .filter(|(_, e, s)| e != s)
        .map(|(name, e, s)| format!("{name}: the end record says {e}, the run holds {s}"))
        .collect::<Vec<_>>()
        .join("; ")
}
