//! Job template rendering through the public API: the example job of `docs/templates.md`
//! renders exactly as documented, the sample `hello` job read from a tarball made by the real
//! `rosh create-release` renders with a real context, the configuration digest follows only
//! what the templates use, and bad templates fail with errors naming job, template and cause.

mod common;

use std::collections::BTreeMap;
use std::fs;
use std::io::Read;
use std::path::Path;

use rosh::plan::desired::{DesiredInstance, DesiredJob, InstanceNetwork, LinkInstance, ResolvedLink};
use rosh::release::manifest::{self, JobSpec};
use rosh::template::{JobTemplates, Problem, RenderContext, RenderedJob, TemplateError, render_job};
use serde_json::{Value, json};

/// The `<!-- example: NAME -->` code blocks of docs/templates.md, by name.
fn doc_examples() -> BTreeMap<String, String> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/templates.md");
    let text = fs::read_to_string(path).unwrap();
    let mut out = BTreeMap::new();
    let mut rest = text.as_str();
    while let Some(at) = rest.find("<!-- example: ") {
        rest = &rest[at + "<!-- example: ".len()..];
        let (name, after) = rest.split_once(" -->\n").unwrap();
        let after = after.strip_prefix("```").unwrap();
        let body = &after[after.find('\n').unwrap() + 1..];
        let end = if body.starts_with("```") { 0 } else { body.find("\n```\n").expect("a closed block") + 1 };
        out.insert(name.to_string(), body[..end].to_string());
        rest = &body[end..];
    }
    out
}

fn network(name: &str, ip: &str) -> InstanceNetwork {
    InstanceNetwork {
        name: name.into(),
        kind: "manual".into(),
        ip: Some(ip.into()),
        netmask: Some("255.255.255.0".into()),
        gateway: Some("10.0.0.1".into()),
        dns: vec![],
        default: vec!["dns".into(), "gateway".into()],
        cloud_properties: json!({}),
        static_ip: false,
    }
}

fn instance(group: &str, index: u64, id: &str, az: Option<&str>, ip: &str) -> DesiredInstance {
    DesiredInstance {
        group: group.into(),
        index,
        id: id.into(),
        az: az.map(str::to_string),
        bootstrap: index == 0,
        networks: vec![network("default", ip)],
        cloud_properties: json!({}),
        cpi: None,
    }
}

fn desired_job(spec: &JobSpec, release: &str, properties: Value, links: BTreeMap<String, ResolvedLink>) -> DesiredJob {
    DesiredJob {
        name: spec.name.clone(),
        release: release.into(),
        spec: spec.clone(),
        fingerprint: "fp".into(),
        sha256: "sha".into(),
        properties,
        links,
    }
}

fn db_link() -> ResolvedLink {
    let member = |index: u64, az: &str, address: &str| LinkInstance {
        name: "db".into(),
        id: format!("db-{index}"),
        index,
        az: Some(az.into()),
        address: address.into(),
        bootstrap: index == 0,
    };
    ResolvedLink {
        name: "db".into(),
        kind: "postgres".into(),
        group: "db".into(),
        job: "postgres".into(),
        deployment: "shop".into(),
        properties: json!({"db": {"user": "web", "port": 5432}}),
        instances: vec![member(0, "z1", "10.0.1.1"), member(1, "z2", "10.0.1.2")],
    }
}

fn render(
    templates: &JobTemplates,
    instance: &DesiredInstance,
    job: &DesiredJob,
    root: &str,
) -> Result<RenderedJob, TemplateError> {
    let ctx = RenderContext {
        deployment: "shop".into(),
        instance,
        job,
        release_version: "3".into(),
        root: root.into(),
        persistent_disk_mb: 0,
    };
    render_job(templates, &ctx)
}

/// Path → (mode, bytes) of a rendered job's tarball.
fn tarball_entries(tgz: &[u8]) -> BTreeMap<String, (u32, Vec<u8>)> {
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(tgz));
    let mut out = BTreeMap::new();
    for entry in archive.entries().unwrap() {
        let mut entry = entry.unwrap();
        let mode = entry.header().mode().unwrap();
        let mut bytes = Vec::new();
        entry.read_to_end(&mut bytes).unwrap();
        out.insert(entry.path().unwrap().to_string_lossy().into_owned(), (mode, bytes));
    }
    out
}

/// The docs' example job, its manifest properties and links.
fn example() -> (JobTemplates, Value, BTreeMap<String, String>) {
    let docs = doc_examples();
    let spec: JobSpec = manifest::parse(&docs["spec"], "docs spec").unwrap();
    let sources = ["config.yml.hbs", "ctl.sh.hbs"]
        .into_iter()
        .map(|s| (s.to_string(), docs[&format!("templates/{s}")].as_bytes().to_vec()))
        .collect();
    let templates = JobTemplates::new(spec, sources, Some(docs["monit"].as_bytes().to_vec()));
    let properties: Value = serde_yaml_ng::from_str(&docs["properties"]).unwrap();
    (templates, properties, docs)
}

