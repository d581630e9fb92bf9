//! The config commands end to end: the `rosh` binary against a state directory of its own,
//! asserting what an operator sees (output, exit code) and what the state then holds.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use rosh::state::{ConfigKind, State};

const BOSH_LITE_CLOUD_CONFIG: &str = "../shared/corpus/cf-deployment/v58.0.0/iaas-support/bosh-lite/cloud-config.yml";

/// A cloud config for rosh's local CPI: VMs are processes on loopback addresses.
const LOCAL_CLOUD_CONFIG: &str = "\
# The local CPI: every VM is a process on a loopback address of this machine.
azs:
- name: z1
- name: z2
vm_types:
- name: default
disk_types:
- name: default
  disk_size: 1024
networks:
- name: default
  type: manual
  subnets:
  - range: 127.10.0.0/24
    gateway: 127.10.0.1
    reserved: [127.10.0.2 - 127.10.0.9]
    static: [127.10.0.10 - 127.10.0.19]
    azs: [z1, z2]
compilation:
  workers: 2
  az: z1
  vm_type: default
  network: default
  reuse_compilation_vms: true
";

struct Director {
    dir: tempfile::TempDir,
}

impl Director {
    fn new() -> Director {
        Director { dir: tempfile::tempdir().unwrap() }
    }

    fn state_dir(&self) -> PathBuf {
        self.dir.path().join("state")
    }

    fn file(&self, name: &str, text: &str) -> PathBuf {
        let path = self.dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        path
    }

    fn rosh(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_rosh"))
            .args(args)
            .env("ROSH_STATE_DIR", self.state_dir())
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .output()
            .unwrap()
    }

    fn state(&self) -> State {
        State::open(&self.state_dir()).unwrap()
    }
}

fn stdout(output: &Output) -> String {
    String::from_utf8(output.stdout.clone()).unwrap()
}

fn stderr(output: &Output) -> String {
    String::from_utf8(output.stderr.clone()).unwrap()
}

fn ok(output: Output) -> String {
    assert!(
        output.status.success(),
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        output.status,
        stdout(&output),
        stderr(&output)
    );
    stdout(&output)
}

fn failed(output: &Output) {
    assert_eq!(output.status.code(), Some(1), "stdout:\n{}\nstderr:\n{}", stdout(output), stderr(output));
}

fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn the_bosh_lite_cloud_config_round_trips_byte_for_byte() {
    let director = Director::new();
    let original = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(BOSH_LITE_CLOUD_CONFIG)).unwrap();
    assert!(original.contains("# Note:"), "the corpus file has comments to keep");

    assert_eq!(
        ok(director.rosh(&["update-cloud-config", BOSH_LITE_CLOUD_CONFIG])),
        "Cloud config updated (version 1)\n"
    );
    assert_eq!(ok(director.rosh(&["cloud-config"])), original);

    let serial = director.state().serial().unwrap();
    assert_eq!(
        ok(director.rosh(&["update-cloud-config", BOSH_LITE_CLOUD_CONFIG])),
        "No changes: cloud config stays at version 1\n"
    );
    assert_eq!(director.state().serial().unwrap(), serial, "no new version, no serial step");

    let listed = ok(director.rosh(&["configs"]));
    let lines: Vec<&str> = listed.lines().collect();
    assert_eq!(lines[0].split_whitespace().collect::<Vec<_>>(), ["ID", "Type", "Name", "Version", "Created", "At"]);
    assert_eq!(lines[1].split_whitespace().take(4).collect::<Vec<_>>(), ["1", "cloud", "default", "1"]);
    assert_eq!(lines.last(), Some(&"1 config"));
}

