//! `rosh -d NAME start|stop|restart [GROUP[/ID]]` and `rosh -d NAME delete-deployment`:
//! changing what instances do, and removing a deployment, under the deployment's lock.
//!
//! `start`, `stop` and `restart` act on the chosen instances (all by default) group by group in
//! the deployed manifest's order, `max_in_flight` instances of a group at once; a failure ends
//! the run after its batch, naming what was not done. Each instance's new state is recorded as
//! soon as its agent took the verb. `stop` drains first (unless `--skip-drain`); `stop --hard`
//! tears the VM down through the deploy engine ([`Deployer::teardown_vm`]: drain, stop,
//! unmount and detach the disk, delete the VM) and records the instance `detached` with its disk
//! kept. Bringing a VM back is the deploy engine's job, so `start` refuses instances without
//! one, before touching any, and says to run `deploy`.
//!
//! `delete-deployment` tears every VM down (several at once), deleting each instance record as
//! soon as its VM is gone — which orphans its persistent disk, as BOSH does, never deletes it —
//! then the deployment. Without `--force` a VM that cannot be deleted stops it before the
//! deployment is removed, and the error lists what is left; with `--force` the failures are
//! reported and every record is removed anyway.

use std::collections::BTreeMap;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, bail};
use futures::StreamExt;
use serde::Serialize;

use super::deploy::Director;
use super::ops::{
    GroupRollout, Selector, deployment_exists, display_name, endpoint_of, instances_of, require_deployment, rollout,
    runtime, select,
};
use crate::agent::protocol::{JobSelection, JobState, ProcessState};
use crate::converge::deploy::{CpiSet, DeployOptions, Deployer};
use crate::converge::report::Silent;
use crate::converge::vm::Reach;
use crate::ssh::agent_client::AgentClient;
use crate::state::{InstanceRecord, InstanceState};

#[derive(Debug, clap::Args)]
pub struct StartArgs {
    /// GROUP, GROUP/INDEX or GROUP/ID; every instance when left out.
    #[arg(value_name = "GROUP[/ID]")]
    pub target: Option<String>,
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, clap::Args)]
pub struct StopArgs {
    /// GROUP, GROUP/INDEX or GROUP/ID; every instance when left out.
    #[arg(value_name = "GROUP[/ID]")]
    pub target: Option<String>,
    /// Delete the VMs too (their persistent disks are kept); `deploy` recreates them.
    #[arg(long)]
    pub hard: bool,
    /// Do not run drain scripts.
    #[arg(long)]
    pub skip_drain: bool,
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, clap::Args)]
pub struct RestartArgs {
    /// GROUP, GROUP/INDEX or GROUP/ID; every instance when left out.
    #[arg(value_name = "GROUP[/ID]")]
    pub target: Option<String>,
    /// Do not run drain scripts.
    #[arg(long)]
    pub skip_drain: bool,
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, clap::Args)]
pub struct DeleteDeploymentArgs {
    /// Go on past errors (unreachable VMs, CPI failures) and remove the records anyway.
    #[arg(long)]
    pub force: bool,
    /// No confirmation (rosh does not ask; accepted for bosh compatibility).
    #[arg(short = 'n', long = "non-interactive")]
    pub non_interactive: bool,
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verb {
    Start,
    Stop { hard: bool },
    Restart,
}

impl Verb {
    fn command(self) -> &'static str {
        match self {
            Verb::Start => "start",
            Verb::Stop { .. } => "stop",
            Verb::Restart => "restart",
        }
    }
}

pub fn start(deployment: Option<String>, args: StartArgs) -> anyhow::Result<ExitCode> {
    change(deployment, args.target.as_deref(), Verb::Start, false, args.json)
}

pub fn stop(deployment: Option<String>, args: StopArgs) -> anyhow::Result<ExitCode> {
    change(deployment, args.target.as_deref(), Verb::Stop { hard: args.hard }, args.skip_drain, args.json)
}

pub fn restart(deployment: Option<String>, args: RestartArgs) -> anyhow::Result<ExitCode> {
    change(deployment, args.target.as_deref(), Verb::Restart, args.skip_drain, args.json)
}

/// What happened to one instance.
#[derive(Debug, Serialize)]
struct Outcome {
    instance: String,
    index: u64,
    /// The state recorded for it.
    state: InstanceState,
    /// What was done, in words.
    done: String,
}

