//! The parts a deployment manifest and a runtime config share: releases, jobs, addons with their
//! placement rules, variables, and the lifecycle of an instance group.
//!
//! Each type has its raw serde twin and a `read` function that builds it from the raw form at a
//! given YAML path, reporting problems into a [`Reader`]. What a reference *resolves to* (is this
//! release listed?) is decided by the document that owns the list, not here.

use serde::Deserialize;

use super::param::Param;
use super::problem::{Item, ProblemKind};
use super::raw::{Names, Raw, Reader, Text, map_shaped};
use crate::manifest::yaml::{Mapping, Value, YamlPath};

/// A release or stemcell version: `latest`, or an exact version (`3`, `1.2`, `621.latest`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Version {
    Latest,
    Exact(String),
}

impl Version {
    pub fn parse(text: &str) -> Self {
        if text == "latest" { Version::Latest } else { Version::Exact(text.to_string()) }
    }
}

impl std::fmt::Display for Version {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Version::Latest => f.write_str("latest"),
            Version::Exact(v) => f.write_str(v),
        }
    }
}

/// Reads a version written as a string or a number.
pub(crate) fn version(
    r: &mut Reader,
    raw: Option<Raw<Text>>,
    parent: &YamlPath,
    key: &'static str,
) -> Option<Param<Version>> {
    r.required(raw, parent, key).map(|p| p.map(|Text(t)| Version::parse(&t)))
}

// ---------------------------------------------------------------------------------------------
// releases

#[derive(Debug, Default, Deserialize)]
pub struct RawRelease {
    pub name: Option<Raw<String>>,
    pub version: Option<Raw<Text>>,
    pub url: Option<Raw<String>>,
    pub sha1: Option<Raw<String>>,
    pub stemcell: Option<Raw<RawReleaseStemcell>>,
    pub exported_from: Option<Raw<Vec<Raw<RawReleaseStemcell>>>>,
    #[serde(flatten)]
    pub unknown: Mapping,
}

#[derive(Debug, Default, Deserialize)]
pub struct RawReleaseStemcell {
    pub os: Option<Raw<String>>,
    pub version: Option<Raw<Text>>,
    #[serde(flatten)]
    pub unknown: Mapping,
}

map_shaped!(RawRelease, RawReleaseStemcell);

/// An entry of `releases`.
#[derive(Debug, Clone, PartialEq)]
pub struct Release {
    pub path: YamlPath,
    pub name: String,
    pub version: Param<Version>,
    pub url: Option<String>,
    pub sha1: Option<String>,
    /// For a compiled release: the stemcell it was compiled against.
    pub stemcell: Option<ReleaseStemcell>,
    pub exported_from: Vec<ReleaseStemcell>,
}

/// `{os, version}` of a compiled release's stemcell.
#[derive(Debug, Clone, PartialEq)]
pub struct ReleaseStemcell {
    pub os: String,
    pub version: Param<Version>,
}

impl Release {
    pub(crate) fn read(r: &mut Reader, raw: RawRelease, at: &YamlPath) -> Option<Release> {
        r.unknown_keys(&raw.unknown, at);
        let name = r.name(raw.name, at, "name");
        let version = version(r, raw.version, at, "version");
        let url = r.string(raw.url, at.key("url"));
        let sha1 = r.string(raw.sha1, at.key("sha1"));
        let stemcell = match r.field(raw.stemcell, at.key("stemcell")) {
            Some(Param::Literal(s)) => ReleaseStemcell::read(r, s, &at.key("stemcell")),
            Some(Param::Var(var)) => {
                r.warn(at.key("stemcell"), ProblemKind::Unresolved { var });
                None
            }
            None => None,
        };
        let exported_from = r
            .entries(raw.exported_from, &at.key("exported_from"))
            .into_iter()
            .filter_map(|(p, s)| ReleaseStemcell::read(r, s, &p))
            .collect();
        Some(Release {
            path: at.clone(),
            name: name?,
            version: version.unwrap_or_else(Param::unknown),
            url,
            sha1,
            stemcell,
            exported_from,
        })
    }
}

