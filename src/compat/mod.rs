//! The compatibility gate: whether the versions a deployment combines are known to work
//! together, checked before anything is touched (by `plan`, `deploy` and `rosh compat check`).
//!
//! [`check`] is pure — it takes a [`CompatInput`] (the deployment's releases with their
//! [`Requires`], its stemcells, which group runs which releases on which stemcell through which
//! CPI, every CPI's `info`, the packages a group would take compiled, rosh's version and the
//! [`Table`]) and answers a [`CompatReport`] of errors, warnings and passed checks, each a
//! sentence an operator can act on. Gathering the input (state, CPIs, table files) is the CLI's
//! job (`src/cli/compat.rs`). The rules, in the order they are reported:
//!
//! 1. **Stemcell API vs CPI API.** A stemcell whose `api_version` is 2 or more has an agent that
//!    takes its settings from the CPI (BOSH's registry-less protocol), which only a CPI of API
//!    version 2 or more gives; a CPI of API v1 can drive only stemcells of API v1 (or none
//!    declared). The stemcell's `stemcell_formats` must also share one with the CPI's.
//! 2. **Compiled packages** without source run only on a stemcell of the OS and major version
//!    they were compiled for (`ubuntu-jammy/1.406` runs on `ubuntu-jammy/1.500`, not on `2.1`).
//! 3. **Declared requirements** of each release (other releases' ranges, the stemcells its jobs
//!    run on, the rosh version): unmet is an error.
//! 4. **The table.** A set declared incompatible that the deployment matches is an error. Two
//!    deployed releases that the table's tested sets name together are checked as a pair:
//!    tested passes; untested is a warning naming the nearest tested versions on both sides.
//!
//! With `skip_compat_check` every error is kept in [`CompatReport::bypassed`] instead, so the
//! caller proceeds and still says what it ignored.

pub mod requires;
pub mod table;
pub mod version;

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

pub use requires::Requires;
pub use table::Table;
pub use version::{Version, VersionRange};

/// Everything [`check`] looks at.
#[derive(Debug, Clone)]
pub struct CompatInput<'a> {
    pub releases: Vec<ReleaseInput>,
    pub stemcells: Vec<StemcellInput>,
    pub groups: Vec<GroupInput>,
    /// Each CPI's `info`, by its name in the CPI config.
    pub cpis: BTreeMap<String, rosh_cpi::Info>,
    pub compiled: Vec<CompiledInput>,
    /// This rosh (`env!("CARGO_PKG_VERSION")`).
    pub rosh_version: String,
    pub table: &'a Table,
    /// `--skip-compat-check`: errors become [`CompatReport::bypassed`].
    pub skip_compat_check: bool,
}

#[derive(Debug, Clone)]
pub struct ReleaseInput {
    pub name: String,
    pub version: String,
    pub requires: Option<Requires>,
}

#[derive(Debug, Clone)]
pub struct StemcellInput {
    pub name: String,
    pub os: String,
    pub version: String,
    /// `stemcell.MF`'s `api_version`; absent means 1.
    pub api_version: Option<u32>,
    pub formats: Vec<String>,
}

/// An instance group as far as compatibility goes.
#[derive(Debug, Clone)]
pub struct GroupInput {
    pub name: String,
    /// The stemcell's name and version (one of [`CompatInput::stemcells`]).
    pub stemcell: (String, String),
    /// The releases whose jobs it runs.
    pub releases: Vec<String>,
    /// The CPIs that make its VMs.
    pub cpis: Vec<String>,
}

/// A package a group would run, and what it could run from.
#[derive(Debug, Clone)]
pub struct CompiledInput {
    pub group: String,
    pub release: String,
    pub package: String,
    /// Whether the package's source is uploaded (then it is compiled for any stemcell).
    pub has_source: bool,
    /// `(os, stemcell version)` of every compiled build there is.
    pub compiled_for: Vec<(String, String)>,
}

/// Which rule a finding comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Rule {
    CpiApiVersion,
    StemcellFormat,
    CompiledPackage,
    Version,
    ReleaseRequires,
    StemcellRequires,
    RoshVersion,
    Incompatible,
    Untested,
    Tested,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    pub rule: Rule,
    pub message: String,
}

