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
    /// The signed checkpoint note.
    pub checkpoint: String,
}

impl Proof {
    /// The tlog-proof text.
    pub fn to_text(&self) -> String {
        let mut s = format!("{HEADER}\nindex {}\n", self.index);
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
        if let Some(extra) = line.strip_prefix("extra ") {
            // Opaque and unauthenticated: only its encoding is checked.
            B64.decode(extra)
                .map_err(|_| bad("the extra line is not base64"))?;
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
            checkpoint: checkpoint.to_string(),
        })
    }
}

/// A proof with the record it proves.
#[derive(Debug, Clone)]
pub struct Proved {
    pub proof: Proof,
    /// The record's line, without newline.
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
                return Ok(Proved {
                    proof: Proof {
                        index: *index,
                        hashes,
                        checkpoint: signed.clone(),
                    },
                    record: rec.clone(),
                    checkpoint_seq: p.seq,
                    host_signed,
                });
            }
        }
        if p.seq == seq {
            target = Some((leaves.len() as u64, text.to_string()));
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

/// What a verified proof shows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProofCheck {
    pub origin: String,
    pub size: u64,
    pub index: u64,
    pub seq: u64,
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
    Ok(ProofCheck {
        origin: cp.origin,
        size: cp.size,
        index: proof.index,
        seq: p.seq,
    })
}
