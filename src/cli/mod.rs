//! The command line: clap definitions, dispatch, and how outcomes reach the operator.
//!
//! Each command lives in its own file with its `Args` struct and a `run` function. Commands read
//! files and environment, call the pure library code, print results on stdout and errors on
//! stderr, and return the exit code: 0 success, 1 error (`validate` also exits 1 when it finds
//! problems).

use std::process::ExitCode;

use clap::{Parser, Subcommand};

pub mod create_release;
pub mod create_stemcell;
pub mod interpolate;
pub mod migrate;
pub mod validate;

#[derive(Debug, Parser)]
#[command(name = "rosh", version, about = "A BOSH-like deployment orchestrator", propagate_version = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Interpolate variables and apply ops files to a YAML file, like `bosh interpolate`.
    #[command(alias = "int")]
    Interpolate(interpolate::InterpolateArgs),
    /// Check a deployment manifest against a cloud config (and runtime configs): every
    /// vm_type, vm_extension, disk_type, network, az, release and stemcell it names must exist.
    Validate(validate::ValidateArgs),
    /// Convert a v1 manifest (jobs/resource_pools/disk_pools) into a v2 manifest and a cloud config.
    MigrateManifest(migrate::MigrateArgs),
    /// Build a release from a release source directory, like `bosh create-release`.
    #[command(disable_version_flag = true)]
    CreateRelease(create_release::CreateReleaseArgs),
    /// Build the local CPI's stemcell for this host (`--local`).
    CreateStemcell(create_stemcell::CreateStemcellArgs),
}

/// Runs the CLI with the process arguments and returns the exit code.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Interpolate(args) => interpolate::run(args),
        Command::Validate(args) => validate::run(args),
        Command::MigrateManifest(args) => migrate::run(args),
        Command::CreateRelease(args) => create_release::run(args),
        Command::CreateStemcell(args) => create_stemcell::run(args),
    };
    match result {
        Ok(code) => code,
        Err(err) => {
            eprintln!("Error: {err:#}");
            ExitCode::from(1)
        }
    }
}
