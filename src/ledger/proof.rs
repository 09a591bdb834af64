//! Inclusion proofs for single records, in the C2SP tlog-proof text format
//! (<https://c2sp.org/tlog-proof>):
//!
//! ```text
//! c2sp.org/tlog-proof@v1
//! index <leaf index in the run>
//! <base64 hash>…
//!
//! <signed checkpoint note>
//! ```
//!
//! The leaf is `SHA-256(0x00 || record line)`; the tree is the record's run.
//!
//! A decision of record format 2 names its caller's program by the id of a
//! `process` record of its run. Its proof carries that record's inclusion
//! in the same checkpoint too, in the `extra` line (base64 of the leaf
//! index, 8 bytes big-endian, then the proof hashes), and the record file
//! holds the process record as its second line, so that the proven record
//! still says which program acted. Other tlog-proof verifiers ignore
//! `extra` and check the decision's inclusion alone.

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::Path;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;

use super::error::LedgerError;
use super::jcs;
use super::keys::PublicKey;
use super::merkle::{self, leaf_hash, Hash};
use super::note::{self, Checkpoint};
use super::record::{self, Body};

const HEADER: &str = "c2sp.org/tlog-proof@v1";

/// An inclusion proof of one record in a run's checkpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Proof {
    pub index: u64,
    pub hashes: Vec<Hash>,
    /// The `extra` line, decoded: for a format-2 decision, the inclusion
    /// proof of its `process` record (see the module docs).
    pub extra: Option<Vec<u8>>,
    /// The signed checkpoint note.
    pub checkpoint: String,
}

impl Proof {
    /// The tlog-proof text.
    pub fn to_text(&self) -> String {
        let mut s = format!("{HEADER}\n");
        if let Some(x) = &self.extra {
            s.push_str(&format!("extra {}\n", B64.encode(x)));
        }
        s.push_str(&format!("index {}\n", self.index));
        for h in &self.hashes {
            s.push_str(&B64.encode(h));
            s.push('\n');
        }
        s.push('\n');
        s.push_str(&self.checkpoint);
        s
    }

    /// Parse the tlog-proof text.
    pub fn parse(text: &str) -> Result<Proof, LedgerError> {
        let bad = |m: &str| LedgerError::Proof(format!("malformed tlog-proof: {m}"));
        let (head, checkpoint) = text
            .split_once("\n\n")
            .ok_or_else(|| bad("no blank line before the checkpoint"))?;
        let mut lines = head.split('\n');
        if lines.next() != Some(HEADER) {
            return Err(bad("first line is not c2sp.org/tlog-proof@v1"));
        }
        let mut line = lines.next().ok_or_else(|| bad("missing index line"))?;
        let mut extra = None;
        if let Some(x) = line.strip_prefix("extra ") {
            // Unauthenticated: what it holds is checked against the signed
            // checkpoint when it is used (a process record's inclusion).
            extra = Some(
                B64.decode(x)
                    .map_err(|_| bad("the extra line is not base64"))?,
            );
            line = lines.next().ok_or_else(|| bad("missing index line"))?;
        }
        let index = line
            .strip_prefix("index ")
            .and_then(note::decimal)
            .ok_or_else(|| {
                bad(&format!(
                    "invalid index line {line:?} (`index N`, N in decimal digits without a sign or leading zeroes)"
                ))
            })?;
        let mut hashes = Vec::new();
        for l in lines {
            let h = B64
                .decode(l)
                .ok()
                .and_then(|r| <[u8; 32]>::try_from(r.as_slice()).ok())
                .ok_or_else(|| bad("invalid proof hash"))?;
            hashes.push(h);
        }
        Ok(Proof {
            index,
            hashes,
            extra,
            checkpoint: checkpoint.to_string(),
        })
    }
}

/// A proof with the record it proves.
#[derive(Debug, Clone)]
pub struct Proved {
    pub proof: Proof,
    /// The record's line, without newline; for a format-2 decision that
    /// names a `process` record, followed by a newline and that record's
    /// line (the record file `verify-proof` reads).
    pub record: String,
    /// Sequence number of the checkpoint record used.
    pub checkpoint_seq: u64,
    /// Whether the checkpoint is signed by the host key (first/final ones
    /// are; intermediate ones only by an epoch key).
    pub host_signed: bool,
}

