//! `rosh -d NAME run-errand ERRAND [--keep-alive]`: runs an errand group of the last deployed
//! manifest, as `bosh run-errand`.
//!
//! The errand's instances get VMs like any instance (packages from the compile cache, jobs
//! rendered with their links), then each job's `bin/run` runs instead of processes starting.
//! Its stdout and stderr are shown per instance and job, and the command exits with the first
//! non-zero exit code (0 when every job succeeded). The VMs are deleted afterwards unless
//! `--keep-alive`, which keeps them for the next run.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::{anyhow, bail};

use super::deploy::{Director, desire, prepare, runtime_configs};
use super::progress;
use crate::converge::deploy::{DeployOptions, Deployer};
use crate::manifest::model::{CloudConfig, Deployment};
use crate::manifest::yaml;
use crate::plan::desired::GroupLifecycle;
use crate::state::ConfigKind;

#[derive(Debug, clap::Args)]
pub struct RunErrandArgs {
    /// The errand: an instance group with `lifecycle: errand`.
    pub name: String,
    /// Keep the errand's VMs after it ran.
    #[arg(long)]
    pub keep_alive: bool,
    /// Print the results as JSON.
    #[arg(long)]
    pub json: bool,
}

pub fn run(deployment: Option<String>, args: RunErrandArgs) -> anyhow::Result<ExitCode> {
    let Some(deployment) = deployment else { bail!("run-errand needs a deployment: give -d NAME") };
    let director = Director::open()?;
    let state = &director.state;
    let deployed = state.deployment_manifest(&deployment)?.ok_or_else(|| {
        anyhow!("deployment `{deployment}` has not been deployed: run `rosh -d {deployment} deploy MANIFEST` first")
    })?;
    let doc = yaml::parse(&deployed.text, "the deployed manifest")?;
    let manifest = Deployment::from_value(&doc).map_err(|e| anyhow!("the deployed manifest: {e}"))?.model;
    let cloud_text = match deployed.cloud_config_id {
        Some(id) => state.config_by_id(id)?.map(|c| c.content),
        None => state.latest_config(ConfigKind::Cloud, "default")?.map(|c| c.content),
    }
    .ok_or_else(|| anyhow!("the cloud config deployment `{deployment}` was deployed with is gone"))?;
    let cloud = CloudConfig::from_value(&yaml::parse(&cloud_text, "cloud config")?)
        .map_err(|e| anyhow!("cloud config: {e}"))?
        .model;
    let (runtimes, _) = runtime_configs(&director)?;
    let _lock = state.lock(&format!("deployment:{deployment}"), Some(Duration::from_secs(5)))?;

    let desired = desire(&director, &manifest, &cloud, &runtimes)?;
    let Some(group) = desired.groups.iter().find(|g| g.name == args.name) else {
        let errands: Vec<&str> =
            desired.groups.iter().filter(|g| g.lifecycle == GroupLifecycle::Errand).map(|g| g.name.as_str()).collect();
        bail!(
            "deployment `{deployment}` has no errand `{}` (errands: {})",
            args.name,
            if errands.is_empty() { "none".to_string() } else { errands.join(", ") }
        );
    };
    if group.lifecycle != GroupLifecycle::Errand {
        bail!("instance group `{}` is not an errand (its lifecycle is service)", args.name);
    }
    let reporter = progress::reporter(args.json);
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let results = runtime.block_on(async {
        let prepared = prepare(&director, &desired, &cloud, reporter.as_ref()).await?;
        let deployer = Deployer::new(
            state,
            &director.blobs,
            &prepared.cpis,
            prepared.reach.clone(),
            reporter.as_ref(),
            DeployOptions::default(),
            prepared.stemcell_cids.clone(),
        );
        deployer.run_errand(&desired, group, &prepared.compiled, args.keep_alive).await
    })?;

    let mut exit = 0;
    if args.json {
        let out: Vec<serde_json::Value> = results
            .iter()
            .flat_map(|(instance, jobs)| {
                jobs.iter().map(move |r| {
                    serde_json::json!({"instance": instance, "job": r.job, "exit_code": r.exit_code, "stdout": r.stdout, "stderr": r.stderr})
                })
            })
            .collect();
        println!("{}", serde_json::json!({"event": "errand", "results": out}));
    }
    for (instance, jobs) in &results {
        for r in jobs {
            if !args.json {
                println!("Instance {instance}, job {}: exit code {}", r.job, r.exit_code);
                if !r.stdout.is_empty() {
                    println!("Stdout:\n{}", r.stdout.trim_end());
                }
                if !r.stderr.is_empty() {
                    println!("Stderr:\n{}", r.stderr.trim_end());
                }
            }
            if exit == 0 && r.exit_code != 0 {
                exit = r.exit_code;
            }
        }
    }
    if results.iter().all(|(_, jobs)| jobs.is_empty()) {
        bail!("errand `{}` ran nothing: none of its jobs has a bin/run script", args.name);
    }
    Ok(ExitCode::from(u8::try_from(exit.clamp(0, 255)).unwrap_or(1)))
}
