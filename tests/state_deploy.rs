//! What the director database remembers for deploys, on a real SQLite file: the upgrade from the
//! previous schema, versioned configs, deployed manifests, instances with their VMs and IPs,
//! disks and orphans, the compiled package cache and generated variables — each write one fact
//! that moves the serial once and is logged, a write that changes nothing moving nothing.

mod common;

use std::collections::BTreeMap;
use std::path::Path;

use rosh::state::{
    CompiledKey, CompiledPackageRecord, ConfigKind, DiskRecord, InstanceRecord, InstanceState, PackageRecord, Recorded,
    ReleaseRecord, State, StateError, VmRef, schema,
};

fn open() -> (tempfile::TempDir, State) {
    let dir = tempfile::tempdir().unwrap();
    let state = State::open(&dir.path().join("state")).unwrap();
    (dir, state)
}

fn blob(tag: &str) -> String {
    rosh::release::digest::sha256_hex(tag.as_bytes())
}

fn endpoint(host: &str) -> String {
    serde_json::json!({
        "host": host, "port": 22, "user": "vcap", "host_public_key": "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIB",
        "agent_command": "rosh-agent", "root": "/var/vcap", "install_agent": false,
    })
    .to_string()
}

fn instance(deployment: &str, group: &str, index: u64, uuid: &str) -> InstanceRecord {
    InstanceRecord {
        deployment: deployment.into(),
        group: group.into(),
        index,
        uuid: uuid.into(),
        az: Some("z1".into()),
        bootstrap: index == 0,
        state: InstanceState::Started,
        dirty: false,
        ignore: false,
        vm: None,
        applied_json: None,
        applied_digest: None,
        ips: BTreeMap::new(),
        updated_at: String::new(),
    }
}

fn ips(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs.iter().map(|(n, ip)| (n.to_string(), ip.to_string())).collect()
}

fn disk(cid: &str, deployment: &str, uuid: Option<&str>, active: bool) -> DiskRecord {
    DiskRecord {
        cid: cid.into(),
        cpi: "local".into(),
        deployment: deployment.into(),
        instance_uuid: uuid.map(str::to_string),
        size_mb: 10240,
        cloud_properties_json: r#"{"type":"ssd"}"#.into(),
        active,
        created_at: String::new(),
        orphaned_at: None,
    }
}

fn compiled(name: &str, stemcell_version: &str, tag: &str) -> CompiledPackageRecord {
    CompiledPackageRecord {
        key: CompiledKey {
            name: name.into(),
            fingerprint: format!("{name}-fp"),
            os: "ubuntu-jammy".into(),
            stemcell_version: stemcell_version.into(),
            dependency_key: "golang-1.22:go122".into(),
        },
        blob_sha256: blob(tag),
        sha1: format!("sha256:{}", blob(tag)),
        size: 20 * 1024 * 1024,
        created_at: String::new(),
    }
}

/// Asserts the write just made was one fact: the serial moved by one to `serial`, and the newest
/// event carries it with this action, object type and deployment.
fn assert_fact(state: &State, before: u64, serial: u64, action: &str, object_type: &str, deployment: Option<&str>) {
    assert_eq!(serial, before + 1, "one write, one serial step ({action} {object_type})");
    assert_eq!(state.serial().unwrap(), serial);
    let event = &state.events(1).unwrap()[0];
    assert_eq!(event.serial, Some(serial));
    assert_eq!((event.action.as_str(), event.object_type.as_str()), (action, object_type));
    assert_eq!(event.deployment.as_deref(), deployment);
}

/// Asserts a write changed nothing: same serial, no new event.
fn assert_no_change(state: &State, before: u64, returned: u64, events_before: usize) {
    assert_eq!(returned, before, "a write that changes nothing returns the serial unmoved");
    assert_eq!(state.serial().unwrap(), before);
    assert_eq!(state.events(1000).unwrap().len(), events_before, "and logs nothing");
}

fn event_count(state: &State) -> usize {
    state.events(1000).unwrap().len()
}

/// Builds `state.db` at schema version 2 exactly as the previous rosh did (its migrations, its
/// history rows, its user_version) and fills it through that schema: a release, a stemcell, a
/// deployment using both.
fn make_v2_database(dir: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    let conn = common::state_db_at_schema(&dir.join("state.db"), 2);
    conn.query_row("PRAGMA journal_mode = WAL", [], |_| Ok(())).unwrap();
    conn.execute_batch(
        "INSERT INTO releases (id, name) VALUES (1, 'nats');
         INSERT INTO release_versions (id, release_id, version, uncommitted_changes) VALUES (1, 1, '56', 0);
         INSERT INTO stemcells (id, name, version, operating_system, cloud_properties_json, formats_json, image_sha256)
             VALUES (1, 'bosh-warden-boshlite-ubuntu-jammy-go_agent', '1.406', 'ubuntu-jammy', '{}', '[]', NULL);
         INSERT INTO deployments (id, name) VALUES (1, 'cf');
         INSERT INTO deployment_releases (deployment_id, release_version_id) VALUES (1, 1);
         INSERT INTO deployment_stemcells (deployment_id, stemcell_id) VALUES (1, 1);
         UPDATE state_serial SET serial = 3;",
    )
    .unwrap();
}

