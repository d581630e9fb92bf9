//! `rosh cck` end to end on the local CPI: the sample deployment (two kv instances with
//! persistent disks, two web instances) is broken four ways behind rosh's back, one instance
//! each — an agent SIGKILLed (unresponsive agent: its VM directory is still there), a VM lost
//! (its agent killed and its directory deleted: missing VM), a job process that keeps failing
//! (its port taken by someone else), a persistent disk detached through the CPI (mount info
//! mismatch) — and the operator's view is checked: `cck --report` lists exactly those four
//! problems and exits 1, `cck --auto` fixes them, a second report is clean, the files written
//! to the persistent stores before the failures are intact, every process runs, and the event
//! log has each repair.
//!
//! Loopback range 127.170.0.0/16.

mod common;
mod deploy_support;

use std::collections::BTreeSet;
use std::fs;
use std::net::TcpListener;
use std::time::{Duration, Instant};

use deploy_support::{Director, alive, get_ok, ip_of, kill_and_wait};
use rosh_cpi::{Cid, Cpi, DiskAttachment};

#[test]
fn cck_reports_exactly_the_four_broken_instances_and_auto_fixes_them_keeping_the_disks() {
    let d = Director::new(170);
    let mut m = d.demo();
    m.watch_times("500-5000", "500-5000");
    m.instances("kv", 2);
    m.group("kv")["networks"][0]["static_ips"] = deploy_support::yaml(&format!("[{}, {}]", d.ip(0, 10), d.ip(0, 11)));
    d.deploy("demo", &m, "demo.yml", &[]).expect_ok();

    // Healthy: nothing to report, exit 0.
    let (code, found, doc) = d.cck_report("demo");
    assert_eq!(code, Some(0), "{doc}");
    assert!(found.is_empty(), "{doc}");
    let text = d.ok(&["-d", "demo", "cck", "--report"]);
    assert!(text.contains("Scanning 4 VMs: 4 OK, 0 unresponsive, 0 missing, 0 failing"), "{text}");
    assert!(text.contains("Scanning 2 persistent disks: 2 OK, 0 missing, 0 inactive, 0 mount mismatch"), "{text}");

    let kv = d.group("demo", "kv");
    let web = d.group("demo", "web");
    let vms = d.vms_dir();
    // Data on each kv's persistent disk, written before anything breaks.
    for (i, r) in kv.iter().enumerate() {
        let store = vms.join(&r.vm.as_ref().unwrap().cid).join("store");
        fs::write(store.join("before-failure.txt"), format!("kept by kv/{i}\n")).unwrap();
    }

    // kv/0: its agent SIGKILLed (the VM's directory stays: unresponsive, not missing).
    let kv0_cid = kv[0].vm.as_ref().unwrap().cid.clone();
    kill_and_wait(d.agent_pid(&kv0_cid).expect("kv/0 has an agent"));
    // web/0: the VM is lost — agent gone and its directory deleted.
    let web0_cid = web[0].vm.as_ref().unwrap().cid.clone();
    kill_and_wait(d.agent_pid(&web0_cid).expect("web/0 has an agent"));
    fs::remove_dir_all(vms.join(&web0_cid)).unwrap();
    // web/1: the web process keeps failing: killed, and its port taken before the supervisor
    // restarts it (0.5 s backoff).
    let web1_ip = ip_of(&web[1]);
    let web1_pid = d.agent_state(&web[1]).processes.iter().find(|p| p.name == "web").and_then(|p| p.pid).unwrap();
    kill_and_wait(web1_pid);
    let squatter = {
        let deadline = Instant::now() + Duration::from_millis(400);
        loop {
            if let Ok(l) = TcpListener::bind((web1_ip.as_str(), 8080)) {
                break l;
            }
            assert!(Instant::now() < deadline, "could not take {web1_ip}:8080 before the restart");
            std::thread::sleep(Duration::from_millis(5));
        }
    };
    // kv/1: its disk detached through the CPI behind rosh's back.
    let kv1_cid = kv[1].vm.as_ref().unwrap().cid.clone();
    let kv1_disk = d.state().instance_disk("demo", &kv[1].uuid).unwrap().expect("kv/1 has a disk").cid;
    let cpi = rosh_cpi_local::LocalCpi::new(rosh_cpi_local::LocalConfig::new(
        d.state_dir.join("cpi/local"),
        deploy_support::ROSH,
    ))
    .unwrap();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(cpi.detach_disk(DiskAttachment { vm_cid: Cid(kv1_cid.clone()), disk_cid: Cid(kv1_disk.clone()) }))
        .unwrap();
    // Let the supervisor see web/1's process fail at least once.
    std::thread::sleep(Duration::from_secs(2));

    let (code, found, doc) = d.cck_report("demo");
    assert_eq!(code, Some(1), "cck --report exits 1 when there are problems: {doc}");
    let expected: BTreeSet<(String, String)> = [
        ("unresponsive_agent", kv[0].label()),
        ("mount_info_mismatch", kv[1].label()),
        ("missing_vm", web[0].label()),
        ("failing_processes", web[1].label()),
    ]
    .into_iter()
    .map(|(k, i)| (k.to_string(), i))
    .collect();
    assert_eq!(found, expected, "{doc:#}");
    let text = String::from_utf8_lossy(&d.rosh(&["-d", "demo", "cck", "--report"]).stdout).into_owned();
    assert!(text.contains("Scanning 4 VMs: 1 OK, 1 unresponsive, 1 missing, 1 failing"), "{text}");
    assert!(text.contains("Scanning 2 persistent disks: 1 OK, 0 missing, 0 inactive, 1 mount mismatch"), "{text}");
    assert!(text.contains("4 problems"), "{text}");
    // `instances` marks them the same way.
    let listed: serde_json::Value = serde_json::from_str(&d.ok(&["-d", "demo", "instances", "--json"])).unwrap();
    let state_of = |label: String| {
        listed.as_array().unwrap().iter().find(|i| i["instance"] == label.as_str()).unwrap()["process_state"].clone()
    };
    assert_eq!(state_of(kv[0].label()), "unresponsive agent", "{listed:#}");
    assert_eq!(state_of(web[0].label()), "missing vm", "{listed:#}");
    assert_eq!(state_of(web[1].label()), "failing", "{listed:#}");
    assert_eq!(state_of(kv[1].label()), "running", "{listed:#}");
    // A report changes nothing: the lost VM is still lost, the dead agent still dead.
    assert!(!vms.join(&web0_cid).exists());
    assert!(d.agent_pid(&kv0_cid).is_none_or(|p| !alive(p)));
    // Without a terminal and without --auto/--resolution, cck refuses to guess.
    let refused = d.rosh(&["-d", "demo", "cck"]);
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("--auto"), "{refused:?}");

    // The port is free again: restarting web/1 can work now.
    drop(squatter);
    let fixed = d.rosh(&["-d", "demo", "cck", "--auto"]);
    let fixed_out = String::from_utf8_lossy(&fixed.stdout).into_owned();
    assert!(fixed.status.success(), "cck --auto failed:\n{fixed_out}\n{}", String::from_utf8_lossy(&fixed.stderr));
    assert!(fixed_out.contains("Resolved 4 of 4 problems"), "{fixed_out}");

    let (code, found, doc) = d.cck_report("demo");
    assert_eq!((code, found.len()), (Some(0), 0), "after cck --auto: {doc:#}");
    let kv_after = d.group("demo", "kv");
    let web_after = d.group("demo", "web");
    // Recreated: new VMs for kv/0 and web/0; kv/1 and web/1 keep theirs.
    assert_ne!(kv_after[0].vm.as_ref().unwrap().cid, kv0_cid);
    assert_ne!(web_after[0].vm.as_ref().unwrap().cid, web0_cid);
    assert_eq!(kv_after[1].vm.as_ref().unwrap().cid, kv1_cid);
    assert_eq!(web_after[1].vm, web[1].vm);
    for r in kv_after.iter().chain(&web_after) {
        assert!(!r.dirty, "{} is dirty", r.label());
        d.assert_running(r);
    }
    // The persistent data is intact, on kv/0's new VM and on kv/1's re-attached disk.
    for (i, r) in kv_after.iter().enumerate() {
        let file = vms.join(&r.vm.as_ref().unwrap().cid).join("store/before-failure.txt");
        assert_eq!(fs::read_to_string(&file).unwrap(), format!("kept by kv/{i}\n"), "{}", file.display());
        let state = d.agent_state(r);
        let disk = d.state().instance_disk("demo", &r.uuid).unwrap().unwrap().cid;
        assert_eq!(state.persistent_disks, [disk], "{}", r.label());
    }
    // The web app answers on both instances, counting through kv.
    for r in &web_after {
        assert_eq!(get_ok(&ip_of(r), 8080, "/"), "Hello from rosh");
    }
    d.assert_no_orphans(&["demo"], "after cck --auto");

    // Every repair is in the event log.
    let events: serde_json::Value =
        serde_json::from_str(&d.ok(&["-d", "demo", "events", "--json", "--limit", "500"])).unwrap();
    let repairs: BTreeSet<String> = events
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["action"] == "repair" && e["error"].is_null())
        .map(|e| e["context"].as_str().unwrap_or_default().to_string())
        .collect();
    for context in [
        "unresponsive_agent: recreate",
        "missing_vm: recreate",
        "failing_processes: restart",
        "mount_info_mismatch: reattach",
    ] {
        assert!(repairs.contains(context), "no repair event `{context}`: {repairs:?}");
    }
}

