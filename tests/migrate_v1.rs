//! `rosh migrate-manifest` and `manifest::v1` against real 2015–2016 v1 manifests from the corpus
//! (cf-release v207 and v238 example manifests, diego-release's minimal-aws manifest), real
//! spiff templates, and real v2 manifests (cf-deployment). The expected facts are read from the
//! v1 input where they can be, so each test says what must survive the migration.
//!
//! Corpus root: `$ROSH_CORPUS`, else `../shared/corpus` next to this crate.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use rosh::manifest::v1::{self, MigrateError, Migrated};
use rosh::manifest::yaml::{self, Value};

mod common;
use common::corpus;

const CF_V207: &str = "v1-schema-2015-2016/cf-release-v207/example_manifests/minimal-aws.yml";
const CF_V238: &str = "v1-schema-2015-2016/cf-release-v238/example_manifests/minimal-aws.yml";
const DIEGO: &str = "v1-schema-2015-2016/diego-release-2016-06-minimal-aws/examples/minimal-aws/diego.yml";
const CF_JOBS_SPIFF: &str = "v1-schema-2015-2016/cf-release-v207/templates/cf-jobs.yml";
const CF_STUB_SPIFF: &str = "v1-schema-2015-2016/cf-release-v207/bosh-lite/cf-stub-spiff.yml";
const DIEGO_SPIFF: &str = "v1-schema-2015-2016/diego-release-v0.1099.0/manifest-generation/diego.yml";
const CF_DEPLOYMENT: &str = "cf-deployment/v1.0.0/cf-deployment.yml";

fn read(rel: &str) -> String {
    let path = corpus().join(rel);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

fn parse(rel: &str) -> Value {
    yaml::parse(&read(rel), rel).unwrap()
}

fn migrate(rel: &str) -> Migrated {
    v1::migrate_text(&read(rel), rel).unwrap_or_else(|e| panic!("{e}"))
}

fn refusal(rel: &str) -> MigrateError {
    match v1::migrate_text(&read(rel), rel) {
        Ok(_) => panic!("{rel} migrated, but should have been refused"),
        Err(e) => match e {
            v1::MigrateTextError::Migrate { error, .. } => error,
            other => panic!("{rel}: expected a migration refusal, got {other}"),
        },
    }
}

fn seq(value: &Value) -> &[Value] {
    value.as_sequence().map(Vec::as_slice).unwrap_or(&[])
}

fn text(value: &Value) -> String {
    yaml::scalar_text(value).unwrap_or_default()
}

fn names(list: &Value, key: &str) -> Vec<String> {
    seq(list).iter().map(|item| text(&item[key])).collect()
}

fn group<'a>(m: &'a Migrated, name: &str) -> &'a Value {
    seq(&m.manifest["instance_groups"])
        .iter()
        .find(|g| text(&g["name"]) == name)
        .unwrap_or_else(|| panic!("no instance group `{name}`"))
}

fn v1_job<'a>(v1: &'a Value, name: &str) -> &'a Value {
    seq(&v1["jobs"]).iter().find(|j| text(&j["name"]) == name).unwrap_or_else(|| panic!("no v1 job `{name}`"))
}

fn static_ips(job_or_group: &Value) -> Vec<String> {
    seq(&job_or_group["networks"]).iter().flat_map(|n| seq(&n["static_ips"]).iter().map(text)).collect()
}

