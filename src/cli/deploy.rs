//! `rosh -d NAME deploy MANIFEST`: a manifest to running VMs, as `bosh deploy`.
//!
//! Owns the IO around the engine: reading the manifest (with the interpolate flags; generated
//! variables go into the director's state unless `--vars-store` is given), the configs (stored
//! ones, or `--cloud-config FILE` used directly), the deployment lock, opening the CPIs, making
//! stemcells known to them, and the summary. Everything that can be checked is checked before
//! any VM is touched: the manifest model, the desired deployment (releases, stemcells, links,
//! IPs, properties), the link order, and the package graph.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, bail};
use rosh_cpi::{Cid, Cpi, CreateStemcell, NetworkSettings};

use super::compat::{GateOptions, cpi_infos, gate};
use super::interpolate::{VarFlags, render_with_store};
use super::plan::PlanFlags;
use super::progress;
use crate::blobstore::{Blobstore, LocalBlobstore};
use crate::compile::{self, Target, Workers};
use crate::converge::cpis::{self, CpiEnv};
use crate::converge::deploy::{CompiledByGroup, CpiSet, DeployOptions, Deployer};
use crate::converge::report::Reporter;
use crate::converge::vm::Reach;
use crate::manifest::model::cpi_config::CpiConfig;
use crate::manifest::model::{CloudConfig, Deployment, Param, RuntimeConfig, UpdateOrder};
use crate::manifest::yaml::{self, Value};
use crate::plan::desired::DesiredDeployment;
use crate::ssh::agent_client::AgentBinary;
use crate::ssh::keys::DirectorKey;
use crate::state::{ConfigKind, State};

#[derive(Debug, clap::Args)]
pub struct DeployArgs {
    /// The deployment manifest.
    pub manifest: PathBuf,
    #[command(flatten)]
    pub flags: VarFlags,
    #[command(flatten)]
    pub plan_flags: PlanFlags,
    /// Print what the deploy would do (as `rosh plan`) and change nothing.
    #[arg(long, conflicts_with = "plan")]
    pub dry_run: bool,
    /// Apply this saved plan (`rosh plan --out FILE`), refused if anything changed since.
    #[arg(long, value_name = "PATH")]
    pub plan: Option<PathBuf>,
    /// Override every group's canaries.
    #[arg(long, value_name = "N")]
    pub canaries: Option<u64>,
    /// Override every group's max_in_flight.
    #[arg(long, value_name = "N")]
    pub max_in_flight: Option<u64>,
    /// Do not run drain scripts.
    #[arg(long)]
    pub skip_drain: bool,
    /// No confirmation (rosh does not ask; accepted for bosh compatibility).
    #[arg(short = 'n', long = "non-interactive")]
    pub non_interactive: bool,
    /// Print progress events and the summary as JSON lines.
    #[arg(long)]
    pub json: bool,
}

/// The director's stores and identity.
pub struct Director {
    pub state: State,
    pub blobs: LocalBlobstore,
    pub state_dir: PathBuf,
}

impl Director {
    pub fn open() -> anyhow::Result<Director> {
        let (state, blobs) = super::upload::open_director()?;
        let state_dir = state.dir().to_path_buf();
        Ok(Director { state, blobs, state_dir })
    }

    /// The CPI config in force (the stored one, else the local CPI alone).
    pub fn cpi_config(&self) -> anyhow::Result<CpiConfig> {
        match self.state.latest_config(ConfigKind::Cpi, "default")? {
            Some(config) => {
                let doc = yaml::parse(&config.content, "cpi config")?;
                Ok(CpiConfig::from_value(doc, "cpi config")?)
            }
            None => Ok(CpiConfig::default_local()),
        }
    }

    /// Every CPI of the CPI config, opened.
    pub fn cpis(&self) -> anyhow::Result<CpiSet> {
        let config = self.cpi_config()?;
        let env = CpiEnv::new(&self.state_dir)?;
        let mut set = BTreeMap::new();
        for def in &config.cpis {
            set.insert(def.name.clone(), cpis::open(def, &env)?);
        }
        let default = config.default_cpi().map(|d| d.name.clone()).unwrap_or_else(|| config.cpis[0].name.clone());
        Ok(CpiSet { cpis: set, default })
    }

