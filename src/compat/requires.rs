//! A release's declared requirements: the optional `requires:` block rosh defines for
//! `release.MF`, written by a release author in `config/requires.yml` of the release source
//! directory (see docs/compat.md).
//!
//! ```yaml
//! rosh: ">= 0.1.0"
//! releases:
//! - name: diego
//!   version: "~> 0.1476"
//! - name: garden-linux
//!   version: ">= 0.338.0"
//!   optional: true          # only checked when the deployment uses garden-linux
//! stemcells:                # any one entry must match each stemcell the release's jobs run on
//! - os: ubuntu-trusty
//!   version: ">= 3263"
//! ```
//!
//! Unknown keys are refused: a requirement this rosh cannot read must not be silently dropped.
//! Parsing names the file and the YAML path of the bad value; no IO here.

use serde::{Deserialize, Serialize};

use super::version::VersionRange;
use crate::release::manifest::{self, FormatError};

/// Where `create-release` reads a release's requirements from, relative to its source directory.
pub const SOURCE_PATH: &str = "config/requires.yml";

/// The `requires:` block.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Requires {
    /// The rosh versions that can deploy the release (`>= 0.2.0`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rosh: Option<VersionRange>,
    /// Other releases the deployment must use alongside this one.
    #[serde(default, deserialize_with = "null_default", skip_serializing_if = "Vec::is_empty")]
    pub releases: Vec<ReleaseRequirement>,
    /// The stemcells the release's jobs can run on: each stemcell must match one entry.
    #[serde(default, deserialize_with = "null_default", skip_serializing_if = "Vec::is_empty")]
    pub stemcells: Vec<StemcellRequirement>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReleaseRequirement {
    pub name: String,
    #[serde(default = "VersionRange::any")]
    pub version: VersionRange,
    /// `true`: checked only when the deployment uses that release.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub optional: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StemcellRequirement {
    /// The stemcell's `operating_system` (`ubuntu-jammy`); absent: any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub os: Option<String>,
    #[serde(default = "VersionRange::any")]
    pub version: VersionRange,
}

impl StemcellRequirement {
    pub fn matches(&self, os: &str, version: &super::version::Version) -> bool {
        self.os.as_deref().is_none_or(|wanted| wanted == os) && self.version.matches(version)
    }

    /// `ubuntu-jammy >= 1.406`, `any OS >= 2`.
    pub fn describe(&self) -> String {
        let os = self.os.as_deref().unwrap_or("any OS");
        if self.version.is_any() { os.to_string() } else { format!("{os} {}", self.version) }
    }
}

impl Requires {
    pub fn is_empty(&self) -> bool {
        self.rosh.is_none() && self.releases.is_empty() && self.stemcells.is_empty()
    }
}

/// Parses a requires document (`config/requires.yml`, or the block taken out of a release.MF).
pub fn parse(text: &str, source_name: &str) -> Result<Requires, FormatError> {
    manifest::parse(text, source_name)
}

fn null_default<'de, D: serde::Deserializer<'de>, T: Default + Deserialize<'de>>(d: D) -> Result<T, D::Error> {
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compat::version::Version;

    #[test]
    fn a_requires_document_reads_with_defaults() {
        let text = "rosh: '>= 0.1'\nreleases:\n- name: diego\n  version: ~> 0.1476\n- name: etcd\n  optional: true\nstemcells:\n- os: ubuntu-trusty\n  version: '>= 3263'\n- version: '>= 2'\n";
        let r = parse(text, "config/requires.yml").unwrap();
        assert!(r.rosh.as_ref().unwrap().matches(&Version::parse("0.1.0").unwrap()));
        assert!(r.releases[1].optional && r.releases[1].version.is_any());
        assert!(r.stemcells[0].matches("ubuntu-trusty", &Version::parse("3263.5").unwrap()));
        assert!(!r.stemcells[0].matches("ubuntu-xenial", &Version::parse("3263.5").unwrap()));
        assert!(r.stemcells[1].matches("ubuntu-xenial", &Version::parse("97.1").unwrap()));
        assert_eq!(r.stemcells[0].describe(), "ubuntu-trusty >= 3263");
        // Round trip through JSON, as the state keeps it.
        let json = serde_json::to_string(&r).unwrap();
        assert_eq!(serde_json::from_str::<Requires>(&json).unwrap(), r);
        assert!(parse("", "x").unwrap().is_empty());
    }

    #[test]
    fn errors_name_the_file_and_the_path() {
        let err =
            parse("releases:\n- name: diego\n  version: '>= 1,'\n", "config/requires.yml").unwrap_err().to_string();
        assert!(err.starts_with("config/requires.yml: releases[0].version: "), "{err}");
        let err = parse("stemcell:\n- os: x\n", "config/requires.yml").unwrap_err().to_string();
        assert!(err.contains("unknown field `stemcell`"), "{err}");
        let err = parse("releases:\n- version: '1'\n", "config/requires.yml").unwrap_err().to_string();
        assert!(err.contains("releases[0]: missing field `name`"), "{err}");
    }
}
