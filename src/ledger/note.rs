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

/// One signature line of a note.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignatureLine {
    pub name: String,
    pub key_id: [u8; 4],
    pub signature: [u8; 64],
}

impl SignatureLine {
    /// Whether this line is a valid signature of `text` by `v`.
    pub fn verifies(&self, text: &str, v: &NoteVerifier) -> bool {
        self.name == v.name
            && self.key_id == v.id()
            && v.key
                .verify_strict(text.as_bytes(), &Signature::from_bytes(&self.signature))
                .is_ok()
    }
}

/// Split a signed note into its text and signature lines.
pub fn parse(note: &str) -> Result<(&str, Vec<SignatureLine>), String> {
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
        let rest = line
            .strip_prefix(SIG_PREFIX)
            .ok_or_else(|| format!("malformed signature line {line:?}"))?;
        let (name, b64) = rest
            .split_once(' ')
            .ok_or_else(|| format!("malformed signature line {line:?}"))?;
        let blob = B64
            .decode(b64)
            .map_err(|_| format!("signature of {name} is not base64"))?;
        if !valid_name(name) || blob.len() != 68 {
            return Err(format!("malformed Ed25519 signature line for {name:?}"));
        }
        let mut key_id = [0u8; 4];
        key_id.copy_from_slice(&blob[..4]);
        let mut signature = [0u8; 64];
        signature.copy_from_slice(&blob[4..]);
        out.push(SignatureLine {
            name: name.to_string(),
            key_id,
            signature,
        });
    }
    if out.is_empty() {
        return Err("the note has no signatures".into());
    }
    Ok((text, out))
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
        let size_ok = !lines[1].is_empty()
            && lines[1].bytes().all(|c| c.is_ascii_digit())
            && (lines[1] == "0" || !lines[1].starts_with('0'));
        let size: u64 = if size_ok { lines[1].parse().ok() } else { None }
            .ok_or_else(|| format!("invalid tree size {:?}", lines[1]))?;
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
