//! Rebuilding a lost state from the cloud (`rosh recover-state`): every VM a CPI lists with
//! rosh's tags for the deployment (director, deployment, instance_group, id, index, az,
//! bootstrap, stemcell) becomes an instance record again, with its VM, IPs, persistent disk and
//! — from its agent's `get_state` — the spec it runs, so the next `deploy` of the same manifest
//! finds nothing to change.
//!
//! What the cloud holds and what it does not:
//! - Identity and placement come from the VM's tags; the local CPI's own record of a VM gives
//!   its endpoint (with the host key it made), networks and cloud properties, and its disk
//!   records give sizes. Other CPIs tell neither endpoints nor networks through the CPI
//!   contract, so their VMs are reported as not recoverable.
//! - The spec's packages and jobs are the agent's (by digest). Its `env` is not kept anywhere in
//!   the cloud (it may hold secrets, so it is not a tag): it is recovered as the empty mapping a
//!   manifest without `env` gives; an instance group with its own `env` gets its VMs recreated
//!   by the next deploy.
//! - An agent that does not answer gives no spec: its instance is recorded dirty, and the next
//!   deploy replaces its VM.
//! - Not recoverable at all: the deployed manifest (the next `deploy` records it again; until
//!   then `recreate` and `watch` have nothing to converge to), generated variables, instances
//!   without a VM (`stop --hard`), and disks attached to no VM.
//!
//! [`recovered_spec`] is pure; [`recover`] does the IO and writes the records.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use anyhow::{Context, anyhow, bail};
use rosh_cpi::{ErrorKind, NetworkSettings, SshEndpoint, VmListing};
use rosh_cpi_local::LocalCpi;
use serde_json::Value;

use crate::agent::protocol::{AgentState, JobState};
use crate::converge::deploy::CpiSet;
use crate::plan::changes::InstanceSpec;
use crate::ssh::agent_client::AgentClient;
use crate::ssh::client::{ConnectOptions, Connection};
use crate::ssh::keys::DirectorKey;
use crate::state::{DiskRecord, Event, InstanceRecord, InstanceState, State, VmRef};

/// One VM's tags, read back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tags {
    pub group: String,
    pub id: String,
    pub index: u64,
    pub az: Option<String>,
    pub bootstrap: bool,
    pub stemcell: Option<String>,
}

/// The tags of `vm` if it is an instance of `deployment` made by rosh.
pub fn tags_of(vm: &VmListing, deployment: &str) -> Option<Tags> {
    let m = &vm.metadata;
    if m.get("director").map(String::as_str) != Some("rosh")
        || m.get("deployment").map(String::as_str) != Some(deployment)
    {
        return None;
    }
    Some(Tags {
        group: m.get("instance_group")?.clone(),
        id: m.get("id")?.clone(),
        index: m.get("index")?.parse().ok()?,
        az: m.get("az").filter(|a| !a.is_empty()).cloned(),
        bootstrap: m.get("bootstrap").is_some_and(|b| b == "true"),
        stemcell: m.get("stemcell").cloned(),
    })
}

/// The spec a VM runs, from its tags, the CPI's record of it and its agent's answer.
pub fn recovered_spec(
    stemcell: &str,
    cloud_properties: &Value,
    networks: &BTreeMap<String, NetworkSettings>,
    persistent_disk_mb: u64,
    agent: &AgentState,
) -> InstanceSpec {
    InstanceSpec {
        stemcell: stemcell.to_string(),
        cloud_properties: cloud_properties.clone(),
        networks: networks
            .iter()
            .map(|(name, n)| (name.clone(), if n.kind == "dynamic" { None } else { n.ip.clone() }))
            .collect(),
        env: Value::Object(Default::default()),
        persistent_disk_mb,
        packages: agent.packages.iter().map(|p| (p.name.clone(), p.sha256.clone())).collect(),
        jobs: agent.jobs.iter().map(|j| (j.name.clone(), j.sha256.clone())).collect(),
        job_details: BTreeMap::new(),
    }
}

/// What recovery did.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Recovered {
    /// `group/uuid` of each instance recorded, and whether its spec could be read.
    pub instances: Vec<(String, bool)>,
    pub disks: usize,
    /// VMs tagged for the deployment that could not be recovered, and why.
    pub skipped: Vec<(String, String)>,
}

