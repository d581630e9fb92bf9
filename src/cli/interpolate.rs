//! (placeholder, filled in by its owner)

use std::process::ExitCode;

#[derive(Debug, clap::Args)]
pub struct InterpolateArgs {}

pub fn run(_args: InterpolateArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("not built yet")
}
