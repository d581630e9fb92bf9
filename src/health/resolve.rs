//! Applying cck resolutions: each problem with the resolution chosen for it, each outcome
//! recorded as an event (`repair` on the instance or disk, with the problem and resolution as
//! context, and the error when it failed).
//!
//! Recreating goes through the normal converge path, which lives above this module (the deploy
//! pipeline on the deployment's last deployed manifest): the caller hands it in as a
//! [`Recreator`], and every instance to recreate goes to it in one call, so they are recreated
//! in parallel up to `max_in_flight`, in the manifest's group order. Every other resolution is
//! a few CPI, agent or state calls done here.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use anyhow::{Context, anyhow, bail};
use rosh_cpi::{Cid, DiskAttachment, ErrorKind, SshEndpoint};

use super::problem::{Problem, ProblemKind, Resolution};
use crate::agent::protocol::{JobSelection, MountDisk, ProcessState};
use crate::converge::deploy::CpiSet;
use crate::converge::vm::Reach;
use crate::ssh::agent_client::AgentClient;
use crate::state::{Event, State};

/// Makes new VMs for instances through the converge path (persistent disks re-attached).
#[async_trait::async_trait]
pub trait Recreator: Send + Sync {
    /// Recreates the VMs of instances `uuids` of `deployment`.
    async fn recreate(&self, deployment: &str, uuids: &BTreeSet<String>) -> anyhow::Result<()>;
}

/// What a repair can reach.
pub struct Repairer<'a> {
    pub state: &'a State,
    pub cpis: &'a CpiSet,
    pub reach: Reach,
    pub recreator: &'a dyn Recreator,
    /// How long a restarted or rebooted instance gets to run its processes.
    pub watch: Duration,
}

/// How one problem's resolution ended.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Outcome {
    pub problem: Problem,
    pub resolution: Resolution,
    /// `None` when it worked.
    pub error: Option<String>,
}

