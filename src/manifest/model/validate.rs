//! Cross-document validation: a manifest against a cloud config and runtime configs.
//!
//! Owns [`validate`] (three parsed documents in, one [`Report`] out) and [`check`] (the same on
//! models already read). The report holds every problem, not the first: each document's own
//! problems (from [`Deployment::read`], [`CloudConfig::read`], [`RuntimeConfig::read`]) and
//! then the references between them — the vm_type, vm_extensions, persistent disk types,
//! networks and azs an instance group names must exist in the cloud config; a runtime-config
//! addon job's release must be listed by the runtime configs (which bosh merges); a release a
//! runtime config pins must not conflict with the manifest's; an instance group needs a vm_type
//! (or vm_resources), a stemcell and, when the cloud config has azs, azs; the update block needs
//! its four required keys once overrides are merged; static IPs lie in a static range of their
//! network, in a subnet of the group's azs, and no two instance groups share one. Any value that
//! is still a `((variable))` skips the checks that need it. Pure: documents in, report out.

use std::collections::HashSet;

use serde::Serialize;

use super::cloud_config::{CloudConfig, Network, NetworkType};
use super::common::Version;
use super::deployment::{Deployment, InstanceGroup, NetworkRef, Update};
use super::ip::IpSpan;
use super::param::Param;
use super::problem::{Document, Item, Problem, ProblemKind};
use super::runtime_config::RuntimeConfig;
use crate::manifest::yaml::{Value, YamlPath};

/// Everything found wrong: `problems` make a deploy fail, `warnings` do not (unknown keys,
/// unresolved entries that could not be looked into).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Report {
    pub problems: Vec<Problem>,
    pub warnings: Vec<Problem>,
}

impl Report {
    /// True when there is no problem (warnings allowed).
    pub fn is_ok(&self) -> bool {
        self.problems.is_empty()
    }
}

/// Validates a manifest against a cloud config and runtime configs (`(name, document)` pairs,
/// the name used in problems). All three are parsed YAML, interpolated or not.
pub fn validate(manifest: &Value, cloud_config: &Value, runtime_configs: &[(String, Value)]) -> Report {
    let deployment = Deployment::read(manifest);
    let cloud = CloudConfig::read(cloud_config);
    let runtime: Vec<_> =
        runtime_configs.iter().map(|(name, doc)| (name.clone(), RuntimeConfig::read(doc, name))).collect();

    let mut report = Report::default();
    let known: HashSet<YamlPath> = deployment.problems.iter().map(|p| p.path.clone()).collect();
    report.problems.extend(deployment.problems);
    report.warnings.extend(deployment.warnings);
    report.problems.extend(cloud.problems);
    report.warnings.extend(cloud.warnings);
    let mut models = Vec::with_capacity(runtime.len());
    for (name, outcome) in runtime {
        report.problems.extend(outcome.problems);
        report.warnings.extend(outcome.warnings);
        models.push((name, outcome.model));
    }
    report.problems.extend(check_with(&deployment.model, &cloud.model, &models, &known));

    // Manifest first, then the cloud config, then runtime configs in the order given; within a
    // document, the order problems were found in.
    let rank = |doc: &Document| match doc {
        Document::Manifest => 0,
        Document::CloudConfig => 1,
        Document::RuntimeConfig(name) => 2 + runtime_configs.iter().position(|(n, _)| n == name).unwrap_or(0),
    };
    report.problems.sort_by_key(|p| rank(&p.document));
    report.warnings.sort_by_key(|p| rank(&p.document));
    report
}

/// The cross-document checks alone, on models already read.
pub fn check(
    deployment: &Deployment,
    cloud: &CloudConfig,
    runtime_configs: &[(String, RuntimeConfig)],
) -> Vec<Problem> {
    check_with(deployment, cloud, runtime_configs, &HashSet::new())
}

