//! The supervisor's hashes of program and library files kept across runs
//! ([`crate::supervisor::lasting`] decides which files may keep one), so
//! that a short command does not hash its shell and C library again each
//! time.
//!
//! One file, `<keys>/hash-cache`, binary:
//!
//! ```text
//! "lexecon-hash-cache-v1\n"  the boot id (16 bytes)  count (u32, big-endian)
//! count × (file version (64 bytes, FileVersion::to_bytes)  SHA-256 (32 bytes))
//! tag (32 bytes)
//! ```
//!
//! The tag is `HMAC-SHA-256(k, everything before it)`, `k` being derived
//! from the signing key (`SHA-256("lexecon-hash-cache-key-v1\0" || secret
//! key)`). The key directory is off limits to the supervised tree; a file
//! that is missing, unreadable, too long, malformed, from another boot
//! (device numbers are given anew at each boot) or carrying another tag is
//! ignored, and every file is hashed again. At most [`MAX_ENTRIES`] are
//! kept, the most recently hashed first. Writing is best effort, at the end
//! of a run that hashed a file not in it.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use crate::ledger::keys::HostKey;
use crate::supervisor::lasting::FileVersion;

/// Most entries kept: enough for the programs and libraries of a varied
/// session (a Python with its extension modules maps a few hundred), small
/// enough that loading stays under a tenth of a millisecond (the tag is
/// checked over the whole file).
pub const MAX_ENTRIES: usize = 1024;

const MAGIC: &[u8] = b"lexecon-hash-cache-v1\n";
const ENTRY: usize = FileVersion::LEN + 32;
const HEADER: usize = MAGIC.len() + 16 + 4;

/// The hash cache file of a key directory.
pub struct HashCacheFile {
    path: PathBuf,
    key: Zeroizing<[u8; 32]>,
    boot: [u8; 16],
    entries: Vec<(FileVersion, [u8; 32])>,
}

impl HashCacheFile {
    /// The cache in `keys_dir`, authenticated with a key derived from
    /// `key`, and what it holds (nothing when it is not valid). `None` when
    /// this boot cannot be told (then nothing is read or written).
    pub fn load(keys_dir: &Path, key: &HostKey) -> Option<HashCacheFile> {
        let mut h = Sha256::new();
        h.update(b"lexecon-hash-cache-key-v1\0");
        h.update(Zeroizing::new(key.signing_key().to_bytes()).as_slice());
        let mut f = HashCacheFile {
            path: keys_dir.join("hash-cache"),
            key: Zeroizing::new(h.finalize().into()),
            boot: boot_id()?,
            entries: Vec::new(),
        };
        if let Ok(bytes) = read_capped(&f.path, HEADER + MAX_ENTRIES * ENTRY + 32) {
            f.entries = f.parse(&bytes).unwrap_or_default();
        }
        Some(f)
    }

    /// The hashes it holds.
    pub fn entries(&self) -> &[(FileVersion, [u8; 32])] {
        &self.entries
    }

    /// The entries of a valid file, `None` for any other.
    fn parse(&self, bytes: &[u8]) -> Option<Vec<(FileVersion, [u8; 32])>> {
        let (body, tag) = bytes.split_at_checked(bytes.len().checked_sub(32)?)?;
        let want = super::policy_checks::hmac_sha256(&self.key, body);
        // Constant time: a tag is a secret until it is written.
        let diff = want.iter().zip(tag).fold(0u8, |d, (a, b)| d | (a ^ b));
        if diff != 0 {
            return None;
        }
        let rest = body.strip_prefix(MAGIC)?;
        let (boot, rest) = rest.split_at_checked(16)?;
        if boot != self.boot {
            return None;
        }
        let (count, rest) = rest.split_at_checked(4)?;
        let count = u32::from_be_bytes(count.try_into().ok()?) as usize;
        if count > MAX_ENTRIES || rest.len() != count.checked_mul(ENTRY)? {
            return None;
        }
        let mut out = Vec::with_capacity(count);
        for e in rest.chunks_exact(ENTRY) {
            let (v, h) = e.split_at(FileVersion::LEN);
            out.push((
                FileVersion::from_bytes(v.try_into().ok()?),
                h.try_into().ok()?,
            ));
        }
        Some(out)
    }