impl ReleaseStemcell {
    fn read(r: &mut Reader, raw: RawReleaseStemcell, at: &YamlPath) -> Option<ReleaseStemcell> {
        r.unknown_keys(&raw.unknown, at);
        let os = r.name(raw.os, at, "os");
        let version = version(r, raw.version, at, "version");
        Some(ReleaseStemcell { os: os?, version: version.unwrap_or_else(Param::unknown) })
    }
}

/// Reads `releases`, reporting duplicate names.
pub(crate) fn read_releases(r: &mut Reader, raw: Option<Raw<Vec<Raw<RawRelease>>>>, at: &YamlPath) -> Vec<Release> {
    let mut names = Names::new();
    let mut out = Vec::new();
    for (path, raw) in r.entries(raw, at) {
        if let Some(release) = Release::read(r, raw, &path)
            && names.add(r, Item::Release, &release.name, &path)
        {
            out.push(release);
        }
    }
    out
}

// ---------------------------------------------------------------------------------------------
// jobs

#[derive(Debug, Default, Deserialize)]
pub struct RawJob {
    pub name: Option<Raw<String>>,
    pub release: Option<Raw<String>>,
    pub properties: Option<Raw<Mapping>>,
    pub consumes: Option<Raw<Mapping>>,
    pub provides: Option<Raw<Mapping>>,
    pub custom_provider_definitions: Option<Raw<Vec<Raw<RawCustomProvider>>>>,
    #[serde(flatten)]
    pub unknown: Mapping,
}

#[derive(Debug, Default, Deserialize)]
pub struct RawCustomProvider {
    pub name: Option<Raw<String>>,
    #[serde(rename = "type")]
    pub kind: Option<Raw<String>>,
    pub properties: Option<Raw<Vec<Raw<String>>>>,
    #[serde(flatten)]
    pub unknown: Mapping,
}

map_shaped!(RawJob, RawCustomProvider);

/// A release job placed on an instance group (or by an addon).
#[derive(Debug, Clone, PartialEq)]
pub struct Job {
    pub path: YamlPath,
    pub name: String,
    pub release: Param<String>,
    pub properties: Param<Mapping>,
    /// Link consumption as written (`{link: {from: …}}`, or `nil` to block); links are resolved
    /// elsewhere.
    pub consumes: Param<Mapping>,
    pub provides: Param<Mapping>,
    pub custom_provider_definitions: Vec<CustomProvider>,
}

/// A link the manifest makes a job provide without the release declaring it.
#[derive(Debug, Clone, PartialEq)]
pub struct CustomProvider {
    pub name: String,
    pub kind: String,
    pub properties: Param<Vec<String>>,
}

impl Job {
    pub(crate) fn read(r: &mut Reader, raw: RawJob, at: &YamlPath) -> Option<Job> {
        r.unknown_keys(&raw.unknown, at);
        let name = r.name(raw.name, at, "name");
        let release = match raw.release {
            None => {
                r.error(at.clone(), ProblemKind::MissingKey { key: "release" });
                None
            }
            some => r.reference(some, at.key("release")),
        };
        let properties = r.map(raw.properties, at.key("properties"));
        let consumes = r.map(raw.consumes, at.key("consumes"));
        let provides = r.map(raw.provides, at.key("provides"));
        let cpd_at = at.key("custom_provider_definitions");
        let mut custom_provider_definitions = Vec::new();
        for (path, raw) in r.entries(raw.custom_provider_definitions, &cpd_at) {
            r.unknown_keys(&raw.unknown, &path);
            let name = r.name(raw.name, &path, "name");
            let kind = r.name(raw.kind, &path, "type");
            let properties = r.strings(raw.properties, path.key("properties"));
            if let (Some(name), Some(kind)) = (name, kind) {
                custom_provider_definitions.push(CustomProvider { name, kind, properties });
            }
        }
        let release = release.unwrap_or_else(Param::unknown);
        Some(Job {
            path: at.clone(),
            name: name?,
            release,
            properties,
            consumes,
            provides,
            custom_provider_definitions,
        })
    }
}

