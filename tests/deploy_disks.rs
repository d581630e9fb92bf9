//! Persistent disks through `rosh deploy` on the local CPI, with the sample's kv instance (kvd
//! keeps its counter on the disk, under `store/kv`) and a file written to the disk by hand:
//!
//! - a new `persistent_disk` size resizes the same disk in place (the VM is kept);
//! - a new disk type (other cloud properties) migrates: a new disk is made and attached beside
//!   the old one, the agent copies the data, the new disk takes the old one's place on the same
//!   VM, and the old one is kept as an orphan with its data;
//! - the plan says which of the two will happen, and a deploy after either changes nothing;
//! - `rosh disks --orphaned` lists the old disk and `rosh delete-disk` deletes it, refusing the
//!   disk in use.
//!
//! Loopback range 127.165.0.0/16.

mod common;
mod deploy_support;

use std::fs;

use deploy_support::{Director, Manifest, get_ok, ip_of};
use rosh::state::DiskRecord;

/// The sample with short watch times.
fn quick_demo(d: &Director) -> Manifest {
    let mut m = d.demo();
    m.watch_times("500-5000", "500-5000");
    m
}

/// kv/0's active disk on record.
fn kv_disk(d: &Director) -> DiskRecord {
    let kv = &d.group("demo", "kv")[0];
    d.state().instance_disk("demo", &kv.uuid).unwrap().expect("kv/0 has a disk")
}

/// The next value of the counter kvd keeps on the disk, asked through web/0.
fn next_count(d: &Director) -> String {
    get_ok(&ip_of(&d.group("demo", "web")[0]), 8080, "/count")
}

fn kv_vm(d: &Director) -> String {
    d.group("demo", "kv")[0].vm.as_ref().expect("kv/0 has a VM").cid.clone()
}

