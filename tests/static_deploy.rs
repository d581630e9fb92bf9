//! `rosh deploy` through the static CPI, end to end with the binary: two machines that are real
//! OpenSSH sshd on loopback addresses of their own (127.204.0.1 and .2), compilation on the
//! local CPI. The director installs the small `rosh-agent` over SSH, the instances get the
//! machines' addresses on a dynamic network and list each other in a rendered config, the
//! scripts the jobs have run (and none is asked for where no job has one), an unchanged deploy
//! logs into no machine, a create-swap-delete with no free machine leaves every instance on its
//! machine, and deleting the deployment wipes the machines and frees them.

mod common;
#[path = "deploy_support/mod.rs"]
mod deploy_support;
#[path = "ssh_support/mod.rs"]
mod ssh_support;

use std::fs;
use std::path::Path;

use deploy_support::{Director, Manifest, rack_release as release};
use sha2::{Digest, Sha256};
use ssh_support::Sshd;

fn sha256_file(path: &Path) -> String {
    Sha256::digest(fs::read(path).unwrap()).iter().map(|b| format!("{b:02x}")).collect()
}

#[test]
fn a_deployment_on_openssh_machines_installs_the_small_agent_converges_and_is_wiped_on_delete() {
    let machines = [Sshd::start_at("127.204.0.1"), Sshd::start_at("127.204.0.2")];
    let director = Director::bare(204);
    let source = director.path("src-rack");
    release(&source);
    director.upload_release(&source);

    let roots: Vec<_> = machines.iter().map(|m| m.dir.path().join("root")).collect();
    let entries: String = machines
        .iter()
        .zip(&roots)
        .enumerate()
        .map(|(i, (m, root))| {
            format!(
                "    - {{name: m{i}, address: {}, port: {}, user: {}, private_key: {}, host_key: '{}', root: {}}}\n",
                m.address,
                m.port,
                m.user,
                m.client_key.display(),
                m.host_public_key,
                root.display()
            )
        })
        .collect();
    let cpi = director.write(
        "cpi.yml",
        &format!("cpis:\n- {{name: laptop, type: local}}\n- name: rack\n  type: static\n  properties:\n    machines:\n{entries}"),
    );
    director.ok(&["update-cpi-config", cpi.to_str().unwrap()]);
    // Compilation on local VMs (the director's own cloud config, its AZ now on `laptop`), the
    // instances on the machines.
    let mut cloud: serde_yaml_ng::Value = serde_yaml_ng::from_str(&director.cloud_config()).unwrap();
    let azs = cloud["azs"].as_sequence_mut().unwrap();
    for az in azs.iter_mut() {
        az["cpi"] = "laptop".into();
    }
    azs.push(serde_yaml_ng::from_str("{name: rack, cpi: rack}").unwrap());
    cloud["networks"]
        .as_sequence_mut()
        .unwrap()
        .push(serde_yaml_ng::from_str("{name: machines, type: dynamic, subnets: [{azs: [rack]}]}").unwrap());
    let cloud = director.write("cloud-static.yml", &serde_yaml_ng::to_string(&cloud).unwrap());
    director.ok(&["update-cloud-config", cloud.to_str().unwrap()]);

    let manifest = Manifest(
        serde_yaml_ng::from_str(
            "name: rack\nreleases: [{name: rack, version: latest}]\nstemcells: [{alias: default, os: debian-bookworm, version: latest}]\n\
             update: {canaries: 1, max_in_flight: 2, canary_watch_time: 0-20000, update_watch_time: 0-20000}\n\
             instance_groups:\n- name: peer\n  azs: [rack]\n  instances: 2\n  vm_type: default\n  stemcell: default\n  \
             networks: [{name: machines}]\n  jobs: [{name: peer, release: rack}]\n",
        )
        .unwrap(),
    );
    let first = director.deploy("rack", &manifest, "rack.yml", &[]).expect_ok();
    assert_eq!((first.created, first.packages_compiled), (2, 1), "{first:?}");

    let records = director.instances("rack");
    let mut uuids: Vec<String> = records.iter().map(|r| r.uuid.clone()).collect();
    uuids.sort();
    // Both machines are claimed, one per instance.
    let claims_path = director.state_dir.join("cpi/rack/claims.json");
    let claims: serde_json::Value = serde_json::from_str(&fs::read_to_string(&claims_path).unwrap()).unwrap();
    let mut claimed: Vec<&String> = claims["machines"].as_object().unwrap().keys().collect();
    claimed.sort();
    assert_eq!(claimed, ["m0", "m1"], "{claims}");

    // The small agent (not the director) is what the machines got.
    let small = Path::new(env!("CARGO_BIN_EXE_rosh-agent"));
    for root in &roots {
        let installed = root.join("bosh/bin/rosh-agent");
        assert_eq!(sha256_file(&installed), sha256_file(small), "{}", installed.display());
        assert!(!root.join("bosh/bin/rosh").exists());
        // Both peers in every rendered config: on a dynamic network a link's address is the
        // instance's DNS name (as BOSH gives it), the IP being the machine's own.
        let peers = fs::read_to_string(root.join("jobs/peer/config/peers.txt")).unwrap();
        let mut listed: Vec<String> = peers.lines().map(|l| l.split('.').next().unwrap().to_string()).collect();
        listed.sort();
        assert_eq!(listed, uuids, "{}: {peers}", root.display());
        assert!(peers.lines().all(|l| l.ends_with(".peer.machines.rack.bosh")), "{peers}");
        assert!(root.join("pre-start.ran").is_file(), "pre-start ran on {}", root.display());
        assert_eq!(fs::read_to_string(root.join("post-deploy.ran")).unwrap().lines().count(), 1);
    }
    for record in &records {
        director.assert_running(record);
    }
    let ps = director.ok(&["-d", "rack", "instances", "--ps", "--json"]);
    let ps: serde_json::Value = serde_json::from_str(&ps).unwrap();
    for instance in ps.as_array().unwrap() {
        assert_eq!(instance["process_state"], "running", "{instance}");
        assert_eq!(instance["processes"][0]["state"], "running", "{instance}");
    }

    // Unchanged: nothing to do, and no machine is logged into.
    let logins: Vec<usize> = machines.iter().map(Sshd::accepted_logins).collect();
    let again = director.deploy("rack", &manifest, "rack.yml", &[]).expect_ok();
    assert_eq!((again.unchanged, again.created, again.updated, again.packages_compiled), (2, 0, 0, 0), "{again:?}");
    assert_eq!(machines.iter().map(Sshd::accepted_logins).collect::<Vec<_>>(), logins);

    // create-swap-delete with every machine taken: the canary's new VM cannot be made, so its
    // machine stays its VM, untouched and still running, and nothing is left orphaned.
    let mut swap = manifest.clone();
    swap.0["update"]["vm_strategy"] = "create-swap-delete".into();
    let vms_before: Vec<Option<String>> = records.iter().map(|r| r.vm.as_ref().map(|v| v.cid.clone())).collect();
    let failed = director.deploy("rack", &swap, "rack.yml", &["--recreate"]);
    assert!(!failed.ok, "there is no free machine for a new VM:\n{}", failed.stdout);
    let said = format!("{}{}", failed.stdout, failed.stderr);
    assert!(said.contains("static machines are claimed") && said.contains("is still the instance's VM"), "{said}");
    let after = director.instances("rack");
    let vms_after: Vec<Option<String>> = after.iter().map(|r| r.vm.as_ref().map(|v| v.cid.clone())).collect();
    assert_eq!(vms_after, vms_before);
    for record in &after {
        assert!(!record.dirty, "{} is as it was", record.label());
        director.assert_running(record);
    }
    let orphans: serde_json::Value = serde_json::from_str(&director.ok(&["orphaned-vms", "--json"])).unwrap();
    assert_eq!(orphans, serde_json::json!([]));
    let again = director.deploy("rack", &swap, "rack.yml", &[]).expect_ok();
    assert_eq!((again.unchanged, again.created), (2, 0), "{again:?}");

    // Deleting the deployment stops the jobs and wipes the machines; both are free again.
    director.ok(&["-d", "rack", "delete-deployment", "-n"]);
    for root in &roots {
        assert!(!root.join("jobs/peer").exists(), "{} still holds the job", root.display());
    }
    let claims: serde_json::Value = serde_json::from_str(&fs::read_to_string(&claims_path).unwrap()).unwrap();
    assert_eq!(claims["machines"].as_object().map(|m| m.len()), Some(0), "{claims}");
}
