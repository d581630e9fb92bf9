//! `rosh deployments`, `rosh -d NAME instances [--ps] [--details]`, `vms`, `manifest` and
//! `rosh events`: what the director has deployed and what it did, as `bosh` shows them.
//!
//! Read-only: nothing here changes the state or a VM. `instances` and `vms` ask every VM's
//! agent at once (see [`super::ops::probe_all`]), so a dead VM costs a few seconds, never a
//! hang. `manifest` prints the manifest as deploy recorded it — after ops files and variables —
//! with the values of the deployment's generated variables (held in the state) put back as
//! `((name))`, so secrets rosh made do not reach the terminal unless `--no-redact`; values given
//! with `-v`/`-l` are the operator's own and are printed as deployed.

use std::collections::BTreeMap;
use std::process::ExitCode;

use anyhow::bail;
use serde::Serialize;

use super::deploy::Director;
use super::ops::{Probe, instances_of, print_table, probe_all, process_state_name, require_deployment, runtime};
use crate::manifest::yaml::{self, Value};
use crate::ssh::keys::DirectorKey;
use crate::state::{InstanceRecord, InstanceState};

#[derive(Debug, clap::Args)]
pub struct DeploymentsArgs {
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, clap::Args)]
pub struct InstancesArgs {
    /// Show each instance's processes under it.
    #[arg(long)]
    pub ps: bool,
    /// Add the VM and disk ids, index and desired state.
    #[arg(long)]
    pub details: bool,
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, clap::Args)]
pub struct VmsArgs {
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, clap::Args)]
pub struct ManifestArgs {
    /// Print generated variable values as deployed instead of `((name))`.
    #[arg(long)]
    pub no_redact: bool,
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, clap::Args)]
pub struct EventsArgs {
    /// How many events to show (newest first).
    #[arg(long, default_value_t = 50, value_name = "N")]
    pub limit: usize,
    #[arg(long)]
    pub json: bool,
}

pub fn deployments(args: DeploymentsArgs) -> anyhow::Result<ExitCode> {
    let director = Director::open()?;
    let deployments = director.state.deployments()?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&deployments)?);
        return Ok(ExitCode::SUCCESS);
    }
    let slugs = |list: &[(String, String)]| {
        if list.is_empty() {
            "-".to_string()
        } else {
            list.iter().map(|(n, v)| format!("{n}/{v}")).collect::<Vec<_>>().join(", ")
        }
    };
    let rows: Vec<Vec<String>> = deployments
        .iter()
        .map(|d| {
            let last = match (&d.last_deployed_at, &d.deploying_since) {
                (_, Some(since)) => format!("deploying since {since}"),
                (Some(at), None) => at.clone(),
                (None, None) => "never".to_string(),
            };
            vec![d.name.clone(), slugs(&d.releases), slugs(&d.stemcells), d.instances.to_string(), last]
        })
        .collect();
    print_table(&["Name", "Releases", "Stemcells", "Instances", "Last Deployed"], &rows);
    println!("\n{} deployments", deployments.len());
    Ok(ExitCode::SUCCESS)
}

/// One instance as `instances` and `vms` show it.
#[derive(Debug, Serialize)]
struct InstanceView {
    /// `group/uuid`
    instance: String,
    group: String,
    id: String,
    index: u64,
    az: Option<String>,
    bootstrap: bool,
    /// What the instance is meant to be doing: started, stopped, detached.
    state: InstanceState,
    dirty: bool,
    /// The agent's answer (`running`, `failing`, `stopped`), `unresponsive agent`, or
    /// `missing vm` when the CPI no longer knows the VM; `None` without a VM.
    process_state: Option<&'static str>,
    /// Why the agent counts as unresponsive.
    agent_error: Option<String>,
    ips: Vec<String>,
    vm_cid: Option<String>,
    cpi: Option<String>,
    vm_created_at: Option<String>,
    disk_cids: Vec<String>,
    processes: Vec<ProcessView>,
}

#[derive(Debug, Serialize)]
struct ProcessView {
    name: String,
    job: String,
    state: &'static str,
    pid: Option<u32>,
    uptime_secs: Option<u64>,
    restarts: u32,
    last_exit: Option<String>,
}

