//! Versions and version ranges as compatibility rules name them.
//!
//! Ordering is [`crate::plan::versions::compare_versions`] (BOSH's semi-semantic versions:
//! `238`, `0.1476.0`, `3421.11`, `1.0.0-rc.1`, `0+dev.3`), applied to a canonical form so that
//! the spellings operators use for one version compare equal: a leading `v` is dropped
//! (`v207` is `207`), numeric segments lose leading zeros, and trailing `.0` segments of the
//! release part are dropped (`1.0.0` is `1`, `0.1476.0` is `0.1476`).
//!
//! A range is one or more comma-separated constraints that must all hold, and `||` separates
//! alternatives: `>=1.2, <2`, `~> 0.1476`, `= 238`, `238` (exact), `!= 1.4.0`, `*` (any).
//! `~> X.Y` is the pessimistic operator of Ruby gems (and BOSH's own tooling): at least X.Y and
//! below the next value of its last-but-one segment (`~> 0.1476` is `>= 0.1476, < 1`,
//! `~> 1.2.3` is `>= 1.2.3, < 1.3`, `~> 3` is `>= 3, < 4`). No IO here.

use std::cmp::Ordering;
use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::plan::versions::compare_versions;

/// A version as written, ordered by its canonical form.
#[derive(Debug, Clone)]
pub struct Version {
    text: String,
    canonical: String,
}

impl Version {
    /// Any non-empty text without whitespace or commas is a version (BOSH accepts words too).
    pub fn parse(text: &str) -> Result<Version, String> {
        let text = text.trim();
        if text.is_empty() {
            return Err("a version cannot be empty".to_string());
        }
        if let Some(bad) =
            text.chars().find(|c| c.is_whitespace() || matches!(c, ',' | '|' | '<' | '>' | '=' | '~' | '!'))
        {
            return Err(format!("`{text}` is not a version (it contains `{bad}`)"));
        }
        Ok(Version { text: text.to_string(), canonical: canonical(text) })
    }

    /// The version as the operator wrote it.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The first segment of the canonical form: the stemcell line `1.406` and `1.500` share
    /// (`1`), and which `3421.11` and `3468.5` do not.
    pub fn major(&self) -> &str {
        let release = self.canonical.split(['-', '+']).next().unwrap_or("");
        release.split('.').next().unwrap_or("")
    }
}

impl PartialEq for Version {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Version {}

impl PartialOrd for Version {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Version {
    fn cmp(&self, other: &Self) -> Ordering {
        compare_versions(&self.canonical, &other.canonical)
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl Serialize for Version {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.text)
    }
}

impl<'de> Deserialize<'de> for Version {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = crate::release::manifest::de_version(d)?;
        Version::parse(&text).map_err(serde::de::Error::custom)
    }
}

/// `v207` → `207`, `01.20.0` → `1.20`, `1.0.0-rc.1` → `1-rc.1`.
fn canonical(text: &str) -> String {
    let text = match text.strip_prefix(['v', 'V']) {
        Some(rest) if rest.starts_with(|c: char| c.is_ascii_digit()) => rest,
        _ => text,
    };
    let (main, post) = match text.split_once('+') {
        Some((m, p)) => (m, Some(p)),
        None => (text, None),
    };
    let (release, pre) = match main.split_once('-') {
        Some((r, p)) => (r, Some(p)),
        None => (main, None),
    };
    let tidy = |part: &str| -> Vec<String> {
        part.split('.')
            .map(|s| match s.parse::<u128>() {
                Ok(n) => n.to_string(),
                Err(_) => s.to_string(),
            })
            .collect()
    };
    let mut segments = tidy(release);
    while segments.len() > 1 && segments.last().is_some_and(|s| s == "0") {
        segments.pop();
    }
    let mut out = segments.join(".");
    if let Some(pre) = pre {
        out.push('-');
        out.push_str(&tidy(pre).join("."));
    }
    if let Some(post) = post {
        out.push('+');
        out.push_str(&tidy(post).join("."));
    }
    out
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Eq,
    Ne,
    Gt,
    Ge,
    Lt,
    Le,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Constraint {
    op: Op,
    version: Version,
}

impl Constraint {
    fn holds(&self, v: &Version) -> bool {
        let ord = v.cmp(&self.version);
        match self.op {
            Op::Eq => ord == Ordering::Equal,
            Op::Ne => ord != Ordering::Equal,
            Op::Gt => ord == Ordering::Greater,
            Op::Ge => ord != Ordering::Less,
            Op::Lt => ord == Ordering::Less,
            Op::Le => ord != Ordering::Greater,
        }
    }
}

/// A set of versions: alternatives (`||`) of constraints that must all hold (`,`).
#[derive(Debug, Clone)]
pub struct VersionRange {
    text: String,
    alternatives: Vec<Vec<Constraint>>,
}

impl VersionRange {
    pub fn parse(text: &str) -> Result<VersionRange, String> {
        let trimmed = text.trim();
        if trimmed.is_empty() {
            return Err("a version range cannot be empty (use `*` for any version)".to_string());
        }
        let mut alternatives = Vec::new();
        for alternative in trimmed.split("||") {
            let mut constraints = Vec::new();
            for part in alternative.split(',') {
                constraints.extend(parse_constraint(part.trim()).map_err(|e| format!("`{trimmed}`: {e}"))?);
            }
            alternatives.push(constraints);
        }
        Ok(VersionRange { text: trimmed.to_string(), alternatives })
    }

    /// Every version.
    pub fn any() -> VersionRange {
        VersionRange { text: "*".to_string(), alternatives: vec![Vec::new()] }
    }

    pub fn matches(&self, version: &Version) -> bool {
        self.alternatives.iter().any(|all| all.iter().all(|c| c.holds(version)))
    }

    /// As written.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// True for `*`: any version.
    pub fn is_any(&self) -> bool {
        self.alternatives.iter().any(Vec::is_empty)
    }
}

impl PartialEq for VersionRange {
    fn eq(&self, other: &Self) -> bool {
        self.alternatives == other.alternatives
    }
}

impl fmt::Display for VersionRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl Serialize for VersionRange {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.text)
    }
}

