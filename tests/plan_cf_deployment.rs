//! cf-deployment v44.5.0 (+ `operations/scale-to-one-az.yml`) through the desired model that
//! `rosh deploy` (and `rosh plan`) build, over releases built and uploaded from the real job and
//! package specs of the corpus (`tests/cf_corpus`, which says what is left out and why): the
//! groups and instances the manifest asks for, links across CF and Diego resolved, properties
//! checked against the real specs, the real package graphs ordered, and the compile count per
//! stemcell. The figures are printed for the closing note.

mod cf_corpus;

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::time::Instant;

use cf_corpus::*;
use rosh::plan::desired::{DesiredDeployment, DesiredGroup, DesiredJob};
use serde_yaml_ng::Value;

fn yaml(path: &std::path::Path) -> Value {
    serde_yaml_ng::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn group<'a>(d: &'a DesiredDeployment, name: &str) -> &'a DesiredGroup {
    d.groups.iter().find(|g| g.name == name).unwrap_or_else(|| panic!("no instance group {name}"))
}

fn job<'a>(d: &'a DesiredDeployment, group_name: &str, name: &str) -> &'a DesiredJob {
    group(d, group_name).jobs.iter().find(|j| j.name == name).unwrap_or_else(|| panic!("no job {name} on {group_name}"))
}

/// What the corpus manifest says once scale-to-one-az and the removal are applied, read
/// straight from the YAML (not through rosh's ops-file code): per group, in order, its
/// instances, AZs and the jobs of corpus releases (as `job/release`).
struct Expected {
    groups: Vec<(String, u64, Vec<String>, Vec<String>)>,
}

fn expected() -> Expected {
    let cf = yaml(&cf_manifest());
    let scale = yaml(&scale_to_one_az());
    let mut instances: BTreeMap<String, u64> = BTreeMap::new();
    let mut azs: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for op in scale.as_sequence().unwrap() {
        let path = op["path"].as_str().unwrap();
        let rest = path.strip_prefix("/instance_groups/name=").expect("scale-to-one-az changes instance groups");
        let (name, key) = rest.split_once('/').unwrap();
        match key {
            "instances" => instances.insert(name.to_string(), op["value"].as_u64().unwrap()).map(|_| ()),
            "azs" => azs
                .insert(
                    name.to_string(),
                    op["value"].as_sequence().unwrap().iter().map(|z| z.as_str().unwrap().to_string()).collect(),
                )
                .map(|_| ()),
            other => panic!("scale-to-one-az changes {other}"),
        };
    }
    let corpus: BTreeSet<&str> = CORPUS_RELEASES.into_iter().collect();
    let mut groups = Vec::new();
    for g in cf["instance_groups"].as_sequence().unwrap() {
        let name = g["name"].as_str().unwrap().to_string();
        let jobs: Vec<String> = g["jobs"]
            .as_sequence()
            .unwrap()
            .iter()
            .filter(|j| corpus.contains(j["release"].as_str().unwrap()))
            .map(|j| format!("{}/{}", j["name"].as_str().unwrap(), j["release"].as_str().unwrap()))
            .collect();
        if jobs.is_empty() {
            continue;
        }
        let n = instances.get(&name).copied().unwrap_or_else(|| g["instances"].as_u64().unwrap());
        let z = azs.get(&name).cloned().unwrap_or_else(|| {
            g["azs"].as_sequence().unwrap().iter().map(|z| z.as_str().unwrap().to_string()).collect()
        });
        groups.push((name, n, z, jobs));
    }
    Expected { groups }
}

/// Builds the desired deployment, timing it.
fn desired_with(extra_ops: &[PathBuf]) -> DesiredDeployment {
    let f = CfFixture::shared();
    let started = Instant::now();
    let d = f.desired_with(&f.director(), extra_ops).unwrap_or_else(|e| panic!("{e:#}"));
    eprintln!("desired model of cf-deployment v44.5.0 built in {} ms", started.elapsed().as_millis());
    d
}

