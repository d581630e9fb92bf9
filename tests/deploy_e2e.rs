//! `rosh deploy` end to end: the real binary deploys the sample (releases `kv` and `web`,
//! `manifests/demo.yml`) on the local CPI, and each test looks at what an operator would: the
//! summary, the instance records, every VM's agent (`get_state` over SSH), the VM directories and
//! agent processes, and the web app's answers.
//!
//! - A first deploy runs everything, and the web instances count together through kv.
//! - Deploying the same manifest again touches nothing and compiles nothing.
//! - A changed property updates only the group whose jobs use it.
//! - A changed package source recompiles that package (and its dependents) once; another
//!   deployment on the same director reuses the cache.
//! - Scaling web 2→3→1 keeps indexes stable and deletes the removed VMs.
//! - A failing canary stops its group; the other instances and later groups stay as they were.
//! - Manifest errors, a required link without provider and a package cycle are refused with
//!   the YAML path before any VM exists.
//! - Crash safety: deploys SIGKILLed at random points (seeded; the seed is printed, and
//!   `ROSH_E2E_SEED` repeats a run) always converge on the next deploy, with no orphan VM either
//!   way.
//! - Ctrl-C: the instance being converged finishes, nothing new starts, the exit code is 130,
//!   and the next deploy picks up where it stopped.
//! - Compiled releases: `export-release` of both releases, `upload-release` of the tarballs on
//!   a director with no source, and a deploy there compiles nothing; on a stemcell they were
//!   not compiled for, the deploy is refused before any VM.
//!
//! Each test has its own state dir and loopback range (`127.<151..164>.0.0/16`); the watch times
//! of the copied manifests are lowered to keep the file fast.

mod common;
mod deploy_support;

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::process::Command;
use std::time::{Duration, Instant};

use deploy_support::{Director, Manifest, Rng, Summary, alive, get_ok, http_get, ip_of, repo, yaml};

/// Watch times for the tests' manifests: processes must run half a second to count as started.
const CANARY_WATCH: &str = "500-5000";
const UPDATE_WATCH: &str = "500-5000";

fn quick_demo(d: &Director) -> Manifest {
    let mut m = d.demo();
    m.watch_times(CANARY_WATCH, UPDATE_WATCH);
    m
}

fn summary(
    created: usize,
    updated: usize,
    deleted: usize,
    unchanged: usize,
    compiled: usize,
    cached: usize,
) -> Summary {
    Summary { created, updated, recreated: 0, deleted, unchanged, packages_compiled: compiled, packages_cached: cached }
}

/// Instance label → VM cid.
fn vm_cids(d: &Director, deployment: &str) -> BTreeMap<String, String> {
    d.instances(deployment).iter().map(|r| (r.label(), r.vm.as_ref().expect("a VM").cid.clone())).collect()
}

/// Instance label → (job/process → pid), every process asserted running.
fn process_pids(d: &Director, deployment: &str) -> BTreeMap<String, BTreeMap<String, u32>> {
    d.instances(deployment).iter().map(|r| (r.label(), d.assert_running(r))).collect()
}

/// The web instances' addresses, by index.
fn web_ips(d: &Director, deployment: &str) -> Vec<String> {
    d.group(deployment, "web").iter().map(ip_of).collect()
}