/// Everything an instance group names resolves: vm_type, stemcell, disk type, azs, networks,
/// and on each manual network a subnet in each of the group's azs; migrated_from azs are the
/// group's. Independent of the library's own check, on purpose.
fn assert_resolves(m: &Migrated) {
    let cc = &m.cloud_config;
    let azs: HashSet<String> = names(&cc["azs"], "name").into_iter().collect();
    let vm_types: HashSet<String> = names(&cc["vm_types"], "name").into_iter().collect();
    let disk_types: HashSet<String> = names(&cc["disk_types"], "name").into_iter().collect();
    let stemcells: HashSet<String> = names(&m.manifest["stemcells"], "alias").into_iter().collect();
    let networks: BTreeMap<String, &Value> = seq(&cc["networks"]).iter().map(|n| (text(&n["name"]), n)).collect();
    assert_eq!(networks.len(), seq(&cc["networks"]).len(), "network names are unique");
    assert!(!seq(&m.manifest["instance_groups"]).is_empty());
    for g in seq(&m.manifest["instance_groups"]) {
        let name = text(&g["name"]);
        assert!(vm_types.contains(&text(&g["vm_type"])), "{name}: vm_type {:?}", g["vm_type"]);
        assert!(stemcells.contains(&text(&g["stemcell"])), "{name}: stemcell {:?}", g["stemcell"]);
        if let Some(disk) = g.get("persistent_disk_type") {
            assert!(disk_types.contains(&text(disk)), "{name}: disk type {disk:?}");
        }
        let group_azs: Vec<String> = seq(&g["azs"]).iter().map(text).collect();
        assert!(!group_azs.is_empty(), "{name}: no azs");
        for az in &group_azs {
            assert!(azs.contains(az), "{name}: az {az}");
        }
        for mf in seq(&g["migrated_from"]) {
            assert!(group_azs.contains(&text(&mf["az"])), "{name}: migrated_from {mf:?}");
        }
        assert!(!seq(&g["jobs"]).is_empty(), "{name}: no jobs");
        for job in seq(&g["jobs"]) {
            let release = text(&job["release"]);
            assert!(names(&m.manifest["releases"], "name").contains(&release), "{name}: release {release}");
        }
        for net in seq(&g["networks"]) {
            let net_name = text(&net["name"]);
            let def = networks.get(&net_name).unwrap_or_else(|| panic!("{name}: network {net_name}"));
            if text(&def["type"]) != "manual" {
                continue;
            }
            for az in &group_azs {
                let covered = seq(&def["subnets"])
                    .iter()
                    .any(|s| text(&s["az"]) == *az || seq(&s["azs"]).iter().any(|a| text(a) == *az));
                assert!(covered, "{name}: network {net_name} has no subnet in {az}");
            }
        }
    }
    let compilation = &cc["compilation"];
    assert!(networks.contains_key(&text(&compilation["network"])), "compilation network");
    assert!(azs.contains(&text(&compilation["az"])), "compilation az");
    assert!(v1::check_references(&m.manifest, &m.cloud_config).is_empty());
}

/// Facts every single-zone corpus manifest must keep: one az per distinct availability_zone of
/// its resource pools, vm_types named after the resource pools, each `foo_z1` job becoming
/// group `foo` with `migrated_from: [{name: foo_z1, az: z1}]` and the same templates,
/// instances, static IPs and job-level properties; global properties unchanged.
fn assert_single_zone_migration(rel: &str, expected_groups: &[&str]) -> Migrated {
    let v1 = parse(rel);
    let m = migrate(rel);
    assert_resolves(&m);

    let group_names = names(&m.manifest["instance_groups"], "name");
    assert_eq!(group_names, expected_groups);

    let pool_zones: HashSet<String> =
        seq(&v1["resource_pools"]).iter().map(|p| text(&p["cloud_properties"]["availability_zone"])).collect();
    assert_eq!(pool_zones.len(), 1, "{rel} is a single-zone manifest");
    let zone = pool_zones.into_iter().next().unwrap_or_default();
    assert_eq!(names(&m.cloud_config["azs"], "name"), ["z1"]);
    assert_eq!(text(&m.cloud_config["azs"][0]["cloud_properties"]["availability_zone"]), zone);

    assert_eq!(names(&m.cloud_config["vm_types"], "name"), names(&v1["resource_pools"], "name"));
    for vm_type in seq(&m.cloud_config["vm_types"]) {
        assert!(vm_type["cloud_properties"].get("availability_zone").is_none(), "the az moved to azs");
    }
    assert_eq!(names(&m.cloud_config["networks"], "name"), names(&v1["networks"], "name"));

    let mut v1_static = 0;
    for g in seq(&m.manifest["instance_groups"]) {
        let name = text(&g["name"]);
        let old_name = format!("{name}_z1");
        let job = v1_job(&v1, &old_name);
        assert_eq!(g["migrated_from"], yaml::parse(&format!("[{{name: {old_name}, az: z1}}]"), "x").unwrap());
        assert_eq!(g["azs"], yaml::parse("[z1]", "x").unwrap());
        assert_eq!(g["instances"], job["instances"], "{name}");
        assert_eq!(text(&g["vm_type"]), text(&job["resource_pool"]), "{name}");
        assert_eq!(names(&g["jobs"], "name"), names(&job["templates"], "name"), "{name}");
        assert_eq!(names(&g["jobs"], "release"), names(&job["templates"], "release"), "{name}");
        assert_eq!(static_ips(g), static_ips(job), "{name}");
        v1_static += static_ips(job).len();
        assert_eq!(g.get("properties"), job.get("properties"), "{name}: job-level properties stay with the group");
        assert_eq!(g.get("persistent_disk"), job.get("persistent_disk"), "{name}: persistent_disk");
    }
    let migrated_static: usize = seq(&m.manifest["instance_groups"]).iter().map(|g| static_ips(g).len()).sum();
    assert_eq!(migrated_static, v1_static);
    assert_eq!(m.manifest["properties"], v1["properties"]);
    assert_eq!(m.manifest["releases"], v1["releases"]);
    assert_eq!(m.manifest["update"], v1["update"]);
    assert_eq!(m.manifest["name"], v1["name"]);
    assert!(m.manifest.get("director_uuid").is_none());
    assert!(m.manifest.get("jobs").is_none() && m.manifest.get("resource_pools").is_none());
    m
}