impl Repairer<'_> {
    /// Applies `resolution` to each problem (skips are recorded, not acted on). Recreations
    /// run together at the end, after the other resolutions of their instances.
    pub async fn apply(&self, chosen: &[(Problem, Resolution)]) -> Vec<Outcome> {
        let mut outcomes = Vec::new();
        let mut recreate: Vec<(Problem, Resolution)> = Vec::new();
        for (problem, resolution) in chosen {
            if resolution.recreates() {
                recreate.push((problem.clone(), *resolution));
                continue;
            }
            let result = match resolution {
                Resolution::Skip => Ok(()),
                _ => self.apply_one(problem, *resolution).await,
            };
            outcomes.push(self.record(problem, *resolution, result));
        }
        if !recreate.is_empty() {
            let uuids: BTreeSet<String> = recreate.iter().map(|(p, _)| p.uuid.clone()).collect();
            let deployment = recreate[0].0.deployment.clone();
            let result = self.recreator.recreate(&deployment, &uuids).await;
            let error = result.as_ref().err().map(|e| format!("{e:#}"));
            for (problem, resolution) in &recreate {
                let one = match &error {
                    None => Ok(()),
                    Some(e) => Err(anyhow!("{e}")),
                };
                outcomes.push(self.record(problem, *resolution, one));
            }
        }
        outcomes
    }

    fn record(&self, problem: &Problem, resolution: Resolution, result: anyhow::Result<()>) -> Outcome {
        let error = result.err().map(|e| format!("{e:#}"));
        let (object_type, object) = match &problem.disk_cid {
            Some(disk) if !problem.kind.is_vm() => ("disk", disk.clone()),
            _ => ("instance", problem.instance.clone()),
        };
        let mut event = Event::new("repair", object_type, object)
            .deployment(&problem.deployment)
            .context(format!("{}: {}", problem.kind, resolution));
        if let Some(e) = &error {
            event = event.error(e.clone());
        }
        // An event that cannot be written must not hide the repair's own outcome.
        let _ = self.state.record_event(&event);
        Outcome { problem: problem.clone(), resolution, error }
    }

    async fn apply_one(&self, problem: &Problem, resolution: Resolution) -> anyhow::Result<()> {
        let record = self
            .state
            .instance(&problem.deployment, &problem.uuid)?
            .ok_or_else(|| anyhow!("instance {} is no longer in the state", problem.instance))?;
        match (problem.kind, resolution) {
            (ProblemKind::MissingVm, Resolution::DeleteReference) => {
                // The instance stays, without a VM: the next deploy (or recreate) makes one.
                self.state.set_instance_vm(&problem.deployment, &problem.uuid, None, true)?;
                Ok(())
            }
            (ProblemKind::UnresponsiveAgent, Resolution::Reboot) => {
                let vm = record.vm.as_ref().ok_or_else(|| anyhow!("{} has no VM", problem.instance))?;
                let (_, cpi) = self.cpis.get(Some(&vm.cpi))?;
                cpi.reboot_vm(Cid(vm.cid.clone())).await.context("CPI reboot_vm")?;
                let agent = self.agent(&vm.endpoint_json, true).await?;
                self.wait_running(&agent).await
            }
            (ProblemKind::FailingProcesses, Resolution::Restart) => {
                let vm = record.vm.as_ref().ok_or_else(|| anyhow!("{} has no VM", problem.instance))?;
                let agent = self.agent(&vm.endpoint_json, false).await?;
                agent.stop(&JobSelection::default()).await.context("stopping the jobs")?;
                agent.start(&JobSelection::default()).await.context("starting the jobs")?;
                self.wait_running(&agent).await
            }
            (ProblemKind::MissingDisk, Resolution::DeleteReference) => {
                let cid = problem.disk_cid.as_deref().ok_or_else(|| anyhow!("no disk named"))?;
                // The agent forgets it too (best effort: the VM may be down), so it does not
                // report a disk nobody has.
                if let Some(vm) = &record.vm
                    && let Ok(Ok(agent)) =
                        tokio::time::timeout(Duration::from_secs(15), self.agent(&vm.endpoint_json, false)).await
                {
                    let _ = agent
                        .unmount_disk(&MountDisk { disk_id: cid.to_string(), hint: serde_json::Value::Null })
                        .await;
                }
                self.state.delete_disk_record(cid)?;
                Ok(())
            }
            (ProblemKind::InactiveDisk, Resolution::Activate) => {
                let cid = problem.disk_cid.as_deref().ok_or_else(|| anyhow!("no disk named"))?;
                let mut disk = self
                    .state
                    .disks(&problem.deployment)?
                    .into_iter()
                    .find(|d| d.cid == cid)
                    .ok_or_else(|| anyhow!("disk {cid} is no longer in the state"))?;
                disk.active = true;
                self.state.record_disk(&disk)?;
                Ok(())
            }
            (ProblemKind::InactiveDisk, Resolution::Delete) => {
                let cid = problem.disk_cid.as_deref().ok_or_else(|| anyhow!("no disk named"))?;
                let disk = self
                    .state
                    .disks(&problem.deployment)?
                    .into_iter()
                    .find(|d| d.cid == cid)
                    .ok_or_else(|| anyhow!("disk {cid} is no longer in the state"))?;
                let (_, cpi) = self.cpis.get(Some(&disk.cpi))?;
                if let Some(vm) = &record.vm {
                    match crate::converge::vm::detach_disk(cpi.as_ref(), &vm.cid, cid).await {
                        // A VM that is gone holds no disk.
                        Err(e) if e.kind != ErrorKind::VmNotFound => return Err(e).context("detaching the disk"),
                        _ => {}
                    }
                }
                crate::converge::vm::delete_disk(cpi.as_ref(), cid).await.context("deleting the disk")?;
                self.state.delete_disk_record(cid)?;
                Ok(())
            }
            (ProblemKind::MountInfoMismatch, Resolution::Reattach | Resolution::ReattachAndReboot) => {
                let cid = problem.disk_cid.as_deref().ok_or_else(|| anyhow!("no disk named"))?;
                let vm = record.vm.as_ref().ok_or_else(|| anyhow!("{} has no VM", problem.instance))?;
                let (_, cpi) = self.cpis.get(Some(&vm.cpi))?;
                let vm_cid = Cid(vm.cid.clone());
                let attached = cpi.get_disks(vm_cid.clone()).await.context("CPI get_disks")?;
                let hint = if attached.iter().any(|c| c.0 == cid) {
                    serde_json::Value::Null
                } else {
                    cpi.attach_disk(DiskAttachment { vm_cid: vm_cid.clone(), disk_cid: Cid(cid.to_string()) })
                        .await
                        .context("CPI attach_disk")?
                };
                let reboot = resolution == Resolution::ReattachAndReboot;
                if reboot {
                    cpi.reboot_vm(vm_cid).await.context("CPI reboot_vm")?;
                }
                let agent = self.agent(&vm.endpoint_json, reboot).await?;
                agent.mount_disk(&MountDisk { disk_id: cid.to_string(), hint }).await.context("mounting the disk")?;
                if reboot {
                    self.wait_running(&agent).await?;
                }
                Ok(())
            }
            (kind, resolution) => bail!("{kind} cannot be resolved with {resolution}"),
        }
    }

    async fn agent(&self, endpoint_json: &str, booting: bool) -> anyhow::Result<AgentClient> {
        let endpoint: SshEndpoint = serde_json::from_str(endpoint_json).context("the recorded endpoint")?;
        let reach =
            if booting { self.reach.clone() } else { Reach { boot_timeout: Duration::ZERO, ..self.reach.clone() } };
        reach.agent(&endpoint).await
    }

    /// Waits until every process runs, up to the watch time.
    async fn wait_running(&self, agent: &AgentClient) -> anyhow::Result<()> {
        let deadline = tokio::time::Instant::now() + self.watch;
        loop {
            let state = agent.get_state().await?;
            let not_running: Vec<String> = state
                .processes
                .iter()
                .filter(|p| p.state != ProcessState::Running)
                .map(|p| format!("{}/{}", p.job, p.name))
                .collect();
            if not_running.is_empty() {
                return Ok(());
            }
            if tokio::time::Instant::now() >= deadline {
                bail!("processes not running after {} s: {}", self.watch.as_secs(), not_running.join(", "));
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

/// Problems by instance, for the repair log.
pub fn by_instance(problems: &[Problem]) -> BTreeMap<String, Vec<&Problem>> {
    let mut out: BTreeMap<String, Vec<&Problem>> = BTreeMap::new();
    for p in problems {
        out.entry(p.instance.clone()).or_default().push(p);
    }
    out
}
