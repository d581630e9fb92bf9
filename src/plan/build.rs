//! Building the desired deployment: a validated, interpolated manifest, its cloud config and
//! runtime configs, the uploaded releases and stemcells, and what the last deploy left
//! ([`KnownInstance`]s) in; a [`DesiredDeployment`] out, or every problem found.
//!
//! The steps, each with its own module where it is more than a lookup: releases and stemcells
//! resolved to uploaded versions (`latest` is the highest, [`super::versions`]); instances
//! placed over AZs ([`super::placement`]); IPs assigned ([`super::ips`]) — static ones first,
//! then the IPs instances already hold, then new ones, so a redeploy moves nothing it need not;
//! VM cloud properties merged (vm_type, then vm_extensions, then the AZ: a deep merge where
//! the later wins); the update policy merged (the group's over the manifest's); jobs with their
//! properties (job-level, else the group's legacy `properties`, else the manifest's global
//! ones) plus the addons whose rules select the group ([`super::addons`]); links resolved
//! ([`super::links`]); and each group's package closure in dependency order
//! ([`super::graph::package_order`]).
//!
//! Every problem is collected, each with the path an operator can find it at, names included
//! (`instance_groups[2] (api).jobs[0] (cloud_controller): consumes link database of type db: no
//! provider in deployment cf`). A value still holding a `((variable))` is a problem here: the
//! manifest handed in has been interpolated. No IO: instance ids come from the `new_id`
//! function the caller passes (tests count, deploys use [`random_id`]).
//!
//! Not supported yet, and said so when used: several named `persistent_disks`, links from other
//! deployments. `vm_resources` are passed to the CPI inside the cloud properties as
//! `{vm_resources: {cpu, ram, ephemeral_disk_size}}`. A job-level `properties: {}` counts as
//! not given (the group's or the manifest's properties apply), as the model cannot tell the two
//! apart.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use serde::Serialize;
use serde_json::Value as Json;

use super::addons::{GroupFacts, applies};
use super::desired::{
    DesiredDeployment, DesiredGroup, DesiredInstance, DesiredJob, DiskSpec, GroupLifecycle, InstanceNetwork,
    PackageRef, StemcellRef, UpdatePolicy,
};
use super::graph::package_order;
use super::ips::{Allocator, Net, Networks, expand};
use super::links::{JobLinks, LinkGroup, resolve};
use super::placement::{Slot, StaticIps, place};
use super::versions::{compare_versions, highest};
use crate::manifest::model::{
    Amount, CloudConfig, CustomProvider, Deployment, InstanceGroup, Job, Lifecycle, NetworkType, Param, RuntimeConfig,
    Update, Version, VmStrategy, WatchTime,
};
use crate::manifest::yaml::{self, Mapping};
use crate::release::manifest::JobSpec;
use crate::state::{ReleaseRecord, StemcellRecord};
use crate::template::properties::undeclared;

/// An instance as the last deploy left it: what keeps indexes, ids, AZs and IPs stable.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct KnownInstance {
    pub group: String,
    pub index: u64,
    pub id: String,
    pub az: Option<String>,
    /// Network name → the IP it had there.
    pub ips: BTreeMap<String, IpAddr>,
    pub bootstrap: bool,
}

/// Everything the desired deployment is built from.
pub struct DesiredInput<'a> {
    /// Validated and interpolated.
    pub manifest: &'a Deployment,
    pub cloud_config: &'a CloudConfig,
    /// `(name, config)`, in the order bosh merges them.
    pub runtime_configs: &'a [(String, RuntimeConfig)],
    pub releases: &'a [ReleaseRecord],
    pub stemcells: &'a [StemcellRecord],
    /// This deployment's instances from its last deploy.
    pub known: &'a [KnownInstance],
    /// IPs other deployments hold.
    pub reserved_elsewhere: &'a BTreeSet<IpAddr>,
    /// Makes the id of a new instance.
    pub new_id: &'a dyn Fn() -> String,
}

/// What kind of thing is wrong, for callers that branch on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PlanErrorKind {
    /// A `((variable))` was left in a value.
    Unresolved,
    Release,
    Stemcell,
    Job,
    Placement,
    Network,
    Vm,
    Update,
    Addon,
    Link,
    Package,
}

/// One problem, at the path (with names) where an operator finds it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, thiserror::Error)]
#[error("{path}: {message}")]
pub struct PlanError {
    pub kind: PlanErrorKind,
    pub path: String,
    pub message: String,
}

/// A fresh v4 uuid, the id of a new instance.
pub fn random_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// A job as resolved against its release, before its links.
#[derive(Debug, Clone)]
pub(crate) struct JobDraft {
    /// `instance_groups[0] (web).jobs[1] (nginx)`, for problems.
    pub label: String,
    pub name: String,
    pub release: String,
    pub release_version: String,
    pub fingerprint: String,
    pub sha256: String,
    pub packages: Vec<String>,
    pub spec: JobSpec,
    pub properties: Json,
    pub consumes: Mapping,
    pub provides: Mapping,
    pub custom: Vec<CustomProvider>,
}

/// An instance group's use of a network.
struct NetUse {
    name: String,
    net: Net,
    /// The manifest's static IPs (expanded), if it gives any.
    statics: Option<Vec<IpAddr>>,
    default: Vec<String>,
}

struct GroupDraft<'a> {
    ig: &'a InstanceGroup,
    label: String,
    lifecycle: GroupLifecycle,
    stemcell: Option<StemcellRef>,
    azs: Vec<String>,
    /// False when the group's AZs are wrong: its IPs are then not looked for (that would only
    /// repeat the problem once per instance).
    azs_ok: bool,
    nets: Vec<NetUse>,
    slots: Vec<Slot>,
    /// Per slot, per entry of `nets`: the IP assigned.
    ips: Vec<Vec<Option<IpAddr>>>,
    vm_cloud_properties: Json,
    env: Json,
    disk: Option<DiskSpec>,
    update: Option<UpdatePolicy>,
    jobs: Vec<JobDraft>,
    instances: Vec<DesiredInstance>,
}

/// Builds the desired deployment, or returns every problem found.
pub fn build(input: &DesiredInput<'_>) -> Result<DesiredDeployment, Vec<PlanError>> {
    let mut b = Builder::new(input);
    let mut groups: Vec<GroupDraft<'_>> = Vec::new();
    for ig in &input.manifest.instance_groups {
        groups.push(b.group(ig));
    }
    b.assign_ips(&mut groups);
    for g in &mut groups {
        b.instances(g);
    }
    let links = b.links(&groups);
    b.finish(groups, links)
}

