//! `rosh -d NAME plan MANIFEST`: what a deploy of MANIFEST would do and why, computed without
//! side effects (DESIGN §1 item 2, §3.5); also behind `deploy --dry-run` and `deploy --plan`.
//!
//! Owns the IO around the pure plan: reading the manifest without keeping what it generates
//! (variables are generated in memory only, `--vars-store` is read and never written), the
//! configs, the state's records and compiled-package cache, rendering each instance's jobs to
//! compare them (nothing is stored), and printing or saving the result. The state database, the
//! blobstore and every VM are left byte-for-byte as they were: no lock is taken either, since
//! nothing is written.

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, anyhow, bail};
use sha2::Digest;

use super::compat::{GateOptions, cpi_infos, gate};
use super::deploy::{
    Director, RawManifest, check_link_order, cloud_config_source, desire, parse_cloud_config, parse_runtime_config,
    stored_variables,
};
use super::interpolate::{VarFlags, render_with_store};
use crate::compile;
use crate::converge::deploy::known_instances;
use crate::converge::spec::SpecRenderer;
use crate::manifest::model::Deployment;
use crate::manifest::yaml::{self, Mapping, Value};
use crate::plan::desired::DesiredDeployment;
use crate::plan::diff::{Redaction, diff};
use crate::plan::reconcile::{Options as ReconcileOptions, reconcile};
use crate::plan::rollout::{CompileItem, Plan, Provenance, assemble};
use crate::state::ConfigKind;

#[derive(Debug, clap::Args)]
pub struct PlanArgs {
    /// The deployment manifest.
    pub manifest: PathBuf,
    #[command(flatten)]
    pub flags: VarFlags,
    #[command(flatten)]
    pub plan: PlanFlags,
    /// Save the plan as JSON (apply it with `deploy --plan FILE`).
    #[arg(long, value_name = "PATH")]
    pub out: Option<PathBuf>,
    /// Exit 0 when nothing would change, 2 when something would, 1 on error.
    #[arg(long)]
    pub detailed_exitcode: bool,
    /// Print the plan as JSON.
    #[arg(long)]
    pub json: bool,
}

/// The choices a plan and the deploy applying it share.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct PlanFlags {
    /// Use this cloud config instead of the stored one.
    #[arg(long, value_name = "PATH")]
    pub cloud_config: Option<PathBuf>,
    /// Recreate every VM, even unchanged ones.
    #[arg(long)]
    pub recreate: bool,
    /// Accept an update order in which a group starts before the group providing a link it
    /// requires.
    #[arg(long)]
    pub allow_unordered_links: bool,
    /// Show property values and generated secrets in the diff.
    #[arg(long)]
    pub no_redact: bool,
    /// Go on when the compatibility check finds errors (they are shown as bypassed).
    #[arg(long)]
    pub skip_compat_check: bool,
    /// A compatibility table merged over the shipped one and the state dir's (repeatable).
    #[arg(long = "compat-table", value_name = "PATH")]
    pub compat_tables: Vec<PathBuf>,
}

impl PlanFlags {
    pub fn gate_options(&self) -> GateOptions {
        GateOptions { skip_compat_check: self.skip_compat_check, tables: self.compat_tables.clone() }
    }
}

pub fn run(deployment: Option<String>, args: PlanArgs) -> anyhow::Result<ExitCode> {
    let director = Director::open()?;
    let planned = make_plan(&director, deployment.as_deref(), &args.manifest, &args.flags, &args.plan)?;
    let plan = &planned.plan;
    if let Some(out) = &args.out {
        let json = serde_json::to_string_pretty(plan)?;
        std::fs::write(out, json + "\n").with_context(|| format!("writing the plan to {}", out.display()))?;
    }
    if args.json {
        println!("{}", serde_json::to_string(plan)?);
    } else {
        print!("{}", plan.render(std::io::stdout().is_terminal()));
        if let Some(out) = &args.out {
            println!(
                "Saved to {} (apply with `rosh -d {} deploy {} --plan {}`)",
                out.display(),
                plan.made_from.deployment,
                args.manifest.display(),
                out.display()
            );
        }
    }
    Ok(if args.detailed_exitcode && plan.summary.has_changes() { ExitCode::from(2) } else { ExitCode::SUCCESS })
}

