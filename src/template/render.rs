//! Rendering one job for one instance: every template the spec lists, to its destination, and
//! `monit`, packed into a reproducible tarball whose digest says whether the job's
//! configuration changed.
//!
//! Decisions: handlebars runs in strict mode with no escaping (these are config files, not
//! HTML); ERB sources are refused up front, before anything renders; destinations must be
//! relative paths inside the job directory, distinct, and not `monit`. The tarball holds only
//! the rendered files (no directory entries, no job-name prefix), in name order, with fixed
//! headers — mtime 0, uid/gid 0, mode 0755 under `bin/` and 0644 elsewhere — and a gzip header
//! without a name or time, so identical inputs give identical bytes.

use std::collections::BTreeMap;
use std::io::Write;
use std::sync::Arc;

use flate2::Compression;
use handlebars::{Context, Handlebars};
use serde_json::json;
use sha2::{Digest, Sha256};

use super::context::RenderContext;
use super::helpers::{self, Problem, Scope};
use super::job::JobTemplates;
use crate::release::archive::normalise_path;

/// What a template is called in errors when it is the job's `monit` file.
const MONIT: &str = "monit";

/// A job rendered for one instance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RenderedJob {
    /// The job's name.
    pub name: String,
    /// Destination (relative to the job's directory) → rendered bytes; always holds `monit`.
    pub files: BTreeMap<String, Vec<u8>>,
    /// The files as a reproducible gzipped tar.
    pub tarball: Vec<u8>,
    /// Lowercase hex SHA-256 of `tarball`.
    pub sha256: String,
}

/// A template that could not be rendered: `job web, template config.yml.hbs: property
/// web.tls.cert has no value and no default (line 3, column 9)`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("job {job}, template {template}: {problem}{}", location(*.line, *.column))]
pub struct TemplateError {
    pub job: String,
    /// The template's source name (a key of the spec's `templates`), or `monit`.
    pub template: String,
    /// Boxed to keep `Result<_, TemplateError>` small.
    pub problem: Box<Problem>,
    pub line: Option<usize>,
    pub column: Option<usize>,
}

fn location(line: Option<usize>, column: Option<usize>) -> String {
    match (line, column) {
        (Some(line), Some(column)) => format!(" (line {line}, column {column})"),
        (Some(line), None) => format!(" (line {line})"),
        _ => String::new(),
    }
}

/// Renders every template of `templates` and its `monit` for the instance and job in `ctx`.
/// Properties and links come from `ctx.job` (its spec gives the defaults and what is
/// consumed); which templates exist and where they go comes from `templates.spec`.
pub fn render_job(templates: &JobTemplates, ctx: &RenderContext<'_>) -> Result<RenderedJob, TemplateError> {
    let job = ctx.job.name.as_str();
    let fail = |template: &str, problem| TemplateError {
        job: job.to_string(),
        template: template.to_string(),
        problem: Box::new(problem),
        line: None,
        column: None,
    };

    if let Some(source) = templates.spec.templates.keys().find(|s| s.ends_with(".erb")) {
        return Err(fail(source, Problem::ErbNotSupported));
    }
    let targets = destinations(&templates.spec.templates).map_err(|(source, problem)| fail(&source, problem))?;

    let mut registry = Handlebars::new();
    registry.set_strict_mode(true);
    registry.register_escape_fn(handlebars::no_escape);
    helpers::register(&mut registry, &Arc::new(Scope::new(ctx.job)));
    // Registered under their file names (`templates/x`, `monit`): a source may be called `monit`.
    let mut order: Vec<(&str, &str, String)> = Vec::new();
    for (source, destination) in &targets {
        let key = format!("templates/{source}");
        let bytes = templates.files.get(&key).ok_or_else(|| fail(source, Problem::MissingSource))?;
        let text = std::str::from_utf8(bytes).map_err(|_| fail(source, Problem::NotUtf8))?;
        register(&mut registry, &key, text).map_err(|e| TemplateError { job: job.to_string(), ..e.named(source) })?;
        order.push((source, destination, key));
    }
    let monit = templates.files.get(MONIT).map(Vec::as_slice).unwrap_or_default();
    let monit = std::str::from_utf8(monit).map_err(|_| fail(MONIT, Problem::NotUtf8))?;
    register(&mut registry, MONIT, monit).map_err(|e| TemplateError { job: job.to_string(), ..e.named(MONIT) })?;
    order.push((MONIT, MONIT, MONIT.to_string()));

    let data = Context::wraps(json!({ "spec": ctx.spec() }))
        .map_err(|e| fail(MONIT, Problem::Other { message: e.to_string() }))?;
    let mut files = BTreeMap::new();
    for (source, destination, key) in order {
        let text = registry.render_with_context(&key, &data).map_err(|e| TemplateError {
            job: job.to_string(),
            template: source.to_string(),
            problem: Box::new(Problem::of(&e)),
            line: e.line_no,
            column: e.column_no,
        })?;
        files.insert(destination.to_string(), text.into_bytes());
    }
    let tarball = pack(&files).map_err(|e| fail(MONIT, Problem::Other { message: format!("packing: {e}") }))?;
    let sha256 = crate::release::fingerprint::hex(&Sha256::digest(&tarball));
    Ok(RenderedJob { name: job.to_string(), files, tarball, sha256 })
}