    /// How this director reaches VMs.
    pub fn reach(&self) -> anyhow::Result<Reach> {
        let key = DirectorKey::load_or_create(&self.state_dir)?;
        Ok(Reach {
            key,
            agent_binary: Arc::new(AgentBinary::for_machines()?.clone()),
            boot_timeout: Duration::from_secs(60),
            step_timeout: Duration::from_secs(900),
        })
    }
}

pub fn run(deployment: Option<String>, args: DeployArgs) -> anyhow::Result<ExitCode> {
    let director = Director::open()?;
    if args.dry_run {
        let planned =
            super::plan::make_plan(&director, deployment.as_deref(), &args.manifest, &args.flags, &args.plan_flags)?;
        if args.json {
            println!("{}", serde_json::to_string(&planned.plan)?);
        } else {
            print!("{}", planned.plan.render(std::io::IsTerminal::is_terminal(&std::io::stdout())));
        }
        return Ok(ExitCode::SUCCESS);
    }
    // A saved plan is checked before anything is read for real (reading the manifest keeps
    // the variables it generates, which moves the state serial).
    let expect = match &args.plan {
        Some(path) => Some(check_saved_plan(&director, deployment.as_deref(), path, &args)?),
        None => None,
    };
    let reporter = progress::reporter(args.json);
    let started = Instant::now();
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let cancel = Arc::new(AtomicBool::new(false));
    let flag = cancel.clone();
    let quiet = args.json;
    runtime.spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            flag.store(true, Ordering::SeqCst);
            if !quiet {
                eprintln!("Interrupted: letting running steps finish, starting nothing new (Ctrl-C again to kill)");
            }
            let _ = tokio::signal::ctrl_c().await;
            std::process::exit(130);
        }
    });
    let result =
        runtime.block_on(deploy(&director, deployment.as_deref(), &args, expect, reporter.as_ref(), cancel.clone()));
    let report = match result {
        Ok(report) => report,
        Err(e) if cancel.load(Ordering::SeqCst) => {
            eprintln!("Error: {e:#}");
            return Ok(ExitCode::from(130));
        }
        Err(e) => return Err(e),
    };
    let summary = format!(
        "Deployed in {:.1}s: {} created, {} updated, {} recreated, {} deleted, {} unchanged; {} packages compiled, {} from cache",
        started.elapsed().as_secs_f64(),
        report.created,
        report.updated,
        report.recreated,
        report.deleted,
        report.unchanged,
        report.packages_compiled,
        report.packages_cached
    );
    if args.json {
        println!(
            "{}",
            serde_json::json!({"event": "summary", "report": report, "elapsed_ms": started.elapsed().as_millis() as u64})
        );
    } else {
        println!("{summary}");
    }
    Ok(ExitCode::SUCCESS)
}

/// A manifest file as read, before ops files and variables.
pub struct RawManifest {
    pub text: String,
    /// How errors name the file.
    pub display: String,
    pub doc: Value,
    /// The deployment it names.
    pub name: String,
}

impl RawManifest {
    /// Reads and parses `path`; it must name a deployment, and `expected_name` (from `-d`)
    /// when given.
    pub fn read(path: &std::path::Path, expected_name: Option<&str>) -> anyhow::Result<RawManifest> {
        let display = path.display().to_string();
        let text = std::fs::read_to_string(path).with_context(|| format!("reading {display}"))?;
        let doc = yaml::parse(&text, &display)?;
        let name = doc.get("name").and_then(Value::as_str).map(str::to_string);
        let Some(name) = name else { bail!("{display}: name: a deployment manifest needs a name") };
        if let Some(expected) = expected_name
            && expected != name
        {
            bail!("{display}: name: the manifest deploys `{name}`, but -d says `{expected}`");
        }
        Ok(RawManifest { text, display, doc, name })
    }
}

/// The variables the director keeps for deployment `name`, as a vars store.
pub fn stored_variables(director: &Director, name: &str) -> anyhow::Result<yaml::Mapping> {
    Ok(director.state.variables(name)?.into_iter().map(|(k, v)| (Value::String(k), yaml::from_json(&v))).collect())
}

