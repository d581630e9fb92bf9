//! What the operator commands on a deployed deployment share (`instances`, `vms`, `ssh`, `logs`,
//! `start|stop|restart`, `delete-deployment`, `manifest`, `events`, `deployments`).
//!
//! This file owns the common ground: the `-d` flag they require, choosing instances the way
//! `bosh` does (`GROUP`, `GROUP/INDEX`, `GROUP/UUID`), asking every VM's agent for its state
//! at once with a short deadline (a VM that does not answer within a few seconds is an
//! unresponsive agent, never a hang), the rollout order and `max_in_flight` read back from the
//! deployed manifest, and plain tables. The commands themselves live in [`super::ops_show`]
//! (read-only views), [`super::ops_ssh`] (`ssh`, `logs`) and [`super::ops_lifecycle`] (`start`,
//! `stop`, `restart`, `delete-deployment`); what happens to a VM is the converge engine's.

use std::time::Duration;

use anyhow::{anyhow, bail};
use rosh_cpi::SshEndpoint;

use crate::agent::protocol::{AgentState, JobState, ProcessState};
use crate::manifest::model::{Amount, Deployment, Param};
use crate::manifest::yaml;
use crate::ssh::agent_client::AgentClient;
use crate::ssh::client::{ConnectOptions, Connection};
use crate::ssh::keys::DirectorKey;
use crate::state::{InstanceRecord, State};

/// The deployment named by `-d`, or an error that says how to name one.
pub fn require_deployment(deployment: Option<String>, command: &str) -> anyhow::Result<String> {
    match deployment {
        Some(name) if !name.trim().is_empty() => Ok(name),
        _ => bail!("`rosh {command}` acts on one deployment: name it with -d/--deployment NAME (or ROSH_DEPLOYMENT)"),
    }
}

/// Whether the state knows deployment `name`.
pub fn deployment_exists(state: &State, name: &str) -> anyhow::Result<bool> {
    Ok(state.deployments()?.iter().any(|d| d.name == name))
}

/// The instances of deployment `name`, which must exist.
pub fn instances_of(state: &State, name: &str) -> anyhow::Result<Vec<InstanceRecord>> {
    if !deployment_exists(state, name)? {
        bail!("deployment `{name}` does not exist (`rosh deployments` lists them)");
    }
    Ok(state.instances(name)?)
}

/// Which instances of a group a command acts on: `GROUP`, `GROUP/INDEX` or `GROUP/UUID`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Selector {
    pub group: String,
    pub which: Which,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Which {
    All,
    Index(u64),
    Id(String),
}

impl Selector {
    pub fn parse(text: &str) -> anyhow::Result<Selector> {
        let (group, rest) = match text.split_once('/') {
            Some((group, rest)) => (group, Some(rest)),
            None => (text, None),
        };
        if group.is_empty() || rest.is_some_and(str::is_empty) || rest.is_some_and(|r| r.contains('/')) {
            bail!("`{text}`: expected GROUP, GROUP/INDEX or GROUP/ID");
        }
        let which = match rest {
            None => Which::All,
            Some(r) if r.bytes().all(|b| b.is_ascii_digit()) => {
                Which::Index(r.parse().map_err(|_| anyhow!("`{text}`: index {r} is too large"))?)
            }
            Some(r) => Which::Id(r.to_string()),
        };
        Ok(Selector { group: group.to_string(), which })
    }
}

/// The instances `selector` names (every instance when `None`), in the order given. Naming a
/// group or an instance the deployment does not have is an error that lists what it has.
pub fn select(
    records: &[InstanceRecord],
    selector: Option<&Selector>,
    deployment: &str,
) -> anyhow::Result<Vec<InstanceRecord>> {
    let Some(selector) = selector else { return Ok(records.to_vec()) };
    let in_group: Vec<&InstanceRecord> = records.iter().filter(|r| r.group == selector.group).collect();
    if in_group.is_empty() {
        let mut groups: Vec<&str> = records.iter().map(|r| r.group.as_str()).collect();
        groups.dedup();
        let known = if groups.is_empty() { "none".to_string() } else { groups.join(", ") };
        bail!(
            "deployment `{deployment}` has no instances in group `{}` (groups with instances: {known})",
            selector.group
        );
    }
    let chosen: Vec<InstanceRecord> = in_group
        .into_iter()
        .filter(|r| match &selector.which {
            Which::All => true,
            Which::Index(i) => r.index == *i,
            Which::Id(id) => &r.uuid == id,
        })
        .cloned()
        .collect();
    if chosen.is_empty() {
        let what = match &selector.which {
            Which::Index(i) => format!("index {i}"),
            Which::Id(id) => format!("id {id}"),
            Which::All => unreachable!("a group with instances has them all"),
        };
        bail!("group `{}` of deployment `{deployment}` has no instance with {what}", selector.group);
    }
    Ok(chosen)
}