/// The parts of the director one change needs.
struct Ops<'a> {
    director: &'a Director,
    deployment: &'a str,
    reach: Reach,
    cpis: Option<CpiSet>,
    skip_drain: bool,
}

fn change(
    deployment: Option<String>,
    target: Option<&str>,
    verb: Verb,
    skip_drain: bool,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let name = require_deployment(deployment, verb.command())?;
    let selector = target.map(Selector::parse).transpose()?;
    let director = Director::open()?;
    let state = &director.state;
    let records = instances_of(state, &name)?;
    let chosen = select(&records, selector.as_ref(), &name)?;
    if matches!(verb, Verb::Start | Verb::Restart) {
        let without: Vec<String> = chosen.iter().filter(|r| r.vm.is_none()).map(display_name).collect();
        if !without.is_empty() {
            bail!(
                "{} {} no VM (stopped with --hard, or its creation did not finish): recreating VMs is the deploy's job, \
                 run `rosh -d {name} deploy MANIFEST`; nothing was {}ed",
                without.join(", "),
                if without.len() == 1 { "has" } else { "have" },
                verb.command()
            );
        }
    }
    let _lock = state.lock(&format!("deployment:{name}"), Some(Duration::from_secs(5)))?;
    let cpis = match verb {
        Verb::Stop { hard: true } => Some(director.cpis()?),
        _ => None,
    };
    let reach = Reach { boot_timeout: Duration::ZERO, step_timeout: Duration::from_secs(600), ..director.reach()? };
    let ops = Ops { director: &director, deployment: &name, reach, cpis, skip_drain };
    let plan = rollout(state, &name, &chosen);

    let rt = runtime()?;
    let mut outcomes = Vec::new();
    let mut failures = Vec::new();
    let mut left: Vec<String> = Vec::new();
    for GroupRollout { group, max_in_flight, watch_max } in &plan {
        let mine: Vec<&InstanceRecord> = chosen.iter().filter(|r| &r.group == group).collect();
        for batch in mine.chunks(*max_in_flight) {
            if !failures.is_empty() {
                left.extend(batch.iter().map(|r| display_name(r)));
                continue;
            }
            let results = rt.block_on(futures::future::join_all(batch.iter().map(|r| ops.apply(r, verb, *watch_max))));
            for (record, result) in batch.iter().zip(results) {
                match result {
                    Ok(outcome) => {
                        if !json {
                            println!("{}: {}", display_name(record), outcome.done);
                        }
                        outcomes.push(outcome);
                    }
                    Err(e) => failures.push(format!("{}: {e:#}", display_name(record))),
                }
            }
        }
    }
    if json {
        println!("{}", serde_json::to_string_pretty(&outcomes)?);
    }
    if !failures.is_empty() {
        let mut message = format!("{} failed:\n  {}", verb.command(), failures.join("\n  "));
        if !left.is_empty() {
            message.push_str(&format!("\nnot attempted: {}", left.join(", ")));
        }
        bail!(message);
    }
    Ok(ExitCode::SUCCESS)
}

