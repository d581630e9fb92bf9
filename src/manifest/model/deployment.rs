//! The v2 deployment manifest: [`RawDeployment`] mirrors the YAML, [`Deployment`] is the
//! validated model built from it.
//!
//! Owns every key of bosh's v2 schema (name, releases, stemcells, update, instance_groups,
//! addons, variables, features, tags, the legacy global properties; `director_uuid` is read and
//! ignored) and every rule that needs nothing but the manifest: names defined once, a job's
//! release listed under `releases`, an instance group's stemcell alias listed under
//! `stemcells`, one default network for dns and gateway, as many static IPs as instances,
//! well-formed `update` values. Checks against a cloud config or runtime configs live in
//! [`super::validate`].
//!
//! Unknown top-level and instance-group keys are warnings, not errors: operators' manifests
//! carry extras (`manifest_version`), and create-env manifests carry `resource_pools`. Required
//! keys that only a director deploy needs (an instance group's `vm_type`, `stemcell`, the
//! `update` block) are checked by `validate`, so that a create-env manifest such as
//! bosh-deployment's `bosh.yml` still reads into the model.

use serde::Deserialize;

use super::common::{
    Addon, Job, Lifecycle, RawAddon, RawJob, RawRelease, RawVariable, Release, Variable, Version, check_job_releases,
    lifecycle, read_addons, read_jobs, read_releases, read_tags, read_variables, version,
};
use super::ip::IpSpan;
use super::param::Param;
use super::problem::{Document, Item, Loaded, ModelError, Outcome, ProblemKind};
use super::raw::{self, Flag, Int, Names, Raw, Reader, Text, map_shaped};
use crate::manifest::yaml::{Mapping, Value, YamlPath};

// ---------------------------------------------------------------------------------------------
// raw

#[derive(Debug, Default, Deserialize)]
pub struct RawDeployment {
    pub name: Option<Raw<String>>,
    pub director_uuid: Option<Raw<Value>>,
    pub releases: Option<Raw<Vec<Raw<RawRelease>>>>,
    pub stemcells: Option<Raw<Vec<Raw<RawStemcell>>>>,
    pub update: Option<Raw<RawUpdate>>,
    pub instance_groups: Option<Raw<Vec<Raw<RawInstanceGroup>>>>,
    pub addons: Option<Raw<Vec<Raw<RawAddon>>>>,
    pub properties: Option<Raw<Mapping>>,
    pub variables: Option<Raw<Vec<Raw<RawVariable>>>>,
    pub features: Option<Raw<RawFeatures>>,
    pub tags: Option<Raw<Mapping>>,
    #[serde(flatten)]
    pub unknown: Mapping,
}

#[derive(Debug, Default, Deserialize)]
pub struct RawStemcell {
    pub alias: Option<Raw<String>>,
    pub os: Option<Raw<String>>,
    pub name: Option<Raw<String>>,
    pub version: Option<Raw<Text>>,
    #[serde(flatten)]
    pub unknown: Mapping,
}

#[derive(Debug, Default, Deserialize)]
pub struct RawUpdate {
    pub canaries: Option<Raw<Text>>,
    pub max_in_flight: Option<Raw<Text>>,
    pub canary_watch_time: Option<Raw<Text>>,
    pub update_watch_time: Option<Raw<Text>>,
    pub serial: Option<Raw<Flag>>,
    pub vm_strategy: Option<Raw<String>>,
    pub initial_deploy_az_update_strategy: Option<Raw<String>>,
    /// rosh's own: `links` orders instance groups by the link graph.
    pub order: Option<Raw<String>>,
    #[serde(flatten)]
    pub unknown: Mapping,
}

#[derive(Debug, Default, Deserialize)]
pub struct RawInstanceGroup {
    pub name: Option<Raw<String>>,
    pub azs: Option<Raw<Vec<Raw<String>>>>,
    pub instances: Option<Raw<Int>>,
    pub lifecycle: Option<Raw<String>>,
    pub jobs: Option<Raw<Vec<Raw<RawJob>>>>,
    pub vm_type: Option<Raw<String>>,
    pub vm_resources: Option<Raw<RawVmResources>>,
    pub vm_extensions: Option<Raw<Vec<Raw<String>>>>,
    pub stemcell: Option<Raw<String>>,
    pub persistent_disk: Option<Raw<Int>>,
    pub persistent_disk_type: Option<Raw<String>>,
    pub persistent_disks: Option<Raw<Vec<Raw<RawPersistentDisk>>>>,
    pub networks: Option<Raw<Vec<Raw<RawNetworkRef>>>>,
    pub update: Option<Raw<RawUpdate>>,
    pub migrated_from: Option<Raw<Vec<Raw<RawMigratedFrom>>>>,
    pub env: Option<Raw<Mapping>>,
    pub properties: Option<Raw<Mapping>>,
    #[serde(flatten)]
    pub unknown: Mapping,
}

#[derive(Debug, Default, Deserialize)]
pub struct RawVmResources {
    pub cpu: Option<Raw<Int>>,
    pub ram: Option<Raw<Int>>,
    pub ephemeral_disk_size: Option<Raw<Int>>,
    #[serde(flatten)]
    pub unknown: Mapping,
}

#[derive(Debug, Default, Deserialize)]
pub struct RawPersistentDisk {
    pub name: Option<Raw<String>>,
    #[serde(rename = "type")]
    pub kind: Option<Raw<String>>,
    #[serde(flatten)]
    pub unknown: Mapping,
}

