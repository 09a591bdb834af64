//! `init-keys`, `verify`, `prove`, `verify-proof`, `ledger recover`.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::bail;
use clap::{Args, Subcommand};

#[derive(Args, Debug)]
pub struct InitKeysArgs {
    /// Directory for the key pair.
    #[arg(long, default_value = ".lexecon")]
    pub dir: PathBuf,
    /// Overwrite an existing key pair.
    #[arg(long)]
    pub force: bool,
}

#[derive(Args, Debug)]
pub struct VerifyArgs {
    /// The ledger file.
    pub ledger: PathBuf,
    /// Public key file.
    #[arg(long)]
    pub pubkey: Option<PathBuf>,
    /// Print the result as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct ProveArgs {
    pub ledger: PathBuf,
    pub seq: u64,
}

#[derive(Args, Debug)]
pub struct VerifyProofArgs {}

#[derive(Args, Debug)]
pub struct LedgerArgs {
    #[command(subcommand)]
    pub command: LedgerCommand,
}

#[derive(Subcommand, Debug)]
pub enum LedgerCommand {
    /// Seal a ledger whose last line is torn so that appending can continue.
    Recover { ledger: PathBuf },
}

pub fn init_keys(_args: InitKeysArgs) -> anyhow::Result<ExitCode> {
    bail!("init-keys: not implemented")
}

pub fn verify(_args: VerifyArgs) -> anyhow::Result<ExitCode> {
    bail!("verify: not implemented")
}

pub fn prove(_args: ProveArgs) -> anyhow::Result<ExitCode> {
    bail!("prove: not implemented")
}

pub fn verify_proof(_args: VerifyProofArgs) -> anyhow::Result<ExitCode> {
    bail!("verify-proof: not implemented")
}

pub fn ledger(_args: LedgerArgs) -> anyhow::Result<ExitCode> {
    bail!("ledger: not implemented")
}
