//! Anchors: a run's final signed checkpoint kept outside the ledger, and the
//! check that a ledger still holds everything an anchor committed to.
//!
//! A ledger checks itself: every run is linked to the one before it, so
//! removing a run from the middle is found. Removing the *last* runs (a cut
//! at a run boundary), or replacing them with runs signed by a stolen host
//! key, leaves a file that verifies. An anchor kept elsewhere (a CI log, an
//! artifact store) is what the file cannot change.
//!
//! The compact form, one line (what the supervisor prints at the end of a
//! run and appends to `--anchor-out FILE`):
//!
//! ```text
//! lexecon-anchor/v1 <origin> <tree size> <base64 root> <key name> <base64 signature>
//! ```
//!
//! It is the checkpoint note `<origin>\n<tree size>\n<root>\n` with its host
//! key signature line `— <key name> <signature>` (more `<name> <signature>`
//! pairs may follow), written on one line: [`Anchor::note`] rebuilds the
//! signed note byte for byte. A file may also hold one signed checkpoint
//! note as it appears in the ledger.
//!
//! To check an anchor, the ledger's run with the anchor's origin is found,
//! and an RFC 6962 consistency proof from the anchor's tree (size `m`, the
//! signed root) to the run's tree in the ledger (its `n ≥ m` lines, from its
//! header up to the next header or the end of the file) is computed from
//! the ledger's lines and checked.

use std::path::Path;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use ed25519_dalek::VerifyingKey;

use super::keys::fingerprint;
use super::merkle::{self, Hash};
use super::note::{self, Checkpoint, NoteVerifier};

/// The first word of an anchor line.
pub const PREFIX: &str = "lexecon-anchor/v1";

/// Most distinct header keys remembered to check anchors against when no
/// key is supplied.
const MAX_HEADER_KEYS: usize = 16;

/// A checkpoint kept outside the ledger.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Anchor {
    /// Where it came from, for messages (`FILE:LINE`).
    pub source: String,
    /// The checkpoint: origin `lexecon/<run id>`, tree size, root.
    pub checkpoint: Checkpoint,
    /// The signature lines of the note.
    pub signatures: Vec<note::SignatureLine>,
}

impl Anchor {
    /// An anchor from a signed checkpoint note.
    pub fn from_note(signed: &str, source: &str) -> Result<Anchor, String> {
        let (text, signatures) = note::parse(signed)?;
        let checkpoint = Checkpoint::parse(text)?;
        if checkpoint.body() != text {
            return Err("the checkpoint text is not in canonical form".into());
        }
        if !checkpoint.origin.starts_with("lexecon/") {
            return Err(format!(
                "checkpoint origin {:?} is not a lexecon run (`lexecon/<run id>`)",
                checkpoint.origin
            ));
        }
        Ok(Anchor {
            source: source.to_string(),
            checkpoint,
            signatures,
        })
    }

    /// The id of the anchored run (or recovery).
    pub fn run(&self) -> &str {
        self.checkpoint
            .origin
            .strip_prefix("lexecon/")
            .unwrap_or(&self.checkpoint.origin)
    }

    /// The signed note this anchor stands for.
    pub fn note(&self) -> String {
        let mut s = self.checkpoint.body();
        s.push('\n');
        for sig in &self.signatures {
            s.push_str(&format!("\u{2014} {} {}\n", sig.name, sig_b64(sig)));
        }
        s
    }

    /// The compact one-line form, with the host key signature only (epoch
    /// key signatures are left out; a note signed by epoch keys only keeps
    /// them).
    pub fn to_line(&self) -> String {
        let host: Vec<&note::SignatureLine> = self
            .signatures
            .iter()
            .filter(|s| !s.name.starts_with("lexecon-epoch-"))
            .collect();
        let sigs = if host.is_empty() {
            self.signatures.iter().collect()
        } else {
            host
        };
        let mut s = format!(
            "{PREFIX} {} {} {}",
            self.checkpoint.origin,
            self.checkpoint.size,
            B64.encode(self.checkpoint.root)
        );
        for sig in sigs {
            s.push_str(&format!(" {} {}", sig.name, sig_b64(sig)));
        }
        s
    }