#[test]
fn first_deploy_runs_every_instance_and_the_web_instances_count_together_through_kv() {
    let d = Director::new(151);
    let deployed = d.deploy("demo", &quick_demo(&d), "demo.yml", &[]);
    // kvd, python3-shim, webapp, smoke-tests (the errand's package is compiled too).
    assert_eq!(deployed.expect_ok(), summary(3, 0, 0, 0, 4, 0));

    let instances = d.instances("demo");
    let groups: Vec<(String, u64)> = instances.iter().map(|r| (r.group.clone(), r.index)).collect();
    assert_eq!(groups, [("kv".to_string(), 0), ("web".to_string(), 0), ("web".to_string(), 1)]);
    for record in &instances {
        assert!(!record.dirty, "{} is still dirty after a successful deploy", record.label());
        let pids = d.assert_running(record);
        let expected = if record.group == "kv" { "kv-server/kvd" } else { "web/web" };
        assert_eq!(pids.keys().collect::<Vec<_>>(), [expected], "{}", record.label());
    }
    assert_eq!(ip_of(&instances[0]), d.ip(0, 10), "kv has its static IP");

    // What the operator sees: `instances --ps` lists each instance running with its process,
    // the same process the agent reports.
    let listed: serde_json::Value =
        serde_json::from_str(&d.ok(&["-d", "demo", "instances", "--ps", "--json"])).unwrap();
    let listed = listed.as_array().expect("a list of instances");
    assert_eq!(listed.len(), 3, "{listed:?}");
    for record in &instances {
        let shown = listed
            .iter()
            .find(|i| i["id"] == record.uuid.as_str())
            .unwrap_or_else(|| panic!("{} not listed", record.label()));
        assert_eq!(shown["process_state"], "running", "{shown}");
        assert_eq!(shown["vm_cid"], record.vm.as_ref().unwrap().cid.as_str(), "{shown}");
        let processes = shown["processes"].as_array().unwrap();
        assert_eq!(processes.len(), 1, "{shown}");
        assert_eq!(processes[0]["state"], "running", "{shown}");
        let pids = d.assert_running(record);
        let key = format!("{}/{}", processes[0]["job"].as_str().unwrap(), processes[0]["name"].as_str().unwrap());
        assert_eq!(processes[0]["pid"].as_u64(), pids.get(&key).map(|p| u64::from(*p)), "{shown}");
    }

    // Each web instance increments the one counter kvd keeps: the answers go 1, 2, 3, 4
    // whichever instance is asked.
    let webs = web_ips(&d, "demo");
    assert_ne!(webs[0], webs[1]);
    let counts: Vec<String> = (0..4).map(|i| get_ok(&webs[i % 2], 8080, "/count")).collect();
    assert_eq!(counts, ["1", "2", "3", "4"]);
    for ip in &webs {
        assert_eq!(get_ok(ip, 8080, "/"), "Hello from rosh");
    }
    // The compilation VMs are gone; every VM is an instance's.
    d.assert_no_orphans(&["demo"], "after the first deploy");

    // The smoke-test errand: a VM is made for it, its bin/run checks both web instances through
    // the http link, the output is shown, and the VM is deleted again.
    let vms_before = d.vm_dirs();
    let out = d.rosh(&["-d", "demo", "run-errand", "smoke-tests"]);
    let shown = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "run-errand failed:\n{shown}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(shown.contains("job smoke-test: exit code 0") && shown.contains("2 of 2 web instances passed"), "{shown}");
    assert_eq!(d.vm_dirs(), vms_before, "the errand's VM is deleted afterwards");
    d.assert_no_orphans(&["demo"], "after run-errand");
    let not_errand = d.rosh(&["-d", "demo", "run-errand", "web"]);
    assert!(!not_errand.status.success());
    assert!(String::from_utf8_lossy(&not_errand.stderr).contains("not an errand"), "{not_errand:?}");

    // A failing errand's exit code is the command's: with web/0 stopped the smoke test fails.
    d.ok(&["-d", "demo", "stop", "web/0"]);
    let failed = d.rosh(&["-d", "demo", "run-errand", "smoke-tests"]);
    assert!(!failed.status.success(), "{}", String::from_utf8_lossy(&failed.stdout));
    assert!(String::from_utf8_lossy(&failed.stdout).contains("job smoke-test: exit code"), "{failed:?}");
    assert_eq!(d.vm_dirs(), vms_before, "a failed errand's VM is deleted too");
}

#[test]
fn deploying_the_same_manifest_again_touches_no_vm_and_compiles_nothing() {
    let d = Director::new(152);
    let manifest = quick_demo(&d);
    d.deploy("demo", &manifest, "demo.yml", &[]).expect_ok();
    let cids = vm_cids(&d, "demo");
    let agents = d.live_agents();
    let pids = process_pids(&d, "demo");
    let webs = web_ips(&d, "demo");
    assert_eq!(get_ok(&webs[0], 8080, "/count"), "1");
    // The web job's post-deploy script ran once on each web instance after the first deploy.
    let post_deploy_runs = |d: &Director| -> Vec<String> {
        d.group("demo", "web")
            .iter()
            .map(|r| {
                let file = d.vms_dir().join(&r.vm.as_ref().unwrap().cid).join("data/web/post-deploy-runs");
                fs::read_to_string(file).unwrap_or_default().trim().to_string()
            })
            .collect()
    };
    assert_eq!(post_deploy_runs(&d), ["1", "1"]);

    let again = d.deploy("demo", &manifest, "demo.yml", &[]);
    assert_eq!(again.expect_ok(), summary(0, 0, 0, 3, 0, 4));
    assert_eq!(post_deploy_runs(&d), ["1", "1"], "an unchanged deploy runs no post-deploy");
    assert!(!again.stdout.contains("\"stage\""), "an unchanged deploy has no stage to run:\n{}", again.stdout);
    // And the operator reads it in the summary line.
    let path = d.path("demo.yml");
    let text = d.ok(&["-d", "demo", "deploy", path.to_str().unwrap()]);
    assert!(
        text.contains("0 created, 0 updated, 0 recreated, 0 deleted, 3 unchanged; 0 packages compiled, 4 from cache"),
        "{text}"
    );

    assert_eq!(vm_cids(&d, "demo"), cids, "no VM was replaced");
    assert_eq!(d.live_agents(), agents, "no agent was restarted");
    assert_eq!(process_pids(&d, "demo"), pids, "no job process was restarted");
    assert_eq!(get_ok(&webs[1], 8080, "/count"), "2", "kvd kept its counter");
    d.assert_no_orphans(&["demo"], "after unchanged deploys");
}