#[test]
fn a_database_of_the_previous_schema_upgrades_and_keeps_its_records() {
    let dir = tempfile::tempdir().unwrap();
    make_v2_database(dir.path());

    let state = State::open(dir.path()).unwrap();

    assert_eq!(state.schema_version().unwrap(), schema::LATEST);
    assert_eq!(state.serial().unwrap(), 3, "migrating is not a fact");
    let deployments = state.deployments().unwrap();
    assert_eq!(deployments.len(), 1);
    assert_eq!(deployments[0].name, "cf");
    assert_eq!(deployments[0].releases, vec![("nats".to_string(), "56".to_string())]);
    assert_eq!(deployments[0].stemcells[0].1, "1.406");
    assert_eq!((deployments[0].instances, deployments[0].last_deployed_at.as_deref()), (0, None));
    assert_eq!(state.deployment_manifest("cf").unwrap(), None);
    let conn = rusqlite::Connection::open(dir.path().join("state.db")).unwrap();
    let history: Vec<u32> = conn
        .prepare("SELECT version FROM schema_migrations ORDER BY version")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<rusqlite::Result<_>>()
        .unwrap();
    assert_eq!(history, (1..=schema::LATEST).collect::<Vec<_>>());

    // The old deployment takes the new records.
    let mut router = instance("cf", "router", 0, "u-router-0");
    router.ips = ips(&[("default", "10.244.0.34")]);
    assert_eq!(state.upsert_instance(&router).unwrap(), 4);
    let cloud = state.update_config(ConfigKind::Cloud, "default", "azs: []\n").unwrap();
    state.record_deployed_manifest("cf", "name: cf\n", Some(cloud.id), &[]).unwrap();
    drop(state);

    let state = State::open(dir.path()).unwrap();
    assert_eq!(state.instances("cf").unwrap()[0].ips, router.ips);
    assert_eq!(state.deployments().unwrap()[0].instances, 1);
    assert_eq!(state.deployment_manifest("cf").unwrap().unwrap().cloud_config_id, Some(cloud.id));
}

#[test]
fn configs_are_versioned_and_identical_content_makes_no_new_version() {
    let (_dir, state) = open();
    let text = "# laptop\nazs:\n- name: z1   \n";
    let first = state.update_config(ConfigKind::Cloud, "default", text).unwrap();
    assert!(first.changed);
    assert_eq!((first.version, first.kind, first.name.as_str()), (1, ConfigKind::Cloud, "default"));
    assert_eq!(first.sha256, blob(text));
    assert_fact(&state, 0, state.serial().unwrap(), "update", "cloud-config", None);

    let events = event_count(&state);
    let again = state.update_config(ConfigKind::Cloud, "default", text).unwrap();
    assert!(!again.changed);
    assert_eq!((again.id, again.version), (first.id, 1));
    assert_no_change(&state, 1, state.serial().unwrap(), events);

    let second = state.update_config(ConfigKind::Cloud, "default", "azs: [{name: z2}]\n").unwrap();
    assert!(second.changed && second.version == 2 && second.id > first.id);
    let latest = state.latest_config(ConfigKind::Cloud, "default").unwrap().unwrap();
    assert_eq!((latest.id, latest.content.as_str()), (second.id, "azs: [{name: z2}]\n"));
    let old = state.config_by_id(first.id).unwrap().unwrap();
    assert_eq!(old.content, text, "kept byte for byte, comments and trailing blanks too");
    assert_eq!(old.version, 1);

    // Runtime configs by name; a cloud config's versions do not count towards them.
    let dns = state.update_config(ConfigKind::Runtime, "dns", "addons: []\n").unwrap();
    state.update_config(ConfigKind::Runtime, "default", "releases: []\n").unwrap();
    assert_eq!(dns.version, 1);
    let runtime: Vec<String> = state.latest_configs(ConfigKind::Runtime).unwrap().into_iter().map(|c| c.name).collect();
    assert_eq!(runtime, vec!["default", "dns"]);
    assert_eq!(state.latest_config(ConfigKind::Cpi, "default").unwrap(), None);

    // Deleting hides every version from "latest", and keeps them for deployments that used them.
    let before = state.serial().unwrap();
    assert!(state.delete_config(ConfigKind::Runtime, "dns").unwrap());
    assert_fact(&state, before, state.serial().unwrap(), "delete", "runtime-config", None);
    assert_eq!(state.latest_config(ConfigKind::Runtime, "dns").unwrap(), None);
    assert_eq!(state.latest_configs(ConfigKind::Runtime).unwrap().len(), 1);
    assert_eq!(state.config_by_id(dns.id).unwrap().unwrap().content, "addons: []\n");
    let events = event_count(&state);
    let before = state.serial().unwrap();
    assert!(!state.delete_config(ConfigKind::Runtime, "dns").unwrap());
    assert_no_change(&state, before, state.serial().unwrap(), events);
    // The same content again after a delete is a new version: there was no current one.
    let back = state.update_config(ConfigKind::Runtime, "dns", "addons: []\n").unwrap();
    assert!(back.changed);
    assert_eq!(back.version, 2);
}