impl InstanceView {
    fn new(record: &InstanceRecord, probe: &Probe, disks: &BTreeMap<String, Vec<String>>) -> InstanceView {
        let processes = match probe {
            Probe::Answered(state) => state
                .processes
                .iter()
                .map(|p| ProcessView {
                    name: p.name.clone(),
                    job: p.job.clone(),
                    state: process_state_name(p.state),
                    pid: p.pid,
                    uptime_secs: p.uptime_secs,
                    restarts: p.restarts,
                    last_exit: p.last_exit.clone(),
                })
                .collect(),
            _ => Vec::new(),
        };
        InstanceView {
            instance: record.label(),
            group: record.group.clone(),
            id: record.uuid.clone(),
            index: record.index,
            az: record.az.clone(),
            bootstrap: record.bootstrap,
            state: record.state,
            dirty: record.dirty,
            process_state: probe.process_state(),
            agent_error: probe.error().map(str::to_string),
            ips: record.addresses().into_values().collect(),
            vm_cid: record.vm.as_ref().map(|vm| vm.cid.clone()),
            cpi: record.vm.as_ref().map(|vm| vm.cpi.clone()),
            vm_created_at: record.vm.as_ref().map(|vm| vm.created_at.clone()),
            disk_cids: disks.get(&record.uuid).cloned().unwrap_or_default(),
            processes,
        }
    }

    /// The process state cell: the agent's word, `-` without a VM, and what else is worth
    /// knowing (dirty, detached).
    fn process_cell(&self) -> String {
        let mut cell = self.process_state.unwrap_or("-").to_string();
        let mut notes = Vec::new();
        if self.state == InstanceState::Detached {
            notes.push("detached");
        }
        if self.dirty {
            notes.push("dirty");
        }
        if !notes.is_empty() {
            cell = format!("{cell} ({})", notes.join(", "));
        }
        cell
    }

    fn ips_cell(&self) -> String {
        if self.ips.is_empty() { "-".into() } else { self.ips.join(", ") }
    }
}

/// Every instance of `name` with its agent's answer and its disks.
fn views(director: &Director, name: &str, only_with_vm: bool) -> anyhow::Result<Vec<InstanceView>> {
    let records: Vec<InstanceRecord> =
        instances_of(&director.state, name)?.into_iter().filter(|r| !only_with_vm || r.vm.is_some()).collect();
    let mut disks: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for disk in director.state.disks(name)? {
        if let Some(uuid) = disk.instance_uuid {
            disks.entry(uuid).or_default().push(disk.cid);
        }
    }
    let key = DirectorKey::load_or_create(&director.state_dir)?;
    let rt = runtime()?;
    let probes = rt.block_on(probe_all(&key, &records));
    let mut views: Vec<InstanceView> =
        records.iter().zip(&probes).map(|(r, p)| InstanceView::new(r, p, &disks)).collect();
    // An agent that does not answer on a VM its CPI no longer knows is a missing VM, as cck
    // calls it (a CPI config that cannot be opened leaves the agent's word).
    if let Ok(cpis) = director.cpis() {
        for ((view, record), probe) in views.iter_mut().zip(&records).zip(&probes) {
            if let (Some(vm), Probe::Unresponsive(_)) = (&record.vm, probe)
                && rt.block_on(crate::health::scan::vm_gone(&cpis, vm))
            {
                view.process_state = Some("missing vm");
            }
        }
    }
    Ok(views)
}