#[derive(Debug, Default, Deserialize)]
pub struct RawNetworkRef {
    pub name: Option<Raw<String>>,
    pub static_ips: Option<Raw<Vec<Raw<String>>>>,
    pub default: Option<Raw<Vec<Raw<String>>>>,
    pub nic_group: Option<Raw<Text>>,
    #[serde(flatten)]
    pub unknown: Mapping,
}

#[derive(Debug, Default, Deserialize)]
pub struct RawMigratedFrom {
    pub name: Option<Raw<String>>,
    pub az: Option<Raw<String>>,
    #[serde(flatten)]
    pub unknown: Mapping,
}

#[derive(Debug, Default, Deserialize)]
pub struct RawFeatures {
    pub use_dns_addresses: Option<Raw<Flag>>,
    pub use_short_dns_addresses: Option<Raw<Flag>>,
    pub randomize_az_placement: Option<Raw<Flag>>,
    pub converge_variables: Option<Raw<Flag>>,
    pub use_tmpfs_config: Option<Raw<Flag>>,
    pub use_link_dns_names: Option<Raw<Flag>>,
    #[serde(flatten)]
    pub unknown: Mapping,
}

map_shaped!(
    RawDeployment,
    RawStemcell,
    RawUpdate,
    RawInstanceGroup,
    RawVmResources,
    RawPersistentDisk,
    RawNetworkRef,
    RawMigratedFrom,
    RawFeatures
);

impl RawDeployment {
    /// Reads a parsed manifest into its raw form; fails only when the document is not a map.
    pub fn from_value(value: &Value) -> Result<Self, super::Problem> {
        raw::document(value, &Document::Manifest)
    }
}

// ---------------------------------------------------------------------------------------------
// model

/// A v2 deployment manifest.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Deployment {
    pub name: String,
    pub releases: Vec<Release>,
    pub stemcells: Vec<Stemcell>,
    pub update: Option<Update>,
    pub instance_groups: Vec<InstanceGroup>,
    pub addons: Vec<Addon>,
    pub variables: Vec<Variable>,
    pub features: Features,
    pub tags: Param<Mapping>,
    /// Legacy global properties.
    pub properties: Param<Mapping>,
}

/// An entry of `stemcells`: an alias for a stemcell chosen by os (or full name) and version.
#[derive(Debug, Clone, PartialEq)]
pub struct Stemcell {
    pub path: YamlPath,
    pub alias: String,
    /// Exactly one of `os` and `name` is set in a manifest that read without problems.
    pub os: Option<String>,
    pub name: Option<String>,
    pub version: Param<Version>,
}

/// An `update` block (global, or an instance group's override: then every field is optional).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Update {
    pub canaries: Option<Param<Amount>>,
    pub max_in_flight: Option<Param<Amount>>,
    pub canary_watch_time: Option<Param<WatchTime>>,
    pub update_watch_time: Option<Param<WatchTime>>,
    pub serial: Option<Param<bool>>,
    pub vm_strategy: Option<Param<VmStrategy>>,
    pub initial_deploy_az_update_strategy: Option<Param<AzUpdateStrategy>>,
    /// `manifest` (BOSH's: instance groups in manifest order) or `links` (rosh: every group
    /// after the groups providing the links it requires). Only the deployment's `update` says.
    pub order: Option<Param<UpdateOrder>>,
}

/// The order instance groups update in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum UpdateOrder {
    Manifest,
    Links,
}

/// `canaries` / `max_in_flight`: a number of instances or a percentage of the group.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Amount {
    Count(u64),
    Percent(u64),
}

/// `canary_watch_time` / `update_watch_time` in milliseconds; `30000` is `30000-30000`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct WatchTime {
    pub min_ms: u64,
    pub max_ms: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum VmStrategy {
    DeleteCreate,
    CreateSwapDelete,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AzUpdateStrategy {
    Serial,
    Parallel,
}

/// Director features this deployment opts into (unset: the director's default).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Features {
    pub use_dns_addresses: Option<Param<bool>>,
    pub use_short_dns_addresses: Option<Param<bool>>,
    pub randomize_az_placement: Option<Param<bool>>,
    pub converge_variables: Option<Param<bool>>,
    pub use_tmpfs_config: Option<Param<bool>>,
    pub use_link_dns_names: Option<Param<bool>>,
}

/// An entry of `instance_groups`.
#[derive(Debug, Clone, PartialEq)]
pub struct InstanceGroup {
    pub path: YamlPath,
    pub name: String,
    pub azs: Option<Param<Vec<Param<String>>>>,
    pub instances: Param<u64>,
    pub lifecycle: Param<Lifecycle>,
    pub jobs: Vec<Job>,
    pub vm_type: Option<Param<String>>,
    pub vm_resources: Option<VmResources>,
    pub vm_extensions: Option<Param<Vec<Param<String>>>>,
    /// A stemcell alias from `stemcells`.
    pub stemcell: Option<Param<String>>,
    /// Persistent disk size in MB.
    pub persistent_disk: Option<Param<u64>>,
    pub persistent_disk_type: Option<Param<String>>,
    pub persistent_disks: Vec<PersistentDisk>,
    pub networks: Vec<NetworkRef>,
    pub update: Option<Update>,
    pub migrated_from: Vec<MigratedFrom>,
    pub env: Param<Mapping>,
    /// Legacy instance-group properties.
    pub properties: Param<Mapping>,
}

/// Generic VM sizing the CPI translates into cloud properties.
#[derive(Debug, Clone, PartialEq)]
pub struct VmResources {
    pub cpu: Param<u64>,
    pub ram: Param<u64>,
    pub ephemeral_disk_size: Param<u64>,
}