/// A plan and the desired deployment it was made of.
pub struct Planned {
    pub plan: Plan,
    pub desired: DesiredDeployment,
}

/// The plan of deploying `manifest` now. Writes nothing anywhere.
pub fn make_plan(
    director: &Director,
    expected: Option<&str>,
    manifest: &Path,
    flags: &VarFlags,
    options: &PlanFlags,
) -> anyhow::Result<Planned> {
    let state = &director.state;
    let serial = state.serial()?;
    let read = read_manifest_readonly(director, manifest, flags, expected)?;
    let (cloud_text, cloud_display, _) = cloud_config_source(director, options.cloud_config.as_deref())?;
    let cloud = parse_cloud_config(&cloud_text, &cloud_display)?;
    let cloud_doc = yaml::parse(&cloud_text, &cloud_display)?;
    let runtime_texts: Vec<(String, String)> =
        state.latest_configs(ConfigKind::Runtime)?.into_iter().map(|c| (c.name, c.content)).collect();
    let runtimes = runtime_texts
        .iter()
        .map(|(name, text)| Ok((name.clone(), parse_runtime_config(name, text)?)))
        .collect::<anyhow::Result<Vec<_>>>()?;

    let mut desired = desire(director, &read.manifest, &cloud, &runtimes)?;
    check_link_order(&desired, options.allow_unordered_links)?;
    let name = desired.name.clone();

    // The compatibility gate, as deploy runs it (the CPIs are asked for their `info` only).
    let cpis = director.cpis()?;
    let infos = tokio::runtime::Builder::new_current_thread().enable_all().build()?.block_on(cpi_infos(&cpis))?;
    let report = gate(director, &desired, &infos, &options.gate_options())?;
    if let Some(message) = report.error_message() {
        bail!("{message}");
    }
    desired.warnings.extend(
        report.bypassed.iter().map(|f| format!("compatibility (bypassed by --skip-compat-check): {}", f.message)),
    );
    desired.warnings.extend(report.warnings.iter().map(|f| format!("compatibility: {}", f.message)));

    // What compiles, and each package's digest where the cache has it (a stand-in otherwise:
    // a package not in the cache is compiled anew, so it differs from what any VM holds).
    let mut compile_list: Vec<CompileItem> = Vec::new();
    let mut seen_keys = std::collections::BTreeSet::new();
    let mut digests: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    for group in &desired.groups {
        let stemcell = format!("{}/{}", group.stemcell.os, group.stemcell.version);
        let mut mine = BTreeMap::new();
        for compile::CacheEntry { package, key, found } in
            compile::cached(state, &group.packages, &group.stemcell.os, &group.stemcell.version)?
        {
            let digest = match &found {
                Some(record) => record.blob_sha256.clone(),
                None => format!("to-compile:{}", package.fingerprint),
            };
            if group.runtime_packages().any(|p| p == &package) {
                mine.insert(package.name.clone(), digest);
            }
            let item = CompileItem {
                release: package.release.clone(),
                package: package.name.clone(),
                version: package.version.clone(),
                stemcell: stemcell.clone(),
                cached: found.is_some(),
            };
            // One compilation per cache key, whichever release (or group) names the package.
            if seen_keys.insert(key) {
                compile_list.push(item);
            }
        }
        digests.insert(group.name.clone(), mine);
    }

    let records = state.instances(&name)?;
    let by_uuid: BTreeMap<&str, _> = records.iter().map(|r| (r.uuid.as_str(), r)).collect();
    let known = known_instances(state, &name, records.iter())?;
    let renderer = SpecRenderer::new(&director.blobs);
    let reconcile_options = ReconcileOptions { recreate: options.recreate, only: None };
    let reconciled = reconcile(&desired, &known, &reconcile_options, |group, instance, k| {
        let Some(vm) = by_uuid.get(k.uuid.as_str()).and_then(|r| r.vm.as_ref()) else { return Ok(None) };
        let endpoint: rosh_cpi::SshEndpoint = serde_json::from_str(&vm.endpoint_json)?;
        let packages = digests.get(&group.name).cloned().unwrap_or_default();
        let rendered = renderer.render(&desired, group, instance, packages, &endpoint.root)?;
        anyhow::Ok(Some(rendered.spec))
    })?;

    // The diff: the last deployed manifest with its configs against the new ones.
    let mut secrets: Vec<String> = Vec::new();
    for value in state.variables(&name)?.values() {
        collect_strings(&yaml::from_json(value), &mut secrets);
    }
    collect_strings(&read.generated_values, &mut secrets);
    let old = match state.deployment_manifest(&name)? {
        Some(recorded) => {
            let doc = yaml::parse(&recorded.text, "the deployed manifest")?;
            let cloud = match recorded.cloud_config_id {
                Some(id) => {
                    state.config_by_id(id)?.map(|c| yaml::parse(&c.content, "the deployed cloud config")).transpose()?
                }
                None => None,
            };
            let mut runtimes = Vec::new();
            for id in &recorded.runtime_config_ids {
                if let Some(c) = state.config_by_id(*id)? {
                    runtimes.push(yaml::parse(&c.content, "a deployed runtime config")?);
                }
            }
            merged(&doc, cloud.as_ref(), &runtimes)
        }
        None => Value::Null,
    };
    let new_runtimes = runtime_texts.iter().map(|(n, t)| yaml::parse(t, n)).collect::<Result<Vec<_>, _>>()?;
    let new = merged(&read.doc, Some(&cloud_doc), &new_runtimes);
    let lines = diff(&old, &new, &Redaction { off: options.no_redact, secrets });

    let made_from = Provenance {
        deployment: name.clone(),
        state_serial: serial,
        manifest_sha256: read.inputs_sha256,
        cloud_config_sha256: sha256_hex(cloud_text.as_bytes()),
        runtime_configs_sha256: sha256_hex(serde_json::to_string(&runtime_texts)?.as_bytes()),
        releases: sorted(desired.releases.iter().map(|(n, v)| format!("{n}/{v}"))),
        stemcells: sorted(desired.stemcells.iter().map(|s| format!("{}/{}", s.name, s.version))),
        options: [("recreate".to_string(), options.recreate.to_string())].into(),
    };
    let plan = assemble(&desired, made_from, &reconciled, compile_list, read.generated, lines);
    Ok(Planned { plan, desired })
}

