//! Resolving links: which job provides each link a job consumes, with the provider's
//! properties and instances.
//!
//! Providers are the links a job's spec `provides` plus the manifest's
//! `custom_provider_definitions`, renamed by `provides: {link: {as: NAME}}` or withdrawn by
//! `provides: {link: nil}`. A consumer's link resolves by its manifest entry: `nil` blocks it
//! (an error when the spec requires the link), `{from: NAME}` picks the provider of that name
//! (and of the consumed type), a map with `instances`/`properties` and no `from` is a manual
//! link, and no entry means the one provider of the consumed type in the deployment. Two
//! candidates are an error naming both, none is an error for a required link and simply no
//! link for an optional one.
//!
//! A link carries the provider's declared `provides[].properties`, valued from the provider
//! job's properties or the spec defaults ([`crate::template::properties::lookup`]), and the
//! providing group's desired instances with their addresses: the IP on the network the
//! consumer asks for (`network:`) or on the provider's default network, or BOSH's DNS name
//! (`ID.GROUP.NETWORK.DEPLOYMENT.bosh`) when the IP is not known before the VM exists (dynamic
//! networks) or `features.use_dns_addresses` is on. Links from other deployments
//! (`deployment:`) are not supported yet and say so.

use std::collections::BTreeMap;

use serde_json::Value as Json;

use super::build::JobDraft;
use super::desired::{DesiredInstance, LinkInstance, ResolvedLink};
use crate::manifest::yaml::{self, Value};
use crate::template::properties::{get_path, lookup, set_path};

/// A group as link resolution sees it.
pub(crate) struct LinkGroup<'a> {
    pub name: &'a str,
    pub jobs: &'a [JobDraft],
    pub instances: &'a [DesiredInstance],
}

struct Provider {
    group: usize,
    job: usize,
    /// The link's name in the provider's spec (or custom definition).
    name: String,
    /// The name consumers use in `from` (`as`, else `name`).
    alias: String,
    kind: String,
    properties: Vec<String>,
    custom: bool,
}