#[test]
fn a_deployed_manifest_remembers_its_configs_and_an_unchanged_redeploy_moves_nothing() {
    let (_dir, state) = open();
    let cloud = state.update_config(ConfigKind::Cloud, "default", "azs: []\n").unwrap();
    let dns = state.update_config(ConfigKind::Runtime, "dns", "addons: []\n").unwrap();
    let os = state.update_config(ConfigKind::Runtime, "os-conf", "releases: []\n").unwrap();

    let before = state.serial().unwrap();
    let serial = state.set_deploying("cf", true).unwrap();
    assert_fact(&state, before, serial, "start deploy", "deployment", Some("cf"));
    let since = state.deploying("cf").unwrap().expect("a deploy is in progress");
    assert_eq!(state.deployments().unwrap()[0].deploying_since.as_deref(), Some(since.as_str()));
    let events = event_count(&state);
    assert_no_change(&state, serial, state.set_deploying("cf", true).unwrap(), events);

    let before = state.serial().unwrap();
    let serial = state.record_deployed_manifest("cf", "name: cf\n", Some(cloud.id), &[os.id, dns.id]).unwrap();
    assert_fact(&state, before, serial, "deploy", "deployment", Some("cf"));
    let deployed = state.deployment_manifest("cf").unwrap().unwrap();
    assert_eq!(deployed.text, "name: cf\n");
    assert_eq!(deployed.cloud_config_id, Some(cloud.id));
    assert_eq!(deployed.runtime_config_ids, vec![os.id, dns.id], "in the order applied");
    assert_eq!(state.deploying("cf").unwrap(), None, "a successful deploy ends the one in progress");
    let summary = &state.deployments().unwrap()[0];
    assert_eq!(summary.last_deployed_at.as_deref(), Some(deployed.deployed_at.as_str()));

    let events = event_count(&state);
    let again = state.record_deployed_manifest("cf", "name: cf\n", Some(cloud.id), &[os.id, dns.id]).unwrap();
    assert_no_change(&state, serial, again, events);

    // A runtime config id given as the cloud config is refused, and nothing changes.
    let snapshot = state.snapshot().unwrap();
    let err = state.record_deployed_manifest("cf", "name: cf\nx: 1\n", Some(dns.id), &[]).unwrap_err();
    assert!(matches!(err, StateError::ConfigNotFound(_)), "{err}");
    assert!(err.to_string().contains(&format!("cloud config with id {}", dns.id)), "{err}");
    assert_eq!(state.snapshot().unwrap(), snapshot);
    assert_eq!(state.deployment_manifest("cf").unwrap().unwrap().text, "name: cf\n");

    // A deploy that failed ends without touching the last good manifest.
    state.set_deploying("cf", true).unwrap();
    state.set_deploying("cf", false).unwrap();
    assert_eq!(state.deploying("cf").unwrap(), None);
    assert_eq!(state.deployment_manifest("cf").unwrap().unwrap(), deployed);
    assert_eq!(state.deployment_manifest("nowhere").unwrap(), None);
}