#[test]
fn a_bad_cloud_config_names_the_file_and_path_and_stores_nothing() {
    let director = Director::new();
    let good = director.file("local.yml", LOCAL_CLOUD_CONFIG);
    ok(director.rosh(&["update-cloud-config", path(&good)]));
    let before = director.state().snapshot().unwrap();

    let bad = director
        .file("bad.yml", &LOCAL_CLOUD_CONFIG.replace("type: manual", "type: manul").replace("az: z1", "az: z9"));
    let output = director.rosh(&["update-cloud-config", path(&bad)]);

    failed(&output);
    let err = stderr(&output);
    let file = path(&bad);
    assert!(err.contains(&format!("{file}: networks[0].type: network type 'manul'")), "{err}");
    assert!(err.contains(&format!("{file}: compilation.az: az 'z9'")), "{err}");
    assert!(err.contains("nothing stored"), "{err}");
    assert!(stdout(&output).is_empty());
    assert_eq!(director.state().snapshot().unwrap(), before, "the state is as it was");
    assert_eq!(ok(director.rosh(&["cloud-config"])), LOCAL_CLOUD_CONFIG, "the good one is still current");

    // Not YAML at all: named too, and nothing stored either.
    let broken = director.file("broken.yml", "azs: [z1\n");
    let output = director.rosh(&["update-cloud-config", path(&broken)]);
    failed(&output);
    assert!(stderr(&output).contains("broken.yml"), "{}", stderr(&output));
    assert_eq!(director.state().snapshot().unwrap(), before);
}

#[test]
fn the_local_cloud_config_round_trips_and_interpolated_ones_store_the_result() {
    let director = Director::new();
    let local = director.file("local.yml", LOCAL_CLOUD_CONFIG);
    let out = ok(director.rosh(&["update-cloud-config", path(&local), "--json"]));
    let version: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!((version["version"].as_u64(), version["changed"].as_bool()), (Some(1), Some(true)));
    assert_eq!(version["kind"], "cloud");
    assert_eq!(ok(director.rosh(&["cloud-config"])), LOCAL_CLOUD_CONFIG);
    let stored = director.state().latest_config(ConfigKind::Cloud, "default").unwrap().unwrap();
    assert_eq!(stored.content, LOCAL_CLOUD_CONFIG);
    assert_eq!(stored.id, version["id"].as_i64().unwrap());
    // It is a cloud config the model reads, once stored and read back.
    let doc = rosh::manifest::yaml::parse(&stored.content, "stored").unwrap();
    let model = rosh::manifest::model::CloudConfig::from_value(&doc).unwrap().model;
    assert_eq!(model.networks[0].name, "default");

    // With variables and an ops file, what is stored is the rendered document.
    let templated = director.file("templated.yml", &LOCAL_CLOUD_CONFIG.replace("workers: 2", "workers: ((workers))"));
    let ops = director.file("ops.yml", "- type: replace\n  path: /vm_types/-\n  value: {name: large}\n");
    let out = ok(director.rosh(&["update-cloud-config", path(&templated), "-v", "workers=6", "-o", path(&ops)]));
    assert_eq!(out, "Cloud config updated (version 2)\n");
    let shown = ok(director.rosh(&["cloud-config"]));
    let doc = rosh::manifest::yaml::parse(&shown, "shown").unwrap();
    let model = rosh::manifest::model::CloudConfig::from_value(&doc).unwrap().model;
    assert_eq!(model.vm_types.iter().map(|v| v.name.as_str()).collect::<Vec<_>>(), ["default", "large"]);
    assert!(shown.contains("workers: 6"), "{shown}");
    assert!(!shown.contains("(("), "{shown}");

    // Standard input works as a file.
    let mut child = Command::new(env!("CARGO_BIN_EXE_rosh"))
        .args(["update-cloud-config", "-"])
        .env("ROSH_STATE_DIR", director.state_dir())
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child.stdin.take().unwrap().write_all(LOCAL_CLOUD_CONFIG.as_bytes()).unwrap();
    let output = child.wait_with_output().unwrap();
    assert_eq!(ok(output), "Cloud config updated (version 3)\n");
}

