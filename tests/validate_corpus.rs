//! `manifest::model` against real BOSH inputs nobody here wrote: cf-deployment (v1.0.0 to
//! v58.0.0) and bosh-deployment manifests, cloud configs and runtime configs from
//! `../shared/corpus` (or `$ROSH_CORPUS`).

use std::path::{Path, PathBuf};

use rosh::manifest::model::{
    self, CloudConfig, Deployment, Document, Item, Param, Problem, ProblemKind, RuntimeConfig, Version,
};
use rosh::manifest::yaml::{self, Value, YamlPath};

mod common;
use common::corpus;

fn load(relative: &str) -> Value {
    let path = corpus().join(relative);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    yaml::parse(&text, relative).unwrap_or_else(|e| panic!("{e}"))
}

/// Applies one ops file to a document with rosh's go-patch engine.
fn apply_ops(mut doc: Value, ops: &Value, name: &str) -> Value {
    let ops = rosh::manifest::patch::parse_ops(ops, name).unwrap_or_else(|e| panic!("{e}"));
    rosh::manifest::patch::apply_all(&mut doc, &ops).unwrap_or_else(|e| panic!("{e}"));
    doc
}

fn vm_extension_missing(instance_group: usize, name: &str) -> Problem {
    Problem {
        document: Document::Manifest,
        path: YamlPath::root().key("instance_groups").index(instance_group).key("vm_extensions").index(0),
        kind: ProblemKind::UnknownReference { what: Item::VmExtension, name: name.to_string() },
    }
}

fn manifest_version_warning() -> Problem {
    Problem {
        document: Document::Manifest,
        path: YamlPath::root().key("manifest_version"),
        kind: ProblemKind::UnknownKey { key: "manifest_version".into() },
    }
}

const V58: &str = "cf-deployment/v58.0.0/cf-deployment.yml";
const V58_BOSH_LITE_CC: &str = "cf-deployment/v58.0.0/iaas-support/bosh-lite/cloud-config.yml";
const V58_OPENSTACK_CC: &str = "cf-deployment/v58.0.0/iaas-support/openstack/cloud-config.yml";

// cf-deployment's instance groups ask for load-balancer vm_extensions that the bosh-lite cloud
// config does not define; `operations/bosh-lite.yml` removes the scheduler's and replaces the
// router's with `ssh-proxy-and-router-lb`.
#[test]
fn cf_v58_against_the_bosh_lite_cloud_config_lacks_exactly_two_vm_extensions() {
    let manifest = load(V58);
    let report = model::validate(&manifest, &load(V58_BOSH_LITE_CC), &[]);

    assert_eq!(
        report.problems,
        vec![
            vm_extension_missing(8, "diego-ssh-proxy-network-properties"),
            vm_extension_missing(9, "cf-router-network-properties"),
        ]
    );
    assert_eq!(
        report.problems.iter().map(|p| p.to_string()).collect::<Vec<_>>(),
        vec![
            "instance_groups[8].vm_extensions[0]: vm_extension 'diego-ssh-proxy-network-properties' is not defined in the cloud config's vm_extensions",
            "instance_groups[9].vm_extensions[0]: vm_extension 'cf-router-network-properties' is not defined in the cloud config's vm_extensions",
        ]
    );
    // manifest_version is cf-deployment's own bookkeeping, not bosh schema: a warning only.
    assert_eq!(report.warnings, vec![manifest_version_warning()]);

    let deployment = Deployment::from_value(&manifest).unwrap().model;
    assert_eq!(deployment.instance_groups[8].name, "scheduler");
    assert_eq!(deployment.instance_groups[9].name, "router");
}

#[test]
fn cf_v58_with_the_bosh_lite_ops_file_passes() {
    let ops = load("cf-deployment/v58.0.0/operations/bosh-lite.yml");
    let manifest = apply_ops(load(V58), &ops, "operations/bosh-lite.yml");
    let report = model::validate(&manifest, &load(V58_BOSH_LITE_CC), &[]);
    assert_eq!(report.problems, vec![]);
    assert_eq!(report.warnings, vec![manifest_version_warning()]);
}

// The openstack cloud config sizes ephemeral disks with flavors instead of vm_extensions;
// `operations/openstack.yml` removes the api's and the diego-cell's extensions.
#[test]
fn cf_v58_against_the_openstack_cloud_config_lacks_the_ephemeral_disk_extensions() {
    let report = model::validate(&load(V58), &load(V58_OPENSTACK_CC), &[]);
    assert_eq!(
        report.problems,
        vec![vm_extension_missing(6, "50GB_ephemeral_disk"), vm_extension_missing(13, "100GB_ephemeral_disk")]
    );
}

