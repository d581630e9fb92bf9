//! The deploy engine: takes a desired deployment to running VMs, recording the state after each
//! effect (DESIGN §3.3–3.6).
//!
//! Order of work: stemcells are made known to the CPIs; every package any group needs is
//! compiled or found in the cache; each instance's action is decided by
//! [`crate::plan::changes::decide`] (the one rule set) against its record; then groups are
//! updated in manifest order, batch by batch, each group canaries first and then
//! `max_in_flight` at a time, AZ by AZ. A failed canary stops its group and every later group;
//! instances not yet touched stay as they were. Instances the manifest no longer has are deleted
//! last (their persistent disks orphaned, not deleted).
//!
//! Crash safety: the VM id goes into the state the moment `create_vm` returns, with the instance
//! marked dirty; it is cleared only once the instance runs what the manifest asks. A run that
//! dies anywhere leaves a dirty record, and the next run recreates that VM.
//!
//! Job templates are rendered with the VM's root (`spec.root`), so an instance that gets a new
//! VM is rendered after `create_vm`; an instance that keeps its VM is rendered before deciding,
//! so a changed configuration is seen as such.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, bail};
use rosh_cpi::{
    Cid, Cpi, CreateDisk, CreateVm, DiskAttachment, NetworkSettings, ResizeDisk, SetVmMetadata, SshEndpoint,
};
use serde_json::{Value, json};

use crate::agent::protocol::{
    ApplyJob, ApplyPackage, ApplySpec, JobSelection, JobState, MigrateDisk, MountDisk, ProcessState, Processes,
    RunScript,
};
use crate::blobstore::LocalBlobstore;
use crate::converge::report::Reporter;
use crate::converge::spec::SpecRenderer;
use crate::converge::vm::{self, Reach};
use crate::plan::changes::{Action, InstanceSpec, Reason};
use crate::plan::desired::{DesiredDeployment, DesiredGroup, DesiredInstance, GroupLifecycle};
use crate::plan::reconcile::{DiskChange, Known, KnownDisk, Options as ReconcileOptions, Shape, reconcile};
use crate::ssh::agent_client::AgentClient;
use crate::state::{CompiledPackageRecord, DiskRecord, InstanceRecord, InstanceState, OrphanedVm, State, VmRef};

/// The CPIs of a run, by name, and the one used where an AZ names none.
#[derive(Clone)]
pub struct CpiSet {
    pub cpis: BTreeMap<String, Arc<dyn Cpi>>,
    pub default: String,
}

impl CpiSet {
    pub fn get(&self, name: Option<&str>) -> anyhow::Result<(String, Arc<dyn Cpi>)> {
        let name = name.unwrap_or(&self.default);
        let cpi = self.cpis.get(name).ok_or_else(|| anyhow!("no CPI named `{name}` in the CPI config"))?;
        Ok((name.to_string(), cpi.clone()))
    }
}

/// The longest one drain wait (or dynamic drain poll interval) is honoured.
const DRAIN_WAIT_CAP: Duration = Duration::from_secs(300);

/// Operator choices for one deploy.
#[derive(Debug, Clone, Default)]
pub struct DeployOptions {
    pub recreate: bool,
    pub canaries: Option<u64>,
    pub max_in_flight: Option<u64>,
    pub skip_drain: bool,
    /// Act on these instance uuids only (recreate, repair); every other instance is left
    /// exactly as it is.
    pub only: Option<std::collections::BTreeSet<String>>,
    /// A saved plan's promise (`deploy --plan`): the deploy stops before touching anything
    /// when its own decisions differ.
    pub expect: Option<Vec<Shape>>,
}

impl DeployOptions {
    /// The choices that change decisions.
    pub fn reconcile(&self) -> ReconcileOptions {
        ReconcileOptions { recreate: self.recreate, only: self.only.clone() }
    }
}

/// What a deploy did, for the summary line.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct DeployReport {
    pub created: usize,
    pub updated: usize,
    pub recreated: usize,
    pub deleted: usize,
    pub unchanged: usize,
    pub packages_compiled: usize,
    pub packages_cached: usize,
}

/// The compiled blob of each package of each group.
pub type CompiledByGroup = BTreeMap<String, Vec<(String, CompiledPackageRecord)>>;

/// Everything converge needs, shared by the instance tasks.
pub struct Deployer<'a> {
    pub state: &'a State,
    pub blobs: &'a LocalBlobstore,
    pub cpis: &'a CpiSet,
    pub reach: Reach,
    pub reporter: &'a dyn Reporter,
    pub options: DeployOptions,
    /// Stemcell `name/version` → its cid, per CPI name.
    pub stemcell_cids: BTreeMap<(String, String), Cid>,
    /// Renders instance specs (job templates read once).
    renderer: SpecRenderer<'a>,
    /// Set on Ctrl-C: no new instance is started; running ones finish.
    pub cancel: Arc<AtomicBool>,
}

/// The deploy stopped because the operator asked it to (Ctrl-C).
#[derive(Debug, thiserror::Error)]
#[error("interrupted: instances already being updated finished and are recorded; nothing else was started")]
pub struct Interrupted;

/// One instance's work.
struct Work<'d> {
    group: &'d DesiredGroup,
    instance: &'d DesiredInstance,
    record: Option<InstanceRecord>,
    action: Action,
    reasons: Vec<Reason>,
    disk: Option<DiskChange>,
}