#[test]
fn groups_instances_and_jobs_are_the_manifests_after_scale_to_one_az() {
    let d = desired_with(&[]);
    let want = expected();
    let names: Vec<&str> = d.groups.iter().map(|g| g.name.as_str()).collect();
    let want_names: Vec<&str> = want.groups.iter().map(|g| g.0.as_str()).collect();
    assert_eq!(names, want_names, "smoke-tests, doppler and credhub hold only jobs of releases the corpus lacks");
    for (name, count, azs, jobs) in &want.groups {
        let g = group(&d, name);
        assert_eq!(g.instances.len() as u64, *count, "{name}");
        for i in &g.instances {
            assert!(azs.contains(i.az.as_ref().unwrap()), "{name}/{}: az {:?} not in {azs:?}", i.index, i.az);
            let ip = i.networks[0].ip.as_deref().unwrap();
            assert!(ip.starts_with(&format!("{RANGE}.")), "{name}/{}: {ip}", i.index);
        }
        // The group's corpus jobs in manifest order, then bpm's addon (its rule selects the
        // stemcell OS on every group).
        let got: Vec<String> = g.jobs.iter().map(|j| format!("{}/{}", j.name, j.release)).collect();
        let mut want_jobs = jobs.clone();
        want_jobs.push("bpm/bpm".into());
        assert_eq!(&got, &want_jobs, "{name}");
    }
    // scale-to-one-az: one instance each, except what it leaves alone (log-cache keeps its one,
    // database/singleton-blobstore/rotate-cc-database-key had one already).
    assert!(d.groups.iter().all(|g| g.instances.len() == 1), "every group has one instance after scale-to-one-az");
    assert_eq!(d.releases.len(), CORPUS_RELEASES.len(), "{:?}", d.releases);
    for (name, version) in &d.releases {
        assert_eq!(&pinned_versions()[name], version, "release {name} is used as the version cf-deployment pins");
    }
    let instances: usize = d.groups.iter().map(|g| g.instances.len()).sum();
    let jobs: usize = d.groups.iter().map(|g| g.jobs.len()).sum();
    eprintln!(
        "cf-deployment v44.5.0 + scale-to-one-az: {} instance groups, {instances} instances, {jobs} jobs",
        d.groups.len()
    );
}

#[test]
fn links_across_cf_and_diego_resolve() {
    let d = desired_with(&[]);
    let from = |g: &str, j: &str, link: &str| {
        let l = job(&d, g, j).links.get(link).unwrap_or_else(|| panic!("{g}/{j} has no link {link}"));
        (l.group.as_str(), l.job.as_str())
    };
    // Diego and the router find NATS.
    assert_eq!(from("diego-cell", "route_emitter", "nats-tls"), ("nats", "nats-tls"));
    assert_eq!(from("router", "gorouter", "nats-tls"), ("nats", "nats-tls"));
    assert_eq!(from("uaa", "route_registrar", "nats-tls"), ("nats", "nats-tls"));
    // Routing in both directions between api and router.
    assert_eq!(from("router", "gorouter", "routing_api"), ("api", "routing-api"));
    assert_eq!(from("diego-cell", "route_emitter", "routing_api"), ("api", "routing-api"));
    assert_eq!(from("api", "routing-api", "gorouter"), ("router", "gorouter"));
    // The Cloud Controller: Diego's file server beside it, and its consumers elsewhere.
    assert_eq!(from("api", "cloud_controller_ng", "file_server"), ("api", "file_server"));
    assert_eq!(from("api", "cloud_controller_ng", "cc_uploader"), ("api", "cc_uploader"));
    assert_eq!(from("scheduler", "cc_deployment_updater", "cloud_controller_internal"), ("api", "cloud_controller_ng"));
    assert_eq!(
        from("rotate-cc-database-key", "rotate_cc_database_key", "cloud_controller_db"),
        ("api", "cloud_controller_ng")
    );
    assert_eq!(from("singleton-blobstore", "blobstore", "directories_to_backup"), ("api", "cloud_controller_ng"));

    // A link carries the provider's addresses and its declared properties, valued from the
    // manifest: nats' user is the manifest's, its port the spec's default.
    let nats = group(&d, "nats");
    let link = &job(&d, "diego-cell", "route_emitter").links["nats-tls"];
    let addresses: Vec<&str> = link.instances.iter().map(|i| i.address.as_str()).collect();
    let nats_ips: Vec<&str> = nats.instances.iter().map(|i| i.networks[0].ip.as_deref().unwrap()).collect();
    assert_eq!(addresses, nats_ips);
    assert_eq!(link.properties["nats"]["user"], "nats");
    let spec = yaml(&corpus().join("releases/nats-56.26.0/jobs/nats-tls/spec"));
    let default_port = spec["properties"]["nats.port"]["default"].as_u64().unwrap();
    assert_eq!(link.properties["nats"]["port"], default_port);
    assert!(link.properties["nats"]["password"].as_str().is_some_and(|p| !p.is_empty() && !p.contains("((")));

    // Every link every job's spec requires is resolved; an optional one only when a provider of
    // its type is deployed (cloud_controller_ng's database was pxc's: removed, so absent).
    let mut resolved = 0;
    for g in &d.groups {
        for j in &g.jobs {
            for c in &j.spec.consumes {
                match j.links.get(&c.name) {
                    Some(l) => {
                        resolved += 1;
                        assert_eq!(l.kind, c.kind, "{}/{} {}", g.name, j.name, c.name);
                        let provider = job(&d, &l.group, &l.job);
                        assert!(
                            provider.spec.provides.iter().any(|p| p.kind == c.kind),
                            "{}/{} {}",
                            g.name,
                            j.name,
                            c.name
                        );
                    }
                    None => assert!(c.optional, "{}/{}: required link {} unresolved", g.name, j.name, c.name),
                }
            }
        }
    }
    assert!(!job(&d, "api", "cloud_controller_ng").links.contains_key("database"));
    // The update order. database, singleton-blobstore, router and tcp-router are `serial: true`,
    // which cuts the groups into batches; in two places the real manifest then updates a group
    // before the group providing a link it requires. BOSH does not mind (a link is only
    // addresses and properties, fixed before anything updates); rosh names both, and the order
    // by links (`update.order: links`) has none.
    let graph = rosh::plan::LinkGraph::new(&d);
    let batches = rosh::plan::batches(&d.groups);
    let pairs: Vec<String> = graph
        .check_order(&d.groups)
        .expect_err("the manifest order updates two consumers before their providers")
        .iter()
        .map(|e| format!("{}/{} <- {}/{} ({})", e.consumer, e.consumer_job, e.provider, e.provider_job, e.link))
        .collect();
    assert_eq!(
        pairs,
        [
            "singleton-blobstore/blobstore <- api/cloud_controller_ng (directories_to_backup)",
            "api/routing-api <- router/gorouter (gorouter)",
        ]
    );
    let by_links = graph.order_by_links(&d.groups).expect("no cycle of required links");
    let reordered: Vec<DesiredGroup> = by_links.iter().map(|n| group(&d, n).clone()).collect();
    graph.check_order(&reordered).unwrap_or_else(|e| panic!("ordered by links: {e:?}"));
    eprintln!(
        "links resolved: {resolved}; {} update batches in manifest order, {} link-order conflicts; by links: {}",
        batches.len(),
        pairs.len(),
        by_links.join(", ")
    );
}

