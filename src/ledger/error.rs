//! Errors of the ledger module. Each says what failed, where, and what to do.

use std::io;
use std::path::PathBuf;

/// Everything that can go wrong while creating keys, writing, recovering or
/// reading a ledger. (A ledger that reads fine but fails verification is not
/// an error: it is a [`super::verify::Report`] with status `Invalid`.)
#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    /// A system call on a file failed.
    #[error("cannot {op} {}: {source}", path.display())]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// There is no usable signing key.
    #[error("no ledger signing key in {}: {reason}; run `lexecon init-keys --dir {}` to create one (or pass --keys DIR)", dir.display(), dir.display())]
    MissingKey { dir: PathBuf, reason: String },
    /// A key file exists but does not hold a valid key.
    #[error("key file {} is not a valid key: {reason}", path.display())]
    BadKey { path: PathBuf, reason: String },
    /// `init-keys` would overwrite a key pair.
    #[error("{} already exists; refusing to overwrite a key pair (pass --force to replace it, which makes ledgers signed by the old key unverifiable with the new one)", path.display())]
    KeyExists { path: PathBuf },
    /// Another writer holds the ledger's lock.
    #[error("ledger {} is in use by another run ({}, which holds the ledger's lock); try again when it has finished (a run without --no-wait waits for it by itself), or use another ledger file", path.display(), holder.as_deref().unwrap_or("its process cannot be told"))]
    Locked {
        path: PathBuf,
        /// `pid N: COMMAND` of the holder, when it can be told.
        holder: Option<String>,
    },
    /// The ledger ends in a partial line.
    #[error("ledger {} ends with a partial record ({len} bytes after the last newline: a write was interrupted); refusing to append; run `lexecon ledger recover {}` to seal what is there", path.display(), path.display())]
    TornTail { path: PathBuf, len: u64 },
    /// The ledger's last run was never sealed.
    #[error("the last run in ledger {} was not sealed (its writer stopped before the end seal; the last record is a {kind}); refusing to append; run `lexecon ledger recover {}` to seal it", path.display(), path.display())]
    Unsealed { path: PathBuf, kind: String },
    /// The ledger's last line cannot be understood.
    #[error("ledger {} is damaged at its last line: {reason}; run `lexecon verify {}` to see what is wrong", path.display(), path.display())]
    Damaged { path: PathBuf, reason: String },
    /// A record could not be encoded.
    #[error("cannot encode a ledger record: {0}")]
    Encode(String),
    /// The writer was used out of order (e.g. a decision before `begin_run`).
    #[error("ledger writer misuse: {0}")]
    Misuse(String),
    /// An earlier write failed; the ledger may end in a partial line.
    #[error("ledger {} is unusable after an earlier failed write; run `lexecon ledger recover {}`", path.display(), path.display())]
    Poisoned { path: PathBuf },
    /// `ledger recover` found nothing to do.
    #[error("nothing to recover: the last run in {} is sealed and there is no partial record", path.display())]
    NothingToRecover { path: PathBuf },
    /// An inclusion proof could not be made or is malformed.
    #[error("{0}")]
    Proof(String),
}

impl LedgerError {
    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Self {
        LedgerError::Io {
            op,
            path: path.into(),
            source,
        }
    }
}
