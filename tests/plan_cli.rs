//! `rosh plan` end to end, against a deployed sample (releases `kv` and `web`,
//! `manifests/demo.yml`) on the local CPI:
//!
//! - a table of changes — each alone, then several at once — each asserting the action and the
//!   reasons of every instance, with the state's bytes, the VM directories and the agent
//!   processes unchanged by every plan;
//! - the rendered plan and diff of a property change against a snapshot
//!   (`tests/snapshots/plan_property_change.txt`; `ROSH_UPDATE_SNAPSHOTS=1` rewrites it);
//! - state-side scenarios (a dirty instance, a VM missing, a stopped instance, a new stemcell,
//!   a new release version);
//! - saved plans: a stale one is refused naming both serials, a fresh one deploys exactly what
//!   it showed.
//!
//! Loopback ranges `127.201.0.0/16` and `127.202.0.0/16`.

mod common;
mod deploy_support;

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;

use deploy_support::{Director, Manifest, repo, yaml};
use serde_json::Value as Json;
use sha2::Digest;

fn quick_demo(d: &Director) -> Manifest {
    let mut m = d.demo();
    m.watch_times("500-5000", "500-5000");
    m
}

/// `rosh -d demo plan FILE --json [extra]`, asserted to succeed.
fn plan(d: &Director, m: &Manifest, extra: &[&str]) -> Json {
    let path = d.write("plan.yml", &m.text());
    let mut args = vec!["-d", "demo", "plan", path.to_str().unwrap(), "--json"];
    args.extend_from_slice(extra);
    let out = d.rosh(&args);
    assert!(
        out.status.success(),
        "plan failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    );
    serde_json::from_slice(&out.stdout).expect("plan --json prints JSON")
}

/// A reason as the table writes it: its kind, and the job or names it is about.
fn reason(r: &Json) -> String {
    let kind = r["reason"].as_str().unwrap().to_string();
    if let Some(job) = r["job"].as_str() {
        let files: Vec<&str> =
            r["files"].as_array().map(|f| f.iter().filter_map(Json::as_str).collect()).unwrap_or_default();
        return format!("{kind}({job}:{})", files.join(","));
    }
    if let Some(names) = r["names"].as_array() {
        return format!("{kind}({})", names.iter().filter_map(Json::as_str).collect::<Vec<_>>().join(","));
    }
    if let (Some(from), Some(to)) = (r["from"].as_str(), r["to"].as_str()) {
        return format!("{kind}({from}->{to})");
    }
    if let (Some(from), Some(to)) = (r["from_mb"].as_u64(), r["to_mb"].as_u64()) {
        return format!("{kind}({from}->{to})");
    }
    kind
}

/// `group/index` → "action: reason, reason [disk]" for every instance of the plan.
fn table(plan: &Json) -> BTreeMap<String, String> {
    plan["instances"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            let reasons: Vec<String> = p["reasons"].as_array().unwrap().iter().map(reason).collect();
            let mut line = format!("{}: {}", p["action"].as_str().unwrap(), reasons.join(", "));
            if let Some(disk) = p["disk"].as_str().or_else(|| p.get("disk").and_then(|d| d["disk"].as_str())) {
                line.push_str(&format!(" [disk {disk}]"));
            }
            (format!("{}/{}", p["group"].as_str().unwrap(), p["index"]), line.trim_end_matches(": ").to_string())
        })
        .collect()
}

fn expect(plan: &Json, rows: &[(&str, &str)], what: &str) {
    let want: BTreeMap<String, String> = rows.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    assert_eq!(table(plan), want, "{what}: plan was\n{}", serde_json::to_string_pretty(&plan["instances"]).unwrap());
}

/// Everything a plan must leave alone: every file under the state dir (bytes), the VM
/// directories and the live agent processes.
fn world(d: &Director) -> (BTreeMap<String, String>, Vec<String>, BTreeMap<String, u32>) {
    fn walk(dir: &Path, root: &Path, out: &mut BTreeMap<String, String>) {
        let Ok(entries) = fs::read_dir(dir) else { return };
        for e in entries.flatten() {
            let path = e.path();
            let meta = fs::symlink_metadata(&path).unwrap();
            // VMs' own files (their logs grow while jobs run) are not the director's.
            if path.starts_with(root.join("cpi/local/vms")) {
                continue;
            }
            if meta.is_dir() {
                walk(&path, root, out);
            } else if meta.is_file() {
                let digest: String =
                    sha2::Sha256::digest(fs::read(&path).unwrap()).iter().map(|b| format!("{b:02x}")).collect();
                out.insert(path.strip_prefix(root).unwrap().display().to_string(), digest);
            }
        }
    }
    let mut files = BTreeMap::new();
    walk(&d.state_dir, &d.state_dir, &mut files);
    (files, d.vm_dirs().into_iter().collect(), d.live_agents())
}