#[test]
fn runtime_configs_are_kept_by_name() {
    let director = Director::new();
    let dns = director.file(
        "dns.yml",
        "releases: [{name: bosh-dns, version: 1.38.2}]\naddons: [{name: dns, jobs: [{name: bosh-dns, release: bosh-dns}]}]\n",
    );
    let os = director.file("os.yml", "releases: [{name: os-conf, version: 22.2.1}]\n");

    assert_eq!(
        ok(director.rosh(&["update-runtime-config", path(&dns), "--name", "dns"])),
        "Runtime config 'dns' updated (version 1)\n"
    );
    assert_eq!(ok(director.rosh(&["update-runtime-config", path(&os)])), "Runtime config updated (version 1)\n");
    assert_eq!(ok(director.rosh(&["runtime-config", "--name", "dns"])), std::fs::read_to_string(&dns).unwrap());
    assert_eq!(ok(director.rosh(&["runtime-config"])), std::fs::read_to_string(&os).unwrap());

    let listed: serde_json::Value =
        serde_json::from_str(&ok(director.rosh(&["configs", "--type", "runtime", "--json"]))).unwrap();
    let names: Vec<&str> = listed.as_array().unwrap().iter().map(|c| c["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["default", "dns"]);
    assert!(listed[0].get("content").is_none(), "the list does not dump contents");

    // `latest` is refused in a runtime config, with its path.
    let latest = director.file("latest.yml", "releases: [{name: os-conf, version: latest}]\n");
    let output = director.rosh(&["update-runtime-config", path(&latest), "--name", "dns"]);
    failed(&output);
    assert!(stderr(&output).contains("latest.yml: releases[0].version"), "{}", stderr(&output));
    assert_eq!(director.state().latest_config(ConfigKind::Runtime, "dns").unwrap().unwrap().version, 1);

    let output = director.rosh(&["runtime-config", "--name", "nope"]);
    failed(&output);
    assert!(stderr(&output).contains("no runtime config named 'nope' is stored"), "{}", stderr(&output));
    let output = director.rosh(&["configs", "--type", "bogus"]);
    assert!(!output.status.success());
    assert!(stderr(&output).contains("unknown config type `bogus`"), "{}", stderr(&output));
}

#[test]
fn the_cpi_config_is_validated_before_it_is_stored() {
    let director = Director::new();
    let bad = director.file("cpi.yml", "cpis:\n- name: laptop\n  type: local\n- name: vsphere\n  type: vsphere\n");
    let output = director.rosh(&["update-cpi-config", path(&bad)]);
    failed(&output);
    assert!(stderr(&output).contains(&format!("{}: cpis[1]", path(&bad))), "{}", stderr(&output));
    let output = director.rosh(&["cpi-config"]);
    failed(&output);
    assert!(
        stderr(&output).contains("no CPI config is stored; store one with `rosh update-cpi-config FILE`"),
        "{}",
        stderr(&output)
    );

    let good = director.file("cpi.yml", "cpis:\n- name: laptop\n  type: local\n");
    assert_eq!(ok(director.rosh(&["update-cpi-config", path(&good)])), "CPI config updated (version 1)\n");
    assert_eq!(ok(director.rosh(&["cpi-config"])), "cpis:\n- name: laptop\n  type: local\n");
    let shown: serde_json::Value = serde_json::from_str(&ok(director.rosh(&["cpi-config", "--json"]))).unwrap();
    assert_eq!(shown["kind"], "cpi");
    assert_eq!(shown["content"], "cpis:\n- name: laptop\n  type: local\n");
}

#[test]
fn show_commands_fail_clearly_when_nothing_is_stored() {
    let director = Director::new();
    let output = director.rosh(&["cloud-config"]);
    failed(&output);
    assert!(
        stderr(&output).contains("no cloud config is stored; store one with `rosh update-cloud-config FILE`"),
        "{}",
        stderr(&output)
    );
    assert!(stdout(&output).is_empty());
    assert_eq!(ok(director.rosh(&["configs"])), "ID  Type  Name  Version  Created At\n\n0 configs\n");
    assert_eq!(ok(director.rosh(&["configs", "--json"])), "[]\n");
}