#[test]
fn properties_are_checked_against_the_real_specs() {
    let base = desired_with(&[]);
    // What the real manifest sets that the real specs no longer declare (consul-era leftovers
    // and the like): warnings, each naming its job and property, none for a property the spec
    // declares.
    for w in &base.warnings {
        eprintln!("warning: {w}");
        assert!(w.contains(".jobs[") && w.contains("property "), "{w}");
    }
    let bbs = job(&base, "diego-api", "bbs");
    let declared: BTreeSet<&str> = bbs.spec.properties.keys().map(String::as_str).collect();
    assert!(declared.contains("diego.bbs.sql.db_driver"), "the real bbs spec is the one used");
    assert!(
        base.warnings.iter().any(
            |w| w.starts_with("instance_groups[2] (diego-api).jobs[1] (bbs): property diego.bbs.skip_consul_lock ")
        ),
        "{:#?}",
        base.warnings
    );

    // An invented property under a real job is named, with the job, and nothing else changes.
    let f = CfFixture::shared();
    let ops = f.root.join("invented-property.yml");
    std::fs::write(
        &ops,
        "- type: replace\n  path: /instance_groups/name=api/jobs/name=cloud_controller_ng/properties/cc/rosh_invented_knob?\n  value: 7\n",
    )
    .unwrap();
    let d = desired_with(&[ops]);
    let new: Vec<&String> = d.warnings.iter().filter(|w| !base.warnings.contains(w)).collect();
    assert_eq!(
        new,
        [&"instance_groups[5] (api).jobs[1] (cloud_controller_ng): property cc.rosh_invented_knob is not declared in the job's spec; no template can see it".to_string()]
    );
    assert_eq!(d.warnings.len(), base.warnings.len() + 1);
    eprintln!("property warnings from the real manifest against the real specs: {}", base.warnings.len());
}