#[test]
fn a_new_disk_size_resizes_in_place_and_a_new_disk_type_migrates_the_data_to_a_new_disk() {
    let d = Director::new(165);
    let mut m = quick_demo(&d);
    d.deploy("demo", &m, "demo.yml", &[]).expect_ok();
    assert_eq!([next_count(&d), next_count(&d)], ["1", "2"]);
    let vm = kv_vm(&d);
    let first = kv_disk(&d);
    assert_eq!(first.size_mb, 1024);
    let store = d.vms_dir().join(&vm).join("store");
    fs::create_dir_all(store.join("operator/notes")).unwrap();
    fs::write(store.join("operator/notes/keep.txt"), "written before the disk changed\n").unwrap();

    // 1024 → 2048 MB, same disk type: resized by the CPI, the same disk on the same VM.
    m.group("kv")["persistent_disk"] = 2048.into();
    let planned = d.ok(&["-d", "demo", "plan", d.write("demo.yml", &m.text()).to_str().unwrap()]);
    assert!(planned.contains("resize disk 1024 MB -> 2048 MB"), "{planned}");
    let summary = d.deploy("demo", &m, "demo.yml", &[]).expect_ok();
    assert_eq!((summary.updated, summary.recreated, summary.created), (1, 0, 0), "{summary:?}");
    let resized = kv_disk(&d);
    assert_eq!((resized.cid.as_str(), resized.size_mb), (first.cid.as_str(), 2048));
    assert_eq!(kv_vm(&d), vm, "a resize keeps the VM");
    assert_eq!(next_count(&d), "3", "kvd's data is still there");

    // A disk type with other cloud properties: migrated to a new disk on the same VM.
    let cloud = d
        .cloud_config()
        .replace("disk_types:\n", "disk_types:\n- name: fast\n  disk_size: 4096\n  cloud_properties: {tier: fast}\n");
    assert!(cloud.contains("tier: fast"), "the cloud config has a disk_types list:\n{cloud}");
    d.ok(&["update-cloud-config", d.write("cloud-fast.yml", &cloud).to_str().unwrap()]);
    let kv = m.group("kv").as_mapping_mut().unwrap();
    kv.remove("persistent_disk");
    kv.insert("persistent_disk_type".into(), "fast".into());
    let planned = d.ok(&["-d", "demo", "plan", d.write("demo.yml", &m.text()).to_str().unwrap()]);
    assert!(planned.contains("migrate disk (2048 MB -> 4096 MB, new disk type)"), "{planned}");
    let deployed = d.deploy("demo", &m, "demo.yml", &[]);
    let summary = deployed.expect_ok();
    assert_eq!((summary.updated, summary.recreated, summary.created), (1, 0, 0), "{summary:?}");
    assert!(deployed.stdout.contains("disk migrated"), "the copy is reported:\n{}", deployed.stdout);

    assert_eq!(kv_vm(&d), vm, "a migration keeps the VM");
    let migrated = kv_disk(&d);
    assert_ne!(migrated.cid, first.cid, "a new disk");
    assert_eq!(migrated.size_mb, 4096);
    assert_eq!(serde_json::from_str::<serde_json::Value>(&migrated.cloud_properties_json).unwrap()["tier"], "fast");
    let orphans = d.state().orphaned_disks().unwrap();
    let orphans: Vec<&str> = orphans.iter().map(|o| o.cid.as_str()).collect();
    assert_eq!(orphans, vec![first.cid.as_str()], "the old disk is kept as an orphan, and only it");
    assert_eq!(d.state().disks("demo").unwrap().len(), 1, "the instance has one disk on record");

    // The VM's store is the new disk, and it holds what the old one held.
    let disks_dir = d.vms_dir().parent().unwrap().join("disks");
    assert_eq!(fs::read_link(&store).unwrap(), disks_dir.join(&migrated.cid));
    assert!(!d.vms_dir().join(&vm).join("store_migration_target").exists(), "nothing is left beside it");
    assert_eq!(fs::read_to_string(store.join("operator/notes/keep.txt")).unwrap(), "written before the disk changed\n");
    assert_eq!(fs::read_to_string(store.join(".rosh-disk-id")).unwrap().trim(), migrated.cid);
    assert_eq!(next_count(&d), "4", "kvd's data came along");
    // The orphan still has its own copy and its own name.
    let old = disks_dir.join(&first.cid);
    assert_eq!(fs::read_to_string(old.join(".rosh-disk-id")).unwrap().trim(), first.cid);
    assert!(old.join("operator/notes/keep.txt").is_file());
    d.assert_running(&d.group("demo", "kv")[0]);

    // Nothing left to do: the next deploy touches nothing.
    let again = d.deploy("demo", &m, "demo.yml", &[]).expect_ok();
    assert_eq!((again.updated, again.recreated, again.unchanged), (0, 0, 3), "{again:?}");
    assert_eq!(kv_disk(&d).cid, migrated.cid);

    // The operator's view of the orphan, and its deletion; a disk in use is never deleted.
    let listed: serde_json::Value = serde_json::from_str(&d.ok(&["disks", "--orphaned", "--json"])).unwrap();
    let listed: Vec<&str> = listed.as_array().unwrap().iter().map(|o| o["cid"].as_str().unwrap()).collect();
    assert_eq!(listed, [first.cid.as_str()]);
    let refused = d.rosh(&["delete-disk", &migrated.cid]);
    assert!(!refused.status.success());
    let said = String::from_utf8_lossy(&refused.stderr);
    assert!(said.contains("is not orphaned") && said.contains("deployment `demo`"), "{said}");
    assert!(disks_dir.join(&migrated.cid).join(".rosh-disk-id").is_file(), "the disk in use is untouched");
    let deleted = d.ok(&["delete-disk", &first.cid]);
    assert!(deleted.contains(&format!("Deleted orphaned disk {}", first.cid)), "{deleted}");
    assert!(!old.exists(), "the local CPI deleted the disk's directory");
    assert!(d.state().orphaned_disks().unwrap().is_empty());
    let unknown = d.rosh(&["delete-disk", &first.cid]);
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("no orphaned disk"), "{unknown:?}");

    // Recreating the VM brings the new disk along.
    d.deploy("demo", &m, "demo.yml", &["--recreate"]).expect_ok();
    assert_ne!(kv_vm(&d), vm);
    assert_eq!(kv_disk(&d).cid, migrated.cid);
    let store = d.vms_dir().join(kv_vm(&d)).join("store");
    assert!(store.join("operator/notes/keep.txt").is_file());
    assert_eq!(next_count(&d), "5");
}
