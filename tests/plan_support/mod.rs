//! Helpers for the `plan_*` tests: inline YAML in, a desired deployment (or its problems as
//! text) out. Releases and stemcells are hand-built records, as `upload-release` would leave
//! them, with job specs written as YAML.
#![allow(dead_code)]

use std::cell::Cell;
use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use rosh::manifest::model::{CloudConfig, Deployment, RuntimeConfig};
use rosh::manifest::yaml::parse;
use rosh::plan::desired::{DesiredDeployment, DesiredGroup, DesiredInstance};
use rosh::plan::{DesiredInput, KnownInstance, build};
use rosh::release::manifest::JobSpec;
use rosh::state::{JobRecord, PackageRecord, ReleaseRecord, StemcellRecord};

pub const CLOUD: &str = "
azs:
- {name: z1, cloud_properties: {zone: a, tags: {az: z1}}, cpi: local-1}
- {name: z2, cloud_properties: {zone: b}}
- {name: z3, cloud_properties: {zone: c}}
vm_types:
- {name: small, cloud_properties: {cpu: 1, tags: {size: small, az: none}}}
vm_extensions:
- {name: lb, cloud_properties: {lb: web-lb, tags: {lb: 'yes'}}}
disk_types:
- {name: 10GB, disk_size: 10240, cloud_properties: {type: ssd}}
networks:
- name: default
  subnets:
  - range: 10.0.1.0/24
    gateway: 10.0.1.1
    dns: [10.0.0.2]
    reserved: [10.0.1.2 - 10.0.1.9]
    static: [10.0.1.10 - 10.0.1.19]
    azs: [z1]
    cloud_properties: {subnet: s1}
  - range: 10.0.2.0/24
    gateway: 10.0.2.1
    reserved: [10.0.2.2 - 10.0.2.9]
    static: [10.0.2.10 - 10.0.2.19]
    azs: [z2]
    cloud_properties: {subnet: s2}
  - range: 10.0.3.0/24
    gateway: 10.0.3.1
    reserved: [10.0.3.2 - 10.0.3.9]
    static: [10.0.3.10 - 10.0.3.19]
    azs: [z3]
- name: tiny
  subnets:
  - {range: 192.168.0.0/29, gateway: 192.168.0.1, reserved: [192.168.0.2], static: [192.168.0.6], azs: [z1, z2]}
- name: dyn
  type: dynamic
  dns: [1.1.1.1]
  cloud_properties: {net: dyn}
compilation: {workers: 1, az: z1, vm_type: small, network: default}
";

/// The top of every test manifest; instance groups follow.
pub const HEAD: &str = "
name: demo
releases: [{name: web, version: latest}]
stemcells: [{alias: default, os: ubuntu-jammy, version: latest}]
update: {canaries: 1, max_in_flight: 2, canary_watch_time: 1000-30000, update_watch_time: 5000}
";

pub const NGINX_SPEC: &str = "
name: nginx
templates: {nginx.conf.hbs: config/nginx.conf}
packages: [nginx]
properties:
  nginx.port: {default: 80}
  nginx.workers: {description: how many}
provides:
- {name: http, type: http, properties: [nginx.port]}
consumes:
- {name: backend, type: app, optional: true}
";

pub const APP_SPEC: &str = "
name: app
packages: [ruby]
properties:
  app.name: {default: demo}
consumes:
- {name: db, type: db}
- {name: cache, type: cache, optional: true}
provides:
- {name: app, type: app, properties: [app.name]}
";

pub const POSTGRES_SPEC: &str = "
name: postgres
packages: [postgres]
properties:
  postgres.port: {default: 5432}
  postgres.user: {default: admin}
  postgres.password: {description: secret}
provides:
- {name: db, type: db, properties: [postgres.port, postgres.user, postgres.password]}
";

/// A release record with the given jobs (spec YAML) and packages (`name`, dependencies).
pub fn release(name: &str, version: &str, jobs: &[&str], packages: &[(&str, &[&str])]) -> ReleaseRecord {
    let jobs = jobs
        .iter()
        .map(|text| {
            let spec: JobSpec = rosh::release::manifest::parse(text, "spec").expect("job spec");
            JobRecord {
                name: spec.name.clone(),
                version: format!("{}-v", spec.name),
                fingerprint: format!("{}-{version}-fp", spec.name),
                sha1: "sha1".into(),
                blob_sha256: format!("{}-{version}-blob", spec.name),
                packages: spec.packages.clone(),
                spec_json: serde_json::to_string(&spec).unwrap(),
            }
        })
        .collect();
    let packages = packages
        .iter()
        .map(|(p, deps)| PackageRecord {
            name: p.to_string(),
            version: format!("{p}-v"),
            fingerprint: format!("{p}-{name}-fp"),
            sha1: "sha1".into(),
            blob_sha256: Some(format!("{p}-blob")),
            dependencies: deps.iter().map(|d| d.to_string()).collect(),
        })
        .collect();
    ReleaseRecord {
        name: name.into(),
        version: version.into(),
        commit_hash: None,
        uncommitted_changes: false,
        jobs,
        packages,
    }
}

