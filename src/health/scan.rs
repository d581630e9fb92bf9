//! The cck scan: for every instance of a deployment, ask its CPI whether the VM exists
//! (`has_vm`, and `list_vms` where the CPI can list), its agent over SSH for its processes and
//! mounts (`get_state`, within a timeout), and the CPI for the VM's disks (`has_disk`,
//! `get_disks`), against what the state records. Instances are scanned in parallel, at most
//! [`ScanOptions::parallel`] at once, so a deployment with many dead VMs costs one timeout per
//! batch, never a hang.
//!
//! Only looks: nothing here changes a VM, a disk or the state. The agent is asked with the
//! pinned host key and without installing anything. What the answers mean is
//! [`super::problem::classify`]'s.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use futures::StreamExt;
use rosh_cpi::{Cid, ErrorKind, SshEndpoint};

use super::problem::{AgentObservation, DiskObservation, Observation, Problem, classify};
use crate::agent::protocol::{JobState, ProcessState};
use crate::converge::deploy::CpiSet;
use crate::ssh::agent_client::AgentClient;
use crate::ssh::client::{ConnectOptions, Connection};
use crate::ssh::keys::DirectorKey;
use crate::state::{InstanceRecord, InstanceState, State};

/// How a scan asks.
#[derive(Debug, Clone, Copy)]
pub struct ScanOptions {
    /// One agent's limit: connect, handshake, login and `get_state`.
    pub agent_timeout: Duration,
    /// Instances scanned at once.
    pub parallel: usize,
}

impl Default for ScanOptions {
    fn default() -> ScanOptions {
        ScanOptions { agent_timeout: Duration::from_secs(5), parallel: 32 }
    }
}

/// A whole scan's result.
#[derive(Debug, Clone)]
pub struct Scan {
    pub observations: Vec<Observation>,
    pub problems: Vec<Problem>,
}

impl Scan {
    /// The instances with a VM problem (what `recreate --failed` and the resurrector repair).
    pub fn failed_vms(&self) -> BTreeSet<String> {
        self.problems.iter().filter(|p| p.kind.is_vm()).map(|p| p.uuid.clone()).collect()
    }
}

/// Scans `records` (instances of one deployment).
pub async fn scan(
    state: &State,
    cpis: &CpiSet,
    key: &DirectorKey,
    records: &[InstanceRecord],
    options: ScanOptions,
) -> anyhow::Result<Scan> {
    // Instances the operator told rosh to leave alone (`ignore`) are not judged.
    let records: Vec<&InstanceRecord> = records.iter().filter(|r| !r.ignore).collect();
    // Each CPI's listing once: what exists even when `has_vm` says no (a VM whose agent died).
    let mut listings: BTreeMap<String, Option<BTreeSet<String>>> = BTreeMap::new();
    for vm in records.iter().filter_map(|r| r.vm.as_ref()) {
        if listings.contains_key(&vm.cpi) {
            continue;
        }
        let (_, cpi) = cpis.get(Some(&vm.cpi))?;
        let listed = match cpi.list_vms().await {
            Ok(list) => Some(list.into_iter().map(|l| l.vm_cid.0).collect()),
            Err(e) if e.kind == ErrorKind::NotImplemented => None,
            Err(e) => return Err(anyhow::Error::new(e).context(format!("listing the VMs of CPI {}", vm.cpi))),
        };
        listings.insert(vm.cpi.clone(), listed);
    }
    let disks = state.disks(records.first().map(|r| r.deployment.as_str()).unwrap_or_default())?;
    let observations: Vec<anyhow::Result<Observation>> = futures::stream::iter(records.iter().map(|&record| {
        let mine: Vec<(String, bool)> = disks
            .iter()
            .filter(|d| d.instance_uuid.as_deref() == Some(record.uuid.as_str()))
            .map(|d| (d.cid.clone(), d.active))
            .collect();
        let disk_cpi =
            disks.iter().find(|d| d.instance_uuid.as_deref() == Some(record.uuid.as_str())).map(|d| d.cpi.clone());
        observe(cpis, key, record, mine, disk_cpi, &listings, options)
    }))
    .buffered(options.parallel.max(1))
    .collect()
    .await;
    let observations = observations.into_iter().collect::<anyhow::Result<Vec<_>>>()?;
    let problems = observations.iter().flat_map(classify).collect();
    Ok(Scan { observations, problems })
}

