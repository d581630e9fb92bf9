//! `update.vm_strategy: create-swap-delete` end to end on the local CPI, with release `rack`
//! (a job whose process listens on nothing, so it runs on a dynamic network):
//!
//! - instances on a dynamic network get their new VM while the old one still runs: the state's
//!   events show the old VM orphaned, the new one created, and only then the old one deleted;
//!   the persistent disk moves across with its data;
//! - an instance holding a manual-network address is replaced delete-create (one address cannot
//!   be on two VMs), and the deploy says so;
//! - a deploy killed in the middle of a swap leaves the old VM on record as an orphaned VM; the
//!   next deploy deletes it first and converges, with every VM accounted for.
//!
//! Loopback ranges 127.166-167.0.0/16 (the dynamic network's VMs are on the local CPI's 127.78/16).

mod common;
mod deploy_support;

use std::collections::BTreeMap;
use std::fs;
use std::io::BufRead;

use deploy_support::{Director, Manifest, rack_release, yaml};
use rosh::state::EventRecord;

/// A director with release `rack` and a cloud config that also has dynamic network `dyn`.
fn director(octet: u8) -> Director {
    let d = Director::bare(octet);
    let source = d.path("src-rack");
    rack_release(&source);
    d.upload_release(&source);
    let mut cloud: serde_yaml_ng::Value = serde_yaml_ng::from_str(&d.cloud_config()).unwrap();
    cloud["networks"].as_sequence_mut().unwrap().push(yaml("{name: dyn, type: dynamic, subnets: [{azs: [z1]}]}"));
    let path = d.write("cloud-dyn.yml", &serde_yaml_ng::to_string(&cloud).unwrap());
    d.ok(&["update-cloud-config", path.to_str().unwrap()]);
    d
}

/// Group `swapped` (two instances on `dyn`, each with a disk) and group `pinned` (one on the
/// manual network), both asking for create-swap-delete; each group's peers link its own.
fn manifest() -> Manifest {
    let group = |name: &str, instances: u64, network: &str| {
        format!(
            "- name: {name}\n  azs: [z1]\n  instances: {instances}\n  vm_type: default\n  stemcell: default\n  \
             persistent_disk: 256\n  networks: [{{name: {network}}}]\n  jobs:\n  - name: peer\n    release: rack\n    \
             provides: {{peers: {{as: {name}-peers}}}}\n    consumes: {{peers: {{from: {name}-peers}}}}\n"
        )
    };
    Manifest(yaml(&format!(
        "name: rack\nreleases: [{{name: rack, version: latest}}]\n\
         stemcells: [{{alias: default, os: debian-bookworm, version: latest}}]\n\
         update: {{canaries: 1, max_in_flight: 1, canary_watch_time: 0-20000, update_watch_time: 0-20000, \
         vm_strategy: create-swap-delete}}\ninstance_groups:\n{}{}",
        group("swapped", 2, "dyn"),
        group("pinned", 1, "default")
    )))
}

/// Instance label → VM cid.
fn vms(d: &Director) -> BTreeMap<String, String> {
    d.instances("rack").iter().map(|r| (r.label(), r.vm.as_ref().expect("a VM").cid.clone())).collect()
}

/// Every VM event of the state, oldest first, as `action cid`.
fn vm_events(d: &Director) -> Vec<String> {
    let mut events: Vec<EventRecord> =
        d.state().events(10_000).unwrap().into_iter().filter(|e| e.object_type == "vm").collect();
    events.sort_by_key(|e| e.id);
    events.into_iter().map(|e| format!("{} {}", e.action, e.object_name)).collect()
}

fn position(events: &[String], wanted: &str) -> usize {
    events.iter().position(|e| e == wanted).unwrap_or_else(|| panic!("no event `{wanted}` in {events:#?}"))
}

/// Writes a file on every instance's persistent disk, named after the instance.
fn mark_disks(d: &Director) {
    for (label, cid) in vms(d) {
        fs::write(d.vms_dir().join(cid).join("store/marker"), format!("{label}\n")).unwrap();
    }
}

fn assert_disks_marked(d: &Director) {
    for (label, cid) in vms(d) {
        let marker = d.vms_dir().join(&cid).join("store/marker");
        assert_eq!(fs::read_to_string(&marker).unwrap_or_default(), format!("{label}\n"), "{label} on VM {cid}");
    }
}