/// Rebuilds deployment `deployment`'s records. `locals` are the CPIs of the set that are the
/// local CPI (by name), which can tell a VM's endpoint and networks. Refuses when the state
/// already has instances of the deployment.
pub async fn recover(
    state: &State,
    cpis: &CpiSet,
    locals: &BTreeMap<String, LocalCpi>,
    key: &DirectorKey,
    deployment: &str,
) -> anyhow::Result<Recovered> {
    let existing = state.instances(deployment)?;
    if !existing.is_empty() {
        bail!(
            "deployment `{deployment}` still has {} instance record(s): recover-state only rebuilds a lost state (nothing was changed)",
            existing.len()
        );
    }
    let mut out = Recovered::default();
    let mut found: Vec<(String, VmListing, Tags)> = Vec::new();
    for (cpi_name, cpi) in &cpis.cpis {
        match cpi.list_vms().await {
            Ok(list) => {
                for vm in list {
                    if let Some(tags) = tags_of(&vm, deployment) {
                        found.push((cpi_name.clone(), vm, tags));
                    }
                }
            }
            Err(e) if e.kind == ErrorKind::NotImplemented => {
                out.skipped
                    .push((format!("CPI {cpi_name}"), "cannot list its VMs (list_vms is not implemented)".into()));
            }
            Err(e) => return Err(anyhow::Error::new(e).context(format!("listing the VMs of CPI {cpi_name}"))),
        }
    }
    // Two VMs tagged as one instance (the local CPI replaces a VM of the same agent id, other
    // clouds may keep both): which one converged cannot be told from the tags, so the first by
    // cid is taken, the other reported, and the operator decides.
    found.sort_by(|a, b| (&a.2.group, a.2.index, &a.1.vm_cid).cmp(&(&b.2.group, b.2.index, &b.1.vm_cid)));
    let mut seen = BTreeSet::new();
    for (cpi_name, vm, tags) in found {
        let label = format!("{}/{}", tags.group, tags.id);
        if !seen.insert(tags.id.clone()) {
            out.skipped.push((vm.vm_cid.0.clone(), format!("another VM is also tagged as {label}")));
            continue;
        }
        let Some(local) = locals.get(&cpi_name) else {
            out.skipped
                .push((vm.vm_cid.0.clone(), format!("CPI {cpi_name} does not tell a VM's SSH endpoint and networks")));
            continue;
        };
        match recover_one(state, cpis, local, key, deployment, &cpi_name, &vm, &tags).await {
            Ok((answered, disks)) => {
                out.instances.push((label.clone(), answered));
                out.disks += disks;
                let _ = state.record_event(&Event::new("recover", "instance", &label).deployment(deployment).context(
                    format!(
                        "from VM {} of CPI {cpi_name}{}",
                        vm.vm_cid,
                        if answered { "" } else { " (agent did not answer: dirty)" }
                    ),
                ));
            }
            Err(e) => out.skipped.push((vm.vm_cid.0.clone(), format!("{e:#}"))),
        }
    }
    out.instances.sort();
    Ok(out)
}

#[allow(clippy::too_many_arguments)]
async fn recover_one(
    state: &State,
    cpis: &CpiSet,
    local: &LocalCpi,
    key: &DirectorKey,
    deployment: &str,
    cpi_name: &str,
    vm: &VmListing,
    tags: &Tags,
) -> anyhow::Result<(bool, usize)> {
    let record = local.vm_record(&vm.vm_cid)?.ok_or_else(|| anyhow!("the CPI has no record of VM {}", vm.vm_cid))?;
    let endpoint = local.ssh_endpoint(&vm.vm_cid).context("reading the VM's endpoint")?;
    let agent = ask(key, &endpoint).await;
    let (_, cpi) = cpis.get(Some(cpi_name))?;
    let disk_cids = cpi.get_disks(vm.vm_cid.clone()).await.context("CPI get_disks")?;
    let mut disks = Vec::new();
    for cid in &disk_cids {
        let local_disk = local.disk_record(cid)?;
        disks.push(DiskRecord {
            cid: cid.0.clone(),
            cpi: cpi_name.to_string(),
            deployment: deployment.to_string(),
            instance_uuid: Some(tags.id.clone()),
            size_mb: local_disk.as_ref().map_or(0, |d| d.size_mb),
            cloud_properties_json: local_disk.as_ref().map_or_else(|| "{}".into(), |d| d.cloud_properties.to_string()),
            active: true,
            created_at: String::new(),
            orphaned_at: None,
        });
    }
    let ips: BTreeMap<String, String> =
        record.networks.iter().filter_map(|(name, n)| Some((name.clone(), n.ip.clone()?))).collect();
    let (applied, state_of, answered) = match (&agent, &tags.stemcell) {
        (Some(answer), Some(stemcell)) => {
            let spec = recovered_spec(
                stemcell,
                &record.cloud_properties,
                &record.networks,
                disks.first().map_or(0, |d| d.size_mb),
                answer,
            );
            let state_of =
                if answer.job_state == JobState::Stopped { InstanceState::Stopped } else { InstanceState::Started };
            (Some(spec), state_of, true)
        }
        _ => (None, InstanceState::Started, false),
    };
    let instance = InstanceRecord {
        deployment: deployment.to_string(),
        group: tags.group.clone(),
        index: tags.index,
        uuid: tags.id.clone(),
        az: tags.az.clone(),
        bootstrap: tags.bootstrap,
        state: state_of,
        // No readable spec: the next deploy replaces the VM.
        dirty: applied.is_none(),
        ignore: false,
        vm: Some(VmRef {
            created_at: rfc3339(record.created_at),
            ..VmRef::new(vm.vm_cid.0.clone(), cpi_name, serde_json::to_string(&endpoint)?)
        }),
        applied_json: applied.as_ref().map(serde_json::to_string).transpose()?,
        applied_digest: applied.as_ref().map(InstanceSpec::digest),
        ips,
        updated_at: String::new(),
    };
    state.upsert_instance(&instance).with_context(|| format!("recording {}", instance.label()))?;
    for disk in &disks {
        state.record_disk(disk)?;
    }
    Ok((answered, disks.len()))
}