/// `known`: manifest paths that already have a problem, so that "missing" is not said again
/// about a value that was given but malformed.
fn check_with(
    deployment: &Deployment,
    cloud: &CloudConfig,
    runtime_configs: &[(String, RuntimeConfig)],
    known: &HashSet<YamlPath>,
) -> Vec<Problem> {
    let mut c = Checker { cloud, known, out: Vec::new(), static_ips: Vec::new() };
    for ig in &deployment.instance_groups {
        c.instance_group(ig);
    }
    c.update(deployment);
    c.runtime_configs(deployment, runtime_configs);
    c.out
}

struct Checker<'a> {
    cloud: &'a CloudConfig,
    known: &'a HashSet<YamlPath>,
    out: Vec<Problem>,
    /// Static IPs claimed so far: network, addresses, where.
    static_ips: Vec<(String, IpSpan, YamlPath)>,
}

impl Checker<'_> {
    fn manifest(&mut self, path: YamlPath, kind: ProblemKind) {
        self.out.push(Problem { document: Document::Manifest, path, kind });
    }

    fn unknown(&mut self, path: YamlPath, what: Item, name: &str) {
        self.manifest(path, ProblemKind::UnknownReference { what, name: name.to_string() });
    }

    fn instance_group(&mut self, ig: &InstanceGroup) {
        let cc = self.cloud;
        let at = &ig.path;

        match &ig.vm_type {
            Some(Param::Literal(name)) if cc.vm_type(name).is_none() => {
                self.unknown(at.key("vm_type"), Item::VmType, name)
            }
            None if ig.vm_resources.is_none()
                && !self.known.contains(&at.key("vm_type"))
                && !self.known.contains(&at.key("vm_resources")) =>
            {
                self.manifest(at.clone(), ProblemKind::MissingKey { key: "vm_type" })
            }
            _ => {}
        }
        if let Some(Param::Literal(extensions)) = &ig.vm_extensions {
            for (i, ext) in extensions.iter().enumerate() {
                if let Param::Literal(name) = ext
                    && cc.vm_extension(name).is_none()
                {
                    self.unknown(at.key("vm_extensions").index(i), Item::VmExtension, name);
                }
            }
        }
        if let Some(Param::Literal(name)) = &ig.persistent_disk_type
            && cc.disk_type(name).is_none()
        {
            self.unknown(at.key("persistent_disk_type"), Item::DiskType, name);
        }
        for disk in &ig.persistent_disks {
            if let Param::Literal(name) = &disk.disk_type
                && cc.disk_type(name).is_none()
            {
                self.unknown(disk.path.clone(), Item::DiskType, name);
            }
        }
        match &ig.azs {
            Some(Param::Literal(azs)) => {
                for (i, az) in azs.iter().enumerate() {
                    if let Param::Literal(name) = az
                        && cc.az(name).is_none()
                    {
                        self.unknown(at.key("azs").index(i), Item::Az, name);
                    }
                }
            }
            None if !cc.azs.is_empty() && !self.known.contains(&at.key("azs")) => {
                self.manifest(at.clone(), ProblemKind::MissingKey { key: "azs" })
            }
            _ => {}
        }
        if ig.stemcell.is_none() && !self.known.contains(&at.key("stemcell")) {
            self.manifest(at.clone(), ProblemKind::MissingKey { key: "stemcell" });
        }
        for migrated in &ig.migrated_from {
            if let Some(Param::Literal(az)) = &migrated.az
                && cc.az(az).is_none()
            {
                self.unknown(migrated.path.clone(), Item::Az, az);
            }
        }
        for net in &ig.networks {
            let Param::Literal(name) = &net.name else { continue };
            match cc.network(name) {
                None => self.unknown(net.path.clone(), Item::Network, name),
                Some(network) => self.network(ig, net, network),
            }
        }
    }

    fn network(&mut self, ig: &InstanceGroup, net: &NetworkRef, network: &Network) {
        let kind = network.kind.literal().copied();
        let name = &network.name;
        if kind == Some(NetworkType::Vip) && !net.default.is_empty() {
            self.manifest(
                net.path.key("default"),
                ProblemKind::Invalid(format!(
                    "network '{name}' is a vip network and cannot be the default for anything"
                )),
            );
        }
        if net.static_ips.is_some() {
            match kind {
                Some(NetworkType::Dynamic) => self.manifest(
                    net.path.key("static_ips"),
                    ProblemKind::Invalid(format!("network '{name}' is dynamic: the IaaS assigns its IPs, static_ips cannot be given")),
                ),
                Some(NetworkType::Vip) if matches!(&network.subnets, Param::Literal(s) if !s.is_empty()) => self.manifest(
                    net.path.key("static_ips"),
                    ProblemKind::Invalid(format!(
                        "vip network '{name}' assigns its IPs from the cloud config's subnets; static_ips cannot be given"
                    )),
                ),
                _ => self.static_ips(ig, net, network),
            }
        }
        self.az_coverage(ig, net, network);
    }

    /// Every az of the instance group needs a subnet in each of its networks (when the
    /// network's subnets name their azs).
    fn az_coverage(&mut self, ig: &InstanceGroup, net: &NetworkRef, network: &Network) {
        let Some(Param::Literal(ig_azs)) = &ig.azs else { return };
        let Param::Literal(subnets) = &network.subnets else { return };
        if subnets.is_empty() {
            return;
        }
        let mut covered: HashSet<&str> = HashSet::new();
        for subnet in subnets {
            match &subnet.azs {
                Some(Param::Literal(azs)) if azs.iter().all(|a| !a.is_var()) => {
                    covered.extend(azs.iter().map(|a| a.text()));
                }
                _ => return, // a subnet without azs, or with unresolved ones: cannot tell
            }
        }
        for az in ig_azs {
            if let Param::Literal(az) = az
                && self.cloud.az(az).is_some()
                && !covered.contains(az.as_str())
            {
                self.manifest(
                    net.path.clone(),
                    ProblemKind::Invalid(format!("network '{}' has no subnet in az '{az}'", network.name)),
                );
            }
        }
    }

    fn static_ips(&mut self, ig: &InstanceGroup, net: &NetworkRef, network: &Network) {
        let Some(Param::Literal(entries)) = &net.static_ips else { return };
        let mut spans = Vec::new();
        for (i, entry) in entries.iter().enumerate() {
            // Malformed entries were reported when the manifest was read.
            if let Some(span) = entry.literal().and_then(|t| IpSpan::parse(t).ok()) {
                spans.push((i, span));
            }
        }
        for (i, span) in &spans {
            let path = net.path.key("static_ips").index(*i);
            let clash = self
                .static_ips
                .iter()
                .find(|(n, s, _)| n == &network.name && s.overlaps(span))
                .map(|(_, _, p)| p.clone());
            if let Some(first) = clash {
                self.manifest(
                    path.clone(),
                    ProblemKind::Duplicate { what: Item::StaticIp, name: span.to_string(), first },
                );
            }
            self.static_ips.push((network.name.clone(), *span, path));
        }

        if network.kind != Param::Literal(NetworkType::Manual) {
            return;
        }
        let Param::Literal(subnets) = &network.subnets else { return };
        // Which subnets' static ranges are fully known.
        let mut ranges = Vec::new();
        for subnet in subnets {
            let statics = match &subnet.static_ips {
                None => Vec::new(),
                Some(Param::Literal(list)) => {
                    let parsed: Option<Vec<IpSpan>> =
                        list.iter().map(|e| e.literal().and_then(|t| IpSpan::parse(t).ok())).collect();
                    match parsed {
                        Some(p) => p,
                        None => return,
                    }
                }
                Some(Param::Var(_)) => return,
            };
            ranges.push((subnet, statics));
        }
        for (i, span) in &spans {
            let path = net.path.key("static_ips").index(*i);
            let home = ranges.iter().find(|(_, statics)| statics.iter().any(|s| s.contains(span)));
            let Some((subnet, _)) = home else {
                self.manifest(
                    path,
                    ProblemKind::Invalid(format!(
                        "static IP {span} is not in a static range of network '{}'",
                        network.name
                    )),
                );
                continue;
            };
            if let (Some(Param::Literal(ig_azs)), Some(Param::Literal(subnet_azs))) = (&ig.azs, &subnet.azs) {
                let shared = subnet_azs.iter().any(|a| ig_azs.iter().any(|b| !a.is_var() && a.text() == b.text()));
                let resolved = ig_azs.iter().chain(subnet_azs.iter()).all(|a| !a.is_var());
                if resolved && !shared {
                    let list: Vec<&str> = subnet_azs.iter().map(|a| a.text()).collect();
                    self.manifest(
                        path,
                        ProblemKind::Invalid(format!(
                            "static IP {span} is in a subnet of network '{}' for azs [{}], none of which the instance group uses",
                            network.name,
                            list.join(", ")
                        )),
                    );
                }
            }
        }
    }

    /// The four required update keys must be given, globally or by every instance group.
    fn update(&mut self, deployment: &Deployment) {
        if deployment.instance_groups.is_empty() {
            return;
        }
        let global_path = YamlPath::root().key("update");
        if self.known.contains(&global_path) {
            return;
        }
        let missing: Vec<&'static str> = Update::REQUIRED
            .into_iter()
            .filter(|key| !deployment.update.as_ref().is_some_and(|u| u.has(key)))
            .filter(|key| deployment.instance_groups.iter().any(|ig| !ig.update.as_ref().is_some_and(|u| u.has(key))))
            .filter(|key| !self.known.contains(&global_path.key(*key)))
            .collect();
        if missing.is_empty() {
            return;
        }
        if deployment.update.is_none() {
            self.manifest(YamlPath::root(), ProblemKind::MissingKey { key: "update" });
        } else {
            for key in missing {
                self.manifest(global_path.clone(), ProblemKind::MissingKey { key });
            }
        }
    }

    fn runtime_configs(&mut self, deployment: &Deployment, runtime_configs: &[(String, RuntimeConfig)]) {
        // bosh merges all runtime configs before applying them: their releases form one list.
        let listed: HashSet<&str> =
            runtime_configs.iter().flat_map(|(_, rc)| rc.releases.iter().map(|r| r.name.as_str())).collect();
        for (name, rc) in runtime_configs {
            let document = Document::RuntimeConfig(name.clone());
            for addon in &rc.addons {
                for job in &addon.jobs {
                    if let Param::Literal(release) = &job.release
                        && !listed.contains(release.as_str())
                    {
                        self.out.push(Problem {
                            document: document.clone(),
                            path: job.path.clone(),
                            kind: ProblemKind::UnknownReference { what: Item::Release, name: release.clone() },
                        });
                    }
                }
            }
        }

        // A release pinned by a runtime config whose addons may apply to this deployment must
        // not be pinned at another version by the manifest or by another runtime config.
        let mut pinned: Vec<(&str, &str, Document)> = Vec::new();
        for (rc_name, rc) in runtime_configs {
            let document = Document::RuntimeConfig(rc_name.clone());
            for release in &rc.releases {
                let used = rc.addons.iter().any(|a| {
                    a.may_apply_to(&deployment.name)
                        && a.jobs.iter().any(|j| j.release.literal().is_some_and(|r| r == &release.name))
                });
                let Param::Literal(Version::Exact(version)) = &release.version else { continue };
                if !used {
                    continue;
                }
                if let Some(Param::Literal(Version::Exact(theirs))) =
                    deployment.release(&release.name).map(|r| &r.version)
                    && theirs != version
                {
                    self.out.push(Problem {
                        document: document.clone(),
                        path: release.path.key("version"),
                        kind: ProblemKind::Invalid(format!(
                            "release '{}' version {version} conflicts with version {theirs} in the deployment manifest",
                            release.name
                        )),
                    });
                }
                if let Some((_, theirs, other)) = pinned.iter().find(|(n, v, _)| *n == release.name && *v != version) {
                    self.out.push(Problem {
                        document: document.clone(),
                        path: release.path.key("version"),
                        kind: ProblemKind::Invalid(format!(
                            "release '{}' version {version} conflicts with version {theirs} in {other}",
                            release.name
                        )),
                    });
                }
                pinned.push((&release.name, version, document.clone()));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::yaml::parse;

    const CLOUD: &str = "
azs: [{name: z1}, {name: z2}]
vm_types: [{name: small}]
vm_extensions: [{name: lb}]
disk_types: [{name: 10GB, disk_size: 10240}]
networks:
- name: default
  subnets:
  - {range: 10.0.0.0/24, gateway: 10.0.0.1, static: [10.0.0.10 - 10.0.0.20], azs: [z1]}
  - {range: 10.0.1.0/24, gateway: 10.0.1.1, static: [10.0.1.10 - 10.0.1.20], azs: [z2]}
- {name: dyn, type: dynamic}
- {name: public, type: vip}
compilation: {workers: 1, az: z1, vm_type: small, network: default}
";

    const HEAD: &str = "
name: demo
releases: [{name: nginx, version: 1}]
stemcells: [{alias: default, os: ubuntu-jammy, version: latest}]
update: {canaries: 1, max_in_flight: 1, canary_watch_time: 1000, update_watch_time: 1000}
";

    fn run(manifest_tail: &str, runtime: &[(&str, &str)]) -> Vec<String> {
        let manifest = parse(&format!("{HEAD}{manifest_tail}"), "m.yml").unwrap();
        let cloud = parse(CLOUD, "cc.yml").unwrap();
        let runtime: Vec<(String, Value)> =
            runtime.iter().map(|(n, t)| (n.to_string(), parse(t, n).unwrap())).collect();
        let report = validate(&manifest, &cloud, &runtime);
        report.problems.iter().map(|p| format!("{}: {p}", p.document)).collect()
    }

    #[test]
    fn a_consistent_set_passes() {
        let tail = "
instance_groups:
- name: web
  azs: [z1, z2]
  instances: 2
  jobs: [{name: nginx, release: nginx}]
  vm_type: small
  vm_extensions: [lb]
  persistent_disk_type: 10GB
  stemcell: default
  networks:
  - {name: default, static_ips: [10.0.0.10, 10.0.1.10], default: [dns, gateway]}
  - {name: public, static_ips: [203.0.113.5, 203.0.113.6]}
";
        assert_eq!(run(tail, &[]), Vec::<String>::new());
    }

    #[test]
    fn every_missing_cloud_config_name_is_reported_with_its_path() {
        let tail = "
instance_groups:
- name: web
  azs: [z1, z3]
  instances: 1
  jobs: [{name: nginx, release: nginx}]
  vm_type: large
  vm_extensions: [lb, public-lb]
  persistent_disk_type: 100GB
  stemcell: default
  networks: [{name: private}]
  migrated_from: [{name: old, az: z9}]
- name: db
  azs: [z1]
  instances: 1
  jobs: []
  vm_resources: {cpu: 1, ram: 1024, ephemeral_disk_size: 1024}
  persistent_disks: [{name: data, type: fast}]
  stemcell: default
  networks: [{name: default}]
";
        assert_eq!(
            run(tail, &[]),
            vec![
                "manifest: instance_groups[0].vm_type: vm_type 'large' is not defined in the cloud config's vm_types",
                "manifest: instance_groups[0].vm_extensions[1]: vm_extension 'public-lb' is not defined in the cloud config's vm_extensions",
                "manifest: instance_groups[0].persistent_disk_type: disk_type '100GB' is not defined in the cloud config's disk_types",
                "manifest: instance_groups[0].azs[1]: az 'z3' is not defined in the cloud config's azs",
                "manifest: instance_groups[0].migrated_from[0]: az 'z9' is not defined in the cloud config's azs",
                "manifest: instance_groups[0].networks[0]: network 'private' is not defined in the cloud config's networks",
                "manifest: instance_groups[1].persistent_disks[0]: disk_type 'fast' is not defined in the cloud config's disk_types",
            ]
        );
    }

    #[test]
    fn unresolved_variables_skip_the_checks() {
        let tail = "
instance_groups:
- name: web
  azs: ((azs))
  instances: ((n))
  jobs: [{name: nginx, release: nginx}]
  vm_type: ((vm_type))
  vm_extensions: [((ext)), lb]
  persistent_disk_type: ((disk))
  stemcell: default
  networks: [{name: ((net)), static_ips: ((ips))}]
";
        assert_eq!(run(tail, &[]), Vec::<String>::new());
    }

    #[test]
    fn instance_group_sanity() {
        let tail = "
instance_groups:
- name: no-vm
  instances: 1
  jobs: []
  networks: [{name: dyn, static_ips: [10.0.0.11]}]
- name: router
  azs: [z2]
  instances: 2
  jobs: []
  vm_type: small
  stemcell: default
  networks:
  - {name: default, static_ips: [10.0.0.11, 10.0.1.99], default: [dns, gateway]}
  - {name: public, default: [addressable]}
- name: cell
  azs: [z1, z2]
  instances: 1
  jobs: []
  vm_type: small
  stemcell: default
  networks: [{name: default, static_ips: [10.0.0.11]}]
";
        assert_eq!(
            run(tail, &[]),
            vec![
                "manifest: instance_groups[0]: missing required key 'vm_type'",
                "manifest: instance_groups[0]: missing required key 'azs'",
                "manifest: instance_groups[0]: missing required key 'stemcell'",
                "manifest: instance_groups[0].networks[0].static_ips: network 'dyn' is dynamic: the IaaS assigns its IPs, static_ips cannot be given",
                "manifest: instance_groups[1].networks[0].static_ips[0]: static IP 10.0.0.11 is in a subnet of network 'default' for azs [z1], none of which the instance group uses",
                "manifest: instance_groups[1].networks[0].static_ips[1]: static IP 10.0.1.99 is not in a static range of network 'default'",
                "manifest: instance_groups[1].networks[1].default: network 'public' is a vip network and cannot be the default for anything",
                "manifest: instance_groups[2].networks[0].static_ips[0]: static IP '10.0.0.11' is defined more than once (first at instance_groups[1].networks[0].static_ips[0])",
            ]
        );
    }

    #[test]
    fn the_update_block_needs_its_required_keys() {
        let manifest = parse(
            "name: d\nupdate: {canaries: 1}\ninstance_groups:\n- {name: a, instances: 0, jobs: [], vm_type: small, stemcell: s, azs: [z1], networks: [{name: default}], update: {max_in_flight: 1}}\nstemcells: [{alias: s, os: x, version: 1}]\n",
            "m.yml",
        )
        .unwrap();
        let report = validate(&manifest, &parse(CLOUD, "cc.yml").unwrap(), &[]);
        let problems: Vec<String> = report.problems.iter().map(|p| p.to_string()).collect();
        assert_eq!(
            problems,
            vec![
                "update: missing required key 'canary_watch_time'",
                "update: missing required key 'update_watch_time'"
            ]
        );
    }

    #[test]
    fn runtime_config_addons_resolve_against_runtime_releases() {
        let tail = "
releases_extra: ignored
instance_groups: []
";
        let dns = "
addons:
- name: dns
  jobs: [{name: bosh-dns, release: bosh-dns}]
releases: [{name: bosh-dns, version: 1.36.0}]
";
        let syslog = "
addons:
- name: syslog
  jobs: [{name: syslog_forwarder, release: syslog}, {name: helper, release: nginx}]
  include: {deployments: [demo]}
releases: [{name: nginx, version: 2}]
";
        assert_eq!(
            run(tail, &[("dns", dns), ("syslog", syslog)]),
            vec![
                "runtime config 'syslog': addons[0].jobs[0]: release 'syslog' is not listed under releases",
                "runtime config 'syslog': releases[0].version: release 'nginx' version 2 conflicts with version 1 in the deployment manifest",
            ]
        );
    }

    #[test]
    fn report_serializes_for_json_output() {
        let manifest = parse("name: d\ninstance_groups: []\nextra: 1\n", "m.yml").unwrap();
        let report = validate(&manifest, &parse(CLOUD, "cc.yml").unwrap(), &[]);
        let json = serde_json::to_value(&report).unwrap();
        assert_eq!(
            json,
            serde_json::json!({
                "problems": [],
                "warnings": [{"document": "manifest", "path": "extra", "code": "unknown-key", "message": "unknown key 'extra' is ignored"}]
            })
        );
    }
}