/// What [`check`] found.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct CompatReport {
    pub errors: Vec<Finding>,
    pub warnings: Vec<Finding>,
    /// Errors the caller chose to ignore (`--skip-compat-check`).
    pub bypassed: Vec<Finding>,
    /// Checks that passed worth showing (tested pairs).
    pub passed: Vec<Finding>,
}

impl CompatReport {
    /// No error (bypassed ones do not count).
    pub fn ok(&self) -> bool {
        self.errors.is_empty()
    }

    /// Every error as one message, for a caller that stops on them.
    pub fn error_message(&self) -> Option<String> {
        if self.errors.is_empty() {
            return None;
        }
        let lines: Vec<String> = self.errors.iter().map(|f| format!("  - {}", f.message)).collect();
        Some(format!("compatibility check failed:\n{}\n(deploy anyway with --skip-compat-check)", lines.join("\n")))
    }

    fn error(&mut self, rule: Rule, message: String) {
        self.errors.push(Finding { rule, message });
    }

    fn warning(&mut self, rule: Rule, message: String) {
        self.warnings.push(Finding { rule, message });
    }
}

/// The stemcell API versions this rosh knows; a higher one is warned about.
pub const KNOWN_STEMCELL_API: u32 = 3;

/// Checks a deployment (see the module documentation for the rules).
pub fn check(input: &CompatInput<'_>) -> CompatReport {
    let mut report = CompatReport::default();
    let releases = parsed_releases(input, &mut report);
    let stemcells: BTreeMap<(&str, &str), &StemcellInput> =
        input.stemcells.iter().map(|s| ((s.name.as_str(), s.version.as_str()), s)).collect();
    check_cpis(input, &stemcells, &mut report);
    check_compiled(input, &stemcells, &mut report);
    check_requires(input, &releases, &stemcells, &mut report);
    check_table(input, &releases, &mut report);
    if input.skip_compat_check {
        report.bypassed = std::mem::take(&mut report.errors);
    }
    report
}

fn parsed_releases(input: &CompatInput<'_>, report: &mut CompatReport) -> Vec<(String, Version)> {
    let mut out = Vec::new();
    for r in &input.releases {
        match Version::parse(&r.version) {
            Ok(v) => out.push((r.name.clone(), v)),
            Err(e) => report.error(Rule::Version, format!("release {}: {e}", r.name)),
        }
    }
    out
}

fn version_or_report(text: &str, what: &str, report: &mut CompatReport) -> Option<Version> {
    match Version::parse(text) {
        Ok(v) => Some(v),
        Err(e) => {
            report.error(Rule::Version, format!("{what}: {e}"));
            None
        }
    }
}

/// Rule 1: per (stemcell, CPI), the groups that would make such VMs.
fn check_cpis(input: &CompatInput<'_>, stemcells: &BTreeMap<(&str, &str), &StemcellInput>, report: &mut CompatReport) {
    let mut uses: BTreeMap<(&str, &str, &str), Vec<&str>> = BTreeMap::new();
    for group in &input.groups {
        for cpi in &group.cpis {
            uses.entry((group.stemcell.0.as_str(), group.stemcell.1.as_str(), cpi.as_str()))
                .or_default()
                .push(&group.name);
        }
    }
    let mut warned_api = BTreeSet::new();
    for ((name, version, cpi_name), groups) in uses {
        let groups = groups.join(", ");
        let Some(stemcell) = stemcells.get(&(name, version)) else {
            report.error(
                Rule::CpiApiVersion,
                format!("instance groups {groups}: stemcell {name}/{version} is not uploaded"),
            );
            continue;
        };
        let Some(cpi) = input.cpis.get(cpi_name) else {
            report.error(
                Rule::CpiApiVersion,
                format!("instance groups {groups}: CPI `{cpi_name}` did not say which API it speaks"),
            );
            continue;
        };
        let api = stemcell.api_version.unwrap_or(1);
        if api >= 2 && cpi.api_version < 2 {
            report.error(
                Rule::CpiApiVersion,
                format!(
                    "stemcell {name}/{version} has stemcell API version {api} (its agent takes its settings from the CPI, \
                     without a registry), but CPI `{cpi_name}` speaks CPI API version {} only, which cannot give them; \
                     instance groups {groups} would not boot (use a CPI of API version 2 or a stemcell of API version 1)",
                    cpi.api_version
                ),
            );
        }
        if api > KNOWN_STEMCELL_API && warned_api.insert((name, version)) {
            report.warning(
                Rule::CpiApiVersion,
                format!(
                    "stemcell {name}/{version} has stemcell API version {api}, newer than this rosh knows ({KNOWN_STEMCELL_API}); \
                     its agent may expect settings rosh does not give"
                ),
            );
        }
        if !stemcell.formats.is_empty()
            && !cpi.stemcell_formats.is_empty()
            && !stemcell.formats.iter().any(|f| cpi.stemcell_formats.contains(f))
        {
            report.error(
                Rule::StemcellFormat,
                format!(
                    "stemcell {name}/{version} comes in formats {} but CPI `{cpi_name}` takes {}; instance groups {groups} cannot use it",
                    stemcell.formats.join(", "),
                    cpi.stemcell_formats.join(", ")
                ),
            );
        }
    }
}