#[test]
fn cf_v58_with_the_openstack_ops_file_passes() {
    let ops = load("cf-deployment/v58.0.0/operations/openstack.yml");
    let manifest = apply_ops(load(V58), &ops, "operations/openstack.yml");
    assert_eq!(model::validate(&manifest, &load(V58_OPENSTACK_CC), &[]).problems, vec![]);
}

#[test]
fn cf_v58_fits_the_alicloud_and_vsphere_cloud_configs() {
    for cc in ["alicloud", "vsphere"] {
        let report = model::validate(
            &load(V58),
            &load(&format!("cf-deployment/v58.0.0/iaas-support/{cc}/cloud-config.yml")),
            &[],
        );
        assert_eq!(report.problems, vec![], "{cc}");
    }
}

// Every cf-deployment since v1.0.0 has needed the same bosh-lite ops file for the same reason.
#[test]
fn older_cf_deployments_lack_the_same_two_extensions_in_their_bosh_lite_cloud_configs() {
    let cases = [
        ("v1.0.0", "cf-deployment/v1.0.0/bosh-lite-cloud-config.yml"),
        ("v12.0.0", "cf-deployment/v12.0.0/bosh-lite-cloud-config.yml"),
        ("v44.5.0", V58_BOSH_LITE_CC),
    ];
    for (version, cc) in cases {
        let manifest = load(&format!("cf-deployment/{version}/cf-deployment.yml"));
        let deployment = Deployment::from_value(&manifest).unwrap().model;
        let index = |name: &str| deployment.instance_groups.iter().position(|ig| ig.name == name).unwrap();
        let expected = vec![
            vm_extension_missing(index("scheduler"), "diego-ssh-proxy-network-properties"),
            vm_extension_missing(index("router"), "cf-router-network-properties"),
        ];
        // Problems come in manifest order; the scheduler and the router swapped places over time.
        let problems = model::validate(&manifest, &load(cc), &[]).problems;
        assert_eq!(sorted(problems), sorted(expected), "cf-deployment {version}");
    }
}

// bosh-deployment's runtime configs: dns.yml and syslog.yml fit; bpm.yml pins bpm 0.8.0, which
// its bpm addon would colocate with cf-deployment's bpm 1.4.33 — bosh refuses that pair.
#[test]
fn bosh_deployment_runtime_configs_with_cf_v58() {
    let runtime: Vec<(String, Value)> = ["bpm", "dns", "syslog"]
        .iter()
        .map(|name| (name.to_string(), load(&format!("bosh-deployment/runtime-configs/{name}.yml"))))
        .collect();
    for (name, doc) in &runtime {
        RuntimeConfig::from_value(doc, name).unwrap_or_else(|e| panic!("runtime config {name}: {e}"));
    }
    let report = model::validate(&load(V58), &load(V58_BOSH_LITE_CC), &runtime);
    let bpm_conflict = Problem {
        document: Document::RuntimeConfig("bpm".into()),
        path: YamlPath::root().key("releases").index(0).key("version"),
        kind: ProblemKind::Invalid(
            "release 'bpm' version 0.8.0 conflicts with version 1.4.33 in the deployment manifest".into(),
        ),
    };
    assert_eq!(
        report.problems,
        vec![
            vm_extension_missing(8, "diego-ssh-proxy-network-properties"),
            vm_extension_missing(9, "cf-router-network-properties"),
            bpm_conflict,
        ]
    );
}

fn sorted(mut problems: Vec<Problem>) -> Vec<Problem> {
    problems.sort_by_key(|p| p.path.to_string());
    problems
}

const MANIFESTS: [&str; 5] = [
    "cf-deployment/v58.0.0/cf-deployment.yml",
    "cf-deployment/v44.5.0/cf-deployment.yml",
    "cf-deployment/v12.0.0/cf-deployment.yml",
    "cf-deployment/v1.0.0/cf-deployment.yml",
    "bosh-deployment/bosh.yml",
];