const UNCHANGED: &[(&str, &str)] = &[("kv/0", "no_op"), ("web/0", "no_op"), ("web/1", "no_op")];

#[test]
fn each_change_alone_and_several_at_once_get_their_actions_and_reasons_and_plan_changes_nothing() {
    let d = Director::new(201);
    d.deploy("demo", &quick_demo(&d), "demo.yml", &[]).expect_ok();
    let before = world(&d);

    expect(&plan(&d, &quick_demo(&d), &[]), UNCHANGED, "the deployed manifest");

    let mut m = quick_demo(&d);
    m.greeting("hola");
    let p = plan(&d, &m, &[]);
    expect(
        &p,
        &[
            ("kv/0", "no_op"),
            ("web/0", "update: properties_changed(web:config/web.json)"),
            ("web/1", "update: properties_changed(web:config/web.json)"),
        ],
        "a web property",
    );
    assert_eq!(p["summary"]["update"], 2);
    assert_eq!(p["summary"]["compile"], 0, "every package is in the cache");
    assert!(p["compile"].as_array().unwrap().iter().all(|c| c["cached"] == true));

    // vm_type: kv's `small` gets cloud properties of its own.
    let cloud = {
        let mut doc = yaml(&d.cloud_config());
        for t in doc["vm_types"].as_sequence_mut().unwrap() {
            if t["name"] == "small" {
                t["cloud_properties"] = yaml("{cpu: 2}");
            }
        }
        d.write("cloud-2.yml", &serde_yaml_ng::to_string(&doc).unwrap())
    };
    expect(
        &plan(&d, &quick_demo(&d), &["--cloud-config", cloud.to_str().unwrap()]),
        &[("kv/0", "recreate: cloud_properties_changed"), ("web/0", "no_op"), ("web/1", "no_op")],
        "kv's vm_type cloud properties",
    );

    let mut m = quick_demo(&d);
    m.group("kv")["env"] = yaml("{bosh: {keep_root_password: true}}");
    expect(
        &plan(&d, &m, &[]),
        &[("kv/0", "recreate: env_changed"), ("web/0", "no_op"), ("web/1", "no_op")],
        "kv's env",
    );

    let mut m = quick_demo(&d);
    m.group("kv")["networks"][0]["static_ips"] = yaml(&format!("[{}]", d.ip(0, 11)));
    let p = plan(&d, &m, &[]);
    let kv = &table(&p)["kv/0"];
    assert!(kv.starts_with("recreate: networks_changed"), "{kv}");
    // web's rendered configuration holds kv's address (through the link): it changes too.
    assert_eq!(table(&p)["web/0"], "update: jobs_changed(web)");
    assert_eq!(table(&p)["web/1"], "update: jobs_changed(web)");

    let mut m = quick_demo(&d);
    m.group("kv")["persistent_disk"] = yaml("2048");
    expect(
        &plan(&d, &m, &[]),
        &[
            ("kv/0", "update: persistent_disk_changed(1024->2048) [disk resize]"),
            ("web/0", "no_op"),
            ("web/1", "no_op"),
        ],
        "kv's disk size",
    );

    let mut m = quick_demo(&d);
    m.instances("web", 3);
    let p = plan(&d, &m, &[]);
    expect(
        &p,
        &[("kv/0", "no_op"), ("web/0", "no_op"), ("web/1", "no_op"), ("web/2", "create: scale_up")],
        "web scaled up",
    );
    assert_eq!(p["summary"]["create"], 1);

    let mut m = quick_demo(&d);
    m.instances("web", 1);
    expect(
        &plan(&d, &m, &[]),
        &[("kv/0", "no_op"), ("web/0", "no_op"), ("web/1", "delete: scale_down")],
        "web scaled down",
    );

    let mut m = quick_demo(&d);
    m.remove_group("smoke-tests").remove_group("web");
    expect(
        &plan(&d, &m, &[]),
        &[("kv/0", "no_op"), ("web/0", "delete: removed_from_manifest"), ("web/1", "delete: removed_from_manifest")],
        "web removed",
    );

    expect(
        &plan(&d, &quick_demo(&d), &["--recreate"]),
        &[
            ("kv/0", "recreate: recreate_requested"),
            ("web/0", "recreate: recreate_requested"),
            ("web/1", "recreate: recreate_requested"),
        ],
        "--recreate",
    );

    // Several at once: the strongest action, every reason kept.
    let mut m = quick_demo(&d);
    m.greeting("hola").instances("web", 3);
    m.group("web")["env"] = yaml("{bosh: {keep_root_password: true}}");
    m.group("kv")["persistent_disk"] = yaml("2048");
    expect(
        &plan(&d, &m, &[]),
        &[
            ("kv/0", "update: persistent_disk_changed(1024->2048) [disk resize]"),
            ("web/0", "recreate: env_changed, properties_changed(web:config/web.json)"),
            ("web/1", "recreate: env_changed, properties_changed(web:config/web.json)"),
            ("web/2", "create: scale_up"),
        ],
        "several changes",
    );

    // The rendered plan of a property change (uuids and the serial made stable).
    let path = d.write("greeting.yml", &{
        let mut m = quick_demo(&d);
        m.greeting("hola");
        m.text()
    });
    let text = d.ok(&["-d", "demo", "plan", path.to_str().unwrap()]);
    snapshot("plan_property_change.txt", &stable(&d, &text));
    assert!(!text.contains("hola"), "property values are redacted:\n{text}");
    let open = d.ok(&["-d", "demo", "plan", path.to_str().unwrap(), "--no-redact"]);
    assert!(open.contains("+             greeting: hola"), "{open}");

    // --detailed-exitcode: 0 without changes, 2 with.
    let same = d.write("same.yml", &quick_demo(&d).text());
    let code =
        |file: &Path| d.rosh(&["-d", "demo", "plan", file.to_str().unwrap(), "--detailed-exitcode"]).status.code();
    assert_eq!(code(&same), Some(0));
    assert_eq!(code(&path), Some(2));

    assert_eq!(world(&d), before, "plans changed the state, the blobstore, a VM or a process");
}

