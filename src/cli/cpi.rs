//! `rosh cpi …`: rosh's own CPIs behind the BOSH CPI protocol (placeholder).

use std::process::ExitCode;

#[derive(Debug, clap::Args)]
pub struct CpiArgs {
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub rest: Vec<String>,
}

pub fn run(_args: CpiArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("rosh cpi: not built yet")
}
