//! The YAML documents of BOSH releases and stemcells, as typed values.
//!
//! Owns the shapes of: `release.MF` inside a release tarball (and the identical
//! `releases/<name>/<name>-<version>.yml` final-release files), `releases/<name>/index.yml` and
//! `.final_builds/**/index.yml`, `job.MF` inside a job tarball and the `jobs/<name>/spec` source
//! file it is made from, `packages/<name>/spec` source files, `config/final.yml`, and
//! `stemcell.MF`. Every reader is lenient the way bosh is — unknown keys are ignored, versions may
//! be integers or strings, `!binary` scalars (old release files) are decoded by
//! [`yaml::parse`] — and strict where a wrong value would mislead: a missing `name` or a job
//! whose `templates` is not a map is an error naming the file and the YAML path. No IO: callers
//! pass text and the name to blame.

use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer, Serialize};

use crate::manifest::yaml::{self, Value};

#[derive(Debug, thiserror::Error)]
pub enum FormatError {
    #[error(transparent)]
    Yaml(#[from] yaml::ParseError),
    #[error("{source_name}: {message}")]
    Invalid { source_name: String, message: String },
}

/// Parses `text` as `T`, naming `source_name` and the YAML path of the first bad value.
pub fn parse<T: for<'de> Deserialize<'de>>(text: &str, source_name: &str) -> Result<T, FormatError> {
    let value = yaml::parse(text, source_name)?;
    from_value(value, source_name)
}

/// As [`parse`], for a document already read.
pub fn from_value<T: for<'de> Deserialize<'de>>(value: Value, source_name: &str) -> Result<T, FormatError> {
    let value = if value.is_null() { Value::Mapping(Default::default()) } else { value };
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner().to_string();
        let message = if path == "." { inner } else { format!("{path}: {inner}") };
        FormatError::Invalid { source_name: source_name.to_string(), message }
    })
}

/// A version as BOSH writes it: `56.26.0`, `"207"`, `207`, `0+dev.3`, or a fingerprint.
/// Integers are kept as their decimal text.
pub fn de_version<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    let value = Value::deserialize(d)?;
    yaml::scalar_text(&value).ok_or_else(|| {
        serde::de::Error::custom(format!("version must be a string or number, found {}", yaml::kind(&value)))
    })
}

fn de_opt_version<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    let value = Option::<Value>::deserialize(d)?;
    match value {
        None | Some(Value::Null) => Ok(None),
        Some(v) => yaml::scalar_text(&v)
            .map(Some)
            .ok_or_else(|| serde::de::Error::custom(format!("expected a string or number, found {}", yaml::kind(&v)))),
    }
}

/// `null` or absent becomes the default (old specs write `dependencies:` with no value).
fn de_null_default<'de, D: Deserializer<'de>, T: Default + Deserialize<'de>>(d: D) -> Result<T, D::Error> {
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

/// One job, package or license entry of `release.MF`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReleaseArtifact {
    pub name: String,
    #[serde(deserialize_with = "de_version")]
    pub version: String,
    #[serde(deserialize_with = "de_version")]
    pub fingerprint: String,
    /// 40-hex SHA-1 or `sha256:<hex>` of the artifact's tarball.
    #[serde(deserialize_with = "de_version")]
    pub sha1: String,
    /// Packages only: names of the packages it depends on.
    #[serde(default, deserialize_with = "de_null_default", skip_serializing_if = "Vec::is_empty")]
    pub dependencies: Vec<String>,
    /// Jobs only (newer releases): the packages the job uses.
    #[serde(default, deserialize_with = "de_null_default", skip_serializing_if = "Vec::is_empty")]
    pub packages: Vec<String>,
}