struct ReleaseSource<'a> {
    label: String,
    version: &'a Param<Version>,
}

struct Builder<'a> {
    input: &'a DesiredInput<'a>,
    errors: Vec<PlanError>,
    warnings: Vec<String>,
    networks: Networks,
    sources: BTreeMap<String, ReleaseSource<'a>>,
    resolved: BTreeMap<String, Option<&'a ReleaseRecord>>,
    used_releases: BTreeSet<(String, String)>,
    stemcells: BTreeMap<String, Option<StemcellRef>>,
    use_dns: bool,
}

fn unresolved(text: &str) -> String {
    if text.is_empty() {
        "the value is missing or malformed".to_string()
    } else {
        format!("variable {text} was not interpolated")
    }
}

/// Deep merge: maps merge key by key, anything else is replaced by `over`.
pub(crate) fn deep_merge(base: &mut Json, over: &Json) {
    match (base, over) {
        (Json::Object(b), Json::Object(o)) => {
            for (k, v) in o {
                match b.get_mut(k) {
                    Some(existing) => deep_merge(existing, v),
                    None => {
                        b.insert(k.clone(), v.clone());
                    }
                }
            }
        }
        (b, o) => *b = o.clone(),
    }
}

fn empty() -> Json {
    Json::Object(Default::default())
}

impl<'a> Builder<'a> {
    fn new(input: &'a DesiredInput<'a>) -> Self {
        let mut net_errors = Vec::new();
        let networks = Networks::read(input.cloud_config, &mut net_errors);
        let mut b = Builder {
            input,
            errors: Vec::new(),
            warnings: Vec::new(),
            networks,
            sources: BTreeMap::new(),
            resolved: BTreeMap::new(),
            used_releases: BTreeSet::new(),
            stemcells: BTreeMap::new(),
            use_dns: false,
        };
        for (path, message) in net_errors {
            b.error(PlanErrorKind::Network, path, message);
        }
        let m = input.manifest;
        match &m.features.use_dns_addresses {
            None => {}
            Some(Param::Literal(v)) => b.use_dns = *v,
            Some(Param::Var(v)) => {
                b.error(PlanErrorKind::Unresolved, "features.use_dns_addresses".into(), unresolved(v))
            }
        }
        for (name, rc) in input.runtime_configs {
            for r in &rc.releases {
                b.sources.insert(
                    r.name.clone(),
                    ReleaseSource {
                        label: format!("runtime config '{name}': {} ({})", r.path, r.name),
                        version: &r.version,
                    },
                );
            }
        }
        // The manifest's own list wins over runtime configs', and every release it lists must
        // be uploaded, used or not.
        for r in &m.releases {
            b.sources.insert(
                r.name.clone(),
                ReleaseSource { label: format!("{} ({})", r.path, r.name), version: &r.version },
            );
        }
        for r in &m.releases {
            b.release(&r.name, "releases");
        }
        b
    }

    fn error(&mut self, kind: PlanErrorKind, path: String, message: String) {
        let e = PlanError { kind, path, message };
        if !self.errors.contains(&e) {
            self.errors.push(e);
        }
    }