/// An entry of an instance group's `persistent_disks`.
#[derive(Debug, Clone, PartialEq)]
pub struct PersistentDisk {
    pub path: YamlPath,
    pub name: String,
    /// A disk type from the cloud config.
    pub disk_type: Param<String>,
}

/// An instance group's use of a cloud-config network.
#[derive(Debug, Clone, PartialEq)]
pub struct NetworkRef {
    pub path: YamlPath,
    pub name: Param<String>,
    /// Addresses or ranges, as written.
    pub static_ips: Option<Param<Vec<Param<String>>>>,
    pub default: Vec<DefaultFor>,
    pub nic_group: Option<String>,
}

/// What a network is the default for, on a multi-homed instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DefaultFor {
    Dns,
    Gateway,
    Addressable,
}

/// An entry of `migrated_from`: an instance group this one was renamed or merged from.
#[derive(Debug, Clone, PartialEq)]
pub struct MigratedFrom {
    pub path: YamlPath,
    pub name: String,
    pub az: Option<Param<String>>,
}

impl Update {
    /// The keys bosh needs once the global block and an instance group's override are merged.
    pub const REQUIRED: [&'static str; 4] = ["canaries", "max_in_flight", "canary_watch_time", "update_watch_time"];

    /// Whether `key` (one of [`Update::REQUIRED`]) is given.
    pub fn has(&self, key: &str) -> bool {
        match key {
            "canaries" => self.canaries.is_some(),
            "max_in_flight" => self.max_in_flight.is_some(),
            "canary_watch_time" => self.canary_watch_time.is_some(),
            "update_watch_time" => self.update_watch_time.is_some(),
            _ => false,
        }
    }
}

impl Deployment {
    /// Reads a parsed manifest; any problem fails the read.
    pub fn from_value(value: &Value) -> Result<Loaded<Deployment>, ModelError> {
        Self::read(value).into_result()
    }

    /// Best-effort read of a parsed manifest: the model, every problem and every warning.
    pub fn read(value: &Value) -> Outcome<Deployment> {
        match RawDeployment::from_value(value) {
            Ok(raw) => Self::from_raw(raw),
            Err(problem) => {
                let mut r = Reader::new(Document::Manifest);
                r.push(problem);
                r.finish(Deployment::default())
            }
        }
    }

    /// Builds the model from its raw form.
    pub fn from_raw(raw: RawDeployment) -> Outcome<Deployment> {
        let mut r = Reader::new(Document::Manifest);
        let root = YamlPath::root();
        let looks_v1 =
            raw.instance_groups.is_none() && ["jobs", "resource_pools"].iter().any(|k| raw.unknown.contains_key(*k));
        if looks_v1 {
            r.invalid(
                root.clone(),
                "this is a v1 manifest (jobs, resource_pools); convert it with `rosh migrate-manifest`",
            );
        }
        r.unknown_keys(&raw.unknown, &root);
        let name = r.name(raw.name, &root, "name").unwrap_or_default();
        let _ = raw.director_uuid; // bosh CLI v2 ignores it; so do we.
        let releases = read_releases(&mut r, raw.releases, &root.key("releases"));
        let stemcells = read_stemcells(&mut r, raw.stemcells, &root.key("stemcells"));
        let update = read_update(&mut r, raw.update, &root.key("update"));
        let features = read_features(&mut r, raw.features, &root.key("features"));
        let tags = read_tags(&mut r, raw.tags, &root.key("tags"));
        let properties = r.map(raw.properties, root.key("properties"));
        let variables = read_variables(&mut r, raw.variables, &root.key("variables"));

        let mut names = Names::new();
        let mut instance_groups = Vec::new();
        for (path, raw) in r.entries(raw.instance_groups, &root.key("instance_groups")) {
            if let Some(ig) = read_instance_group(&mut r, raw, &path, &releases, &stemcells)
                && names.add(&mut r, Item::InstanceGroup, &ig.name, &path)
            {
                instance_groups.push(ig);
            }
        }

        let addons = read_addons(&mut r, raw.addons, &root.key("addons"));
        for addon in &addons {
            check_job_releases(&mut r, &addon.jobs, &releases);
            if let Some(include) = &addon.include {
                let given = match &include.deployments {
                    Param::Literal(list) => !list.is_empty(),
                    Param::Var(_) => true,
                };
                if given {
                    r.warn(
                        addon.path.key("include").key("deployments"),
                        ProblemKind::Invalid(
                            "deployments rules only apply to runtime-config addons; ignored here".into(),
                        ),
                    );
                }
            }
        }

        let model = Deployment {
            name,
            releases,
            stemcells,
            update,
            instance_groups,
            addons,
            variables,
            features,
            tags,
            properties,
        };
        r.finish(model)
    }

    pub fn instance_group(&self, name: &str) -> Option<&InstanceGroup> {
        self.instance_groups.iter().find(|ig| ig.name == name)
    }

    pub fn release(&self, name: &str) -> Option<&Release> {
        self.releases.iter().find(|r| r.name == name)
    }