#[test]
fn changing_a_property_updates_only_the_group_whose_job_uses_it() {
    let d = Director::new(153);
    let mut manifest = quick_demo(&d);
    d.deploy("demo", &manifest, "demo.yml", &[]).expect_ok();
    let cids = vm_cids(&d, "demo");
    let agents = d.live_agents();
    let before = process_pids(&d, "demo");
    let webs = web_ips(&d, "demo");
    assert_eq!(get_ok(&webs[0], 8080, "/count"), "1");

    manifest.greeting("Hello from a changed property");
    let deployed = d.deploy("demo", &manifest, "demo-greeting.yml", &[]);
    assert_eq!(deployed.expect_ok(), summary(0, 2, 0, 1, 0, 4));

    // Same VMs (updated in place, not recreated) and agents; kvd untouched, web restarted.
    assert_eq!(vm_cids(&d, "demo"), cids);
    assert_eq!(d.live_agents(), agents);
    let after = process_pids(&d, "demo");
    for (label, pids) in &before {
        if label.starts_with("kv/") {
            assert_eq!(&after[label], pids, "kv's processes were restarted");
        } else {
            assert_ne!(after[label]["web/web"], pids["web/web"], "{label}'s web process was not restarted");
        }
    }
    for ip in &webs {
        assert_eq!(get_ok(ip, 8080, "/"), "Hello from a changed property");
    }
    assert_eq!(get_ok(&webs[1], 8080, "/count"), "2", "kvd kept its counter");
    d.assert_no_orphans(&["demo"], "after the property change");
}

/// Appends a line to a file of a release source copy.
fn append(path: &std::path::Path, line: &str) {
    let mut text = fs::read_to_string(path).unwrap();
    text.push_str(line);
    fs::write(path, text).unwrap();
}

/// The agent's version of package `name` on the instance.
fn package_on(d: &Director, record: &rosh::state::InstanceRecord, name: &str) -> String {
    let state = d.agent_state(record);
    let package =
        state.packages.iter().find(|p| p.name == name).unwrap_or_else(|| panic!("{name} not on {}", record.label()));
    format!("{}@{}", package.version, package.sha256)
}

#[test]
fn changing_a_package_source_recompiles_it_and_its_dependents_once_and_other_deployments_reuse_the_cache() {
    let d = Director::new(154);
    let manifest = quick_demo(&d);
    d.deploy("demo", &manifest, "demo.yml", &[]).expect_ok();
    let kv = d.group("demo", "kv").remove(0);
    let kvd_before = package_on(&d, &kv, "kvd");
    let kvd_pid = d.assert_running(&kv)["kv-server/kvd"];
    let webs = web_ips(&d, "demo");
    assert_eq!(get_ok(&webs[0], 8080, "/count"), "1");

    // kvd's C source changes: a new kv version, which `version: latest` picks. (The change
    // reaches the binary: instances run compiled blobs by digest, so a comment alone, compiled
    // to the same bytes, recompiles kvd but restarts nothing.)
    append(
        &d.path("src-kv").join("src/kvd/kvd.c"),
        "\n/* changed by tests/deploy_e2e.rs */\nconst char kvd_e2e_marker[] = \"deploy_e2e\";\n",
    );
    let created = d.upload_release(&d.path("src-kv"));
    assert!(created.contains("kv/0+dev.2"), "{created}");
    let deployed = d.deploy("demo", &manifest, "demo.yml", &[]);
    assert_eq!(deployed.expect_ok(), summary(0, 1, 0, 2, 1, 3), "only kvd compiles, only kv updates");
    let kv = d.group("demo", "kv").remove(0);
    assert_ne!(package_on(&d, &kv, "kvd"), kvd_before, "kv runs the new kvd");
    assert_ne!(d.assert_running(&kv)["kv-server/kvd"], kvd_pid, "kvd was restarted");
    assert_eq!(get_ok(&webs[1], 8080, "/count"), "2", "the new kvd reads the persistent disk's data");

    // python3-shim changes: it and both packages depending on it (webapp, smoke-tests) compile.
    append(
        &d.path("src-web").join("packages/python3-shim/packaging"),
        "echo '# changed by tests/deploy_e2e.rs' >> \"${BOSH_INSTALL_TARGET}/bin/run-python\"\n",
    );
    d.upload_release(&d.path("src-web"));
    let deployed = d.deploy("demo", &manifest, "demo.yml", &[]);
    assert_eq!(deployed.expect_ok(), summary(0, 2, 0, 1, 3, 1), "python3-shim and its two dependents compile");
    let compiled: Vec<String> = d.state().compiled_packages().unwrap().into_iter().map(|p| p.key.name).collect();
    let count = |name: &str| compiled.iter().filter(|n| *n == name).count();
    assert_eq!((count("kvd"), count("python3-shim"), count("webapp"), count("smoke-tests")), (2, 2, 2, 2));

    // Nothing changes again: compiled once.
    assert_eq!(d.deploy("demo", &manifest, "demo.yml", &[]).expect_ok(), summary(0, 0, 0, 3, 0, 4));

    // Another deployment of the same releases on this director compiles nothing.
    let mut other = manifest.clone();
    other.set("name", "demo2");
    other.group("kv")["networks"][0]["static_ips"] = yaml(&format!("[{}]", d.ip(0, 11)));
    let deployed = d.deploy("demo2", &other, "demo2.yml", &[]);
    assert_eq!(deployed.expect_ok(), summary(3, 0, 0, 0, 0, 4), "demo2 reuses every compiled package");
    let webs2 = web_ips(&d, "demo2");
    assert!(webs2.iter().all(|ip| !webs.contains(ip)), "demo2 has addresses of its own: {webs2:?} {webs:?}");
    for record in d.instances("demo2") {
        d.assert_running(&record);
    }
    assert_eq!(get_ok(&webs2[0], 8080, "/count"), "1", "demo2 counts in its own kvd");
    assert_eq!(get_ok(&webs[0], 8080, "/count"), "3");
    d.assert_no_orphans(&["demo", "demo2"], "after two deployments");
}