#[test]
fn the_real_package_graphs_are_ordered_and_compile_once_per_stemcell() {
    let d = desired_with(&[]);
    let f = CfFixture::shared();
    let upstream: BTreeMap<&str, &CorpusRelease> = f.releases.iter().map(|r| (r.name.as_str(), r)).collect();

    let mut package_entries = 0;
    for g in &d.groups {
        // Each package after all its dependencies (of its own release).
        let at: BTreeMap<(&str, &str), usize> =
            g.packages.iter().enumerate().map(|(i, p)| ((p.release.as_str(), p.name.as_str()), i)).collect();
        assert_eq!(at.len(), g.packages.len(), "{}: a package twice", g.name);
        for (i, p) in g.packages.iter().enumerate() {
            for dep in &p.dependencies {
                let j = at
                    .get(&(p.release.as_str(), dep.as_str()))
                    .unwrap_or_else(|| panic!("{}: {} needs {dep}", g.name, p.name));
                assert!(*j < i, "{}: {}/{} comes before its dependency {dep}", g.name, p.release, p.name);
            }
        }
        // Exactly the closure the upstream release manifests give the group's jobs.
        let want: BTreeSet<(String, String)> = g
            .jobs
            .iter()
            .flat_map(|j| upstream[j.release.as_str()].closure(&j.name).into_iter().map(|p| (j.release.clone(), p)))
            .collect();
        let got: BTreeSet<(String, String)> = g.packages.iter().map(|p| (p.release.clone(), p.name.clone())).collect();
        assert_eq!(got, want, "{}", g.name);
        package_entries += g.packages.len();
    }

    // diego-cell compiles with diego's and garden-runc's golang-1.23-linux, which differ
    // upstream (and so here).
    let cell = group(&d, "diego-cell");
    let golangs: Vec<&str> =
        cell.packages.iter().filter(|p| p.name == "golang-1.23-linux").map(|p| p.release.as_str()).collect();
    assert_eq!(golangs, ["diego", "garden-runc"]);

    // What compiles, per stemcell: one compilation per package fingerprint and dependency key,
    // shared by every group. Counted from the desired model (rosh's fingerprints) and from the
    // upstream release manifests (the real ones): equal.
    let mut compiles: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut upstream_compiles: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for g in &d.groups {
        let stemcell = format!("{}/{}", g.stemcell.os, g.stemcell.version);
        let by_release: BTreeMap<&str, BTreeMap<String, rosh::plan::desired::PackageRef>> =
            g.packages.iter().fold(BTreeMap::new(), |mut m, p| {
                m.entry(p.release.as_str()).or_default().insert(p.name.clone(), p.clone());
                m
            });
        for p in &g.packages {
            let key = rosh::compile::dependency_key(p, &by_release[p.release.as_str()]).unwrap();
            compiles.entry(stemcell.clone()).or_default().insert(format!("{}/{}/{key}", p.name, p.fingerprint));
            let up = upstream[p.release.as_str()];
            upstream_compiles.entry(stemcell.clone()).or_default().insert(format!(
                "{}/{}/{}",
                p.name,
                up.packages[&p.name].fingerprint,
                up.dependency_key(&p.name)
            ));
        }
    }
    let counts: BTreeMap<&String, usize> = compiles.iter().map(|(s, c)| (s, c.len())).collect();
    let upstream_counts: BTreeMap<&String, usize> = upstream_compiles.iter().map(|(s, c)| (s, c.len())).collect();
    assert_eq!(counts, upstream_counts);
    assert_eq!(counts.len(), 1, "one stemcell");
    let distinct: BTreeSet<(&str, &str)> =
        d.groups.iter().flat_map(|g| g.packages.iter().map(|p| (p.release.as_str(), p.name.as_str()))).collect();
    assert!(counts.values().all(|n| *n < distinct.len()), "vendored golang is shared across releases");
    eprintln!(
        "packages: {package_entries} across groups, {} distinct (release, package), to compile per stemcell: {counts:?}",
        distinct.len()
    );
}

