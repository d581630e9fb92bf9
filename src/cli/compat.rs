//! `rosh compat check MANIFEST`, and [`gate`]: the compatibility gate `plan` and `deploy` run
//! before they touch anything.
//!
//! Owns the IO around the pure [`crate::compat::check`]: the compatibility table (the shipped
//! one, then `$ROSH_STATE_DIR/compatibility.yml` when it exists, then each `--compat-table FILE`,
//! merged in that order), the uploaded releases' `requires:` and stemcells' API versions and
//! formats from the state, the compiled packages on record, and every CPI's `info`. Writes
//! nothing: `compat check` reads the manifest with the deployment's stored variables and the
//! `--vars-store` file as read-only sources, so a variable that would be generated is generated
//! in memory and dropped (it cannot change which versions are combined).
//!
//! Exit codes: 0 when there is no error (warnings are printed), 1 on an error — unless
//! `--skip-compat-check`, which lists the errors as bypassed and exits 0.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, anyhow};

use super::deploy::{self, Director};
use super::interpolate::VarFlags;
use crate::compat::{
    self, CompatInput, CompatReport, CompiledInput, GroupInput, ReleaseInput, Requires, StemcellInput, Table,
};
use crate::converge::deploy::CpiSet;
use crate::plan::desired::DesiredDeployment;

/// The operator's table in the state dir, merged over the shipped one when present.
pub const STATE_TABLE: &str = "compatibility.yml";

#[derive(Debug, clap::Args)]
pub struct CompatArgs {
    #[command(subcommand)]
    pub command: CompatCommand,
}

#[derive(Debug, clap::Subcommand)]
pub enum CompatCommand {
    /// Check that a manifest's releases, stemcells and CPIs are known to work together.
    Check(CheckArgs),
}

#[derive(Debug, clap::Args)]
pub struct CheckArgs {
    /// The deployment manifest.
    pub manifest: PathBuf,
    #[command(flatten)]
    pub flags: VarFlags,
    /// Use this cloud config instead of the stored one.
    #[arg(long, value_name = "PATH")]
    pub cloud_config: Option<PathBuf>,
    /// Merge this compatibility table over the shipped one (repeatable; see docs/compat.md).
    #[arg(long = "compat-table", value_name = "PATH")]
    pub compat_tables: Vec<PathBuf>,
    /// Report errors as bypassed and exit 0, as `deploy --skip-compat-check` would proceed.
    #[arg(long)]
    pub skip_compat_check: bool,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
}

/// What the caller of [`gate`] chose.
#[derive(Debug, Clone, Default)]
pub struct GateOptions {
    /// `--skip-compat-check`: errors are reported as bypassed, not as errors.
    pub skip_compat_check: bool,
    /// `--compat-table FILE`s, merged in order over the shipped and the state dir's tables.
    pub tables: Vec<PathBuf>,
}

/// Every CPI's `info`, and which CPI an instance without an AZ CPI uses.
#[derive(Debug, Clone)]
pub struct CpiInfos {
    pub default: String,
    pub infos: BTreeMap<String, rosh_cpi::Info>,
}

/// Asks every CPI of `cpis` for its `info`.
pub async fn cpi_infos(cpis: &CpiSet) -> anyhow::Result<CpiInfos> {
    let mut infos = BTreeMap::new();
    for (name, cpi) in &cpis.cpis {
        let info = cpi.info().await.map_err(|e| anyhow!("CPI `{name}`: info: {e}"))?;
        infos.insert(name.clone(), info);
    }
    Ok(CpiInfos { default: cpis.default.clone(), infos })
}

/// The compatibility table in force: shipped, then `$ROSH_STATE_DIR/compatibility.yml`, then
/// `extra` in order.
pub fn table(state_dir: &Path, extra: &[PathBuf]) -> anyhow::Result<Table> {
    let mut table = Table::shipped();
    let own = state_dir.join(STATE_TABLE);
    let mut files: Vec<&Path> = Vec::new();
    if own.is_file() {
        files.push(&own);
    }
    files.extend(extra.iter().map(PathBuf::as_path));
    for path in files {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading compatibility table {}", path.display()))?;
        table.merge(Table::parse(&text, &path.display().to_string())?);
    }
    Ok(table)
}

/// Runs the compatibility check of `desired` against what the director holds. `plan` and
/// `deploy` call this before anything is touched and stop when the report is not
/// [`CompatReport::ok`] ([`CompatReport::error_message`] says why).
pub fn gate(
    director: &Director,
    desired: &DesiredDeployment,
    cpis: &CpiInfos,
    options: &GateOptions,
) -> anyhow::Result<CompatReport> {
    let table = table(&director.state_dir, &options.tables)?;
    let input = input(director, desired, cpis, &table, options.skip_compat_check)?;
    Ok(compat::check(&input))
}

