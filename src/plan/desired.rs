//! The desired deployment: what a manifest, its configs and the uploaded releases say should
//! exist, instance by instance, before anything is compared with what does exist.
//!
//! These are the types every later step reads: the template renderer takes a
//! [`DesiredInstance`] and its [`DesiredJob`]s, compilation takes each group's
//! [`PackageRef`] closure, and the plan compares instances with their records. They are values:
//! no IO, no handles, serializable so a plan file can carry them.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::release::manifest::JobSpec;

/// A whole deployment, desired.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DesiredDeployment {
    pub name: String,
    /// In manifest order (which is update order, batched by `serial`).
    pub groups: Vec<DesiredGroup>,
    /// Release versions used, `(name, version)`, sorted.
    pub releases: Vec<(String, String)>,
    /// Stemcells used, sorted.
    pub stemcells: Vec<StemcellRef>,
    /// Things an operator should know that do not stop the deploy (an undeclared property…).
    pub warnings: Vec<String>,
}

/// A stemcell a group runs on.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct StemcellRef {
    /// The manifest's alias for it.
    pub alias: String,
    pub name: String,
    pub os: String,
    pub version: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GroupLifecycle {
    Service,
    Errand,
}

/// An instance group, desired.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DesiredGroup {
    pub name: String,
    pub lifecycle: GroupLifecycle,
    pub stemcell: StemcellRef,
    /// The vm_type's name (for reasons) and its cloud properties merged with the
    /// vm_extensions' (AZ cloud properties are merged per instance).
    pub vm_type: Option<String>,
    pub vm_extensions: Vec<String>,
    pub env: Value,
    pub persistent_disk: Option<DiskSpec>,
    pub jobs: Vec<DesiredJob>,
    /// Every package the group's jobs need, dependencies included, in dependency order
    /// (a package after all of its dependencies).
    pub packages: Vec<PackageRef>,
    pub update: UpdatePolicy,
    pub instances: Vec<DesiredInstance>,
}

impl DesiredGroup {
    /// The packages its VMs get: those its jobs list (as BOSH installs them). Dependencies
    /// only a package's compilation needs stay off the VM.
    pub fn runtime_packages(&self) -> impl Iterator<Item = &PackageRef> {
        self.packages
            .iter()
            .filter(|p| self.jobs.iter().any(|j| j.release == p.release && j.spec.packages.contains(&p.name)))
    }

    /// Whether any of its jobs renders `bin/<script>` (pre-start, post-start, post-deploy, …):
    /// a job's scripts are templates, so a group whose specs name none has nothing to run.
    pub fn has_script(&self, script: &str) -> bool {
        let path = format!("bin/{script}");
        self.jobs.iter().any(|j| j.spec.templates.values().any(|dest| dest.trim_start_matches("./") == path))
    }
}

/// A persistent disk.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DiskSpec {
    pub size_mb: u64,
    /// The disk_type's name, when one was used.
    pub disk_type: Option<String>,
    pub cloud_properties: Value,
}

/// How a group rolls out (the manifest's `update`, overridden by the group's own).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UpdatePolicy {
    pub canaries: u64,
    /// `max_in_flight` resolved against the group's size (a percentage becomes a count, ≥ 1).
    pub max_in_flight: u64,
    /// Milliseconds: how long to wait for processes to run after a canary's start, `(min, max)`
    /// as BOSH's `1000-30000` ranges (a single number is `(n, n)`).
    pub canary_watch_time: (u64, u64),
    pub update_watch_time: (u64, u64),
    /// `true`: this group updates after the previous one finished; `false`: with the previous
    /// groups of its batch.
    pub serial: bool,
    /// `vm_strategy: create-swap-delete` asks for the new VM first.
    pub create_swap_delete: bool,
}

/// A package a group needs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PackageRef {
    pub name: String,
    pub release: String,
    pub version: String,
    pub fingerprint: String,
    /// The source tarball's blob in the blobstore.
    pub sha256: String,
    /// Direct dependencies, by name (within the same release).
    pub dependencies: Vec<String>,
}

/// A job of a group, with everything needed to render it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DesiredJob {
    pub name: String,
    pub release: String,
    /// The release's job spec (job.MF).
    pub spec: JobSpec,
    pub fingerprint: String,
    /// The job tarball's blob in the blobstore (holds the templates).
    pub sha256: String,
    /// The properties the manifest gives this job (job-level `properties`, else the group's
    /// legacy ones, with addon/runtime-config ones merged), not yet merged with spec defaults:
    /// the renderer does that.
    pub properties: Value,
    /// Consumed link name → the resolved link (optional links that found no provider are absent).
    pub links: BTreeMap<String, ResolvedLink>,
}

/// A link as its consumer sees it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ResolvedLink {
    pub name: String,
    #[serde(rename = "type")]
    pub kind: String,
    /// The providing group and job.
    pub group: String,
    pub job: String,
    pub deployment: String,
    /// The properties the provider exposes (its spec's `provides[].properties`, valued from the
    /// provider job's properties and defaults).
    pub properties: Value,
    pub instances: Vec<LinkInstance>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LinkInstance {
    /// The group name.
    pub name: String,
    pub id: String,
    pub index: u64,
    pub az: Option<String>,
    pub address: String,
    pub bootstrap: bool,
}

/// One instance, desired.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DesiredInstance {
    pub group: String,
    pub index: u64,
    /// Stable across deploys: kept from the instance's record, new ones get a fresh uuid.
    pub id: String,
    pub az: Option<String>,
    pub bootstrap: bool,
    pub networks: Vec<InstanceNetwork>,
    /// The VM's cloud properties: vm_type + vm_extensions + the AZ's, merged in that order.
    pub cloud_properties: Value,
    /// The CPI (by name in the CPI config) that makes this instance's VM: its AZ's `cpi`.
    pub cpi: Option<String>,
}

impl DesiredInstance {
    /// `group/id`, how BOSH names an instance.
    pub fn name(&self) -> String {
        format!("{}/{}", self.group, self.id)
    }

    /// Whether a new VM for this instance can be made while its old VM still runs, as
    /// `vm_strategy: create-swap-delete` asks: only when the IaaS gives every VM its own address
    /// (all its networks are dynamic). An instance that holds a manual-network address keeps it
    /// across VMs (templates and links name it), and one address cannot be on two VMs, so its
    /// VM is replaced delete-create — BOSH does the same for static IPs.
    pub fn can_swap_vms(&self) -> bool {
        self.networks.iter().all(|n| n.ip.is_none())
    }

    /// The address others reach it at: the default network's IP.
    pub fn address(&self) -> Option<&str> {
        let default = self.networks.iter().find(|n| n.default.iter().any(|d| d == "gateway")).or(self.networks.first());
        default.and_then(|n| n.ip.as_deref())
    }
}

/// An instance's place on a network.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InstanceNetwork {
    pub name: String,
    /// `manual`, `dynamic` or `vip`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Always set on manual networks; on dynamic ones the CPI assigns it.
    pub ip: Option<String>,
    pub netmask: Option<String>,
    pub gateway: Option<String>,
    pub dns: Vec<String>,
    pub default: Vec<String>,
    pub cloud_properties: Value,
    /// Whether the IP is one of the subnet's `static` ones (given in the manifest).
    pub static_ip: bool,
}