fn sorted(items: impl Iterator<Item = String>) -> Vec<String> {
    let mut v: Vec<String> = items.collect();
    v.sort();
    v.dedup();
    v
}

fn sha256_hex(bytes: &[u8]) -> String {
    sha2::Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

/// The manifest as the deploy would read it, keeping nothing it generates.
pub struct ReadManifest {
    pub doc: Value,
    pub manifest: Deployment,
    /// Names of variables the deploy would generate.
    generated: Vec<String>,
    /// Their values here (to redact them; never shown or saved).
    generated_values: Value,
    /// sha256 over the manifest, ops files and command-line variables.
    inputs_sha256: String,
}

/// Reads `path` as `deploy` would, with every variable source read-only: the director's stored
/// variables (or the `--vars-store` file, read as a vars file) are used, and what is generated
/// is kept in memory only.
pub fn read_manifest_readonly(
    director: &Director,
    path: &Path,
    flags: &VarFlags,
    expected: Option<&str>,
) -> anyhow::Result<ReadManifest> {
    let RawManifest { text, display, doc: raw, name } = RawManifest::read(path, expected)?;
    // A --vars-store file is read like a vars file (lowest precedence) and never written;
    // without one, the director's stored variables are the store, generated into in memory.
    let mut readonly = flags.clone();
    let mut stored = Mapping::new();
    if let Some(store) = readonly.vars_store.take() {
        if store.exists() {
            readonly.vars_files.insert(0, store);
        }
    } else {
        stored = stored_variables(director, &name)?;
    }
    let before: Vec<Value> = stored.keys().cloned().collect();
    let (doc, generated_store) = render_with_store(raw, &display, &readonly, Some(stored))?;
    let mut generated = Vec::new();
    let mut generated_values = Mapping::new();
    if let Some(store) = generated_store {
        for (k, v) in store.values() {
            if !before.contains(k) {
                generated.push(k.as_str().unwrap_or_default().to_string());
                generated_values.insert(k.clone(), v.clone());
            }
        }
    }
    let manifest = Deployment::from_value(&doc).map_err(|e| anyhow!("{display}: {e}"))?.model;
    Ok(ReadManifest {
        doc,
        manifest,
        generated,
        generated_values: Value::Mapping(generated_values),
        inputs_sha256: inputs_digest(&text, flags)?,
    })
}

/// sha256 over everything the operator gives a deploy to read: the manifest, the ops files,
/// and the variables of `-v`, `--var-file`, `-l`, `--vars-env` and `--vars-store`.
pub fn inputs_digest(manifest_text: &str, flags: &VarFlags) -> anyhow::Result<String> {
    let mut h = sha2::Sha256::new();
    let mut part = |label: &str, bytes: &[u8]| {
        h.update(label.as_bytes());
        h.update((bytes.len() as u64).to_le_bytes());
        h.update(bytes);
    };
    part("manifest", manifest_text.as_bytes());
    let read = |p: &Path| std::fs::read(p).with_context(|| format!("reading {}", p.display()));
    for ops in &flags.ops_files {
        part("ops", &read(ops)?);
    }
    for v in &flags.vars {
        part("var", v.as_bytes());
    }
    for v in &flags.var_files {
        let (name, path) = v.split_once('=').unwrap_or((v.as_str(), ""));
        part("var-file", name.as_bytes());
        part("var-file-content", &read(Path::new(path))?);
    }
    for f in &flags.vars_files {
        part("vars-file", &read(f)?);
    }
    for prefix in &flags.vars_env {
        let mut vars: Vec<(String, String)> = std::env::vars()
            .filter(|(k, _)| k.strip_prefix(prefix.as_str()).is_some_and(|rest| rest.starts_with('_')))
            .collect();
        vars.sort();
        for (k, v) in vars {
            part("env", format!("{k}={v}").as_bytes());
        }
    }
    if let Some(store) = &flags.vars_store
        && store.exists()
    {
        part("vars-store", &read(store)?);
    }
    Ok(sha256_hex(&h.finalize()))
}

/// The manifest as the director sees it: with the cloud config's sections and the runtime
/// configs' addons.
fn merged(manifest: &Value, cloud: Option<&Value>, runtimes: &[Value]) -> Value {
    let mut out = manifest.as_mapping().cloned().unwrap_or_default();
    if let Some(Value::Mapping(cloud)) = cloud {
        for (k, v) in cloud {
            if !out.contains_key(k) {
                out.insert(k.clone(), v.clone());
            }
        }
    }
    let mut addons: Vec<Value> = out.get("addons").and_then(Value::as_sequence).cloned().unwrap_or_default();
    for rc in runtimes {
        if let Some(more) = rc.get("addons").and_then(Value::as_sequence) {
            addons.extend(more.iter().cloned());
        }
    }
    if !addons.is_empty() {
        out.insert(Value::String("addons".into()), Value::Sequence(addons));
    }
    Value::Mapping(out)
}

fn collect_strings(v: &Value, out: &mut Vec<String>) {
    match v {
        // Short values (`true`, a port) would redact unrelated text; secrets are long.
        Value::String(s) if s.len() >= 8 => out.push(s.clone()),
        Value::Mapping(m) => m.values().for_each(|v| collect_strings(v, out)),
        Value::Sequence(items) => items.iter().for_each(|v| collect_strings(v, out)),
        _ => {}
    }
}
