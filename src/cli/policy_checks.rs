//! The supervisor's record of policy texts whose embedded examples and tests
//! passed (see [`crate::policy::ExampleChecks`]), so that a run of a policy
//! already checked by this build skips that part of loading.
//!
//! One file per policy text, `<keys>/policy-checks/<id>`, `id` being
//! [`crate::policy::examples_id`] of the text in hex. It holds one line:
//! the number of examples checked and a tag, `HMAC-SHA-256(k, "lexecon-
//! policy-checked-v1\0" || build || id || count)`, where `k` is derived from
//! the signing key (`SHA-256("lexecon-policy-checks-key-v1\0" || secret
//! key)`) and `build` names this Lexecon exactly: its version, commit and
//! build profile, and the device, inode, size and modification time of its
//! executable. The key directory is off limits to the supervised tree; a
//! file that is missing, unreadable, malformed or carries another tag (a
//! different build, key, text or count) is ignored and the check runs
//! again. Writing is best effort.

use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;

use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use crate::ledger::keys::HostKey;

/// [`crate::policy::ExampleChecks`] kept in a key directory.
pub struct KeyDirChecks {
    dir: PathBuf,
    key: Zeroizing<[u8; 32]>,
    build: Vec<u8>,
}

impl KeyDirChecks {
    /// The record in `keys_dir`, authenticated with a key derived from `key`.
    pub fn new(keys_dir: &std::path::Path, key: &HostKey) -> KeyDirChecks {
        let mut h = Sha256::new();
        h.update(b"lexecon-policy-checks-key-v1\0");
        h.update(Zeroizing::new(key.signing_key().to_bytes()).as_slice());
        let mut build = Vec::new();
        for part in [crate::ledger::VERSION, env!("LEXECON_BUILD")] {
            build.extend_from_slice(&(part.len() as u64).to_be_bytes());
            build.extend_from_slice(part.as_bytes());
        }
        // The executable itself: a rebuilt binary (with changes not yet
        // committed) is another build.
        match std::fs::metadata("/proc/self/exe") {
            Ok(m) => {
                for n in [m.dev(), m.ino(), m.size()] {
                    build.extend_from_slice(&n.to_be_bytes());
                }
                build.extend_from_slice(&m.mtime().to_be_bytes());
                build.extend_from_slice(&m.mtime_nsec().to_be_bytes());
            }
            // Unknown: nothing recorded can match (a fresh random build id).
            Err(_) => {
                let mut r = [0u8; 32];
                rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut r);
                build.extend_from_slice(&r);
            }
        }
        KeyDirChecks {
            dir: keys_dir.join("policy-checks"),
            key: Zeroizing::new(h.finalize().into()),
            build,
        }
    }

    fn tag(&self, id: &[u8; 32], examples: usize) -> [u8; 32] {
        let mut msg = Vec::with_capacity(64 + self.build.len());
        msg.extend_from_slice(b"lexecon-policy-checked-v1\0");
        msg.extend_from_slice(&self.build);
        msg.extend_from_slice(id);
        msg.extend_from_slice(&(examples as u64).to_be_bytes());
        hmac_sha256(&self.key, &msg)
    }

    fn path(&self, id: &[u8; 32]) -> PathBuf {
        self.dir.join(hex::encode(id))
    }
}

impl crate::policy::ExampleChecks for KeyDirChecks {
    fn passed(&self, id: &[u8; 32]) -> Option<usize> {
        let text = std::fs::read_to_string(self.path(id)).ok()?;
        let (count, tag) = text.trim_end_matches('\n').split_once(' ')?;
        let count: usize = count.parse().ok()?;
        let mut given = [0u8; 32];
        hex::decode_to_slice(tag, &mut given).ok()?;
        let want = self.tag(id, count);
        // Constant time: the tag is a secret until it is written.
        let diff = want.iter().zip(&given).fold(0u8, |d, (a, b)| d | (a ^ b));
        (diff == 0).then_some(count)
    }

    fn record(&self, id: &[u8; 32], examples: usize) {
        use std::os::unix::fs::DirBuilderExt;
        let _ = std::fs::DirBuilder::new().mode(0o700).create(&self.dir);
        let line = format!("{examples} {}\n", hex::encode(self.tag(id, examples)));
        let tmp = self
            .dir
            .join(format!(".{}.{}", hex::encode(id), std::process::id()));
        // Best effort: a record not written only means the check runs again.
        let _ = crate::os::write_file_atomically(&self.path(id), &tmp, 0o600, line.as_bytes());
    }
}

/// HMAC-SHA-256 (RFC 2104) with a 32-byte key.
pub(super) fn hmac_sha256(key: &[u8; 32], msg: &[u8]) -> [u8; 32] {
    let mut k = [0u8; 64];
    k[..32].copy_from_slice(key);
    let pad = |b: u8| -> [u8; 64] { k.map(|x| x ^ b) };
    let inner = Sha256::new()
        .chain_update(pad(0x36))
        .chain_update(msg)
        .finalize();
    Sha256::new()
        .chain_update(pad(0x5c))
        .chain_update(inner)
        .finalize()
        .into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::ExampleChecks;

    #[test]
    fn hmac_is_rfc_4231() {
        // Test case 1: a 20-byte key, which HMAC pads with zeros as a
        // 32-byte key with 12 zero bytes is padded.
        let mut key = [0u8; 32];
        key[..20].fill(0x0b);
        assert_eq!(
            hex::encode(hmac_sha256(&key, b"Hi There")),
            "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7"
        );
        // Test case 2: key "Jefe".
        let mut key = [0u8; 32];
        key[..4].copy_from_slice(b"Jefe");
        assert_eq!(
            hex::encode(hmac_sha256(&key, b"what do ya want for nothing?")),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn a_record_holds_only_for_its_text_count_key_and_build() {
        let dir = tempfile::tempdir().unwrap();
        let key = HostKey::generate();
        let checks = KeyDirChecks::new(dir.path(), &key);
        let id = crate::policy::examples_id("version: 1\nrules: []\n");
        let other = crate::policy::examples_id("version: 1\nrules: []\n#");
        assert_eq!(checks.passed(&id), None);
        checks.record(&id, 7);
        assert_eq!(checks.passed(&id), Some(7));
        assert_eq!(checks.passed(&other), None);
        // Another key (or anyone without it) cannot vouch for a text.
        let stranger = KeyDirChecks::new(dir.path(), &HostKey::generate());
        assert_eq!(stranger.passed(&id), None);
        // Another build.
        let mut rebuilt = KeyDirChecks::new(dir.path(), &key);
        rebuilt.build.push(1);
        assert_eq!(rebuilt.passed(&id), None);
        // A changed count or tag is refused.
        let path = checks.path(&id);
        let line = std::fs::read_to_string(&path).unwrap();
        std::fs::write(&path, line.replacen('7', "8", 1)).unwrap();
        assert_eq!(checks.passed(&id), None);
        std::fs::write(&path, "7 00\n").unwrap();
        assert_eq!(checks.passed(&id), None);
        // A copied record names its own text only.
        checks.record(&id, 7);
        std::fs::copy(&path, checks.path(&other)).unwrap();
        assert_eq!(checks.passed(&other), None);
    }
}