    /// Parse one anchor line (see the module docs).
    pub fn parse_line(line: &str, source: &str) -> Result<Anchor, String> {
        let words: Vec<&str> = line.split_ascii_whitespace().collect();
        if words.first() != Some(&PREFIX) {
            return Err(format!("an anchor line starts with {PREFIX}"));
        }
        if words.len() < 6 || (words.len() - 4) % 2 != 0 {
            return Err(format!(
                "expected `{PREFIX} ORIGIN SIZE ROOT KEYNAME SIGNATURE`, found {} words",
                words.len()
            ));
        }
        let mut signed = format!("{}\n{}\n{}\n\n", words[1], words[2], words[3]);
        for pair in words[4..].chunks(2) {
            signed.push_str(&format!("\u{2014} {} {}\n", pair[0], pair[1]));
        }
        Anchor::from_note(&signed, source)
    }

    /// A short name for messages: `anchor 2 (anchors.txt:2, run ID, tree
    /// size 812)`.
    fn describe(&self, index: usize) -> String {
        format!(
            "anchor {index} ({}, run {}, tree size {})",
            self.source,
            self.run(),
            self.checkpoint.size
        )
    }

    /// The key among `keys` whose valid signature this anchor carries, or
    /// why there is none.
    fn signed_by<'k>(&self, keys: &'k [VerifyingKey]) -> Result<&'k VerifyingKey, String> {
        let text = self.checkpoint.body();
        // As signed-note says: lines by other keys are ignored, and one
        // failing line by a key refuses the anchor even when another line
        // by the same key verifies.
        let mut altered = None;
        for k in keys {
            let mut good = false;
            for sig in &self.signatures {
                let v = NoteVerifier {
                    name: sig.name.clone(),
                    key: *k,
                };
                if !sig.is_by(&v) {
                    continue;
                }
                if sig.verifies(&text, &v) {
                    good = true;
                } else {
                    altered = Some(k);
                    good = false;
                    break;
                }
            }
            if good {
                return Ok(k);
            }
            if altered.is_some() {
                break;
            }
        }
        let keys_named = match keys {
            [] => "no host key (none supplied, and the ledger names none)".to_string(),
            [k] => format!("the host key {}", &fingerprint(k)[..16]),
            ks => format!(
                "any of the host keys {}",
                ks.iter()
                    .map(|k| fingerprint(k)[..16].to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        };
        let epoch_only = self
            .signatures
            .iter()
            .all(|s| s.name.starts_with("lexecon-epoch-"));
        Err(match altered {
            None if epoch_only => "it is signed by an epoch key only, not by the host key: take a run's final checkpoint (or its first), which the host key signs".to_string(),
            Some(k) => format!(
                "its signature by the host key {} does not verify: the anchor's tree size or root was altered",
                &fingerprint(k)[..16]
            ),
            None => format!(
                "it is not signed by {keys_named}: it was signed by another key (key id {}); pass the --pubkey of the ledger it belongs to",
                self.signatures
                    .iter()
                    .map(|s| format!("{} {}", s.name, hex::encode(s.key_id)))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        })
    }
}

fn sig_b64(sig: &note::SignatureLine) -> String {
    sig.blob_b64()
}

/// The anchors in the text of an anchor file: lines written by
/// `--anchor-out` (blank lines and lines starting with `#` are skipped), or
/// one signed checkpoint note.
pub fn parse_file(text: &str, path: &Path) -> Result<Vec<Anchor>, String> {
    let name = path.display();
    if text.lines().any(|l| l.trim_start().starts_with(PREFIX)) {
        let mut out = Vec::new();
        for (i, line) in text.lines().enumerate() {
            let t = line.trim();
            if t.is_empty() || t.starts_with('#') {
                continue;
            }
            let source = format!("{name}:{}", i + 1);
            out.push(Anchor::parse_line(t, &source).map_err(|e| format!("{source}: {e}"))?);
        }
        return Ok(out);
    }
    if text.trim().is_empty() {
        return Err(format!(
            "{name} holds no anchor (expected lines starting with {PREFIX}, or a signed checkpoint note)"
        ));
    }
    // A note copied from a terminal may have lost its final newline.
    let note_text = if text.ends_with('\n') {
        text.to_string()
    } else {
        format!("{text}\n")
    };
    Anchor::from_note(&note_text, &name.to_string())
        .map(|a| vec![a])
        .map_err(|e| {
            format!("{name} is neither a file of {PREFIX} lines nor a signed checkpoint note: {e}")
        })
}

/// What checking one anchor against the ledger found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Finding {
    /// The ledger's run holds the anchor's tree: the consistency proof from
    /// the anchor's tree to the run's `size` lines verified.
    Held {
        first_line: u64,
        size: u64,
        proof_hashes: usize,
    },
    /// The anchor is not signed by the host key.
    Refused(String),
    /// No run with the anchor's id in the ledger.
    Missing,
    /// The run is there with fewer lines than the anchor signed.
    Shorter { first_line: u64, size: u64 },
    /// The run's first lines are not the ones the anchor signed.
    Differs { first_line: u64, size: u64 },
}

