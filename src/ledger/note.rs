//! C2SP signed notes (<https://c2sp.org/signed-note>) with Ed25519 keys, and
//! the checkpoint body they carry (<https://c2sp.org/tlog-checkpoint>).
//!
//! A note is a UTF-8 text ending in a newline, a blank line, and one
//! signature line per signer: `— NAME BASE64(KEY_ID || SIGNATURE)`. The key ID
//! is the first four bytes of `SHA-256(NAME || 0x0A || 0x01 || PUBKEY)`.
//! Verifier keys are written `NAME+HEXID+BASE64(0x01 || PUBKEY)`, signer keys
//! `PRIVATE+KEY+NAME+HEXID+BASE64(0x01 || SEED)`.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use ed25519_dalek::{Signature, Signer as _, SigningKey, VerifyingKey};
use sha2::{Digest, Sha256};

use super::merkle::Hash;

/// Algorithm byte of Ed25519 keys in signed notes.
const ALG_ED25519: u8 = 0x01;
/// The em dash and space that open a signature line.
const SIG_PREFIX: &str = "\u{2014} ";

/// The key ID of an Ed25519 key named `name`.
pub fn key_id(name: &str, key: &VerifyingKey) -> [u8; 4] {
    let mut h = Sha256::new();
    h.update(name.as_bytes());
    h.update([b'\n', ALG_ED25519]);
    h.update(key.as_bytes());
    let d = h.finalize();
    [d[0], d[1], d[2], d[3]]
}

/// Whether `name` is a valid key name: non-empty, no `+`, no whitespace.
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && !name
            .chars()
            .any(|c| c == '+' || c.is_whitespace() || c.is_control())
}

/// A named Ed25519 public key as used for note signatures.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NoteVerifier {
    pub name: String,
    pub key: VerifyingKey,
}

impl NoteVerifier {
    /// The key ID (see the module docs).
    pub fn id(&self) -> [u8; 4] {
        key_id(&self.name, &self.key)
    }

    /// The verifier key string `NAME+HEXID+BASE64(0x01||KEY)`.
    pub fn to_vkey(&self) -> String {
        let mut raw = vec![ALG_ED25519];
        raw.extend_from_slice(self.key.as_bytes());
        format!(
            "{}+{}+{}",
            self.name,
            hex::encode(self.id()),
            B64.encode(raw)
        )
    }

    /// Parse a verifier key string, checking its key ID.
    pub fn parse(vkey: &str) -> Result<NoteVerifier, String> {
        let mut parts = vkey.trim_end_matches('\n').splitn(3, '+');
        let (Some(name), Some(id), Some(key)) = (parts.next(), parts.next(), parts.next()) else {
            return Err("expected NAME+KEYID+KEY".into());
        };
        let key = parse_key_bytes(key)?;
        let key = VerifyingKey::from_bytes(&key).map_err(|e| format!("bad public key: {e}"))?;
        check_name_and_id(name, id, &key)?;
        Ok(NoteVerifier {
            name: name.to_string(),
            key,
        })
    }
}

fn parse_key_bytes(b64: &str) -> Result<[u8; 32], String> {
    let raw = B64
        .decode(b64)
        .map_err(|e| format!("key is not base64: {e}"))?;
    match raw.split_first() {
        Some((&ALG_ED25519, rest)) if rest.len() == 32 => {
            let mut k = [0u8; 32];
            k.copy_from_slice(rest);
            Ok(k)
        }
        Some((&ALG_ED25519, _)) => Err("Ed25519 key is not 32 bytes".into()),
        _ => Err("not an Ed25519 (type 0x01) key".into()),
    }
}

fn check_name_and_id(name: &str, id: &str, key: &VerifyingKey) -> Result<(), String> {
    if !valid_name(name) {
        return Err(format!("invalid key name {name:?}"));
    }
    if id.len() != 8 || hex::encode(key_id(name, key)) != id {
        return Err(format!(
            "key ID {id} does not match the key (expected {})",
            hex::encode(key_id(name, key))
        ));
    }
    Ok(())
}

/// Parse a signer key string `PRIVATE+KEY+NAME+HEXID+BASE64(0x01||SEED)`.
pub fn parse_signer(skey: &str) -> Result<(String, SigningKey), String> {
    let rest = skey
        .trim_end_matches('\n')
        .strip_prefix("PRIVATE+KEY+")
        .ok_or("expected PRIVATE+KEY+NAME+KEYID+KEY")?;
    let mut parts = rest.splitn(3, '+');
    let (Some(name), Some(id), Some(key)) = (parts.next(), parts.next(), parts.next()) else {
        return Err("expected PRIVATE+KEY+NAME+KEYID+KEY".into());
    };
    let mut seed = zeroize::Zeroizing::new(parse_key_bytes(key)?);
    let sk = SigningKey::from_bytes(&seed);
    zeroize::Zeroize::zeroize(&mut *seed);
    check_name_and_id(name, id, &sk.verifying_key())?;
    Ok((name.to_string(), sk))
}