#[test]
fn scaling_web_2_3_1_keeps_indexes_and_deletes_the_removed_vms() {
    let d = Director::new(155);
    let manifest = quick_demo(&d);
    let scale = repo().join("manifests/operations/scale-web.yml");
    let scale = scale.to_str().unwrap();
    let deploy_with =
        |n: u64| d.deploy("demo", &manifest, "demo.yml", &["-o", scale, "-v", &format!("web_instances={n}")]);

    assert_eq!(deploy_with(2).expect_ok(), summary(3, 0, 0, 0, 4, 0));
    let two = d.group("demo", "web");
    assert_eq!(two.iter().map(|r| r.index).collect::<Vec<_>>(), [0, 1]);

    assert_eq!(deploy_with(3).expect_ok(), summary(1, 0, 0, 3, 0, 4));
    let three = d.group("demo", "web");
    assert_eq!(three.iter().map(|r| r.index).collect::<Vec<_>>(), [0, 1, 2]);
    for (old, new) in two.iter().zip(&three) {
        assert_eq!((&old.uuid, &old.vm), (&new.uuid, &new.vm), "web/{} kept its identity and VM", old.index);
    }
    let mut counts = BTreeSet::new();
    for record in &three {
        d.assert_running(record);
        counts.insert(get_ok(&ip_of(record), 8080, "/count"));
    }
    assert_eq!(counts.len(), 3, "three instances, one counter: {counts:?}");

    // Down to 1: web/0 stays; web/1 and web/2 go, with their VMs and processes.
    let gone: Vec<(String, String, u32)> = three[1..]
        .iter()
        .map(|r| {
            let cid = r.vm.as_ref().unwrap().cid.clone();
            let pid = d.agent_pid(&cid).expect("an agent pid");
            (ip_of(r), cid, pid)
        })
        .collect();
    assert_eq!(deploy_with(1).expect_ok(), summary(0, 0, 2, 2, 0, 4));
    let one = d.group("demo", "web");
    assert_eq!(one.len(), 1);
    assert_eq!((one[0].index, &one[0].uuid, &one[0].vm), (0, &three[0].uuid, &three[0].vm));
    d.assert_running(&one[0]);
    let vm_dirs = d.vm_dirs();
    for (ip, cid, pid) in &gone {
        assert!(!vm_dirs.contains(cid), "VM {cid} of a removed instance still has its directory");
        assert!(!alive(*pid), "the agent of removed VM {cid} (pid {pid}) still runs");
        assert!(http_get(ip, 8080, "/").is_err(), "{ip} still answers");
    }
    let in_use = d.state().ips_in_use().unwrap();
    assert!(gone.iter().all(|(ip, _, _)| !in_use.contains(ip)), "removed instances' IPs are released: {in_use:?}");
    d.assert_no_orphans(&["demo"], "after scaling down");
}