/// Reads a `jobs` list, reporting jobs listed twice.
pub(crate) fn read_jobs(r: &mut Reader, raw: Option<Raw<Vec<Raw<RawJob>>>>, at: &YamlPath) -> Vec<Job> {
    let mut names = Names::new();
    let mut out = Vec::new();
    for (path, raw) in r.entries(raw, at) {
        if let Some(job) = Job::read(r, raw, &path)
            && names.add(r, Item::Job, &job.name, &path)
        {
            out.push(job);
        }
    }
    out
}

/// Reports every job whose release is not among `releases` (unresolved names are skipped).
pub(crate) fn check_job_releases<'a>(r: &mut Reader, jobs: impl IntoIterator<Item = &'a Job>, releases: &[Release]) {
    for job in jobs {
        if let Param::Literal(release) = &job.release
            && !releases.iter().any(|rel| &rel.name == release)
        {
            r.error(job.path.clone(), ProblemKind::UnknownReference { what: Item::Release, name: release.clone() });
        }
    }
}

// ---------------------------------------------------------------------------------------------
// lifecycle

/// What an instance group runs: a long-running service, or an errand run on demand.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Lifecycle {
    #[default]
    Service,
    Errand,
}

pub(crate) fn lifecycle(r: &mut Reader, raw: Option<Raw<String>>, at: YamlPath) -> Option<Param<Lifecycle>> {
    match r.field(raw, at.clone())? {
        Param::Var(v) => Some(Param::Var(v)),
        Param::Literal(text) => match text.as_str() {
            "service" => Some(Param::Literal(Lifecycle::Service)),
            "errand" => Some(Param::Literal(Lifecycle::Errand)),
            other => {
                r.invalid(at, format!("lifecycle '{other}' is not one of: service, errand"));
                None
            }
        },
    }
}

// ---------------------------------------------------------------------------------------------
// addons

#[derive(Debug, Default, Deserialize)]
pub struct RawAddon {
    pub name: Option<Raw<String>>,
    pub jobs: Option<Raw<Vec<Raw<RawJob>>>>,
    pub include: Option<Raw<RawPlacement>>,
    pub exclude: Option<Raw<RawPlacement>>,
    /// Addon-level properties: an old form bosh still reads.
    pub properties: Option<Raw<Mapping>>,
    #[serde(flatten)]
    pub unknown: Mapping,
}

#[derive(Debug, Default, Deserialize)]
pub struct RawPlacement {
    pub stemcell: Option<Raw<Vec<Raw<RawStemcellRule>>>>,
    pub deployments: Option<Raw<Vec<Raw<String>>>>,
    pub jobs: Option<Raw<Vec<Raw<RawJobRule>>>>,
    pub networks: Option<Raw<Vec<Raw<String>>>>,
    pub teams: Option<Raw<Vec<Raw<String>>>>,
    pub instance_groups: Option<Raw<Vec<Raw<String>>>>,
    pub azs: Option<Raw<Vec<Raw<String>>>>,
    pub lifecycle: Option<Raw<String>>,
    #[serde(flatten)]
    pub unknown: Mapping,
}

#[derive(Debug, Default, Deserialize)]
pub struct RawStemcellRule {
    pub os: Option<Raw<String>>,
    #[serde(flatten)]
    pub unknown: Mapping,
}

#[derive(Debug, Default, Deserialize)]
pub struct RawJobRule {
    pub name: Option<Raw<String>>,
    pub release: Option<Raw<String>>,
    #[serde(flatten)]
    pub unknown: Mapping,
}

map_shaped!(RawAddon, RawPlacement, RawStemcellRule, RawJobRule);

/// Jobs colocated on every instance the placement rules select.
#[derive(Debug, Clone, PartialEq)]
pub struct Addon {
    pub path: YamlPath,
    pub name: String,
    pub jobs: Vec<Job>,
    pub include: Option<Placement>,
    pub exclude: Option<Placement>,
    pub properties: Param<Mapping>,
}