/// Seconds since the epoch as the state writes times (RFC 3339, UTC); empty
/// (stamped when recorded) if out of range.
fn rfc3339(secs: u64) -> String {
    match time::OffsetDateTime::from_unix_timestamp(secs as i64) {
        Ok(t) => format!(
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
            t.year(),
            u8::from(t.month()),
            t.day(),
            t.hour(),
            t.minute(),
            t.second()
        ),
        Err(_) => String::new(),
    }
}

/// The agent's state, or `None` when it does not answer within a few seconds.
async fn ask(key: &DirectorKey, endpoint: &SshEndpoint) -> Option<AgentState> {
    let options = ConnectOptions {
        connect_timeout: Duration::from_secs(5),
        retry_until: Duration::ZERO,
        step_timeout: Duration::from_secs(10),
        max_sessions: 2,
    };
    let call = async {
        let conn = Connection::connect(endpoint, key, &options).await?;
        let state = AgentClient::for_endpoint(conn.clone(), endpoint).get_state().await;
        conn.close().await;
        anyhow::Ok(state?)
    };
    tokio::time::timeout(Duration::from_secs(10), call).await.ok()?.ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::agent::protocol::{AppliedJob, AppliedPackage};
    use rosh_cpi::Cid;

    fn listing(meta: &[(&str, &str)]) -> VmListing {
        VmListing {
            vm_cid: Cid::from("vm-1"),
            agent_id: "u1".into(),
            metadata: meta.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
        }
    }

    #[test]
    fn only_rosh_vms_of_the_deployment_with_identity_tags_are_taken() {
        let full = [
            ("director", "rosh"),
            ("deployment", "demo"),
            ("instance_group", "kv"),
            ("id", "u1"),
            ("index", "2"),
            ("az", "z1"),
            ("bootstrap", "true"),
            ("stemcell", "local/1"),
        ];
        let tags = tags_of(&listing(&full), "demo").unwrap();
        assert_eq!(
            tags,
            Tags {
                group: "kv".into(),
                id: "u1".into(),
                index: 2,
                az: Some("z1".into()),
                bootstrap: true,
                stemcell: Some("local/1".into())
            }
        );
        assert!(tags_of(&listing(&full), "other").is_none());
        assert!(tags_of(&listing(&full[1..]), "demo").is_none(), "not rosh's");
        assert!(tags_of(&listing(&full[..3]), "demo").is_none(), "no id");
        // VMs tagged before az/bootstrap/stemcell were: identity only.
        let old = tags_of(&listing(&full[..5]), "demo").unwrap();
        assert_eq!((old.az, old.bootstrap, old.stemcell), (None, false, None));
    }

    #[test]
    fn the_spec_is_rebuilt_from_the_record_and_the_agent() {
        let agent = AgentState {
            agent_version: "0".into(),
            root: "/r".into(),
            job_state: JobState::Running,
            applied: Some("x".into()),
            jobs: vec![AppliedJob { name: "web".into(), sha256: "j1".into() }],
            packages: vec![AppliedPackage { name: "webapp".into(), version: "v".into(), sha256: "p1".into() }],
            processes: vec![],
            persistent_disks: vec![],
        };
        let networks = BTreeMap::from([
            (
                "default".to_string(),
                NetworkSettings { kind: "manual".into(), ip: Some("127.1.0.5".into()), ..Default::default() },
            ),
            (
                "dyn".to_string(),
                NetworkSettings { kind: "dynamic".into(), ip: Some("127.78.0.9".into()), ..Default::default() },
            ),
        ]);
        let spec = recovered_spec("local/1", &serde_json::json!({"a": 1}), &networks, 1024, &agent);
        assert_eq!(spec.stemcell, "local/1");
        assert_eq!(spec.networks["default"].as_deref(), Some("127.1.0.5"));
        assert_eq!(spec.networks["dyn"], None, "a dynamic network's address is the cloud's, not the spec's");
        assert_eq!(spec.packages["webapp"], "p1");
        assert_eq!(spec.jobs["web"], "j1");
        assert_eq!(spec.persistent_disk_mb, 1024);
        assert_eq!(spec.env, serde_json::json!({}));
    }

    #[test]
    fn vm_creation_times_read_as_the_state_writes_them() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_796_130_000), "2026-12-01T13:00:00Z");
    }
}