#[test]
fn cf_release_v207_minimal_aws_migrates() {
    let m = assert_single_zone_migration(
        CF_V207,
        &[
            "nats",
            "etcd",
            "nfs",
            "postgres",
            "api",
            "ha_proxy",
            "hm9000",
            "loggregator",
            "loggregator_trafficcontroller",
            "login",
            "router",
            "runner",
            "stats",
        ],
    );
    // 10.0.16.100-105 static range: nats .103, etcd .104, nfs .105, postgres .101, router .102;
    // ha_proxy's elastic IP placeholder on the vip network.
    assert_eq!(static_ips(group(&m, "nats")), ["10.0.16.103"]);
    assert_eq!(static_ips(group(&m, "ha_proxy")), ["REPLACE_WITH_ELASTIC_IP"]);
    let total: usize = seq(&m.manifest["instance_groups"]).iter().map(|g| static_ips(g).len()).sum();
    assert_eq!(total, 6);
    assert_eq!(group(&m, "nfs")["persistent_disk"], Value::from(102400));
    assert_eq!(group(&m, "postgres")["update"], yaml::parse("{serial: true}", "x").unwrap());
    assert_eq!(
        group(&m, "ha_proxy")["networks"][1],
        yaml::parse("{name: cf_public, default: [gateway, dns]}", "x").unwrap()
    );

    // One stemcell, aliased after its OS, version placeholder kept as written.
    assert_eq!(
        m.manifest["stemcells"],
        yaml::parse(
            "[{alias: ubuntu-trusty, name: bosh-aws-xen-hvm-ubuntu-trusty-go_agent, \
               version: REPLACE_WITH_BOSH_STEMCELL_VERSION}]",
            "x"
        )
        .unwrap()
    );
    // Both manual subnets land in z1; the vip network is kept as it was.
    let nets = seq(&m.cloud_config["networks"]);
    assert_eq!(text(&nets[0]["subnets"][0]["az"]), "z1");
    assert_eq!(text(&nets[1]["subnets"][0]["az"]), "z1");
    assert_eq!(nets[0]["subnets"][0]["static"], yaml::parse("['10.0.16.100 - 10.0.16.105']", "x").unwrap());
    assert_eq!(nets[2], yaml::parse("{name: elastic, type: vip, cloud_properties: {}}", "x").unwrap());
    assert_eq!(
        m.cloud_config["compilation"],
        yaml::parse(
            "{workers: 6, network: cf_private, reuse_compilation_vms: true, az: z1, \
              cloud_properties: {instance_type: c3.large}}",
            "x"
        )
        .unwrap()
    );
    // What was dropped or guessed is said, with paths.
    let warnings = m.warnings.join("\n");
    for expected in
        ["director_uuid", "resource_pools[0].network", "networks[0].subnets[0]", "properties: kept as global"]
    {
        assert!(warnings.contains(expected), "missing warning about {expected}:\n{warnings}");
    }
}