/// Make an inclusion proof for the record with `seq` against its run's final
/// checkpoint, or against the checkpoint record with `checkpoint_seq`.
pub fn prove(path: &Path, seq: u64, checkpoint_seq: Option<u64>) -> Result<Proved, LedgerError> {
    let f = File::open(path).map_err(|e| LedgerError::io("open ledger", path, e))?;
    let mut r = BufReader::with_capacity(256 * 1024, f);
    let mut buf = Vec::new();
    let mut leaves: Vec<Hash> = Vec::new();
    let mut target: Option<(u64, String)> = None;
    // The current run's `process` records (format 2): id -> (leaf, line).
    let mut processes: std::collections::HashMap<u64, (u64, String)> =
        std::collections::HashMap::new();
    let mut caller: Option<(u64, String)> = None;
    let mut line_no = 0u64;
    let damaged = |line_no: u64, m: String| {
        LedgerError::Proof(format!(
            "{} line {line_no}: {m}; run `lexecon verify {}`",
            path.display(),
            path.display()
        ))
    };
    loop {
        buf.clear();
        let n = r
            .read_until(b'\n', &mut buf)
            .map_err(|e| LedgerError::io("read ledger", path, e))?;
        if n == 0 || buf.last() != Some(&b'\n') {
            break;
        }
        line_no += 1;
        let content = &buf[..buf.len() - 1];
        let text =
            std::str::from_utf8(content).map_err(|_| damaged(line_no, "not UTF-8".into()))?;
        let v = jcs::parse(text, jcs::Mode::Strict).map_err(|e| damaged(line_no, e.to_string()))?;
        let p = record::parse(&v).map_err(|e| damaged(line_no, e))?;
        if matches!(p.body, Body::Run { .. } | Body::Recovery { .. }) {
            if target.is_some() {
                break;
            }
            leaves.clear();
            processes.clear();
        }
        if let (Body::Process { id }, None) = (&p.body, &target) {
            processes.insert(*id, (leaves.len() as u64, text.to_string()));
        }
        if let Body::Checkpoint {
            note: signed,
            is_final,
        } = &p.body
        {
            let wanted = match checkpoint_seq {
                Some(c) => c == p.seq,
                None => *is_final,
            };
            if let (true, Some((index, rec))) = (wanted, &target) {
                let (body, sigs) = note::parse(signed).map_err(|e| damaged(line_no, e))?;
                let cp = Checkpoint::parse(body).map_err(|e| damaged(line_no, e))?;
                if cp.size as usize != leaves.len() || merkle::root(&leaves) != cp.root {
                    return Err(damaged(
                        line_no,
                        "the checkpoint does not match the records before it".into(),
                    ));
                }
                let hashes = merkle::inclusion_proof(&leaves, *index, cp.size)
                    .map_err(LedgerError::Proof)?;
                let host_signed = sigs.iter().any(|s| !s.name.starts_with("lexecon-epoch-"));
                let (extra, record) = match &caller {
                    None => (None, rec.clone()),
                    Some((pi, pline)) => {
                        let ph = merkle::inclusion_proof(&leaves, *pi, cp.size)
                            .map_err(LedgerError::Proof)?;
                        let mut x = pi.to_be_bytes().to_vec();
                        for h in &ph {
                            x.extend_from_slice(h);
                        }
                        (Some(x), format!("{rec}\n{pline}"))
                    }
                };
                return Ok(Proved {
                    proof: Proof {
                        index: *index,
                        hashes,
                        extra,
                        checkpoint: signed.clone(),
                    },
                    record,
                    checkpoint_seq: p.seq,
                    host_signed,
                });
            }
        }
        if p.seq == seq {
            target = Some((leaves.len() as u64, text.to_string()));
            if let Some(id) = process_ref(&v) {
                let found = processes.get(&id).cloned().ok_or_else(|| {
                    damaged(
                        line_no,
                        format!("the record refers to process record {id}, which its run does not have before it"),
                    )
                })?;
                caller = Some(found);
            }
        }
        leaves.push(leaf_hash(content));
    }
    Err(LedgerError::Proof(match (target, checkpoint_seq) {
        (None, _) => format!("no complete record with seq {seq} in {}", path.display()),
        (Some(_), Some(c)) => format!(
            "no checkpoint with seq {c} after record {seq} in the same run of {}",
            path.display()
        ),
        (Some(_), None) => format!(
            "the run holding record {seq} has no final checkpoint (it was not sealed); pass --checkpoint SEQ to prove against an earlier checkpoint"
        ),
    }))
}

/// The id of the `process` record a format-2 decision names its caller's
/// program by.
fn process_ref(v: &jcs::Value<'_>) -> Option<u64> {
    if v.get("kind").and_then(jcs::Value::as_str) != Some("decision") {
        return None;
    }
    match v.get("action").and_then(|a| a.get("process")) {
        Some(jcs::Value::String(id)) => id.parse().ok(),
        _ => None,
    }
}

