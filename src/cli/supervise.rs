//! `supervise` (and the `lexecon-supervise` binary), `demo`.

use std::ffi::OsString;
use std::process::ExitCode;

use anyhow::bail;
use clap::Args;

#[derive(Args, Debug)]
pub struct SuperviseArgs {
    /// The command to run, after `--`.
    #[arg(last = true, required = true)]
    pub command: Vec<OsString>,
}

#[derive(Args, Debug)]
pub struct DemoArgs {}

pub fn run(_args: SuperviseArgs) -> anyhow::Result<ExitCode> {
    bail!("supervise: not implemented")
}

pub fn demo(_args: DemoArgs) -> anyhow::Result<ExitCode> {
    bail!("demo: not implemented")
}