/// A parse failure, not yet named.
struct Unnamed {
    problem: Problem,
    line: Option<usize>,
    column: Option<usize>,
}

impl Unnamed {
    fn named(self, template: &str) -> TemplateError {
        TemplateError {
            job: String::new(),
            template: template.to_string(),
            problem: Box::new(self.problem),
            line: self.line,
            column: self.column,
        }
    }
}

fn register(registry: &mut Handlebars<'_>, key: &str, text: &str) -> Result<(), Unnamed> {
    registry.register_template_string(key, text).map_err(|e| {
        let (line, column) = e.pos().unzip();
        Unnamed { problem: Problem::Syntax { message: e.reason().to_string() }, line, column }
    })
}

/// The spec's `templates` with normalised destinations, checked: relative, inside the job
/// directory, not `monit`, and no two the same or one inside another. Errors name the source.
fn destinations(templates: &BTreeMap<String, String>) -> Result<Vec<(String, String)>, (String, Problem)> {
    let mut out: Vec<(String, String)> = Vec::new();
    let mut taken: BTreeMap<String, String> = BTreeMap::from([(MONIT.to_string(), "the job's monit file".to_string())]);
    for (source, destination) in templates {
        let bad = || (source.clone(), Problem::BadDestination { destination: destination.clone() });
        let normalised = normalise_path(destination.as_bytes()).map_err(|_| bad())?.ok_or_else(bad)?;
        let clash = taken.iter().find(|(other, _)| {
            *other == &normalised
                || normalised.strip_prefix(other.as_str()).is_some_and(|r| r.starts_with('/'))
                || other.strip_prefix(normalised.as_str()).is_some_and(|r| r.starts_with('/'))
        });
        if let Some((_, owner)) = clash {
            return Err((
                source.clone(),
                Problem::DestinationClash { destination: destination.clone(), other: owner.clone() },
            ));
        }
        taken.insert(normalised.clone(), format!("template {source}"));
        out.push((source.clone(), normalised));
    }
    Ok(out)
}

/// The reproducible gzipped tar of `files` (see the module doc for its headers).
fn pack(files: &BTreeMap<String, Vec<u8>>) -> std::io::Result<Vec<u8>> {
    let gz = flate2::GzBuilder::new().mtime(0).write(Vec::new(), Compression::default());
    let mut builder = tar::Builder::new(gz);
    for (path, bytes) in files {
        let mut header = tar::Header::new_ustar();
        header.set_entry_type(tar::EntryType::Regular);
        header.set_mode(if path.starts_with("bin/") { 0o755 } else { 0o644 });
        header.set_size(bytes.len() as u64);
        header.set_uid(0);
        header.set_gid(0);
        header.set_mtime(0);
        builder.append_data(&mut header, path, bytes.as_slice())?;
    }
    let mut gz = builder.into_inner()?;
    gz.flush()?;
    gz.finish()
}

#[cfg(test)]
mod tests {
    use std::io::Read;