#[test]
fn a_failing_canary_stops_its_group_and_leaves_the_other_instances_and_later_groups_untouched() {
    let d = Director::new(156);
    // The demo with a later group, `late` (one more web server), instead of the errand (whose
    // `http` link would then have two providers).
    let mut manifest = quick_demo(&d);
    manifest.remove_group("smoke-tests");
    let mut late = manifest.group("web").clone();
    late["name"] = "late".into();
    late["instances"] = 1.into();
    late["azs"] = yaml("[z1]");
    late["jobs"][0]["properties"]["web"]["greeting"] = "Hello from late".into();
    manifest.0["instance_groups"].as_sequence_mut().unwrap().push(late);
    // A canary is watched for canary_watch_time, the others for update_watch_time.
    manifest.group("web")["update"]["canary_watch_time"] = "500-2000".into();
    manifest.group("web")["update"]["update_watch_time"] = "500-30000".into();
    assert_eq!(d.deploy("demo", &manifest, "demo.yml", &[]).expect_ok(), summary(4, 0, 0, 0, 3, 0));
    let cids = vm_cids(&d, "demo");
    let before = process_pids(&d, "demo");
    let webs = d.group("demo", "web");
    let late_ip = ip_of(&d.group("demo", "late")[0]);

    // web.port 70000 renders fine and passes pre-start's check, but the server cannot bind it:
    // the process exits, again and again. `late` changes too, so it would be updated if reached.
    let mut broken = manifest.clone();
    broken.job_properties("web")["web"]["port"] = 70000.into();
    broken.job_properties("late")["web"]["greeting"] = "late, changed".into();
    let started = Instant::now();
    let deployed = d.deploy("demo", &broken, "broken.yml", &[]);
    assert!(!deployed.ok, "a deploy whose canary fails must fail:\n{}", deployed.stdout);
    assert_eq!(deployed.code, Some(1));
    assert!(deployed.summary.is_none(), "no success summary for a failed deploy");
    let canary = &webs[0];
    assert!(
        deployed.stderr.contains(&format!("canary {} failed", canary.label()))
            && deployed.stderr.contains("instance group web stopped"),
        "the error names the canary and its group:\n{}",
        deployed.stderr
    );
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "the canary's failure is found within canary_watch_time (2 s), not update_watch_time (30 s): {:?}",
        started.elapsed()
    );

    // No VM was replaced; only the canary's processes were touched.
    assert_eq!(vm_cids(&d, "demo"), cids);
    let other = &webs[1];
    for (label, pids) in &before {
        if label == &canary.label() {
            continue;
        }
        let record = d.instances("demo").into_iter().find(|r| &r.label() == label).unwrap();
        assert_eq!(&d.assert_running(&record), pids, "{label} was touched by the failed deploy");
    }
    assert_eq!(
        get_ok(&ip_of(other), 8080, "/"),
        "Hello from rosh",
        "the other web instance still runs the old version"
    );
    assert_eq!(get_ok(&late_ip, 8080, "/"), "Hello from late", "the later group was not updated");
    assert_eq!(get_ok(&ip_of(other), 8080, "/count"), "1");
    d.assert_no_orphans(&["demo"], "after the failed canary");
}

/// Asserts a refused deploy: exit 1, every `needles` in the error, and nothing created.
fn assert_refused_before_any_vm(d: &Director, manifest: &Manifest, file: &str, needles: &[&str]) {
    let deployed = d.deploy("demo", manifest, file, &[]);
    assert_eq!(deployed.code, Some(1), "{file} must be refused:\n{}\n{}", deployed.stderr, deployed.stdout);
    for needle in needles {
        assert!(deployed.stderr.contains(needle), "{file}: the error should name {needle:?}:\n{}", deployed.stderr);
    }
    assert!(d.vm_dirs().is_empty(), "{file}: VMs were created: {:?}", d.vm_dirs());
    assert!(d.live_agents().is_empty(), "{file}: agents run: {:?}", d.live_agents());
    assert!(d.instances("demo").is_empty(), "{file}: instances were recorded");
    assert!(d.state().compiled_packages().unwrap().is_empty(), "{file}: packages were compiled");
}

#[test]
fn a_manifest_error_names_the_yaml_path_and_creates_nothing() {
    let d = Director::new(157);
    let mut unknown_release = quick_demo(&d);
    unknown_release.group("web")["jobs"][0]["release"] = "nope".into();
    assert_refused_before_any_vm(
        &d,
        &unknown_release,
        "unknown-release.yml",
        &["instance_groups[1].jobs[0]", "nope", "releases"],
    );

    let mut unknown_vm_type = quick_demo(&d);
    unknown_vm_type.group("web")["vm_type"] = "huge".into();
    assert_refused_before_any_vm(
        &d,
        &unknown_vm_type,
        "unknown-vm-type.yml",
        &["instance_groups[1]", "vm_type", "huge"],
    );

    let mut unknown_network = quick_demo(&d);
    unknown_network.group("kv")["networks"][0]["name"] = "elsewhere".into();
    assert_refused_before_any_vm(&d, &unknown_network, "unknown-network.yml", &["instance_groups[0]", "elsewhere"]);
}