/// Reads the manifest with its variables (generated ones kept in the state).
pub fn read_manifest(
    director: &Director,
    path: &std::path::Path,
    flags: &VarFlags,
    expected_name: Option<&str>,
) -> anyhow::Result<(Value, Deployment)> {
    let RawManifest { display, doc: raw, name, .. } = RawManifest::read(path, expected_name)?;
    let stored = stored_variables(director, &name)?;
    let (doc, generated) = render_with_store(raw, &display, flags, Some(stored))?;
    if let Some(store) = generated {
        let values: BTreeMap<String, serde_json::Value> =
            store.values().iter().filter_map(|(k, v)| Some((k.as_str()?.to_string(), yaml::to_json(v)))).collect();
        director.state.set_variables(&name, &values)?;
    }
    let loaded = Deployment::from_value(&doc).map_err(|e| anyhow!("{display}: {e}"))?;
    Ok((doc, loaded.model))
}

/// The text of the cloud config in force (`--cloud-config FILE`, else the stored one), how
/// errors name it, and the stored version's id.
pub fn cloud_config_source(
    director: &Director,
    file: Option<&std::path::Path>,
) -> anyhow::Result<(String, String, Option<i64>)> {
    Ok(match file {
        Some(path) => (
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?,
            path.display().to_string(),
            None,
        ),
        None => match director.state.latest_config(ConfigKind::Cloud, "default")? {
            Some(config) => (config.content, "cloud config".to_string(), Some(config.id)),
            None => bail!("no cloud config: give --cloud-config FILE or run `rosh update-cloud-config FILE` first"),
        },
    })
}

/// A cloud config's model from its text.
pub fn parse_cloud_config(text: &str, display: &str) -> anyhow::Result<CloudConfig> {
    let doc = yaml::parse(text, display)?;
    Ok(CloudConfig::from_value(&doc).map_err(|e| anyhow!("{display}: {e}"))?.model)
}

/// A runtime config's model from its text.
pub fn parse_runtime_config(name: &str, text: &str) -> anyhow::Result<RuntimeConfig> {
    let display = format!("runtime config '{name}'");
    let doc = yaml::parse(text, &display)?;
    Ok(RuntimeConfig::from_value(&doc, name).map_err(|e| anyhow!("{display}: {e}"))?.model)
}

/// The cloud config in force: `--cloud-config FILE`, else the stored one.
pub fn cloud_config(director: &Director, file: Option<&std::path::Path>) -> anyhow::Result<(CloudConfig, Option<i64>)> {
    let (text, display, id) = cloud_config_source(director, file)?;
    Ok((parse_cloud_config(&text, &display)?, id))
}

/// Runtime configs by name, and the ids of the versions read.
pub type RuntimeConfigs = (Vec<(String, RuntimeConfig)>, Vec<i64>);

/// The stored runtime configs, by name.
pub fn runtime_configs(director: &Director) -> anyhow::Result<RuntimeConfigs> {
    let mut configs = Vec::new();
    let mut ids = Vec::new();
    for config in director.state.latest_configs(ConfigKind::Runtime)? {
        configs.push((config.name.clone(), parse_runtime_config(&config.name, &config.content)?));
        ids.push(config.id);
    }
    Ok((configs, ids))
}

/// What every VM-making command needs once the desired deployment is known: the CPIs, how to
/// reach VMs, the stemcells' cids, and every group's compiled packages (compiling what the cache
/// lacks).
pub struct Prepared {
    pub cpis: CpiSet,
    pub reach: Reach,
    pub stemcell_cids: BTreeMap<(String, String), Cid>,
    pub compiled: CompiledByGroup,
    pub packages_compiled: usize,
    pub packages_cached: usize,
}