    pub fn stemcell(&self, alias: &str) -> Option<&Stemcell> {
        self.stemcells.iter().find(|s| s.alias == alias)
    }
}

fn read_stemcells(r: &mut Reader, raw: Option<Raw<Vec<Raw<RawStemcell>>>>, at: &YamlPath) -> Vec<Stemcell> {
    let mut names = Names::new();
    let mut out = Vec::new();
    for (path, raw) in r.entries(raw, at) {
        r.unknown_keys(&raw.unknown, &path);
        let Some(alias) = r.name(raw.alias, &path, "alias") else { continue };
        let os = r.string(raw.os, path.key("os"));
        let name = r.string(raw.name, path.key("name"));
        match (&os, &name) {
            (Some(_), Some(_)) => r.invalid(path.clone(), "give either os or name, not both"),
            (None, None) if !r.has_problem_at(&path.key("os")) && !r.has_problem_at(&path.key("name")) => {
                r.error(path.clone(), ProblemKind::MissingKey { key: "os" })
            }
            _ => {}
        }
        let version = version(r, raw.version, &path, "version").unwrap_or_else(Param::unknown);
        if names.add(r, Item::Stemcell, &alias, &path) {
            out.push(Stemcell { path, alias, os, name, version });
        }
    }
    out
}

fn read_update(r: &mut Reader, raw: Option<Raw<RawUpdate>>, at: &YamlPath) -> Option<Update> {
    let raw = match r.field(raw, at.clone())? {
        Param::Literal(raw) => raw,
        Param::Var(var) => {
            r.warn(at.clone(), ProblemKind::Unresolved { var });
            return None;
        }
    };
    r.unknown_keys(&raw.unknown, at);
    Some(Update {
        canaries: amount(r, raw.canaries, at.key("canaries"), "canaries"),
        max_in_flight: amount(r, raw.max_in_flight, at.key("max_in_flight"), "max_in_flight"),
        canary_watch_time: watch_time(r, raw.canary_watch_time, at.key("canary_watch_time"), "canary_watch_time"),
        update_watch_time: watch_time(r, raw.update_watch_time, at.key("update_watch_time"), "update_watch_time"),
        serial: r.flag(raw.serial, at.key("serial")),
        vm_strategy: choice(
            r,
            raw.vm_strategy,
            at.key("vm_strategy"),
            "vm_strategy",
            &[("delete-create", VmStrategy::DeleteCreate), ("create-swap-delete", VmStrategy::CreateSwapDelete)],
        ),
        initial_deploy_az_update_strategy: choice(
            r,
            raw.initial_deploy_az_update_strategy,
            at.key("initial_deploy_az_update_strategy"),
            "initial_deploy_az_update_strategy",
            &[("serial", AzUpdateStrategy::Serial), ("parallel", AzUpdateStrategy::Parallel)],
        ),
        order: choice(
            r,
            raw.order,
            at.key("order"),
            "order",
            &[("manifest", UpdateOrder::Manifest), ("links", UpdateOrder::Links)],
        ),
    })
}

/// `3`, `"3"` or `"25%"`.
fn amount(r: &mut Reader, raw: Option<Raw<Text>>, at: YamlPath, key: &str) -> Option<Param<Amount>> {
    match r.field(raw, at.clone())? {
        Param::Var(v) => Some(Param::Var(v)),
        Param::Literal(Text(text)) => {
            let t = text.trim();
            let parsed = match t.strip_suffix('%') {
                Some(digits) => digits.parse().ok().map(Amount::Percent),
                None => t.parse().ok().map(Amount::Count),
            };
            if parsed.is_none() {
                r.invalid(at, format!("{key} '{text}' is neither a number of instances nor a percentage like '25%'"));
            }
            parsed.map(Param::Literal)
        }
    }
}

/// `30000` or `30000-1200000` (blanks allowed around the dash).
fn watch_time(r: &mut Reader, raw: Option<Raw<Text>>, at: YamlPath, key: &str) -> Option<Param<WatchTime>> {
    match r.field(raw, at.clone())? {
        Param::Var(v) => Some(Param::Var(v)),
        Param::Literal(Text(text)) => {
            let parse = |s: &str| -> Option<u64> {
                let s = s.trim();
                (!s.is_empty() && s.chars().all(|c| c.is_ascii_digit())).then(|| s.parse().ok()).flatten()
            };
            let parsed = match text.split_once('-') {
                Some((a, b)) => parse(a).zip(parse(b)),
                None => parse(&text).map(|n| (n, n)),
            };
            match parsed {
                None => {
                    r.invalid(at, format!("{key} '{text}' is neither milliseconds nor a range like '5000-30000'"));
                    None
                }
                Some((min_ms, max_ms)) if min_ms > max_ms => {
                    r.invalid(at, format!("{key} '{text}': the minimum is greater than the maximum"));
                    None
                }
                Some((min_ms, max_ms)) => Some(Param::Literal(WatchTime { min_ms, max_ms })),
            }
        }
    }
}

/// A string that must be one of a few words.
fn choice<T: Copy>(
    r: &mut Reader,
    raw: Option<Raw<String>>,
    at: YamlPath,
    key: &str,
    options: &[(&str, T)],
) -> Option<Param<T>> {
    match r.field(raw, at.clone())? {
        Param::Var(v) => Some(Param::Var(v)),
        Param::Literal(text) => match options.iter().find(|(word, _)| *word == text) {
            Some((_, value)) => Some(Param::Literal(*value)),
            None => {
                let words: Vec<&str> = options.iter().map(|(w, _)| *w).collect();
                r.invalid(at, format!("{key} '{text}' is not one of: {}", words.join(", ")));
                None
            }
        },
    }
}

fn read_features(r: &mut Reader, raw: Option<Raw<RawFeatures>>, at: &YamlPath) -> Features {
    let raw = match r.field(raw, at.clone()) {
        Some(Param::Literal(raw)) => raw,
        Some(Param::Var(var)) => {
            r.warn(at.clone(), ProblemKind::Unresolved { var });
            return Features::default();
        }
        None => return Features::default(),
    };
    r.unknown_keys(&raw.unknown, at);
    Features {
        use_dns_addresses: r.flag(raw.use_dns_addresses, at.key("use_dns_addresses")),
        use_short_dns_addresses: r.flag(raw.use_short_dns_addresses, at.key("use_short_dns_addresses")),
        randomize_az_placement: r.flag(raw.randomize_az_placement, at.key("randomize_az_placement")),
        converge_variables: r.flag(raw.converge_variables, at.key("converge_variables")),
        use_tmpfs_config: r.flag(raw.use_tmpfs_config, at.key("use_tmpfs_config")),
        use_link_dns_names: r.flag(raw.use_link_dns_names, at.key("use_link_dns_names")),
    }
}

fn read_instance_group(
    r: &mut Reader,
    raw: RawInstanceGroup,
    at: &YamlPath,
    releases: &[Release],
    stemcells: &[Stemcell],
) -> Option<InstanceGroup> {
    r.unknown_keys(&raw.unknown, at);
    let name = r.name(raw.name, at, "name");
    let instances = r.required(raw.instances, at, "instances").map(|p| p.map(|Int(n)| n));
    let instances = instances.unwrap_or_else(Param::unknown);
    let lifecycle = lifecycle(r, raw.lifecycle, at.key("lifecycle")).unwrap_or(Param::Literal(Lifecycle::Service));

    let azs = r.references(raw.azs, at.key("azs"));
    if let Some(Param::Literal(list)) = &azs
        && list.is_empty()
    {
        r.invalid(at.key("azs"), "azs is empty; list at least one az");
    }

    if raw.jobs.is_none() {
        r.error(at.clone(), ProblemKind::MissingKey { key: "jobs" });
    }
    let jobs = read_jobs(r, raw.jobs, &at.key("jobs"));
    check_job_releases(r, &jobs, releases);

    let vm_type = r.reference(raw.vm_type, at.key("vm_type"));
    let vm_resources = read_vm_resources(r, raw.vm_resources, &at.key("vm_resources"));
    if vm_type.is_some() && vm_resources.is_some() {
        r.invalid(at.clone(), "vm_type and vm_resources are mutually exclusive; give one");
    }
    let vm_extensions = r.references(raw.vm_extensions, at.key("vm_extensions"));

    let stemcell = r.reference(raw.stemcell, at.key("stemcell"));
    if let Some(Param::Literal(alias)) = &stemcell
        && !stemcells.iter().any(|s| &s.alias == alias)
    {
        r.error(at.key("stemcell"), ProblemKind::UnknownReference { what: Item::Stemcell, name: alias.clone() });
    }

    let persistent_disk = r.int(raw.persistent_disk, at.key("persistent_disk"));
    let persistent_disk_type = r.reference(raw.persistent_disk_type, at.key("persistent_disk_type"));
    let mut disk_names = Names::new();
    let mut persistent_disks = Vec::new();
    let disks_given = raw.persistent_disks.is_some();
    for (path, raw) in r.entries(raw.persistent_disks, &at.key("persistent_disks")) {
        r.unknown_keys(&raw.unknown, &path);
        let Some(name) = r.name(raw.name, &path, "name") else { continue };
        let disk_type = match raw.kind {
            None => {
                r.error(path.clone(), ProblemKind::MissingKey { key: "type" });
                Param::unknown()
            }
            kind => r.reference(kind, path.key("type")).unwrap_or_else(Param::unknown),
        };
        if disk_names.add(r, Item::PersistentDisk, &name, &path) {
            persistent_disks.push(PersistentDisk { path, name, disk_type });
        }
    }
    if persistent_disk.is_some() && persistent_disk_type.is_some() {
        r.invalid(at.clone(), "persistent_disk and persistent_disk_type are mutually exclusive; give one");
    }
    if disks_given && (persistent_disk.is_some() || persistent_disk_type.is_some()) {
        r.invalid(at.clone(), "persistent_disks cannot be combined with persistent_disk or persistent_disk_type");
    }

    let networks = read_network_refs(r, raw.networks, at, &instances);
    let update = read_update(r, raw.update, &at.key("update"));

    let mut migrated_from = Vec::new();
    for (path, raw) in r.entries(raw.migrated_from, &at.key("migrated_from")) {
        r.unknown_keys(&raw.unknown, &path);
        let az = r.reference(raw.az, path.key("az"));
        if let Some(name) = r.name(raw.name, &path, "name") {
            migrated_from.push(MigratedFrom { path, name, az });
        }
    }
    let env = r.map(raw.env, at.key("env"));
    let properties = r.map(raw.properties, at.key("properties"));

    Some(InstanceGroup {
        path: at.clone(),
        name: name?,
        azs,
        instances,
        lifecycle,
        jobs,
        vm_type,
        vm_resources,
        vm_extensions,
        stemcell,
        persistent_disk,
        persistent_disk_type,
        persistent_disks,
        networks,
        update,
        migrated_from,
        env,
        properties,
    })
}

pub(crate) fn read_vm_resources(
    r: &mut Reader,
    raw: Option<Raw<RawVmResources>>,
    at: &YamlPath,
) -> Option<VmResources> {
    let raw = match r.field(raw, at.clone())? {
        Param::Literal(raw) => raw,
        Param::Var(var) => {
            // Unknown contents, but given: keep it so that vm_type is not demanded.
            r.warn(at.clone(), ProblemKind::Unresolved { var });
            return Some(VmResources {
                cpu: Param::unknown(),
                ram: Param::unknown(),
                ephemeral_disk_size: Param::unknown(),
            });
        }
    };
    r.unknown_keys(&raw.unknown, at);
    let mut get = |raw: Option<Raw<Int>>, key: &'static str| {
        r.required(raw, at, key).map(|p| p.map(|Int(n)| n)).unwrap_or_else(Param::unknown)
    };
    Some(VmResources {
        cpu: get(raw.cpu, "cpu"),
        ram: get(raw.ram, "ram"),
        ephemeral_disk_size: get(raw.ephemeral_disk_size, "ephemeral_disk_size"),
    })
}

