//! `policy check`, `policy explain`.

use std::process::ExitCode;

use anyhow::bail;
use clap::Args;

#[derive(Args, Debug)]
pub struct PolicyArgs {}

pub fn run(_args: PolicyArgs) -> anyhow::Result<ExitCode> {
    bail!("policy: not implemented")
}
