//! Links: implicit resolution by type, `from`/`as`, `nil`, optional links, custom providers,
//! link properties with spec defaults, the errors naming consumer and providers; and the link
//! graph between groups (order check, order by links, batches).

mod plan_support;

use plan_support::*;
use rosh::plan::desired::DesiredDeployment;
use rosh::plan::{LinkGraph, batches};
use serde_json::json;

fn job<'a>(d: &'a DesiredDeployment, g: &str, j: &str) -> &'a rosh::plan::desired::DesiredJob {
    group(d, g).jobs.iter().find(|x| x.name == j).unwrap()
}

fn three_tier(extra: &str) -> String {
    format!(
        "instance_groups:\n{}{}{}{extra}",
        ig("database", "[z1]", 1, "[{name: postgres, release: web, properties: {postgres: {password: secret}}}]"),
        ig("api", "[z1, z2]", 2, "[{name: app, release: web}]"),
        ig("router", "[z1]", 1, "[{name: nginx, release: web, properties: {nginx: {port: 8080}}}]"),
    )
}

#[test]
fn links_resolve_by_type_with_properties_defaults_and_instances() {
    let w = World::default();
    let d = w.plan(&three_tier("")).unwrap();
    let app = job(&d, "api", "app");
    let db = &app.links["db"];
    assert_eq!(
        (db.name.as_str(), db.kind.as_str(), db.group.as_str(), db.job.as_str()),
        ("db", "db", "database", "postgres")
    );
    assert_eq!(db.deployment, "demo");
    assert_eq!(db.properties, json!({"postgres": {"port": 5432, "user": "admin", "password": "secret"}}));
    let addresses: Vec<(&str, u64, &str, bool)> =
        db.instances.iter().map(|i| (i.name.as_str(), i.index, i.address.as_str(), i.bootstrap)).collect();
    assert_eq!(addresses, [("database", 0, "10.0.1.20", true)]);
    assert!(!app.links.contains_key("cache"), "an optional link without provider is absent");

    let backend = &job(&d, "router", "nginx").links["backend"];
    assert_eq!(backend.group, "api");
    assert_eq!(backend.properties, json!({"app": {"name": "demo"}}));
    let azs: Vec<Option<&str>> = backend.instances.iter().map(|i| i.az.as_deref()).collect();
    assert_eq!(azs, [Some("z1"), Some("z2")]);
}

#[test]
fn two_providers_of_a_type_are_ambiguous_until_from_picks_one() {
    let w = World::default();
    let backup =
        ig("backup", "[z2]", 1, "[{name: postgres, release: web, provides: {db: {as: backup-db, shared: true}}}]");
    let errors = w.plan(&three_tier(&backup)).unwrap_err();
    assert_eq!(
        errors,
        [
            "instance_groups[1] (api).jobs[0] (app): consumes link db of type db: ambiguous, provided by postgres on database (link db) and postgres on backup (link db as backup-db); choose one with consumes.db.from (and provides.LINK.as to tell same-named ones apart)"
        ]
    );
    let manifest = three_tier(&backup)
        .replace("[{name: app, release: web}]", "[{name: app, release: web, consumes: {db: {from: backup-db}}}]");
    let d = w.plan(&manifest).unwrap();
    let db = &job(&d, "api", "app").links["db"];
    assert_eq!(db.group, "backup");
    assert_eq!(db.instances[0].address, "10.0.2.21", "api/1 took .20 first, in manifest order");
}

#[test]
fn a_missing_required_link_names_the_consumer() {
    let w = World::default();
    let groups = format!("instance_groups:\n{}", ig("api", "[z1]", 1, "[{name: app, release: web}]"));
    assert_eq!(
        w.plan(&groups).unwrap_err(),
        ["instance_groups[0] (api).jobs[0] (app): consumes link db of type db: no provider in deployment demo"]
    );
    // Withdrawing the only provider with `provides: {db: nil}` has the same effect.
    let withdrawn = three_tier("").replace("properties: {postgres: {password: secret}}", "provides: {db: nil}");
    assert_eq!(
        w.plan(&withdrawn).unwrap_err(),
        ["instance_groups[1] (api).jobs[0] (app): consumes link db of type db: no provider in deployment demo"]
    );
}

#[test]
fn nil_blocks_an_optional_link_and_is_refused_for_a_required_one() {
    let w = World::default();
    // cf-deployment writes the YAML string `nil`; null works the same.
    let blocked = three_tier("").replace("properties: {nginx: {port: 8080}}", "consumes: {backend: nil}");
    let d = w.plan(&blocked).unwrap();
    assert!(job(&d, "router", "nginx").links.is_empty());
    let refused =
        three_tier("").replace("[{name: app, release: web}]", "[{name: app, release: web, consumes: {db: ~}}]");
    assert_eq!(
        w.plan(&refused).unwrap_err(),
        ["instance_groups[1] (api).jobs[0] (app): consumes link db of type db: set to nil, but the job requires it"]
    );
}

#[test]
fn wrong_from_and_unknown_link_names_are_errors() {
    let w = World::default();
    let manifest = three_tier("")
        .replace(
            "[{name: app, release: web}]",
            "[{name: app, release: web, consumes: {db: {from: nosuch}, dbx: {from: db}}}]",
        )
        .replace("properties: {nginx: {port: 8080}}", "consumes: {backend: {from: db}}, provides: {https: {as: x}}");
    assert_eq!(
        w.plan(&manifest).unwrap_err(),
        [
            "instance_groups[2] (router).jobs[0] (nginx): provides https: the job's spec provides no link https",
            "instance_groups[1] (api).jobs[0] (app): consumes dbx: the job's spec consumes no link dbx",
            "instance_groups[1] (api).jobs[0] (app): consumes link db of type db: no provider named nosuch in deployment demo",
            "instance_groups[2] (router).jobs[0] (nginx): consumes link backend of type app: from db: postgres on database (link db) has type db",
        ]
    );
}