/// Reads an instance group's `networks` and checks what needs only the manifest: at least one
/// network, no network twice, one default for dns and for gateway when there are several, as
/// many static IPs as instances, no static IP twice.
fn read_network_refs(
    r: &mut Reader,
    raw: Option<Raw<Vec<Raw<RawNetworkRef>>>>,
    ig: &YamlPath,
    instances: &Param<u64>,
) -> Vec<NetworkRef> {
    let at = ig.key("networks");
    let given = raw.is_some();
    let var_list = matches!(raw, Some(Raw::Var(_)));
    if !given {
        r.error(ig.clone(), ProblemKind::MissingKey { key: "networks" });
    }
    let mut names = Names::new();
    let mut out = Vec::new();
    let mut entries = 0;
    for (path, raw) in r.entries(raw, &at) {
        entries += 1;
        r.unknown_keys(&raw.unknown, &path);
        let name = match raw.name {
            None => {
                r.error(path.clone(), ProblemKind::MissingKey { key: "name" });
                continue;
            }
            some => match r.reference(some, path.key("name")) {
                Some(name) => name,
                None => continue,
            },
        };
        if let Param::Literal(n) = &name {
            names.add(r, Item::Network, n, &path);
        }
        let static_ips = r.references(raw.static_ips, path.key("static_ips"));
        let mut default = Vec::new();
        if let Some(Param::Literal(words)) = r.references(raw.default, path.key("default")) {
            for (i, word) in words.iter().enumerate() {
                match word.text() {
                    "dns" => default.push(DefaultFor::Dns),
                    "gateway" => default.push(DefaultFor::Gateway),
                    "addressable" => default.push(DefaultFor::Addressable),
                    _ if word.is_var() => {}
                    other => r.invalid(
                        path.key("default").index(i),
                        format!("'{other}' is not a default network property; valid are: dns, gateway, addressable"),
                    ),
                }
            }
        }
        let nic_group = r.field(raw.nic_group, path.key("nic_group")).map(|p| match p {
            Param::Literal(Text(t)) | Param::Var(t) => t,
        });
        check_static_ips(r, &path, static_ips.as_ref(), instances, &name);
        out.push(NetworkRef { path, name, static_ips, default, nic_group });
    }
    if given && !var_list && entries == 0 && !r.has_problem_at(&at) {
        r.invalid(at.clone(), "an instance group needs at least one network");
    }
    if out.len() > 1 {
        for (word, property) in [("dns", DefaultFor::Dns), ("gateway", DefaultFor::Gateway)] {
            let defaults: Vec<&NetworkRef> = out.iter().filter(|n| n.default.contains(&property)).collect();
            if defaults.is_empty() {
                r.invalid(
                    at.clone(),
                    format!("with more than one network, one of them must be the default for {word} (default: [dns, gateway])"),
                );
            } else if defaults.len() > 1 {
                let names: Vec<String> = defaults.iter().map(|n| format!("'{}'", n.name)).collect();
                r.invalid(at.clone(), format!("more than one network is the default for {word}: {}", names.join(", ")));
            }
        }
    }
    out
}

