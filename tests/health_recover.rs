//! `rosh recover-state` end to end on the local CPI: the sample is deployed, data is written to
//! kv's persistent disk, and the state database is deleted. The operator uploads the stemcell,
//! releases and cloud config again (they are files they have) and runs `recover-state`: the
//! instances come back from the VMs' tags, the local CPI's records and the agents — `instances`
//! shows the same deployment (ids, indexes, AZs, IPs, VMs, disks, process states), and the next
//! `deploy` of the same manifest changes nothing (no VM, disk or process touched). Running it
//! again on a state that has the instances is refused.
//!
//! An instance whose agent is down is recovered dirty, and the next deploy replaces only its VM.
//!
//! Loopback ranges 127.173.0.0/16 and 127.178.0.0/16.

mod common;
mod deploy_support;

use std::fs;

use deploy_support::Director;

/// What `instances --json` shows, without times.
fn shown(d: &Director) -> Vec<serde_json::Value> {
    let listed: serde_json::Value =
        serde_json::from_str(&d.ok(&["-d", "demo", "instances", "--ps", "--json"])).unwrap();
    let mut list: Vec<serde_json::Value> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            let processes: Vec<serde_json::Value> = i["processes"]
                .as_array()
                .unwrap()
                .iter()
                .map(|p| serde_json::json!({"name": p["name"], "state": p["state"], "pid": p["pid"]}))
                .collect();
            serde_json::json!({
                "instance": i["instance"], "index": i["index"], "az": i["az"], "bootstrap": i["bootstrap"],
                "state": i["state"], "dirty": i["dirty"], "process_state": i["process_state"], "ips": i["ips"],
                "vm_cid": i["vm_cid"], "cpi": i["cpi"], "disk_cids": i["disk_cids"], "processes": processes,
            })
        })
        .collect();
    list.sort_by_key(|v| v["instance"].as_str().unwrap().to_string());
    list
}

/// Deletes the state database; checks the deployment is unknown; uploads the stemcell, the
/// releases and the cloud config again (the operator's files).
fn lose_the_database_and_upload_again(d: &Director) {
    for name in ["state.db", "state.db-wal", "state.db-shm"] {
        let _ = fs::remove_file(d.state_dir.join(name));
    }
    let gone = d.rosh(&["-d", "demo", "instances"]);
    assert!(!gone.status.success(), "the deployment is unknown without the database");
    d.ok(&["upload-stemcell", d.path("stemcell.tgz").to_str().unwrap()]);
    for release in ["src-kv.tgz", "src-web.tgz"] {
        d.ok(&["upload-release", d.path(release).to_str().unwrap()]);
    }
    d.ok(&["update-cloud-config", d.path("cloud-config.yml").to_str().unwrap()]);
}

#[test]
fn recover_state_after_the_database_is_deleted_shows_the_same_deployment_and_the_next_deploy_is_a_no_op() {
    let d = Director::new(173);
    let mut m = d.demo();
    m.watch_times("500-5000", "500-5000");
    d.deploy("demo", &m, "demo.yml", &[]).expect_ok();
    let before = shown(&d);
    assert_eq!(before.len(), 3);
    let kv = &d.group("demo", "kv")[0];
    let store = d.vms_dir().join(&kv.vm.as_ref().unwrap().cid).join("store");
    fs::write(store.join("precious.txt"), "still here\n").unwrap();

    lose_the_database_and_upload_again(&d);
    let out = d.ok(&["-d", "demo", "recover-state"]);
    assert!(out.contains("Recovered 3 instance(s) and 1 disk(s)"), "{out}");
    assert!(!out.contains("not recovered"), "{out}");

    assert_eq!(shown(&d), before, "instances after recover-state");

    // The next deploy of the same manifest is a no-op: nothing created, updated or recreated,
    // the same VMs and processes.
    let summary = d.deploy("demo", &m, "demo.yml", &[]).expect_ok();
    assert_eq!(
        (summary.created, summary.updated, summary.recreated, summary.deleted, summary.unchanged),
        (0, 0, 0, 0, 3),
        "{summary:?}"
    );
    assert_eq!(shown(&d), before, "instances after the no-op deploy");
    assert_eq!(fs::read_to_string(store.join("precious.txt")).unwrap(), "still here\n");
    d.assert_no_orphans(&["demo"], "after recover-state and deploy");

    // A state that has the instances is not overwritten.
    let again = d.rosh(&["-d", "demo", "recover-state"]);
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("only rebuilds a lost state"), "{again:?}");
}

/// An agent that does not answer gives no spec: its instance is recovered dirty, and the next
/// deploy replaces its VM while leaving the others alone.
#[test]
fn an_instance_whose_agent_is_down_is_recovered_dirty_and_replaced_by_the_next_deploy() {
    let d = Director::new(178);
    let mut m = d.demo();
    m.watch_times("500-5000", "500-5000");
    d.deploy("demo", &m, "demo.yml", &[]).expect_ok();
    let before = d.instances("demo");
    let web1 = d.group("demo", "web")[1].clone();
    let pid = d.agent_pid(&web1.vm.as_ref().unwrap().cid).unwrap();
    // SAFETY: kill(2) of this test's own VM agent.
    unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) };
    while deploy_support::alive(pid) {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    lose_the_database_and_upload_again(&d);
    let out = d.ok(&["-d", "demo", "recover-state"]);
    assert!(out.contains("Recovered 3 instance(s)"), "{out}");
    assert!(out.contains(&format!("{}: recovered (agent did not answer", web1.label())), "{out}");
    let recovered = d.instances("demo");
    for (b, r) in before.iter().zip(&recovered) {
        assert_eq!(
            (&r.uuid, &r.vm.as_ref().unwrap().cid, &r.ips, &r.az),
            (&b.uuid, &b.vm.as_ref().unwrap().cid, &b.ips, &b.az)
        );
        assert_eq!(r.dirty, r.uuid == web1.uuid, "{}", r.label());
    }

    let summary = d.deploy("demo", &m, "demo.yml", &[]).expect_ok();
    assert_eq!((summary.recreated, summary.unchanged, summary.created, summary.updated), (1, 2, 0, 0), "{summary:?}");
    let after = d.instances("demo");
    for (b, a) in before.iter().zip(&after) {
        assert_eq!(
            a.vm.as_ref().unwrap().cid != b.vm.as_ref().unwrap().cid,
            a.uuid == web1.uuid,
            "{}: only the dead one gets a new VM",
            a.label()
        );
        d.assert_running(a);
    }
    d.assert_no_orphans(&["demo"], "after recovering a dead instance");
}