/// Rule 2.
fn check_compiled(
    input: &CompatInput<'_>,
    stemcells: &BTreeMap<(&str, &str), &StemcellInput>,
    report: &mut CompatReport,
) {
    let groups: BTreeMap<&str, &GroupInput> = input.groups.iter().map(|g| (g.name.as_str(), g)).collect();
    for use_ in input.compiled.iter().filter(|c| !c.has_source) {
        let Some(group) = groups.get(use_.group.as_str()) else { continue };
        let Some(stemcell) = stemcells.get(&(group.stemcell.0.as_str(), group.stemcell.1.as_str())) else { continue };
        let what = format!("instance group {}: package {} of release {}", use_.group, use_.package, use_.release);
        let Some(wanted) = version_or_report(&stemcell.version, &format!("stemcell {}", stemcell.name), report) else {
            continue;
        };
        let fits = use_.compiled_for.iter().any(|(os, version)| {
            os == &stemcell.os && Version::parse(version).is_ok_and(|v| v.major() == wanted.major())
        });
        if fits {
            continue;
        }
        let builds: Vec<String> = use_.compiled_for.iter().map(|(os, v)| format!("{os}/{v}")).collect();
        let has = if builds.is_empty() {
            "has neither source nor a compiled build".to_string()
        } else {
            format!("has no source and is compiled only for {}", builds.join(", "))
        };
        report.error(
            Rule::CompiledPackage,
            format!(
                "{what} {has}; it cannot run on stemcell {}/{} ({} {}): a compiled package needs the stemcell's OS and major version",
                stemcell.name, stemcell.version, stemcell.os, stemcell.version
            ),
        );
    }
}

/// Rule 3.
fn check_requires(
    input: &CompatInput<'_>,
    releases: &[(String, Version)],
    stemcells: &BTreeMap<(&str, &str), &StemcellInput>,
    report: &mut CompatReport,
) {
    let deployed: BTreeMap<&str, &Version> = releases.iter().map(|(n, v)| (n.as_str(), v)).collect();
    let rosh = Version::parse(&input.rosh_version).ok();
    for release in &input.releases {
        let Some(requires) = &release.requires else { continue };
        let me = format!("release {}/{}", release.name, release.version);
        if let (Some(range), Some(rosh)) = (&requires.rosh, &rosh)
            && !range.matches(rosh)
        {
            report.error(Rule::RoshVersion, format!("{me} requires rosh {range}, but this is rosh {rosh}"));
        }
        for wanted in &requires.releases {
            match deployed.get(wanted.name.as_str()) {
                None if wanted.optional => {}
                None => report.error(
                    Rule::ReleaseRequires,
                    format!(
                        "{me} requires release {} {}, which the deployment does not use",
                        wanted.name,
                        if wanted.version.is_any() { "(any version)".to_string() } else { wanted.version.to_string() }
                    ),
                ),
                Some(version) if !wanted.version.matches(version) => report.error(
                    Rule::ReleaseRequires,
                    format!(
                        "{me} requires release {} {}, but the deployment uses {}/{version}",
                        wanted.name, wanted.version, wanted.name
                    ),
                ),
                Some(_) => {}
            }
        }
        if requires.stemcells.is_empty() {
            continue;
        }
        // The stemcells this release's jobs run on, with the groups running them.
        let mut on: BTreeMap<(&str, &str), Vec<&str>> = BTreeMap::new();
        for group in input.groups.iter().filter(|g| g.releases.contains(&release.name)) {
            on.entry((group.stemcell.0.as_str(), group.stemcell.1.as_str())).or_default().push(&group.name);
        }
        for (key, groups) in on {
            let Some(stemcell) = stemcells.get(&key) else { continue };
            let Some(version) = version_or_report(&stemcell.version, &format!("stemcell {}", stemcell.name), report)
            else {
                continue;
            };
            if requires.stemcells.iter().any(|s| s.matches(&stemcell.os, &version)) {
                continue;
            }
            let wanted: Vec<String> = requires.stemcells.iter().map(|s| s.describe()).collect();
            report.error(
                Rule::StemcellRequires,
                format!(
                    "{me} requires a stemcell {}, but instance groups {} run its jobs on stemcell {}/{} ({} {})",
                    wanted.join(" or "),
                    groups.join(", "),
                    stemcell.name,
                    stemcell.version,
                    stemcell.os,
                    stemcell.version
                ),
            );
        }
    }
}