impl<'a> Deployer<'a> {
    pub fn new(
        state: &'a State,
        blobs: &'a LocalBlobstore,
        cpis: &'a CpiSet,
        reach: Reach,
        reporter: &'a dyn Reporter,
        options: DeployOptions,
        stemcell_cids: BTreeMap<(String, String), Cid>,
    ) -> Deployer<'a> {
        Deployer {
            state,
            blobs,
            cpis,
            reach,
            reporter,
            options,
            stemcell_cids,
            renderer: SpecRenderer::new(blobs),
            cancel: Arc::new(AtomicBool::new(false)),
        }
    }

    /// Renders the instance's jobs for a VM whose root is `root`, stores the rendered job
    /// tarballs in the blobstore, and answers the instance's spec.
    fn instance_spec(
        &self,
        deployment: &DesiredDeployment,
        group: &DesiredGroup,
        instance: &DesiredInstance,
        compiled: &CompiledByGroup,
        root: &str,
    ) -> anyhow::Result<InstanceSpec> {
        let rendered =
            self.renderer.render(deployment, group, instance, compiled_digests(compiled, &group.name), root)?;
        self.renderer.store(&rendered)?;
        Ok(rendered.spec)
    }

    /// Deploys `desired`; `compiled` holds every group's compiled packages.
    pub async fn deploy(
        &self,
        desired: &DesiredDeployment,
        compiled: &CompiledByGroup,
    ) -> anyhow::Result<DeployReport> {
        let mut report = DeployReport::default();
        let records: BTreeMap<String, InstanceRecord> =
            self.state.instances(&desired.name)?.into_iter().map(|r| (r.uuid.clone(), r)).collect();

        // Decide every instance before touching any (the rules `plan` shows).
        let known = known_instances(self.state, &desired.name, records.values())?;
        let reconciled = reconcile(desired, &known, &self.options.reconcile(), |group, instance, k| {
            let Some(vm) = records.get(&k.uuid).and_then(|r| r.vm.as_ref()) else { return Ok(None) };
            let endpoint: SshEndpoint = serde_json::from_str(&vm.endpoint_json)?;
            let rendered = self.renderer.render(
                desired,
                group,
                instance,
                compiled_digests(compiled, &group.name),
                &endpoint.root,
            )?;
            anyhow::Ok(Some(rendered.spec))
        })?;
        if let Some(expected) = &self.options.expect {
            let now = reconciled.shape();
            if &now != expected {
                let show = |shapes: &[Shape]| {
                    shapes.iter().map(|(g, i, a, _, _)| format!("{g}/{i} {a}")).collect::<Vec<_>>().join(", ")
                };
                bail!(
                    "the deployment changed since the plan was made, refusing to apply it: the plan said [{}], a deploy now would do [{}]; make a new plan",
                    show(expected),
                    show(&now)
                );
            }
        }
        // VMs a create-swap-delete left behind go first: they may hold their instance's disk.
        self.delete_orphaned_vms(&desired.name).await?;
        let mut work: Vec<Work> = Vec::new();
        for group in desired.groups.iter().filter(|g| g.lifecycle == GroupLifecycle::Service) {
            for instance in &group.instances {
                let plan = reconciled
                    .get(&instance.id)
                    .cloned()
                    .ok_or_else(|| anyhow!("{} was not planned", instance.name()))?;
                work.push(Work {
                    group,
                    instance,
                    record: records.get(&instance.id).cloned(),
                    action: plan.action,
                    reasons: plan.reasons,
                    disk: plan.disk,
                });
            }
        }
        let removed: Vec<&InstanceRecord> = reconciled.removed.iter().filter_map(|p| records.get(&p.id)).collect();

        for w in &work {
            match w.action {
                Action::NoOp => report.unchanged += 1,
                Action::Create => report.created += 1,
                Action::Update | Action::Restart => report.updated += 1,
                Action::Recreate => report.recreated += 1,
                Action::Delete => report.deleted += 1,
            }
        }
        report.deleted += removed.len();

        // New instances get their records (index, AZ, IPs) before anything is created.
        for w in work.iter().filter(|w| w.record.is_none()) {
            let record = new_record(&desired.name, w.instance, InstanceState::Started);
            self.state.upsert_instance(&record)?;
        }
        for w in &work {
            let ips: BTreeMap<String, String> =
                w.instance.networks.iter().filter_map(|n| n.ip.clone().map(|ip| (n.name.clone(), ip))).collect();
            self.state.set_instance_ips(&desired.name, &w.instance.id, &ips)?;
        }

        // Groups in order; within a group canaries, then max_in_flight at a time.
        for group in desired.groups.iter().filter(|g| g.lifecycle == GroupLifecycle::Service) {
            let mine: Vec<&Work> = work.iter().filter(|w| w.group.name == group.name).collect();
            let changing: Vec<&Work> = mine.iter().copied().filter(|w| w.action != Action::NoOp).collect();
            if changing.is_empty() {
                continue;
            }
            self.reporter.stage(&format!("Updating instance group {}", group.name), changing.len());
            let canaries = self.options.canaries.unwrap_or(group.update.canaries).min(changing.len() as u64) as usize;
            let in_flight = self.options.max_in_flight.unwrap_or(group.update.max_in_flight).max(1) as usize;
            let mut ordered = changing.clone();
            ordered.sort_by_key(|w| (w.instance.az.clone(), w.instance.index));
            let (first, rest) = ordered.split_at(canaries);
            for w in first {
                self.check_cancel()?;
                self.converge_one(desired, w, compiled, true).await.with_context(|| {
                    format!("canary {} failed; instance group {} stopped", w.instance.name(), group.name)
                })?;
            }
            for chunk in rest.chunks(in_flight) {
                self.check_cancel()?;
                let results =
                    futures::future::join_all(chunk.iter().map(|w| self.converge_one(desired, w, compiled, false)))
                        .await;
                for (w, result) in chunk.iter().zip(results) {
                    result.with_context(|| format!("updating {}", w.instance.name()))?;
                }
            }
        }

        if !removed.is_empty() {
            self.reporter.stage("Deleting removed instances", removed.len());
            for record in removed {
                self.check_cancel()?;
                self.delete_instance(record).await?;
            }
        }
        // post-deploy, as BOSH runs it: once every instance runs, on every instance, when the
        // deploy changed something (an unchanged deploy touches no VM).
        if work.iter().any(|w| w.action != Action::NoOp) || report.deleted > 0 {
            self.post_deploy(desired).await?;
        }
        Ok(report)
    }

    /// Runs every job's `post-deploy` script on every service instance (max_in_flight of each
    /// group at a time); a failing one fails the deploy, naming the instance.
    async fn post_deploy(&self, desired: &DesiredDeployment) -> anyhow::Result<()> {
        let records: BTreeMap<String, InstanceRecord> =
            self.state.instances(&desired.name)?.into_iter().map(|r| (r.uuid.clone(), r)).collect();
        let mut targets = Vec::new();
        let with_script =
            desired.groups.iter().filter(|g| g.lifecycle == GroupLifecycle::Service && g.has_script("post-deploy"));
        for group in with_script {
            for instance in &group.instances {
                if let Some(vm) = records.get(&instance.id).and_then(|r| r.vm.clone()) {
                    targets.push((group.update.max_in_flight.max(1) as usize, instance.name(), vm));
                }
            }
        }
        if targets.is_empty() {
            return Ok(());
        }
        self.reporter.stage("Running post-deploy scripts", targets.len());
        let in_flight = targets.iter().map(|t| t.0).max().unwrap_or(1);
        for chunk in targets.chunks(in_flight) {
            let results = futures::future::join_all(chunk.iter().map(|(_, task, vm)| async move {
                let started = Instant::now();
                let endpoint: SshEndpoint = serde_json::from_str(&vm.endpoint_json)?;
                let agent = self.reach.agent(&endpoint).await?;
                let outcome = self.run_script(&agent, task, "post-deploy").await;
                match &outcome {
                    Ok(()) => self.reporter.finished(task, Ok("post-deploy"), started.elapsed()),
                    Err(e) => self.reporter.finished(task, Err(&format!("{e:#}")), started.elapsed()),
                }
                outcome
            }))
            .await;
            for ((_, task, _), result) in chunk.iter().zip(results) {
                result.with_context(|| format!("post-deploy of {task}"))?;
            }
        }
        Ok(())
    }

    fn check_cancel(&self) -> anyhow::Result<()> {
        if self.cancel.load(Ordering::SeqCst) {
            return Err(Interrupted.into());
        }
        Ok(())
    }

    /// Runs errand group `group` of `deployment`: a VM per instance made and given the group's
    /// jobs like any instance, then each job's `bin/run` instead of starting processes. The VMs
    /// are deleted afterwards unless `keep_alive`. Answers each instance's results.
    pub async fn run_errand(
        &self,
        deployment: &DesiredDeployment,
        group: &DesiredGroup,
        compiled: &CompiledByGroup,
        keep_alive: bool,
    ) -> anyhow::Result<Vec<(String, Vec<crate::agent::protocol::ScriptResult>)>> {
        let mut out = Vec::new();
        for instance in &group.instances {
            let task = instance.name();
            let (cpi_name, cpi) = self.cpis.get(instance.cpi.as_deref())?;
            let record = new_record(&deployment.name, instance, InstanceState::Stopped);
            let existing = self.state.instance(&deployment.name, &instance.id)?;
            if existing.is_none() {
                self.state.upsert_instance(&record)?;
            }
            let work = Work {
                group,
                instance,
                record: existing.clone(),
                action: Action::Create,
                reasons: Vec::new(),
                disk: None,
            };
            let (agent, endpoint) = match existing.as_ref().and_then(|r| r.vm.clone()) {
                Some(vm) => {
                    let endpoint: SshEndpoint = serde_json::from_str(&vm.endpoint_json)?;
                    (self.reach.agent(&endpoint).await?, endpoint)
                }
                None => {
                    self.reporter.step(&task, "creating VM");
                    self.create_vm(deployment, &work, &instance.id, &cpi_name, cpi.as_ref()).await?
                }
            };
            let spec = self.instance_spec(deployment, group, instance, compiled, &endpoint.root)?;
            self.push_and_apply(&agent, &task, &deployment.name, group, &spec, None).await?;
            self.run_group_script(&agent, &task, group, "pre-start").await?;
            self.reporter.step(&task, "running errand");
            let results = agent
                .run_script(&RunScript {
                    script: "run".into(),
                    jobs: Vec::new(),
                    env: BTreeMap::new(),
                    timeout_secs: Some(3600),
                })
                .await?;
            if keep_alive {
                self.state.set_instance_applied(
                    &deployment.name,
                    &instance.id,
                    &serde_json::to_string(&spec)?,
                    &spec.digest(),
                    InstanceState::Stopped,
                )?;
            } else {
                self.reporter.step(&task, "deleting VM");
                let vm = self
                    .state
                    .instance(&deployment.name, &instance.id)?
                    .and_then(|r| r.vm)
                    .ok_or_else(|| anyhow!("{task} lost its VM record"))?;
                self.teardown_vm(&deployment.name, &instance.id, &vm, cpi.as_ref()).await?;
                self.state.set_instance_dirty(&deployment.name, &instance.id, false)?;
            }
            out.push((task, results.results));
        }
        Ok(out)
    }

    /// Converges one instance according to its decided action.
    async fn converge_one(
        &self,
        deployment: &DesiredDeployment,
        w: &Work<'_>,
        compiled: &CompiledByGroup,
        canary: bool,
    ) -> anyhow::Result<()> {
        let task = w.instance.name();
        let started = Instant::now();
        let reasons: Vec<String> = w.reasons.iter().map(ToString::to_string).collect();
        self.reporter
            .step(&task, &format!("{}{} ({})", w.action, if canary { ", canary" } else { "" }, reasons.join("; ")));
        let outcome = self.converge_inner(deployment, w, compiled, &task, canary).await;
        match &outcome {
            Ok(()) => self.reporter.finished(&task, Ok(&w.action.to_string()), started.elapsed()),
            Err(e) => self.reporter.finished(&task, Err(&format!("{e:#}")), started.elapsed()),
        }
        outcome
    }

    async fn converge_inner(
        &self,
        deployment: &DesiredDeployment,
        w: &Work<'_>,
        compiled: &CompiledByGroup,
        task: &str,
        canary: bool,
    ) -> anyhow::Result<()> {
        let (cpi_name, cpi) = self.cpis.get(w.instance.cpi.as_deref())?;
        let name = &deployment.name;
        let uuid = &w.instance.id;
        // create-swap-delete: the old VM, deleted once the new one runs, and the new VM's spec,
        // rendered before the old one stops.
        let mut swapped_out = None;
        let mut rendered = None;
        let (agent, endpoint, fresh_vm) = match w.action {
            Action::NoOp | Action::Delete => return Ok(()),
            Action::Restart => {
                let vm =
                    w.record.as_ref().and_then(|r| r.vm.clone()).ok_or_else(|| anyhow!("{task} has no VM to start"))?;
                let endpoint: SshEndpoint = serde_json::from_str(&vm.endpoint_json)?;
                self.reporter.step(task, "connecting");
                let agent = self.reach.agent(&endpoint).await?;
                self.reporter.step(task, "starting");
                let watch = if canary { w.group.update.canary_watch_time } else { w.group.update.update_watch_time };
                let started = agent.start(&settling_for(watch)).await?;
                self.wait_running(&agent, task, watch, &started).await?;
                self.state.set_instance_state(name, uuid, InstanceState::Started)?;
                return Ok(());
            }
            Action::Update => {
                let vm = w
                    .record
                    .as_ref()
                    .and_then(|r| r.vm.clone())
                    .ok_or_else(|| anyhow!("{task} has no VM to update"))?;
                let endpoint: SshEndpoint = serde_json::from_str(&vm.endpoint_json)?;
                self.reporter.step(task, "connecting");
                let agent = self.reach.agent(&endpoint).await?;
                // Dirty before the jobs stop: a run that dies between here and the recorded
                // spec leaves an instance whose VM runs neither the old spec nor the new one
                // (stopped, or applied but not started). Its record still holds the old spec,
                // so without the mark a later deploy of the old manifest would see "no change"
                // and leave it stopped.
                self.state.set_instance_dirty(name, uuid, true)?;
                if !self.options.skip_drain {
                    self.reporter.step(task, "draining");
                    agent.drain_fully("update", DRAIN_WAIT_CAP, self.reach.step_timeout).await?;
                }
                self.reporter.step(task, "stopping");
                agent.stop(&JobSelection::default()).await?;
                (agent, endpoint, false)
            }
            Action::Create | Action::Recreate => {
                if let Some(vm) = w.record.as_ref().and_then(|r| r.vm.clone()) {
                    if w.group.update.create_swap_delete && w.instance.can_swap_vms() {
                        // The old VM leaves the record first, kept as an orphaned VM: a run
                        // that dies from here on leaves it named, and the next deploy deletes it.
                        swapped_out = self.state.orphan_instance_vm(name, uuid)?;
                    } else {
                        if w.group.update.create_swap_delete {
                            self.reporter.step(
                                task,
                                "create-swap-delete: the instance keeps its manual-network address, so its VM is replaced delete-create",
                            );
                        }
                        self.reporter.step(task, "deleting old VM");
                        self.teardown_vm(name, uuid, &vm, cpi.as_ref()).await?;
                    }
                }
                self.reporter.step(
                    task,
                    if swapped_out.is_some() { "creating VM (the old one runs on)" } else { "creating VM" },
                );
                // The agent id names the instance; a VM made beside the old one also names that
                // VM, so a CPI that clears out a same-named leftover never takes the old one.
                let agent_id = match &swapped_out {
                    Some(old) => format!("{uuid}/{}", old.vm.cid),
                    None => uuid.clone(),
                };
                let (agent, endpoint) = match self.create_vm(deployment, w, &agent_id, &cpi_name, cpi.as_ref()).await {
                    Ok(made) => made,
                    Err(e) => {
                        // No new VM (the CPI had no room, say): the old one, untouched and still
                        // running, stays the instance's.
                        if let Some(old) = &swapped_out
                            && self.state.restore_orphaned_vm(&old.vm.cpi, &old.vm.cid)?
                        {
                            return Err(e.context(format!(
                                "no new VM for the create-swap-delete; {} is still the instance's VM",
                                old.vm.cid
                            )));
                        }
                        return Err(e);
                    }
                };
                if let Some(old) = &swapped_out {
                    // Everything the new VM needs goes up while the old one still serves; then
                    // the old one stops and lets go of the disk.
                    let spec = self.instance_spec(deployment, w.group, w.instance, compiled, &endpoint.root)?;
                    self.reporter.step(task, "uploading packages and jobs");
                    vm::upload(&agent, self.blobs, &blobs_of(&spec)).await?;
                    rendered = Some(spec);
                    self.reporter.step(task, &format!("stopping old VM {}", old.vm.cid));
                    let (_, old_cpi) = self.cpis.get(Some(&old.vm.cpi))?;
                    let disk = self.state.instance_disk(name, uuid)?.map(|d| d.cid);
                    self.let_go(&old.vm, disk.as_deref(), old_cpi.as_ref()).await?;
                }
                (agent, endpoint, true)
            }
        };

        // A disk the group no longer has is detached and kept as an orphan; a disk of a new
        // size is detached, resized by the CPI and attached again below (migrated, as a new
        // disk type is, when the CPI cannot resize).
        let mut reattach = false;
        let mut migrate = matches!(w.disk, Some(DiskChange::Migrate { .. }));
        if let Some(change @ (DiskChange::Orphan { .. } | DiskChange::Resize { .. })) = &w.disk
            && let Some(mut disk) = self.state.instance_disk(name, uuid)?
        {
            if !fresh_vm {
                self.reporter.step(task, "detaching disk");
                agent.unmount_disk(&MountDisk { disk_id: disk.cid.clone(), hint: Value::Null }).await?;
                let vm_cid = self.vm_cid(name, uuid)?;
                vm::detach_disk(cpi.as_ref(), &vm_cid.0, &disk.cid).await.context("detaching the persistent disk")?;
            }
            match change {
                DiskChange::Resize { to_mb, .. } => {
                    self.reporter.step(task, &format!("resizing disk to {to_mb} MB"));
                    match cpi.resize_disk(ResizeDisk { disk_cid: Cid(disk.cid.clone()), new_size_mb: *to_mb }).await {
                        Ok(()) => {
                            disk.size_mb = *to_mb;
                            self.state.record_disk(&disk)?;
                        }
                        Err(e) if e.kind == rosh_cpi::ErrorKind::NotImplemented => migrate = true,
                        Err(e) => return Err(e).with_context(|| format!("resizing disk {}", disk.cid)),
                    }
                    reattach = !fresh_vm;
                }
                _ => {
                    self.state.orphan_disk(&disk.cid)?;
                }
            }
        }

        // Persistent disk: made once, attached to whichever VM the instance has.
        if let Some(disk_spec) = &w.group.persistent_disk {
            let disk = match self.state.instance_disk(name, uuid)? {
                Some(d) => d,
                None => {
                    // A new disk on a VM that stays is attached like one on a new VM.
                    reattach = true;
                    self.reporter.step(task, "creating disk");
                    let cid = cpi
                        .create_disk(CreateDisk {
                            size_mb: disk_spec.size_mb,
                            cloud_properties: disk_spec.cloud_properties.clone(),
                            vm_locality: None,
                        })
                        .await?;
                    let record = DiskRecord {
                        cid: cid.0.clone(),
                        cpi: cpi_name.clone(),
                        deployment: name.clone(),
                        instance_uuid: Some(uuid.clone()),
                        size_mb: disk_spec.size_mb,
                        cloud_properties_json: disk_spec.cloud_properties.to_string(),
                        active: true,
                        created_at: String::new(),
                        orphaned_at: None,
                    };
                    self.state.record_disk(&record)?;
                    record
                }
            };
            if fresh_vm || reattach {
                let vm_cid = self.vm_cid(name, uuid)?;
                self.reporter.step(task, "attaching disk");
                let hint = cpi.attach_disk(DiskAttachment { vm_cid, disk_cid: Cid(disk.cid.clone()) }).await?;
                agent.mount_disk(&MountDisk { disk_id: disk.cid.clone(), hint }).await?;
            }
            if migrate {
                self.migrate_disk(name, uuid, task, (&cpi_name, cpi.as_ref()), &agent, &disk, disk_spec).await?;
            }
        }

        let spec = match rendered {
            Some(spec) => spec,
            None => self.instance_spec(deployment, w.group, w.instance, compiled, &endpoint.root)?,
        };
        // A canary is watched for canary_watch_time (as BOSH does), the others for update_watch_time.
        let watch = if canary { w.group.update.canary_watch_time } else { w.group.update.update_watch_time };
        // With no pre-start script to run in between, apply starts the jobs in the same call.
        let start_with_apply = (!w.group.has_script("pre-start")).then(|| settling_for(watch));
        let started = match self.push_and_apply(&agent, task, name, w.group, &spec, start_with_apply).await? {
            Some(started) => started,
            None => {
                self.run_group_script(&agent, task, w.group, "pre-start").await?;
                self.reporter.step(task, "starting");
                agent.start(&settling_for(watch)).await?
            }
        };
        self.wait_running(&agent, task, watch, &started).await?;
        self.run_group_script(&agent, task, w.group, "post-start").await?;
        self.state.set_instance_applied(
            name,
            uuid,
            &serde_json::to_string(&spec)?,
            &spec.digest(),
            InstanceState::Started,
        )?;
        if let Some(old) = &swapped_out {
            self.reporter.step(task, &format!("deleting old VM {}", old.vm.cid));
            self.delete_orphaned_vm(old).await?;
        }
        Ok(())
    }

    /// Puts the spec's compiled packages and rendered jobs on the VM (skipping what it holds)
    /// and applies them; with `then_start`, the agent starts the jobs in the same call and the
    /// answer is `start`'s (`None` from an agent too old to do so: the caller starts them).
    async fn push_and_apply(
        &self,
        agent: &AgentClient,
        task: &str,
        deployment: &str,
        group: &DesiredGroup,
        spec: &InstanceSpec,
        then_start: Option<JobSelection>,
    ) -> anyhow::Result<Option<Processes>> {
        self.reporter.step(task, "uploading packages and jobs");
        vm::upload(agent, self.blobs, &blobs_of(spec)).await?;

        self.reporter.step(task, if then_start.is_some() { "applying and starting" } else { "applying" });
        let package_versions: BTreeMap<&str, &str> =
            group.packages.iter().map(|p| (p.name.as_str(), p.version.as_str())).collect();
        let applied = agent
            .apply(&ApplySpec {
                deployment: deployment.to_string(),
                instance: task.to_string(),
                packages: spec
                    .packages
                    .iter()
                    .map(|(n, sha)| ApplyPackage {
                        name: n.clone(),
                        version: package_versions.get(n.as_str()).map(|v| v.to_string()).unwrap_or_default(),
                        sha256: sha.clone(),
                    })
                    .collect(),
                jobs: spec.jobs.iter().map(|(n, sha)| ApplyJob { name: n.clone(), sha256: sha.clone() }).collect(),
                then_start,
            })
            .await?;
        Ok(applied.started)
    }

    /// Moves an instance's data onto a new disk as the group now describes it, as BOSH does:
    /// the new disk is made and attached beside the old one (jobs stopped), the agent copies
    /// the data across, the old disk is detached and the new one mounted in its place; then
    /// the state switches the instance to the new disk and orphans the old one in one
    /// transaction. Until that switch the new disk is recorded as an orphan, so a run that
    /// dies anywhere leaves the instance on its old disk, data intact, and the next deploy
    /// migrates again.
    #[allow(clippy::too_many_arguments)]
    async fn migrate_disk(
        &self,
        deployment: &str,
        uuid: &str,
        task: &str,
        (cpi_name, cpi): (&str, &dyn Cpi),
        agent: &AgentClient,
        old: &DiskRecord,
        want: &crate::plan::desired::DiskSpec,
    ) -> anyhow::Result<()> {
        let vm_cid = self.vm_cid(deployment, uuid)?;
        self.reporter.step(task, &format!("creating disk ({} MB) to migrate to", want.size_mb));
        let cid = cpi
            .create_disk(CreateDisk {
                size_mb: want.size_mb,
                cloud_properties: want.cloud_properties.clone(),
                vm_locality: Some(vm_cid.clone()),
            })
            .await
            .context("creating the disk to migrate to")?;
        let mut new = DiskRecord {
            cid: cid.0.clone(),
            cpi: cpi_name.to_string(),
            deployment: deployment.to_string(),
            instance_uuid: None,
            size_mb: want.size_mb,
            cloud_properties_json: want.cloud_properties.to_string(),
            active: false,
            created_at: String::new(),
            orphaned_at: None,
        };
        self.state.record_disk(&new)?;
        let beside = cpi
            .attach_disk(DiskAttachment { vm_cid: vm_cid.clone(), disk_cid: cid.clone() })
            .await
            .context("attaching the disk to migrate to")?;
        self.reporter.step(task, &format!("copying data from disk {} to {}", old.cid, new.cid));
        let copied = agent
            .migrate_disk(&MigrateDisk { from: old.cid.clone(), to: new.cid.clone(), hint: beside })
            .await
            .with_context(|| format!("copying the data of disk {} to disk {}", old.cid, new.cid))?;
        agent.unmount_disk(&MountDisk { disk_id: old.cid.clone(), hint: Value::Null }).await?;
        for disk_cid in [&old.cid, &cid.0] {
            vm::detach_disk(cpi, &vm_cid.0, disk_cid).await.context("detaching a disk during its migration")?;
        }
        let hint = cpi.attach_disk(DiskAttachment { vm_cid, disk_cid: cid }).await?;
        agent.mount_disk(&MountDisk { disk_id: new.cid.clone(), hint }).await?;
        new.instance_uuid = Some(uuid.to_string());
        self.state.replace_disk(&old.cid, &new)?;
        self.reporter.step(
            task,
            &format!(
                "disk migrated: {} files, {} bytes on {}; {} orphaned",
                copied.files, copied.bytes, new.cid, old.cid
            ),
        );
        Ok(())
    }

    fn vm_cid(&self, deployment: &str, uuid: &str) -> anyhow::Result<Cid> {
        self.state
            .instances(deployment)?
            .into_iter()
            .find(|r| r.uuid == uuid)
            .and_then(|r| r.vm)
            .map(|vm| Cid(vm.cid))
            .ok_or_else(|| anyhow!("instance {uuid} has no VM on record"))
    }

    async fn create_vm(
        &self,
        deployment: &DesiredDeployment,
        w: &Work<'_>,
        agent_id: &str,
        cpi_name: &str,
        cpi: &dyn Cpi,
    ) -> anyhow::Result<(AgentClient, SshEndpoint)> {
        let key = (cpi_name.to_string(), format!("{}/{}", w.group.stemcell.name, w.group.stemcell.version));
        let stemcell_cid = self
            .stemcell_cids
            .get(&key)
            .cloned()
            .ok_or_else(|| anyhow!("stemcell {} is not known to CPI {cpi_name}", key.1))?;
        let networks: BTreeMap<String, NetworkSettings> = w
            .instance
            .networks
            .iter()
            .map(|n| {
                (
                    n.name.clone(),
                    NetworkSettings {
                        kind: n.kind.clone(),
                        ip: n.ip.clone(),
                        netmask: n.netmask.clone(),
                        gateway: n.gateway.clone(),
                        dns: n.dns.clone(),
                        default: n.default.clone(),
                        cloud_properties: n.cloud_properties.clone(),
                    },
                )
            })
            .collect();
        let mut env = if w.group.env.is_object() { w.group.env.clone() } else { json!({}) };
        let bosh = env.as_object_mut().expect("an object").entry("bosh").or_insert(json!({}));
        if !bosh.is_object() {
            *bosh = json!({});
        }
        bosh.as_object_mut()
            .expect("an object")
            .insert("authorized_keys".into(), json!([self.reach.key.public_openssh()]));
        let disk_cids =
            self.state.instance_disk(&deployment.name, &w.instance.id)?.map(|d| vec![Cid(d.cid)]).unwrap_or_default();
        let created = cpi
            .create_vm(CreateVm {
                agent_id: agent_id.to_string(),
                stemcell_cid,
                cloud_properties: w.instance.cloud_properties.clone(),
                networks,
                disk_cids,
                env,
            })
            .await
            .with_context(|| format!("creating the VM of {}", w.instance.name()))?;
        let Some(endpoint) = created.ssh.clone() else {
            let _ = cpi.delete_vm(created.vm_cid.clone()).await;
            bail!("CPI {cpi_name} did not say how to reach VM {} over SSH", created.vm_cid);
        };
        // Recorded at once, dirty until converged: a crash from here on leaves a record. The
        // addresses the infrastructure chose (dynamic networks) are kept with the VM.
        let vm = VmRef {
            ips: assigned_ips(w.instance, &created.networks),
            ..VmRef::new(created.vm_cid.0.clone(), cpi_name, serde_json::to_string(&endpoint)?)
        };
        self.state.set_instance_vm(&deployment.name, &w.instance.id, Some(vm), true)?;
        let metadata: BTreeMap<String, String> = [
            ("director", "rosh"),
            ("deployment", deployment.name.as_str()),
            ("instance_group", w.instance.group.as_str()),
            ("id", w.instance.id.as_str()),
            ("name", &w.instance.name()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .chain([
            ("index".to_string(), w.instance.index.to_string()),
            ("az".to_string(), w.instance.az.clone().unwrap_or_default()),
            ("bootstrap".to_string(), w.instance.bootstrap.to_string()),
            ("stemcell".to_string(), format!("{}/{}", w.group.stemcell.name, w.group.stemcell.version)),
        ])
        .collect();
        cpi.set_vm_metadata(SetVmMetadata { vm_cid: created.vm_cid.clone(), metadata }).await?;
        let agent = self.reach.agent(&endpoint).await?;
        Ok((agent, endpoint))
    }

    /// Stops an instance's jobs (best effort: the VM may be gone), detaches its disk and
    /// deletes its VM, clearing the VM from the record.
    pub async fn teardown_vm(&self, deployment: &str, uuid: &str, vm: &VmRef, cpi: &dyn Cpi) -> anyhow::Result<()> {
        // Dirty first: a run that dies while the VM is being deleted leaves a record the next
        // run recreates, never one it believes converged.
        self.state.set_instance_dirty(deployment, uuid, true)?;
        let disk = self.state.instance_disk(deployment, uuid)?.map(|d| d.cid);
        self.let_go(vm, disk.as_deref(), cpi).await?;
        vm::delete_vm(cpi, &vm.cid).await?;
        self.state.set_instance_vm(deployment, uuid, None, true)?;
        Ok(())
    }

    /// Drains and stops a VM's jobs and unmounts `disk` (best effort: the VM may be gone or
    /// unreachable), then has the CPI detach `disk` from it.
    async fn let_go(&self, vm: &VmRef, disk: Option<&str>, cpi: &dyn Cpi) -> anyhow::Result<()> {
        if let Ok(endpoint) = serde_json::from_str::<SshEndpoint>(&vm.endpoint_json) {
            let quick = Reach { boot_timeout: Duration::ZERO, ..self.reach.clone() };
            if let Ok(agent) = tokio::time::timeout(Duration::from_secs(15), quick.agent(&endpoint))
                .await
                .unwrap_or_else(|_| Err(anyhow!("timed out")))
            {
                if !self.options.skip_drain {
                    let _ = agent.drain_fully("shutdown", DRAIN_WAIT_CAP, self.reach.step_timeout).await;
                }
                let _ = agent.stop(&JobSelection::default()).await;
                if let Some(disk) = disk {
                    let _ = agent.unmount_disk(&MountDisk { disk_id: disk.to_string(), hint: Value::Null }).await;
                }
                agent.connection().close().await;
            }
        }
        if let Some(disk) = disk {
            match vm::detach_disk(cpi, &vm.cid, disk).await {
                // A VM that is gone holds no disk.
                Err(e) if e.kind != rosh_cpi::ErrorKind::VmNotFound => {
                    return Err(e).context("detaching the persistent disk");
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// Deletes an orphaned VM through its CPI and forgets it.
    async fn delete_orphaned_vm(&self, orphan: &OrphanedVm) -> anyhow::Result<()> {
        let (_, cpi) = self.cpis.get(Some(&orphan.vm.cpi))?;
        vm::delete_vm(cpi.as_ref(), &orphan.vm.cid).await?;
        self.state.forget_orphaned_vm(&orphan.vm.cpi, &orphan.vm.cid)?;
        Ok(())
    }

    /// Deletes `deployment`'s orphaned VMs — the old VMs of a create-swap-delete a run did not
    /// finish: each is stopped, lets go of its instance's disk and is deleted. Answers how many.
    pub async fn delete_orphaned_vms(&self, deployment: &str) -> anyhow::Result<usize> {
        let orphans = self.state.orphaned_vms(Some(deployment))?;
        if orphans.is_empty() {
            return Ok(0);
        }
        self.reporter.stage("Deleting orphaned VMs", orphans.len());
        for orphan in &orphans {
            let task = format!("{} (old VM {})", orphan.instance, orphan.vm.cid);
            let started = Instant::now();
            self.reporter.step(&task, "stopping");
            let (_, cpi) = self.cpis.get(Some(&orphan.vm.cpi))?;
            let disk = self.state.instance_disk(deployment, &orphan.instance_uuid)?.map(|d| d.cid);
            let outcome = async {
                self.let_go(&orphan.vm, disk.as_deref(), cpi.as_ref()).await?;
                self.reporter.step(&task, "deleting");
                self.delete_orphaned_vm(orphan).await
            }
            .await;
            match &outcome {
                Ok(()) => self.reporter.finished(&task, Ok("deleted"), started.elapsed()),
                Err(e) => self.reporter.finished(&task, Err(&format!("{e:#}")), started.elapsed()),
            }
            outcome.with_context(|| format!("deleting orphaned VM {}", orphan.vm.cid))?;
        }
        Ok(orphans.len())
    }

    async fn delete_instance(&self, record: &InstanceRecord) -> anyhow::Result<()> {
        let task = format!("{}/{}", record.group, record.uuid);
        let started = Instant::now();
        self.reporter.step(&task, "deleting");
        if let Some(vm) = &record.vm {
            let (_, cpi) = self.cpis.get(Some(&vm.cpi))?;
            self.teardown_vm(&record.deployment, &record.uuid, vm, cpi.as_ref()).await?;
        }
        self.state.delete_instance(&record.deployment, &record.uuid)?;
        self.reporter.finished(&task, Ok("deleted"), started.elapsed());
        Ok(())
    }

    /// [`Self::run_script`] when one of the group's jobs has that script; no call otherwise.
    async fn run_group_script(
        &self,
        agent: &AgentClient,
        task: &str,
        group: &DesiredGroup,
        script: &str,
    ) -> anyhow::Result<()> {
        if !group.has_script(script) {
            return Ok(());
        }
        self.run_script(agent, task, script).await
    }

    async fn run_script(&self, agent: &AgentClient, task: &str, script: &str) -> anyhow::Result<()> {
        self.reporter.step(task, script);
        let results = agent
            .run_script(&RunScript {
                script: script.into(),
                jobs: Vec::new(),
                env: BTreeMap::new(),
                timeout_secs: Some(600),
            })
            .await?;
        for r in results.results {
            if r.exit_code != 0 {
                bail!(
                    "{script} of job {} exited {}: {}{}",
                    r.job,
                    r.exit_code,
                    r.stdout.trim_end(),
                    r.stderr.trim_end()
                );
            }
        }
        Ok(())
    }

    /// Waits until every process runs: at least the watch time's minimum, at most its maximum.
    /// `start` answers once its processes are running or failing; with no minimum to wait and
    /// all of them running, that answer settles it without asking again.
    async fn wait_running(
        &self,
        agent: &AgentClient,
        task: &str,
        (min_ms, max_ms): (u64, u64),
        after_start: &Processes,
    ) -> anyhow::Result<()> {
        if min_ms == 0 && after_start.processes.iter().all(|p| p.state == ProcessState::Running) {
            return Ok(());
        }
        self.reporter.step(task, "waiting for processes");
        let started = Instant::now();
        let min = Duration::from_millis(min_ms.min(max_ms));
        let max = Duration::from_millis(max_ms.max(1000));
        loop {
            let state = agent.get_state().await?;
            let all_running = state.processes.iter().all(|p| p.state == ProcessState::Running);
            if all_running && state.job_state != JobState::Failing && started.elapsed() >= min {
                return Ok(());
            }
            if started.elapsed() >= max {
                let failing: Vec<String> = state
                    .processes
                    .iter()
                    .filter(|p| p.state != ProcessState::Running)
                    .map(|p| {
                        format!(
                            "{}/{} {:?}{}",
                            p.job,
                            p.name,
                            p.state,
                            p.last_exit.as_ref().map(|e| format!(" ({e})")).unwrap_or_default()
                        )
                    })
                    .collect();
                bail!("processes not running after {} ms: {}", max.as_millis(), failing.join(", "));
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

/// `start` of every job, answered once each process has run for the watch time's minimum (the
/// agent holds that between 100 ms and 1 s; a longer minimum is waited by [`Deployer::wait_running`]).
fn settling_for((min_ms, _): (u64, u64)) -> JobSelection {
    JobSelection { jobs: Vec::new(), settle_ms: Some(min_ms) }
}

/// The IPs `create_vm` reported on the instance's networks that the director does not address
/// (dynamic ones), by network name.
fn assigned_ips(instance: &DesiredInstance, reported: &BTreeMap<String, NetworkSettings>) -> BTreeMap<String, String> {
    instance
        .networks
        .iter()
        .filter(|n| n.ip.is_none())
        .filter_map(|n| Some((n.name.clone(), reported.get(&n.name)?.ip.clone()?)))
        .collect()
}

/// Every blob an instance spec puts on its VM: compiled packages and rendered jobs.
fn blobs_of(spec: &InstanceSpec) -> Vec<String> {
    spec.packages.values().chain(spec.jobs.values()).cloned().collect()
}

/// The record of an instance that has no VM yet.
fn new_record(deployment: &str, instance: &DesiredInstance, state: InstanceState) -> InstanceRecord {
    InstanceRecord {
        deployment: deployment.to_string(),
        group: instance.group.clone(),
        index: instance.index,
        uuid: instance.id.clone(),
        az: instance.az.clone(),
        bootstrap: instance.bootstrap,
        state,
        ..InstanceRecord::default()
    }
}

/// Name → compiled blob digest of a group's packages.
fn compiled_digests(compiled: &CompiledByGroup, group: &str) -> BTreeMap<String, String> {
    compiled
        .get(group)
        .map(|list| list.iter().map(|(name, rec)| (name.clone(), rec.blob_sha256.clone())).collect())
        .unwrap_or_default()
}

/// What the state knows of `records`, as [`reconcile`] reads it.
pub fn known_instances<'r>(
    state: &State,
    deployment: &str,
    records: impl IntoIterator<Item = &'r InstanceRecord>,
) -> anyhow::Result<Vec<Known>> {
    let disks: BTreeMap<String, DiskRecord> = state
        .disks(deployment)?
        .into_iter()
        .filter(|d| d.orphaned_at.is_none() && d.active)
        .filter_map(|d| Some((d.instance_uuid.clone()?, d)))
        .collect();
    Ok(records
        .into_iter()
        .map(|r| Known {
            uuid: r.uuid.clone(),
            group: r.group.clone(),
            index: r.index,
            az: r.az.clone(),
            has_vm: r.vm.is_some(),
            dirty: r.dirty,
            stopped: r.state == InstanceState::Stopped,
            applied: r.applied_json.as_deref().and_then(|j| serde_json::from_str(j).ok()),
            disk: disks.get(&r.uuid).map(|d| KnownDisk {
                cid: d.cid.clone(),
                size_mb: d.size_mb,
                cloud_properties: serde_json::from_str(&d.cloud_properties_json).unwrap_or(Value::Null),
            }),
        })
        .collect())
}