/// The result for one anchor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AnchorCheck {
    /// 1-based, in the order the anchors were given.
    pub index: usize,
    pub source: String,
    pub run: String,
    /// The anchor's tree size.
    pub size: u64,
    /// Fingerprint of the host key that signed it, once verified.
    pub key: Option<String>,
    pub finding: Finding,
    /// What it means, in words.
    pub message: String,
    /// The line a problem is reported at (the run's first line, or the
    /// ledger's last).
    pub line: u64,
}

impl AnchorCheck {
    pub fn held(&self) -> bool {
        matches!(self.finding, Finding::Held { .. })
    }

    /// `held`, `refused`, `missing`, `shorter`, `differs`.
    pub fn status(&self) -> &'static str {
        match self.finding {
            Finding::Held { .. } => "held",
            Finding::Refused(_) => "refused",
            Finding::Missing => "missing",
            Finding::Shorter { .. } => "shorter",
            Finding::Differs { .. } => "differs",
        }
    }
}

/// Gathers, during the verifier's one pass, the lines of the runs that
/// anchors name (32 bytes per line of those runs only).
#[derive(Debug, Default)]
pub(crate) struct Collector {
    anchors: Vec<Anchor>,
    /// Per anchor: the first line of its run and the run's leaf hashes.
    found: Vec<Option<(u64, Vec<Hash>)>>,
    /// Anchors whose run is the current unit.
    current: Vec<usize>,
    header_keys: Vec<VerifyingKey>,
    /// The last unit seen: (id, first line).
    last_unit: Option<(String, u64)>,
}

impl Collector {
    pub(crate) fn new(anchors: Vec<Anchor>) -> Collector {
        Collector {
            found: vec![None; anchors.len()],
            anchors,
            ..Collector::default()
        }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.anchors.is_empty()
    }

    /// A run or recovery header with id `id` at `line`, naming host key
    /// `vkey`: the lines from here on belong to that unit.
    pub(crate) fn header(&mut self, id: &str, line: u64, vkey: &str) {
        self.current.clear();
        self.last_unit = Some((id.to_string(), line));
        if let Ok(k) = NoteVerifier::parse(vkey) {
            if self.header_keys.len() < MAX_HEADER_KEYS && !self.header_keys.contains(&k.key) {
                self.header_keys.push(k.key);
            }
        }
        for (i, a) in self.anchors.iter().enumerate() {
            // A second unit with the same id does not replace the first.
            if a.run() == id && self.found[i].is_none() {
                self.found[i] = Some((line, Vec::new()));
                self.current.push(i);
            }
        }
    }

    /// Every line of the file, in order.
    pub(crate) fn leaf(&mut self, h: Hash) {
        for &i in &self.current {
            if let Some((_, leaves)) = self.found[i].as_mut() {
                leaves.push(h);
            }
        }
    }

    /// Check every anchor. `pubkey` is the supplied host key; without it,
    /// anchors are checked against the host keys the ledger's headers name.
    /// `lines` is the number of lines in the file.
    pub(crate) fn finish(self, pubkey: Option<&VerifyingKey>, lines: u64) -> Vec<AnchorCheck> {
        let keys: Vec<VerifyingKey> = match pubkey {
            Some(k) => vec![*k],
            None => self.header_keys.clone(),
        };
        let last_unit = self.last_unit.clone();
        self.anchors
            .iter()
            .zip(self.found)
            .enumerate()
            .map(|(i, (a, found))| check_one(i + 1, a, found, &keys, lines, last_unit.as_ref()))
            .collect()
    }
}