/// The signer key string for `key` named `name` (secret: handle with care).
pub fn signer_string(name: &str, key: &SigningKey) -> zeroize::Zeroizing<String> {
    let mut raw = zeroize::Zeroizing::new(vec![ALG_ED25519]);
    raw.extend_from_slice(key.as_bytes());
    zeroize::Zeroizing::new(format!(
        "PRIVATE+KEY+{}+{}+{}",
        name,
        hex::encode(key_id(name, &key.verifying_key())),
        B64.encode(&*raw)
    ))
}

/// Sign `text` (which must end in a newline) with each signer, in order.
pub fn sign(text: &str, signers: &[(&str, &SigningKey)]) -> String {
    let mut out = String::with_capacity(text.len() + 1 + signers.len() * 120);
    out.push_str(text);
    out.push('\n');
    for (name, key) in signers {
        let sig = key.sign(text.as_bytes());
        let mut blob = Vec::with_capacity(68);
        blob.extend_from_slice(&key_id(name, &key.verifying_key()));
        blob.extend_from_slice(&sig.to_bytes());
        out.push_str(SIG_PREFIX);
        out.push_str(name);
        out.push(' ');
        out.push_str(&B64.encode(blob));
        out.push('\n');
    }
    out
}

/// Most signature lines a note may carry (signed-note: verifiers SHOULD
/// set a limit and MUST accept at least 16; Go's `note` package allows 100).
pub const MAX_SIGNATURES: usize = 100;

/// One signature line of a note: `— NAME BASE64(KEY_ID || SIGNATURE)`.
/// `signature` is whatever follows the key ID, of any length: lines by keys
/// other than Ed25519 note keys (witness cosignatures, post-quantum keys)
/// carry other formats, and are ignored unless their key is known.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignatureLine {
    pub name: String,
    pub key_id: [u8; 4],
    pub signature: Vec<u8>,
}

impl SignatureLine {
    /// Whether this line is by `v` (same name and key ID). Only such lines
    /// are checked; the others are from keys the caller does not know.
    pub fn is_by(&self, v: &NoteVerifier) -> bool {
        self.name == v.name && self.key_id == v.id()
    }

    /// Whether this line is a valid Ed25519 signature of `text` by `v`.
    pub fn verifies(&self, text: &str, v: &NoteVerifier) -> bool {
        let Ok(sig) = <[u8; 64]>::try_from(self.signature.as_slice()) else {
            return false;
        };
        self.is_by(v)
            && v.key
                .verify_strict(text.as_bytes(), &Signature::from_bytes(&sig))
                .is_ok()
    }

    /// The base64 of key ID and signature, as on the line.
    pub fn blob_b64(&self) -> String {
        let mut blob = Vec::with_capacity(4 + self.signature.len());
        blob.extend_from_slice(&self.key_id);
        blob.extend_from_slice(&self.signature);
        B64.encode(blob)
    }
}

/// Split a signed note into its text and signature lines, checking the
/// syntax only (<https://c2sp.org/signed-note>): UTF-8 without control
/// characters other than newline, a text ending in a newline, a blank
/// line, then 1 to [`MAX_SIGNATURES`] lines `— NAME BASE64`, each with a
/// valid key name and at least a key ID and one byte of signature. Which
/// lines count is decided by [`open`] (or, for the ledger's own
/// checkpoints, by the verifier, which knows exactly who must sign each).
pub fn parse(note: &str) -> Result<(&str, Vec<SignatureLine>), String> {
    if let Some(c) = note.chars().find(|&c| c.is_ascii_control() && c != '\n') {
        return Err(format!(
            "a signed note holds no control characters but newline (found U+{:04X})",
            c as u32
        ));
    }
    let split = note
        .rfind("\n\n")
        .ok_or("a signed note needs a blank line before its signatures")?;
    let text = &note[..split + 1];
    let sigs = &note[split + 2..];
    if !sigs.ends_with('\n') {
        return Err("signature block must end with a newline".into());
    }
    let mut out = Vec::new();
    for line in sigs[..sigs.len() - 1].split('\n') {
        if out.len() == MAX_SIGNATURES {
            return Err(format!(
                "the note has more than {MAX_SIGNATURES} signature lines"
            ));
        }
        let rest = line
            .strip_prefix(SIG_PREFIX)
            .ok_or_else(|| format!("malformed signature line {line:?}"))?;
        let (name, b64) = rest
            .split_once(' ')
            .ok_or_else(|| format!("malformed signature line {line:?}"))?;
        if !valid_name(name) {
            return Err(format!("invalid key name {name:?} in a signature line"));
        }
        let blob = B64
            .decode(b64)
            .map_err(|_| format!("signature of {name} is not base64"))?;
        if blob.len() < 5 {
            return Err(format!(
                "signature line of {name:?} is too short ({} bytes; a key ID and a signature are at least 5)",
                blob.len()
            ));
        }
        let mut key_id = [0u8; 4];
        key_id.copy_from_slice(&blob[..4]);
        out.push(SignatureLine {
            name: name.to_string(),
            key_id,
            signature: blob[4..].to_vec(),
        });
    }
    if out.is_empty() {
        return Err("the note has no signatures".into());
    }
    Ok((text, out))
}