/// `text` with this run's uuids, serial and addresses replaced by stable names.
fn stable(d: &Director, text: &str) -> String {
    let mut out = text.to_string();
    for r in d.instances("demo") {
        out = out.replace(&r.uuid, &format!("<{}-{}>", r.group, r.index));
    }
    out = out.replace(&format!("127.{}.", d.octet), "127.N.");
    let serial = regex::Regex::new(r"state serial \d+").unwrap();
    let version = regex::Regex::new(r"(kv|web)/0\+dev\.\d+").unwrap();
    let out = serial.replace_all(&out, "state serial S");
    version.replace_all(&out, "$1/DEV").into_owned()
}

fn snapshot(name: &str, actual: &str) {
    let path = repo().join("tests/snapshots").join(name);
    if std::env::var_os("ROSH_UPDATE_SNAPSHOTS").is_some() {
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(&path, actual).unwrap();
    }
    let expected = fs::read_to_string(&path)
        .unwrap_or_else(|_| panic!("no snapshot {} (run with ROSH_UPDATE_SNAPSHOTS=1)", path.display()));
    assert_eq!(actual, expected, "the rendered plan differs from {}", path.display());
}

#[test]
fn state_side_reasons_and_saved_plans() {
    let d = Director::new(202);
    d.deploy("demo", &quick_demo(&d), "demo.yml", &[]).expect_ok();
    let records = d.instances("demo");
    let (kv, web0, web1) = (&records[0], &records[1], &records[2]);
    let state = d.state();

    // A stopped instance is restarted; a dirty one recreated; one without its VM created.
    d.ok(&["-d", "demo", "stop", &format!("web/{}", web1.uuid)]);
    state.set_instance_dirty("demo", &kv.uuid, true).unwrap();
    let vm = web0.vm.clone();
    state.set_instance_vm("demo", &web0.uuid, None, false).unwrap();
    expect(
        &plan(&d, &quick_demo(&d), &[]),
        &[("kv/0", "recreate: dirty"), ("web/0", "create: vm_missing"), ("web/1", "restart: stopped")],
        "state-side reasons",
    );
    state.set_instance_dirty("demo", &kv.uuid, false).unwrap();
    state.set_instance_vm("demo", &web0.uuid, vm, false).unwrap();
    d.ok(&["-d", "demo", "start", &format!("web/{}", web1.uuid)]);
    expect(&plan(&d, &quick_demo(&d), &[]), UNCHANGED, "back as deployed");

    // A new stemcell version: every VM is recreated, naming both versions.
    d.upload_stemcell_version("1.1");
    let p = plan(&d, &quick_demo(&d), &[]);
    for (name, row) in table(&p) {
        assert!(
            row.starts_with("recreate: stemcell_changed(")
                && row.contains("/1.0->")
                && row.contains("/1.1), packages_changed("),
            "{name}: {row}"
        );
    }
    assert!(p["summary"]["compile"].as_u64().unwrap() >= 4, "packages compile for the new stemcell: {}", p["summary"]);
    let mut pinned = quick_demo(&d);
    pinned.0["stemcells"][0]["version"] = yaml("'1.0'");

    // A new web release: its package and job changed, kv untouched.
    let source = d.copy_release("web");
    let app = source.join("src/webapp/server.py");
    let code = fs::read_to_string(&app).unwrap();
    fs::write(&app, format!("{code}\n# a change\n")).unwrap();
    d.upload_release(&source);
    let p = plan(&d, &pinned, &[]);
    let rows = table(&p);
    assert_eq!(rows["kv/0"], "no_op");
    assert!(rows["web/0"].starts_with("update: packages_changed(webapp)"), "{}", rows["web/0"]);
    let to_compile: Vec<&str> = p["compile"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["cached"] == false)
        .filter_map(|c| c["package"].as_str())
        .collect();
    assert_eq!(to_compile, ["webapp"], "only the changed package compiles: {}", p["compile"]);

    // Saved plans: a stale one is refused with both serials, and nothing changes. (The
    // state is compared byte for byte: no connection of this test may hold its WAL open.)
    drop(state);
    let manifest = d.write("pinned.yml", &pinned.text());
    let saved = d.path("plan.json");
    d.ok(&["-d", "demo", "plan", manifest.to_str().unwrap(), "--out", saved.to_str().unwrap()]);
    let promised: Json = serde_json::from_str(&fs::read_to_string(&saved).unwrap()).unwrap();
    let serial = promised["made_from"]["state_serial"].as_u64().unwrap();
    d.ok(&["-d", "demo", "stop", &format!("web/{}", web1.uuid)]);
    d.ok(&["-d", "demo", "start", &format!("web/{}", web1.uuid)]);
    let now = {
        let state = d.state();
        state.serial().unwrap()
    };
    let before = world(&d);
    let out = d.rosh(&["-d", "demo", "deploy", manifest.to_str().unwrap(), "--plan", saved.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains(&format!("state serial {serial}")) && err.contains(&format!("serial {now}")), "{err}");
    assert_eq!(world(&d), before, "a refused plan changed something");

    // A fresh one applies, and the deploy does exactly what it showed.
    d.ok(&["-d", "demo", "plan", manifest.to_str().unwrap(), "--out", saved.to_str().unwrap()]);
    let promised: Json = serde_json::from_str(&fs::read_to_string(&saved).unwrap()).unwrap();
    let deployed = d.deploy("demo", &pinned, "pinned.yml", &["--plan", saved.to_str().unwrap()]).expect_ok();
    assert_eq!(deployed.updated as u64, promised["summary"]["update"].as_u64().unwrap());
    assert_eq!(deployed.created as u64, promised["summary"]["create"].as_u64().unwrap());
    assert_eq!(deployed.packages_compiled as u64, promised["summary"]["compile"].as_u64().unwrap());
    expect(&plan(&d, &pinned, &[]), UNCHANGED, "after applying the plan");
}

#[test]
fn a_consumer_before_its_provider_is_refused_unless_allowed_and_update_order_links_reorders() {
    let d = Director::new(203);
    // web (consumes kv) listed before kv.
    let mut m = quick_demo(&d);
    let groups = m.0["instance_groups"].as_sequence_mut().unwrap();
    groups.swap(0, 1);
    let path = d.write("web-first.yml", &m.text());
    let refused = d.rosh(&["-d", "demo", "plan", path.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&refused.stderr);
    assert_eq!(refused.status.code(), Some(1), "{err}");
    assert!(
        err.contains("web consumes kv from kv, which updates after it") && err.contains("--allow-unordered-links"),
        "{err}"
    );
    let deploy = d.rosh(&["-d", "demo", "deploy", path.to_str().unwrap()]);
    assert_eq!(deploy.status.code(), Some(1));
    assert!(d.vm_dirs().is_empty(), "the refused deploy made no VM");

    let order = |plan: &Json| -> Vec<String> {
        plan["order"].as_array().unwrap().iter().map(|b| b[0]["name"].as_str().unwrap().to_string()).collect()
    };
    let allowed = plan(&d, &m, &["--allow-unordered-links"]);
    assert_eq!(order(&allowed), ["web", "kv"], "allowed: the manifest's order is kept");

    m.0["update"]["order"] = yaml("links");
    let by_links = plan(&d, &m, &[]);
    assert_eq!(order(&by_links), ["kv", "web"], "update.order: links puts the provider first");

    m.0["update"]["order"] = yaml("alphabetical");
    let path = d.write("bad-order.yml", &m.text());
    let bad = d.rosh(&["-d", "demo", "plan", path.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&bad.stderr);
    assert_eq!(bad.status.code(), Some(1));
    assert!(err.contains("update.order") && err.contains("manifest, links"), "{err}");
}