fn render_example(properties: Value) -> Result<RenderedJob, TemplateError> {
    let (templates, _, _) = example();
    let job = desired_job(&templates.spec, "shop", properties, [("db".to_string(), db_link())].into());
    let web = instance("web", 0, "5b2c9e1f", Some("z1"), "10.0.0.10");
    render(&templates, &web, &job, "/home/op/.rosh/vms/5b2c9e1f")
}

#[test]
fn the_docs_example_renders_as_documented() {
    let (_, properties, docs) = example();
    let rendered = render_example(properties).unwrap();
    assert_eq!(rendered.name, "web");
    assert_eq!(rendered.files.keys().collect::<Vec<_>>(), ["bin/ctl", "config/config.yml", "monit"]);
    let mut differ = String::new();
    for (file, bytes) in &rendered.files {
        let text = String::from_utf8(bytes.clone()).unwrap();
        if text != docs[&format!("rendered {file}")] {
            differ.push_str(&format!("--- {file} renders to:\n{text}"));
        }
    }
    assert!(differ.is_empty(), "docs/templates.md shows other output:\n{differ}");
    // The rendered YAML is YAML, with the unescaped text intact.
    let config: Value = serde_yaml_ng::from_slice(&rendered.files["config/config.yml"]).unwrap();
    assert_eq!(config["motd"], "Fish & \"chips\" <today>");
    assert_eq!(config["database"]["replicas"], json!(["10.0.1.1", "10.0.1.2"]));
    assert_eq!(config["cache"], "none", "the optional link has no provider");
    let entries = tarball_entries(&rendered.tarball);
    assert_eq!(entries["bin/ctl"].0, 0o755);
    assert_eq!(entries["config/config.yml"].0, 0o644);
    assert_eq!(entries["monit"], (0o644, rendered.files["monit"].clone()));
}

#[test]
fn the_digest_follows_what_the_templates_use() {
    let (_, properties, _) = example();
    let first = render_example(properties.clone()).unwrap();
    let again = render_example(properties.clone()).unwrap();
    assert_eq!(first.tarball, again.tarball, "identical inputs, identical bytes");
    assert_eq!(first.sha256, again.sha256);
    assert_eq!(first.sha256.len(), 64);

    let mut changed = properties.clone();
    changed["web"]["motd"] = json!("Closed today");
    let changed = render_example(changed).unwrap();
    assert_ne!(changed.sha256, first.sha256, "a property a template prints");

    // Set, but not declared by the spec: no template can see it.
    let mut unused = properties.clone();
    unused["web"]["colour"] = json!("blue");
    assert_eq!(render_example(unused).unwrap().sha256, first.sha256);
    // Explicitly set to its default.
    let mut same = properties;
    same["web"]["port"] = json!(8080);
    assert_eq!(render_example(same).unwrap().sha256, first.sha256);
}

#[test]
fn a_link_loop_lists_every_provider_instance_and_an_optional_provider_when_present() {
    let (templates, properties, _) = example();
    let mut links: BTreeMap<String, ResolvedLink> = [("db".to_string(), db_link())].into();
    let mut cache = db_link();
    cache.name = "cache".into();
    cache.kind = "redis".into();
    cache.properties = json!({"port": 6380});
    cache.instances.truncate(1);
    cache.instances[0].address = "10.0.2.1".into();
    links.insert("cache".into(), cache);
    let job = desired_job(&templates.spec, "shop", properties, links);
    let web = instance("web", 1, "77aa", None, "10.0.0.11");
    let rendered = render(&templates, &web, &job, "/var/vcap").unwrap();
    let config: Value = serde_yaml_ng::from_slice(&rendered.files["config/config.yml"]).unwrap();
    assert_eq!(config["cache"], "10.0.2.1:6380");
    assert_eq!(config["bootstrap"], false);
    let text = String::from_utf8(rendered.files["config/config.yml"].clone()).unwrap();
    assert!(text.contains("  - 10.0.1.1  # db/0 in z1, bootstrap\n  - 10.0.1.2  # db/1 in z2\n"), "{text}");
    assert!(text.starts_with("# shop: web/1 (77aa) in \n"), "no AZ prints nothing: {text}");
}

#[test]
fn a_missing_property_names_job_template_and_property() {
    let spec: JobSpec = manifest::parse(
        "name: web\ntemplates: {config.yml.hbs: config/config.yml}\nproperties:\n  web.tls.cert: {description: pem}\n",
        "spec",
    )
    .unwrap();
    let sources = [("config.yml.hbs".to_string(), b"tls:\n  cert: {{p \"web.tls.cert\"}}\n".to_vec())].into();
    let templates = JobTemplates::new(spec, sources, None);
    let job = desired_job(&templates.spec, "shop", json!({"web": {"port": 1}}), BTreeMap::new());
    let err = render(&templates, &instance("web", 0, "a", None, "10.0.0.2"), &job, "/var/vcap").unwrap_err();
    assert_eq!(
        err.to_string(),
        "job web, template config.yml.hbs: property web.tls.cert has no value and no default (line 2, column 9)"
    );
    assert_eq!((err.job.as_str(), err.template.as_str()), ("web", "config.yml.hbs"));
    assert_eq!(*err.problem, Problem::MissingProperty { name: "web.tls.cert".into() });
}

