//! The rest of the desired model: release and stemcell versions, VM cloud properties and
//! disks, the update policy, properties and their warnings, addons, package closures, and
//! every problem reported at once.

mod plan_support;

use plan_support::*;
use rosh::plan::desired::{DiskSpec, PackageRef, UpdatePolicy};
use serde_json::json;

const NGINX: &str = "[{name: nginx, release: web}]";

#[test]
fn latest_is_the_highest_uploaded_version() {
    let w = World {
        releases: ["1", "1.10", "0+dev.5", "1.9"].iter().map(|v| web_release(v)).collect(),
        stemcells: ["1.406", "1.99", "2.1"].iter().map(|v| stemcell("ubuntu-jammy", v)).collect(),
        ..World::default()
    };
    let groups = format!("instance_groups:\n{}", ig("web", "[z1]", 1, NGINX));
    let d = w.plan(&groups).unwrap();
    assert_eq!(d.releases, [("web".to_string(), "1.10".to_string())]);
    assert_eq!(group(&d, "web").jobs[0].fingerprint, "nginx-1.10-fp");
    let s = &d.stemcells[0];
    assert_eq!((s.alias.as_str(), s.os.as_str(), s.version.as_str()), ("default", "ubuntu-jammy", "2.1"));
    assert_eq!(s.name, "bosh-local-ubuntu-jammy");

    // `1.latest`: the highest 1.x; exact versions are taken as written.
    let pinned = format!("{HEAD}{groups}")
        .replace("os: ubuntu-jammy, version: latest", "os: ubuntu-jammy, version: 1.latest")
        .replace("{name: web, version: latest}", "{name: web, version: '1.9'}");
    let d = w.plan_manifest(&pinned).unwrap();
    assert_eq!(d.stemcells[0].version, "1.406");
    assert_eq!(d.releases, [("web".to_string(), "1.9".to_string())]);
    // A stemcell chosen by name rather than os.
    let by_name = format!("{HEAD}{groups}").replace("os: ubuntu-jammy", "name: bosh-local-ubuntu-jammy");
    assert_eq!(w.plan_manifest(&by_name).unwrap().stemcells[0].version, "2.1");
}

#[test]
fn every_problem_is_reported_with_its_path() {
    let w = World::default();
    let manifest = "
name: demo
releases: [{name: web, version: 2}, {name: extra, version: 1}]
stemcells: [{alias: default, os: ubuntu-noble, version: latest}]
update: {canaries: 1, max_in_flight: 1, canary_watch_time: 1000, update_watch_time: 1000}
instance_groups:
- name: web
  azs: [z1, z9]
  instances: ((web_instances))
  vm_type: huge
  vm_extensions: [lb, nope]
  persistent_disk_type: 1TB
  stemcell: default
  networks: [{name: default, static_ips: [10.0.1.10, 10.0.1.11]}]
  jobs: [{name: nginx, release: web}]
";
    assert_eq!(
        w.plan_manifest(manifest).unwrap_err(),
        [
            "releases[0] (web): release web version 2 is not uploaded (uploaded: 1)",
            "releases[1] (extra): release extra is not uploaded",
            "instance_groups[0] (web).instances: variable ((web_instances)) was not interpolated",
            "stemcells[0] (default): no stemcell ubuntu-noble is uploaded",
            "instance_groups[0] (web).azs[1]: az z9 is not defined in the cloud config",
            "instance_groups[0] (web).vm_type: vm_type huge is not defined in the cloud config",
            "instance_groups[0] (web).vm_extensions[1]: vm_extension nope is not defined in the cloud config",
            "instance_groups[0] (web).persistent_disk_type: disk_type 1TB is not defined in the cloud config",
        ]
    );
    let w = World::default();
    let missing_job = format!("instance_groups:\n{}", ig("web", "[z1]", 1, "[{name: nope, release: web}]"));
    assert_eq!(
        w.plan(&missing_job).unwrap_err(),
        ["instance_groups[0] (web).jobs[0] (nope): release web/1 has no job nope"]
    );
}