/// A note opened against known keys (see [`open`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Opened<'a> {
    /// The signed text.
    pub text: &'a str,
    /// The known keys (indices into the `known` slice given) that signed it.
    pub signed_by: Vec<usize>,
    /// Signature lines by keys not known, ignored (witness cosignatures,
    /// other logs' keys).
    pub ignored: usize,
}

/// Open a signed note as <https://c2sp.org/signed-note> says: a line whose
/// name and key ID match no key of `known` is ignored (even when it shares
/// the name or the ID, not both, with a known key); every line by a known
/// key must verify, else the whole note is refused; and at least one must.
pub fn open<'a>(note: &'a str, known: &[NoteVerifier]) -> Result<Opened<'a>, String> {
    let (text, sigs) = parse(note)?;
    let mut signed_by = Vec::new();
    let mut ignored = 0;
    for sig in &sigs {
        match known.iter().position(|k| sig.is_by(k)) {
            None => ignored += 1,
            Some(i) if sig.verifies(text, &known[i]) => {
                if !signed_by.contains(&i) {
                    signed_by.push(i);
                }
            }
            Some(i) => {
                return Err(format!(
                    "the signature line of key {} ({}) does not verify: the note was altered or the line forged, so none of it is trusted",
                    known[i].name,
                    hex::encode(known[i].id())
                ))
            }
        }
    }
    if signed_by.is_empty() {
        return Err(format!(
            "the note carries no signature by {} ({} line(s) by other keys ignored)",
            match known {
                [k] => format!("key {} ({})", k.name, hex::encode(k.id())),
                ks => format!(
                    "any of the keys {}",
                    ks.iter()
                        .map(|k| format!("{} ({})", k.name, hex::encode(k.id())))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            },
            ignored
        ));
    }
    Ok(Opened {
        text,
        signed_by,
        ignored,
    })
}

/// An ASCII decimal with no sign and no leading zeroes (unless it is `0`),
/// as tlog-checkpoint writes tree sizes and tlog-proof indices.
pub fn decimal(s: &str) -> Option<u64> {
    let ok =
        !s.is_empty() && s.bytes().all(|c| c.is_ascii_digit()) && (s == "0" || !s.starts_with('0'));
    if ok {
        s.parse().ok()
    } else {
        None
    }
}

/// A checkpoint body: origin, tree size and root hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    pub origin: String,
    pub size: u64,
    pub root: Hash,
}

impl Checkpoint {
    /// The note text `ORIGIN\nSIZE\nBASE64(ROOT)\n`.
    pub fn body(&self) -> String {
        format!(
            "{}\n{}\n{}\n",
            self.origin,
            self.size,
            B64.encode(self.root)
        )
    }

    /// Parse a checkpoint note text (no extension lines are used here).
    pub fn parse(text: &str) -> Result<Checkpoint, String> {
        let lines: Vec<&str> = text
            .strip_suffix('\n')
            .unwrap_or(text)
            .split('\n')
            .collect();
        if lines.len() != 3 {
            return Err(format!(
                "a checkpoint has 3 lines (origin, size, root), found {}",
                lines.len()
            ));
        }
        let size = decimal(lines[1]).ok_or_else(|| format!("invalid tree size {:?}", lines[1]))?;
        let root = B64
            .decode(lines[2])
            .ok()
            .and_then(|r| <[u8; 32]>::try_from(r.as_slice()).ok())
            .ok_or_else(|| format!("invalid root hash {:?}", lines[2]))?;
        if lines[0].is_empty() {
            return Err("empty origin".into());
        }
        Ok(Checkpoint {
            origin: lines[0].to_string(),
            size,
            root,
        })
    }
}
