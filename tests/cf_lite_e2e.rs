//! The CF + Diego sample end to end: the real `rosh` binary deploys `manifests/cf-lite.yml`
//! (releases `cf-lite` and `diego-lite`, two teams' releases) on the local CPI, as the README's
//! main command does, and the test looks at what an operator would see.
//!
//! - Both releases build with `create-release` and the manifest validates against the local
//!   cloud config, with and without the ops files; the release programs are valid Python.
//! - Each release declares the other's version line (`config/requires.yml`): `compat check`
//!   passes the pair as built and refuses a diego-lite that requires a newer cf-lite.
//! - The first deploy creates every instance group in cf-deployment's order, every process
//!   runs, and the API answers over HTTPS with the generated certificate.
//! - `run-errand smoke-tests` pushes an app with 2 instances through the API and both
//!   instances answer through every router.
//! - Deploying the same manifest again touches nothing and compiles nothing.
//! - A key written into the database survives `deploy --recreate` (every VM replaced; the
//!   database's persistent disk is reattached), and the platform passes its smoke test again.
//! - Upgrading diego-lite: `plan` names only diego-lite's groups (bbs and rep packages), the
//!   deploy updates the cells one at a time after a canary, and the smoke test passes again.
//! - Disaster drill: a cell's VM is killed and its directory removed; `cck --report` names it,
//!   `cck --auto` recreates it, the smoke test passes, the database still holds its data.
//!
//! Figures (first deploy with compilation, no-op deploy, smoke test, recreate) are printed; run
//! with `--nocapture` to see them. Each test has its own state dir and loopback range
//! (`127.190` to `127.192.0.0/16`).

mod common;
mod deploy_support;

use std::fs;
use std::process::Command;
use std::time::{Duration, Instant};

use deploy_support::{Director, Summary, http_request, ip_of, repo};

const DEPLOYMENT: &str = "cf-lite";

/// Instances the deploy creates (the errand's VM is made only by run-errand): nats, database,
/// diego-api, api, 2 routers and 2 cells.
const INSTANCES: usize = 8;

/// Packages of both releases: cf-python, cflib, nats, database, cloud_controller, router,
/// smoke-tests (cf-lite), diego-python, bbs, rep (diego-lite).
const PACKAGES: usize = 10;

fn summary(created: usize, recreated: usize, unchanged: usize, compiled: usize, cached: usize) -> Summary {
    Summary {
        created,
        updated: 0,
        recreated,
        deleted: 0,
        unchanged,
        packages_compiled: compiled,
        packages_cached: cached,
    }
}

/// `run-errand smoke-tests`, which must pass; answers its output and how long it took.
fn smoke_test(d: &Director, context: &str) -> (String, Duration) {
    let started = Instant::now();
    let out = d.rosh(&["-d", DEPLOYMENT, "run-errand", "smoke-tests"]);
    let elapsed = started.elapsed();
    let shown = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{context}: smoke tests failed:\n{shown}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(shown.contains("job smoke-tests: exit code 0"), "{context}:\n{shown}");
    assert!(shown.contains("certificate verified against the CA"), "{context}: the API must be HTTPS:\n{shown}");
    // Both instances answered through each of the two routers.
    assert_eq!(shown.matches("ok    all 2 instances answered").count(), 2, "{context}:\n{shown}");
    (shown, elapsed)
}

/// The generated value of variable `name` of the deployment, from the director's state.
fn variable(d: &Director, name: &str) -> String {
    let values = d.state().variables(DEPLOYMENT).expect("read variables");
    values.get(name).and_then(|v| v.as_str()).unwrap_or_else(|| panic!("no generated {name}")).to_string()
}

