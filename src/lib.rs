//! Lexecon: execution control for AI agents on Linux.
//!
//! A supervised process tree runs under a seccomp user-notify filter; every
//! program execution and file open is paused, judged by a deterministic
//! policy, written to a signed, hash-chained ledger, and only then allowed or
//! refused.
//!
//! Modules, and the one idea each owns:
//! - [`action`]: the shared vocabulary (what was asked, what was decided).
//! - [`policy`]: YAML policy → compiled matcher; pure and deterministic.
//! - [`ledger`]: record format, canonical encoding, hash chain, checkpoints,
//!   signing, appending and verification.
//! - [`supervisor`]: the seccomp filter, the notification loop, reading the
//!   tracee, resolving paths, answering, exec confirmation.
//! - [`session`]: one supervised run; the only place that joins the three and
//!   the place that fails closed.
//! - [`approval`]: the socket through which a human answers held
//!   escalations, and who may use it.
//! - [`cli`]: argument parsing, output and exit codes.
//! - [`diag`]: diagnostics on the supervisor's stderr (`LEXECON_LOG`, `-v`).
//! - [`timing`]: start-up timing marks, logged at debug level (`LEXECON_TIMING=1`).
//! - [`os`]: safe wrappers over the process-level kernel calls the code
//!   outside the supervisor needs.
//!
//! `unsafe` code is refused everywhere but in the modules that wrap the
//! kernel: [`os`] and, in [`supervisor`], `sys`, `netsys`, `creds`,
//! `fileops`, `pathops`, `launch` and `codemap`. Each block there says
//! why it is sound (`// SAFETY:`).

#![deny(unsafe_code)]

pub mod action;
pub mod approval;
pub mod cli;
pub mod diag;
pub mod escape;
pub mod gate;
pub mod ledger;
#[allow(unsafe_code)]
pub mod os;
pub mod policy;
pub mod replay;
pub mod session;
pub mod suggest;
pub mod supervisor;
pub mod timing;
