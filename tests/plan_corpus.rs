//! The desired model of real inputs: cf-deployment v58's `nats` and `router` instance groups
//! (their routing and nats jobs; jobs of releases the corpus does not hold are left out, and
//! `((variables))` are given placeholder values) over release records made from the real job
//! and package specs of nats 56.26.0 and routing 0.317.0. Packages those releases vendor from
//! elsewhere (golang) are added as plain packages, as a release tarball would carry them.

mod plan_support;

use std::collections::BTreeSet;
use std::path::Path;

use plan_support::*;
use rosh::manifest::yaml::{Mapping, Value, parse};
use rosh::release::manifest::{JobSpec, PackageSpec};
use rosh::state::{JobRecord, PackageRecord, ReleaseRecord};

fn corpus() -> std::path::PathBuf {
    match std::env::var_os("ROSH_CORPUS") {
        Some(dir) => dir.into(),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/corpus"),
    }
}

/// A release record from a release source directory's job and package specs.
fn release_from(dir: &Path, name: &str, version: &str) -> ReleaseRecord {
    let specs = |kind: &str| {
        let mut out: Vec<(String, String)> = std::fs::read_dir(dir.join(kind))
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.join("spec").is_file())
            .map(|p| {
                (
                    p.file_name().unwrap().to_string_lossy().into_owned(),
                    std::fs::read_to_string(p.join("spec")).unwrap(),
                )
            })
            .collect();
        out.sort();
        out
    };
    let jobs: Vec<JobRecord> = specs("jobs")
        .into_iter()
        .map(|(dir_name, text)| {
            let spec: JobSpec = rosh::release::manifest::parse(&text, &dir_name).unwrap();
            JobRecord {
                name: spec.name.clone(),
                version: "v".into(),
                fingerprint: format!("{}-fp", spec.name),
                sha1: "sha1".into(),
                blob_sha256: format!("{}-blob", spec.name),
                packages: spec.packages.clone(),
                spec_json: serde_json::to_string(&spec).unwrap(),
            }
        })
        .collect();
    let mut packages: Vec<PackageRecord> = specs("packages")
        .into_iter()
        .map(|(dir_name, text)| {
            let spec: PackageSpec = rosh::release::manifest::parse(&text, &dir_name).unwrap();
            package(&spec.name, spec.dependencies)
        })
        .collect();
    let present: BTreeSet<String> = packages.iter().map(|p| p.name.clone()).collect();
    let vendored: BTreeSet<String> = packages
        .iter()
        .flat_map(|p| p.dependencies.clone())
        .chain(jobs.iter().flat_map(|j| j.packages.clone()))
        .filter(|d| !present.contains(d))
        .collect();
    packages.extend(vendored.into_iter().map(|d| package(&d, vec![])));
    ReleaseRecord {
        name: name.into(),
        version: version.into(),
        commit_hash: None,
        uncommitted_changes: false,
        jobs,
        packages,
    }
}

fn package(name: &str, dependencies: Vec<String>) -> PackageRecord {
    PackageRecord {
        name: name.into(),
        version: "v".into(),
        fingerprint: format!("{name}-fp"),
        sha1: "sha1".into(),
        blob_sha256: Some(format!("{name}-blob")),
        dependencies,
    }
}

/// Every string holding a `((variable))` becomes a placeholder, as interpolation would.
fn fill_variables(v: &mut Value) {
    match v {
        Value::String(s) if s.contains("((") => {
            *s = format!("placeholder-for-{}", s.trim_matches(|c| c == '(' || c == ')'))
        }
        Value::Sequence(items) => items.iter_mut().for_each(fill_variables),
        Value::Mapping(m) => m.iter_mut().for_each(|(_, v)| fill_variables(v)),
        _ => {}
    }
}

#[test]
fn cf_deployment_nats_and_router_over_the_real_release_specs() {
    let root = corpus();
    let cf = std::fs::read_to_string(root.join("cf-deployment/v58.0.0/cf-deployment.yml")).unwrap();
    let mut cf = parse(&cf, "cf-deployment.yml").unwrap();
    fill_variables(&mut cf);
    let groups: Vec<Value> = cf["instance_groups"]
        .as_sequence()
        .unwrap()
        .iter()
        .filter(|g| matches!(g["name"].as_str(), Some("nats" | "router")))
        .cloned()
        .map(|mut g| {
            let jobs = g["jobs"].as_sequence_mut().unwrap();
            jobs.retain(|j| matches!(j["release"].as_str(), Some("nats" | "routing")));
            g
        })
        .collect();
    assert_eq!(groups.len(), 2);
    let mut manifest = Mapping::new();
    manifest.insert("name".into(), "cf".into());
    manifest.insert(
        "releases".into(),
        parse("[{name: nats, version: 56.26.0}, {name: routing, version: latest}]", "r").unwrap(),
    );
    manifest.insert("stemcells".into(), cf["stemcells"].clone());
    manifest.insert("update".into(), cf["update"].clone());
    manifest.insert("instance_groups".into(), Value::Sequence(groups));
    let manifest = rosh::manifest::yaml::to_string(&Value::Mapping(manifest));

    let w = World {
        cloud: CLOUD
            .replace("vm_types:\n- {name: small", "vm_types:\n- {name: medium}\n- {name: minimal}\n- {name: small")
            .replace(
                "vm_extensions:\n",
                "vm_extensions:\n- {name: cf-router-network-properties, cloud_properties: {lb: router}}\n",
            ),
        releases: vec![
            release_from(&root.join("releases/nats-56.26.0"), "nats", "56.26.0"),
            release_from(&root.join("releases/routing-0.317.0"), "routing", "0.317.0"),
        ],
        stemcells: vec![stemcell("ubuntu-noble", "1.425")],
        ..World::default()
    };
    let d = w.plan_manifest(&manifest).unwrap_or_else(|e| panic!("{e:#?}"));

    let nats = group(&d, "nats");
    assert_eq!(layout(nats), ["0:id-1:z1", "1:id-2:z2"]);
    assert!(!nats.update.serial, "cf-deployment updates in parallel by default");
    let names: Vec<&str> = nats.packages.iter().map(|p| p.name.as_str()).collect();
    let at = |n: &str| names.iter().position(|x| *x == n).unwrap_or_else(|| panic!("{n} not in {names:?}"));
    assert!(at("golang-1.23-linux") < at("nats-server"), "{names:?}");

    let router = group(&d, "router");
    assert!(router.update.serial);
    let gorouter = router.jobs.iter().find(|j| j.name == "gorouter").unwrap();
    let link = &gorouter.links["nats-tls"];
    assert_eq!((link.group.as_str(), link.job.as_str()), ("nats", "nats-tls"));
    assert_eq!(link.properties["nats"]["user"], "nats");
    assert_eq!(link.properties["nats"]["hostname"], "nats.service.cf.internal");
    assert!(link.properties["nats"]["port"].is_u64(), "the spec default: {}", link.properties);
    let addresses: Vec<&str> = link.instances.iter().map(|i| i.address.as_str()).collect();
    assert_eq!(addresses, ["10.0.1.20", "10.0.2.20"]);
    assert!(!gorouter.links.contains_key("nats"), "no plain nats provider: the optional link is absent");
    assert_eq!(router.instances[0].cloud_properties["lb"], "router");

    // nats is listed before router and updates in its own (parallel) batch first.
    let graph = rosh::plan::LinkGraph::new(&d);
    assert!(graph.check_order(&d.groups).is_ok());
    assert_eq!(rosh::plan::batches(&d.groups), [vec!["nats"], vec!["router"]]);
}