async fn observe(
    cpis: &CpiSet,
    key: &DirectorKey,
    record: &InstanceRecord,
    disks: Vec<(String, bool)>,
    disk_cpi: Option<String>,
    listings: &BTreeMap<String, Option<BTreeSet<String>>>,
    options: ScanOptions,
) -> anyhow::Result<Observation> {
    let mut obs = Observation {
        deployment: record.deployment.clone(),
        instance: record.label(),
        uuid: record.uuid.clone(),
        index: record.index,
        vm_cid: record.vm.as_ref().map(|vm| vm.cid.clone()),
        started: record.state == InstanceState::Started,
        has_vm: None,
        listed: None,
        agent: AgentObservation::NotAsked,
        disks: Vec::new(),
    };
    let mut attached: Option<Vec<String>> = None;
    if let Some(vm) = &record.vm {
        let (_, cpi) = cpis.get(Some(&vm.cpi))?;
        let cid = Cid(vm.cid.clone());
        obs.has_vm =
            Some(cpi.has_vm(cid.clone()).await.map_err(|e| anyhow::Error::new(e).context(format!("has_vm {cid}")))?);
        obs.listed = listings.get(&vm.cpi).cloned().flatten().map(|set| set.contains(&vm.cid));
        if obs.vm_exists() {
            obs.agent = ask_agent(key, &vm.endpoint_json, options.agent_timeout, obs.started).await;
            attached = match cpi.get_disks(cid.clone()).await {
                Ok(list) => Some(list.into_iter().map(|c| c.0).collect()),
                Err(e) if matches!(e.kind, ErrorKind::VmNotFound | ErrorKind::NotImplemented) => None,
                Err(e) => return Err(anyhow::Error::new(e).context(format!("get_disks {cid}"))),
            };
        }
    }
    if let Some(cpi_name) = disk_cpi {
        let (_, cpi) = cpis.get(Some(&cpi_name))?;
        for (cid, active) in disks {
            let exists = cpi
                .has_disk(Cid(cid.clone()))
                .await
                .map_err(|e| anyhow::Error::new(e).context(format!("has_disk {cid}")))?;
            let is_attached = attached.as_ref().map(|list| list.contains(&cid));
            obs.disks.push(DiskObservation { cid, active, exists, attached: is_attached });
        }
    }
    Ok(obs)
}

/// Whether the CPI no longer knows VM `vm` at all: `has_vm` false and, where the CPI can list
/// its VMs, not listed either (a CPI that fails to answer is not taken as a missing VM).
pub async fn vm_gone(cpis: &CpiSet, vm: &crate::state::VmRef) -> bool {
    let Ok((_, cpi)) = cpis.get(Some(&vm.cpi)) else { return false };
    match cpi.has_vm(Cid(vm.cid.clone())).await {
        Ok(true) | Err(_) => return false,
        Ok(false) => {}
    }
    match cpi.list_vms().await {
        Ok(list) => !list.iter().any(|l| l.vm_cid.0 == vm.cid),
        Err(e) => e.kind == ErrorKind::NotImplemented,
    }
}

/// Asks the agent for its state within `timeout`; never installs or changes anything.
async fn ask_agent(key: &DirectorKey, endpoint_json: &str, timeout: Duration, started: bool) -> AgentObservation {
    let endpoint: SshEndpoint = match serde_json::from_str(endpoint_json) {
        Ok(e) => e,
        Err(e) => {
            return AgentObservation::Unresponsive { reason: format!("the recorded endpoint does not read: {e}") };
        }
    };
    let options = ConnectOptions {
        connect_timeout: timeout,
        retry_until: Duration::ZERO,
        step_timeout: timeout,
        max_sessions: 2,
    };
    let ask = async {
        let conn = Connection::connect(&endpoint, key, &options).await?;
        let state = AgentClient::for_endpoint(conn.clone(), &endpoint).get_state().await;
        conn.close().await;
        anyhow::Ok(state?)
    };
    match tokio::time::timeout(timeout, ask).await {
        Ok(Ok(state)) => {
            let failing = if started {
                state
                    .processes
                    .iter()
                    .filter(|p| p.state != ProcessState::Running)
                    .map(|p| format!("{}/{} {}", p.job, p.name, crate_state_name(p.state)))
                    .chain(
                        (state.job_state == JobState::Failing && state.processes.is_empty())
                            .then(|| "jobs failing".to_string()),
                    )
                    .collect()
            } else {
                Vec::new()
            };
            AgentObservation::Answered { failing, mounted: state.persistent_disks }
        }
        Ok(Err(e)) => AgentObservation::Unresponsive { reason: format!("{e:#}") },
        Err(_) => AgentObservation::Unresponsive { reason: format!("no answer within {} s", timeout.as_secs_f64()) },
    }
}

fn crate_state_name(state: ProcessState) -> &'static str {
    match state {
        ProcessState::Running => "running",
        ProcessState::Failing => "failing",
        ProcessState::Stopped => "stopped",
        ProcessState::Starting => "starting",
    }
}