#[test]
fn instances_round_trip_sorted_by_group_then_index() {
    let (_dir, state) = open();
    let mut api1 = instance("cf", "api", 1, "u-api-1");
    api1.vm = Some(VmRef {
        cid: "vm-1".into(),
        cpi: "local".into(),
        endpoint_json: endpoint("127.0.0.11"),
        created_at: "2026-05-01T10:00:00Z".into(),
        ips: ips(&[("dyn", "10.0.9.4")]),
    });
    api1.applied_json = Some(r#"{"properties":{"password":"hunter2"}}"#.into());
    api1.applied_digest = Some("sha256:abc".into());
    api1.ips = ips(&[("default", "10.0.1.11"), ("public", "203.0.113.7")]);
    api1.dirty = true;
    api1.ignore = true;
    let api0 = instance("cf", "api", 0, "u-api-0");
    let mut router = instance("cf", "router", 0, "u-router-0");
    router.az = None;
    router.state = InstanceState::Detached;
    let db = instance("cf", "database", 0, "u-db-0");

    let mut serial = 0;
    for record in [&router, &api1, &db, &api0] {
        let next = state.upsert_instance(record).unwrap();
        assert_fact(&state, serial, next, "create", "instance", Some("cf"));
        serial = next;
    }

    let stored = state.instances("cf").unwrap();
    let order: Vec<(String, u64)> = stored.iter().map(|i| (i.group.clone(), i.index)).collect();
    assert_eq!(
        order,
        vec![("api".into(), 0), ("api".into(), 1), ("database".into(), 0), ("router".into(), 0)],
        "by group, then index"
    );
    let got = &stored[1];
    assert!(!got.updated_at.is_empty());
    assert_eq!(*got, InstanceRecord { updated_at: got.updated_at.clone(), ..api1.clone() });
    assert_eq!(stored[3].state, InstanceState::Detached);
    assert_eq!(state.instance("cf", "u-api-1").unwrap().as_ref(), Some(got));
    assert_eq!(state.deployments().unwrap()[0].instances, 4);
    assert!(state.instances("nowhere").unwrap().is_empty());

    // The applied spec may hold secrets: --json and Debug show its digest only.
    let json = serde_json::to_value(got).unwrap();
    assert!(json.get("applied_json").is_none());
    assert_eq!(json["applied_digest"], "sha256:abc");
    assert_eq!(json["vm"]["cid"], "vm-1");
    assert!(!format!("{got:?}").contains("hunter2"));

    // Writing what is there changes nothing; changing one field is one fact.
    let events = event_count(&state);
    assert_no_change(&state, serial, state.upsert_instance(&api1).unwrap(), events);
    let moved = InstanceRecord { az: Some("z2".into()), ..api1.clone() };
    let next = state.upsert_instance(&moved).unwrap();
    assert_fact(&state, serial, next, "update", "instance", Some("cf"));
    assert_eq!(state.instance("cf", "u-api-1").unwrap().unwrap().az.as_deref(), Some("z2"));

    // Another uuid in a taken group/index is refused, naming the holder.
    let err = state.upsert_instance(&instance("cf", "api", 0, "u-intruder")).unwrap_err();
    assert!(matches!(&err, StateError::InstanceSlotTaken { holder, .. } if holder == "u-api-0"), "{err}");
    // The same uuid in another deployment is another instance.
    state.upsert_instance(&instance("diego", "api", 0, "u-api-0")).unwrap();
    assert_eq!(state.instances("diego").unwrap().len(), 1);
    assert_eq!(state.instances("cf").unwrap().len(), 4);
}

#[test]
fn vm_applied_state_and_dirty_are_each_one_fact() {
    let (_dir, state) = open();
    let mut serial = state.upsert_instance(&instance("cf", "nats", 0, "u-nats-0")).unwrap();

    // The VM goes in the moment create_vm returns, dirty until converged.
    let next = state.set_instance_vm("cf", "u-nats-0", Some(VmRef::new("vm-7", "local", endpoint("127.0.0.7"))), true);
    let next = next.unwrap();
    assert_fact(&state, serial, next, "create", "vm", Some("cf"));
    serial = next;
    let nats = state.instance("cf", "u-nats-0").unwrap().unwrap();
    let vm = nats.vm.clone().unwrap();
    assert!(nats.dirty);
    assert_eq!((vm.cid.as_str(), vm.cpi.as_str()), ("vm-7", "local"));
    assert_eq!(vm.created_at.len(), "2026-05-01T10:00:00Z".len(), "stamped: {}", vm.created_at);
    let endpoint_back: rosh_cpi::SshEndpoint = serde_json::from_str(&vm.endpoint_json).unwrap();
    assert_eq!((endpoint_back.host.as_str(), endpoint_back.port), ("127.0.0.7", 22));

    // Recorded again without a time: the same VM, nothing changes.
    let events = event_count(&state);
    let same = state.set_instance_vm("cf", "u-nats-0", Some(VmRef::new("vm-7", "local", endpoint("127.0.0.7"))), true);
    assert_no_change(&state, serial, same.unwrap(), events);

    let next = state.set_instance_applied("cf", "u-nats-0", r#"{"jobs":["nats"]}"#, "d1", InstanceState::Started);
    let next = next.unwrap();
    assert_fact(&state, serial, next, "apply", "instance", Some("cf"));
    serial = next;
    let nats = state.instance("cf", "u-nats-0").unwrap().unwrap();
    assert!(!nats.dirty, "applying converges the instance");
    assert_eq!(nats.applied_json.as_deref(), Some(r#"{"jobs":["nats"]}"#));
    assert_eq!(nats.applied_digest.as_deref(), Some("d1"));
    assert_eq!(nats.vm.unwrap().created_at, vm.created_at);

    let next = state.set_instance_state("cf", "u-nats-0", InstanceState::Stopped).unwrap();
    assert_fact(&state, serial, next, "stop", "instance", Some("cf"));
    serial = next;
    let events = event_count(&state);
    assert_no_change(
        &state,
        serial,
        state.set_instance_state("cf", "u-nats-0", InstanceState::Stopped).unwrap(),
        events,
    );
    let next = state.set_instance_dirty("cf", "u-nats-0", true).unwrap();
    assert_fact(&state, serial, next, "mark dirty", "instance", Some("cf"));
    assert!(state.instance("cf", "u-nats-0").unwrap().unwrap().dirty);

    // One VM, one instance.
    state.upsert_instance(&instance("cf", "nats", 1, "u-nats-1")).unwrap();
    let snapshot = state.snapshot().unwrap();
    let err = state.set_instance_vm("cf", "u-nats-1", Some(VmRef::new("vm-7", "local", "{}")), true).unwrap_err();
    assert!(matches!(err, StateError::VmInUse { .. }), "{err}");
    assert!(err.to_string().contains("nats/u-nats-0 of deployment cf"), "{err}");
    assert_eq!(state.snapshot().unwrap(), snapshot);

    // An instance with a VM is not deleted: the VM would be forgotten while it runs.
    let err = state.delete_instance("cf", "u-nats-0").unwrap_err();
    assert!(matches!(err, StateError::InstanceHasVm { .. }), "{err}");
    serial = state.serial().unwrap();
    let next = state.set_instance_vm("cf", "u-nats-0", None, false).unwrap();
    assert_fact(&state, serial, next, "delete", "vm", Some("cf"));
    assert_eq!(state.instance("cf", "u-nats-0").unwrap().unwrap().vm, None);
    state.delete_instance("cf", "u-nats-0").unwrap();
    assert_eq!(state.instance("cf", "u-nats-0").unwrap(), None);

    let err = state.set_instance_state("cf", "u-gone", InstanceState::Started).unwrap_err();
    assert!(matches!(err, StateError::InstanceNotFound { .. }), "{err}");
}

#[test]
fn an_ip_is_handed_out_once_across_all_deployments() {
    let (_dir, state) = open();
    let mut router = instance("cf", "router", 0, "u-router");
    router.ips = ips(&[("default", "10.0.1.5"), ("v6", "fd00::5")]);
    state.upsert_instance(&router).unwrap();
    state.upsert_instance(&instance("diego", "cell", 0, "u-cell")).unwrap();

    let snapshot = state.snapshot().unwrap();
    let err = state.set_instance_ips("diego", "u-cell", &ips(&[("default", "10.0.1.5")])).unwrap_err();
    match &err {
        StateError::IpInUse { ip, network, holder } => {
            assert_eq!((ip.as_str(), network.as_str()), ("10.0.1.5", "default"));
            assert_eq!(holder, "instance router/u-router of deployment cf (network default)");
        }
        other => panic!("expected IpInUse, got {other}"),
    }
    assert!(err.to_string().contains("IP 10.0.1.5 (network default) is already held by instance router/u-router"));
    // Another spelling of the same address is the same address.
    let err = state.set_instance_ips("diego", "u-cell", &ips(&[("v6", "FD00:0:0::5")])).unwrap_err();
    assert!(matches!(&err, StateError::IpInUse { ip, .. } if ip == "fd00::5"), "{err}");
    // Upserting a record holding it is refused too.
    let mut cell = instance("diego", "cell", 0, "u-cell");
    cell.ips = ips(&[("default", "10.0.1.5")]);
    assert!(matches!(state.upsert_instance(&cell).unwrap_err(), StateError::IpInUse { .. }));
    // One instance cannot hold one IP on two networks.
    let err = state.set_instance_ips("diego", "u-cell", &ips(&[("a", "10.0.9.1"), ("b", "10.0.9.1")])).unwrap_err();
    assert!(matches!(err, StateError::IpInUse { .. }), "{err}");
    let err = state.set_instance_ips("diego", "u-cell", &ips(&[("default", "10.0.1.300")])).unwrap_err();
    assert!(matches!(err, StateError::InvalidIp { .. }), "{err}");
    assert_eq!(state.snapshot().unwrap(), snapshot, "every refusal left the state as it was");

    let before = state.serial().unwrap();
    let serial = state.set_instance_ips("diego", "u-cell", &ips(&[("default", "10.0.1.6")])).unwrap();
    assert_fact(&state, before, serial, "update", "ips", Some("diego"));
    let in_use: Vec<String> = state.ips_in_use().unwrap().into_iter().collect();
    assert_eq!(in_use, vec!["10.0.1.5", "10.0.1.6", "fd00::5"]);

    // An instance keeps its own IP when its IPs are set again, and gives up the ones left out.
    state.set_instance_ips("cf", "u-router", &ips(&[("default", "10.0.1.5")])).unwrap();
    assert!(!state.ips_in_use().unwrap().contains("fd00::5"));
    state.set_instance_ips("diego", "u-cell", &ips(&[("v6", "fd00::5")])).unwrap();
    assert_eq!(state.instance("diego", "u-cell").unwrap().unwrap().ips, ips(&[("v6", "fd00::5")]));
}

#[test]
fn deleting_an_instance_frees_its_ips_and_orphans_its_disks() {
    let (_dir, state) = open();
    let mut web = instance("cf", "web", 0, "u-web");
    web.ips = ips(&[("default", "10.0.1.20")]);
    state.upsert_instance(&web).unwrap();
    state.record_disk(&disk("disk-web", "cf", Some("u-web"), true)).unwrap();
    assert_eq!(state.instance_disk("cf", "u-web").unwrap().unwrap().cid, "disk-web");

    let before = state.serial().unwrap();
    let serial = state.delete_instance("cf", "u-web").unwrap();
    assert_fact(&state, before, serial, "delete", "instance", Some("cf"));

    assert!(state.instances("cf").unwrap().is_empty());
    assert!(state.ips_in_use().unwrap().is_empty());
    assert!(state.disks("cf").unwrap().is_empty());
    assert_eq!(state.instance_disk("cf", "u-web").unwrap(), None);
    let orphans = state.orphaned_disks().unwrap();
    assert_eq!(orphans.len(), 1);
    let orphan = &orphans[0];
    assert_eq!((orphan.cid.as_str(), orphan.deployment.as_str()), ("disk-web", "cf"));
    assert_eq!((orphan.instance_uuid.as_deref(), orphan.active), (None, false));
    assert!(orphan.orphaned_at.is_some());

    // The freed IP can be handed out again, in another deployment too.
    let mut other = instance("diego", "cell", 0, "u-cell");
    other.ips = ips(&[("default", "10.0.1.20")]);
    state.upsert_instance(&other).unwrap();
    assert!(state.ips_in_use().unwrap().contains("10.0.1.20"));
}

#[test]
fn disks_round_trip_and_an_instance_has_one_active_disk() {
    let (_dir, state) = open();
    state.upsert_instance(&instance("cf", "db", 0, "u-db")).unwrap();
    let before = state.serial().unwrap();
    let serial = state.record_disk(&disk("disk-a", "cf", Some("u-db"), true)).unwrap();
    assert_fact(&state, before, serial, "create", "disk", Some("cf"));
    let a = state.instance_disk("cf", "u-db").unwrap().unwrap();
    assert_eq!(
        (a.size_mb, a.cloud_properties_json.as_str(), a.orphaned_at.as_ref()),
        (10240, r#"{"type":"ssd"}"#, None)
    );
    assert!(!a.created_at.is_empty());

    let events = event_count(&state);
    assert_no_change(&state, serial, state.record_disk(&disk("disk-a", "cf", Some("u-db"), true)).unwrap(), events);

    // A migration: the new disk is recorded inactive, then made active in one fact.
    state.record_disk(&disk("disk-b", "cf", Some("u-db"), false)).unwrap();
    assert_eq!(state.instance_disk("cf", "u-db").unwrap().unwrap().cid, "disk-a");
    state.record_disk(&DiskRecord { size_mb: 20480, ..disk("disk-b", "cf", Some("u-db"), true) }).unwrap();
    let active = state.instance_disk("cf", "u-db").unwrap().unwrap();
    assert_eq!((active.cid.as_str(), active.size_mb), ("disk-b", 20480));
    let disks = state.disks("cf").unwrap();
    let listed: Vec<(&str, bool)> = disks.iter().map(|d| (d.cid.as_str(), d.active)).collect();
    assert_eq!(listed, vec![("disk-a", false), ("disk-b", true)]);

    let before = state.serial().unwrap();
    let serial = state.orphan_disk("disk-a").unwrap();
    assert_fact(&state, before, serial, "orphan", "disk", Some("cf"));
    let events = event_count(&state);
    assert_no_change(&state, serial, state.orphan_disk("disk-a").unwrap(), events);
    assert_eq!(state.orphaned_disks().unwrap().iter().map(|d| d.cid.as_str()).collect::<Vec<_>>(), vec!["disk-a"]);
    assert_eq!(state.disks("cf").unwrap().len(), 1);

    let before = state.serial().unwrap();
    let serial = state.delete_disk_record("disk-a").unwrap();
    assert_fact(&state, before, serial, "delete", "disk", Some("cf"));
    assert!(state.orphaned_disks().unwrap().is_empty());
    assert!(matches!(state.delete_disk_record("disk-a").unwrap_err(), StateError::DiskNotFound(_)));
    assert!(matches!(state.orphan_disk("disk-zz").unwrap_err(), StateError::DiskNotFound(_)));

    // A disk names an instance that exists.
    let err = state.record_disk(&disk("disk-c", "cf", Some("u-nobody"), true)).unwrap_err();
    assert!(matches!(err, StateError::InstanceNotFound { .. }), "{err}");
    // A disk recorded without an instance is an orphan, never active.
    state.record_disk(&disk("disk-d", "cf", None, true)).unwrap();
    let d = state.orphaned_disks().unwrap().into_iter().find(|d| d.cid == "disk-d").unwrap();
    assert!(!d.active && d.orphaned_at.is_some());
}

#[test]
fn a_disk_migration_switches_the_active_disk_and_orphans_the_old_one_in_one_transaction() {
    let (_dir, state) = open();
    state.upsert_instance(&instance("cf", "db", 0, "u-db")).unwrap();
    state.record_disk(&disk("disk-old", "cf", Some("u-db"), true)).unwrap();
    // The migration's target is an orphan while the data is copied: a crash leaves it so.
    state.record_disk(&disk("disk-new", "cf", None, false)).unwrap();
    assert_eq!(state.instance_disk("cf", "u-db").unwrap().unwrap().cid, "disk-old");
    assert_eq!(state.orphaned_disks().unwrap().iter().map(|d| d.cid.as_str()).collect::<Vec<_>>(), vec!["disk-new"]);

    let before = state.serial().unwrap();
    let events = event_count(&state);
    let new = DiskRecord { size_mb: 20480, ..disk("disk-new", "cf", Some("u-db"), false) };
    let serial = state.replace_disk("disk-old", &new).unwrap();
    assert_eq!(serial, before + 2, "two facts: the new disk's update and the old one's orphaning");
    assert_eq!(event_count(&state), events + 2);
    let active = state.instance_disk("cf", "u-db").unwrap().unwrap();
    assert_eq!((active.cid.as_str(), active.size_mb, active.orphaned_at.as_ref()), ("disk-new", 20480, None));
    let orphans: Vec<String> = state.orphaned_disks().unwrap().into_iter().map(|d| d.cid).collect();
    assert_eq!(orphans, vec!["disk-old"]);
    assert_eq!(state.disks("cf").unwrap().len(), 1);

    // A missing old disk fails the whole switch: nothing changes.
    state.record_disk(&disk("disk-third", "cf", None, false)).unwrap();
    let third = disk("disk-third", "cf", Some("u-db"), false);
    assert!(matches!(state.replace_disk("disk-zz", &third).unwrap_err(), StateError::DiskNotFound(_)));
    assert_eq!(state.instance_disk("cf", "u-db").unwrap().unwrap().cid, "disk-new");
}

#[test]
fn an_orphaned_vm_leaves_its_instance_in_one_fact_and_is_listed_until_forgotten() {
    let (_dir, state) = open();
    let mut web = instance("cf", "web", 0, "u-web");
    web.vm = Some(VmRef { ips: ips(&[("dyn", "10.0.9.4")]), ..VmRef::new("vm-old", "local", endpoint("127.0.0.21")) });
    state.upsert_instance(&web).unwrap();
    state.upsert_instance(&instance("cf", "db", 0, "u-db")).unwrap();

    let before = state.serial().unwrap();
    let orphan = state.orphan_instance_vm("cf", "u-web").unwrap().expect("web had a VM");
    assert_eq!(state.serial().unwrap(), before + 1, "one fact");
    assert_eq!((orphan.vm.cid.as_str(), orphan.instance.as_str()), ("vm-old", "web/u-web"));
    assert_eq!(orphan.vm.ips, ips(&[("dyn", "10.0.9.4")]), "the VM's own IPs go along");
    let web_now = state.instance("cf", "u-web").unwrap().unwrap();
    assert!(web_now.vm.is_none() && web_now.dirty, "the instance lets go of it and is dirty");
    assert_eq!(state.orphaned_vms(Some("cf")).unwrap(), vec![orphan.clone()]);
    assert!(state.orphaned_vms(Some("other")).unwrap().is_empty());
    assert_eq!(state.orphaned_vms(None).unwrap().len(), 1);
    // An instance without a VM has nothing to orphan; an unknown one is an error.
    assert_eq!(state.orphan_instance_vm("cf", "u-db").unwrap(), None);
    assert!(matches!(state.orphan_instance_vm("cf", "u-nobody").unwrap_err(), StateError::InstanceNotFound { .. }));

    // Given back while the instance has no VM: the instance's again, as clean as it was.
    assert!(state.restore_orphaned_vm("local", "vm-old").unwrap());
    let restored = state.instance("cf", "u-web").unwrap().unwrap();
    assert_eq!(
        restored.vm.as_ref().map(|vm| (vm.cid.as_str(), vm.ips.clone())),
        Some(("vm-old", ips(&[("dyn", "10.0.9.4")])))
    );
    assert!(!restored.dirty);
    assert!(state.orphaned_vms(None).unwrap().is_empty());
    assert!(!state.restore_orphaned_vm("local", "vm-old").unwrap(), "nothing left to give back");
    state.orphan_instance_vm("cf", "u-web").unwrap();

    // The instance may take a new VM while the old one is an orphan; then it is not given back.
    state.set_instance_vm("cf", "u-web", Some(VmRef::new("vm-new", "local", endpoint("127.0.0.22"))), true).unwrap();
    assert!(!state.restore_orphaned_vm("local", "vm-old").unwrap());
    assert_eq!(state.instance("cf", "u-web").unwrap().unwrap().vm.unwrap().cid, "vm-new");
    let serial = state.forget_orphaned_vm("local", "vm-old").unwrap();
    assert!(state.orphaned_vms(None).unwrap().is_empty());
    let last = state.events(1).unwrap().remove(0);
    assert_eq!((last.action.as_str(), last.object_name.as_str(), last.serial), ("delete", "vm-old", Some(serial)));
    // Forgetting twice changes nothing.
    assert_eq!(state.forget_orphaned_vm("local", "vm-old").unwrap(), serial);
}

#[test]
fn compiled_packages_are_unique_per_key_and_recording_twice_changes_nothing() {
    let (_dir, state) = open();
    let golang = compiled("golang-1.22", "1.406", "golang compiled on 1.406");
    let Recorded::Created { serial } = state.record_compiled_package(&golang).unwrap() else {
        panic!("first record creates")
    };
    assert_fact(&state, 0, serial, "compile", "package", None);

    // A second compilation of the same key (a racing deploy) keeps the first blob.
    let events = event_count(&state);
    let racer = compiled("golang-1.22", "1.406", "golang compiled again, other bytes");
    assert_eq!(state.record_compiled_package(&racer).unwrap(), Recorded::AlreadyExists);
    assert_no_change(&state, serial, state.serial().unwrap(), events);
    let stored = state.compiled_package(&golang.key).unwrap().unwrap();
    assert_eq!(stored.blob_sha256, golang.blob_sha256);
    assert_eq!((stored.size, stored.sha1.as_str()), (golang.size, golang.sha1.as_str()));
    assert!(!stored.created_at.is_empty());

    // Any part of the key differing is another compiled package.
    let newer_stemcell = compiled("golang-1.22", "1.500", "golang compiled on 1.500");
    let other_deps =
        CompiledPackageRecord { key: CompiledKey { dependency_key: String::new(), ..golang.key.clone() }, ..racer };
    assert!(matches!(state.record_compiled_package(&newer_stemcell).unwrap(), Recorded::Created { .. }));
    assert!(matches!(state.record_compiled_package(&other_deps).unwrap(), Recorded::Created { .. }));
    let all = state.compiled_packages().unwrap();
    assert_eq!(all.len(), 3);
    assert_eq!(all[0].key.dependency_key, "", "sorted by key");
    assert_eq!(all[2].key.stemcell_version, "1.500");
    let unknown = CompiledKey { os: "windows2019".into(), ..golang.key.clone() };
    assert_eq!(state.compiled_package(&unknown).unwrap(), None);
}

#[test]
fn compiled_blobs_stay_referenced_after_their_release_is_deleted() {
    let (_dir, state) = open();
    let source = blob("golang source");
    state
        .record_release(&ReleaseRecord {
            name: "golang".into(),
            version: "1".into(),
            commit_hash: None,
            uncommitted_changes: false,
            jobs: Vec::new(),
            packages: vec![PackageRecord {
                name: "golang-1.22".into(),
                version: "go122".into(),
                fingerprint: "golang-1.22-fp".into(),
                sha1: format!("sha256:{source}"),
                blob_sha256: Some(source.clone()),
                dependencies: Vec::new(),
            }],
        })
        .unwrap();
    let golang = compiled("golang-1.22", "1.406", "golang compiled");
    state.record_compiled_package(&golang).unwrap();
    assert_eq!(state.referenced_blobs().unwrap(), {
        let mut both = vec![source.clone(), golang.blob_sha256.clone()];
        both.sort();
        both
    });

    let deleted = state.delete_release("golang", None).unwrap();

    assert_eq!(deleted.orphaned_blobs, vec![source], "the source goes");
    assert_eq!(state.referenced_blobs().unwrap(), vec![golang.blob_sha256.clone()], "the compiled blob stays");
    assert!(state.compiled_package(&golang.key).unwrap().is_some());
}

#[test]
fn variables_are_added_or_replaced_in_one_fact_and_never_logged() {
    let (_dir, state) = open();
    let first: BTreeMap<String, serde_json::Value> = [
        ("nats_password".to_string(), serde_json::json!("s3cret-one")),
        ("router_ca".to_string(), serde_json::json!({"ca": "-----BEGIN", "private_key": "pk-one"})),
    ]
    .into();
    let serial = state.set_variables("cf", &first).unwrap();
    assert_fact(&state, 0, serial, "update", "variables", Some("cf"));
    assert_eq!(state.variables("cf").unwrap(), first);

    let events = event_count(&state);
    let same: BTreeMap<String, serde_json::Value> =
        [("nats_password".to_string(), serde_json::json!("s3cret-one"))].into();
    assert_no_change(&state, serial, state.set_variables("cf", &same).unwrap(), events);

    let update: BTreeMap<String, serde_json::Value> = [
        ("nats_password".to_string(), serde_json::json!("s3cret-two")),
        ("uaa_admin".to_string(), serde_json::json!("s3cret-three")),
    ]
    .into();
    let next = state.set_variables("cf", &update).unwrap();
    assert_fact(&state, serial, next, "update", "variables", Some("cf"));
    let now = state.variables("cf").unwrap();
    assert_eq!(now.len(), 3, "the others are kept");
    assert_eq!(now["nats_password"], "s3cret-two");
    assert_eq!(now["router_ca"]["private_key"], "pk-one");
    assert_eq!(state.events(1).unwrap()[0].object_name, "nats_password, uaa_admin");
    assert!(state.variables("diego").unwrap().is_empty());

    let log = serde_json::to_string(&state.events(1000).unwrap()).unwrap();
    for secret in ["s3cret", "pk-one"] {
        assert!(!log.contains(secret), "a value reached the event log");
    }
}

#[test]
fn a_deployment_with_instances_or_disks_is_deleted_only_when_told_to_drop_records() {
    let (_dir, state) = open();
    let mut web = instance("cf", "web", 0, "u-web");
    web.ips = ips(&[("default", "10.0.1.30")]);
    web.vm = Some(VmRef::new("vm-web", "local", "{}"));
    state.upsert_instance(&web).unwrap();
    state.record_disk(&disk("disk-web", "cf", Some("u-web"), true)).unwrap();
    state.set_variables("cf", &[("pw".to_string(), serde_json::json!("x"))].into()).unwrap();
    let cloud = state.update_config(ConfigKind::Cloud, "default", "azs: []\n").unwrap();
    state.record_deployed_manifest("cf", "name: cf\n", Some(cloud.id), &[]).unwrap();

    let snapshot = state.snapshot().unwrap();
    let err = state.delete_deployment("cf", false).unwrap_err();
    assert!(matches!(err, StateError::DeploymentInUse { instances: 1, disks: 1, .. }), "{err}");
    assert!(err.to_string().contains("still has 1 instance and 1 active disk"), "{err}");
    assert_eq!(state.snapshot().unwrap(), snapshot);

    let before = state.serial().unwrap();
    let serial = state.delete_deployment("cf", true).unwrap();
    assert_fact(&state, before, serial, "delete", "deployment", Some("cf"));
    assert!(state.deployments().unwrap().is_empty());
    assert!(state.instances("cf").unwrap().is_empty());
    assert!(state.ips_in_use().unwrap().is_empty());
    assert!(state.variables("cf").unwrap().is_empty());
    assert_eq!(state.deployment_manifest("cf").unwrap(), None);
    let orphans = state.orphaned_disks().unwrap();
    assert_eq!(orphans.len(), 1, "the disk outlives its deployment, as an orphan");
    assert_eq!(orphans[0].deployment, "cf");
    assert!(state.config_by_id(cloud.id).unwrap().is_some(), "configs are not the deployment's");

    assert!(matches!(state.delete_deployment("cf", true).unwrap_err(), StateError::DeploymentNotFound(_)));
    // An empty deployment goes without being told.
    state.set_deploying("empty", true).unwrap();
    state.delete_deployment("empty", false).unwrap();
    assert!(state.deployments().unwrap().is_empty());
}

#[test]
fn a_stemcell_is_recorded_once_per_cpi_it_was_uploaded_to() {
    let (_dir, state) = open();
    let name = "bosh-warden-boshlite-ubuntu-jammy-go_agent";
    state
        .record_stemcell(&rosh::state::StemcellRecord {
            name: name.into(),
            version: "1.406".into(),
            operating_system: "ubuntu-jammy".into(),
            api_version: Some(3),
            cid: None,
            sha1: None,
            cloud_properties_json: "{}".into(),
            formats: Vec::new(),
            image_sha256: None,
        })
        .unwrap();
    assert_eq!(state.stemcell_cid("laptop", name, "1.406").unwrap(), None);

    let before = state.serial().unwrap();
    let serial = state.set_stemcell_cid("laptop", name, "1.406", "img-1").unwrap();
    assert_fact(&state, before, serial, "upload", "stemcell", None);
    assert_eq!(state.events(1).unwrap()[0].context.as_deref(), Some("to CPI laptop as img-1"));
    let events = event_count(&state);
    assert_no_change(&state, serial, state.set_stemcell_cid("laptop", name, "1.406", "img-1").unwrap(), events);
    state.set_stemcell_cid("rack", name, "1.406", "static").unwrap();
    assert_eq!(state.stemcell_cid("laptop", name, "1.406").unwrap().as_deref(), Some("img-1"));
    assert_eq!(
        state.stemcell_cids(name, "1.406").unwrap(),
        vec![("laptop".to_string(), "img-1".to_string()), ("rack".to_string(), "static".to_string())]
    );
    assert!(matches!(
        state.set_stemcell_cid("laptop", name, "9.9", "img-9").unwrap_err(),
        StateError::StemcellNotFound(_)
    ));

    state.delete_stemcell(name, "1.406").unwrap();
    assert!(state.stemcell_cids(name, "1.406").unwrap().is_empty(), "the record's cids go with it");
}