/// `group/uuid (index)`, how command output names an instance.
pub fn display_name(record: &InstanceRecord) -> String {
    format!("{} ({})", record.label(), record.index)
}

/// The endpoint of an instance's VM, if it has one.
pub fn endpoint_of(record: &InstanceRecord) -> anyhow::Result<Option<SshEndpoint>> {
    match &record.vm {
        Some(vm) => {
            Ok(Some(serde_json::from_str(&vm.endpoint_json).map_err(|e| {
                anyhow!("{}: the recorded endpoint of VM {} does not read: {e}", record.label(), vm.cid)
            })?))
        }
        None => Ok(None),
    }
}

/// What asking an instance's agent for its state gave.
#[derive(Debug, Clone)]
pub enum Probe {
    /// The instance has no VM.
    NoVm,
    /// Nothing answered in time, or the answer was not the agent's.
    Unresponsive(String),
    Answered(AgentState),
}

/// How long one probe may take in all: connecting, the handshake, login and `get_state`.
pub const PROBE_DEADLINE: Duration = Duration::from_secs(5);

/// Asks the agent of every instance for its state, all at once, each within
/// [`PROBE_DEADLINE`]. Answers in the order of `records`.
pub async fn probe_all(key: &DirectorKey, records: &[InstanceRecord]) -> Vec<Probe> {
    futures::future::join_all(records.iter().map(|r| probe(key, r))).await
}

async fn probe(key: &DirectorKey, record: &InstanceRecord) -> Probe {
    let endpoint = match endpoint_of(record) {
        Ok(Some(endpoint)) => endpoint,
        Ok(None) => return Probe::NoVm,
        Err(e) => return Probe::Unresponsive(e.to_string()),
    };
    let options = ConnectOptions {
        connect_timeout: Duration::from_secs(3),
        retry_until: Duration::ZERO,
        step_timeout: PROBE_DEADLINE,
        max_sessions: 2,
    };
    let ask = async {
        let conn = Connection::connect(&endpoint, key, &options).await?;
        // No install here: a look must not change the VM (deploy installs the agent).
        let agent = AgentClient::for_endpoint(conn.clone(), &endpoint);
        let state = agent.get_state().await;
        conn.close().await;
        anyhow::Ok(state?)
    };
    match tokio::time::timeout(PROBE_DEADLINE, ask).await {
        Ok(Ok(state)) => Probe::Answered(state),
        Ok(Err(e)) => Probe::Unresponsive(format!("{e:#}")),
        Err(_) => Probe::Unresponsive(format!("no answer within {}s", PROBE_DEADLINE.as_secs())),
    }
}

impl Probe {
    /// The process state as `bosh instances` shows it; `None` without a VM.
    pub fn process_state(&self) -> Option<&'static str> {
        match self {
            Probe::NoVm => None,
            Probe::Unresponsive(_) => Some("unresponsive agent"),
            Probe::Answered(state) => Some(job_state_name(state.job_state)),
        }
    }

    pub fn error(&self) -> Option<&str> {
        match self {
            Probe::Unresponsive(why) => Some(why),
            _ => None,
        }
    }
}

pub fn job_state_name(state: JobState) -> &'static str {
    match state {
        JobState::Running => "running",
        JobState::Failing => "failing",
        JobState::Stopped => "stopped",
    }
}

pub fn process_state_name(state: ProcessState) -> &'static str {
    match state {
        ProcessState::Running => "running",
        ProcessState::Failing => "failing",
        ProcessState::Stopped => "stopped",
        ProcessState::Starting => "starting",
    }
}