/// A compiled package entry of a compiled release's `release.MF`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CompiledPackage {
    pub name: String,
    #[serde(deserialize_with = "de_version")]
    pub version: String,
    #[serde(deserialize_with = "de_version")]
    pub fingerprint: String,
    #[serde(deserialize_with = "de_version")]
    pub sha1: String,
    /// `os/version`, e.g. `ubuntu-jammy/1.406`.
    pub stemcell: String,
    #[serde(default, deserialize_with = "de_null_default", skip_serializing_if = "Vec::is_empty")]
    pub dependencies: Vec<String>,
}

/// `release.MF`, and the final-release file `releases/<name>/<name>-<version>.yml`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReleaseManifest {
    pub name: String,
    #[serde(deserialize_with = "de_version")]
    pub version: String,
    #[serde(default, deserialize_with = "de_opt_version", skip_serializing_if = "Option::is_none")]
    pub commit_hash: Option<String>,
    #[serde(default)]
    pub uncommitted_changes: bool,
    #[serde(default, deserialize_with = "de_null_default")]
    pub jobs: Vec<ReleaseArtifact>,
    #[serde(default, deserialize_with = "de_null_default")]
    pub packages: Vec<ReleaseArtifact>,
    #[serde(default, deserialize_with = "de_null_default", skip_serializing_if = "Vec::is_empty")]
    pub compiled_packages: Vec<CompiledPackage>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub license: Option<LicenseArtifact>,
    /// rosh's `requires:` block (docs/compat.md): other releases, stemcells and the rosh
    /// version this release needs. Absent from releases bosh-cli builds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requires: Option<crate::compat::Requires>,
}

/// The license entry of `release.MF` (no name).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LicenseArtifact {
    #[serde(deserialize_with = "de_version")]
    pub version: String,
    #[serde(deserialize_with = "de_version")]
    pub fingerprint: String,
    #[serde(deserialize_with = "de_version")]
    pub sha1: String,
}

/// `index.yml` of final releases (`builds: {id: {version}}`) and of `.final_builds` entries
/// (`builds: {fingerprint: {version, blobstore_id, sha1}}`).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct BuildIndex {
    #[serde(default, deserialize_with = "de_null_default")]
    pub builds: BTreeMap<String, BuildEntry>,
    /// Written `format-version` by bosh (`"2"`); `format_version` is read too.
    #[serde(
        default,
        rename = "format-version",
        alias = "format_version",
        deserialize_with = "de_opt_version",
        skip_serializing_if = "Option::is_none"
    )]
    pub format_version: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BuildEntry {
    #[serde(deserialize_with = "de_version")]
    pub version: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub blobstore_id: Option<String>,
    #[serde(default, deserialize_with = "de_opt_version", skip_serializing_if = "Option::is_none")]
    pub sha1: Option<String>,
}

/// A property a job declares.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct PropertyDefinition {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub example: Option<Value>,
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
}

/// A link a job consumes or provides.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LinkDefinition {
    pub name: String,
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default)]
    pub optional: bool,
    /// Provides only: the properties the link exposes.
    #[serde(default, deserialize_with = "de_null_default", skip_serializing_if = "Vec::is_empty")]
    pub properties: Vec<String>,
}

/// `jobs/<name>/spec` in a release source directory, and `job.MF` in a job tarball (the same
/// document, copied at build time).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobSpec {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Template source path (under `templates/`) → destination path in the rendered job.
    #[serde(default, deserialize_with = "de_null_default")]
    pub templates: BTreeMap<String, String>,
    #[serde(default, deserialize_with = "de_null_default")]
    pub packages: Vec<String>,
    #[serde(default, deserialize_with = "de_null_default")]
    pub properties: BTreeMap<String, PropertyDefinition>,
    #[serde(default, deserialize_with = "de_null_default", skip_serializing_if = "Vec::is_empty")]
    pub consumes: Vec<LinkDefinition>,
    #[serde(default, deserialize_with = "de_null_default", skip_serializing_if = "Vec::is_empty")]
    pub provides: Vec<LinkDefinition>,
}

