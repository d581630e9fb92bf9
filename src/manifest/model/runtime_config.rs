//! A runtime config: [`RawRuntimeConfig`] mirrors the YAML, [`RuntimeConfig`] is the model.
//!
//! Owns `releases`, `addons` (jobs with include/exclude placement rules), `tags` and
//! `variables`, and the rules inside one runtime config: names defined once, and a release
//! version given explicitly (bosh refuses `latest` here). Whether an addon job's release is
//! listed is decided across *all* runtime configs, which bosh merges before applying them, so it
//! is checked in [`super::validate`].

use serde::Deserialize;

use super::common::{
    Addon, RawAddon, RawRelease, RawVariable, Release, Variable, Version, read_addons, read_releases, read_tags,
    read_variables,
};
use super::param::Param;
use super::problem::{Document, Loaded, ModelError, Outcome, Problem};
use super::raw::{self, Raw, Reader, map_shaped};
use crate::manifest::yaml::{Mapping, Value, YamlPath};

#[derive(Debug, Default, Deserialize)]
pub struct RawRuntimeConfig {
    pub releases: Option<Raw<Vec<Raw<RawRelease>>>>,
    pub addons: Option<Raw<Vec<Raw<RawAddon>>>>,
    pub tags: Option<Raw<Mapping>>,
    pub variables: Option<Raw<Vec<Raw<RawVariable>>>>,
    #[serde(flatten)]
    pub unknown: Mapping,
}

map_shaped!(RawRuntimeConfig);

impl RawRuntimeConfig {
    /// Reads a parsed runtime config into its raw form; fails only when it is not a map.
    pub fn from_value(value: &Value, name: &str) -> Result<Self, Problem> {
        raw::document(value, &Document::RuntimeConfig(name.to_string()))
    }
}

/// A runtime config: addons and the releases they need, applied to every deployment.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct RuntimeConfig {
    pub releases: Vec<Release>,
    pub addons: Vec<Addon>,
    pub tags: Param<Mapping>,
    pub variables: Vec<Variable>,
}

impl RuntimeConfig {
    /// Reads a parsed runtime config named `name` (used in problems); any problem fails it.
    pub fn from_value(value: &Value, name: &str) -> Result<Loaded<RuntimeConfig>, ModelError> {
        Self::read(value, name).into_result()
    }

    /// Best-effort read: the model, every problem and every warning.
    pub fn read(value: &Value, name: &str) -> Outcome<RuntimeConfig> {
        match RawRuntimeConfig::from_value(value, name) {
            Ok(raw) => Self::from_raw(raw, name),
            Err(problem) => {
                let mut r = Reader::new(Document::RuntimeConfig(name.to_string()));
                r.push(problem);
                r.finish(RuntimeConfig::default())
            }
        }
    }

    /// Builds the model from its raw form.
    pub fn from_raw(raw: RawRuntimeConfig, name: &str) -> Outcome<RuntimeConfig> {
        let mut r = Reader::new(Document::RuntimeConfig(name.to_string()));
        let root = YamlPath::root();
        r.unknown_keys(&raw.unknown, &root);
        let releases = read_releases(&mut r, raw.releases, &root.key("releases"));
        for release in &releases {
            if release.version == Param::Literal(Version::Latest) {
                r.invalid(
                    release.path.key("version"),
                    format!(
                        "release '{}': a runtime config cannot use version 'latest'; give the version",
                        release.name
                    ),
                );
            }
        }
        let addons = read_addons(&mut r, raw.addons, &root.key("addons"));
        let tags = read_tags(&mut r, raw.tags, &root.key("tags"));
        let variables = read_variables(&mut r, raw.variables, &root.key("variables"));
        r.finish(RuntimeConfig { releases, addons, tags, variables })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::yaml::parse;

    #[test]
    fn a_runtime_config_reads_into_the_model() {
        let text = "
releases: [{name: bpm, version: 1.4.2, url: 'https://example/bpm', sha1: abc}]
addons:
- name: bpm
  jobs: [{name: bpm, release: bpm, properties: {}}]
  include: {deployments: [cf], stemcell: [{os: ubuntu-jammy}]}
  exclude: {instance_groups: [smoke-tests], lifecycle: errand}
tags: {owner: platform}
variables: [{name: /dns_ca, type: certificate, options: {is_ca: true}}]
";
        let outcome = RuntimeConfig::read(&parse(text, "rc.yml").unwrap(), "bpm");
        assert_eq!(outcome.problems, vec![]);
        let rc = outcome.model;
        assert_eq!(rc.releases[0].url.as_deref(), Some("https://example/bpm"));
        assert!(rc.addons[0].may_apply_to("cf"));
        assert!(!rc.addons[0].may_apply_to("concourse"));
        assert_eq!(rc.variables[0].kind, "certificate");
    }

    #[test]
    fn latest_and_duplicates_are_refused() {
        let text = "
releases: [{name: bpm, version: latest}, {name: bpm, version: 1}]
addons: [{name: a, jobs: []}, {name: a, jobs: []}]
";
        let problems: Vec<String> = RuntimeConfig::read(&parse(text, "rc.yml").unwrap(), "dns")
            .problems
            .iter()
            .map(|p| p.to_string())
            .collect();
        assert_eq!(
            problems,
            vec![
                "releases[1]: release 'bpm' is defined more than once (first at releases[0])",
                "releases[0].version: release 'bpm': a runtime config cannot use version 'latest'; give the version",
                "addons[1]: addon 'a' is defined more than once (first at addons[0])",
            ]
        );
    }
}