/// How one instance group of a deployed manifest rolls out: its place, how many of its
/// instances change at once, and how long its processes get to run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupRollout {
    pub group: String,
    pub max_in_flight: usize,
    pub watch_max: Duration,
}

/// The rollout of the groups of `records` in the order the deployed manifest lists them
/// (groups it does not list follow, by name). Without a readable manifest: one instance at a
/// time, 30 s to run.
pub fn rollout(state: &State, deployment: &str, records: &[InstanceRecord]) -> Vec<GroupRollout> {
    let fallback = Duration::from_secs(30);
    let manifest = state
        .deployment_manifest(deployment)
        .ok()
        .flatten()
        .and_then(|m| yaml::parse(&m.text, "the deployed manifest").ok())
        .and_then(|doc| Deployment::from_value(&doc).ok())
        .map(|loaded| loaded.model);
    let mut groups: Vec<String> = Vec::new();
    if let Some(m) = &manifest {
        groups.extend(m.instance_groups.iter().map(|g| g.name.clone()));
    }
    let mut rest: Vec<String> = records.iter().map(|r| r.group.clone()).filter(|g| !groups.contains(g)).collect();
    rest.sort();
    rest.dedup();
    groups.extend(rest);
    groups
        .into_iter()
        .filter(|g| records.iter().any(|r| &r.group == g))
        .map(|group| {
            let count = records.iter().filter(|r| r.group == group).count() as u64;
            let ig = manifest.as_ref().and_then(|m| m.instance_groups.iter().find(|g| g.name == group));
            let global = manifest.as_ref().and_then(|m| m.update.as_ref());
            let local = ig.and_then(|g| g.update.as_ref());
            let max_in_flight = local
                .and_then(|u| u.max_in_flight.as_ref())
                .or_else(|| global.and_then(|u| u.max_in_flight.as_ref()))
                .and_then(Param::literal)
                .map(|a| match a {
                    Amount::Count(n) => *n,
                    Amount::Percent(p) => count * p / 100,
                })
                .unwrap_or(1)
                .max(1) as usize;
            let watch_max = local
                .and_then(|u| u.update_watch_time.as_ref())
                .or_else(|| global.and_then(|u| u.update_watch_time.as_ref()))
                .and_then(Param::literal)
                .map(|w| Duration::from_millis(w.max_ms.max(1000)))
                .unwrap_or(fallback);
            GroupRollout { group, max_in_flight, watch_max }
        })
        .collect()
}

/// Prints a left-aligned table: the header, then the rows.
pub fn print_table(header: &[&str], rows: &[Vec<String>]) {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            if i < widths.len() {
                widths[i] = widths[i].max(cell.chars().count());
            }
        }
    }
    let render = |cells: &[String]| {
        let padded: Vec<String> = cells.iter().zip(&widths).map(|(cell, width)| format!("{cell:<width$}")).collect();
        println!("{}", padded.join("  ").trim_end());
    };
    render(&header.iter().map(|h| h.to_string()).collect::<Vec<_>>());
    for row in rows {
        render(row);
    }
}

/// A multi-threaded runtime for one command.
pub fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread().enable_all().build()?)
}

/// `YYYYMMDD-HHMMSS` in UTC, for file names.
pub fn utc_stamp() -> String {
    let now = time::OffsetDateTime::now_utc();
    format!(
        "{:04}{:02}{:02}-{:02}{:02}{:02}",
        now.year(),
        u8::from(now.month()),
        now.day(),
        now.hour(),
        now.minute(),
        now.second()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selectors_read_as_bosh_writes_them() {
        assert_eq!(Selector::parse("web").unwrap(), Selector { group: "web".into(), which: Which::All });
        assert_eq!(Selector::parse("web/1").unwrap().which, Which::Index(1));
        assert_eq!(Selector::parse("web/3f2a-99").unwrap().which, Which::Id("3f2a-99".into()));
        for bad in ["", "/1", "web/", "web/1/2"] {
            assert!(Selector::parse(bad).is_err(), "{bad} should be refused");
        }
    }
}
