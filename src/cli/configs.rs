//! The config commands, as bosh has them: `update-cloud-config`, `cloud-config`,
//! `update-runtime-config [--name]`, `runtime-config [--name]`, `update-cpi-config`,
//! `cpi-config` and `configs [--type] [--name]`.
//!
//! An update reads the file (`-` for standard input), applies the interpolate flags (`-o`, `-v`,
//! `-l`, … exactly as `rosh interpolate`), and validates the result with the config's model
//! (`CloudConfig`, `RuntimeConfig`, `CpiConfig`) before anything is stored: a config with a
//! problem is refused with `FILE: yaml.path: message` lines, exit 1, and the state is left as it
//! was. What is stored is the text as given — comments and all — unless the flags changed the
//! document, in which case it is the rendered YAML. Storing the content the latest version
//! already has is "No changes" and stores nothing. The show commands print the stored text back
//! byte for byte; with nothing stored they fail (exit 1) saying how to store one.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, bail};

use crate::cli::interpolate::{VarFlags, render_document};
use crate::manifest::model::cpi_config::CpiConfig;
use crate::manifest::model::{CloudConfig, Problem, RuntimeConfig};
use crate::manifest::yaml::{self, Value};
use crate::state::{Config, ConfigKind, ConfigVersion, State};

/// The name a config has unless given one.
const DEFAULT_NAME: &str = "default";

#[derive(Debug, clap::Args)]
pub struct UpdateArgs {
    /// The config file (`-` reads standard input).
    #[arg(value_name = "PATH")]
    pub file: PathBuf,
    /// Print the outcome as JSON.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub vars: VarFlags,
}

#[derive(Debug, clap::Args)]
pub struct UpdateRuntimeArgs {
    /// The runtime config file (`-` reads standard input).
    #[arg(value_name = "PATH")]
    pub file: PathBuf,
    /// The runtime config's name: a director holds several, all applied to every deployment.
    #[arg(long, default_value = DEFAULT_NAME)]
    pub name: String,
    /// Print the outcome as JSON.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub vars: VarFlags,
}

