//! (placeholder, filled in by its owner)

use std::process::ExitCode;

#[derive(Debug, clap::Args)]
pub struct MigrateArgs {}

pub fn run(_args: MigrateArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("not built yet")
}