pub async fn prepare(
    director: &Director,
    desired: &DesiredDeployment,
    cloud: &CloudConfig,
    reporter: &dyn Reporter,
) -> anyhow::Result<Prepared> {
    let state = &director.state;
    let cpis = director.cpis()?;
    let reach = director.reach()?;

    // Stemcells known to every CPI that will make a VM with them.
    let mut stemcell_cids = BTreeMap::new();
    let compilation_cpi = compilation_cpi(cloud, &cpis)?;
    for group in &desired.groups {
        let mut cpi_names: Vec<Option<String>> = group.instances.iter().map(|i| i.cpi.clone()).collect();
        cpi_names.push(Some(compilation_cpi.clone()));
        cpi_names.sort();
        cpi_names.dedup();
        for name in cpi_names {
            let (cpi_name, cpi) = cpis.get(name.as_deref())?;
            let key = (cpi_name.clone(), format!("{}/{}", group.stemcell.name, group.stemcell.version));
            if let std::collections::btree_map::Entry::Vacant(slot) = stemcell_cids.entry(key) {
                let cid =
                    ensure_stemcell(director, &cpi_name, cpi.as_ref(), &group.stemcell.name, &group.stemcell.version)
                        .await?;
                slot.insert(cid);
            }
        }
    }

    // Packages: compiled once per stemcell, shared by every group needing them.
    let workers = compile_workers(cloud, &cpis, &reach, &desired.name)?;
    let mut wanted = Vec::new();
    for group in &desired.groups {
        let key = (compilation_cpi.clone(), format!("{}/{}", group.stemcell.name, group.stemcell.version));
        let target = Target {
            os: group.stemcell.os.clone(),
            version: group.stemcell.version.clone(),
            stemcell_cid: stemcell_cids[&key].clone(),
        };
        wanted.push((target, group.packages.clone()));
    }
    let compiled = compile::compile(state, &director.blobs, &reach, &workers, &wanted, reporter).await?;
    let mut by_group: CompiledByGroup = BTreeMap::new();
    for group in &desired.groups {
        let list = group
            .runtime_packages()
            .map(|p| {
                let record = compiled
                    .packages
                    .get(&(p.release.clone(), p.name.clone()))
                    .cloned()
                    .ok_or_else(|| anyhow!("package {} was not compiled", p.name))?;
                Ok((p.name.clone(), record))
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        by_group.insert(group.name.clone(), list);
    }
    Ok(Prepared {
        cpis,
        reach,
        stemcell_cids,
        compiled: by_group,
        packages_compiled: compiled.compiled,
        packages_cached: compiled.cached,
    })
}

async fn deploy(
    director: &Director,
    deployment: Option<&str>,
    args: &DeployArgs,
    expect: Option<Vec<crate::plan::reconcile::Shape>>,
    reporter: &dyn Reporter,
    cancel: Arc<AtomicBool>,
) -> anyhow::Result<crate::converge::deploy::DeployReport> {
    let (doc, manifest) = read_manifest(director, &args.manifest, &args.flags, deployment)?;
    let (cloud, cloud_id) = cloud_config(director, args.plan_flags.cloud_config.as_deref())?;
    let (runtimes, runtime_ids) = runtime_configs(director)?;
    let inputs = Inputs { doc, manifest, cloud, cloud_id, runtimes, runtime_ids };
    let options = DeployOptions {
        recreate: args.plan_flags.recreate,
        canaries: args.canaries,
        max_in_flight: args.max_in_flight,
        skip_drain: args.skip_drain,
        only: None,
        expect,
    };
    converge(
        director,
        &inputs,
        options,
        args.plan_flags.allow_unordered_links,
        &args.plan_flags.gate_options(),
        reporter,
        cancel,
    )
    .await
}

/// Refuses a saved plan made from anything other than what the deploy would read now (state,
/// manifest and its inputs, configs, releases, stemcells), or promising other changes than a
/// deploy would make now; answers what it promises.
fn check_saved_plan(
    director: &Director,
    deployment: Option<&str>,
    path: &std::path::Path,
    args: &DeployArgs,
) -> anyhow::Result<Vec<crate::plan::reconcile::Shape>> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading the plan {}", path.display()))?;
    let saved: crate::plan::rollout::Plan =
        serde_json::from_str(&text).with_context(|| format!("{}: not a rosh plan file", path.display()))?;
    if saved.format != crate::plan::rollout::FORMAT {
        bail!(
            "{}: plan format {} is not the format {} this rosh reads",
            path.display(),
            saved.format,
            crate::plan::rollout::FORMAT
        );
    }
    let now = super::plan::make_plan(director, deployment, &args.manifest, &args.flags, &args.plan_flags)?;
    let changes = saved.made_from.changes_since(&now.plan.made_from);
    if !changes.is_empty() {
        bail!(
            "{} is stale, refusing to apply it:\n  {}\nmake a new plan with `rosh plan`",
            path.display(),
            changes.join("\n  ")
        );
    }
    let promised = crate::plan::reconcile::shape_of(&saved.instances);
    if promised != crate::plan::reconcile::shape_of(&now.plan.instances) {
        bail!("{} no longer matches what a deploy would do; make a new plan with `rosh plan`", path.display());
    }
    Ok(promised)
}

/// Everything a deploy is made from: the manifest (as deployed, variables resolved) and the
/// config versions.
pub struct Inputs {
    pub doc: Value,
    pub manifest: Deployment,
    pub cloud: CloudConfig,
    pub cloud_id: Option<i64>,
    pub runtimes: Vec<(String, RuntimeConfig)>,
    pub runtime_ids: Vec<i64>,
}

impl Inputs {
    /// What deployment `name` was last successfully deployed with: its manifest and the cloud
    /// and runtime config versions it used.
    pub fn recorded(director: &Director, name: &str) -> anyhow::Result<Inputs> {
        let state = &director.state;
        let recorded = state
            .deployment_manifest(name)?
            .ok_or_else(|| anyhow!("deployment `{name}` has no successfully deployed manifest on record"))?;
        let display = format!("the deployed manifest of `{name}`");
        let doc = yaml::parse(&recorded.text, &display)?;
        let manifest = Deployment::from_value(&doc).map_err(|e| anyhow!("{display}: {e}"))?.model;
        let cloud_id = recorded.cloud_config_id;
        let cloud = match cloud_id {
            Some(id) => {
                let config = state
                    .config_by_id(id)?
                    .ok_or_else(|| anyhow!("cloud config version {id} used by `{name}` is gone"))?;
                parse_cloud_config(&config.content, &format!("cloud config version {id}"))?
            }
            None => cloud_config(director, None)?.0,
        };
        let mut runtimes = Vec::new();
        for id in &recorded.runtime_config_ids {
            let config = state
                .config_by_id(*id)?
                .ok_or_else(|| anyhow!("runtime config version {id} used by `{name}` is gone"))?;
            runtimes.push((config.name.clone(), parse_runtime_config(&config.name, &config.content)?));
        }
        Ok(Inputs { doc, manifest, cloud, cloud_id, runtimes, runtime_ids: recorded.runtime_config_ids })
    }
}

/// Re-runs the deploy pipeline on what deployment `name` was last deployed with (recreate,
/// repair): `options.only` limits it to some instances.
pub async fn redeploy_recorded(
    director: &Director,
    name: &str,
    options: DeployOptions,
    reporter: &dyn Reporter,
    cancel: Arc<AtomicBool>,
) -> anyhow::Result<crate::converge::deploy::DeployReport> {
    let inputs = Inputs::recorded(director, name)?;
    // What was deployed is repaired as it was: a compatibility table changed since does not
    // stop a repair (its findings are still shown).
    let gate = GateOptions { skip_compat_check: true, tables: Vec::new() };
    converge(director, &inputs, options, true, &gate, reporter, cancel).await
}

/// The deploy pipeline once its inputs are read: lock, desired model, checks, compilation,
/// converge, and the record of what was deployed.
async fn converge(
    director: &Director,
    inputs: &Inputs,
    options: DeployOptions,
    allow_unordered_links: bool,
    gate_options: &GateOptions,
    reporter: &dyn Reporter,
    cancel: Arc<AtomicBool>,
) -> anyhow::Result<crate::converge::deploy::DeployReport> {
    let state = &director.state;
    let _lock = state.lock(&format!("deployment:{}", inputs.manifest.name), Some(Duration::from_secs(5)))?;

    let desired = desire(director, &inputs.manifest, &inputs.cloud, &inputs.runtimes)?;
    check_link_order(&desired, allow_unordered_links)?;
    for warning in &desired.warnings {
        reporter.note(&format!("warning: {warning}"));
    }
    // The compatibility gate: before any stemcell upload, compilation or VM.
    let report = gate(director, &desired, &cpi_infos(&director.cpis()?).await?, gate_options)?;
    if let Some(message) = report.error_message() {
        bail!("{message}");
    }
    for finding in &report.bypassed {
        reporter.note(&format!("warning: compatibility (bypassed by --skip-compat-check): {}", finding.message));
    }
    for finding in &report.warnings {
        reporter.note(&format!("warning: compatibility: {}", finding.message));
    }
    let prepared = prepare(director, &desired, &inputs.cloud, reporter).await?;
    let mut deployer = Deployer::new(
        state,
        &director.blobs,
        &prepared.cpis,
        prepared.reach.clone(),
        reporter,
        options,
        prepared.stemcell_cids.clone(),
    );
    deployer.cancel = cancel;
    let mut report = deployer.deploy(&desired, &prepared.compiled).await?;
    report.packages_compiled = prepared.packages_compiled;
    report.packages_cached = prepared.packages_cached;

    state.set_deployment_usage(
        &desired.name,
        &desired.releases,
        &desired.stemcells.iter().map(|s| (s.name.clone(), s.version.clone())).collect::<Vec<_>>(),
    )?;
    state.record_deployed_manifest(
        &desired.name,
        &yaml::to_string(&inputs.doc),
        inputs.cloud_id,
        &inputs.runtime_ids,
    )?;
    Ok(report)
}

/// The desired deployment from the manifest, the configs and what is uploaded and recorded.
pub fn desire(
    director: &Director,
    manifest: &Deployment,
    cloud: &CloudConfig,
    runtimes: &[(String, RuntimeConfig)],
) -> anyhow::Result<DesiredDeployment> {
    let state = &director.state;
    let releases = state
        .releases()?
        .into_iter()
        .map(|summary| state.release(&summary.name, &summary.version))
        .filter_map(|r| r.transpose())
        .collect::<Result<Vec<_>, _>>()?;
    let stemcells = state
        .stemcells()?
        .into_iter()
        .map(|summary| state.stemcell(&summary.name, &summary.version))
        .filter_map(|r| r.transpose())
        .collect::<Result<Vec<_>, _>>()?;
    let known = state
        .instances(&manifest.name)?
        .into_iter()
        .map(|r| crate::plan::build::KnownInstance {
            group: r.group,
            index: r.index,
            id: r.uuid,
            az: r.az,
            ips: r.ips.into_iter().filter_map(|(net, ip)| Some((net, ip.parse().ok()?))).collect(),
            bootstrap: r.bootstrap,
        })
        .collect::<Vec<_>>();
    let own_ips: std::collections::BTreeSet<std::net::IpAddr> =
        known.iter().flat_map(|k| k.ips.values().copied()).collect();
    let elsewhere =
        state.ips_in_use()?.into_iter().filter_map(|ip| ip.parse().ok()).filter(|ip| !own_ips.contains(ip)).collect();
    let new_id = crate::plan::random_id;
    let input = crate::plan::build::DesiredInput {
        manifest,
        cloud_config: cloud,
        runtime_configs: runtimes,
        releases: &releases,
        stemcells: &stemcells,
        known: &known,
        reserved_elsewhere: &elsewhere,
        new_id: &new_id,
    };
    let mut desired = crate::plan::build::build(&input).map_err(|problems| {
        anyhow!("{}: {}", manifest.name, problems.iter().map(|p| p.to_string()).collect::<Vec<_>>().join("\n  "))
    })?;
    // `update.order: links`: the groups in the link graph's order instead of the manifest's.
    let by_links = manifest.update.as_ref().and_then(|u| u.order.as_ref()) == Some(&Param::Literal(UpdateOrder::Links));
    if by_links {
        let order = crate::plan::graph::LinkGraph::new(&desired).order_by_links(&desired.groups).map_err(|cycle| {
            anyhow!("{}: update.order: links: the required links form a cycle: {cycle}", manifest.name)
        })?;
        desired.groups.sort_by_key(|g| order.iter().position(|name| name == &g.name));
    }
    Ok(desired)
}

/// Refuses an update order in which a group would start before the group providing a link it
/// requires (unless the operator allows it).
pub fn check_link_order(desired: &DesiredDeployment, allow_unordered: bool) -> anyhow::Result<()> {
    let graph = crate::plan::graph::LinkGraph::new(desired);
    if let Err(errors) = graph.check_order(&desired.groups)
        && !allow_unordered
    {
        bail!(
            "{}\n(reorder the instance groups, set `update.order: links` to update in the link graph's order, or deploy with --allow-unordered-links)",
            errors.iter().map(|e| e.to_string()).collect::<Vec<_>>().join("\n")
        );
    }
    Ok(())
}

pub fn compilation_cpi(cloud: &CloudConfig, cpis: &CpiSet) -> anyhow::Result<String> {
    let az = cloud.compilation.as_ref().and_then(|c| c.az.as_ref()).and_then(param_str);
    let cpi = az.and_then(|az| cloud.azs.iter().find(|a| a.name == az)).and_then(|a| a.cpi.clone());
    Ok(cpis.get(cpi.as_deref())?.0)
}

fn param_str(p: &Param<String>) -> Option<String> {
    match p {
        Param::Literal(v) => Some(v.clone()),
        Param::Var(_) => None,
    }
}

pub fn compile_workers(cloud: &CloudConfig, cpis: &CpiSet, reach: &Reach, deployment: &str) -> anyhow::Result<Workers> {
    let Some(compilation) = &cloud.compilation else {
        bail!("the cloud config has no `compilation` section: packages cannot be compiled");
    };
    let workers = match &compilation.workers {
        Param::Literal(n) => *n as usize,
        Param::Var(v) => bail!("compilation.workers is still the variable (({v}))"),
    };
    let network = param_str(&compilation.network).ok_or_else(|| anyhow!("compilation.network is a variable"))?;
    let mut cloud_properties = serde_json::json!({});
    if let Some(vm_type) = compilation.vm_type.as_ref().and_then(param_str) {
        let found = cloud
            .vm_types
            .iter()
            .find(|t| t.name == vm_type)
            .ok_or_else(|| anyhow!("compilation.vm_type: `{vm_type}` is not a vm_type of the cloud config"))?;
        cloud_properties = yaml::to_json(&Value::Mapping(match &found.cloud_properties {
            Param::Literal(m) => m.clone(),
            Param::Var(_) => Default::default(),
        }));
    }
    if let Some(Param::Literal(extra)) = &compilation.cloud_properties {
        cloud_properties = yaml::to_json(&Value::Mapping(extra.clone()));
    }
    let cpi = cpis.get(Some(&compilation_cpi(cloud, cpis)?))?.1;
    let env = match &compilation.env {
        Param::Literal(m) => yaml::to_json(&Value::Mapping(m.clone())),
        Param::Var(_) => serde_json::json!({}),
    };
    let mut env = if env.is_object() { env } else { serde_json::json!({}) };
    env["bosh"] = serde_json::json!({"authorized_keys": [reach.key.public_openssh()]});
    Ok(Workers {
        cpi,
        count: workers.max(1),
        cloud_properties,
        network: (network, NetworkSettings { kind: "dynamic".into(), ..Default::default() }),
        env,
        agent_prefix: format!("compilation-{deployment}"),
    })
}

/// The stemcell's cid on CPI `cpi_name`, uploading its image there the first time.
pub async fn ensure_stemcell(
    director: &Director,
    cpi_name: &str,
    cpi: &dyn Cpi,
    name: &str,
    version: &str,
) -> anyhow::Result<Cid> {
    if let Some(cid) = director.state.stemcell_cid(cpi_name, name, version)? {
        return Ok(Cid(cid));
    }
    let record =
        director.state.stemcell(name, version)?.ok_or_else(|| anyhow!("stemcell {name}/{version} is not uploaded"))?;
    let tmp = tempfile::tempdir_in(&director.state_dir)?;
    let image = tmp.path().join("image");
    if let Some(sha) = &record.image_sha256 {
        let mut reader = director.blobs.open(sha)?;
        let mut file = std::fs::File::create(&image)?;
        std::io::copy(&mut reader, &mut file)
            .with_context(|| format!("reading the image of stemcell {name}/{version}"))?;
    } else {
        std::fs::write(&image, b"")?;
    }
    let cloud_properties: serde_json::Value =
        serde_json::from_str(&record.cloud_properties_json).unwrap_or(serde_json::json!({}));
    let cid = cpi
        .create_stemcell(CreateStemcell { image_path: image.display().to_string(), cloud_properties })
        .await
        .with_context(|| format!("uploading stemcell {name}/{version} to CPI {cpi_name}"))?;
    director.state.set_stemcell_cid(cpi_name, name, version, &cid.0)?;
    Ok(cid)
}
