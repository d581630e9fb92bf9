//! `rosh cpi serve NAME [--config FILE]`: one of rosh's own CPIs behind the BOSH CPI protocol.
//!
//! Reads one request (`{"method", "arguments", "context", "api_version"}`) on stdin, answers
//! `{"result", "error", "log"}` on stdout and exits 0 — also when the answer is an error, as
//! BOSH CPI executables do; the exit code is non-zero only when rosh could not answer at all
//! (bad config). So anything that drives a BOSH CPI executable can drive rosh's. Without
//! `--config`, NAME is `local`, the local CPI of `$ROSH_STATE_DIR`; with a CPI config file, NAME
//! picks one of its `cpis` by name.

use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::Subcommand;

use crate::converge::cpis::{self, CpiEnv};
use crate::manifest::model::cpi_config::{CpiConfig, DEFAULT_CPI};
use crate::manifest::yaml;
use crate::state::State;

#[derive(Debug, clap::Args)]
pub struct CpiArgs {
    #[command(subcommand)]
    pub command: CpiCommand,
}

#[derive(Debug, Subcommand)]
pub enum CpiCommand {
    /// Answer one BOSH CPI request from stdin on stdout.
    Serve {
        /// The CPI: `local`, or a name from `--config`.
        name: String,
        /// A CPI config (`cpis:` list, as `rosh update-cpi-config` takes).
        #[arg(long)]
        config: Option<PathBuf>,
    },
}

pub fn run(args: CpiArgs) -> anyhow::Result<ExitCode> {
    match args.command {
        CpiCommand::Serve { name, config } => serve(&name, config),
    }
}

fn serve(name: &str, config: Option<PathBuf>) -> anyhow::Result<ExitCode> {
    let cpi_config = match &config {
        None => CpiConfig::default_local(),
        Some(path) => {
            let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
            let display = path.display().to_string();
            CpiConfig::from_value(yaml::parse(&text, &display)?, &display)?
        }
    };
    let Some(def) = cpi_config.get(name) else {
        let known: Vec<&str> = cpi_config.cpis.iter().map(|c| c.name.as_str()).collect();
        match config {
            None => bail!("no CPI named `{name}`: without --config the only one is `{DEFAULT_CPI}`"),
            Some(path) => bail!("{}: no CPI named `{name}` (it has: {})", path.display(), known.join(", ")),
        }
    };
    let state_dir = State::default_dir()?;
    let cpi = cpis::open(def, &CpiEnv::new(&state_dir)?)?;
    let mut input = Vec::new();
    std::io::stdin().read_to_end(&mut input).context("reading the request from stdin")?;
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let answer = runtime.block_on(rosh_cpi::protocol::serve(cpi.as_ref(), &input));
    let mut out = std::io::stdout().lock();
    out.write_all(&answer)?;
    out.write_all(b"\n")?;
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}