#[test]
fn cf_release_v238_minimal_aws_migrates() {
    let m = assert_single_zone_migration(
        CF_V238,
        &[
            "nats",
            "etcd",
            "consul",
            "blobstore",
            "postgres",
            "api",
            "ha_proxy",
            "hm9000",
            "doppler",
            "loggregator_trafficcontroller",
            "uaa",
            "router",
            "runner",
        ],
    );
    assert_eq!(seq(&group(&m, "api")["jobs"]).len(), 13);
    assert_eq!(group(&m, "etcd")["persistent_disk"], Value::from(102400));
    assert_eq!(static_ips(group(&m, "consul")), ["10.0.16.105"]);
}

#[test]
fn diego_minimal_aws_migrates() {
    let v1 = parse(DIEGO);
    let m = assert_single_zone_migration(DIEGO, &["database", "brain", "cell", "cc_bridge", "access", "route_emitter"]);
    // Two resource pools, one stemcell between them.
    assert_eq!(names(&m.cloud_config["vm_types"], "name"), ["cell", "small"]);
    assert_eq!(seq(&m.manifest["stemcells"]).len(), 1);
    assert_eq!(text(&group(&m, "cell")["stemcell"]), text(&group(&m, "brain")["stemcell"]));
    assert_eq!(
        m.cloud_config["vm_types"][0]["cloud_properties"],
        yaml::parse("{ephemeral_disk: {size: 20000}, instance_type: m3.medium}", "x").unwrap()
    );
    // Templates from four releases keep their own release.
    assert_eq!(
        group(&m, "cell")["jobs"],
        yaml::parse(
            "[{name: consul_agent, release: cf}, {name: rep, release: diego}, \
              {name: garden, release: garden-linux}, \
              {name: cflinuxfs2-rootfs-setup, release: cflinuxfs2-rootfs}, {name: metron_agent, release: cf}]",
            "x"
        )
        .unwrap()
    );
    assert_eq!(group(&m, "database")["persistent_disk"], Value::from(20480));
    assert_eq!(group(&m, "database")["update"], v1_job(&v1, "database_z1")["update"]);
    assert_eq!(text(&m.cloud_config["networks"][0]["subnets"][0]["az"]), "z1");
}

#[test]
fn diego_stubs_are_not_manifests() {
    for stub in ["iaas-settings.yml", "instance_count_overrides.yml", "property_overrides.yml"] {
        let rel = format!("v1-schema-2015-2016/diego-release-2016-06-minimal-aws/examples/minimal-aws/stubs/{stub}");
        let err = refusal(&rel);
        assert!(matches!(err, MigrateError::NotV1Manifest { .. }), "{rel}: {err}");
        assert!(err.to_string().contains("no `jobs`"), "{err}");
    }
}