impl<'de> Deserialize<'de> for VersionRange {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = crate::release::manifest::de_version(d)?;
        VersionRange::parse(&text).map_err(serde::de::Error::custom)
    }
}

fn parse_constraint(part: &str) -> Result<Vec<Constraint>, String> {
    if part.is_empty() {
        return Err("an empty constraint (a stray `,` or `||`?)".to_string());
    }
    if part == "*" {
        return Ok(Vec::new());
    }
    const OPERATORS: [(&str, Option<Op>); 8] = [
        ("~>", None), // pessimistic: a lower and an upper bound
        (">=", Some(Op::Ge)),
        ("<=", Some(Op::Le)),
        ("!=", Some(Op::Ne)),
        ("==", Some(Op::Eq)),
        (">", Some(Op::Gt)),
        ("<", Some(Op::Lt)),
        ("=", Some(Op::Eq)),
    ];
    let (op, rest) = OPERATORS
        .into_iter()
        .find_map(|(prefix, op)| part.strip_prefix(prefix).map(|rest| (op, rest)))
        .unwrap_or((Some(Op::Eq), part));
    let version = Version::parse(rest)?;
    match op {
        Some(op) => Ok(vec![Constraint { op, version }]),
        None => {
            let upper = pessimistic_upper(&version)?;
            Ok(vec![Constraint { op: Op::Ge, version }, Constraint { op: Op::Lt, version: upper }])
        }
    }
}

/// The exclusive upper bound of `~> version`.
fn pessimistic_upper(version: &Version) -> Result<Version, String> {
    let written = version.text.trim_start_matches(['v', 'V']);
    let written_release = written.split(['-', '+']).next().unwrap_or("");
    // The segments as written count (`~> 1.0` is `< 2`), not the canonical ones.
    let mut segments: Vec<&str> = written_release.split('.').collect();
    if segments.len() > 1 {
        segments.pop();
    }
    let last = segments.len() - 1;
    let bumped = segments[last]
        .parse::<u128>()
        .map_err(|_| format!("`~> {version}` needs a numeric segment to bump, found `{}`", segments[last]))?;
    let mut out: Vec<String> = segments.iter().map(|s| s.to_string()).collect();
    out[last] = (bumped + 1).to_string();
    Version::parse(&out.join("."))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(text: &str) -> Version {
        Version::parse(text).unwrap()
    }

    fn r(text: &str) -> VersionRange {
        VersionRange::parse(text).unwrap()
    }

    #[test]
    fn spellings_of_one_version_are_equal() {
        assert_eq!(v("v207"), v("207"));
        assert_eq!(v("1.0.0"), v("1"));
        assert_eq!(v("0.1476.0"), v("0.1476"));
        assert_eq!(v("01.2"), v("1.2"));
        assert!(v("0.1476.0") > v("0.1099.0"));
        assert!(v("1.0.0") > v("0.1489.0"));
        assert!(v("3421.11") < v("3468.5"));
        assert!(v("1.195.0") > v("1.99"));
        assert!(v("2.0.0-rc.1") < v("2.0.0"));
        assert_eq!(v("3421.11").major(), "3421");
        assert_eq!(v("v1.406").major(), "1");
    }

    #[test]
    fn ranges_match_like_their_operators_say() {
        let range = r(">=1.2, <2");
        assert!(range.matches(&v("1.2.0")) && range.matches(&v("1.99")));
        assert!(!range.matches(&v("2")) && !range.matches(&v("1.1.9")));
        assert!(r("*").matches(&v("anything")));
        assert!(r("238").matches(&v("v238")) && !r("238").matches(&v("239")));
        assert!(r("!= 1.4.0").matches(&v("1.4.1")) && !r("!= 1.4.0").matches(&v("1.4")));
        assert!(r("< 1 || >= 3").matches(&v("0.9")) && r("< 1 || >= 3").matches(&v("3")));
        assert!(!r("< 1 || >= 3").matches(&v("2")));
        assert!(r("> 0.1476.0").matches(&v("0.1476.1")) && !r("> 0.1476.0").matches(&v("0.1476")));
    }

    #[test]
    fn pessimistic_ranges_bump_the_last_but_one_segment() {
        let range = r("~> 0.1476");
        assert!(range.matches(&v("0.1476.0")) && range.matches(&v("0.1499.2")));
        assert!(!range.matches(&v("1.0.0")) && !range.matches(&v("0.1475.9")));
        let range = r("~> 1.2.3");
        assert!(range.matches(&v("1.2.9")) && !range.matches(&v("1.3.0")));
        let range = r("~>3");
        assert!(range.matches(&v("3.9")) && !range.matches(&v("4")));
        let range = r("~> 1.0");
        assert!(range.matches(&v("1.9")) && !range.matches(&v("2.0")));
    }

    #[test]
    fn bad_ranges_say_what_is_wrong() {
        assert!(VersionRange::parse("").unwrap_err().contains("empty"));
        assert!(VersionRange::parse(">=1,").unwrap_err().contains("stray"));
        assert!(VersionRange::parse(">= 1 2").unwrap_err().contains("not a version"));
        assert!(VersionRange::parse("~> abc").unwrap_err().contains("numeric"));
    }
}