/// The `web` release the tests deploy: nginx, app, postgres.
pub fn web_release(version: &str) -> ReleaseRecord {
    release(
        "web",
        version,
        &[NGINX_SPEC, APP_SPEC, POSTGRES_SPEC],
        &[
            ("nginx", &["pcre", "openssl"]),
            ("pcre", &[]),
            ("openssl", &[]),
            ("ruby", &["openssl", "yaml"]),
            ("yaml", &[]),
            ("postgres", &["openssl"]),
        ],
    )
}

pub fn stemcell(os: &str, version: &str) -> StemcellRecord {
    StemcellRecord {
        name: format!("bosh-local-{os}"),
        version: version.into(),
        operating_system: os.into(),
        api_version: Some(3),
        cid: None,
        sha1: None,
        cloud_properties_json: "{}".into(),
        formats: vec![],
        image_sha256: None,
    }
}

/// Everything a plan is built from; `plan` builds it, `replan` builds again from the instances
/// the last successful plan made.
pub struct World {
    pub cloud: String,
    pub runtime: Vec<(String, String)>,
    pub releases: Vec<ReleaseRecord>,
    pub stemcells: Vec<StemcellRecord>,
    pub known: Vec<KnownInstance>,
    pub elsewhere: BTreeSet<IpAddr>,
    pub next: Cell<u32>,
}

impl Default for World {
    fn default() -> Self {
        World {
            cloud: CLOUD.into(),
            runtime: vec![],
            releases: vec![web_release("1")],
            stemcells: vec![stemcell("ubuntu-jammy", "1.406")],
            known: vec![],
            elsewhere: BTreeSet::new(),
            next: Cell::new(0),
        }
    }
}

pub fn manifest(text: &str) -> Deployment {
    match Deployment::from_value(&parse(text, "manifest.yml").unwrap()) {
        Ok(l) => l.model,
        Err(e) => panic!("test manifest does not read: {e}"),
    }
}

impl World {
    /// Builds the desired deployment of `HEAD` + `groups`.
    pub fn plan(&self, groups: &str) -> Result<DesiredDeployment, Vec<String>> {
        self.plan_manifest(&format!("{HEAD}{groups}"))
    }

    pub fn plan_manifest(&self, text: &str) -> Result<DesiredDeployment, Vec<String>> {
        let m = manifest(text);
        let cloud = CloudConfig::from_value(&parse(&self.cloud, "cc.yml").unwrap()).expect("cloud config").model;
        let runtime: Vec<(String, RuntimeConfig)> = self
            .runtime
            .iter()
            .map(|(n, t)| {
                (n.clone(), RuntimeConfig::from_value(&parse(t, "rc.yml").unwrap(), n).expect("runtime config").model)
            })
            .collect();
        let new_id = || {
            self.next.set(self.next.get() + 1);
            format!("id-{}", self.next.get())
        };
        let input = DesiredInput {
            manifest: &m,
            cloud_config: &cloud,
            runtime_configs: &runtime,
            releases: &self.releases,
            stemcells: &self.stemcells,
            known: &self.known,
            reserved_elsewhere: &self.elsewhere,
            new_id: &new_id,
        };
        build(&input).map_err(|errors| errors.iter().map(|e| e.to_string()).collect())
    }

    /// Plans, then remembers the instances as deployed for the next plan.
    pub fn deploy(&mut self, groups: &str) -> DesiredDeployment {
        let d = self.plan(groups).unwrap_or_else(|e| panic!("plan failed: {e:#?}"));
        self.known = known(&d);
        d
    }
}

/// What a deploy of `d` leaves behind.
pub fn known(d: &DesiredDeployment) -> Vec<KnownInstance> {
    d.groups
        .iter()
        .flat_map(|g| g.instances.iter())
        .map(|i| KnownInstance {
            group: i.group.clone(),
            index: i.index,
            id: i.id.clone(),
            az: i.az.clone(),
            ips: i
                .networks
                .iter()
                .filter_map(|n| n.ip.as_ref().map(|ip| (n.name.clone(), ip.parse().unwrap())))
                .collect::<BTreeMap<_, _>>(),
            bootstrap: i.bootstrap,
        })
        .collect()
}

pub fn group<'a>(d: &'a DesiredDeployment, name: &str) -> &'a DesiredGroup {
    d.groups.iter().find(|g| g.name == name).unwrap_or_else(|| panic!("no group {name}"))
}

/// `index:id:az` of each instance, by index.
pub fn layout(g: &DesiredGroup) -> Vec<String> {
    g.instances.iter().map(|i| format!("{}:{}:{}", i.index, i.id, i.az.as_deref().unwrap_or("-"))).collect()
}

/// The IP of `i` on `network`.
pub fn ip<'a>(i: &'a DesiredInstance, network: &str) -> Option<&'a str> {
    i.networks.iter().find(|n| n.name == network).and_then(|n| n.ip.as_deref())
}

/// An instance group of `instances` running `jobs` (YAML list items) on network `default`.
pub fn ig(name: &str, azs: &str, instances: u64, jobs: &str) -> String {
    format!(
        "- name: {name}\n  azs: {azs}\n  instances: {instances}\n  vm_type: small\n  stemcell: default\n  networks: [{{name: default}}]\n  jobs: {jobs}\n"
    )
}
