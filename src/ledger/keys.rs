//! The long-term host key pair made by `lexecon init-keys`.
//!
//! Files in the key directory (created mode 0700):
//! - `ledger.key` (mode 0600): the private key as a C2SP signed-note signer
//!   key, `PRIVATE+KEY+lexecon+KEYID+BASE64(0x01 || SEED)`, one line.
//! - `ledger.pub`: the verifier key `lexecon+KEYID+BASE64(0x01 || PUBKEY)`,
//!   one line. This is what `lexecon verify --pubkey` reads.
//!
//! The fingerprint printed and stored in run headers is the lowercase hex
//! SHA-256 of the 32-byte raw public key.

use std::fs::{self, DirBuilder};
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

use ed25519_dalek::{SigningKey, VerifyingKey};
use rand_core::OsRng;
use sha2::{Digest, Sha256};

use super::error::LedgerError;
use super::note::{self, NoteVerifier};

/// File name of the private key inside the key directory.
pub const PRIVATE_KEY_FILE: &str = "ledger.key";
/// File name of the public key inside the key directory.
pub const PUBLIC_KEY_FILE: &str = "ledger.pub";
/// Key name of host keys in signed notes.
pub const HOST_KEY_NAME: &str = "lexecon";

/// The long-term signing key (zeroized on drop).
pub struct HostKey {
    name: String,
    key: SigningKey,
}

impl std::fmt::Debug for HostKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HostKey")
            .field("name", &self.name)
            .field("fingerprint", &self.public().fingerprint())
            .finish_non_exhaustive()
    }
}

impl HostKey {
    /// A host key from raw parts (tests and benchmarks use fixed keys).
    pub fn from_signing_key(name: &str, key: SigningKey) -> Result<HostKey, LedgerError> {
        if !note::valid_name(name) {
            return Err(LedgerError::Encode(format!("invalid key name {name:?}")));
        }
        Ok(HostKey {
            name: name.to_string(),
            key,
        })
    }

    /// A fresh random host key named [`HOST_KEY_NAME`] (not saved anywhere).
    pub fn generate() -> HostKey {
        HostKey {
            name: HOST_KEY_NAME.to_string(),
            key: SigningKey::generate(&mut OsRng),
        }
    }

    /// The public half.
    pub fn public(&self) -> PublicKey {
        PublicKey(NoteVerifier {
            name: self.name.clone(),
            key: self.key.verifying_key(),
        })
    }

    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    /// The private key.
    pub fn signing_key(&self) -> &SigningKey {
        &self.key
    }
}

/// A named Ed25519 public key (the verifier side of a [`HostKey`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicKey(pub NoteVerifier);

impl PublicKey {
    /// Lowercase hex SHA-256 of the raw 32-byte key.
    pub fn fingerprint(&self) -> String {
        fingerprint(&self.0.key)
    }

    /// The C2SP verifier key string.
    pub fn to_vkey(&self) -> String {
        self.0.to_vkey()
    }

    /// Parse a C2SP verifier key string.
    pub fn parse(vkey: &str) -> Result<PublicKey, String> {
        NoteVerifier::parse(vkey.trim()).map(PublicKey)
    }

    /// The raw key.
    pub fn verifying_key(&self) -> &VerifyingKey {
        &self.0.key
    }
}

/// Lowercase hex SHA-256 of a raw public key.
pub fn fingerprint(key: &VerifyingKey) -> String {
    hex::encode(Sha256::digest(key.as_bytes()))
}

/// The approver's key pair (`init-keys --approver`): it signs approval
/// receipts, never ledgers.
pub const APPROVER_PRIVATE_KEY_FILE: &str = "approver.key";
pub const APPROVER_PUBLIC_KEY_FILE: &str = "approver.pub";

/// Create a key pair in `dir` (created 0700 if missing): the private key
/// mode 0600, the public key 0644. Refuses to overwrite unless `force`.
pub fn generate(dir: &Path, force: bool) -> Result<PublicKey, LedgerError> {
    generate_files(dir, force, PRIVATE_KEY_FILE, PUBLIC_KEY_FILE)
}

/// As [`generate`], for the approver's key pair.
pub fn generate_approver(dir: &Path, force: bool) -> Result<PublicKey, LedgerError> {
    generate_files(
        dir,
        force,
        APPROVER_PRIVATE_KEY_FILE,
        APPROVER_PUBLIC_KEY_FILE,
    )
}

fn generate_files(
    dir: &Path,
    force: bool,
    private: &str,
    public: &str,
) -> Result<PublicKey, LedgerError> {
    let priv_path = dir.join(private);
    let pub_path = dir.join(public);
    if !force {
        for p in [&priv_path, &pub_path] {
            if fs::symlink_metadata(p).is_ok() {
                return Err(LedgerError::KeyExists { path: p.clone() });
            }
        }
    }
    create_private_dir(dir)?;
    let key = HostKey::generate();
    let mut secret = note::signer_string(&key.name, &key.key);
    secret.push('\n');
    write_new(&priv_path, 0o600, secret.as_bytes(), force)?;
    let public = key.public();
    write_new(
        &pub_path,
        0o644,
        format!("{}\n", public.to_vkey()).as_bytes(),
        force,
    )?;
    Ok(public)
}

/// Create `dir` and missing parents with mode 0700.
pub(crate) fn create_private_dir(dir: &Path) -> Result<(), LedgerError> {
    if dir.as_os_str().is_empty() || dir.is_dir() {
        return Ok(());
    }
    DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| LedgerError::io("create directory", dir, e))
}

/// Write `data` to a new file at `path` with `mode`, via a temporary file
/// renamed into place (so a crash leaves either the old or the new file).
fn write_new(path: &Path, mode: u32, data: &[u8], replace: bool) -> Result<(), LedgerError> {
    if !replace && fs::symlink_metadata(path).is_ok() {
        return Err(LedgerError::KeyExists {
            path: path.to_path_buf(),
        });
    }
    crate::os::write_file_atomically(path, &path.with_extension("tmp"), mode, data)
        .map_err(|e| LedgerError::io("write", path, e))
}

/// Load the private key from `dir/ledger.key`.
pub fn load_signing_key(dir: &Path) -> Result<HostKey, LedgerError> {
    load_signing_key_file(dir, &dir.join(PRIVATE_KEY_FILE))
}

/// Load a private key file (`dir` only names it in errors).
pub fn load_signing_key_file(dir: &Path, path: &Path) -> Result<HostKey, LedgerError> {
    let path = path.to_path_buf();
    let text = fs::read_to_string(&path).map_err(|e| LedgerError::MissingKey {
        dir: dir.to_path_buf(),
        reason: format!("cannot read {}: {e}", path.display()),
    })?;
    let text = zeroize::Zeroizing::new(text);
    let line = text.lines().next().unwrap_or("");
    let (name, key) = note::parse_signer(line).map_err(|reason| LedgerError::BadKey {
        path: path.clone(),
        reason,
    })?;
    Ok(HostKey { name, key })
}

/// Load a public key: `path` is a verifier key file, or a key directory
/// holding `ledger.pub`.
pub fn load_public_key(path: &Path) -> Result<PublicKey, LedgerError> {
    let file: PathBuf = if path.is_dir() {
        path.join(PUBLIC_KEY_FILE)
    } else {
        path.to_path_buf()
    };
    let text =
        fs::read_to_string(&file).map_err(|e| LedgerError::io("read public key", &file, e))?;
    PublicKey::parse(text.lines().next().unwrap_or(""))
        .map_err(|reason| LedgerError::BadKey { path: file, reason })
}