const TOOLS_HEAD: &str = "
name: demo
releases: [{name: web, version: latest}, {name: tools, version: 3}]
stemcells: [{alias: default, os: ubuntu-jammy, version: latest}]
update: {canaries: 1, max_in_flight: 1, canary_watch_time: 1000, update_watch_time: 1000}
";

const PROBE_SPEC: &str = "
name: probe
consumes:
- {name: admin, type: admin-api}
- {name: web, type: http, optional: true}
";

#[test]
fn custom_providers_and_manual_links_and_dns_addresses() {
    let mut w = World::default();
    w.releases.push(release("tools", "3", &[PROBE_SPEC], &[]));
    let manifest = format!(
        "{TOOLS_HEAD}features: {{use_dns_addresses: true}}\ninstance_groups:\n{}{}",
        ig(
            "router",
            "[z1]",
            1,
            "[{name: nginx, release: web, properties: {nginx: {admin_port: 9000}}, custom_provider_definitions: [{name: admin, type: admin-api, properties: [nginx.admin_port]}]}]"
        ),
        ig(
            "probe",
            "[z2]",
            1,
            "[{name: probe, release: tools, consumes: {web: {instances: [{address: example.com}], properties: {port: 443}}}}]"
        ),
    );
    let d = w.plan_manifest(&manifest).unwrap();
    let probe = job(&d, "probe", "probe");
    let admin = &probe.links["admin"];
    assert_eq!((admin.group.as_str(), admin.job.as_str()), ("router", "nginx"));
    assert_eq!(admin.properties, json!({"nginx": {"admin_port": 9000}}));
    let router = &group(&d, "router").instances[0];
    assert_eq!(admin.instances[0].address, format!("{}.router.default.demo.bosh", router.id));
    let web = &probe.links["web"];
    assert_eq!(web.instances[0].address, "example.com");
    assert_eq!(web.properties, json!({"port": 443}));
    assert_eq!(web.group, "", "a manual link has no providing group");
    // Undeclared by the spec but used by the custom link: still a warning about the spec.
    assert_eq!(
        d.warnings,
        [
            "instance_groups[0] (router).jobs[0] (nginx): property nginx.admin_port is not declared in the job's spec; no template can see it"
        ]
    );
}

#[test]
fn a_consumer_before_its_provider_is_refused_unless_they_update_together() {
    let w = World::default();
    let consumer_first = format!(
        "instance_groups:\n{}{}",
        ig("api", "[z1]", 1, "[{name: app, release: web}]"),
        ig("database", "[z1]", 1, "[{name: postgres, release: web}]")
    );
    let d = w.plan(&consumer_first).unwrap();
    let graph = LinkGraph::new(&d);
    let errors: Vec<String> = graph.check_order(&d.groups).unwrap_err().iter().map(|e| e.to_string()).collect();
    assert_eq!(errors, ["instance group api consumes db from database, which updates after it"]);
    assert_eq!(graph.order_by_links(&d.groups).unwrap(), ["database", "api"]);
    // Provider first: fine.
    assert!(graph.check_order(&three_tier_groups(&w)).is_ok());
    // Both `serial: false`: one batch, updated together.
    let parallel = consumer_first.replace("  vm_type: small\n", "  vm_type: small\n  update: {serial: false}\n");
    let d = w.plan(&parallel).unwrap();
    assert_eq!(batches(&d.groups), [vec!["api".to_string(), "database".to_string()]]);
    assert!(LinkGraph::new(&d).check_order(&d.groups).is_ok());
}

fn three_tier_groups(w: &World) -> Vec<rosh::plan::desired::DesiredGroup> {
    w.plan(&three_tier("")).unwrap().groups
}

const LEFT: &str = "
name: left
consumes: [{name: right, type: r}]
provides: [{name: left, type: l}]
";
const RIGHT: &str = "
name: right
consumes: [{name: left, type: l}]
provides: [{name: right, type: r}]
";

#[test]
fn a_cycle_of_required_links_cannot_be_ordered() {
    let mut w = World::default();
    w.releases.push(release("tools", "3", &[LEFT, RIGHT], &[]));
    let manifest = format!(
        "{TOOLS_HEAD}instance_groups:\n{}{}{}",
        ig("a", "[z1]", 1, "[{name: left, release: tools}]"),
        ig("b", "[z1]", 1, "[{name: right, release: tools}]"),
        ig("c", "[z1]", 1, "[{name: nginx, release: web}]"),
    );
    let d = w.plan_manifest(&manifest).unwrap();
    let graph = LinkGraph::new(&d);
    assert_eq!(graph.edges().len(), 2);
    assert_eq!(graph.order_by_links(&d.groups).unwrap_err().to_string(), "instance group a → b → a");
    let errors: Vec<String> = graph.check_order(&d.groups).unwrap_err().iter().map(|e| e.to_string()).collect();
    assert_eq!(errors, ["instance group a consumes right from b, which updates after it"]);
}

#[test]
fn serial_groups_batch_alone_and_consecutive_parallel_ones_together() {
    let w = World::default();
    let mut text = String::from("instance_groups:\n");
    for (name, serial) in [("a", true), ("b", false), ("c", false), ("d", true), ("e", false)] {
        text.push_str(
            &ig(name, "[z1]", 1, "[{name: nginx, release: web}]")
                .replace("  vm_type: small\n", &format!("  vm_type: small\n  update: {{serial: {serial}}}\n")),
        );
    }
    let d = w.plan(&text).unwrap();
    assert_eq!(batches(&d.groups), [vec!["a"], vec!["b", "c"], vec!["d"], vec!["e"]]);
}
