//! `rosh agent …`: the VM side, run on every VM (placeholder until the agent lands).

use std::process::ExitCode;

#[derive(Debug, clap::Args)]
pub struct AgentArgs {
    /// The verb and its arguments.
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub rest: Vec<String>,
}

pub fn run(_args: AgentArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("rosh agent: not built yet")
}