    use serde_json::{Value, json};

    use super::*;
    use crate::plan::desired::{DesiredInstance, DesiredJob, InstanceNetwork, LinkInstance, ResolvedLink};

    const SPEC: &str = "\
name: web
templates: {t.hbs: out/t}
properties:
  web.port: {default: 8080}
  web.tls.cert: {description: pem}
  web.admins: {default: [root]}
  web.limits: {default: {conns: 10, rate: 2.5}}
  web.name: {}
consumes:
- {name: db, type: postgres}
- {name: cache, type: redis, optional: true}
";

    fn instance() -> DesiredInstance {
        DesiredInstance {
            group: "front".into(),
            index: 1,
            id: "0a1b".into(),
            az: Some("z2".into()),
            bootstrap: false,
            networks: vec![InstanceNetwork {
                name: "default".into(),
                kind: "manual".into(),
                ip: Some("10.0.0.7".into()),
                netmask: Some("255.255.255.0".into()),
                gateway: Some("10.0.0.1".into()),
                dns: vec![],
                default: vec!["dns".into(), "gateway".into()],
                cloud_properties: json!({}),
                static_ip: false,
            }],
            cloud_properties: json!({}),
            cpi: None,
        }
    }

    fn db_link() -> ResolvedLink {
        let member = |index: u64, address: &str| LinkInstance {
            name: "db".into(),
            id: format!("db-{index}"),
            index,
            az: Some(format!("z{}", index + 1)),
            address: address.into(),
            bootstrap: index == 0,
        };
        ResolvedLink {
            name: "db".into(),
            kind: "postgres".into(),
            group: "db".into(),
            job: "postgres".into(),
            deployment: "shop".into(),
            properties: json!({"db": {"port": 5432, "user": "web"}}),
            instances: vec![member(0, "10.0.1.1"), member(1, "10.0.1.2")],
        }
    }

    fn job(properties: Value) -> DesiredJob {
        DesiredJob {
            name: "web".into(),
            release: "shop".into(),
            spec: crate::release::manifest::parse(SPEC, "spec").unwrap(),
            fingerprint: String::new(),
            sha256: String::new(),
            properties,
            links: [("db".to_string(), db_link())].into(),
        }
    }

    fn templates(template: &str, monit: Option<&str>) -> JobTemplates {
        let spec = crate::release::manifest::parse(SPEC, "spec").unwrap();
        JobTemplates::new(
            spec,
            [("t.hbs".to_string(), template.as_bytes().to_vec())].into(),
            monit.map(|m| m.as_bytes().to_vec()),
        )
    }

    fn render_with(template: &str, job: &DesiredJob) -> Result<String, TemplateError> {
        let instance = instance();
        let ctx = RenderContext {
            deployment: "shop".into(),
            instance: &instance,
            job,
            release_version: "1.2".into(),
            root: "/var/vcap".into(),
            persistent_disk_mb: 1024,
        };
        let rendered = render_job(&templates(template, None), &ctx)?;
        Ok(String::from_utf8(rendered.files["out/t"].clone()).unwrap())
    }

    fn render(template: &str) -> Result<String, TemplateError> {
        render_with(template, &job(json!({"web": {"port": 9000, "name": "shop"}})))
    }