pub fn instances(deployment: Option<String>, args: InstancesArgs) -> anyhow::Result<ExitCode> {
    let name = require_deployment(deployment, "instances")?;
    let director = Director::open()?;
    let views = views(&director, &name, false)?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&views)?);
        return Ok(ExitCode::SUCCESS);
    }
    let mut header = vec!["Instance", "Process State", "AZ", "IPs"];
    if args.details {
        header.extend(["State", "VM CID", "Disk CIDs", "Index", "Bootstrap"]);
    }
    let mut rows = Vec::new();
    for v in &views {
        let mut row = vec![
            format!("{}{}", v.instance, if v.bootstrap { "*" } else { "" }),
            v.process_cell(),
            v.az.clone().unwrap_or_else(|| "-".into()),
            v.ips_cell(),
        ];
        if args.details {
            row.extend([
                v.state.to_string(),
                v.vm_cid.clone().unwrap_or_else(|| "-".into()),
                if v.disk_cids.is_empty() { "-".into() } else { v.disk_cids.join(", ") },
                v.index.to_string(),
                v.bootstrap.to_string(),
            ]);
        }
        rows.push(row);
        if args.ps {
            for p in &v.processes {
                let mut row = vec![format!("  {}", p.name), p.state.to_string(), String::new(), String::new()];
                if args.details {
                    row.extend(std::iter::repeat_n(String::new(), 5));
                }
                rows.push(row);
            }
        }
    }
    print_table(&header, &rows);
    println!("\n(*) Bootstrap instance\n\n{} instances", views.len());
    for v in views.iter().filter(|v| v.agent_error.is_some()) {
        eprintln!("{}: unresponsive agent: {}", v.instance, v.agent_error.as_deref().unwrap_or_default());
    }
    Ok(ExitCode::SUCCESS)
}

pub fn vms(deployment: Option<String>, args: VmsArgs) -> anyhow::Result<ExitCode> {
    let name = require_deployment(deployment, "vms")?;
    let director = Director::open()?;
    let views = views(&director, &name, true)?;
    if args.json {
        #[derive(Serialize)]
        struct VmView<'a> {
            instance: &'a str,
            process_state: Option<&'static str>,
            az: &'a Option<String>,
            ips: &'a [String],
            vm_cid: &'a Option<String>,
            cpi: &'a Option<String>,
            created_at: &'a Option<String>,
        }
        let list: Vec<VmView> = views
            .iter()
            .map(|v| VmView {
                instance: &v.instance,
                process_state: v.process_state,
                az: &v.az,
                ips: &v.ips,
                vm_cid: &v.vm_cid,
                cpi: &v.cpi,
                created_at: &v.vm_created_at,
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&list)?);
        return Ok(ExitCode::SUCCESS);
    }
    let rows: Vec<Vec<String>> = views
        .iter()
        .map(|v| {
            vec![
                v.instance.clone(),
                v.process_cell(),
                v.az.clone().unwrap_or_else(|| "-".into()),
                v.ips_cell(),
                v.vm_cid.clone().unwrap_or_default(),
                v.cpi.clone().unwrap_or_default(),
            ]
        })
        .collect();
    print_table(&["Instance", "Process State", "AZ", "IPs", "VM CID", "CPI"], &rows);
    println!("\n{} vms", views.len());
    Ok(ExitCode::SUCCESS)
}