/// Rule 4.
fn check_table(input: &CompatInput<'_>, releases: &[(String, Version)], report: &mut CompatReport) {
    let table = input.table;
    let deployed: BTreeMap<String, Version> = releases.iter().cloned().collect();
    for set in table.incompatible_in(&deployed) {
        let named: Vec<String> = set.releases.keys().map(|n| format!("{n} {}", deployed[n])).collect();
        let mut message = format!("{} are declared incompatible", named.join(" with "));
        let declared: Vec<String> = set.releases.iter().map(|(n, r)| format!("{n} {r}")).collect();
        message.push_str(&format!(" (the compatibility table lists {}", declared.join(", ")));
        if let Some(reason) = &set.reason {
            message.push_str(&format!(": {reason}"));
        }
        if let Some(source) = &set.source {
            message.push_str(&format!("; source: {source}"));
        }
        message.push(')');
        report.error(Rule::Incompatible, message);
    }

    for (i, (a, va)) in releases.iter().enumerate() {
        for (b, vb) in &releases[i + 1..] {
            if a == b || !table.knows_pair(a, b) {
                continue;
            }
            let sources = table.sources_of(a, va, b, vb);
            if !sources.is_empty() {
                report.passed.push(Finding {
                    rule: Rule::Tested,
                    message: format!("{a} {va} with {b} {vb}: tested together ({})", sources.join("; ")),
                });
                continue;
            }
            let pairs = table.tested_pairs(a, b);
            let by_a = nearest(&pairs, va, |p| (&p.a, &p.b));
            let by_b = nearest(&pairs, vb, |p| (&p.b, &p.a));
            report.warning(
                Rule::Untested,
                format!(
                    "{a} {va} with {b} {vb} is not a tested pair in the compatibility table. Tested {b} versions for the nearest \
                     {a} versions: {}. Tested {a} versions for the nearest {b} versions: {}.",
                    describe(a, b, &by_a),
                    describe(b, a, &by_b)
                ),
            );
        }
    }
}

/// For the `key` side versions nearest `version`, every `other` side version tested with it.
fn nearest<'p>(
    pairs: &'p [table::TestedPair],
    version: &Version,
    sides: impl Fn(&'p table::TestedPair) -> (&'p Version, &'p Version),
) -> Vec<(Version, Vec<Version>)> {
    let keys = table::neighbours(pairs.iter().map(|p| sides(p).0.clone()), version);
    keys.into_iter()
        .map(|k| {
            let others: BTreeSet<Version> =
                pairs.iter().map(&sides).filter(|(x, _)| **x == k).map(|(_, o)| o.clone()).collect();
            (k, others.into_iter().collect())
        })
        .collect()
}

fn describe(key: &str, other: &str, found: &[(Version, Vec<Version>)]) -> String {
    if found.is_empty() {
        return "none".to_string();
    }
    found
        .iter()
        .map(|(k, others)| {
            let list: Vec<&str> = others.iter().map(Version::as_str).collect();
            format!("{key} {k} → {other} {}", list.join(", "))
        })
        .collect::<Vec<_>>()
        .join("; ")
}