/// The web release tarball with a dependency cycle written into its `release.MF` (python3-shim
/// depending on webapp, which depends on python3-shim), as version `0+cycle.1`: what a release
/// built by another tool could hold.
fn release_with_cycle(d: &Director) -> std::path::PathBuf {
    let tarball = d.path("src-web.tgz");
    d.ok(&[
        "create-release",
        d.copy_release("web").to_str().unwrap(),
        "--force",
        "--tarball",
        tarball.to_str().unwrap(),
    ]);
    let unpacked = d.path("cycle");
    fs::create_dir_all(&unpacked).unwrap();
    let untar = Command::new("tar").arg("-xzf").arg(&tarball).arg("-C").arg(&unpacked).status().unwrap();
    assert!(untar.success());
    let manifest_path = unpacked.join("release.MF");
    let mut doc: serde_yaml_ng::Value = serde_yaml_ng::from_str(&fs::read_to_string(&manifest_path).unwrap()).unwrap();
    doc["version"] = "0+cycle.1".into();
    for package in doc["packages"].as_sequence_mut().unwrap() {
        if package["name"] == "python3-shim" {
            package["dependencies"] = yaml("[webapp]");
        }
    }
    fs::write(&manifest_path, serde_yaml_ng::to_string(&doc).unwrap()).unwrap();
    let out = d.path("web-cycle.tgz");
    let tar = Command::new("tar").arg("-czf").arg(&out).arg("-C").arg(&unpacked).arg(".").status().unwrap();
    assert!(tar.success());
    out
}

