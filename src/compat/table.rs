//! The compatibility table: sets of release versions known to work together, and sets declared
//! not to.
//!
//! rosh ships one (`known-sets.yml` beside this file, generated from
//! `../shared/corpus/compatibility/` by `tests/compat_table.rs`, which also fails when the two
//! drift apart), and an operator adds to it with `$ROSH_STATE_DIR/compatibility.yml` and
//! `--compat-table FILE`, merged over the shipped one (see docs/compat.md):
//!
//! ```yaml
//! tested:          # every pair of releases in one set was tested together
//! - releases: {cf: "238", diego: "0.1476.0"}
//!   source: diego-cf-compatibility
//! incompatible:    # all of these together are known to fail (version ranges allowed)
//! - releases: {cf: "207", diego: ">= 1.0.0"}
//!   reason: "diego 1.x needs the cc_bridge of cf v230+"
//! ```
//!
//! A tested set lists exact versions (facts); an incompatible set may use ranges (a
//! declaration). No IO here: files are read by the caller and handed in as text.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use super::version::{Version, VersionRange};
use crate::release::manifest::{self, FormatError};

/// The table rosh ships.
pub const SHIPPED: &str = include_str!("known-sets.yml");
pub const SHIPPED_NAME: &str = "src/compat/known-sets.yml";

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Table {
    #[serde(default)]
    pub tested: Vec<TestedSet>,
    #[serde(default)]
    pub incompatible: Vec<IncompatibleSet>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TestedSet {
    /// Release name → the version tested.
    pub releases: BTreeMap<String, Version>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IncompatibleSet {
    /// Release name → the versions that, together with the others, fail.
    pub releases: BTreeMap<String, VersionRange>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
}

/// One tested pair: `a`'s version with `b`'s.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct TestedPair {
    pub a: Version,
    pub b: Version,
}

impl Table {
    /// Parses a table, naming `source_name` and the YAML path of a bad value.
    pub fn parse(text: &str, source_name: &str) -> Result<Table, FormatError> {
        let table: Table = manifest::parse(text, source_name)?;
        let few = |kind: &str, i: usize| FormatError::Invalid {
            source_name: source_name.to_string(),
            message: format!("{kind}[{i}].releases: a set names at least two releases"),
        };
        if let Some(i) = table.tested.iter().position(|s| s.releases.len() < 2) {
            return Err(few("tested", i));
        }
        if let Some(i) = table.incompatible.iter().position(|s| s.releases.len() < 2) {
            return Err(few("incompatible", i));
        }
        Ok(table)
    }

    /// The table rosh ships.
    pub fn shipped() -> Table {
        Table::parse(SHIPPED, SHIPPED_NAME).expect("the shipped compatibility table parses (tests/compat_table.rs)")
    }

    /// Adds `other`'s sets to this table's.
    pub fn merge(&mut self, other: Table) {
        self.tested.extend(other.tested);
        self.incompatible.extend(other.incompatible);
    }

    /// Whether some tested set names both releases.
    pub fn knows_pair(&self, a: &str, b: &str) -> bool {
        self.tested.iter().any(|s| s.releases.contains_key(a) && s.releases.contains_key(b))
    }

    /// Every tested `(a version, b version)`, sorted, without repeats.
    pub fn tested_pairs(&self, a: &str, b: &str) -> Vec<TestedPair> {
        let pairs: BTreeSet<TestedPair> = self
            .tested
            .iter()
            .filter_map(|s| Some(TestedPair { a: s.releases.get(a)?.clone(), b: s.releases.get(b)?.clone() }))
            .collect();
        pairs.into_iter().collect()
    }

    /// The sources of the sets in which `a`@`va` and `b`@`vb` were tested together; empty when
    /// the pair is untested.
    pub fn sources_of(&self, a: &str, va: &Version, b: &str, vb: &Version) -> Vec<String> {
        let mut sources: Vec<String> = self
            .tested
            .iter()
            .filter(|s| s.releases.get(a) == Some(va) && s.releases.get(b) == Some(vb))
            .map(|s| s.source.clone().unwrap_or_else(|| "the compatibility table".to_string()))
            .collect();
        sources.dedup();
        sources
    }

    /// The incompatible sets every release of which `deployed` uses at a matching version.
    pub fn incompatible_in<'a>(&'a self, deployed: &BTreeMap<String, Version>) -> Vec<&'a IncompatibleSet> {
        self.incompatible
            .iter()
            .filter(|set| set.releases.iter().all(|(name, range)| deployed.get(name).is_some_and(|v| range.matches(v))))
            .collect()
    }
}

/// The versions of `pairs`' `a` nearest to `version`: itself when tested, and the next tested
/// ones below and above it.
pub fn neighbours(versions: impl IntoIterator<Item = Version>, version: &Version) -> Vec<Version> {
    let all: BTreeSet<Version> = versions.into_iter().collect();
    let mut out = Vec::new();
    if let Some(below) = all.range(..version.clone()).next_back() {
        out.push(below.clone());
    }
    if let Some(same) = all.get(version) {
        out.push(same.clone());
    }
    if let Some(above) = all.iter().find(|v| *v > version) {
        out.push(above.clone());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(text: &str) -> Version {
        Version::parse(text).unwrap()
    }

    #[test]
    fn shipped_table_parses_and_knows_cf_with_diego() {
        let table = Table::shipped();
        assert!(table.knows_pair("cf", "diego"));
        assert!(!table.sources_of("cf", &v("238"), "diego", &v("0.1476.0")).is_empty());
    }

    #[test]
    fn sets_need_two_releases_and_valid_ranges() {
        let err = Table::parse("tested:\n- releases: {cf: '1'}\n", "t.yml").unwrap_err().to_string();
        assert_eq!(err, "t.yml: tested[0].releases: a set names at least two releases");
        let err =
            Table::parse("incompatible:\n- releases: {cf: '1', diego: '>= '}\n", "t.yml").unwrap_err().to_string();
        assert!(err.starts_with("t.yml: incompatible[0].releases.diego: "), "{err}");
        let err = Table::parse("testd: []\n", "t.yml").unwrap_err().to_string();
        assert!(err.contains("unknown field `testd`"), "{err}");
    }

    #[test]
    fn incompatible_sets_match_all_their_releases() {
        let table = Table::parse("incompatible:\n- releases: {cf: '207', diego: '>= 1'}\n", "t").unwrap();
        let deployed = |d: &str| BTreeMap::from([("cf".to_string(), v("v207")), ("diego".to_string(), v(d))]);
        assert_eq!(table.incompatible_in(&deployed("1.0.0")).len(), 1);
        assert!(table.incompatible_in(&deployed("0.1099.0")).is_empty());
        assert!(table.incompatible_in(&BTreeMap::from([("cf".to_string(), v("207"))])).is_empty());
    }

    #[test]
    fn neighbours_are_the_nearest_tested_versions() {
        let tested = ["207", "208", "210", "238"].map(v);
        assert_eq!(neighbours(tested.clone(), &v("207")), [v("207"), v("208")]);
        assert_eq!(neighbours(tested.clone(), &v("209")), [v("208"), v("210")]);
        assert_eq!(neighbours(tested.clone(), &v("300")), [v("238")]);
        assert_eq!(neighbours(tested, &v("208")), [v("207"), v("208"), v("210")]);
    }
}