/// `include` / `exclude` rules. Every list is an "any of"; rules that are given all have to
/// match. An unresolved list is kept as a variable.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Placement {
    /// Stemcell operating systems.
    pub stemcell: Vec<String>,
    pub deployments: Param<Vec<String>>,
    pub jobs: Vec<JobRule>,
    pub networks: Param<Vec<String>>,
    pub teams: Param<Vec<String>>,
    pub instance_groups: Param<Vec<String>>,
    pub azs: Param<Vec<String>>,
    pub lifecycle: Option<Param<Lifecycle>>,
}

/// `{name, release}` of a job placement rule.
#[derive(Debug, Clone, PartialEq)]
pub struct JobRule {
    pub name: String,
    pub release: String,
}

impl Addon {
    pub(crate) fn read(r: &mut Reader, raw: RawAddon, at: &YamlPath) -> Option<Addon> {
        r.unknown_keys(&raw.unknown, at);
        let name = r.name(raw.name, at, "name");
        if raw.jobs.is_none() {
            r.error(at.clone(), ProblemKind::MissingKey { key: "jobs" });
        }
        let jobs = read_jobs(r, raw.jobs, &at.key("jobs"));
        let include = Placement::read(r, raw.include, &at.key("include"));
        let exclude = Placement::read(r, raw.exclude, &at.key("exclude"));
        let properties = r.map(raw.properties, at.key("properties"));
        Some(Addon { path: at.clone(), name: name?, jobs, include, exclude, properties })
    }

    /// Whether this addon can apply to the deployment `name` by its `deployments` rules
    /// (unresolved rules count as "may apply").
    pub fn may_apply_to(&self, deployment: &str) -> bool {
        let listed = |p: &Option<Placement>| match p.as_ref().map(|p| &p.deployments) {
            Some(Param::Literal(names)) if !names.is_empty() => Some(names.iter().any(|n| n == deployment)),
            _ => None,
        };
        listed(&self.include) != Some(false) && listed(&self.exclude) != Some(true)
    }
}

impl Placement {
    fn read(r: &mut Reader, raw: Option<Raw<RawPlacement>>, at: &YamlPath) -> Option<Placement> {
        let raw = match r.field(raw, at.clone())? {
            Param::Literal(raw) => raw,
            Param::Var(var) => {
                r.warn(at.clone(), ProblemKind::Unresolved { var });
                return None;
            }
        };
        r.unknown_keys(&raw.unknown, at);
        let mut stemcell = Vec::new();
        for (path, rule) in r.entries(raw.stemcell, &at.key("stemcell")) {
            r.unknown_keys(&rule.unknown, &path);
            if let Some(os) = r.name(rule.os, &path, "os") {
                stemcell.push(os);
            }
        }
        let mut jobs = Vec::new();
        for (path, rule) in r.entries(raw.jobs, &at.key("jobs")) {
            r.unknown_keys(&rule.unknown, &path);
            let name = r.name(rule.name, &path, "name");
            let release = r.name(rule.release, &path, "release");
            if let (Some(name), Some(release)) = (name, release) {
                jobs.push(JobRule { name, release });
            }
        }
        Some(Placement {
            stemcell,
            deployments: r.strings(raw.deployments, at.key("deployments")),
            jobs,
            networks: r.strings(raw.networks, at.key("networks")),
            teams: r.strings(raw.teams, at.key("teams")),
            instance_groups: r.strings(raw.instance_groups, at.key("instance_groups")),
            azs: r.strings(raw.azs, at.key("azs")),
            lifecycle: lifecycle(r, raw.lifecycle, at.key("lifecycle")),
        })
    }
}

/// Reads `addons`, reporting duplicate addon names.
pub(crate) fn read_addons(r: &mut Reader, raw: Option<Raw<Vec<Raw<RawAddon>>>>, at: &YamlPath) -> Vec<Addon> {
    let mut names = Names::new();
    let mut out = Vec::new();
    for (path, raw) in r.entries(raw, at) {
        if let Some(addon) = Addon::read(r, raw, &path)
            && names.add(r, Item::Addon, &addon.name, &path)
        {
            out.push(addon);
        }
    }
    out
}

// ---------------------------------------------------------------------------------------------
// variables