impl Provider {
    fn describe(&self, groups: &[LinkGroup<'_>]) -> String {
        let g = &groups[self.group];
        let link = if self.alias == self.name { self.name.clone() } else { format!("{} as {}", self.name, self.alias) };
        format!("{} on {} (link {link})", g.jobs[self.job].name, g.name)
    }
}

enum Want {
    Blocked,
    From { from: String, network: Option<String> },
    Implicit { network: Option<String> },
    Manual(Json),
}

fn is_nil(v: &Value) -> bool {
    matches!(v, Value::Null) || matches!(v, Value::String(s) if s == "nil")
}

fn text(v: Option<&Value>) -> Option<String> {
    v.and_then(yaml::scalar_text)
}

/// A job's resolved links, by consumed name.
pub(crate) type JobLinks = BTreeMap<String, ResolvedLink>;

/// Resolves every consumed link. Returns per group, per job, its links, and the problems as
/// `(path, message)`.
pub(crate) fn resolve(
    deployment: &str,
    use_dns: bool,
    groups: &[LinkGroup<'_>],
) -> (Vec<Vec<JobLinks>>, Vec<(String, String)>) {
    let mut errors = Vec::new();
    let providers = providers(groups, &mut errors);
    let mut out = Vec::with_capacity(groups.len());
    for g in groups {
        let mut per_job = Vec::with_capacity(g.jobs.len());
        for job in g.jobs {
            let mut links = BTreeMap::new();
            for (key, _) in &job.consumes {
                let key = yaml::scalar_text(key).unwrap_or_default();
                if !job.spec.consumes.iter().any(|c| c.name == key) {
                    errors.push((job.label.clone(), format!("consumes {key}: the job's spec consumes no link {key}")));
                }
            }
            for def in &job.spec.consumes {
                let at = format!("consumes link {} of type {}", def.name, def.kind);
                let want = match job.consumes.get(def.name.as_str()) {
                    None => Want::Implicit { network: None },
                    Some(v) if is_nil(v) => Want::Blocked,
                    Some(Value::Mapping(m)) => {
                        let network = text(m.get("network"));
                        if let Some(d) = text(m.get("deployment")).filter(|d| d != deployment) {
                            errors.push((
                                job.label.clone(),
                                format!("{at}: links from other deployments (deployment {d}) are not supported yet"),
                            ));
                            continue;
                        }
                        match text(m.get("from")) {
                            Some(from) => Want::From { from, network },
                            None if m.contains_key("instances")
                                || m.contains_key("properties")
                                || m.contains_key("address") =>
                            {
                                Want::Manual(yaml::to_json(&Value::Mapping(m.clone())))
                            }
                            None => Want::Implicit { network },
                        }
                    }
                    Some(other) => {
                        errors.push((
                            job.label.clone(),
                            format!("{at}: expected a map, nil or nothing, found {}", yaml::kind(other)),
                        ));
                        continue;
                    }
                };
                let chosen: Vec<&Provider> = match &want {
                    Want::Blocked => {
                        if !def.optional {
                            errors.push((job.label.clone(), format!("{at}: set to nil, but the job requires it")));
                        }
                        continue;
                    }
                    Want::Manual(entry) => {
                        links.insert(def.name.clone(), manual(deployment, &def.name, &def.kind, entry));
                        continue;
                    }
                    Want::From { from, .. } => {
                        let named: Vec<&Provider> = providers.iter().filter(|p| &p.alias == from).collect();
                        if named.is_empty() {
                            errors.push((
                                job.label.clone(),
                                format!("{at}: no provider named {from} in deployment {deployment}"),
                            ));
                            continue;
                        }
                        let typed: Vec<&Provider> = named.iter().copied().filter(|p| p.kind == def.kind).collect();
                        if typed.is_empty() {
                            let found: Vec<String> =
                                named.iter().map(|p| format!("{} has type {}", p.describe(groups), p.kind)).collect();
                            errors.push((job.label.clone(), format!("{at}: from {from}: {}", found.join(", "))));
                            continue;
                        }
                        typed
                    }
                    Want::Implicit { .. } => providers.iter().filter(|p| p.kind == def.kind).collect(),
                };
                match chosen.as_slice() {
                    [] if def.optional => {}
                    [] => errors.push((job.label.clone(), format!("{at}: no provider in deployment {deployment}"))),
                    [p] => {
                        let network = match &want {
                            Want::From { network, .. } | Want::Implicit { network } => network.as_deref(),
                            _ => None,
                        };
                        match link(deployment, use_dns, groups, p, &def.name, network) {
                            Ok(l) => {
                                links.insert(def.name.clone(), l);
                            }
                            Err(e) => errors.push((job.label.clone(), format!("{at}: {e}"))),
                        }
                    }
                    many => {
                        let list: Vec<String> = many.iter().map(|p| p.describe(groups)).collect();
                        errors.push((
                            job.label.clone(),
                            format!(
                                "{at}: ambiguous, provided by {}; choose one with consumes.{}.from (and provides.LINK.as to tell same-named ones apart)",
                                list.join(" and "),
                                def.name
                            ),
                        ));
                    }
                }
            }
            per_job.push(links);
        }
        out.push(per_job);
    }
    (out, errors)
}

fn providers(groups: &[LinkGroup<'_>], errors: &mut Vec<(String, String)>) -> Vec<Provider> {
    let mut out = Vec::new();
    for (gi, g) in groups.iter().enumerate() {
        for (ji, job) in g.jobs.iter().enumerate() {
            let mut declared: Vec<(String, String, Vec<String>, bool)> = job
                .spec
                .provides
                .iter()
                .map(|p| (p.name.clone(), p.kind.clone(), p.properties.clone(), false))
                .collect();
            for c in &job.custom {
                match c.properties.literal() {
                    Some(props) => declared.push((c.name.clone(), c.kind.clone(), props.clone(), true)),
                    None => errors.push((
                        job.label.clone(),
                        format!(
                            "custom_provider_definitions {}: variable {} was not interpolated",
                            c.name,
                            c.properties.var().unwrap_or("")
                        ),
                    )),
                }
            }
            for (key, _) in &job.provides {
                let key = yaml::scalar_text(key).unwrap_or_default();
                if !declared.iter().any(|d| d.0 == key) {
                    errors.push((job.label.clone(), format!("provides {key}: the job's spec provides no link {key}")));
                }
            }
            for (name, kind, properties, custom) in declared {
                let alias = match job.provides.get(name.as_str()) {
                    Some(v) if is_nil(v) => continue,
                    Some(Value::Mapping(m)) => text(m.get("as")).unwrap_or_else(|| name.clone()),
                    Some(other) => {
                        errors.push((
                            job.label.clone(),
                            format!("provides {name}: expected a map or nil, found {}", yaml::kind(other)),
                        ));
                        continue;
                    }
                    None => name.clone(),
                };
                out.push(Provider { group: gi, job: ji, name, alias, kind, properties, custom });
            }
        }
    }
    out
}

/// BOSH's DNS label form of a name: lower case, `_` as `-`.
fn dns_label(s: &str) -> String {
    s.to_lowercase().replace('_', "-")
}

fn link(
    deployment: &str,
    use_dns: bool,
    groups: &[LinkGroup<'_>],
    p: &Provider,
    consumed: &str,
    network: Option<&str>,
) -> Result<ResolvedLink, String> {
    let g = &groups[p.group];
    let job = &g.jobs[p.job];
    let mut properties = Json::Object(Default::default());
    for name in &p.properties {
        let value =
            if p.custom { get_path(&job.properties, name).cloned() } else { lookup(&job.spec, &job.properties, name) };
        if let Some(v) = value {
            set_path(&mut properties, name, v);
        }
    }
    let mut instances = Vec::with_capacity(g.instances.len());
    for i in g.instances {
        let net = match network {
            Some(n) => i
                .networks
                .iter()
                .find(|x| x.name == n)
                .ok_or_else(|| format!("instance group {} (the provider) is not on network {n}", g.name))?,
            None => match i.networks.iter().find(|n| n.default.iter().any(|d| d == "gateway")).or(i.networks.first()) {
                Some(n) => n,
                None => return Err(format!("instance group {} (the provider) has no network", g.name)),
            },
        };
        let address = match (&net.ip, use_dns) {
            (Some(ip), false) => ip.clone(),
            _ => format!("{}.{}.{}.{}.bosh", i.id, dns_label(g.name), dns_label(&net.name), dns_label(deployment)),
        };
        instances.push(LinkInstance {
            name: g.name.to_string(),
            id: i.id.clone(),
            index: i.index,
            az: i.az.clone(),
            address,
            bootstrap: i.bootstrap,
        });
    }
    Ok(ResolvedLink {
        name: consumed.to_string(),
        kind: p.kind.clone(),
        group: g.name.to_string(),
        job: job.name.clone(),
        deployment: deployment.to_string(),
        properties,
        instances,
    })
}

/// A link the manifest writes out itself (`instances: [{address}]`, `properties`).
fn manual(deployment: &str, name: &str, kind: &str, entry: &Json) -> ResolvedLink {
    let mut instances = Vec::new();
    let listed = entry.get("instances").and_then(Json::as_array).cloned().unwrap_or_default();
    for (i, inst) in listed.iter().enumerate() {
        let address = inst.get("address").and_then(Json::as_str).unwrap_or_default().to_string();
        instances.push(LinkInstance {
            name: inst.get("name").and_then(Json::as_str).unwrap_or(name).to_string(),
            id: inst.get("id").and_then(Json::as_str).unwrap_or_default().to_string(),
            index: inst.get("index").and_then(Json::as_u64).unwrap_or(i as u64),
            az: inst.get("az").and_then(Json::as_str).map(str::to_string),
            address,
            bootstrap: inst.get("bootstrap").and_then(Json::as_bool).unwrap_or(i == 0),
        });
    }
    if instances.is_empty()
        && let Some(address) = entry.get("address").and_then(Json::as_str)
    {
        instances.push(LinkInstance {
            name: name.to_string(),
            id: String::new(),
            index: 0,
            az: None,
            address: address.to_string(),
            bootstrap: true,
        });
    }
    ResolvedLink {
        name: name.to_string(),
        kind: kind.to_string(),
        group: String::new(),
        job: String::new(),
        deployment: deployment.to_string(),
        properties: entry.get("properties").cloned().unwrap_or(Json::Object(Default::default())),
        instances,
    }
}