/// `packages/<name>/spec` in a release source directory.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PackageSpec {
    pub name: String,
    #[serde(default, deserialize_with = "de_null_default")]
    pub dependencies: Vec<String>,
    /// Globs relative to `src/` (falling back to `blobs/`), bosh-cli style (`**` allowed).
    #[serde(default, deserialize_with = "de_null_default")]
    pub files: Vec<String>,
    #[serde(default, deserialize_with = "de_null_default", skip_serializing_if = "Vec::is_empty")]
    pub excluded_files: Vec<String>,
}

/// `config/final.yml` of a release source directory.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct FinalConfig {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub final_name: Option<String>,
    /// Older releases say `name:` instead of `final_name:`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub blobstore: Option<Value>,
}

impl FinalConfig {
    pub fn release_name(&self) -> Option<&str> {
        self.final_name.as_deref().or(self.name.as_deref())
    }
}

/// `stemcell.MF`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StemcellManifest {
    pub name: String,
    #[serde(deserialize_with = "de_version")]
    pub version: String,
    pub operating_system: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_version: Option<u32>,
    #[serde(default, deserialize_with = "de_opt_version", skip_serializing_if = "Option::is_none")]
    pub sha1: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bosh_protocol: Option<Value>,
    #[serde(default, deserialize_with = "de_null_default")]
    pub cloud_properties: serde_yaml_ng::Mapping,
    #[serde(default, deserialize_with = "de_null_default", skip_serializing_if = "Vec::is_empty")]
    pub stemcell_formats: Vec<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn release_manifest_with_sha256_and_int_versions() {
        let text = "name: nats\nversion: 56\ncommit_hash: 116b086\nuncommitted_changes: false\njobs:\n- name: nats\n  version: abc\n  fingerprint: abc\n  sha1: sha256:00ff\n  packages: [gnatsd]\npackages:\n- name: gnatsd\n  version: 1\n  fingerprint: def\n  sha1: 0123456789012345678901234567890123456789\n  dependencies:\nlicense:\n  version: l\n  fingerprint: l\n  sha1: s\n";
        let m: ReleaseManifest = parse(text, "release.MF").unwrap();
        assert_eq!(m.version, "56");
        assert_eq!(m.jobs[0].packages, ["gnatsd"]);
        assert_eq!(m.packages[0].version, "1");
        assert!(m.packages[0].dependencies.is_empty());
        assert_eq!(m.license.unwrap().sha1, "s");
    }

    #[test]
    fn binary_versions_of_old_release_files_are_decoded() {
        let text = "name: cf\nversion: '198'\npackages:\n- name: hm9000\n  version: !binary |-\n    Y2U1YjNh\n  fingerprint: x\n  sha1: y\n  dependencies: []\n";
        let m: ReleaseManifest = parse(text, "cf-198.yml").unwrap();
        assert_eq!(m.packages[0].version, "ce5b3a");
    }

    #[test]
    fn job_spec_errors_name_the_file() {
        let err = parse::<JobSpec>("name: j\ntemplates: [a, b]\n", "jobs/j/spec").unwrap_err().to_string();
        assert!(err.starts_with("jobs/j/spec: templates: invalid type"), "{err}");
        let err = parse::<JobSpec>("templates: {}\n", "jobs/j/spec").unwrap_err().to_string();
        assert!(err.contains("missing field `name`"), "{err}");
    }

    #[test]
    fn stemcell_manifest() {
        let text = "name: bosh-aws-xen-hvm-ubuntu-jammy-go_agent\nversion: 1.406\noperating_system: ubuntu-jammy\napi_version: 3\nsha1: abc\ncloud_properties:\n  ami:\n    us-east-1: ami-1\nstemcell_formats: [aws-light]\n";
        let m: StemcellManifest = parse(text, "stemcell.MF").unwrap();
        assert_eq!(m.version, "1.406");
        assert_eq!(m.api_version, Some(3));
        assert!(m.cloud_properties.contains_key("ami"));
    }
}