#[derive(Debug, Default, Deserialize)]
pub struct RawVariable {
    pub name: Option<Raw<String>>,
    #[serde(rename = "type")]
    pub kind: Option<Raw<String>>,
    pub options: Option<Raw<Mapping>>,
    pub consumes: Option<Raw<Mapping>>,
    pub update_mode: Option<Raw<String>>,
    /// `update: {strategy: …}` (newer directors).
    pub update: Option<Raw<Mapping>>,
    #[serde(flatten)]
    pub unknown: Mapping,
}

map_shaped!(RawVariable);

/// The variable types bosh and CredHub generate.
pub const VARIABLE_TYPES: [&str; 7] = ["certificate", "password", "rsa", "ssh", "user", "json", "value"];

/// An entry of `variables`: what to generate when the value does not exist yet.
#[derive(Debug, Clone, PartialEq)]
pub struct Variable {
    pub path: YamlPath,
    pub name: String,
    pub kind: String,
    pub options: Param<Mapping>,
    /// Links feeding generation (`alternative_name: {from: …}`), as written.
    pub consumes: Param<Mapping>,
    pub update_mode: Option<Param<UpdateMode>>,
    pub update: Param<Mapping>,
}

/// How an existing credential is treated on deploy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum UpdateMode {
    NoOverwrite,
    Overwrite,
    Converge,
}

impl Variable {
    pub(crate) fn read(r: &mut Reader, raw: RawVariable, at: &YamlPath) -> Option<Variable> {
        r.unknown_keys(&raw.unknown, at);
        let name = r.name(raw.name, at, "name");
        let kind = r.name(raw.kind, at, "type");
        if let Some(kind) = &kind
            && !VARIABLE_TYPES.contains(&kind.as_str())
            && !super::param::has_var(kind)
        {
            r.invalid(at.key("type"), format!("variable type '{kind}' is not one of: {}", VARIABLE_TYPES.join(", ")));
        }
        let update_mode = match r.field(raw.update_mode, at.key("update_mode")) {
            None => None,
            Some(Param::Var(v)) => Some(Param::Var(v)),
            Some(Param::Literal(mode)) => match mode.as_str() {
                "no-overwrite" => Some(Param::Literal(UpdateMode::NoOverwrite)),
                "overwrite" => Some(Param::Literal(UpdateMode::Overwrite)),
                "converge" => Some(Param::Literal(UpdateMode::Converge)),
                other => {
                    r.invalid(
                        at.key("update_mode"),
                        format!("update_mode '{other}' is not one of: no-overwrite, overwrite, converge"),
                    );
                    None
                }
            },
        };
        let options = r.map(raw.options, at.key("options"));
        let consumes = r.map(raw.consumes, at.key("consumes"));
        let update = r.map(raw.update, at.key("update"));
        Some(Variable {
            path: at.clone(),
            name: name?,
            kind: kind.unwrap_or_default(),
            options,
            consumes,
            update_mode,
            update,
        })
    }
}

/// Reads `variables`, reporting duplicate names.
pub(crate) fn read_variables(r: &mut Reader, raw: Option<Raw<Vec<Raw<RawVariable>>>>, at: &YamlPath) -> Vec<Variable> {
    let mut names = Names::new();
    let mut out = Vec::new();
    for (path, raw) in r.entries(raw, at) {
        if let Some(variable) = Variable::read(r, raw, &path)
            && names.add(r, Item::Variable, &variable.name, &path)
        {
            out.push(variable);
        }
    }
    out
}

/// Reads `tags`: a map of names to scalar values.
pub(crate) fn read_tags(r: &mut Reader, raw: Option<Raw<Mapping>>, at: &YamlPath) -> Param<Mapping> {
    let tags = r.map(raw, at.clone());
    if let Param::Literal(map) = &tags {
        for (key, value) in map {
            if matches!(value, Value::Sequence(_) | Value::Mapping(_)) {
                let key = crate::manifest::yaml::scalar_text(key).unwrap_or_default();
                r.error(
                    at.key(key),
                    ProblemKind::WrongType { expected: "a string", found: super::raw::describe(value) },
                );
            }
        }
    }
    tags
}