#[test]
fn erb_templates_are_refused() {
    let spec: JobSpec = manifest::parse("name: web\ntemplates: {config.yml.erb: config/config.yml}\n", "spec").unwrap();
    let templates =
        JobTemplates::new(spec, [("config.yml.erb".to_string(), b"port: <%= p('web.port') %>".to_vec())].into(), None);
    let job = desired_job(&templates.spec, "shop", json!({}), BTreeMap::new());
    let err = render(&templates, &instance("web", 0, "a", None, "10.0.0.2"), &job, "/var/vcap").unwrap_err();
    assert_eq!(*err.problem, Problem::ErbNotSupported);
    assert!(err.to_string().contains("template config.yml.erb: ERB templates are not supported"), "{err}");
}

#[test]
fn nothing_is_escaped() {
    let spec: JobSpec = manifest::parse("name: j\ntemplates: {a.hbs: a}\nproperties:\n  x: {}\n", "spec").unwrap();
    let templates =
        JobTemplates::new(spec, [("a.hbs".to_string(), b"{{p \"x\"}} {{json (p \"x\")}}".to_vec())].into(), None);
    let job = desired_job(&templates.spec, "r", json!({"x": "<b>&\"'</b>"}), BTreeMap::new());
    let rendered = render(&templates, &instance("g", 0, "a", None, "10.0.0.2"), &job, "/var/vcap").unwrap();
    assert_eq!(rendered.files["a"], br#"<b>&"'</b> "<b>&\"'</b>""#);
}

#[test]
fn hello_from_a_create_release_tarball_renders_with_a_real_context() {
    // A copy of the sample release, so the build leaves nothing in the repository.
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("hello");
    common::copy_release_source(&Path::new(env!("CARGO_MANIFEST_DIR")).join("releases/hello"), &dir);
    let release = tmp.path().join("hello.tgz");
    common::rosh_ok(&["create-release", dir.to_str().unwrap(), "--tarball", release.to_str().unwrap()], tmp.path());

    let mut job_tgz = None;
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(fs::File::open(&release).unwrap()));
    for entry in archive.entries().unwrap() {
        let mut entry = entry.unwrap();
        let path = entry.path().unwrap().to_string_lossy().trim_start_matches("./").to_string();
        if path == "jobs/hello.tgz" {
            let mut bytes = Vec::new();
            entry.read_to_end(&mut bytes).unwrap();
            job_tgz = Some(bytes);
        }
    }
    let job_tgz = job_tgz.expect("the release holds jobs/hello.tgz");
    let templates = JobTemplates::from_job_tarball(&job_tgz, "hello.tgz: jobs/hello.tgz").unwrap();
    assert_eq!(templates.spec.name, "hello");
    assert_eq!(
        templates.files.keys().collect::<Vec<_>>(),
        ["monit", "templates/config.json.hbs", "templates/start.sh.hbs"]
    );

    let job = desired_job(&templates.spec, "hello", json!({"hello": {"greeting": "Hi & <bye>"}}), BTreeMap::new());
    let vm = instance("hello", 0, "c0ffee", Some("z1"), "127.77.0.5");
    let rendered = render(&templates, &vm, &job, "/var/vcap").unwrap();
    assert_eq!(rendered.files.keys().collect::<Vec<_>>(), ["bin/start", "config/config.json", "monit"]);
    let config: Value = serde_json::from_slice(&rendered.files["config/config.json"]).unwrap();
    assert_eq!(config["port"], 8080, "the spec's default");
    assert_eq!(config["greeting"], "Hi & <bye>", "the manifest's value, unescaped");
    let start = String::from_utf8(rendered.files["bin/start"].clone()).unwrap();
    assert!(start.starts_with("#!/bin/sh\n"), "{start}");
    assert!(!start.contains("{{"), "rendered: {start}");
    let monit = String::from_utf8(rendered.files["monit"].clone()).unwrap();
    assert!(monit.starts_with("check process hello") && !monit.contains("{{"), "monit rendered as a template: {monit}");
    assert_eq!(tarball_entries(&rendered.tarball)["bin/start"].0, 0o755);

    // Another port is another configuration.
    let job = desired_job(&templates.spec, "hello", json!({"hello": {"port": 9090}}), BTreeMap::new());
    let other = render(&templates, &vm, &job, "/var/vcap").unwrap();
    assert_ne!(other.sha256, rendered.sha256);
    assert_eq!(serde_json::from_slice::<Value>(&other.files["config/config.json"]).unwrap()["port"], 9090);
}