    fn literal<'p, T>(&mut self, p: &'p Param<T>, path: impl FnOnce() -> String) -> Option<&'p T> {
        match p {
            Param::Literal(v) => Some(v),
            Param::Var(v) => {
                self.error(PlanErrorKind::Unresolved, path(), unresolved(v));
                None
            }
        }
    }

    fn strings(&mut self, p: &Param<Vec<Param<String>>>, path: &str) -> Vec<String> {
        let Some(list) = self.literal(p, || path.to_string()) else { return Vec::new() };
        let mut out = Vec::new();
        for (i, e) in list.iter().enumerate() {
            if let Some(s) = self.literal(e, || format!("{path}[{i}]")) {
                out.push(s.clone());
            }
        }
        out
    }

    fn mapping(&mut self, p: &Param<Mapping>, path: impl FnOnce() -> String) -> Json {
        match self.literal(p, path) {
            Some(m) => yaml::to_json(&yaml::Value::Mapping(m.clone())),
            None => empty(),
        }
    }

    // -----------------------------------------------------------------------------------------
    // releases and stemcells

    /// The uploaded release a job's `release` names; problems are reported once per release
    /// (at its entry under `releases`), or at `at` when it is not listed.
    fn release(&mut self, name: &str, at: &str) -> Option<&'a ReleaseRecord> {
        if let Some(r) = self.resolved.get(name) {
            return *r;
        }
        let Some(source) = self.sources.get(name) else {
            self.error(PlanErrorKind::Release, at.to_string(), format!("release {name} is not listed under releases"));
            return None;
        };
        let label = source.label.clone();
        let version = source.version;
        let uploaded: Vec<&'a ReleaseRecord> = self.input.releases.iter().filter(|r| r.name == name).collect();
        let found = match self.literal(version, || format!("{label}.version")) {
            None => None,
            Some(Version::Latest) => {
                let best = highest(uploaded.iter().map(|r| r.version.as_str()));
                uploaded.iter().copied().find(|r| Some(r.version.as_str()) == best)
            }
            Some(Version::Exact(v)) => uploaded.iter().copied().find(|r| &r.version == v),
        };
        if found.is_none() && version.literal().is_some() {
            let message = if uploaded.is_empty() {
                format!("release {name} is not uploaded")
            } else {
                let mut versions: Vec<&str> = uploaded.iter().map(|r| r.version.as_str()).collect();
                versions.sort_by(|a, b| compare_versions(a, b));
                format!("release {name} version {version} is not uploaded (uploaded: {})", versions.join(", "))
            };
            self.error(PlanErrorKind::Release, label, message);
        }
        self.resolved.insert(name.to_string(), found);
        found
    }

    fn stemcell(&mut self, alias: &str, at: &str) -> Option<StemcellRef> {
        if let Some(s) = self.stemcells.get(alias) {
            return s.clone();
        }
        let Some(entry) = self.input.manifest.stemcell(alias) else {
            self.error(
                PlanErrorKind::Stemcell,
                at.to_string(),
                format!("stemcell {alias} is not listed under stemcells"),
            );
            return None;
        };
        let label = format!("{} ({})", entry.path, entry.alias);
        let candidates: Vec<&StemcellRecord> = self
            .input
            .stemcells
            .iter()
            .filter(|s| match (&entry.os, &entry.name) {
                (Some(os), _) => &s.operating_system == os,
                (None, Some(name)) => &s.name == name,
                (None, None) => false,
            })
            .collect();
        let what = entry.os.clone().or(entry.name.clone()).unwrap_or_default();
        let found = match self.literal(&entry.version, || format!("{label}.version")) {
            None => None,
            Some(version) => {
                let pick = |keep: &dyn Fn(&str) -> bool| {
                    let best = highest(candidates.iter().map(|s| s.version.as_str()).filter(|v| keep(v)));
                    candidates.iter().copied().find(|s| Some(s.version.as_str()) == best)
                };
                let found = match version {
                    Version::Latest => pick(&|_| true),
                    Version::Exact(v) => match v.strip_suffix(".latest") {
                        Some(prefix) => pick(&|c| c == prefix || c.starts_with(&format!("{prefix}."))),
                        None => candidates.iter().copied().find(|s| &s.version == v),
                    },
                };
                if found.is_none() {
                    let message = if candidates.is_empty() {
                        format!("no stemcell {what} is uploaded")
                    } else {
                        let mut versions: Vec<&str> = candidates.iter().map(|s| s.version.as_str()).collect();
                        versions.sort_by(|a, b| compare_versions(a, b));
                        format!("stemcell {what} version {version} is not uploaded (uploaded: {})", versions.join(", "))
                    };
                    self.error(PlanErrorKind::Stemcell, label, message);
                }
                found
            }
        };
        let out = found.map(|s| StemcellRef {
            alias: alias.to_string(),
            name: s.name.clone(),
            os: s.operating_system.clone(),
            version: s.version.clone(),
        });
        self.stemcells.insert(alias.to_string(), out.clone());
        out
    }

    // -----------------------------------------------------------------------------------------
    // one instance group

    fn group(&mut self, ig: &'a InstanceGroup) -> GroupDraft<'a> {
        let label = format!("{} ({})", ig.path, ig.name);
        let cc = self.input.cloud_config;
        let given = self.literal(&ig.instances, || format!("{label}.instances")).copied();
        let count = given.unwrap_or(0);
        let lifecycle = match self.literal(&ig.lifecycle, || format!("{label}.lifecycle")) {
            Some(Lifecycle::Errand) => GroupLifecycle::Errand,
            _ => GroupLifecycle::Service,
        };
        let stemcell = match &ig.stemcell {
            None => {
                self.error(PlanErrorKind::Stemcell, label.clone(), "no stemcell given".into());
                None
            }
            Some(p) => match self.literal(p, || format!("{label}.stemcell")).cloned() {
                Some(alias) => self.stemcell(&alias, &format!("{label}.stemcell")),
                None => None,
            },
        };

        let problems_before = self.errors.len();
        let azs = match &ig.azs {
            None => {
                if !cc.azs.is_empty() {
                    self.error(
                        PlanErrorKind::Placement,
                        label.clone(),
                        "no azs given; the cloud config defines azs".into(),
                    );
                }
                Vec::new()
            }
            Some(p) => {
                let azs = self.strings(p, &format!("{label}.azs"));
                for (i, az) in azs.iter().enumerate() {
                    if cc.az(az).is_none() {
                        self.error(
                            PlanErrorKind::Placement,
                            format!("{label}.azs[{i}]"),
                            format!("az {az} is not defined in the cloud config"),
                        );
                    }
                }
                azs
            }
        };

        let azs_ok = self.errors.len() == problems_before;
        let nets = self.network_uses(ig, &label, given);
        let known: Vec<&KnownInstance> = self.input.known.iter().filter(|k| k.group == ig.name).collect();
        let statics = self.placing_statics(&label, &azs, &nets);
        let slots = place(&azs, count, &known, statics.as_ref(), self.input.new_id);
        let mut ips: Vec<Vec<Option<IpAddr>>> = vec![vec![None; nets.len()]; slots.len()];
        // The placing network's IPs come with the slots (none when they were refused above).
        let placing =
            nets.iter().find(|u| u.statics.is_some() && u.net.kind == NetworkType::Manual).map(|u| u.name.as_str());
        self.other_statics(&label, &nets, &slots, &known, placing, &mut ips);

        let vm_cloud_properties = self.vm(ig, &label);
        let env = self.mapping(&ig.env, || format!("{label}.env"));
        let disk = self.disk(ig, &label);
        let update = self.update(ig, &label, count);

        let mut draft = GroupDraft {
            ig,
            label,
            lifecycle,
            stemcell,
            azs,
            azs_ok,
            nets,
            slots,
            ips,
            vm_cloud_properties,
            env,
            disk,
            update,
            jobs: Vec::new(),
            instances: Vec::new(),
        };
        self.jobs(&mut draft);
        draft
    }

    /// `count`: the number of instances, unless it is unknown (then static IPs are not counted).
    fn network_uses(&mut self, ig: &InstanceGroup, label: &str, given: Option<u64>) -> Vec<NetUse> {
        let count = given.unwrap_or(0);
        let mut out = Vec::new();
        let only = ig.networks.len() == 1;
        for (i, r) in ig.networks.iter().enumerate() {
            let at = format!("{label}.networks[{i}]");
            let Some(name) = self.literal(&r.name, || format!("{at}.name")).cloned() else { continue };
            let at = format!("{at} ({name})");
            let Some(net) = self.networks.nets.get(&name).cloned() else {
                if self.input.cloud_config.network(&name).is_none() {
                    self.error(
                        PlanErrorKind::Network,
                        at,
                        format!("network {name} is not defined in the cloud config"),
                    );
                }
                continue;
            };
            let statics = match &r.static_ips {
                // Unknown instances: nothing to place by, and the count already is a problem.
                _ if given.is_none() => None,
                None => None,
                Some(p) => {
                    let entries = self.strings(p, &format!("{at}.static_ips"));
                    match expand(&entries, count as usize) {
                        Err(e) => {
                            self.error(PlanErrorKind::Network, format!("{at}.static_ips"), e);
                            None
                        }
                        Ok(ips) if ips.len() as u64 != count => {
                            let n =
                                if ips.len() as u64 > count { "more than".to_string() } else { ips.len().to_string() };
                            self.error(
                                PlanErrorKind::Network,
                                format!("{at}.static_ips"),
                                format!("{n} static IPs for {count} instances; give one per instance"),
                            );
                            None
                        }
                        Ok(ips) => Some(ips),
                    }
                }
            };
            if statics.is_some() && net.kind == NetworkType::Dynamic {
                self.error(
                    PlanErrorKind::Network,
                    format!("{at}.static_ips"),
                    format!("network {name} is dynamic: the IaaS assigns its IPs"),
                );
            }
            let default: Vec<String> = if only {
                vec!["dns".into(), "gateway".into()]
            } else {
                r.default
                    .iter()
                    .map(|d| match d {
                        crate::manifest::model::DefaultFor::Dns => "dns",
                        crate::manifest::model::DefaultFor::Gateway => "gateway",
                        crate::manifest::model::DefaultFor::Addressable => "addressable",
                    })
                    .map(str::to_string)
                    .collect()
            };
            out.push(NetUse { name, net, statics, default });
        }
        if ig.networks.is_empty() {
            self.error(PlanErrorKind::Network, label.to_string(), "no networks given".into());
        }
        out
    }

    /// The first manual network with static IPs decides where instances go.
    fn placing_statics<'n>(&mut self, label: &str, azs: &[String], nets: &'n [NetUse]) -> Option<StaticIps<'n>> {
        let (i, u) = nets.iter().enumerate().find(|(_, u)| u.statics.is_some() && u.net.kind == NetworkType::Manual)?;
        let zones: Vec<Option<String>> =
            if azs.is_empty() { vec![None] } else { azs.iter().cloned().map(Some).collect() };
        let mut ips = Vec::new();
        let mut ok = true;
        for ip in u.statics.as_ref().expect("found with statics") {
            let homes: Vec<Option<String>> =
                zones.iter().filter(|z| u.net.static_home(*ip, z.as_deref()).is_some()).cloned().collect();
            if homes.is_empty() {
                ok = false;
                let scope = if azs.is_empty() { String::new() } else { format!(" in azs [{}]", azs.join(", ")) };
                self.error(
                    PlanErrorKind::Network,
                    format!("{label}.networks[{i}] ({}).static_ips", u.name),
                    format!("static IP {ip} is not in a static range of network {}{scope}", u.name),
                );
            }
            ips.push((*ip, homes));
        }
        ok.then_some(StaticIps { network: &u.name, ips })
    }

    /// Static IPs of networks other than the one that placed the instances: an instance keeps
    /// its IP when still listed, others take the first listed IP their AZ can have.
    fn other_statics(
        &mut self,
        label: &str,
        nets: &[NetUse],
        slots: &[Slot],
        known: &[&KnownInstance],
        placed_by: Option<&str>,
        ips: &mut [Vec<Option<IpAddr>>],
    ) {
        for (n, u) in nets.iter().enumerate() {
            let Some(list) = &u.statics else { continue };
            if Some(u.name.as_str()) == placed_by {
                for (s, slot) in slots.iter().enumerate() {
                    ips[s][n] = slot.static_ip;
                }
                continue;
            }
            let fits =
                |ip: IpAddr, az: Option<&str>| u.net.kind != NetworkType::Manual || u.net.static_home(ip, az).is_some();
            let mut free: Vec<Option<IpAddr>> = list.iter().copied().map(Some).collect();
            let mut pending = Vec::new();
            for (s, slot) in slots.iter().enumerate() {
                let held = known.iter().find(|k| k.id == slot.id).and_then(|k| k.ips.get(&u.name)).copied();
                match free
                    .iter()
                    .position(|f| f.is_some() && *f == held && fits(held.expect("some"), slot.az.as_deref()))
                {
                    Some(i) => ips[s][n] = free[i].take(),
                    None => pending.push(s),
                }
            }
            for s in pending {
                let az = slots[s].az.as_deref();
                match free.iter().position(|f| f.is_some_and(|ip| fits(ip, az))) {
                    Some(i) => ips[s][n] = free[i].take(),
                    None => self.error(
                        PlanErrorKind::Network,
                        format!("{label}.networks[{n}] ({}).static_ips", u.name),
                        format!(
                            "no static IP left for instance {} in az {}",
                            slots[s].index,
                            slots[s].az.as_deref().unwrap_or("(none)")
                        ),
                    ),
                }
            }
        }
    }

    fn vm(&mut self, ig: &InstanceGroup, label: &str) -> Json {
        let cc = self.input.cloud_config;
        let mut cp = empty();
        match (&ig.vm_type, &ig.vm_resources) {
            (Some(p), _) => {
                if let Some(name) = self.literal(p, || format!("{label}.vm_type")) {
                    match cc.vm_type(name) {
                        Some(t) => {
                            cp = self
                                .mapping(&t.cloud_properties, || format!("cloud config: {}.cloud_properties", t.path))
                        }
                        None => self.error(
                            PlanErrorKind::Vm,
                            format!("{label}.vm_type"),
                            format!("vm_type {name} is not defined in the cloud config"),
                        ),
                    }
                }
            }
            (None, Some(r)) => {
                let mut res = serde_json::Map::new();
                for (key, v) in [("cpu", &r.cpu), ("ram", &r.ram), ("ephemeral_disk_size", &r.ephemeral_disk_size)] {
                    if let Some(n) = self.literal(v, || format!("{label}.vm_resources.{key}")) {
                        res.insert(key.to_string(), Json::from(*n));
                    }
                }
                cp = serde_json::json!({ "vm_resources": res });
            }
            (None, None) => self.error(PlanErrorKind::Vm, label.to_string(), "no vm_type given".into()),
        }
        if let Some(p) = &ig.vm_extensions {
            for (i, name) in self.strings(p, &format!("{label}.vm_extensions")).into_iter().enumerate() {
                match cc.vm_extension(&name) {
                    Some(e) => {
                        let over =
                            self.mapping(&e.cloud_properties, || format!("cloud config: {}.cloud_properties", e.path));
                        deep_merge(&mut cp, &over);
                    }
                    None => self.error(
                        PlanErrorKind::Vm,
                        format!("{label}.vm_extensions[{i}]"),
                        format!("vm_extension {name} is not defined in the cloud config"),
                    ),
                }
            }
        }
        cp
    }

    fn disk(&mut self, ig: &InstanceGroup, label: &str) -> Option<DiskSpec> {
        if !ig.persistent_disks.is_empty() {
            self.error(
                PlanErrorKind::Vm,
                format!("{label}.persistent_disks"),
                "several named persistent disks are not supported yet; use persistent_disk or persistent_disk_type"
                    .into(),
            );
            return None;
        }
        if let Some(p) = &ig.persistent_disk {
            let size = *self.literal(p, || format!("{label}.persistent_disk"))?;
            return (size > 0).then(|| DiskSpec { size_mb: size, disk_type: None, cloud_properties: empty() });
        }
        let p = ig.persistent_disk_type.as_ref()?;
        let name = self.literal(p, || format!("{label}.persistent_disk_type"))?.clone();
        let Some(t) = self.input.cloud_config.disk_type(&name) else {
            self.error(
                PlanErrorKind::Vm,
                format!("{label}.persistent_disk_type"),
                format!("disk_type {name} is not defined in the cloud config"),
            );
            return None;
        };
        let size = *self.literal(&t.disk_size, || format!("cloud config: {}.disk_size", t.path))?;
        let cloud_properties =
            self.mapping(&t.cloud_properties, || format!("cloud config: {}.cloud_properties", t.path));
        Some(DiskSpec { size_mb: size, disk_type: Some(name), cloud_properties })
    }

    fn update(&mut self, ig: &InstanceGroup, label: &str, count: u64) -> Option<UpdatePolicy> {
        let global = self.input.manifest.update.as_ref();
        let local = ig.update.as_ref();
        fn pick<'u, T>(
            local: Option<&'u Update>,
            global: Option<&'u Update>,
            f: impl Fn(&'u Update) -> &'u Option<Param<T>>,
        ) -> Option<(&'u Param<T>, bool)> {
            local
                .and_then(|u| f(u).as_ref().map(|p| (p, true)))
                .or_else(|| global.and_then(|u| f(u).as_ref().map(|p| (p, false))))
        }
        let path = |key: &str, is_local: bool| {
            if is_local { format!("{label}.update.{key}") } else { format!("update.{key}") }
        };
        let mut missing = Vec::new();
        let mut amount = |b: &mut Self, key: &'static str, got: Option<(&Param<Amount>, bool)>| -> Option<u64> {
            let Some((p, is_local)) = got else {
                missing.push(key);
                return None;
            };
            b.literal(p, || path(key, is_local)).map(|a| match a {
                Amount::Count(n) => *n,
                Amount::Percent(pct) => count * pct / 100,
            })
        };
        let canaries = amount(self, "canaries", pick(local, global, |u| &u.canaries));
        let max_in_flight = amount(self, "max_in_flight", pick(local, global, |u| &u.max_in_flight)).map(|n| n.max(1));
        let mut watch =
            |b: &mut Self, key: &'static str, got: Option<(&Param<WatchTime>, bool)>| -> Option<(u64, u64)> {
                let Some((p, is_local)) = got else {
                    missing.push(key);
                    return None;
                };
                b.literal(p, || path(key, is_local)).map(|w| (w.min_ms, w.max_ms))
            };
        let canary_watch_time = watch(self, "canary_watch_time", pick(local, global, |u| &u.canary_watch_time));
        let update_watch_time = watch(self, "update_watch_time", pick(local, global, |u| &u.update_watch_time));
        for key in &missing {
            self.error(
                PlanErrorKind::Update,
                label.to_string(),
                format!("update.{key} is given neither in the manifest's update nor in the instance group's"),
            );
        }
        let serial = match pick(local, global, |u| &u.serial) {
            None => Some(true),
            Some((p, l)) => self.literal(p, || path("serial", l)).copied(),
        };
        let strategy = match pick(local, global, |u| &u.vm_strategy) {
            None => Some(VmStrategy::DeleteCreate),
            Some((p, l)) => self.literal(p, || path("vm_strategy", l)).copied(),
        };
        Some(UpdatePolicy {
            canaries: canaries?,
            max_in_flight: max_in_flight?,
            canary_watch_time: canary_watch_time?,
            update_watch_time: update_watch_time?,
            serial: serial?,
            create_swap_delete: strategy? == VmStrategy::CreateSwapDelete,
        })
    }

    // -----------------------------------------------------------------------------------------
    // jobs, properties and addons

    fn jobs(&mut self, g: &mut GroupDraft<'a>) {
        let m = self.input.manifest;
        let fallback = {
            let group = self.mapping(&g.ig.properties, || format!("{}.properties", g.label));
            if group.as_object().is_some_and(|o| !o.is_empty()) {
                group
            } else {
                self.mapping(&m.properties, || "properties".into())
            }
        };
        for (j, job) in g.ig.jobs.iter().enumerate() {
            let label = format!("{}.jobs[{j}] ({})", g.label, job.name);
            if let Some(d) = self.job(job, label, &fallback) {
                g.jobs.push(d);
            }
        }

        let own: Vec<(String, String)> = g.jobs.iter().map(|j| (j.name.clone(), j.release.clone())).collect();
        let networks: Vec<&str> = g.nets.iter().map(|n| n.name.as_str()).collect();
        let facts = GroupFacts {
            deployment: &m.name,
            group: &g.ig.name,
            jobs: own.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect(),
            stemcell_os: g.stemcell.as_ref().map(|s| s.os.as_str()),
            networks,
            azs: &g.azs,
            lifecycle: if g.lifecycle == GroupLifecycle::Errand { Lifecycle::Errand } else { Lifecycle::Service },
        };
        let mut addons = Vec::new();
        for a in &m.addons {
            addons.push((format!("{} ({})", a.path, a.name), a));
        }
        for (name, rc) in self.input.runtime_configs {
            for a in &rc.addons {
                addons.push((format!("runtime config '{name}': {} ({})", a.path, a.name), a));
            }
        }
        let mut added = Vec::new();
        for (addon_label, addon) in addons {
            match applies(addon.include.as_ref(), addon.exclude.as_ref(), &facts) {
                Err(e) => {
                    self.error(PlanErrorKind::Addon, addon_label, e);
                    continue;
                }
                Ok(false) => continue,
                Ok(true) => {}
            }
            let fallback = self.mapping(&addon.properties, || format!("{addon_label}.properties"));
            for (j, job) in addon.jobs.iter().enumerate() {
                let label = format!("{}.addons ({}).jobs[{j}] ({})", g.label, addon.name, job.name);
                if g.jobs.iter().chain(added.iter()).any(|d: &JobDraft| d.name == job.name) {
                    self.error(
                        PlanErrorKind::Addon,
                        label,
                        format!(
                            "job {} is already on instance group {}; an addon cannot add it again",
                            job.name, g.ig.name
                        ),
                    );
                    continue;
                }
                if let Some(d) = self.job(job, label, &fallback) {
                    added.push(d);
                }
            }
        }
        g.jobs.extend(added);
    }

    fn job(&mut self, job: &Job, label: String, fallback: &Json) -> Option<JobDraft> {
        let release_name = self.literal(&job.release, || format!("{label}.release"))?.clone();
        let release = self.release(&release_name, &label);
        let own = self.mapping(&job.properties, || format!("{label}.properties"));
        let job_level = own.as_object().is_some_and(|o| !o.is_empty());
        let consumes = self.literal(&job.consumes, || format!("{label}.consumes")).cloned().unwrap_or_default();
        let provides = self.literal(&job.provides, || format!("{label}.provides")).cloned().unwrap_or_default();
        let release = release?;
        let Some(record) = release.jobs.iter().find(|j| j.name == job.name) else {
            self.error(
                PlanErrorKind::Job,
                label,
                format!("release {}/{} has no job {}", release.name, release.version, job.name),
            );
            return None;
        };
        let spec: JobSpec = match serde_json::from_str(&record.spec_json) {
            Ok(s) => s,
            Err(e) => {
                self.error(
                    PlanErrorKind::Job,
                    label,
                    format!(
                        "the spec of job {} in release {}/{} is unreadable: {e}",
                        job.name, release.name, release.version
                    ),
                );
                return None;
            }
        };
        let properties = if job_level { own } else { fallback.clone() };
        if job_level {
            for p in undeclared(&spec, &properties) {
                self.warnings
                    .push(format!("{label}: property {p} is not declared in the job's spec; no template can see it"));
            }
        }
        self.used_releases.insert((release.name.clone(), release.version.clone()));
        Some(JobDraft {
            label,
            name: job.name.clone(),
            release: release.name.clone(),
            release_version: release.version.clone(),
            fingerprint: record.fingerprint.clone(),
            sha256: record.blob_sha256.clone(),
            packages: if record.packages.is_empty() { spec.packages.clone() } else { record.packages.clone() },
            spec,
            properties,
            consumes,
            provides,
            custom: job.custom_provider_definitions.clone(),
        })
    }

    // -----------------------------------------------------------------------------------------
    // IPs and instances

    fn assign_ips(&mut self, groups: &mut [GroupDraft<'a>]) {
        let input = self.input;
        let mut alloc = Allocator::new(input.reserved_elsewhere);
        let holder = |g: &GroupDraft<'_>, s: &Slot| format!("{}/{}", g.ig.name, s.index);
        // Static IPs.
        for g in groups.iter() {
            for (s, slot) in g.slots.iter().enumerate() {
                for (n, u) in g.nets.iter().enumerate() {
                    if let (Some(ip), Some(_)) = (g.ips[s][n], &u.statics)
                        && let Err(other) = alloc.claim(&u.name, ip, &holder(g, slot))
                    {
                        self.error(
                            PlanErrorKind::Network,
                            format!("{}.networks[{n}] ({}).static_ips", g.label, u.name),
                            format!("static IP {ip} is already held by {other}"),
                        );
                    }
                }
            }
        }
        // IPs instances hold and may keep.
        for g in groups.iter_mut() {
            for (s, slot) in g.slots.iter().enumerate() {
                let Some(k) = input.known.iter().find(|k| slot.known && k.group == g.ig.name && k.id == slot.id) else {
                    continue;
                };
                for (n, u) in g.nets.iter().enumerate() {
                    if u.statics.is_some() || u.net.kind != NetworkType::Manual {
                        continue;
                    }
                    if let Some(ip) = k.ips.get(&u.name)
                        && alloc.keep(&u.net, slot.az.as_deref(), *ip, &holder(g, slot))
                    {
                        g.ips[s][n] = Some(*ip);
                    }
                }
            }
        }
        // Instances going away still hold theirs while the deploy runs.
        for k in input.known {
            let stays = groups.iter().any(|g| g.ig.name == k.group && g.slots.iter().any(|s| s.known && s.id == k.id));
            if !stays {
                for (net, ip) in &k.ips {
                    let _ = alloc.claim(net, *ip, &format!("{}/{} (being deleted)", k.group, k.index));
                }
            }
        }
        // New IPs, lowest first.
        for g in groups.iter_mut().filter(|g| g.azs_ok) {
            for (s, slot) in g.slots.iter().enumerate() {
                for (n, u) in g.nets.iter().enumerate() {
                    if u.statics.is_some() || u.net.kind != NetworkType::Manual || g.ips[s][n].is_some() {
                        continue;
                    }
                    match alloc.next(&u.net, slot.az.as_deref(), &holder(g, slot)) {
                        Some(ip) => g.ips[s][n] = Some(ip),
                        None => {
                            let ranges: Vec<String> = u
                                .net
                                .subnets_for(slot.az.as_deref())
                                .filter_map(|(_, sn)| sn.range.map(|b| b.cidr()))
                                .collect();
                            self.errors.push(PlanError {
                                kind: PlanErrorKind::Network,
                                path: g.label.clone(),
                                message: format!(
                                    "network {} has no free IP{} for instance {}/{} (subnets: {})",
                                    u.name,
                                    slot.az.as_ref().map(|a| format!(" in az {a}")).unwrap_or_default(),
                                    g.ig.name,
                                    slot.index,
                                    if ranges.is_empty() { "none".to_string() } else { ranges.join(", ") }
                                ),
                            })
                        }
                    }
                }
            }
        }
    }

    fn instances(&mut self, g: &mut GroupDraft<'a>) {
        let cc = self.input.cloud_config;
        let mut out = Vec::with_capacity(g.slots.len());
        for (s, slot) in g.slots.iter().enumerate() {
            let mut cloud_properties = g.vm_cloud_properties.clone();
            let mut cpi = None;
            if let Some(az) = slot.az.as_deref().and_then(|a| cc.az(a)) {
                let over = self.mapping(&az.cloud_properties, || format!("cloud config: {}.cloud_properties", az.path));
                deep_merge(&mut cloud_properties, &over);
                cpi = az.cpi.clone();
            }
            let mut networks = Vec::with_capacity(g.nets.len());
            for (n, u) in g.nets.iter().enumerate() {
                let ip = g.ips[s][n];
                let az = slot.az.as_deref();
                let subnet = match (u.net.kind, ip) {
                    (NetworkType::Manual, Some(ip)) => {
                        u.net.subnets_for(az).find(|(_, sn)| sn.range.is_some_and(|b| b.contains(ip))).map(|(_, sn)| sn)
                    }
                    (NetworkType::Manual, None) | (NetworkType::Vip, _) => None,
                    (NetworkType::Dynamic, _) => u.net.subnets_for(az).next().map(|(_, sn)| sn),
                };
                let network_level = (u.net.dns.clone(), u.net.cloud_properties.clone());
                networks.push(InstanceNetwork {
                    name: u.name.clone(),
                    kind: u.net.kind.as_str().to_string(),
                    ip: ip.map(|ip| ip.to_string()),
                    netmask: subnet
                        .and_then(|sn| sn.range)
                        .filter(|_| u.net.kind == NetworkType::Manual)
                        .map(|b| b.netmask()),
                    gateway: subnet.and_then(|sn| sn.gateway).map(|g| g.to_string()),
                    dns: subnet.map(|sn| sn.dns.clone()).filter(|d| !d.is_empty()).unwrap_or(network_level.0),
                    default: u.default.clone(),
                    cloud_properties: subnet.map(|sn| sn.cloud_properties.clone()).unwrap_or(network_level.1),
                    static_ip: u.statics.is_some() && ip.is_some(),
                });
            }
            out.push(DesiredInstance {
                group: g.ig.name.clone(),
                index: slot.index,
                id: slot.id.clone(),
                az: slot.az.clone(),
                bootstrap: slot.bootstrap,
                networks,
                cloud_properties,
                cpi,
            });
        }
        g.instances = out;
    }

    // -----------------------------------------------------------------------------------------
    // links, packages, the result

    fn links(&mut self, groups: &[GroupDraft<'a>]) -> Vec<Vec<JobLinks>> {
        let views: Vec<LinkGroup<'_>> =
            groups.iter().map(|g| LinkGroup { name: &g.ig.name, jobs: &g.jobs, instances: &g.instances }).collect();
        let (links, errors) = resolve(&self.input.manifest.name, self.use_dns, &views);
        for (path, message) in errors {
            self.error(PlanErrorKind::Link, path, message);
        }
        links
    }

    /// The group's packages: every job's packages and their dependencies, each from the job's
    /// release, one entry per release and name. Two releases may carry a package of the same
    /// name: as BOSH, that is refused only when jobs list both *directly* (both would be
    /// installed under one name) and they differ; as a dependency each release compiles with
    /// its own (cf-deployment's diego-cell: diego's and garden-runc's `golang-1.23-linux`).
    fn packages(&mut self, g: &GroupDraft<'a>) -> Vec<PackageRef> {
        let mut by_id: BTreeMap<(String, String), PackageRef> = BTreeMap::new();
        // Name → (release, fingerprint) of the first job-listed package of that name.
        let mut listed: BTreeMap<String, (String, String)> = BTreeMap::new();
        for job in &g.jobs {
            let Some(release) =
                self.input.releases.iter().find(|r| r.name == job.release && r.version == job.release_version)
            else {
                continue;
            };
            for name in &job.packages {
                let Some(p) = release.packages.iter().find(|p| &p.name == name) else { continue };
                match listed.get(name) {
                    Some((other, fingerprint)) if *other != release.name && *fingerprint != p.fingerprint => {
                        self.error(
                            PlanErrorKind::Package,
                            g.label.clone(),
                            format!(
                                "package {name} of release {other} and package {name} of release {} differ, and jobs list both; one instance group cannot hold both",
                                release.name
                            ),
                        );
                    }
                    Some(_) => {}
                    None => {
                        listed.insert(name.clone(), (release.name.clone(), p.fingerprint.clone()));
                    }
                }
            }
            let mut stack: Vec<String> = job.packages.iter().rev().cloned().collect();
            let mut seen = BTreeSet::new();
            while let Some(name) = stack.pop() {
                if !seen.insert(name.clone()) {
                    continue;
                }
                let Some(p) = release.packages.iter().find(|p| p.name == name) else {
                    self.error(
                        PlanErrorKind::Package,
                        job.label.clone(),
                        format!(
                            "needs package {name}, which release {}/{} does not have",
                            release.name, release.version
                        ),
                    );
                    continue;
                };
                by_id.entry((release.name.clone(), name.clone())).or_insert_with(|| PackageRef {
                    name: p.name.clone(),
                    release: release.name.clone(),
                    version: p.version.clone(),
                    fingerprint: p.fingerprint.clone(),
                    // A compiled-only release has no source blob; compilation is skipped for it.
                    sha256: p.blob_sha256.clone().unwrap_or_default(),
                    dependencies: p.dependencies.clone(),
                });
                stack.extend(p.dependencies.iter().rev().cloned());
            }
        }
        let all: Vec<PackageRef> = by_id.into_values().collect();
        match package_order(&all) {
            Ok(order) => order,
            Err(cycle) => {
                let releases: BTreeSet<&str> =
                    all.iter().filter(|p| cycle.cycle.contains(&p.name)).map(|p| p.release.as_str()).collect();
                let releases: Vec<&str> = releases.into_iter().collect();
                self.error(
                    PlanErrorKind::Package,
                    g.label.clone(),
                    format!("dependency cycle: {cycle} (release {})", releases.join(", ")),
                );
                Vec::new()
            }
        }
    }

    fn finish(
        &mut self,
        groups: Vec<GroupDraft<'a>>,
        mut links: Vec<Vec<JobLinks>>,
    ) -> Result<DesiredDeployment, Vec<PlanError>> {
        let mut out = Vec::with_capacity(groups.len());
        for (gi, g) in groups.into_iter().enumerate() {
            let packages = self.packages(&g);
            let group_links = std::mem::take(&mut links[gi]);
            let jobs: Vec<DesiredJob> = g
                .jobs
                .into_iter()
                .zip(group_links)
                .map(|(j, links)| DesiredJob {
                    name: j.name,
                    release: j.release,
                    spec: j.spec,
                    fingerprint: j.fingerprint,
                    sha256: j.sha256,
                    properties: j.properties,
                    links,
                })
                .collect();
            let (Some(stemcell), Some(update)) = (g.stemcell, g.update) else { continue };
            let vm_extensions = match &g.ig.vm_extensions {
                Some(Param::Literal(list)) => list.iter().map(|e| e.text().to_string()).collect(),
                _ => Vec::new(),
            };
            out.push(DesiredGroup {
                name: g.ig.name.clone(),
                lifecycle: g.lifecycle,
                stemcell,
                vm_type: g.ig.vm_type.as_ref().and_then(|p| p.literal().cloned()),
                vm_extensions,
                env: g.env,
                persistent_disk: g.disk,
                jobs,
                packages,
                update,
                instances: g.instances,
            });
        }
        if !self.errors.is_empty() {
            return Err(std::mem::take(&mut self.errors));
        }
        let mut stemcells: Vec<StemcellRef> = out.iter().map(|g| g.stemcell.clone()).collect();
        stemcells.sort();
        stemcells.dedup();
        Ok(DesiredDeployment {
            name: self.input.manifest.name.clone(),
            groups: out,
            releases: std::mem::take(&mut self.used_releases).into_iter().collect(),
            stemcells,
            warnings: std::mem::take(&mut self.warnings),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::yaml::parse;
    use crate::state::{JobRecord, PackageRecord};

    const CLOUD: &str = "
azs: [{name: z1}]
vm_types: [{name: small}]
networks:
- name: default
  subnets: [{range: 10.0.0.0/24, gateway: 10.0.0.1, azs: [z1]}]
compilation: {workers: 1, az: z1, vm_type: small, network: default}
";

    /// A release whose one job lists `listed` and whose packages are `packages` (name,
    /// fingerprint, dependencies).
    fn release(name: &str, job: &str, listed: &[&str], packages: &[(&str, &str, &[&str])]) -> ReleaseRecord {
        let spec = format!("name: {job}\npackages: [{}]\n", listed.join(", "));
        let spec: JobSpec = crate::release::manifest::parse(&spec, "spec").unwrap();
        ReleaseRecord {
            name: name.into(),
            version: "1".into(),
            commit_hash: None,
            uncommitted_changes: false,
            jobs: vec![JobRecord {
                name: job.into(),
                version: "1".into(),
                fingerprint: format!("{job}-fp"),
                sha1: String::new(),
                blob_sha256: format!("{job}-blob"),
                packages: spec.packages.clone(),
                spec_json: serde_json::to_string(&spec).unwrap(),
            }],
            packages: packages
                .iter()
                .map(|(p, fp, deps)| PackageRecord {
                    name: p.to_string(),
                    version: fp.to_string(),
                    fingerprint: fp.to_string(),
                    sha1: String::new(),
                    blob_sha256: Some(format!("{p}-{fp}")),
                    dependencies: deps.iter().map(|d| d.to_string()).collect(),
                })
                .collect(),
        }
    }

    fn plan(releases: &[ReleaseRecord]) -> Result<DesiredDeployment, Vec<PlanError>> {
        let manifest = "
name: cell
releases: [{name: diego, version: latest}, {name: garden-runc, version: latest}]
stemcells: [{alias: default, os: ubuntu-jammy, version: latest}]
update: {canaries: 1, max_in_flight: 1, canary_watch_time: 1000, update_watch_time: 1000}
instance_groups:
- name: diego-cell
  azs: [z1]
  instances: 1
  vm_type: small
  stemcell: default
  networks: [{name: default}]
  jobs: [{name: rep, release: diego}, {name: garden, release: garden-runc}]
";
        let manifest = Deployment::from_value(&parse(manifest, "m.yml").unwrap()).unwrap().model;
        let cloud = CloudConfig::from_value(&parse(CLOUD, "cc.yml").unwrap()).unwrap().model;
        let stemcell = StemcellRecord {
            name: "bosh-ubuntu-jammy".into(),
            version: "1".into(),
            operating_system: "ubuntu-jammy".into(),
            api_version: Some(3),
            cid: None,
            sha1: None,
            cloud_properties_json: "{}".into(),
            formats: vec![],
            image_sha256: None,
        };
        let input = DesiredInput {
            manifest: &manifest,
            cloud_config: &cloud,
            runtime_configs: &[],
            releases,
            stemcells: &[stemcell],
            known: &[],
            reserved_elsewhere: &BTreeSet::new(),
            new_id: &|| "id".to_string(),
        };
        build(&input)
    }

    #[test]
    fn two_releases_may_each_compile_with_their_own_package_of_one_name() {
        let d = plan(&[
            release("diego", "rep", &["rep"], &[("rep", "r1", &["golang"]), ("golang", "go-diego", &[])]),
            release(
                "garden-runc",
                "garden",
                &["guardian"],
                &[("guardian", "g1", &["golang"]), ("golang", "go-garden", &[])],
            ),
        ])
        .unwrap_or_else(|e| panic!("{e:?}"));
        let ids: Vec<String> =
            d.groups[0].packages.iter().map(|p| format!("{}/{}@{}", p.release, p.name, p.fingerprint)).collect();
        assert_eq!(
            ids,
            ["diego/golang@go-diego", "garden-runc/golang@go-garden", "garden-runc/guardian@g1", "diego/rep@r1"]
        );
    }

    #[test]
    fn two_differing_packages_of_one_name_that_jobs_list_are_refused() {
        let errors = plan(&[
            release("diego", "rep", &["rep", "golang"], &[("rep", "r1", &[]), ("golang", "go-diego", &[])]),
            release("garden-runc", "garden", &["golang"], &[("golang", "go-garden", &[])]),
        ])
        .unwrap_err();
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert_eq!(errors[0].kind, PlanErrorKind::Package);
        assert_eq!(
            errors[0].to_string(),
            "instance_groups[0] (diego-cell): package golang of release diego and package golang of release \
             garden-runc differ, and jobs list both; one instance group cannot hold both"
        );
        // The same package (one fingerprint) listed by both is one package to hold.
        let d = plan(&[
            release("diego", "rep", &["golang"], &[("golang", "go", &[])]),
            release("garden-runc", "garden", &["golang"], &[("golang", "go", &[])]),
        ])
        .unwrap_or_else(|e| panic!("{e:?}"));
        assert_eq!(d.groups[0].packages.len(), 2, "one per release; compilation keys them by fingerprint");
    }
}