pub fn manifest(deployment: Option<String>, args: ManifestArgs) -> anyhow::Result<ExitCode> {
    let name = require_deployment(deployment, "manifest")?;
    let director = Director::open()?;
    let Some(deployed) = director.state.deployment_manifest(&name)? else {
        if super::ops::deployment_exists(&director.state, &name)? {
            bail!("deployment `{name}` has not been deployed successfully yet: no manifest is recorded");
        }
        bail!("deployment `{name}` does not exist (`rosh deployments` lists them)");
    };
    let text = if args.no_redact {
        deployed.text.clone()
    } else {
        let secrets = secret_texts(&director.state.variables(&name)?);
        if secrets.is_empty() {
            deployed.text.clone()
        } else {
            let mut doc = yaml::parse(&deployed.text, "the deployed manifest")?;
            redact(&mut doc, &secrets);
            yaml::to_string(&doc)
        }
    };
    if args.json {
        let out = serde_json::json!({
            "name": name,
            "manifest": text,
            "deployed_at": deployed.deployed_at,
            "cloud_config_id": deployed.cloud_config_id,
            "runtime_config_ids": deployed.runtime_config_ids,
        });
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        print!("{text}");
        if !text.ends_with('\n') {
            println!();
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Each generated value's text → the `((reference))` that produced it: `((name))` for a
/// plain value, `((name.field))` for each text field of a structured one (a certificate's
/// `certificate`, `private_key`, `ca`). Empty texts are left out: they identify nothing.
fn secret_texts(variables: &BTreeMap<String, serde_json::Value>) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for (name, value) in variables {
        match value {
            serde_json::Value::String(text) if !text.is_empty() => {
                out.insert(text.clone(), format!("(({name}))"));
            }
            serde_json::Value::Object(fields) => {
                for (field, value) in fields {
                    if let Some(text) = value.as_str().filter(|t| !t.is_empty()) {
                        out.insert(text.to_string(), format!("(({name}.{field}))"));
                    }
                }
            }
            _ => {}
        }
    }
    out
}

/// Replaces every string of `doc` that is exactly a generated value with its reference.
fn redact(doc: &mut Value, secrets: &BTreeMap<String, String>) {
    match doc {
        Value::String(text) => {
            if let Some(reference) = secrets.get(text.as_str()) {
                *text = reference.clone();
            }
        }
        Value::Sequence(items) => items.iter_mut().for_each(|v| redact(v, secrets)),
        Value::Mapping(map) => map.iter_mut().for_each(|(_, v)| redact(v, secrets)),
        Value::Tagged(tagged) => redact(&mut tagged.value, secrets),
        _ => {}
    }
}

pub fn events(deployment: Option<String>, args: EventsArgs) -> anyhow::Result<ExitCode> {
    let director = Director::open()?;
    let events = match &deployment {
        // The state answers the newest N of all; a deployment's newest N may lie further back.
        Some(name) => director
            .state
            .events(usize::MAX)?
            .into_iter()
            .filter(|e| e.deployment.as_deref() == Some(name.as_str()))
            .take(args.limit)
            .collect(),
        None => director.state.events(args.limit)?,
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&events)?);
        return Ok(ExitCode::SUCCESS);
    }
    let rows: Vec<Vec<String>> = events
        .iter()
        .map(|e| {
            vec![
                e.id.to_string(),
                e.time.clone(),
                e.action.clone(),
                format!("{} {}", e.object_type, e.object_name),
                e.deployment.clone().unwrap_or_else(|| "-".into()),
                e.context.clone().unwrap_or_else(|| "-".into()),
                e.error.clone().unwrap_or_default(),
            ]
        })
        .collect();
    print_table(&["ID", "Time", "Action", "Object", "Deployment", "Context", "Error"], &rows);
    println!("\n{} events", events.len());
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_values_go_back_to_their_references() {
        let variables: BTreeMap<String, serde_json::Value> = [
            ("admin_password".to_string(), serde_json::json!("s3cr3t")),
            ("tls".to_string(), serde_json::json!({"certificate": "CERT", "private_key": "KEY", "ca": ""})),
        ]
        .into_iter()
        .collect();
        let mut doc = yaml::parse(
            "name: x\nproperties:\n  pw: s3cr3t\n  note: not s3cr3t\n  tls: {cert: CERT, key: KEY, list: [s3cr3t]}\n",
            "test",
        )
        .unwrap();
        redact(&mut doc, &secret_texts(&variables));
        let text = yaml::to_string(&doc);
        assert!(!text.contains("pw: s3cr3t"), "{text}");
        assert!(text.contains("((admin_password))"), "{text}");
        assert!(text.contains("not s3cr3t"), "only whole values are references: {text}");
        assert!(text.contains("((tls.certificate))") && text.contains("((tls.private_key))"), "{text}");
    }

    #[test]
    fn an_instance_without_vm_says_why() {
        let record = InstanceRecord {
            deployment: "d".into(),
            group: "kv".into(),
            index: 0,
            uuid: "u".into(),
            az: None,
            bootstrap: true,
            state: InstanceState::Detached,
            dirty: false,
            ignore: false,
            vm: None,
            applied_json: None,
            applied_digest: None,
            ips: BTreeMap::new(),
            updated_at: String::new(),
        };
        let view = InstanceView::new(&record, &Probe::NoVm, &BTreeMap::new());
        assert_eq!(view.process_cell(), "- (detached)");
        assert_eq!(super::super::ops::display_name(&record), "kv/u (0)");
    }
}