#[derive(Debug, clap::Args)]
pub struct ShowArgs {
    /// Print the stored version (id, version, content, …) as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, clap::Args)]
pub struct ShowRuntimeArgs {
    /// The runtime config's name.
    #[arg(long, default_value = DEFAULT_NAME)]
    pub name: String,
    /// Print the stored version (id, version, content, …) as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, clap::Args)]
pub struct ConfigsArgs {
    /// Only configs of this type: cloud, runtime or cpi.
    #[arg(long = "type", value_name = "TYPE")]
    pub kind: Option<ConfigKind>,
    /// Only configs of this name.
    #[arg(long)]
    pub name: Option<String>,
    #[arg(long)]
    pub json: bool,
}

pub fn update_cloud_config(args: UpdateArgs) -> anyhow::Result<ExitCode> {
    update(ConfigKind::Cloud, DEFAULT_NAME, &args.file, &args.vars, args.json)
}

pub fn update_runtime_config(args: UpdateRuntimeArgs) -> anyhow::Result<ExitCode> {
    if args.name.trim().is_empty() {
        bail!("--name must not be empty");
    }
    update(ConfigKind::Runtime, &args.name, &args.file, &args.vars, args.json)
}

pub fn update_cpi_config(args: UpdateArgs) -> anyhow::Result<ExitCode> {
    update(ConfigKind::Cpi, DEFAULT_NAME, &args.file, &args.vars, args.json)
}

pub fn cloud_config(args: ShowArgs) -> anyhow::Result<ExitCode> {
    show(ConfigKind::Cloud, DEFAULT_NAME, args.json)
}

pub fn runtime_config(args: ShowRuntimeArgs) -> anyhow::Result<ExitCode> {
    show(ConfigKind::Runtime, &args.name, args.json)
}

pub fn cpi_config(args: ShowArgs) -> anyhow::Result<ExitCode> {
    show(ConfigKind::Cpi, DEFAULT_NAME, args.json)
}

pub fn configs(args: ConfigsArgs) -> anyhow::Result<ExitCode> {
    let state = open_state()?;
    let kinds = match args.kind {
        Some(kind) => vec![kind],
        None => ConfigKind::ALL.to_vec(),
    };
    let mut configs = Vec::new();
    for kind in kinds {
        configs.extend(
            state.latest_configs(kind)?.into_iter().filter(|c| args.name.as_ref().is_none_or(|n| *n == c.name)),
        );
    }
    if args.json {
        let rows: Vec<serde_json::Value> = configs
            .iter()
            .map(|c| {
                serde_json::json!({
                    "id": c.id, "type": c.kind, "name": c.name, "version": c.version,
                    "sha256": c.sha256, "created_at": c.created_at,
                })
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(ExitCode::SUCCESS);
    }
    print!("{}", configs_table(&configs));
    Ok(ExitCode::SUCCESS)
}

fn open_state() -> anyhow::Result<State> {
    let dir = State::default_dir()?;
    State::open(&dir).with_context(|| format!("opening the director state in {}", dir.display()))
}

fn update(kind: ConfigKind, name: &str, file: &Path, flags: &VarFlags, json: bool) -> anyhow::Result<ExitCode> {
    let file_name = file.display().to_string();
    let text = read_input(file)?;
    let content = render(kind, &text, &file_name, flags)?;
    // Validated before the state is even opened: a refused config touches nothing.
    let state = open_state()?;
    let version = state.update_config(kind, name, &content)?;
    if json {
        println!("{}", serde_json::to_string_pretty(&version)?);
    } else {
        println!("{}", outcome_line(&version));
    }
    Ok(ExitCode::SUCCESS)
}

/// Interpolates and validates `text`, printing warnings on stderr; answers what to store.
fn render(kind: ConfigKind, text: &str, file_name: &str, flags: &VarFlags) -> anyhow::Result<String> {
    let raw = yaml::parse(text, file_name)?;
    let rendered = render_document(raw.clone(), file_name, flags)?;
    for warning in check(kind, &rendered, file_name)? {
        eprintln!("{warning}");
    }
    // Keep the operator's text (comments, layout) unless the flags made it something else.
    Ok(if rendered == raw { text.to_string() } else { yaml::to_string(&rendered) })
}

/// Validates a config document with its model: the warnings to show, or every problem as the
/// error, each line `FILE: yaml.path: message`.
fn check(kind: ConfigKind, document: &Value, file_name: &str) -> anyhow::Result<Vec<String>> {
    let problem = |p: &Problem| format!("{file_name}: {p}");
    let warning = |p: &Problem| format!("{file_name}: {}: warning: {}", p.path, p.kind);
    let loaded = match kind {
        ConfigKind::Cloud => CloudConfig::from_value(document).map(|l| l.warnings),
        ConfigKind::Runtime => RuntimeConfig::from_value(document, file_name).map(|l| l.warnings),
        ConfigKind::Cpi => {
            CpiConfig::from_value(document.clone(), file_name)?;
            return Ok(Vec::new());
        }
    };
    match loaded {
        Ok(warnings) => Ok(warnings.iter().map(warning).collect()),
        Err(err) => {
            let lines: Vec<String> = err.problems.iter().map(problem).collect();
            bail!("{} is not a valid {}; nothing stored:\n{}", file_name, title(kind, false), lines.join("\n"))
        }
    }
}

fn show(kind: ConfigKind, name: &str, json: bool) -> anyhow::Result<ExitCode> {
    let state = open_state()?;
    let Some(config) = state.latest_config(kind, name)? else {
        let named = if name == DEFAULT_NAME { String::new() } else { format!(" named '{name}'") };
        let flag = if name == DEFAULT_NAME { String::new() } else { format!(" --name {name}") };
        bail!("no {}{named} is stored; store one with `rosh update-{kind}-config{flag} FILE`", title(kind, false));
    };
    let mut out = std::io::stdout().lock();
    let text = if json {
        format!("{}\n", serde_json::to_string_pretty(&config)?)
    } else if config.content.ends_with('\n') || config.content.is_empty() {
        config.content
    } else {
        format!("{}\n", config.content)
    };
    // A closed pipe (`| head`) is not an error worth reporting.
    let _ = out.write_all(text.as_bytes()).and_then(|_| out.flush());
    Ok(ExitCode::SUCCESS)
}

fn read_input(path: &Path) -> anyhow::Result<String> {
    if path == Path::new("-") {
        let mut text = String::new();
        std::io::stdin().read_to_string(&mut text).context("reading standard input")?;
        return Ok(text);
    }
    std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))
}

/// `cloud config`, or `Cloud config` at the start of a sentence.
fn title(kind: ConfigKind, capital: bool) -> String {
    let word = match (kind, capital) {
        (ConfigKind::Cloud, false) => "cloud",
        (ConfigKind::Cloud, true) => "Cloud",
        (ConfigKind::Runtime, false) => "runtime",
        (ConfigKind::Runtime, true) => "Runtime",
        (ConfigKind::Cpi, _) => "CPI",
    };
    format!("{word} config")
}

/// `Cloud config updated (version 3)`, `Runtime config 'dns' updated (version 1)`, or
/// `No changes: cloud config stays at version 3`.
fn outcome_line(v: &ConfigVersion) -> String {
    let named = if v.name == DEFAULT_NAME { String::new() } else { format!(" '{}'", v.name) };
    if v.changed {
        format!("{}{named} updated (version {})", title(v.kind, true), v.version)
    } else {
        format!("No changes: {}{named} stays at version {}", title(v.kind, false), v.version)
    }
}

fn configs_table(configs: &[Config]) -> String {
    let header = ["ID", "Type", "Name", "Version", "Created At"];
    let rows: Vec<[String; 5]> = configs
        .iter()
        .map(|c| [c.id.to_string(), c.kind.to_string(), c.name.clone(), c.version.to_string(), c.created_at.clone()])
        .collect();
    let mut widths = header.map(str::len);
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.len());
        }
    }
    let line = |cells: [&str; 5]| {
        let text: Vec<String> = cells.iter().zip(widths).map(|(c, w)| format!("{c:<w$}")).collect();
        format!("{}\n", text.join("  ").trim_end())
    };
    let mut out = line(header);
    for row in &rows {
        out.push_str(&line(row.each_ref().map(String::as_str)));
    }
    let count = if configs.len() == 1 { "1 config".to_string() } else { format!("{} configs", configs.len()) };
    out.push_str(&format!("\n{count}\n"));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn version(kind: ConfigKind, name: &str, version: u64, changed: bool) -> ConfigVersion {
        ConfigVersion {
            id: 7,
            kind,
            name: name.into(),
            version,
            sha256: String::new(),
            created_at: String::new(),
            changed,
        }
    }

    #[test]
    fn the_outcome_says_what_changed_and_names_a_named_config() {
        assert_eq!(outcome_line(&version(ConfigKind::Cloud, "default", 3, true)), "Cloud config updated (version 3)");
        assert_eq!(
            outcome_line(&version(ConfigKind::Runtime, "dns", 1, true)),
            "Runtime config 'dns' updated (version 1)"
        );
        assert_eq!(
            outcome_line(&version(ConfigKind::Cpi, "default", 2, false)),
            "No changes: CPI config stays at version 2"
        );
    }

    #[test]
    fn a_config_that_flags_do_not_change_is_stored_as_given() {
        let text = "# the laptop\nnetworks: [{name: default, type: manual, subnets: [{range: 10.0.0.0/24, gateway: 10.0.0.1}]}]\ncompilation: {workers: 1, network: default}\n";
        assert_eq!(render(ConfigKind::Cloud, text, "cc.yml", &VarFlags::default()).unwrap(), text);
    }

    #[test]
    fn a_cpi_config_problem_names_the_file_and_path() {
        let err = render(ConfigKind::Cpi, "cpis: [{name: a, type: vsphere}]\n", "cpi.yml", &VarFlags::default())
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("cpi.yml: cpis[0]"), "{err}");
    }

    #[test]
    fn the_table_lists_one_row_per_config() {
        let config = Config {
            id: 4,
            kind: ConfigKind::Runtime,
            name: "dns".into(),
            version: 2,
            content: String::new(),
            sha256: String::new(),
            created_at: "2026-05-01T10:00:00Z".into(),
        };
        assert_eq!(
            configs_table(&[config]),
            "ID  Type     Name  Version  Created At\n4   runtime  dns   2        2026-05-01T10:00:00Z\n\n1 config\n"
        );
    }
}