#[test]
fn a_required_link_without_provider_and_a_package_cycle_are_refused_before_any_vm_exists() {
    let d = Director::new(158);
    // web consumes `kv` (required); without the kv group nothing provides it.
    let mut no_provider = quick_demo(&d);
    no_provider.remove_group("kv");
    assert_refused_before_any_vm(
        &d,
        &no_provider,
        "no-kv.yml",
        &["instance_groups[0] (web).jobs[0] (web)", "kv", "no provider"],
    );

    // A cycle in a release source is refused by create-release, naming it.
    let source = d.copy_release("web");
    let spec = source.join("packages/python3-shim/spec");
    fs::write(&spec, fs::read_to_string(&spec).unwrap().replace("dependencies: []", "dependencies: [webapp]")).unwrap();
    let out = d.rosh(&[
        "create-release",
        source.to_str().unwrap(),
        "--force",
        "--tarball",
        d.path("never.tgz").to_str().unwrap(),
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("cycle") && stderr.contains("python3-shim -> webapp -> python3-shim"), "{stderr}");
    assert!(!d.path("never.tgz").exists());

    // A release tarball holding a cycle, on a director that has never seen these packages, is
    // refused by deploy before any VM or compilation.
    let cyclic = Director::bare(159);
    cyclic.upload_release(&cyclic.copy_release("kv"));
    let tarball = release_with_cycle(&cyclic);
    cyclic.ok(&["upload-release", tarball.to_str().unwrap()]);
    let mut manifest = quick_demo(&cyclic);
    manifest.0["releases"][1]["version"] = "0+cycle.1".into();
    assert_refused_before_any_vm(
        &cyclic,
        &manifest,
        "cycle.yml",
        &["instance_groups[1] (web)", "dependency cycle", "python3-shim", "webapp"],
    );
}

#[test]
fn a_deploy_killed_while_compiling_leaves_no_compilation_vm_behind() {
    let d = Director::new(161);
    let manifest = quick_demo(&d);
    // Two compilation workers; the kill comes when three of the four packages are compiled
    // (kvd, the C one, is typically still compiling): both compilation VMs are alive then, and
    // the next run has only one package left to compile.
    let (mut deploy, events) = d.spawn_deploy_events("demo", &manifest, "demo.yml");
    let mut compiled = 0;
    for line in std::io::BufRead::lines(std::io::BufReader::new(events)) {
        let event: serde_json::Value = serde_json::from_str(&line.unwrap()).unwrap_or_default();
        if event["event"] == "finished" && event["result"] == "compiled" {
            compiled += 1;
            if compiled == 3 {
                break;
            }
        }
    }
    assert_eq!(compiled, 3, "the deploy ended before its third package was compiled");
    assert!(deploy.kill(), "the deploy was still running");
    let left = d.live_agents();
    assert!(!left.is_empty(), "the killed run's compilation VMs were running");

    let deployed = d.deploy("demo", &manifest, "demo.yml", &[]);
    let report = deployed.expect_ok();
    assert_eq!((report.created, report.packages_compiled + report.packages_cached), (3, 4), "{report:?}");
    d.assert_no_orphans(
        &["demo"],
        &format!("after a deploy killed while compiling (its compilation VMs were {left:?})"),
    );
}

/// One step of the crash test: the manifest it deploys.
#[derive(Debug, Clone, PartialEq)]
struct Variant {
    greeting: String,
    web: u64,
}

impl Variant {
    fn manifest(&self, base: &Manifest) -> Manifest {
        let mut m = base.clone();
        m.greeting(&self.greeting).instances("web", self.web);
        m
    }
}

#[test]
fn crash_safety_deploys_killed_at_random_points_converge_on_the_next_deploy_without_orphans() {
    let seed = std::env::var("ROSH_E2E_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(|| {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64
    });
    println!("crash test seed: {seed} (ROSH_E2E_SEED={seed} repeats it)");
    let mut rng = Rng::new(seed);
    let d = Director::new(160);
    // No errand; web updates two at a time after its canary, so kills also land in the middle
    // of a parallel batch.
    let mut base = quick_demo(&d);
    base.remove_group("smoke-tests");
    base.group("web")["update"]["max_in_flight"] = 2.into();
    let first = Variant { greeting: "Hello from rosh".into(), web: 2 };
    d.deploy("demo", &first.manifest(&base), "first.yml", &[]).expect_ok();
    // Each run changes the greeting and the number of web instances: updates, creations and
    // deletions (the compilation stage has a test of its own).
    let web_counts = [3, 2, 1, 3, 2, 1, 2, 3, 1, 2];
    let mut current = first;
    let mut last_count = 0u64;
    let mut log = Vec::new();

    for (run, web) in web_counts.into_iter().enumerate() {
        let killed = Variant { greeting: format!("Hello from crash run {run}"), web };
        let delay = rng.between(0.2, 6.0);
        let started = Instant::now();
        let mut deploy = d.spawn_deploy("demo", &killed.manifest(&base), &format!("killed-{run}.yml"));
        // Waiting past the deploy's own end would only waste time.
        while started.elapsed().as_secs_f64() < delay && !deploy.exited() {
            std::thread::sleep(Duration::from_millis(10));
        }
        let interrupted = deploy.kill();
        // Every other run the operator deploys the killed manifest again; otherwise the one
        // that was deployed before (a roll back, which must also repair what the killed run
        // left half done).
        let target = if run % 2 == 1 { current.clone() } else { killed.clone() };
        let what = if interrupted {
            format!("killed after {delay:.2}s")
        } else {
            format!("finished before its kill point {delay:.2}s")
        };
        let context = format!("seed {seed}, run {run}: deploy of {killed:?} {what}, then deployed {target:?}");
        println!("{context}");
        let deployed = d.deploy("demo", &target.manifest(&base), &format!("target-{run}.yml"), &[]);
        assert!(deployed.ok, "{context}: the next deploy failed:\n{}\n{}", deployed.stderr, deployed.stdout);
        log.push(format!("{context}: {:?} in {:.1}s", deployed.summary, started.elapsed().as_secs_f64()));

        // The desired state: the right instances, all running the target's configuration.
        let instances = d.instances("demo");
        let layout: Vec<(String, u64)> = instances.iter().map(|r| (r.group.clone(), r.index)).collect();
        let expected: Vec<(String, u64)> =
            std::iter::once(("kv".to_string(), 0)).chain((0..target.web).map(|i| ("web".to_string(), i))).collect();
        assert_eq!(layout, expected, "{context}");
        for record in &instances {
            assert!(!record.dirty, "{context}: {} is still dirty", record.label());
            d.assert_running(record);
        }
        for record in instances.iter().filter(|r| r.group == "web") {
            assert_eq!(get_ok(&ip_of(record), 8080, "/"), target.greeting, "{context}: {}", record.label());
            let count: u64 = get_ok(&ip_of(record), 8080, "/count").parse().unwrap();
            assert!(count > last_count, "{context}: the counter went from {last_count} to {count}: kv lost its data");
            last_count = count;
        }
        d.assert_no_orphans(&["demo"], &context);
        // Converged means converged: one more deploy has nothing to do.
        let again = d.deploy("demo", &target.manifest(&base), &format!("target-{run}.yml"), &[]);
        assert_eq!(again.expect_ok(), summary(0, 0, 0, 1 + target.web as usize, 0, 3), "{context}: not converged");
        current = target;
    }
    println!("{}", log.join("\n"));
}