/// Operators' multi-az v1 manifests paired `foo_z1`/`foo_z2` jobs on `small_z1`/`small_z2`
/// pools. Built from the v207 manifest by adding a second zone the way cf-release did.
#[test]
fn two_zone_variant_of_minimal_aws_merges_z1_z2_pairs() {
    let mut v1 = parse(CF_V207);
    let add = |list: &mut Value, item: &str| {
        list.as_sequence_mut().unwrap().push(yaml::parse(item, "x").unwrap());
    };
    add(
        &mut v1["networks"][0]["subnets"],
        "{range: 10.0.17.0/24, gateway: 10.0.17.1, static: ['10.0.17.100 - 10.0.17.105'], \
          cloud_properties: {subnet: REPLACE_WITH_PRIVATE_SUBNET_2_ID}}",
    );
    add(
        &mut v1["resource_pools"],
        "{name: small_z2, network: cf_private, \
          stemcell: {name: bosh-aws-xen-hvm-ubuntu-trusty-go_agent, version: REPLACE_WITH_BOSH_STEMCELL_VERSION}, \
          cloud_properties: {availability_zone: REPLACE_WITH_AZ_2, instance_type: c3.large}}",
    );
    for (job, ip) in [("nats_z1", Some("10.0.17.103")), ("router_z1", Some("10.0.17.102")), ("runner_z1", None)] {
        let mut copy = v1_job(&v1, job).clone();
        copy["name"] = Value::from(job.replace("_z1", "_z2"));
        copy["resource_pool"] = Value::from("small_z2");
        if let Some(ip) = ip {
            copy["networks"][0]["static_ips"] = yaml::parse(&format!("[{ip}]"), "x").unwrap();
        }
        if job == "runner_z1" {
            copy["properties"]["dea_next"]["zone"] = Value::from("z2");
        }
        v1["jobs"].as_sequence_mut().unwrap().push(copy);
    }

    let m = v1::migrate(&v1).unwrap_or_else(|e| panic!("{e}"));
    assert_resolves(&m);
    assert_eq!(seq(&m.manifest["instance_groups"]).len(), 13, "the z2 jobs joined their z1 groups");
    assert_eq!(
        m.cloud_config["azs"],
        yaml::parse(
            "[{name: z1, cloud_properties: {availability_zone: REPLACE_WITH_AZ}}, \
              {name: z2, cloud_properties: {availability_zone: REPLACE_WITH_AZ_2}}]",
            "x"
        )
        .unwrap()
    );
    let nats = group(&m, "nats");
    assert_eq!(nats["azs"], yaml::parse("[z1, z2]", "x").unwrap());
    assert_eq!(nats["instances"], Value::from(2));
    assert_eq!(static_ips(nats), ["10.0.16.103", "10.0.17.103"]);
    assert_eq!(nats["migrated_from"], yaml::parse("[{name: nats_z1, az: z1}, {name: nats_z2, az: z2}]", "x").unwrap());
    assert_eq!(static_ips(group(&m, "router")), ["10.0.16.102", "10.0.17.102"]);
    assert_eq!(group(&m, "etcd")["azs"], yaml::parse("[z1]", "x").unwrap());
    // The new subnet's az comes from the static IPs the z2 jobs hold in it.
    let subnets = seq(&m.cloud_config["networks"][0]["subnets"]);
    assert_eq!((text(&subnets[0]["az"]), text(&subnets[1]["az"])), ("z1".into(), "z2".into()));
    assert_eq!(names(&m.cloud_config["vm_types"], "name"), ["small_z1", "small_z2"]);
    // runner_z2's differing property is reported, not silently dropped.
    assert!(
        m.warnings.iter().any(|w| w.contains("jobs[15].properties.dea_next.zone") && w.contains("`runner`")),
        "{:#?}",
        m.warnings
    );
}

#[test]
fn spiff_templates_are_refused_naming_the_first_expression() {
    for (rel, path, expression) in [
        (CF_JOBS_SPIFF, "networks", "(( merge ))"),
        (
            CF_STUB_SPIFF,
            "properties.cc.security_group_definitions[3].rules[0].destination",
            r#"(( merge || "10.244.0.34" ))"#,
        ),
        (DIEGO_SPIFF, "name", r#"(( config_from_cf.cf_deployment_name "-diego" ))"#),
    ] {
        let err = refusal(rel);
        assert!(matches!(err, MigrateError::SpiffTemplate { .. }), "{rel}: {err}");
        assert_eq!(err.path().to_string(), path, "{rel}");
        let message = err.to_string();
        assert!(message.contains("spiff template") && message.contains(expression), "{message}");
    }
}

#[test]
fn every_cf_release_template_is_refused() {
    let dir = corpus().join("v1-schema-2015-2016/cf-release-v207/templates");
    let mut seen = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(v1::migrate_text(&text, &path.display().to_string()).is_err(), "{} migrated", path.display());
        seen += 1;
    }
    assert!(seen >= 10);
}

#[test]
fn v2_manifests_are_refused_as_needing_no_migration() {
    for rel in [CF_DEPLOYMENT, "cf-deployment/v58.0.0/cf-deployment.yml"] {
        let err = refusal(rel);
        assert!(matches!(err, MigrateError::AlreadyV2 { .. }), "{rel}: {err}");
        assert!(err.to_string().contains("needs no migration"), "{err}");
    }
}