#[test]
fn vm_cloud_properties_merge_type_extensions_then_az() {
    let w = World::default();
    let groups = format!(
        "instance_groups:\n{}  vm_extensions: [lb]\n  persistent_disk_type: 10GB\n  env: {{bosh: {{password: x}}}}\n",
        ig("web", "[z1, z2]", 2, NGINX)
    );
    let d = w.plan(&groups).unwrap();
    let g = group(&d, "web");
    assert_eq!(g.vm_type.as_deref(), Some("small"));
    assert_eq!(g.vm_extensions, ["lb"]);
    assert_eq!(g.env, json!({"bosh": {"password": "x"}}));
    assert_eq!(
        g.instances[0].cloud_properties,
        json!({"cpu": 1, "tags": {"size": "small", "az": "z1", "lb": "yes"}, "lb": "web-lb", "zone": "a"})
    );
    assert_eq!(g.instances[0].cpi.as_deref(), Some("local-1"));
    assert_eq!(
        g.instances[1].cloud_properties,
        json!({"cpu": 1, "tags": {"size": "small", "az": "none", "lb": "yes"}, "lb": "web-lb", "zone": "b"})
    );
    assert_eq!(g.instances[1].cpi, None);
    assert_eq!(
        g.persistent_disk,
        Some(DiskSpec { size_mb: 10240, disk_type: Some("10GB".into()), cloud_properties: json!({"type": "ssd"}) })
    );
    let sized = format!("instance_groups:\n{}  persistent_disk: 2048\n", ig("web", "[z1]", 1, NGINX));
    let d = w.plan(&sized).unwrap();
    assert_eq!(
        group(&d, "web").persistent_disk,
        Some(DiskSpec { size_mb: 2048, disk_type: None, cloud_properties: json!({}) })
    );
}

#[test]
fn the_group_update_overrides_the_manifest_and_percentages_resolve() {
    let w = World::default();
    let groups = format!(
        "instance_groups:\n{}  update: {{max_in_flight: 25%, serial: false, vm_strategy: create-swap-delete, canary_watch_time: 30000}}\n{}  update: {{max_in_flight: 10%, canaries: 50%}}\n",
        ig("web", "[z1, z2]", 10, NGINX),
        ig("api", "[z1]", 3, NGINX)
    );
    let d = w.plan(&groups).unwrap();
    assert_eq!(
        group(&d, "web").update,
        UpdatePolicy {
            canaries: 1,
            max_in_flight: 2,
            canary_watch_time: (30000, 30000),
            update_watch_time: (5000, 5000),
            serial: false,
            create_swap_delete: true,
        }
    );
    let api = &group(&d, "api").update;
    assert_eq!((api.canaries, api.max_in_flight, api.serial, api.canary_watch_time), (1, 1, true, (1000, 30000)));
}

const DNS_SPEC: &str = "
name: bosh-dns
properties:
  api.port: {default: 53}
";

const SYSLOG_SPEC: &str = "
name: syslog
properties:
  syslog.address: {}
";