/// A lost VM that had a persistent disk (the host died: agent gone, directory gone) comes back
/// with its data: the local CPI treats an attachment to a VM it has no record of as stale.
#[test]
fn a_lost_vm_with_a_persistent_disk_comes_back_with_its_data() {
    let d = Director::new(176);
    let mut m = d.demo();
    m.watch_times("500-5000", "500-5000");
    d.deploy("demo", &m, "demo.yml", &[]).expect_ok();
    let kv = d.group("demo", "kv")[0].clone();
    let cid = kv.vm.as_ref().unwrap().cid.clone();
    fs::write(d.vms_dir().join(&cid).join("store/before-failure.txt"), "kept\n").unwrap();
    kill_and_wait(d.agent_pid(&cid).expect("an agent"));
    fs::remove_dir_all(d.vms_dir().join(&cid)).unwrap();
    let (_, found, doc) = d.cck_report("demo");
    assert_eq!(found, BTreeSet::from([("missing_vm".to_string(), kv.label())]), "{doc:#}");

    let fixed = d.rosh(&["-d", "demo", "cck", "--auto"]);
    assert!(fixed.status.success(), "{}", String::from_utf8_lossy(&fixed.stdout));
    let now = d.group("demo", "kv")[0].clone();
    assert_ne!(now.vm.as_ref().unwrap().cid, cid);
    let file = d.vms_dir().join(&now.vm.as_ref().unwrap().cid).join("store/before-failure.txt");
    assert_eq!(fs::read_to_string(file).unwrap(), "kept\n");
    d.assert_running(&now);
}
