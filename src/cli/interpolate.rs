//! (placeholder, filled in by its owner: `rosh interpolate` and the shared interpolate flags)

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use crate::manifest::yaml::Value;

/// The flags every command that reads a manifest shares with `bosh interpolate`.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct VarFlags {
    /// Load manifest operations from a YAML file (repeatable, applied in order).
    #[arg(short = 'o', long = "ops-file", value_name = "PATH")]
    pub ops_files: Vec<PathBuf>,
    /// Set variable: NAME=VALUE (VALUE parsed as YAML).
    #[arg(short = 'v', long = "var", value_name = "NAME=VALUE")]
    pub vars: Vec<String>,
    /// Set variable to the contents of a file: NAME=PATH.
    #[arg(long = "var-file", value_name = "NAME=PATH")]
    pub var_files: Vec<String>,
    /// Load variables from a YAML file (repeatable; later files win).
    #[arg(short = 'l', long = "vars-file", value_name = "PATH")]
    pub vars_files: Vec<PathBuf>,
    /// Load variables from environment variables named PREFIX_name.
    #[arg(long = "vars-env", value_name = "PREFIX")]
    pub vars_env: Vec<String>,
    /// Load variables from a YAML file and save generated variables into it.
    #[arg(long = "vars-store", value_name = "PATH")]
    pub vars_store: Option<PathBuf>,
    /// Fail when a referenced variable has no value.
    #[arg(long = "var-errs")]
    pub var_errs: bool,
    /// Fail when a provided variable is not used.
    #[arg(long = "var-errs-unused")]
    pub var_errs_unused: bool,
}

#[derive(Debug, clap::Args)]
pub struct InterpolateArgs {}

/// Reads `path`, applies the ops files and interpolates the variables named in `flags`,
/// exactly as `rosh interpolate` does, and returns the resulting document.
pub fn render_file(_path: &Path, _flags: &VarFlags) -> anyhow::Result<Value> {
    anyhow::bail!("not built yet")
}

pub fn run(_args: InterpolateArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("not built yet")
}