#[test]
fn dynamic_network_instances_get_their_new_vm_before_the_old_one_goes() {
    let d = director(166);
    let m = manifest();
    let first = d.deploy("rack", &m, "rack.yml", &[]).expect_ok();
    assert_eq!(first.created, 3, "{first:?}");
    mark_disks(&d);
    let before = vms(&d);

    // The plan says which replacements keep the old VM running until the new one is ready.
    let planned = d.ok(&["-d", "rack", "plan", d.write("rack.yml", &m.text()).to_str().unwrap(), "--recreate"]);
    assert!(
        planned.contains("swapped (2/2 changing, canaries 1, max_in_flight 1, create-swap-delete: 2 new VM(s) made before the old one stops)"),
        "{planned}"
    );
    assert!(
        planned.contains("pinned (1/1 changing, canaries 1, max_in_flight 1, create-swap-delete: 0 new VM(s)"),
        "{planned}"
    );
    let deployed = d.deploy("rack", &m, "rack.yml", &["--recreate"]);
    let report = deployed.expect_ok();
    assert_eq!(report.recreated, 3, "{report:?}");
    let after = vms(&d);
    let events = vm_events(&d);
    for record in d.instances("rack") {
        let label = record.label();
        let (old, new) = (&before[&label], &after[&label]);
        assert_ne!(old, new, "{label} has a new VM");
        assert!(!d.vms_dir().join(old).exists(), "{label}'s old VM {old} is deleted");
        let created = position(&events, &format!("create {new}"));
        let deleted = position(&events, &format!("delete {old}"));
        if record.group == "swapped" {
            // Orphaned (the record lets go of it), the new one made, then the old one deleted.
            let orphaned = position(&events, &format!("orphan {old}"));
            assert!(orphaned < created && created < deleted, "{label}: {events:#?}");
        } else {
            assert!(deleted < created, "{label} is delete-create: {events:#?}");
        }
        d.assert_running(&record);
    }
    assert!(
        deployed.stdout.contains("keeps its manual-network address, so its VM is replaced delete-create"),
        "the fallback is reported:\n{}",
        deployed.stdout
    );
    assert_disks_marked(&d);
    assert!(d.state().orphaned_vms(None).unwrap().is_empty());
    d.assert_no_orphans(&["rack"], "after a create-swap-delete deploy");

    // The address the CPI gave each VM on the dynamic network is recorded with the VM and
    // shown by `vms`; the pinned instance shows its manual-network address.
    let listed: serde_json::Value = serde_json::from_str(&d.ok(&["-d", "rack", "vms", "--json"])).unwrap();
    for record in d.instances("rack") {
        let vm = record.vm.as_ref().unwrap();
        let shown = listed.as_array().unwrap().iter().find(|v| v["vm_cid"] == vm.cid.as_str()).expect("listed");
        let expected = if record.group == "swapped" {
            let endpoint: serde_json::Value = serde_json::from_str(&vm.endpoint_json).unwrap();
            let ip = vm.ips.get("dyn").unwrap_or_else(|| panic!("{} has no dyn IP: {vm:?}", record.label()));
            assert!(ip.starts_with("127.78."), "{ip}");
            assert_eq!(endpoint["host"], ip.as_str(), "the VM answers SSH on the address it was given");
            ip.clone()
        } else {
            assert!(vm.ips.is_empty(), "{vm:?}");
            record.ips["default"].clone()
        };
        assert_eq!(shown["ips"], serde_json::json!([expected]), "{shown}");
    }
}

#[test]
fn a_deploy_killed_mid_swap_leaves_the_old_vm_on_record_and_the_next_deploy_deletes_it() {
    let d = director(167);
    let m = manifest();
    d.deploy("rack", &m, "rack.yml", &[]).expect_ok();
    mark_disks(&d);
    let before = vms(&d);

    // Killed the moment a swapped instance's old VM is being stopped: its new VM exists.
    let path = d.write("rack.yml", &m.text());
    let mut child = d
        .command(&["-d", "rack", "deploy", path.to_str().unwrap(), "--json", "--recreate"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut killed_at = None;
    for line in std::io::BufReader::new(child.stdout.take().unwrap()).lines() {
        let event: serde_json::Value = serde_json::from_str(&line.unwrap()).unwrap_or_default();
        if event["event"] == "step" && event["step"].as_str().is_some_and(|s| s.starts_with("stopping old VM")) {
            child.kill().unwrap();
            killed_at = event["task"].as_str().map(str::to_string);
            break;
        }
    }
    child.wait().unwrap();
    let task = killed_at.expect("the deploy reached a swap");

    // The old VM is an orphaned VM on record (and still exists); the instance names its new
    // VM and is dirty.
    let orphans = d.state().orphaned_vms(Some("rack")).unwrap();
    assert_eq!(orphans.len(), 1, "{orphans:?}");
    assert_eq!(orphans[0].instance, task);
    let record = d.instances("rack").into_iter().find(|r| r.label() == task).unwrap();
    assert_eq!(before[&task], orphans[0].vm.cid, "the orphan is the instance's old VM");
    assert!(d.vms_dir().join(&orphans[0].vm.cid).exists(), "{:?} {:#?}", d.vm_dirs(), vm_events(&d));
    let new_vm = record.vm.as_ref().expect("the new VM is on record").cid.clone();
    assert_ne!(new_vm, orphans[0].vm.cid);
    assert!(record.dirty);
    let listed: serde_json::Value = serde_json::from_str(&d.ok(&["orphaned-vms", "--json"])).unwrap();
    assert_eq!(listed[0]["vm"]["cid"], orphans[0].vm.cid.as_str(), "{listed}");
    assert_eq!(listed[0]["instance"], task.as_str(), "{listed}");

    // The next deploy deletes the orphan first, then converges everything.
    let deployed = d.deploy("rack", &m, "rack.yml", &[]);
    deployed.expect_ok();
    assert!(deployed.stdout.contains("Deleting orphaned VMs"), "{}", deployed.stdout);
    assert!(!d.vms_dir().join(&orphans[0].vm.cid).exists());
    assert!(d.state().orphaned_vms(None).unwrap().is_empty());
    for record in d.instances("rack") {
        assert!(!record.dirty, "{}", record.label());
        d.assert_running(&record);
    }
    assert_disks_marked(&d);
    d.assert_no_orphans(&["rack"], "after a deploy killed mid-swap and the next one");

    // delete-deployment leaves nothing, orphaned VMs included.
    d.ok(&["-d", "rack", "delete-deployment", "-n"]);
    assert!(d.vm_dirs().is_empty(), "{:?}", d.vm_dirs());
}