/// `((name))` is a BOSH v2 variable, not spiff: no v2 file in the corpus is taken for a spiff
/// template.
#[test]
fn v2_variables_are_not_mistaken_for_spiff() {
    fn walk(dir: &Path, files: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(&path, files);
            } else if path.extension().is_some_and(|e| e == "yml" || e == "yaml") {
                files.push(path);
            }
        }
    }
    let mut files = Vec::new();
    walk(&corpus().join("cf-deployment"), &mut files);
    walk(&corpus().join("bosh-deployment"), &mut files);
    assert!(files.len() > 50);
    for path in files {
        let text = std::fs::read_to_string(&path).unwrap();
        if let Err(v1::MigrateTextError::Migrate {
            error: MigrateError::SpiffTemplate { path: at, expression }, ..
        }) = v1::migrate_text(&text, "x")
        {
            panic!("{}: {at}: `{expression}` taken for spiff", path.display());
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The binary, end to end

fn rosh(args: &[&std::ffi::OsStr]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_rosh")).args(args).output().unwrap()
}

fn migrate_args<'a>(input: &'a Path, manifest: &'a Path, cloud_config: &'a Path) -> Vec<&'a std::ffi::OsStr> {
    vec![
        "migrate-manifest".as_ref(),
        input.as_os_str(),
        "--out-manifest".as_ref(),
        manifest.as_os_str(),
        "--out-cloud-config".as_ref(),
        cloud_config.as_os_str(),
    ]
}

#[test]
fn cli_writes_both_files_and_summarises() {
    let dir = tempfile::tempdir().unwrap();
    let input = corpus().join(CF_V207);
    let (out_m, out_cc) = (dir.path().join("cf.yml"), dir.path().join("cloud-config.yml"));
    let output = rosh(&migrate_args(&input, &out_m, &out_cc));
    let (stdout, stderr) = (String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    assert!(output.status.success(), "stdout: {stdout}\nstderr: {stderr}");

    assert_eq!(stdout.lines().count(), 1, "{stdout}");
    for fact in ["13 instance groups", "1 azs", "1 vm_types", "0 disk_types", "3 networks"] {
        assert!(stdout.contains(fact), "{fact}: {stdout}");
    }
    assert!(stderr.lines().all(|l| l.starts_with("warning: ")), "{stderr}");
    assert!(stderr.contains("director_uuid"), "{stderr}");

    // The files re-parse into exactly what the library produces.
    let expected = migrate(CF_V207);
    let manifest = yaml::parse(&std::fs::read_to_string(&out_m).unwrap(), "cf.yml").unwrap();
    let cloud_config = yaml::parse(&std::fs::read_to_string(&out_cc).unwrap(), "cloud-config.yml").unwrap();
    assert_eq!(manifest, expected.manifest);
    assert_eq!(cloud_config, expected.cloud_config);

    // Existing outputs are kept unless --force.
    std::fs::write(&out_m, "old: content\n").unwrap();
    let output = rosh(&migrate_args(&input, &out_m, &out_cc));
    assert_eq!(output.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&output.stderr).contains("already exists"));
    assert_eq!(std::fs::read_to_string(&out_m).unwrap(), "old: content\n");

    let mut args = migrate_args(&input, &out_m, &out_cc);
    args.push("--force".as_ref());
    let output = rosh(&args);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let manifest = yaml::parse(&std::fs::read_to_string(&out_m).unwrap(), "cf.yml").unwrap();
    assert_eq!(manifest, expected.manifest);
    // No temporaries left behind.
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 2);
}

#[test]
fn cli_refuses_spiff_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (out_m, out_cc) = (dir.path().join("m.yml"), dir.path().join("cc.yml"));
    for rel in [CF_JOBS_SPIFF, CF_STUB_SPIFF] {
        let input = corpus().join(rel);
        let output = rosh(&migrate_args(&input, &out_m, &out_cc));
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(1), "{stderr}");
        assert!(stderr.contains(&input.display().to_string()), "names the file: {stderr}");
        assert!(stderr.contains("spiff"), "{stderr}");
        assert!(output.stdout.is_empty());
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0, "no output files");
    }
}

#[test]
fn cli_refuses_a_v2_manifest() {
    let dir = tempfile::tempdir().unwrap();
    let (out_m, out_cc) = (dir.path().join("m.yml"), dir.path().join("cc.yml"));
    let input = corpus().join(CF_DEPLOYMENT);
    let output = rosh(&migrate_args(&input, &out_m, &out_cc));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("needs no migration") && stderr.contains("cf-deployment.yml"), "{stderr}");
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
}