/// What a verified proof shows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProofCheck {
    pub origin: String,
    pub size: u64,
    pub index: u64,
    pub seq: u64,
    /// For a format-2 decision: its caller's program, from the `process`
    /// record whose inclusion the proof also showed (its seq, the program).
    pub process: Option<(u64, crate::action::ProcessInfo)>,
}

/// Check that `record` (one ledger line, without newline) is in the
/// checkpoint of `proof`, and that the checkpoint is signed by `key`.
pub fn verify_proof(
    proof: &Proof,
    record: &str,
    key: &PublicKey,
) -> Result<ProofCheck, LedgerError> {
    let fail = |m: String| LedgerError::Proof(format!("proof does not verify: {m}"));
    // Lines by other keys (epoch keys, witness cosignatures) are ignored;
    // every line by the host key must verify.
    let opened = note::open(&proof.checkpoint, std::slice::from_ref(&key.0))
        .map_err(|e| fail(format!("checkpoint (host key {}): {e}", key.fingerprint())))?;
    let text = opened.text;
    let cp = Checkpoint::parse(text).map_err(fail)?;
    if !cp.origin.starts_with("lexecon/") {
        return Err(fail(format!(
            "checkpoint origin {:?} is not a lexecon run",
            cp.origin
        )));
    }
    let record = record.strip_suffix('\n').unwrap_or(record);
    let (record, caller) = match record.split_once('\n') {
        Some((r, c)) => (r, Some(c)),
        None => (record, None),
    };
    let v = jcs::parse(record, jcs::Mode::Strict)
        .map_err(|e| fail(format!("the record is not a canonical ledger line: {e}")))?;
    let p =
        record::parse(&v).map_err(|e| fail(format!("the record is not a ledger record: {e}")))?;
    merkle::verify_inclusion(
        proof.index,
        cp.size,
        &leaf_hash(record.as_bytes()),
        &proof.hashes,
        &cp.root,
    )
    .map_err(fail)?;
    let process = match (process_ref(&v), caller) {
        (None, None) => None,
        (None, Some(_)) => {
            return Err(fail(
                "the record file has a second line, but the record names no process record".into(),
            ))
        }
        (Some(id), None) => {
            return Err(fail(format!(
                "the record names its caller's program by process record {id} of its run, which the record file does not hold (a proof made by `lexecon prove` holds it as the second line)"
            )))
        }
        (Some(id), Some(line)) => Some(check_caller(proof, &cp, id, p.seq, line).map_err(fail)?),
    };
    Ok(ProofCheck {
        origin: cp.origin,
        size: cp.size,
        index: proof.index,
        seq: p.seq,
        process,
    })
}

/// Checks that `line` is the `process` record `id` and is included, before
/// the proven record, in the checkpoint `cp` (the proof in `extra`).
fn check_caller(
    proof: &Proof,
    cp: &Checkpoint,
    id: u64,
    seq: u64,
    line: &str,
) -> Result<(u64, crate::action::ProcessInfo), String> {
    let v = jcs::parse(line, jcs::Mode::Strict)
        .map_err(|e| format!("the process record is not a canonical ledger line: {e}"))?;
    let p = record::parse(&v).map_err(|e| format!("the process record: {e}"))?;
    if p.body_process_id() != Some(id) {
        return Err(format!(
            "the record file's second line is not process record {id}"
        ));
    }
    if p.seq >= seq {
        return Err("the process record comes after the record that names it".into());
    }
    let x = proof
        .extra
        .as_deref()
        .ok_or("the proof has no `extra` line with the process record's inclusion")?;
    if x.len() < 8 || (x.len() - 8) % 32 != 0 {
        return Err("the proof's `extra` line is not a leaf index and hashes".into());
    }
    let (ix, rest) = x.split_at(8);
    let index = u64::from_be_bytes(ix.try_into().map_err(|_| "bad leaf index")?);
    if index >= proof.index {
        return Err("the process record's leaf is not before the record's".into());
    }
    let hashes: Vec<Hash> = rest
        .chunks_exact(32)
        .map(|c| <[u8; 32]>::try_from(c).map_err(|_| "bad hash".to_string()))
        .collect::<Result<_, _>>()?;
    merkle::verify_inclusion(
        index,
        cp.size,
        &leaf_hash(line.as_bytes()),
        &hashes,
        &cp.root,
    )
    .map_err(|e| format!("the process record: {e}"))?;
    // Its members, read as a format-2 run reads them.
    let mut ctx = super::decode::Context::for_process_records();
    ctx.observe(&v)?;
    let info = ctx
        .process(id)
        .cloned()
        .ok_or("the process record could not be read")?;
    Ok((p.seq, info))
}