#[test]
fn both_releases_build_and_the_manifest_validates_with_its_ops_files() {
    let d = Director::bare(191);
    for name in ["cf-lite", "diego-lite"] {
        let source = d.copy_release(name);
        let first = d.ok(&["create-release", source.to_str().unwrap(), "--json"]);
        let again = d.ok(&["create-release", source.to_str().unwrap(), "--json"]);
        let first: serde_json::Value = serde_json::from_str(&first).unwrap();
        let again: serde_json::Value = serde_json::from_str(&again).unwrap();
        assert_eq!(first["version"], "0+dev.1", "{name}");
        assert_eq!(again["new_version"], false, "{name}: an unchanged tree makes no new version");
        for kind in ["jobs", "packages"] {
            let fingerprints = |v: &serde_json::Value| -> Vec<String> {
                v[kind].as_array().unwrap().iter().map(|a| a["fingerprint"].as_str().unwrap().to_string()).collect()
            };
            assert_eq!(fingerprints(&first), fingerprints(&again), "{name}: the same {kind}");
        }
        assert!(source.join("config/requires.yml").is_file(), "{name} declares the versions it needs of the other");
        // Every program is valid Python 3 (the stemcell's python compiles it).
        for entry in fs::read_dir(source.join("src")).unwrap() {
            for file in fs::read_dir(entry.unwrap().path()).unwrap() {
                let file = file.unwrap().path();
                let out = Command::new("python3")
                    .args(["-c", "import ast, sys; ast.parse(open(sys.argv[1]).read(), sys.argv[1])"])
                    .arg(&file)
                    .output()
                    .expect("run python3");
                assert!(out.status.success(), "{}: {}", file.display(), String::from_utf8_lossy(&out.stderr));
            }
        }
    }
    let manifest = repo().join("manifests/cf-lite.yml");
    let cloud = repo().join("manifests/cloud-config-local.yml");
    let ops = |name: &str| repo().join("manifests/operations").join(name).to_str().unwrap().to_string();
    d.ok(&["validate", manifest.to_str().unwrap(), "--cloud-config", cloud.to_str().unwrap()]);
    let store = d.path("vars.yml");
    let one_az = ops("scale-to-one-az.yml");
    let cells = ops("scale-cells.yml");
    let out = d.ok(&[
        "int",
        manifest.to_str().unwrap(),
        "-o",
        &one_az,
        "-o",
        &cells,
        "-v",
        "cell_instances=3",
        "--vars-store",
        store.to_str().unwrap(),
        "--json",
    ]);
    let doc: serde_json::Value = serde_json::from_str(&out).unwrap();
    let groups = doc["instance_groups"].as_array().unwrap();
    let names: Vec<&str> = groups.iter().map(|g| g["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["nats", "database", "diego-api", "api", "router", "diego-cell", "smoke-tests"]);
    let cell = &groups[5];
    assert_eq!(cell["instances"], 3);
    assert_eq!(cell["update"]["canaries"], 1);
    assert_eq!(cell["update"]["max_in_flight"], 1);
    for group in groups {
        assert_eq!(group["azs"], serde_json::json!(["z1"]), "{}", group["name"]);
    }
    // The API's certificate is signed by the generated CA and names the API's static IP.
    let tls = &doc["instance_groups"][3]["jobs"][0]["properties"]["cc"]["tls"];
    assert!(tls["certificate"].as_str().unwrap().contains("BEGIN CERTIFICATE"));
    assert!(tls["private_key"].as_str().unwrap().contains("PRIVATE KEY"));
    assert_ne!(tls["ca"], tls["certificate"], "the certificate is not self-signed");
    let stored = fs::read_to_string(&store).unwrap();
    for name in ["nats_password", "database_password", "cc_admin_password", "cf_lite_ca", "cc_tls"] {
        assert!(stored.contains(&format!("{name}:")), "{name} is generated into the vars store");
    }
}

#[test]
fn each_release_names_the_others_line_and_compat_check_refuses_a_mismatch() {
    let d = Director::with_releases(192, &["cf-lite", "diego-lite"]);
    let manifest = d.write("cf-lite.yml", &d.cf_lite().text());
    let manifest = manifest.to_str().unwrap();
    let ok = d.rosh(&["compat", "check", manifest]);
    let shown = String::from_utf8_lossy(&ok.stdout).into_owned() + &String::from_utf8_lossy(&ok.stderr);
    assert!(ok.status.success(), "the matching pair passes:\n{shown}");
    assert!(shown.contains("0 error(s)"), "{shown}");

    // diego-lite's team moves to a cf-lite line that does not exist yet: the uploaded pair no
    // longer matches, and the check says which release needs what.
    let source = d.copy_release("diego-lite");
    let requires = source.join("config/requires.yml");
    let text = fs::read_to_string(&requires).unwrap();
    assert!(text.contains("version: \"~> 0\""), "{text}");
    fs::write(&requires, text.replace("version: \"~> 0\"", "version: \">= 1\"")).unwrap();
    d.upload_release(&source);
    let refused = d.rosh(&["compat", "check", manifest]);
    let shown = String::from_utf8_lossy(&refused.stdout).into_owned() + &String::from_utf8_lossy(&refused.stderr);
    assert_eq!(refused.status.code(), Some(1), "{shown}");
    assert!(shown.contains("diego-lite/0+dev.2 requires release cf-lite >= 1"), "{shown}");
    assert!(shown.contains("cf-lite/0+dev.1"), "{shown}");
    assert!(d.vm_dirs().is_empty(), "a check makes no VM");

    // The deploy (and its plan) run the same gate before anything is touched: no VM, no
    // compilation, no stemcell upload to the CPI, no instance record.
    let plan = d.rosh(&["-d", "cf-lite", "plan", manifest]);
    assert_eq!(plan.status.code(), Some(1), "{}", String::from_utf8_lossy(&plan.stdout));
    assert!(String::from_utf8_lossy(&plan.stderr).contains("requires release cf-lite >= 1"), "{plan:?}");
    let deployed = d.rosh(&["-d", "cf-lite", "deploy", manifest]);
    let err = String::from_utf8_lossy(&deployed.stderr);
    assert_eq!(deployed.status.code(), Some(1), "{err}");
    assert!(err.contains("compatibility check failed") && err.contains("requires release cf-lite >= 1"), "{err}");
    assert!(d.vm_dirs().is_empty(), "a refused deploy makes no VM");
    assert!(d.instances("cf-lite").is_empty(), "a refused deploy records no instance");
    assert!(d.state().compiled_packages().unwrap().is_empty(), "a refused deploy compiles nothing");
}

#[test]
fn cf_lite_deploys_in_one_shot_passes_its_smoke_test_and_keeps_the_database_across_recreation() {
    let setup = Instant::now();
    let d = Director::with_releases(190, &["cf-lite", "diego-lite"]);
    let setup = setup.elapsed();
    let manifest = d.cf_lite();

    // 1. The first deploy: everything compiles and every group comes up in order.
    let started = Instant::now();
    let first = d.deploy(DEPLOYMENT, &manifest, "cf-lite.yml", &[]);
    let first_deploy = started.elapsed();
    assert_eq!(first.expect_ok(), summary(INSTANCES, 0, 0, PACKAGES, 0));
    // The groups' update stages, in the order the deploy ran them.
    let expected = ["nats", "database", "diego-api", "api", "router", "diego-cell"];
    let order: Vec<String> = first
        .stdout
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter_map(|e| Some(e["stage"].as_str()?.strip_prefix("Updating instance group ")?.to_string()))
        .collect();
    assert_eq!(order, expected, "groups update in the manifest's order:\n{}", first.stdout);
    let instances = d.instances(DEPLOYMENT);
    assert_eq!(instances.len(), INSTANCES, "no record for the errand before it runs");
    for record in &instances {
        assert!(!record.dirty, "{} is dirty after a successful deploy", record.label());
        d.assert_running(record);
    }
    let api = d.group(DEPLOYMENT, "api");
    assert_eq!(ip_of(&api[0]), d.ip(0, 21), "the API has its static IP (its certificate names it)");
    d.assert_no_orphans(&[DEPLOYMENT], "after the first deploy");

    // 2. The smoke test: an app with 2 instances answers through both routers.
    let (shown, first_smoke) = smoke_test(&d, "after the first deploy");
    println!("{shown}");

    // 3. The same manifest again: nothing to do.
    let started = Instant::now();
    let again = d.deploy(DEPLOYMENT, &manifest, "cf-lite.yml", &[]);
    let noop_deploy = started.elapsed();
    assert_eq!(again.expect_ok(), summary(0, 0, INSTANCES, 0, PACKAGES));

    // 4. Data in the database survives recreation of its VM (and of every other VM).
    let db = d.group(DEPLOYMENT, "database").remove(0);
    let db_ip = ip_of(&db);
    let password = variable(&d, "database_password");
    let auth = Some(("admin", password.as_str()));
    let (status, _) = http_request(&db_ip, 5524, "PUT", "/v1/keys/drill", auth, b"written before --recreate").unwrap();
    assert_eq!(status, 204, "PUT into the database");
    let (status, _) = http_request(&db_ip, 5524, "GET", "/v1/keys/drill", Some(("admin", "wrong")), b"").unwrap();
    assert_eq!(status, 401, "the database refuses a wrong password");
    let old_vm = db.vm.as_ref().unwrap().cid.clone();

    let started = Instant::now();
    let recreated = d.deploy(DEPLOYMENT, &manifest, "cf-lite.yml", &["--recreate"]);
    let recreate_deploy = started.elapsed();
    assert_eq!(recreated.expect_ok(), summary(0, INSTANCES, 0, 0, PACKAGES));
    let db = d.group(DEPLOYMENT, "database").remove(0);
    assert_ne!(db.vm.as_ref().unwrap().cid, old_vm, "the database got a new VM");
    let db_ip = ip_of(&db);
    let (status, body) = http_request(&db_ip, 5524, "GET", "/v1/keys/drill", auth, b"").unwrap();
    assert_eq!((status, body.as_str()), (200, "written before --recreate"), "the key survived");
    for record in d.instances(DEPLOYMENT).iter().filter(|r| r.group != "smoke-tests") {
        d.assert_running(record);
    }
    let (_, second_smoke) = smoke_test(&d, "after deploy --recreate");
    d.assert_no_orphans(&[DEPLOYMENT], "after the recreate and the smoke tests");

    // 5. Upgrade diego-lite (the Diego team's new rep and bbs): the plan names only the
    // diego-lite groups, with the packages and jobs that changed; the deploy updates the cells
    // one at a time after a canary, and the platform passes its smoke test again.
    let source = d.copy_release("diego-lite");
    for program in ["src/rep/rep.py", "src/bbs/bbs.py"] {
        let path = source.join(program);
        let text = fs::read_to_string(&path).unwrap();
        fs::write(&path, format!("{text}\n# diego-lite upgrade\n")).unwrap();
    }
    d.upload_release(&source);
    let file = d.write("cf-lite-upgrade.yml", &manifest.text());
    let planned = d.ok(&["-d", DEPLOYMENT, "plan", file.to_str().unwrap(), "--json"]);
    let planned: serde_json::Value = serde_json::from_str(&planned).unwrap();
    for p in planned["instances"].as_array().unwrap() {
        let group = p["group"].as_str().unwrap();
        let reasons = p["reasons"].to_string();
        match group {
            "diego-api" => {
                assert_eq!(p["action"], "update", "{p}");
                assert!(reasons.contains("packages_changed") && reasons.contains("bbs"), "{p}");
            }
            "diego-cell" => {
                assert_eq!(p["action"], "update", "{p}");
                assert!(reasons.contains("packages_changed") && reasons.contains("rep"), "{p}");
            }
            _ => assert_eq!(p["action"], "no_op", "only diego-lite's groups change: {p}"),
        }
    }
    let cells = planned["order"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|batch| batch.as_array().unwrap())
        .find(|g| g["name"] == "diego-cell")
        .unwrap()
        .clone();
    assert_eq!(
        (cells["canaries"].as_u64(), cells["max_in_flight"].as_u64(), cells["changing"].as_u64()),
        (Some(1), Some(1), Some(2))
    );
    assert!(planned["made_from"]["releases"].to_string().contains("diego-lite/0+dev.2"), "{}", planned["made_from"]);
    assert_eq!(planned["summary"]["compile"], 2, "bbs and rep compile: {}", planned["compile"]);

    let started = Instant::now();
    let upgraded = d.deploy(DEPLOYMENT, &manifest, "cf-lite-upgrade.yml", &[]);
    let upgrade_deploy = started.elapsed();
    let report = upgraded.expect_ok();
    assert_eq!((report.updated, report.unchanged, report.packages_compiled), (3, INSTANCES - 3, 2), "{report:?}");
    // The cells: the canary finishes before the other one starts.
    let events: Vec<serde_json::Value> = upgraded.stdout.lines().filter_map(|l| serde_json::from_str(l).ok()).collect();
    let cell_tasks: Vec<&serde_json::Value> =
        events.iter().filter(|e| e["task"].as_str().is_some_and(|t| t.starts_with("diego-cell/"))).collect();
    let first_cell = cell_tasks[0]["task"].as_str().unwrap();
    assert!(cell_tasks[0]["step"].as_str().unwrap().contains("canary"), "{:?}", cell_tasks[0]);
    let canary_done = cell_tasks.iter().position(|e| e["event"] == "finished" && e["task"] == first_cell).unwrap();
    let second_starts = cell_tasks.iter().position(|e| e["task"] != first_cell).unwrap();
    assert!(canary_done < second_starts, "the second cell started before the canary finished:\n{}", upgraded.stdout);
    smoke_test(&d, "after the diego-lite upgrade");

    // 6. Disaster drill: a cell's VM dies (its agent and everything on it killed, its directory
    // gone). cck names it, `cck --auto` recreates it, and the platform answers again; the
    // database still holds its data.
    let cell = d.group(DEPLOYMENT, "diego-cell").remove(0);
    let cid = cell.vm.as_ref().unwrap().cid.clone();
    let pid = d.agent_pid(&cid).expect("the cell's agent runs");
    unsafe { libc::kill(pid as i32, libc::SIGKILL) };
    fs::remove_dir_all(d.vms_dir().join(&cid)).unwrap();
    let report = d.rosh(&["-d", DEPLOYMENT, "cck", "--report"]);
    let shown = String::from_utf8_lossy(&report.stdout).into_owned();
    assert_eq!(report.status.code(), Some(1), "{shown}");
    assert!(shown.contains("missing") && shown.contains(&cell.uuid), "{shown}");
    let started = Instant::now();
    d.ok(&["-d", DEPLOYMENT, "cck", "--auto"]);
    let cck_repair = started.elapsed();
    let repaired = d.group(DEPLOYMENT, "diego-cell").into_iter().find(|r| r.uuid == cell.uuid).unwrap();
    assert_ne!(repaired.vm.as_ref().unwrap().cid, cid, "the cell got a new VM");
    d.assert_running(&repaired);
    let clean = d.rosh(&["-d", DEPLOYMENT, "cck", "--report"]);
    assert!(clean.status.success(), "{}", String::from_utf8_lossy(&clean.stdout));
    smoke_test(&d, "after cck --auto");
    let db = d.group(DEPLOYMENT, "database").remove(0);
    let (status, body) = http_request(&ip_of(&db), 5524, "GET", "/v1/keys/drill", auth, b"").unwrap();
    assert_eq!((status, body.as_str()), (200, "written before --recreate"), "the key survived the drill");
    d.assert_no_orphans(&[DEPLOYMENT], "after the disaster drill");

    println!(
        "cf-lite figures: setup (stemcell + 2 releases) {:.1}s; first deploy (compile included) {:.1}s; \
         no-op deploy {:.2}s; smoke test {:.1}s; deploy --recreate {:.1}s; smoke test after it {:.1}s; \
         diego-lite upgrade {:.1}s; cck --auto of a dead cell {:.1}s",
        setup.as_secs_f64(),
        first_deploy.as_secs_f64(),
        noop_deploy.as_secs_f64(),
        first_smoke.as_secs_f64(),
        recreate_deploy.as_secs_f64(),
        second_smoke.as_secs_f64(),
        upgrade_deploy.as_secs_f64(),
        cck_repair.as_secs_f64(),
    );
}