impl Ops<'_> {
    async fn apply(&self, record: &InstanceRecord, verb: Verb, watch_max: Duration) -> anyhow::Result<Outcome> {
        let outcome =
            |state: InstanceState, done: String| Outcome { instance: record.label(), index: record.index, state, done };
        match verb {
            Verb::Start => {
                let agent = self.connect(record).await?;
                let elapsed = self.start(&agent, record, watch_max).await?;
                Ok(outcome(InstanceState::Started, format!("started ({:.1}s)", elapsed.as_secs_f64())))
            }
            Verb::Stop { hard: false } => {
                if record.vm.is_none() {
                    if record.state != InstanceState::Detached {
                        self.set_state(record, InstanceState::Stopped)?;
                    }
                    let state = if record.state == InstanceState::Detached {
                        InstanceState::Detached
                    } else {
                        InstanceState::Stopped
                    };
                    return Ok(outcome(state, "no VM: nothing to stop".into()));
                }
                let agent = self.connect(record).await?;
                self.stop(&agent, record).await?;
                agent.connection().close().await;
                Ok(outcome(InstanceState::Stopped, "stopped".into()))
            }
            Verb::Stop { hard: true } => {
                let done = match &record.vm {
                    Some(vm) => {
                        let cpis = self.cpis.as_ref().expect("opened for a hard stop");
                        let (_, cpi) = cpis.get(Some(&vm.cpi))?;
                        let options = DeployOptions { skip_drain: self.skip_drain, ..DeployOptions::default() };
                        let deployer = Deployer::new(
                            &self.director.state,
                            &self.director.blobs,
                            cpis,
                            self.reach.clone(),
                            &Silent,
                            options,
                            BTreeMap::new(),
                        );
                        deployer.teardown_vm(self.deployment, &record.uuid, vm, cpi.as_ref()).await?;
                        format!("stopped, VM {} deleted", vm.cid)
                    }
                    None => "no VM to delete".to_string(),
                };
                // The VM is gone on purpose: nothing is left half done for the next deploy.
                self.director.state.set_instance_dirty(self.deployment, &record.uuid, false)?;
                self.set_state(record, InstanceState::Detached)?;
                let disk = self.director.state.instance_disk(self.deployment, &record.uuid)?;
                let done = match disk {
                    Some(disk) => format!("{done}; disk {} kept", disk.cid),
                    None => done,
                };
                Ok(outcome(InstanceState::Detached, done))
            }
            Verb::Restart => {
                let agent = self.connect(record).await?;
                self.stop(&agent, record).await?;
                let elapsed = self.start(&agent, record, watch_max).await?;
                Ok(outcome(InstanceState::Started, format!("restarted ({:.1}s to run)", elapsed.as_secs_f64())))
            }
        }
    }

    async fn connect(&self, record: &InstanceRecord) -> anyhow::Result<AgentClient> {
        let endpoint = endpoint_of(record)?.ok_or_else(|| anyhow!("no VM"))?;
        tokio::time::timeout(Duration::from_secs(15), self.reach.agent(&endpoint))
            .await
            .map_err(|_| anyhow!("the VM did not answer within 15s"))?
    }

    fn set_state(&self, record: &InstanceRecord, state: InstanceState) -> anyhow::Result<()> {
        self.director.state.set_instance_state(self.deployment, &record.uuid, state)?;
        Ok(())
    }

    async fn stop(&self, agent: &AgentClient, record: &InstanceRecord) -> anyhow::Result<()> {
        if !self.skip_drain {
            agent
                .drain_fully("shutdown", Duration::from_secs(300), Duration::from_secs(3600))
                .await
                .context("draining")?;
        }
        agent.stop(&JobSelection::default()).await.context("stopping the jobs")?;
        self.set_state(record, InstanceState::Stopped)
    }

    /// Starts the jobs and waits until every process runs (at most `watch_max`); answers how
    /// long that took. The state says `started` as soon as the agent took the verb: a process
    /// that does not come up is a failing instance, still meant to run.
    async fn start(
        &self,
        agent: &AgentClient,
        record: &InstanceRecord,
        watch_max: Duration,
    ) -> anyhow::Result<Duration> {
        let began = Instant::now();
        agent.start(&JobSelection::default()).await.context("starting the jobs")?;
        self.set_state(record, InstanceState::Started)?;
        loop {
            let state = agent.get_state().await.context("asking for the process state")?;
            if state.job_state == JobState::Running && state.processes.iter().all(|p| p.state == ProcessState::Running)
            {
                return Ok(began.elapsed());
            }
            if began.elapsed() >= watch_max {
                let waiting: Vec<String> = state
                    .processes
                    .iter()
                    .filter(|p| p.state != ProcessState::Running)
                    .map(|p| format!("{}/{} {}", p.job, p.name, super::ops::process_state_name(p.state)))
                    .collect();
                bail!("not running after {}s: {}", watch_max.as_secs(), waiting.join(", "));
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

/// What delete-deployment did.
#[derive(Debug, Default, Serialize)]
struct Deleted {
    deployment: String,
    vms_deleted: Vec<String>,
    disks_orphaned: Vec<String>,
    instances_deleted: usize,
    /// With --force: what failed and was dropped from the records anyway.
    errors: Vec<String>,
}

pub fn delete_deployment(deployment: Option<String>, args: DeleteDeploymentArgs) -> anyhow::Result<ExitCode> {
    let name = require_deployment(deployment, "delete-deployment")?;
    let director = Director::open()?;
    let state = &director.state;
    if !deployment_exists(state, &name)? {
        if args.json {
            println!("{}", serde_json::json!({"deployment": name, "deleted": false}));
        } else {
            println!("Deployment `{name}` does not exist: nothing to delete");
        }
        return Ok(ExitCode::SUCCESS);
    }
    let _lock = state.lock(&format!("deployment:{name}"), Some(Duration::from_secs(5)))?;
    let records = state.instances(&name)?;
    let disks_before: Vec<String> = state.disks(&name)?.into_iter().map(|d| d.cid).collect();
    let mut report = Deleted { deployment: name.clone(), ..Deleted::default() };

    let with_vm: Vec<&InstanceRecord> = records.iter().filter(|r| r.vm.is_some()).collect();
    let orphaned_vms = state.orphaned_vms(Some(&name))?;
    let mut failures: Vec<String> = Vec::new();
    if !with_vm.is_empty() || !orphaned_vms.is_empty() {
        let opened = director.cpis().and_then(|cpis| Ok((cpis, director.reach()?)));
        match opened {
            Ok((cpis, reach)) => {
                let reach = Reach { boot_timeout: Duration::ZERO, step_timeout: Duration::from_secs(600), ..reach };
                let options = DeployOptions::default();
                let deployer = Deployer::new(state, &director.blobs, &cpis, reach, &Silent, options, BTreeMap::new());
                // The old VMs of an unfinished create-swap-delete first: they may hold a disk.
                match runtime()?.block_on(deployer.delete_orphaned_vms(&name)) {
                    Ok(_) => {
                        for orphan in &orphaned_vms {
                            if !args.json {
                                println!("{}: orphaned VM {} deleted", orphan.instance, orphan.vm.cid);
                            }
                            report.vms_deleted.push(orphan.vm.cid.clone());
                        }
                    }
                    Err(e) => failures.push(format!("orphaned VMs: {e:#}")),
                }
                let teardowns = futures::stream::iter(with_vm.iter().map(|record| {
                    let deployer = &deployer;
                    let cpis = &cpis;
                    let name = name.as_str();
                    async move {
                        let vm = record.vm.as_ref().expect("filtered on a VM");
                        let result = async {
                            let (_, cpi) = cpis.get(Some(&vm.cpi))?;
                            deployer.teardown_vm(name, &record.uuid, vm, cpi.as_ref()).await
                        }
                        .await;
                        (*record, result)
                    }
                }))
                .buffer_unordered(8)
                .collect::<Vec<_>>();
                for (record, result) in runtime()?.block_on(teardowns) {
                    let vm = &record.vm.as_ref().expect("filtered on a VM").cid;
                    match result {
                        Ok(()) => {
                            if !args.json {
                                println!("{}: VM {vm} deleted", display_name(record));
                            }
                            report.vms_deleted.push(vm.clone());
                        }
                        Err(e) => failures.push(format!(
                            "{}: VM {vm} on CPI {}: {e:#}",
                            display_name(record),
                            record.vm.as_ref().map_or("", |v| v.cpi.as_str())
                        )),
                    }
                }
            }
            Err(e) => failures.push(format!("opening the CPIs: {e:#}")),
        }
    }

    // Every instance whose VM is gone goes now; its disk becomes an orphan.
    for record in &records {
        let current = state.instance(&name, &record.uuid)?;
        if current.as_ref().is_some_and(|r| r.vm.is_none()) {
            state.delete_instance(&name, &record.uuid)?;
            report.instances_deleted += 1;
        }
    }

    if !failures.is_empty() && !args.force {
        let remaining: Vec<String> = state
            .instances(&name)?
            .iter()
            .map(|r| format!("{} (VM {})", display_name(r), r.vm.as_ref().map_or("-", |v| v.cid.as_str())))
            .collect();
        bail!(
            "deleting deployment `{name}` stopped:\n  {}\nleft: the deployment and {} instance(s): {}\n\
             fix the cause and run it again, or add --force to remove the records anyway (a VM that could not be \
             deleted then stays behind on its CPI)",
            failures.join("\n  "),
            remaining.len(),
            remaining.join(", ")
        );
    }
    for failure in &failures {
        eprintln!("warning (--force): {failure}; its record is removed, the VM may still exist");
    }
    report.errors = failures;
    state.delete_deployment(&name, args.force)?;
    let orphans = state.orphaned_disks()?;
    report.disks_orphaned = disks_before.into_iter().filter(|cid| orphans.iter().any(|o| &o.cid == cid)).collect();
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        println!(
            "Deleted deployment `{name}`: {} VM(s) deleted, {} instance record(s) removed, {} disk(s) orphaned{}",
            report.vms_deleted.len(),
            records.len(),
            report.disks_orphaned.len(),
            if report.disks_orphaned.is_empty() {
                String::new()
            } else {
                format!(" ({})", report.disks_orphaned.join(", "))
            }
        );
    }
    Ok(ExitCode::SUCCESS)
}
