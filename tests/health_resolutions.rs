//! `rosh cck` with resolutions other than the defaults, and the interactive choice on a
//! terminal: a SIGKILLed agent rebooted (`unresponsive_agent=reboot`: the local CPI's reboot_vm
//! restarts the agent on the same VM), a lost VM's reference deleted (`missing_vm=
//! delete_reference`: the instance stays, without a VM, until `deploy` makes one), and an
//! inactive disk activated by the operator answering the prompt on a pseudo-terminal. And a
//! disk deleted from the cloud behind rosh's back: reported missing, its reference deleted (the
//! agent forgets it too), the next deploy gives the instance a new one.
//!
//! Loopback ranges 127.174.0.0/16 and 127.177.0.0/16.

mod common;
mod deploy_support;

use std::fs;
use std::io::{Read, Write};
use std::process::Stdio;
use std::time::{Duration, Instant};

use deploy_support::{Director, alive, kill_and_wait};

#[test]
fn chosen_resolutions_reboot_delete_a_reference_and_ask_on_a_terminal() {
    let d = Director::new(174);
    let mut m = d.demo();
    m.watch_times("500-5000", "500-5000");
    d.deploy("demo", &m, "demo.yml", &[]).expect_ok();
    let kv = d.group("demo", "kv")[0].clone();
    let web = d.group("demo", "web");

    let web0_cid = web[0].vm.as_ref().unwrap().cid.clone();
    let old_pid = d.agent_pid(&web0_cid).unwrap();
    kill_and_wait(old_pid);
    let web1_cid = web[1].vm.as_ref().unwrap().cid.clone();
    kill_and_wait(d.agent_pid(&web1_cid).unwrap());
    fs::remove_dir_all(d.vms_dir().join(&web1_cid)).unwrap();
    let state = d.state();
    let mut disk = state.instance_disk("demo", &kv.uuid).unwrap().unwrap();
    disk.active = false;
    state.record_disk(&disk).unwrap();
    drop(state);

    // On a terminal, the problem without a --resolution is asked; the operator picks 1.
    let cmd = format!(
        "{} -d demo cck --resolution unresponsive_agent=reboot --resolution missing_vm=delete_reference",
        deploy_support::ROSH
    );
    let mut child = std::process::Command::new("script")
        .args(["-qec", &cmd, "/dev/null"])
        .current_dir(d.tmp.path())
        .env("ROSH_STATE_DIR", &d.state_dir)
        .env_remove("ROSH_DEPLOYMENT")
        .env("NO_COLOR", "1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run cck under script(1)");
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(b"1\n").unwrap();
    stdin.flush().unwrap();
    let deadline = Instant::now() + Duration::from_secs(180);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "cck did not finish");
        std::thread::sleep(Duration::from_millis(100));
    };
    drop(stdin);
    let mut out = String::new();
    child.stdout.take().unwrap().read_to_string(&mut out).unwrap();
    assert!(status.success(), "cck failed ({status}):\n{out}");
    assert!(out.contains("Please choose a resolution [1 - 3]"), "the inactive disk was asked about:\n{out}");
    assert!(out.contains("Problem: Disk '"), "{out}");
    assert!(out.contains("Resolved 3 of 3 problems"), "{out}");

    // Rebooted: the same VM, a new agent, its process running.
    let now = d.group("demo", "web");
    assert_eq!(now[0].vm.as_ref().unwrap().cid, web0_cid);
    let new_pid = d.agent_pid(&web0_cid).expect("an agent again");
    assert_ne!(new_pid, old_pid);
    assert!(alive(new_pid));
    d.assert_running(&now[0]);
    // The lost VM's reference is gone; the instance stays (dirty) until deploy makes it a VM.
    assert!(now[1].vm.is_none(), "{:?}", now[1]);
    assert!(now[1].dirty);
    // The disk is active again.
    assert!(d.state().instance_disk("demo", &kv.uuid).unwrap().is_some_and(|d| d.cid == disk.cid));

    let report = d.rosh(&["-d", "demo", "cck", "--report"]);
    assert!(report.status.success(), "{}", String::from_utf8_lossy(&report.stdout));
    let summary = d.deploy("demo", &m, "demo.yml", &[]).expect_ok();
    assert_eq!((summary.created + summary.recreated, summary.updated), (1, 0), "{summary:?}");
    let web1 = &d.group("demo", "web")[1];
    assert_eq!(web1.uuid, web[1].uuid, "the same instance gets the new VM");
    d.assert_running(web1);
    d.assert_no_orphans(&["demo"], "after the resolutions and a deploy");
}

/// A persistent disk deleted from the cloud behind rosh's back: cck reports it missing, its
/// reference is deleted (the default), and the next deploy gives the instance a new disk.
#[test]
fn a_disk_deleted_behind_roshs_back_is_reported_missing_and_its_reference_deleted() {
    use rosh_cpi::{Cid, Cpi, DiskAttachment};
    let d = Director::new(177);
    let mut m = d.demo();
    m.watch_times("500-5000", "500-5000");
    d.deploy("demo", &m, "demo.yml", &[]).expect_ok();
    let kv = d.group("demo", "kv")[0].clone();
    let disk = d.state().instance_disk("demo", &kv.uuid).unwrap().unwrap().cid;
    let cpi = rosh_cpi_local::LocalCpi::new(rosh_cpi_local::LocalConfig::new(
        d.state_dir.join("cpi/local"),
        deploy_support::ROSH,
    ))
    .unwrap();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let vm_cid = Cid(kv.vm.as_ref().unwrap().cid.clone());
        cpi.detach_disk(DiskAttachment { vm_cid, disk_cid: Cid(disk.clone()) }).await.unwrap();
        cpi.delete_disk(Cid(disk.clone())).await.unwrap();
    });

    let out = d.rosh(&["-d", "demo", "cck", "--report", "--json"]);
    assert_eq!(out.status.code(), Some(1));
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let missing: Vec<&serde_json::Value> =
        doc["problems"].as_array().unwrap().iter().filter(|p| p["kind"] == "missing_disk").collect();
    assert_eq!(missing.len(), 1, "{doc:#}");
    assert_eq!(missing[0]["disk_cid"], disk.as_str());
    assert_eq!(missing[0]["instance"], kv.label().as_str());

    let fixed = d.rosh(&["-d", "demo", "cck", "--auto"]);
    assert!(fixed.status.success(), "{}", String::from_utf8_lossy(&fixed.stdout));
    assert!(d.state().disks("demo").unwrap().iter().all(|r| r.cid != disk), "the reference is deleted");

    let summary = d.deploy("demo", &m, "demo.yml", &[]).expect_ok();
    assert_eq!(summary.created, 0, "{summary:?}");
    let new_disk = d.state().instance_disk("demo", &kv.uuid).unwrap().expect("kv has a disk again").cid;
    assert_ne!(new_disk, disk);
    let report = d.rosh(&["-d", "demo", "cck", "--report"]);
    assert!(report.status.success(), "{}", String::from_utf8_lossy(&report.stdout));
    assert_eq!(d.agent_state(&d.group("demo", "kv")[0]).persistent_disks, [new_disk]);
}