    /// The file's bytes for `entries`.
    fn encode(&self, entries: &[(FileVersion, [u8; 32])]) -> Vec<u8> {
        let mut out = Vec::with_capacity(HEADER + entries.len() * ENTRY + 32);
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&self.boot);
        out.extend_from_slice(&(entries.len() as u32).to_be_bytes());
        for (v, h) in entries {
            out.extend_from_slice(&v.to_bytes());
            out.extend_from_slice(h);
        }
        let tag = super::policy_checks::hmac_sha256(&self.key, &out);
        out.extend_from_slice(&tag);
        out
    }

    /// Writes the hashes `added` by a run before the ones it held (an
    /// older version of the same file dropped), at most [`MAX_ENTRIES`].
    /// Nothing is written when nothing was added.
    pub fn save(&self, added: &[(FileVersion, [u8; 32])]) {
        if added.is_empty() {
            return;
        }
        let mut seen = HashSet::new();
        let merged: Vec<(FileVersion, [u8; 32])> = added
            .iter()
            .rev()
            .chain(&self.entries)
            .filter(|(v, _)| seen.insert((v.dev, v.ino, v.fsid)))
            .take(MAX_ENTRIES)
            .copied()
            .collect();
        let tmp = self
            .path
            .with_file_name(format!(".hash-cache.{}", std::process::id()));
        // Best effort: a cache not written only means hashing again.
        let _ = crate::os::write_file_atomically(&self.path, &tmp, 0o600, &self.encode(&merged));
    }
}

/// This boot's id (`/proc/sys/kernel/random/boot_id`, a UUID).
fn boot_id() -> Option<[u8; 16]> {
    let text = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").ok()?;
    let hexdigits: String = text.trim().chars().filter(|c| *c != '-').collect();
    let mut out = [0u8; 16];
    hex::decode_to_slice(hexdigits, &mut out).ok()?;
    Some(out)
}

/// The file at `path` when it is at most `cap` bytes long.
fn read_capped(path: &Path, cap: usize) -> std::io::Result<Vec<u8>> {
    use std::io::Read;
    let f = std::fs::File::open(path)?;
    let mut buf = Vec::new();
    f.take(cap as u64 + 1).read_to_end(&mut buf)?;
    if buf.len() > cap {
        return Err(std::io::Error::other("too long"));
    }
    Ok(buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn version(ino: u64, ctime_ns: i64) -> FileVersion {
        FileVersion {
            dev: 0x801,
            ino,
            size: 1000,
            mtime: (1_700_000_000, 5),
            ctime: (1_700_000_000, ctime_ns),
            fsid: 0x1234,
        }
    }

    #[test]
    fn a_cache_is_read_back_only_with_its_key_and_boot() {
        let dir = tempfile::tempdir().unwrap();
        let key = HostKey::generate();
        let f = HashCacheFile::load(dir.path(), &key).unwrap();
        assert!(f.entries().is_empty());
        // Nothing added: nothing written.
        f.save(&[]);
        assert!(!dir.path().join("hash-cache").exists());
        let a = (version(1, 1), [1u8; 32]);
        let b = (version(2, 1), [2u8; 32]);
        f.save(&[a, b]);
        let again = HashCacheFile::load(dir.path(), &key).unwrap();
        // The newest first.
        assert_eq!(again.entries(), &[b, a]);
        // A newer version of a file replaces the older one.
        let a2 = (version(1, 2), [3u8; 32]);
        again.save(&[a2]);
        let third = HashCacheFile::load(dir.path(), &key).unwrap();
        assert_eq!(third.entries(), &[a2, b]);
        // Another key (anyone without this one): ignored.
        let stranger = HashCacheFile::load(dir.path(), &HostKey::generate()).unwrap();
        assert!(stranger.entries().is_empty());
        // Another boot: ignored.
        let mut other_boot = HashCacheFile::load(dir.path(), &key).unwrap();
        other_boot.boot[0] ^= 1;
        let bytes = std::fs::read(dir.path().join("hash-cache")).unwrap();
        assert_eq!(other_boot.parse(&bytes), None);
        // Any changed byte: ignored.
        for at in [0, MAGIC.len(), HEADER - 1, HEADER + 3, bytes.len() - 1] {
            let mut t = bytes.clone();
            t[at] ^= 0x40;
            std::fs::write(dir.path().join("hash-cache"), &t).unwrap();
            let f = HashCacheFile::load(dir.path(), &key).unwrap();
            assert!(f.entries().is_empty(), "byte {at} changed");
        }
        // Cut short, or a well-tagged body whose count lies: ignored.
        std::fs::write(dir.path().join("hash-cache"), &bytes[..bytes.len() - 1]).unwrap();
        assert!(HashCacheFile::load(dir.path(), &key)
            .unwrap()
            .entries()
            .is_empty());
        let mut body = bytes[..bytes.len() - 32 - ENTRY].to_vec();
        let tag = super::super::policy_checks::hmac_sha256(&third.key, &body);
        body.extend_from_slice(&tag);
        assert_eq!(third.parse(&body), None);
    }

    #[test]
    fn a_cache_is_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let key = HostKey::generate();
        let f = HashCacheFile::load(dir.path(), &key).unwrap();
        let many: Vec<_> = (0..MAX_ENTRIES as u64 + 10)
            .map(|i| (version(i, 0), [0u8; 32]))
            .collect();
        f.save(&many);
        let back = HashCacheFile::load(dir.path(), &key).unwrap();
        assert_eq!(back.entries().len(), MAX_ENTRIES);
        // The last added are the newest, kept first.
        assert_eq!(back.entries()[0].0.ino, MAX_ENTRIES as u64 + 9);
    }
}
