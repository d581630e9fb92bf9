//! `rosh create-stemcell --local`: builds the local CPI's stemcell for this host through
//! [`crate::release::stemcell_create`] and prints its manifest's identity.
//!
//! The definition is `--definition FILE` if given, else the compiled-in copy of
//! `stemcells/local/stemcell.yml`. Tools the definition lists but the host lacks are warned
//! about on stderr; the stemcell is still built (they are recorded as missing).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, bail};
use serde_json::json;

use crate::release::stemcell_create::{self, Host, LocalDefinition};

#[derive(Debug, clap::Args)]
pub struct CreateStemcellArgs {
    /// Build the local stemcell (the only kind rosh builds; VMs of the local CPI are processes
    /// on this host).
    #[arg(long)]
    pub local: bool,
    /// Where to write the stemcell tarball (default: ./<name>-<version>.tgz).
    #[arg(long, value_name = "PATH")]
    pub tarball: Option<PathBuf>,
    /// Stemcell definition (default: rosh's copy of stemcells/local/stemcell.yml).
    #[arg(long, value_name = "FILE")]
    pub definition: Option<PathBuf>,
    /// Print the result as JSON.
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: CreateStemcellArgs) -> anyhow::Result<ExitCode> {
    if !args.local {
        bail!("only local stemcells can be created: pass --local");
    }
    let (text, source_name) = match &args.definition {
        Some(path) => {
            let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
            (text, path.display().to_string())
        }
        None => (stemcell_create::DEFAULT_DEFINITION.to_string(), "stemcells/local/stemcell.yml".to_string()),
    };
    let definition = LocalDefinition::parse(&text, &source_name)?;
    let host = Host::detect(&definition.tools)?;
    for tool in host.missing_tools() {
        eprintln!("warning: `{tool}` is not on PATH; the stemcell records it as missing");
    }
    let cwd = std::env::current_dir().context("reading the current directory")?;
    let created = stemcell_create::create_local_stemcell(&definition, host, args.tarball.as_deref(), &cwd)
        .context("creating the local stemcell")?;

    let m = &created.manifest;
    if args.json {
        let value = json!({
            "name": m.name,
            "version": m.version,
            "operating_system": m.operating_system,
            "api_version": m.api_version,
            "sha1": m.sha1,
            "stemcell_formats": m.stemcell_formats,
            "tarball": created.tarball_path,
            "missing_tools": created.host.missing_tools(),
        });
        println!("{}", serde_json::to_string_pretty(&value)?);
    } else {
        println!("Name              {}", m.name);
        println!("Version           {}", m.version);
        println!("Operating System  {}", m.operating_system);
        println!("Image Digest      {}", m.sha1.as_deref().unwrap_or(""));
        println!("Archive           {}", created.tarball_path.display());
    }
    Ok(ExitCode::SUCCESS)
}
