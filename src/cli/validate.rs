//! `rosh validate`: check a deployment manifest against a cloud config and runtime configs before
//! anything is deployed.
//!
//! Renders the files — the manifest with its ops files and variables exactly as `rosh
//! interpolate` does; the cloud config and runtime configs with the same variables but no ops
//! files and without `--var-errs`/`--var-errs-unused` (the ops and the strictness are about the
//! manifest; the configs neither use nor define its variables) — hands the documents to the pure
//! [`crate::manifest::model::validate`], and prints one line per problem
//! (`FILE: yaml.path: message`), then the warnings, then a summary; or, with `--json`, the report
//! as one JSON object. Exits 1 when there is any problem. A file that cannot be read or parsed is
//! an error (exit 1 too), named with its path.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;

use crate::cli::interpolate::{VarFlags, render_file};
use crate::manifest::model::{self, Document, Problem, Report};
use crate::manifest::yaml::Value;

#[derive(Debug, clap::Args)]
pub struct ValidateArgs {
    /// Deployment manifest to check.
    #[arg(value_name = "MANIFEST")]
    pub manifest: PathBuf,
    /// Cloud config the deployment will be deployed against.
    #[arg(long = "cloud-config", value_name = "PATH")]
    pub cloud_config: PathBuf,
    /// Runtime config applied to the deployment (repeatable; bosh merges them all).
    #[arg(long = "runtime-config", value_name = "PATH")]
    pub runtime_configs: Vec<PathBuf>,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub vars: VarFlags,
}

pub fn run(args: ValidateArgs) -> anyhow::Result<ExitCode> {
    let manifest = render_file(&args.manifest, &args.vars)
        .with_context(|| format!("reading manifest {}", args.manifest.display()))?;

    let config_flags = VarFlags { ops_files: Vec::new(), var_errs: false, var_errs_unused: false, ..args.vars.clone() };
    let cloud_config = render_file(&args.cloud_config, &config_flags)
        .with_context(|| format!("reading cloud config {}", args.cloud_config.display()))?;
    let mut runtime_configs: Vec<(String, Value)> = Vec::with_capacity(args.runtime_configs.len());
    for path in &args.runtime_configs {
        let doc =
            render_file(path, &config_flags).with_context(|| format!("reading runtime config {}", path.display()))?;
        runtime_configs.push((path.display().to_string(), doc));
    }

    let report = model::validate(&manifest, &cloud_config, &runtime_configs);
    let files = Files { manifest: &args.manifest, cloud_config: &args.cloud_config };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&to_json(&report, &files))?);
    } else {
        print!("{}", to_text(&report, &files));
    }
    Ok(if report.is_ok() { ExitCode::SUCCESS } else { ExitCode::from(1) })
}

/// The files the documents came from, to name them in output.
struct Files<'a> {
    manifest: &'a Path,
    cloud_config: &'a Path,
}

impl Files<'_> {
    /// Runtime configs are named by their path already.
    fn of(&self, document: &Document) -> String {
        match document {
            Document::Manifest => self.manifest.display().to_string(),
            Document::CloudConfig => self.cloud_config.display().to_string(),
            Document::RuntimeConfig(path) => path.clone(),
        }
    }
}

fn plural(n: usize, word: &str) -> String {
    if n == 1 { format!("1 {word}") } else { format!("{n} {word}s") }
}

fn to_text(report: &Report, files: &Files) -> String {
    let mut out = String::new();
    for p in &report.problems {
        out.push_str(&format!("{}: {}: {}\n", files.of(&p.document), p.path, p.kind));
    }
    for w in &report.warnings {
        out.push_str(&format!("{}: {}: warning: {}\n", files.of(&w.document), w.path, w.kind));
    }
    let problems =
        if report.problems.is_empty() { "no problems".to_string() } else { plural(report.problems.len(), "problem") };
    out.push_str(&format!("{problems}, {}\n", plural(report.warnings.len(), "warning")));
    out
}

fn to_json(report: &Report, files: &Files) -> serde_json::Value {
    let entries = |list: &[Problem]| -> Vec<serde_json::Value> {
        list.iter()
            .map(|p| {
                let mut entry = serde_json::Map::new();
                entry.insert("file".into(), files.of(&p.document).into());
                if let Ok(serde_json::Value::Object(fields)) = serde_json::to_value(p) {
                    entry.extend(fields);
                }
                serde_json::Value::Object(entry)
            })
            .collect()
    };
    serde_json::json!({
        "ok": report.is_ok(),
        "problems": entries(&report.problems),
        "warnings": entries(&report.warnings),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::yaml::parse;

    fn report() -> Report {
        let manifest = parse(
            "name: d\nextra: 1\nreleases: []\nstemcells: [{alias: s, os: x, version: 1}]\n\
             update: {canaries: 1, max_in_flight: 1, canary_watch_time: 1, update_watch_time: 1}\n\
             instance_groups:\n- {name: a, instances: 1, jobs: [], vm_type: huge, stemcell: s, networks: [{name: n}]}\n",
            "m.yml",
        )
        .unwrap();
        let cloud =
            parse("networks: [{name: n, type: dynamic}]\ncompilation: {workers: 1, network: n}\n", "cc.yml").unwrap();
        let runtime = parse("addons: [{name: x, jobs: [{name: j, release: missing}]}]\n", "rc.yml").unwrap();
        model::validate(&manifest, &cloud, &[("rc.yml".to_string(), runtime)])
    }

    #[test]
    fn text_output_names_file_path_and_message_then_sums_up() {
        let files = Files { manifest: Path::new("cf.yml"), cloud_config: Path::new("cc.yml") };
        assert_eq!(
            to_text(&report(), &files),
            "cf.yml: instance_groups[0].vm_type: vm_type 'huge' is not defined in the cloud config's vm_types\n\
             rc.yml: addons[0].jobs[0]: release 'missing' is not listed under releases\n\
             cf.yml: extra: warning: unknown key 'extra' is ignored\n\
             2 problems, 1 warning\n"
        );
        assert_eq!(to_text(&Report::default(), &files), "no problems, 0 warnings\n");
    }

    #[test]
    fn json_output_carries_file_path_code_and_message() {
        let files = Files { manifest: Path::new("cf.yml"), cloud_config: Path::new("cc.yml") };
        let json = to_json(&report(), &files);
        assert_eq!(json["ok"], false);
        assert_eq!(
            json["problems"][1],
            serde_json::json!({
                "file": "rc.yml", "document": "runtime_config", "runtime_config": "rc.yml",
                "path": "addons[0].jobs[0]", "code": "unknown-reference",
                "message": "release 'missing' is not listed under releases"
            })
        );
        assert_eq!(json["warnings"][0]["path"], "extra");
    }
}