    #[test]
    fn p_gives_the_manifest_value_else_the_default_else_the_fallback() {
        assert_eq!(render(r#"{{p "web.port"}}"#).unwrap(), "9000");
        assert_eq!(render_with(r#"{{p "web.port"}}"#, &job(json!({}))).unwrap(), "8080");
        assert_eq!(render(r#"{{p "web.tls.cert" "none"}}|{{p "web.tls.cert" 0}}"#).unwrap(), "none|0");
        assert_eq!(render(r#"{{p "web.port" 1}}"#).unwrap(), "9000", "a fallback does not hide a value");
    }

    #[test]
    fn p_prints_scalars_plainly_and_structures_as_json() {
        assert_eq!(
            render(r#"{{p "web.name"}} {{p "web.admins"}} {{p "web.limits"}}"#).unwrap(),
            r#"shop ["root"] {"conns":10,"rate":2.5}"#
        );
        assert_eq!(
            render(r#"{{p "web"}}"#).unwrap(),
            r#"{"admins":["root"],"limits":{"conns":10,"rate":2.5},"name":"shop","port":9000}"#,
            "the valued declared properties below a prefix"
        );
        assert_eq!(render(r#"{{#each (p "web.admins")}}<{{this}}>{{/each}}"#).unwrap(), "<root>");
        assert_eq!(render(r#"{{#each (p "web.limits")}}{{@key}}={{this}};{{/each}}"#).unwrap(), "conns=10;rate=2.5;");
    }

    #[test]
    fn a_missing_property_names_job_template_and_property() {
        let err = render("line one\n  {{p \"web.tls.cert\"}}").unwrap_err();
        assert_eq!(*err.problem, Problem::MissingProperty { name: "web.tls.cert".into() });
        assert_eq!(err.line, Some(2));
        assert!(
            err.to_string().starts_with("job web, template t.hbs: property web.tls.cert has no value and no default"),
            "{err}"
        );
        let err = render(r#"{{#each (p "web.nope")}}{{/each}}"#).unwrap_err();
        assert_eq!(*err.problem, Problem::UndeclaredProperty { name: "web.nope".into() });
    }

    #[test]
    fn if_p_takes_the_block_when_every_property_has_a_value() {
        let t = r#"{{#if_p "web.tls.cert"}}tls{{else}}plain{{/if_p}}"#;
        assert_eq!(render(t).unwrap(), "plain");
        let with_cert = job(json!({"web": {"tls": {"cert": "PEM"}, "name": "n"}}));
        assert_eq!(render_with(t, &with_cert).unwrap(), "tls");
        assert_eq!(render_with(r#"{{#if_p "web.tls.cert" as |c|}}[{{c}}]{{/if_p}}"#, &with_cert).unwrap(), "[PEM]");
        assert_eq!(render_with(r#"{{#if_p "web.tls.cert" "web.name"}}both{{/if_p}}"#, &with_cert).unwrap(), "both");
        assert_eq!(render(r#"{{#if_p "web.port" "web.tls.cert"}}both{{else}}not{{/if_p}}"#).unwrap(), "not");
        let err = render(r#"{{#if_p "web.tls.crt"}}x{{/if_p}}"#).unwrap_err();
        assert_eq!(*err.problem, Problem::UndeclaredProperty { name: "web.tls.crt".into() }, "a typo is not a false");
    }

    #[test]
    fn json_and_yaml_print_any_value() {
        assert_eq!(render(r#"{{json (p "web.name")}} {{json (p "web.admins")}}"#).unwrap(), r#""shop" ["root"]"#);
        assert_eq!(render(r#"{{json spec.networks.default.default}}"#).unwrap(), r#"["dns","gateway"]"#);
        assert_eq!(render("{{json (p \"web.admins\") pretty=true}}").unwrap(), "[\n  \"root\"\n]");
        assert_eq!(render("l:\n  {{yaml (p \"web.limits\") indent=2}}\n").unwrap(), "l:\n  conns: 10\n  rate: 2.5\n");
        let err = render("{{json spec.nope}}").unwrap_err();
        assert_eq!(*err.problem, Problem::UndefinedVariable { path: "spec.nope".into() });
    }

    #[test]
    fn links_give_instances_address_and_properties() {
        let t = "{{#with (link \"db\")}}{{type}} {{address}} {{group}}/{{deployment}}:\
                 {{#each instances}} {{name}}/{{index}}@{{address}}({{az}}){{#if bootstrap}}*{{/if}}{{/each}}{{/with}}";
        assert_eq!(render(t).unwrap(), "postgres 10.0.1.1 db/shop: db/0@10.0.1.1(z1)* db/1@10.0.1.2(z2)");
        assert_eq!(render(r#"{{link_p "db" "db.port"}} {{link_p "db" "db.ssl" false}}"#).unwrap(), "5432 false");
        let err = render(r#"{{link_p "db" "db.password"}}"#).unwrap_err();
        assert_eq!(*err.problem, Problem::MissingLinkProperty { link: "db".into(), name: "db.password".into() });
        assert_eq!(
            err.to_string(),
            "job web, template t.hbs: link db does not expose property db.password (line 1, column 1)"
        );
    }

    #[test]
    fn an_optional_link_without_provider_is_tested_with_if_link() {
        assert_eq!(render(r#"{{#if_link "cache"}}cache{{else}}no cache{{/if_link}}"#).unwrap(), "no cache");
        assert_eq!(render(r#"{{#if_link "db" as |db|}}{{db.address}}{{/if_link}}"#).unwrap(), "10.0.1.1");
        let err = render(r#"{{json (link "cache")}}"#).unwrap_err();
        assert_eq!(*err.problem, Problem::AbsentLink { name: "cache".into() });
        let err = render(r#"{{#if_link "queue"}}{{/if_link}}"#).unwrap_err();
        assert_eq!(*err.problem, Problem::UnknownLink { name: "queue".into() });
        let err = render(r#"{{link "queue"}}"#).unwrap_err();
        assert!(
            err.to_string().starts_with("job web, template t.hbs: link queue is not consumed by this job"),
            "{err}"
        );
    }

    #[test]
    fn spec_describes_the_instance() {
        let t = "{{spec.name}}/{{spec.index}} {{spec.id}} {{spec.az}} {{spec.deployment}} {{spec.bootstrap}} \
                 {{spec.address}} {{spec.ip}} {{spec.networks.default.netmask}} {{spec.networks.default.gateway}} \
                 {{spec.persistent_disk}} {{spec.release.name}}/{{spec.release.version}} {{spec.job.name}} {{spec.root}}";
        assert_eq!(
            render(t).unwrap(),
            "front/1 0a1b z2 shop false 10.0.0.7 10.0.0.7 255.255.255.0 10.0.0.1 1024 shop/1.2 web /var/vcap"
        );
        let err = render("ok\n{{spec.adress}}").unwrap_err();
        assert_eq!(*err.problem, Problem::UndefinedVariable { path: "spec.adress".into() });
        assert_eq!(err.line, Some(2));
        let err = render("{{nope \"x\"}}").unwrap_err();
        assert_eq!(*err.problem, Problem::UnknownHelper { name: "nope".into() });
    }

    #[test]
    fn the_idioms_the_docs_show_work() {
        let t = r#"{{#with (link "db")}}{{#each instances}}{{address}}{{#unless @last}},{{/unless}}{{/each}}{{/with}}"#;
        assert_eq!(render(t).unwrap(), "10.0.1.1,10.0.1.2");
        assert_eq!(render(r#"{{lookup (link "db") "address"}}"#).unwrap(), "10.0.1.1");
        assert_eq!(
            render(r#"{{#if (eq spec.az "z2")}}z2{{/if}} {{#if (and spec.index (not spec.bootstrap))}}y{{/if}}"#)
                .unwrap(),
            "z2 y"
        );
        assert_eq!(render("a\n  {{~p \"web.port\"~}}  \nb").unwrap(), "a9000b");
        assert_eq!(render(r#"[{{p "web.tls.cert" null}}]"#).unwrap(), "[]");
        let err = render("{{> other}}").unwrap_err();
        assert!(matches!(*err.problem, Problem::Other { .. }), "no partials: {err}");
    }

    #[test]
    fn nothing_is_escaped() {
        let job = job(json!({"web": {"name": "<a href=\"x\">&'</a>"}}));
        assert_eq!(
            render_with(r#"{{p "web.name"}}|{{{p "web.name"}}}"#, &job).unwrap(),
            "<a href=\"x\">&'</a>|<a href=\"x\">&'</a>"
        );
    }

    #[test]
    fn syntax_errors_and_erb_are_refused() {
        let err = render("{{#if_p \"web.port\"}}x{{/if}}").unwrap_err();
        assert!(matches!(*err.problem, Problem::Syntax { .. }), "{err}");
        assert!(err.to_string().starts_with("job web, template t.hbs: invalid template:"), "{err}");

        let spec =
            crate::release::manifest::parse("name: web\ntemplates: {a.hbs: a, config.yml.erb: config.yml}\n", "spec")
                .unwrap();
        let files = [("a.hbs".to_string(), b"a".to_vec()), ("config.yml.erb".to_string(), b"<%= p('x') %>".to_vec())];
        let templates = JobTemplates::new(spec, files.into(), None);
        let (instance, job) = (instance(), job(json!({})));
        let ctx = RenderContext {
            deployment: "shop".into(),
            instance: &instance,
            job: &job,
            release_version: "1".into(),
            root: "/".into(),
            persistent_disk_mb: 0,
        };
        let err = render_job(&templates, &ctx).unwrap_err();
        assert_eq!(err.template, "config.yml.erb");
        assert_eq!(
            err.to_string(),
            "job web, template config.yml.erb: ERB templates are not supported: rosh renders handlebars templates (rewrite it as .hbs)"
        );
    }

    #[test]
    fn destinations_stay_inside_the_job_and_apart() {
        let ok = destinations(&[("a".to_string(), "./bin//a".to_string())].into()).unwrap();
        assert_eq!(ok, [("a".to_string(), "bin/a".to_string())]);
        for bad in ["/etc/passwd", "../x", "a/../../x", ""] {
            let err = destinations(&[("a".to_string(), bad.to_string())].into()).unwrap_err();
            assert!(matches!(err.1, Problem::BadDestination { .. }), "{bad}");
        }
        let err = destinations(&[("a".to_string(), "monit".to_string())].into()).unwrap_err();
        assert_eq!(err.1.to_string(), "destination `monit` is also where the job's monit file renders to");
        let err = destinations(&[("a".to_string(), "bin".to_string()), ("b".to_string(), "bin/b".to_string())].into())
            .unwrap_err();
        assert_eq!(
            err,
            ("b".to_string(), Problem::DestinationClash { destination: "bin/b".into(), other: "template a".into() })
        );
    }

    #[test]
    fn monit_is_rendered_and_an_absent_one_is_empty() {
        let (instance, job) = (instance(), job(json!({})));
        let ctx = RenderContext {
            deployment: "shop".into(),
            instance: &instance,
            job: &job,
            release_version: "1".into(),
            root: "/var/vcap".into(),
            persistent_disk_mb: 0,
        };
        let rendered =
            render_job(&templates("x", Some("check process {{spec.job.name}} {{p \"web.port\"}}")), &ctx).unwrap();
        assert_eq!(rendered.files["monit"], b"check process web 8080");
        let rendered = render_job(&templates("x", None), &ctx).unwrap();
        assert_eq!(rendered.files["monit"], b"");
        let err = render_job(&templates("x", Some("{{p \"web.tls.cert\"}}")), &ctx).unwrap_err();
        assert_eq!(err.template, "monit");
    }

    #[test]
    fn the_tarball_is_sorted_with_fixed_headers() {
        let files: BTreeMap<String, Vec<u8>> = [("monit", "m"), ("bin/ctl", "#!/bin/sh"), ("config/a.yml", "a: 1")]
            .iter()
            .map(|(k, v)| (k.to_string(), v.as_bytes().to_vec()))
            .collect();
        let tgz = pack(&files).unwrap();
        assert_eq!(tgz, pack(&files).unwrap());
        assert_eq!(&tgz[4..8], &[0, 0, 0, 0], "gzip mtime is zero");
        let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(tgz.as_slice()));
        let mut seen = Vec::new();
        for entry in archive.entries().unwrap() {
            let mut entry = entry.unwrap();
            let header = entry.header().clone();
            let mut data = String::new();
            entry.read_to_string(&mut data).unwrap();
            let path = entry.path().unwrap().to_string_lossy().into_owned();
            assert_eq!((header.mtime().unwrap(), header.uid().unwrap(), header.gid().unwrap()), (0, 0, 0));
            assert_eq!(header.entry_type(), tar::EntryType::Regular);
            seen.push((path, header.mode().unwrap(), data));
        }
        assert_eq!(
            seen,
            [
                ("bin/ctl".to_string(), 0o755, "#!/bin/sh".to_string()),
                ("config/a.yml".to_string(), 0o644, "a: 1".to_string()),
                ("monit".to_string(), 0o644, "m".to_string()),
            ]
        );
    }
}