#[test]
fn addons_land_where_their_rules_say_with_their_own_properties() {
    let mut w = World::default();
    w.releases.push(release("bosh-dns", "1.36.0", &[DNS_SPEC], &[]));
    w.releases.push(release("syslog", "12", &[SYSLOG_SPEC], &[]));
    w.runtime = vec![
        (
            "dns".into(),
            "
releases: [{name: bosh-dns, version: 1.36.0}]
addons:
- name: dns
  jobs: [{name: bosh-dns, release: bosh-dns, properties: {api: {port: 5353}}}]
  include: {stemcell: [{os: ubuntu-jammy}]}
  exclude: {instance_groups: [db]}
"
            .into(),
        ),
        (
            "syslog".into(),
            "
releases: [{name: syslog, version: '12'}]
addons:
- name: logs
  jobs: [{name: syslog, release: syslog}]
  properties: {syslog: {address: logs.example.com}}
  include: {jobs: [{name: nginx, release: web}], deployments: [demo]}
- name: elsewhere
  jobs: [{name: syslog, release: syslog}]
  include: {deployments: [other]}
"
            .into(),
        ),
    ];
    let groups = format!(
        "instance_groups:\n{}{}{}",
        ig("web", "[z1]", 1, NGINX),
        ig("db", "[z1]", 1, "[{name: postgres, release: web}]"),
        ig("api", "[z1]", 1, "[{name: app, release: web}]"),
    );
    let d = w.plan(&groups).unwrap();
    let jobs = |g: &str| group(&d, g).jobs.iter().map(|j| format!("{}@{}", j.name, j.release)).collect::<Vec<_>>();
    assert_eq!(jobs("web"), ["nginx@web", "bosh-dns@bosh-dns", "syslog@syslog"]);
    assert_eq!(jobs("db"), ["postgres@web"]);
    assert_eq!(jobs("api"), ["app@web", "bosh-dns@bosh-dns"]);
    let web = group(&d, "web");
    assert_eq!(web.jobs[1].properties, json!({"api": {"port": 5353}}));
    assert_eq!(web.jobs[2].properties, json!({"syslog": {"address": "logs.example.com"}}));
    assert_eq!(
        d.releases,
        [("bosh-dns".to_string(), "1.36.0".to_string()), ("syslog".into(), "12".into()), ("web".into(), "1".into())]
    );
}

#[test]
fn job_properties_win_and_undeclared_ones_are_warned_about() {
    let w = World::default();
    let groups = format!(
        "instance_groups:\n{}{}  properties: {{nginx: {{workers: 4}}}}\n",
        ig("web", "[z1]", 1, "[{name: nginx, release: web, properties: {nginx: {port: 8080, colour: red}}}]"),
        ig("legacy", "[z1]", 1, NGINX),
    );
    let d = w.plan(&groups).unwrap();
    assert_eq!(group(&d, "web").jobs[0].properties, json!({"nginx": {"port": 8080, "colour": "red"}}));
    assert_eq!(group(&d, "legacy").jobs[0].properties, json!({"nginx": {"workers": 4}}));
    assert_eq!(
        d.warnings,
        [
            "instance_groups[0] (web).jobs[0] (nginx): property nginx.colour is not declared in the job's spec; no template can see it"
        ]
    );
}

#[test]
fn a_group_gets_its_jobs_package_closure_in_dependency_order() {
    let w = World::default();
    let groups = format!(
        "instance_groups:\n{}",
        ig(
            "web",
            "[z1]",
            1,
            "[{name: nginx, release: web}, {name: app, release: web}, {name: postgres, release: web}]"
        )
    );
    let d = w.plan(&groups).unwrap();
    let packages = &group(&d, "web").packages;
    let names: Vec<&str> = packages.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, ["openssl", "pcre", "nginx", "postgres", "yaml", "ruby"]);
    assert_eq!(
        packages[2],
        PackageRef {
            name: "nginx".into(),
            release: "web".into(),
            version: "nginx-v".into(),
            fingerprint: "nginx-web-fp".into(),
            sha256: "nginx-blob".into(),
            dependencies: vec!["pcre".into(), "openssl".into()],
        }
    );
}

const LOOP_SPEC: &str = "
name: looping
packages: [a, solo]
";

#[test]
fn a_package_cycle_or_a_missing_package_is_refused() {
    let mut w = World::default();
    w.releases.push(release(
        "loop",
        "1",
        &[LOOP_SPEC],
        &[("c", &["a"]), ("b", &["c"]), ("a", &["b"]), ("solo", &["gone"])],
    ));
    let manifest = format!(
        "{}instance_groups:\n{}",
        HEAD.replace("releases: [{name: web, version: latest}]", "releases: [{name: loop, version: 1}]"),
        ig("web", "[z1]", 1, "[{name: looping, release: loop}]")
    );
    assert_eq!(
        w.plan_manifest(&manifest).unwrap_err(),
        [
            "instance_groups[0] (web).jobs[0] (looping): needs package gone, which release loop/1 does not have",
            "instance_groups[0] (web): dependency cycle: package a → b → c → a (release loop)",
        ]
    );
}