fn check_static_ips(
    r: &mut Reader,
    network: &YamlPath,
    static_ips: Option<&Param<Vec<Param<String>>>>,
    instances: &Param<u64>,
    name: &Param<String>,
) {
    let Some(Param::Literal(entries)) = static_ips else { return };
    let mut count: u128 = 0;
    let mut all_literal = true;
    let mut spans: Vec<(usize, IpSpan)> = Vec::new();
    for (i, entry) in entries.iter().enumerate() {
        let Param::Literal(text) = entry else {
            all_literal = false;
            continue;
        };
        match IpSpan::parse(text) {
            Ok(span) => {
                if let Some((j, _)) = spans.iter().find(|(_, s)| s.overlaps(&span)) {
                    r.error(
                        network.key("static_ips").index(i),
                        ProblemKind::Duplicate {
                            what: Item::StaticIp,
                            name: text.clone(),
                            first: network.key("static_ips").index(*j),
                        },
                    );
                }
                count += span.len();
                spans.push((i, span));
            }
            Err(message) => {
                all_literal = false;
                r.invalid(network.key("static_ips").index(i), message);
            }
        }
    }
    if let (true, Param::Literal(n)) = (all_literal, instances)
        && count != u128::from(*n)
    {
        r.invalid(
            network.key("static_ips"),
            format!("{count} static IPs on network '{name}' for {n} instances; give exactly one per instance"),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::yaml::parse;

    fn read(text: &str) -> Outcome<Deployment> {
        Deployment::read(&parse(text, "test.yml").unwrap())
    }

    /// `path: message` of every problem.
    fn problems(text: &str) -> Vec<String> {
        read(text).problems.iter().map(|p| p.to_string()).collect()
    }

    const BASE: &str = "
name: demo
releases:
- {name: nginx, version: 1.2}
- {name: bpm, version: latest}
stemcells:
- {alias: default, os: ubuntu-jammy, version: '1.425'}
update: {canaries: 1, max_in_flight: 10%, canary_watch_time: 1000-30000, update_watch_time: 5000}
";

    #[test]
    fn values_built_from_variables_are_unresolved_too() {
        let outcome = read("name: d\nupdate: {canaries: ((c)), canary_watch_time: ((min))-((max))}\n");
        assert_eq!(outcome.problems, vec![]);
        let update = outcome.model.update.unwrap();
        assert_eq!(update.canary_watch_time, Some(Param::Var("((min))-((max))".into())));
    }

    #[test]
    fn a_full_manifest_reads_into_the_model() {
        let text = format!(
            "{BASE}
director_uuid: ignored
features: {{use_dns_addresses: true, randomize_az_placement: no}}
tags: {{team: web}}
instance_groups:
- name: web
  azs: [z1, z2]
  instances: 2
  jobs:
  - name: nginx
    release: nginx
    properties: {{port: 80}}
    consumes: {{db: {{from: primary}}}}
    provides: {{web: {{as: site}}}}
    custom_provider_definitions:
    - {{name: site, type: http, properties: [port]}}
  vm_type: small
  vm_extensions: [lb]
  stemcell: default
  persistent_disk_type: 10GB
  networks: [{{name: default, static_ips: [10.0.0.10 - 10.0.0.11]}}]
  update: {{max_in_flight: 1, serial: true, vm_strategy: create-swap-delete}}
  migrated_from: [{{name: old-web, az: z1}}]
  env: {{bosh: {{password: x}}}}
- name: smoke
  lifecycle: errand
  azs: [z1]
  instances: 1
  jobs: [{{name: smoke, release: nginx}}]
  vm_resources: {{cpu: 2, ram: 4096, ephemeral_disk_size: 10_240}}
  stemcell: default
  networks: [{{name: default}}]
variables:
- {{name: admin, type: password, update_mode: converge}}
addons:
- name: runtime
  jobs: [{{name: bpm, release: bpm}}]
  include: {{stemcell: [{{os: ubuntu-jammy}}], lifecycle: service}}
  exclude: {{jobs: [{{name: smoke, release: nginx}}]}}
"
        );
        let outcome = read(&text);
        assert_eq!(outcome.problems, vec![], "{:#?}", outcome.problems);
        assert_eq!(outcome.warnings, vec![]);
        let d = outcome.model;
        assert_eq!(d.name, "demo");
        assert_eq!(d.releases[0].version, Param::Literal(Version::Exact("1.2".into())));
        assert_eq!(d.releases[1].version, Param::Literal(Version::Latest));
        assert_eq!(d.stemcells[0].os.as_deref(), Some("ubuntu-jammy"));
        let update = d.update.unwrap();
        assert_eq!(update.max_in_flight, Some(Param::Literal(Amount::Percent(10))));
        assert_eq!(update.canary_watch_time, Some(Param::Literal(WatchTime { min_ms: 1000, max_ms: 30000 })));
        assert_eq!(update.update_watch_time, Some(Param::Literal(WatchTime { min_ms: 5000, max_ms: 5000 })));
        assert_eq!(d.features.randomize_az_placement, Some(Param::Literal(false)));
        let web = &d.instance_groups[0];
        assert_eq!(web.instances, Param::Literal(2));
        assert_eq!(web.jobs[0].custom_provider_definitions[0].kind, "http");
        assert_eq!(web.update.as_ref().unwrap().vm_strategy, Some(Param::Literal(VmStrategy::CreateSwapDelete)));
        let smoke = &d.instance_groups[1];
        assert_eq!(smoke.lifecycle, Param::Literal(Lifecycle::Errand));
        assert_eq!(smoke.vm_resources.as_ref().unwrap().ephemeral_disk_size, Param::Literal(10240));
        assert_eq!(d.addons[0].include.as_ref().unwrap().stemcell, vec!["ubuntu-jammy".to_string()]);
    }

    #[test]
    fn unresolved_variables_are_not_type_errors() {
        let text = format!(
            "{BASE}
instance_groups:
- name: cell
  azs: ((azs))
  instances: ((cell_instances))
  jobs: [{{name: nginx, release: ((release_name))}}]
  vm_type: ((vm_type))
  vm_extensions: [((ext))]
  stemcell: default
  persistent_disk: ((disk))
  networks: [{{name: ((network)), static_ips: ((ips))}}]
"
        );
        let outcome = read(&text);
        assert_eq!(outcome.problems, vec![]);
        let cell = &outcome.model.instance_groups[0];
        assert_eq!(cell.instances, Param::Var("((cell_instances))".into()));
        assert_eq!(cell.azs, Some(Param::Var("((azs))".into())));
    }

    #[test]
    fn job_release_must_be_listed() {
        let text = format!(
            "{BASE}
instance_groups:
- name: web
  instances: 1
  jobs: [{{name: bpm, release: bpm}}, {{name: router, release: routing}}]
  stemcell: default
  networks: [{{name: default}}]
"
        );
        assert_eq!(problems(&text), vec!["instance_groups[0].jobs[1]: release 'routing' is not listed under releases"]);
    }

    #[test]
    fn stemcell_alias_must_be_listed() {
        let text = format!(
            "{BASE}
instance_groups:
- name: web
  instances: 1
  jobs: []
  stemcell: windows
  networks: [{{name: default}}]
"
        );
        assert_eq!(
            problems(&text),
            vec!["instance_groups[0].stemcell: stemcell 'windows' is not an alias listed under stemcells"]
        );
    }

    #[test]
    fn duplicate_names_are_errors() {
        let text = "
name: demo
releases:
- {name: nginx, version: 1}
- {name: nginx, version: 2}
stemcells:
- {alias: default, os: a, version: 1}
- {alias: default, name: b, version: 1}
instance_groups:
- name: web
  instances: 1
  jobs: [{name: nginx, release: nginx}, {name: nginx, release: nginx}]
  networks: [{name: default}]
- name: web
  instances: 1
  jobs: []
  networks: [{name: default}]
variables:
- {name: pw, type: password}
- {name: pw, type: password}
";
        assert_eq!(
            problems(text),
            vec![
                "releases[1]: release 'nginx' is defined more than once (first at releases[0])",
                "stemcells[1]: stemcell 'default' is defined more than once (first at stemcells[0])",
                "variables[1]: variable 'pw' is defined more than once (first at variables[0])",
                "instance_groups[0].jobs[1]: job 'nginx' is defined more than once (first at instance_groups[0].jobs[0])",
                "instance_groups[1]: instance group 'web' is defined more than once (first at instance_groups[0])",
            ]
        );
    }

    #[test]
    fn bad_update_values_are_errors() {
        let text = "
name: demo
update:
  canaries: one
  max_in_flight: 10 percent
  canary_watch_time: 30000-1000
  update_watch_time: soon
  serial: maybe
  vm_strategy: recreate
  initial_deploy_az_update_strategy: random
";
        assert_eq!(
            problems(text),
            vec![
                "update.canaries: canaries 'one' is neither a number of instances nor a percentage like '25%'",
                "update.max_in_flight: max_in_flight '10 percent' is neither a number of instances nor a percentage like '25%'",
                "update.canary_watch_time: canary_watch_time '30000-1000': the minimum is greater than the maximum",
                "update.update_watch_time: update_watch_time 'soon' is neither milliseconds nor a range like '5000-30000'",
                "update.serial: expected a boolean, found a string ('maybe')",
                "update.vm_strategy: vm_strategy 'recreate' is not one of: delete-create, create-swap-delete",
                "update.initial_deploy_az_update_strategy: initial_deploy_az_update_strategy 'random' is not one of: serial, parallel",
            ]
        );
    }

    #[test]
    fn wrong_types_and_missing_keys_are_reported_each_at_its_path() {
        let text = "
name: demo
instance_groups:
- name: web
  instances: two
  jobs: [{name: nginx}]
  vm_type: [small]
  networks: default
- instances: 1
  jobs: []
  networks: [{name: default}]
";
        assert_eq!(
            problems(text),
            vec![
                "instance_groups[0].instances: expected a non-negative integer, found a string ('two')",
                "instance_groups[0].jobs[0]: missing required key 'release'",
                "instance_groups[0].vm_type: expected a string, found a list",
                "instance_groups[0].networks: expected a list, found a string ('default')",
                "instance_groups[1]: missing required key 'name'",
            ]
        );
    }

    #[test]
    fn static_ips_must_match_instances_and_defaults_must_be_set() {
        let text = "
name: demo
instance_groups:
- name: router
  instances: 2
  jobs: []
  networks:
  - {name: default, static_ips: [10.0.0.5 - 10.0.0.6, 10.0.0.6]}
  - {name: vip}
- name: lb
  instances: 1
  jobs: []
  networks:
  - {name: a, default: [dns, gateway]}
  - {name: b, default: [gateway, router]}
";
        assert_eq!(
            problems(text),
            vec![
                "instance_groups[0].networks[0].static_ips[1]: static IP '10.0.0.6' is defined more than once (first at instance_groups[0].networks[0].static_ips[0])",
                "instance_groups[0].networks[0].static_ips: 3 static IPs on network 'default' for 2 instances; give exactly one per instance",
                "instance_groups[0].networks: with more than one network, one of them must be the default for dns (default: [dns, gateway])",
                "instance_groups[0].networks: with more than one network, one of them must be the default for gateway (default: [dns, gateway])",
                "instance_groups[1].networks[1].default[1]: 'router' is not a default network property; valid are: dns, gateway, addressable",
                "instance_groups[1].networks: more than one network is the default for gateway: 'a', 'b'",
            ]
        );
    }

    #[test]
    fn unknown_keys_are_warnings() {
        let outcome = read(
            "name: demo\nmanifest_version: v1\ninstance_groups:\n- {name: a, instances: 0, jobs: [], networks: [{name: n}], resource_pool: vms}\n",
        );
        assert_eq!(outcome.problems, vec![]);
        let warnings: Vec<String> = outcome.warnings.iter().map(|w| w.to_string()).collect();
        assert_eq!(
            warnings,
            vec![
                "manifest_version: unknown key 'manifest_version' is ignored",
                "instance_groups[0].resource_pool: unknown key 'resource_pool' is ignored",
            ]
        );
    }

    #[test]
    fn a_v1_manifest_is_recognised() {
        let p = problems("name: old\njobs: []\nresource_pools: []\n");
        assert_eq!(
            p,
            vec![
                "(document root): this is a v1 manifest (jobs, resource_pools); convert it with `rosh migrate-manifest`"
            ]
        );
    }

    #[test]
    fn strict_read_fails_with_every_problem() {
        let err = Deployment::from_value(&parse("instance_groups: 3\n", "t.yml").unwrap()).unwrap_err();
        assert_eq!(err.problems.len(), 2);
        assert_eq!(
            err.to_string(),
            "manifest: (document root): missing required key 'name'\nmanifest: instance_groups: expected a list, found a number ('3')"
        );
    }
}