fn check_one(
    index: usize,
    a: &Anchor,
    found: Option<(u64, Vec<Hash>)>,
    keys: &[VerifyingKey],
    lines: u64,
    last_unit: Option<&(String, u64)>,
) -> AnchorCheck {
    let name = a.describe(index);
    let m = a.checkpoint.size;
    let mut out = AnchorCheck {
        index,
        source: a.source.clone(),
        run: a.run().to_string(),
        size: m,
        key: None,
        finding: Finding::Missing,
        message: String::new(),
        line: lines,
    };
    match a.signed_by(keys) {
        Ok(k) => out.key = Some(fingerprint(k)),
        Err(why) => {
            out.message = format!("{name} is refused: {why}");
            out.finding = Finding::Refused(why);
            return out;
        }
    }
    let Some((first_line, leaves)) = found else {
        let last = match last_unit {
            Some((id, l)) => format!(" (its last run is {id}, from line {l})"),
            None => String::new(),
        };
        out.message = format!(
            "{name} is not in the ledger: the ledger has {lines} lines and no run {}{last}; the run's {m} records were removed (the file was cut at a run boundary, and perhaps other runs were appended in their place)",
            a.run()
        );
        return out;
    };
    let n = leaves.len() as u64;
    out.line = first_line;
    let last_line = first_line + n.saturating_sub(1);
    if n < m {
        out.finding = Finding::Shorter {
            first_line,
            size: n,
        };
        out.message = format!(
            "{name} is not in the ledger: the ledger holds only {n} records of run {} (lines {first_line}–{last_line}); records {n}..{m} of the run, which the anchor signed, were removed",
            a.run()
        );
        return out;
    }
    let held = merkle::consistency_proof(&leaves, m, n).and_then(|proof| {
        merkle::verify_consistency(m, n, &a.checkpoint.root, &merkle::root(&leaves), &proof)
            .map(|()| proof.len())
    });
    match held {
        Ok(proof_hashes) => {
            out.finding = Finding::Held {
                first_line,
                size: n,
                proof_hashes,
            };
            out.message = format!(
                "{name} is held: run {} (lines {first_line}–{last_line}, {n} records) is consistent with it (RFC 6962 consistency proof of {proof_hashes} hashes from size {m} to size {n})",
                a.run()
            );
        }
        Err(_) => {
            let signed_last = first_line + m.saturating_sub(1);
            out.finding = Finding::Differs {
                first_line,
                size: n,
            };
            out.message = format!(
                "{name} does not match the ledger: records up to {m} of run {} (lines {first_line}–{signed_last}) differ from what the anchor signed: the run was rewritten or replaced",
                a.run()
            );
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use ed25519_dalek::SigningKey;

    fn anchor_for(key: &SigningKey, id: &str, leaves: &[Hash]) -> Anchor {
        let body = Checkpoint {
            origin: format!("lexecon/{id}"),
            size: leaves.len() as u64,
            root: merkle::root(leaves),
        }
        .body();
        let epoch = SigningKey::from_bytes(&[5; 32]);
        let signed = note::sign(&body, &[("lexecon-epoch-3", &epoch), ("lexecon", key)]);
        Anchor::from_note(&signed, "test").expect("anchor")
    }

    fn leaves(n: usize, seed: u8) -> Vec<Hash> {
        (0..n)
            .map(|i| merkle::leaf_hash(&[seed, i as u8]))
            .collect()
    }

    #[test]
    fn the_compact_line_rebuilds_the_signed_note() {
        let key = SigningKey::from_bytes(&[7; 32]);
        let a = anchor_for(&key, "00112233445566778899aabbccddeeff", &leaves(5, 1));
        let line = a.to_line();
        assert!(line.starts_with("lexecon-anchor/v1 lexecon/00112233445566778899aabbccddeeff 5 "));
        assert!(!line.contains("epoch"), "{line}");
        assert!(!line.contains('\n'));
        let b = Anchor::parse_line(&line, "x").expect("parses");
        assert_eq!(b.checkpoint, a.checkpoint);
        assert_eq!(b.signatures.len(), 1);
        assert!(b.signed_by(&[key.verifying_key()]).is_ok());
        // The note form parses to the same anchor.
        let c = Anchor::from_note(&b.note(), "x").expect("note");
        assert_eq!(c.to_line(), line);
        // Malformed lines say what is expected.
        let e = Anchor::parse_line("lexecon-anchor/v1 lexecon/ab 5", "x").expect_err("short");
        assert!(e.contains("ORIGIN SIZE ROOT"), "{e}");
        let e = Anchor::parse_line(&line.replace(" 5 ", " 05 "), "x").expect_err("size");
        assert!(e.contains("tree size"), "{e}");
    }

    #[test]
    fn anchor_files_hold_lines_or_one_note() {
        let key = SigningKey::from_bytes(&[7; 32]);
        let a = anchor_for(&key, "aa", &leaves(3, 1));
        let b = anchor_for(&key, "bb", &leaves(4, 2));
        let text = format!("# anchors\n{}\n\n{}\n", a.to_line(), b.to_line());
        let got = parse_file(&text, Path::new("f.txt")).expect("two");
        assert_eq!(got.len(), 2);
        assert_eq!(got[1].source, "f.txt:4");
        assert_eq!(got[1].run(), "bb");
        let got = parse_file(&a.note(), Path::new("n.txt")).expect("note");
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].checkpoint, a.checkpoint);
        let e = parse_file(&format!("{}\ngarbage\n", a.to_line()), Path::new("f"))
            .expect_err("bad line");
        assert!(e.starts_with("f:2: "), "{e}");
        assert!(parse_file("", Path::new("f")).is_err());
        assert!(parse_file("hello\n", Path::new("f")).is_err());
    }

    fn run_collector(anchors: Vec<Anchor>, units: &[(&str, &[Hash])]) -> Collector {
        let mut c = Collector::new(anchors);
        let vkey = NoteVerifier {
            name: "lexecon".into(),
            key: SigningKey::from_bytes(&[7; 32]).verifying_key(),
        }
        .to_vkey();
        let mut line = 1;
        for (id, ls) in units {
            c.header(id, line, &vkey);
            for l in ls.iter() {
                c.leaf(*l);
                line += 1;
            }
        }
        c
    }

    #[test]
    fn anchors_are_held_missing_shorter_differ_or_refused() {
        let key = SigningKey::from_bytes(&[7; 32]);
        let pk = key.verifying_key();
        let run1 = leaves(6, 1);
        let run2 = leaves(9, 2);
        // The anchor signs the run's first 8 lines; the ledger holds 9 (the
        // final checkpoint line comes after what it signs).
        let a1 = anchor_for(&key, "r1", &run1[..5]);
        let a2 = anchor_for(&key, "r2", &run2[..8]);
        let r = run_collector(
            vec![a1.clone(), a2.clone()],
            &[("r1", &run1), ("r2", &run2)],
        )
        .finish(Some(&pk), 15);
        assert!(r.iter().all(|c| c.held()), "{r:?}");
        assert_eq!(r[1].line, 7);
        assert!(r[1].message.contains("lines 7–15"), "{}", r[1].message);

        // Run 2 cut off.
        let r = run_collector(vec![a1.clone(), a2.clone()], &[("r1", &run1)]).finish(Some(&pk), 6);
        assert!(r[0].held());
        assert_eq!(r[1].finding, Finding::Missing);
        assert!(
            r[1].message.contains("is not in the ledger"),
            "{}",
            r[1].message
        );
        assert!(r[1].message.contains("no run r2"), "{}", r[1].message);

        // Run 2 cut inside.
        let r = run_collector(vec![a2.clone()], &[("r1", &run1), ("r2", &run2[..5])])
            .finish(Some(&pk), 11);
        assert_eq!(
            r[0].finding,
            Finding::Shorter {
                first_line: 7,
                size: 5
            }
        );
        assert!(r[0].message.contains("records 5..8"), "{}", r[0].message);

        // Run 2 replaced under the same id (one line changed).
        let mut fake = run2.clone();
        fake[3] = merkle::leaf_hash(b"forged");
        let r =
            run_collector(vec![a2.clone()], &[("r1", &run1), ("r2", &fake)]).finish(Some(&pk), 15);
        assert!(matches!(r[0].finding, Finding::Differs { .. }), "{r:?}");
        assert!(r[0].message.contains("records up to 8"), "{}", r[0].message);

        // Another key, or an altered root.
        let other = SigningKey::from_bytes(&[8; 32]);
        let a3 = anchor_for(&other, "r2", &run2[..8]);
        let mut a4 = a2.clone();
        a4.checkpoint.root = merkle::root(&fake[..8]);
        let r = run_collector(vec![a3, a4], &[("r1", &run1), ("r2", &fake)]).finish(Some(&pk), 15);
        assert!(
            matches!(&r[0].finding, Finding::Refused(m) if m.contains("another key")),
            "{r:?}"
        );
        assert!(
            matches!(&r[1].finding, Finding::Refused(m) if m.contains("altered")),
            "{r:?}"
        );

        // Without a supplied key, the ledger's header keys are used.
        let r = run_collector(vec![a2], &[("r1", &run1), ("r2", &run2)]).finish(None, 15);
        assert!(r[0].held(), "{r:?}");
        assert_eq!(r[0].key.as_deref(), Some(fingerprint(&pk).as_str()));
    }
}
