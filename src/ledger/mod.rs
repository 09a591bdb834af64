//! The signed, hash-chained ledger (see `docs/ledger.md`).
//!
//! Records are JSONL, one RFC 8785 canonical record per line ([`jcs`],
//! [`record`]); each line's hash `SHA-256(0x00 || line)` is both the next
//! record's `prev` link and its RFC 6962 Merkle leaf ([`merkle`]). Each run
//! is one Merkle tree; C2SP signed-note checkpoints over it ([`note`]) are
//! signed by ratcheting per-epoch keys, the first and final ones also by the
//! long-term host key ([`keys`]). [`writer`] appends, [`verify`] checks,
//! [`proof`] makes and checks inclusion proofs, [`anchor`] checks a ledger
//! against checkpoints kept outside it.
//!
//! Knows nothing of seccomp or policies: decisions are data
//! ([`crate::action`]).

/// The version of the build, with its commit and profile: `0.1.0 (commit
/// 0123456789ab, release build)`. Recorded in run headers.
pub const VERSION: &str = concat!(env!("CARGO_PKG_VERSION"), " (", env!("LEXECON_BUILD"), ")");

pub mod anchor;
pub mod decode;
pub mod error;
pub mod jcs;
pub mod keys;
pub mod merkle;
pub mod note;
pub mod proof;
pub mod read;
pub mod record;
pub mod verify;
pub mod writer;

use std::collections::BTreeMap;

pub use anchor::Anchor;
pub use error::LedgerError;
pub use keys::{HostKey, PublicKey};
pub use record::{
    Counts, DecisionEntry, DnsEntry, EscalationEntry, FileIdentity, IntentEntry, LimitEntry,
    Outcome, PolicyLayer, RefusalEntry, ResolutionEntry, RunEnd, RunHeader, RunInfo, Stage,
};
pub use verify::{verify_file, verify_file_anchored, verify_file_with, Report, Status};

/// The bytes an approver signs to answer one escalation: the hash of the
/// escalation record (which names the action, rule, reason, request id and
/// deadline, and through the chain the run id and policy hash), the answer
/// and its scope. A receipt is valid for that record only.
pub fn receipt_message(escalation: &merkle::Hash, allow: bool, scope: &str) -> Vec<u8> {
    format!(
        "lexecon approval receipt v1\n{}\n{}\n{scope}\n",
        hex::encode(escalation),
        if allow { "allow" } else { "deny" }
    )
    .into_bytes()
}
pub use writer::{
    recover, LedgerWriter, LockMode, Recovered, SyncPolicy, WriterOptions, WriterStats,
};

/// Environment variables that identify a CI job, recorded in run headers.
pub const CI_VARIABLES: &[&str] = &[
    "GITHUB_RUN_ID",
    "GITHUB_RUN_ATTEMPT",
    "GITHUB_SHA",
    "GITHUB_REPOSITORY",
    "GITHUB_WORKFLOW",
    "GITHUB_JOB",
    "GITHUB_REF",
    "GITHUB_ACTOR",
    "CI_JOB_ID",
    "CI_PIPELINE_ID",
    "CI_PROJECT_PATH",
    "CI_COMMIT_SHA",
    "BUILD_ID",
    "BUILD_NUMBER",
    "BUILDKITE_BUILD_ID",
    "CIRCLE_WORKFLOW_ID",
];

/// The CI identifiers among [`CI_VARIABLES`] that are set (and UTF-8).
pub fn ci_identifiers_from_env() -> BTreeMap<String, String> {
    CI_VARIABLES
        .iter()
        .filter_map(|k| {
            std::env::var(k)
                .ok()
                .filter(|v| !v.is_empty())
                .map(|v| (k.to_string(), v))
        })
        .collect()
}