/// The pure check's input, gathered from the state.
fn input<'t>(
    director: &Director,
    desired: &DesiredDeployment,
    cpis: &CpiInfos,
    table: &'t Table,
    skip_compat_check: bool,
) -> anyhow::Result<CompatInput<'t>> {
    let state = &director.state;
    let mut releases = Vec::new();
    for (name, version) in &desired.releases {
        let requires = match state.release_requires(name, version)? {
            Some(json) => Some(
                serde_json::from_str::<Requires>(&json)
                    .with_context(|| format!("release {name}/{version}: reading its recorded requires"))?,
            ),
            None => None,
        };
        releases.push(ReleaseInput { name: name.clone(), version: version.clone(), requires });
    }

    let mut stemcells = Vec::new();
    for s in &desired.stemcells {
        let record = state
            .stemcell(&s.name, &s.version)?
            .ok_or_else(|| anyhow!("stemcell {}/{} is not uploaded", s.name, s.version))?;
        stemcells.push(StemcellInput {
            name: record.name,
            os: record.operating_system,
            version: record.version,
            api_version: record.api_version,
            formats: record.formats,
        });
    }

    let groups = desired
        .groups
        .iter()
        .map(|g| {
            let releases: BTreeSet<String> = g.jobs.iter().map(|j| j.release.clone()).collect();
            let cpis: BTreeSet<String> =
                g.instances.iter().map(|i| i.cpi.clone().unwrap_or_else(|| cpis.default.clone())).collect();
            GroupInput {
                name: g.name.clone(),
                stemcell: (g.stemcell.name.clone(), g.stemcell.version.clone()),
                releases: releases.into_iter().collect(),
                cpis: cpis.into_iter().collect(),
            }
        })
        .collect();

    // Only packages without source need a compiled build that fits; the cache is read once.
    let mut compiled = Vec::new();
    let mut cache = None;
    for group in &desired.groups {
        for package in group.packages.iter().filter(|p| p.sha256.is_empty()) {
            let records = match &cache {
                Some(records) => records,
                None => cache.insert(state.compiled_packages()?),
            };
            compiled.push(CompiledInput {
                group: group.name.clone(),
                release: package.release.clone(),
                package: package.name.clone(),
                has_source: false,
                compiled_for: records
                    .iter()
                    .filter(|r| r.key.name == package.name && r.key.fingerprint == package.fingerprint)
                    .map(|r| (r.key.os.clone(), r.key.stemcell_version.clone()))
                    .collect(),
            });
        }
    }

    Ok(CompatInput {
        releases,
        stemcells,
        groups,
        cpis: cpis.infos.clone(),
        compiled,
        rosh_version: env!("CARGO_PKG_VERSION").to_string(),
        table,
        skip_compat_check,
    })
}

/// The report as lines for a terminal: errors, bypassed errors, warnings, passed checks.
pub fn render(report: &CompatReport) -> String {
    let mut out = String::new();
    for f in &report.errors {
        out.push_str(&format!("error: {}\n", f.message));
    }
    for f in &report.bypassed {
        out.push_str(&format!("error (bypassed by --skip-compat-check): {}\n", f.message));
    }
    for f in &report.warnings {
        out.push_str(&format!("warning: {}\n", f.message));
    }
    for f in &report.passed {
        out.push_str(&format!("ok: {}\n", f.message));
    }
    out.push_str(&format!(
        "Compatibility: {} error(s), {} warning(s){}\n",
        report.errors.len(),
        report.warnings.len(),
        if report.bypassed.is_empty() { String::new() } else { format!(", {} bypassed", report.bypassed.len()) }
    ));
    out
}

pub fn run(deployment: Option<String>, args: CompatArgs) -> anyhow::Result<ExitCode> {
    match args.command {
        CompatCommand::Check(args) => check(deployment, args),
    }
}

fn check(deployment: Option<String>, args: CheckArgs) -> anyhow::Result<ExitCode> {
    let director = Director::open()?;
    // Read as `plan` reads it: every variable source read-only, nothing generated kept.
    let manifest =
        super::plan::read_manifest_readonly(&director, &args.manifest, &args.flags, deployment.as_deref())?.manifest;
    let (cloud, _) = deploy::cloud_config(&director, args.cloud_config.as_deref())?;
    let (runtimes, _) = deploy::runtime_configs(&director)?;
    let desired = deploy::desire(&director, &manifest, &cloud, &runtimes)?;
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let cpis = runtime.block_on(cpi_infos(&director.cpis()?))?;
    let options = GateOptions { skip_compat_check: args.skip_compat_check, tables: args.compat_tables.clone() };
    let report = gate(&director, &desired, &cpis, &options)?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", render(&report));
    }
    Ok(if report.ok() { ExitCode::SUCCESS } else { ExitCode::from(1) })
}