#[test]
fn ctrl_c_lets_the_running_instance_finish_starts_nothing_new_and_exits_130() {
    let d = Director::new(162);
    let manifest = quick_demo(&d);
    let (mut deploy, events) = d.spawn_deploy_events("demo", &manifest, "demo.yml");
    let child = deploy.0.as_mut().expect("the deploy runs");
    let mut seen: Vec<serde_json::Value> = Vec::new();
    let mut interrupted = false;
    for line in std::io::BufRead::lines(std::io::BufReader::new(events)) {
        let event: serde_json::Value = serde_json::from_str(&line.unwrap()).unwrap_or_default();
        // Ctrl-C while kv's canary is being created.
        if !interrupted && event["event"] == "step" && event["task"].as_str().is_some_and(|t| t.starts_with("kv/")) {
            unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
            interrupted = true;
        }
        seen.push(event);
    }
    let status = child.wait().unwrap();
    assert!(interrupted, "the deploy never reached kv: {seen:?}");
    assert_eq!(status.code(), Some(130), "{seen:?}");
    // kv, already being converged, finished; web was never started.
    assert!(
        seen.iter().any(|e| e["event"] == "finished"
            && e["task"].as_str().is_some_and(|t| t.starts_with("kv/"))
            && e["ok"] == true),
        "{seen:?}"
    );
    assert!(
        !seen.iter().any(|e| e["task"].as_str().is_some_and(|t| t.starts_with("web/"))),
        "web was started: {seen:?}"
    );
    let kv = d.group("demo", "kv");
    assert_eq!(kv.len(), 1);
    assert!(!kv[0].dirty, "kv finished converging before the deploy stopped");
    d.assert_running(&kv[0]);
    assert!(d.group("demo", "web").iter().all(|r| r.vm.is_none()), "no web VM was made");

    // The next deploy picks up where it stopped.
    let report = d.deploy("demo", &manifest, "demo.yml", &[]).expect_ok();
    assert_eq!((report.created, report.unchanged, report.packages_compiled), (2, 1, 0), "{report:?}");
    d.assert_no_orphans(&["demo"], "after an interrupted deploy and the next one");
}

#[test]
fn an_exported_compiled_release_deploys_elsewhere_without_compiling() {
    // One director compiles while deploying, then exports both releases compiled.
    let d = Director::new(163);
    d.deploy("demo", &quick_demo(&d), "demo.yml", &[]).expect_ok();
    let stemcells: serde_json::Value = serde_json::from_str(&d.ok(&["stemcells", "--json"])).unwrap();
    let os = stemcells[0]["operating_system"].as_str().unwrap().to_string();
    let releases: serde_json::Value = serde_json::from_str(&d.ok(&["releases", "--json"])).unwrap();
    let mut tarballs = Vec::new();
    for r in releases.as_array().unwrap() {
        let name = r["name"].as_str().unwrap();
        let version = r["version"].as_str().unwrap();
        let tarball = d.path(&format!("{name}-compiled.tgz"));
        let out = d.ok(&[
            "export-release",
            &format!("{name}/{version}"),
            &format!("{os}/1.0"),
            "--tarball",
            tarball.to_str().unwrap(),
            "--json",
        ]);
        let out: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(out["compiled"], 0, "everything was in the cache: {out}");
        tarballs.push(tarball);
    }

    // Another director, with no source at all: the compiled releases deploy with nothing to
    // compile, and the platform works.
    let other = Director::bare(164);
    for t in &tarballs {
        other.ok(&["upload-release", t.to_str().unwrap()]);
    }
    let inspected = other.ok(&["inspect-release", &format!("kv/{}", releases[0]["version"].as_str().unwrap())]);
    assert!(inspected.contains("(compiled only)"), "{inspected}");
    let report = other.deploy("demo", &quick_demo(&other), "demo.yml", &[]).expect_ok();
    assert_eq!((report.created, report.packages_compiled, report.packages_cached), (3, 0, 4), "{report:?}");
    for record in other.instances("demo") {
        other.assert_running(&record);
    }
    let smoke = other.rosh(&["-d", "demo", "run-errand", "smoke-tests"]);
    assert!(smoke.status.success(), "{}", String::from_utf8_lossy(&smoke.stdout));

    // On a stemcell they were not compiled for, packages without source are refused before any VM.
    other.upload_stemcell_version("2.0");
    let vms = other.vm_dirs();
    let mut pinned = quick_demo(&other);
    pinned.0["stemcells"][0]["version"] = yaml("'2.0'");
    let refused = other.deploy(
        "demo2",
        &{
            let mut m = pinned;
            m.set("name", "demo2");
            for g in m.0["instance_groups"].as_sequence_mut().unwrap() {
                g["networks"] = yaml("[{name: default}]");
            }
            m
        },
        "demo2.yml",
        &[],
    );
    assert!(!refused.ok);
    assert!(refused.stderr.contains("compiled") && refused.stderr.contains("2.0"), "{}", refused.stderr);
    assert_eq!(other.vm_dirs(), vms, "no VM was made for the refused deploy");
}