/// `rosh plan` itself, through the binary: of cf-deployment v44.5.0 on a fresh director (every
/// instance created, every package compiled), then on the same director with cf recorded as
/// deployed (nothing to do: the specs plan computes are those a deploy applies), then with a new
/// stemcell uploaded and pinned (every VM recreated naming both versions, every package
/// compiled again for it). The real manifest has two consumers in `serial: true` groups ahead of
/// their providers (singleton-blobstore ← api's directories_to_backup, api's routing-api ←
/// router's gorouter), which rosh refuses by default; `update.order: links` plans it in the
/// link graph's order with no flag.
#[test]
fn rosh_plan_of_v44_5_fresh_deployed_and_with_a_new_stemcell() {
    let root = tempfile::Builder::new().prefix("rosh-cf-plan-").tempdir().unwrap();
    let f = CfFixture::build(root.path());
    let order_links = root.path().join("order-links.yml");
    std::fs::write(&order_links, "- type: replace\n  path: /update/order?\n  value: links\n").unwrap();
    let plan = |extra: &[&str]| -> serde_json::Value {
        let mut args: Vec<String> = vec!["-d".into(), "cf".into(), "plan".into(), cf_manifest().display().to_string()];
        args.extend(f.interpolate_args(std::slice::from_ref(&order_links)));
        args.extend(["-l".into(), f.vars_store.display().to_string(), "--json".into()]);
        args.extend(extra.iter().map(|s| s.to_string()));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        serde_json::from_str(&rosh_ok(&f.state_dir, &f.root, &args)).expect("plan --json")
    };
    let count = |plan: &serde_json::Value, action: &str| {
        plan["instances"].as_array().unwrap().iter().filter(|p| p["action"] == action).count()
    };

    // Without update.order: links, the manifest's own order is refused naming both pairs.
    let mut args: Vec<String> = vec!["-d".into(), "cf".into(), "plan".into(), cf_manifest().display().to_string()];
    args.extend(f.interpolate_args(&[]));
    args.extend([
        "-l".into(),
        f.vars_store.display().to_string(),
        "--cloud-config".into(),
        f.cloud_config.display().to_string(),
    ]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let refused = rosh(&f.state_dir, &f.root, &args);
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success());
    assert!(
        err.contains("consumes gorouter from router") && err.contains("consumes directories_to_backup from api"),
        "{err}"
    );

    let cloud = f.cloud_config.display().to_string();
    let fresh = plan(&["--cloud-config", &cloud]);
    let instances = fresh["instances"].as_array().unwrap().len();
    eprintln!(
        "rosh plan of cf-deployment v44.5.0 (fresh): {instances} instances ({} to create), {} packages to compile, {} batches",
        count(&fresh, "create"),
        fresh["summary"]["compile"],
        fresh["order"].as_array().unwrap().len()
    );
    assert_eq!(count(&fresh, "create"), instances);
    assert_eq!(fresh["summary"]["compile"], 72, "the distinct packages of the real specs");
    // In link order every required provider's group comes before its consumers.
    // (Errand groups are not in the update order: they run on demand.)
    let position = |name: &str| {
        fresh["order"].as_array().unwrap().iter().position(|b| b.as_array().unwrap().iter().any(|g| g["name"] == name))
    };
    let mut checked = 0;
    for link in fresh["links"].as_array().unwrap().iter().filter(|l| l["optional"] == false) {
        let (c, p) = (link["consumer"].as_str().unwrap(), link["provider"].as_str().unwrap());
        if let (Some(pc), Some(pp)) = (position(c), position(p)) {
            assert!(pp <= pc, "{c} consumes {} from {p} but updates first", link["link"]);
            checked += 1;
        }
    }
    assert!(checked >= 2, "only {checked} required links between service groups");
    // The two pairs the manifest's own order had the wrong way round.
    assert!(
        position("router") < position("api") && position("api") < position("singleton-blobstore"),
        "{}",
        fresh["order"]
    );

    f.record_as_deployed();
    let same = plan(&[]);
    assert_eq!(count(&same, "no_op"), instances, "{}", serde_json::to_string_pretty(&same["instances"]).unwrap());
    assert_eq!(same["summary"]["compile"], 0);

    // A new stemcell.
    let (next, pin) = f.upload_next_stemcell();
    let pin = pin.display().to_string();
    let upgraded = plan(&["-o", &pin]);
    assert_eq!(count(&upgraded, "recreate"), instances);
    for p in upgraded["instances"].as_array().unwrap() {
        let reasons = p["reasons"].as_array().unwrap();
        assert!(
            reasons
                .iter()
                .any(|r| r["reason"] == "stemcell_changed" && r["to"].as_str().unwrap().ends_with(&format!("/{next}"))),
            "{p}"
        );
    }
    assert_eq!(upgraded["summary"]["compile"], 72, "every package compiles for the new stemcell");
    eprintln!(
        "rosh plan with a new stemcell: {} recreate, {} packages to compile",
        count(&upgraded, "recreate"),
        upgraded["summary"]["compile"]
    );
}