#[test]
fn every_v2_manifest_in_the_corpus_reads_into_the_model() {
    for file in MANIFESTS {
        let loaded = Deployment::from_value(&load(file)).unwrap_or_else(|e| panic!("{file}:\n{e}"));
        assert!(!loaded.model.instance_groups.is_empty(), "{file}");
        for warning in &loaded.warnings {
            assert!(matches!(warning.kind, ProblemKind::UnknownKey { .. }), "{file}: {warning}");
        }
    }

    let v58 = Deployment::from_value(&load(V58)).unwrap().model;
    assert_eq!(v58.name, "cf");
    assert_eq!(v58.instance_groups.len(), 17);
    assert_eq!(v58.stemcells[0].os.as_deref(), Some("ubuntu-noble"));
    assert_eq!(v58.stemcells[0].version, Param::Literal(Version::Exact("1.425".into())));
    assert_eq!(v58.instance_group("smoke-tests").unwrap().lifecycle, Param::Literal(model::Lifecycle::Errand));
    assert_eq!(v58.instance_group("database").unwrap().persistent_disk_type, Some(Param::Literal("10GB".into())));

    // bosh.yml is a create-env manifest: its v1-era keys are warnings, not errors.
    let bosh = Deployment::from_value(&load("bosh-deployment/bosh.yml")).unwrap();
    let keys: Vec<String> = bosh.warnings.iter().map(|w| w.path.to_string()).collect();
    assert_eq!(
        keys,
        [
            "cloud_provider",
            "disk_pools",
            "networks",
            "resource_pools",
            "instance_groups[0].persistent_disk_pool",
            "instance_groups[0].resource_pool"
        ]
    );
}

/// Every `*cloud-config*.yml` under `dir` (variable files excluded).
fn cloud_configs(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().path()).collect();
    entries.sort();
    for path in entries {
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if path.is_dir() {
            cloud_configs(&path, out);
        } else if name.contains("cloud-config") && name.ends_with(".yml") && !name.ends_with("-vars.yml") {
            out.push(path);
        }
    }
}

#[test]
fn every_cloud_config_in_the_corpus_reads_into_the_model() {
    let mut found = Vec::new();
    cloud_configs(&corpus(), &mut found);
    // 11 in bosh-deployment, 4 in cf-deployment v58's iaas-support, 2 for older cf-deployments.
    assert!(found.len() >= 17, "found only {found:?}");
    for path in &found {
        let text = std::fs::read_to_string(path).unwrap();
        let doc = yaml::parse(&text, &path.display().to_string()).unwrap();
        let loaded = CloudConfig::from_value(&doc).unwrap_or_else(|e| panic!("{}:\n{e}", path.display()));
        assert_eq!(loaded.warnings, vec![], "{}", path.display());
        assert!(!loaded.model.vm_types.is_empty() && loaded.model.compilation.is_some(), "{}", path.display());
    }

    // YAML 1.1 integers (`20_480`) are numbers, as bosh's parsers read them.
    let alicloud =
        CloudConfig::from_value(&load("cf-deployment/v58.0.0/iaas-support/alicloud/cloud-config.yml")).unwrap();
    assert_eq!(alicloud.model.disk_type("5GB").unwrap().disk_size, Param::Literal(20_480));
    // Unresolved values stay variables: `static: ((internal_static_ips))`.
    let softlayer = CloudConfig::from_value(&load("bosh-deployment/softlayer/cloud-config.yml")).unwrap().model;
    let subnets = softlayer.network("default").unwrap().subnets.literal().unwrap();
    assert_eq!(subnets[0].static_ips, Some(Param::Var("((internal_static_ips))".into())));
}

#[test]
fn rosh_validate_names_the_missing_vm_extensions_and_passes_with_bosh_lite_ops() {
    let dir = corpus().join("cf-deployment/v58.0.0");
    let cc = "iaas-support/bosh-lite/cloud-config.yml";
    let out = common::rosh(&["validate", "cf-deployment.yml", "--cloud-config", cc], &dir);
    let text = common::stdout(&out);
    assert_eq!(out.status.code(), Some(1), "{text}{}", common::stderr(&out));
    assert!(
        text.contains(
            "cf-deployment.yml: instance_groups[8].vm_extensions[0]: vm_extension 'diego-ssh-proxy-network-properties'"
        ),
        "{text}"
    );
    assert!(
        text.contains(
            "cf-deployment.yml: instance_groups[9].vm_extensions[0]: vm_extension 'cf-router-network-properties'"
        ),
        "{text}"
    );
    assert!(text.contains("2 problems"), "{text}");

    let out =
        common::rosh(&["validate", "cf-deployment.yml", "--cloud-config", cc, "-o", "operations/bosh-lite.yml"], &dir);
    assert_eq!(out.status.code(), Some(0), "{}{}", common::stdout(&out), common::stderr(&out));

    let out = common::rosh(&["validate", "cf-deployment.yml", "--cloud-config", cc, "--json"], &dir);
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("--json prints JSON");
    assert_eq!(json["ok"], serde_json::Value::Bool(false));
    assert_eq!(json["problems"].as_array().unwrap().len(), 2);
}
