//! The raw layer: how a YAML value becomes a serde struct without losing a single problem.
//!
//! Every field of a raw struct (`RawDeployment`, `RawCloudConfig`, …, defined next to their
//! validated types) is an `Option<Raw<T>>`, and [`Raw`] never fails to deserialize: a value of
//! the expected shape is `Given`, a string holding a `((variable))` is `Var`, anything else is
//! kept as `Invalid`. So deserializing a document fails only when the document is not a map,
//! one bad value never hides the next, and the [`Reader`] that turns raw structs into the model
//! reports each bad value at its own YAML path. Keys a raw struct does not name land in its
//! flattened `unknown` map and become warnings.
//!
//! Where a number or a boolean is expected, the YAML 1.1 spellings that bosh's own parsers (Go
//! yaml.v2 in the CLI, Ruby Psych in the director) read as numbers and booleans are accepted,
//! because real manifests use them and a YAML 1.2 parser hands them over as strings:
//! `disk_size: 50_000`, `serial: no`.

use std::collections::HashMap;

use serde::de::{DeserializeOwned, Error as _};
use serde::{Deserialize, Deserializer};

use super::param::{Param, has_var};
use super::problem::{Document, Item, Outcome, Problem, ProblemKind};
use crate::manifest::yaml::{self, Mapping, Value, YamlPath};

/// One value as written: of the expected shape, a string holding a `((variable))`, or something
/// else.
#[derive(Debug, Clone, PartialEq)]
pub enum Raw<T> {
    Given(T),
    Var(String),
    Invalid(Value),
}

impl<'de, T: DeserializeOwned> Deserialize<'de> for Raw<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let value = Value::deserialize(deserializer)?;
        // `((count))` or `((min))-((max))` only has a type once interpolated.
        if let Value::String(text) = &value
            && has_var(text)
        {
            return Ok(Raw::Var(text.clone()));
        }
        match serde_yaml_ng::from_value::<T>(value.clone()) {
            Ok(given) => Ok(Raw::Given(given)),
            Err(_) => Ok(Raw::Invalid(value)),
        }
    }
}

/// What a type expects, for "expected …, found …" messages.
pub trait Shape {
    const EXPECTED: &'static str;
}

impl Shape for String {
    const EXPECTED: &'static str = "a string";
}
impl Shape for Mapping {
    const EXPECTED: &'static str = "a map";
}
impl Shape for Value {
    const EXPECTED: &'static str = "any value";
}
impl<T> Shape for Vec<T> {
    const EXPECTED: &'static str = "a list";
}

/// Declares raw structs as map-shaped.
macro_rules! map_shaped {
    ($($t:ty),* $(,)?) => {
        $(impl $crate::manifest::model::raw::Shape for $t {
            const EXPECTED: &'static str = "a map";
        })*
    };
}
pub(crate) use map_shaped;

/// A non-negative integer: a YAML integer, or a YAML 1.1 integer with `_` separators.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Int(pub u64);

impl Shape for Int {
    const EXPECTED: &'static str = "a non-negative integer";
}

impl<'de> Deserialize<'de> for Int {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let value = Value::deserialize(deserializer)?;
        int_of(&value).map(Int).ok_or_else(|| D::Error::custom("not an integer"))
    }
}

fn int_of(value: &Value) -> Option<u64> {
    match value {
        Value::Number(n) => n.as_u64(),
        // YAML 1.1 allows `_` between digits (`50_000`); a quoted "20480" stays a string for
        // bosh too, so only underscored digit strings are taken as numbers.
        Value::String(s)
            if s.contains('_')
                && s.starts_with(|c: char| c.is_ascii_digit())
                && s.chars().all(|c| c.is_ascii_digit() || c == '_') =>
        {
            s.replace('_', "").parse().ok()
        }
        _ => None,
    }
}

/// A boolean: YAML `true`/`false`, or YAML 1.1 `yes`/`no`/`on`/`off`/`y`/`n`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Flag(pub bool);

impl Shape for Flag {
    const EXPECTED: &'static str = "a boolean";
}

impl<'de> Deserialize<'de> for Flag {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let value = Value::deserialize(deserializer)?;
        match &value {
            Value::Bool(b) => Ok(Flag(*b)),
            Value::String(s) => match s.as_str() {
                "y" | "Y" | "yes" | "Yes" | "YES" | "on" | "On" | "ON" => Ok(Flag(true)),
                "n" | "N" | "no" | "No" | "NO" | "off" | "Off" | "OFF" => Ok(Flag(false)),
                _ => Err(D::Error::custom("not a boolean")),
            },
            _ => Err(D::Error::custom("not a boolean")),
        }
    }
}

/// A scalar read as text: a string, or a number written as digits (`version: 3` or `1.425`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Text(pub String);

impl Shape for Text {
    const EXPECTED: &'static str = "a string or a number";
}

impl<'de> Deserialize<'de> for Text {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let value = Value::deserialize(deserializer)?;
        match value {
            Value::String(s) => Ok(Text(s)),
            Value::Number(n) => Ok(Text(n.to_string())),
            _ => Err(D::Error::custom("not a string or number")),
        }
    }
}

/// Reads a whole document into its raw struct. `null` (an empty file) is an empty map.
pub fn document<R: DeserializeOwned + Default>(value: &Value, document: &Document) -> Result<R, Problem> {
    let problem = |kind| Problem { document: document.clone(), path: YamlPath::root(), kind };
    match value {
        Value::Null => Ok(R::default()),
        Value::Mapping(_) => serde_yaml_ng::from_value(value.clone())
            .map_err(|e| problem(ProblemKind::Invalid(format!("cannot read document: {e}")))),
        other => Err(problem(ProblemKind::WrongType { expected: "a map", found: describe(other) })),
    }
}

/// "a string ('abc')", "a list", … for messages.
pub fn describe(value: &Value) -> String {
    match value {
        // bosh operators say "list"; `yaml::kind` says "array".
        Value::Sequence(_) => "a list".to_string(),
        Value::Mapping(_) | Value::Null => yaml::kind(value).to_string(),
        other => {
            let text = yaml::scalar_text(other).unwrap_or_default();
            let short: String = text.chars().take(40).collect();
            let ellipsis = if text.chars().count() > 40 { "…" } else { "" };
            format!("{} ('{short}{ellipsis}')", yaml::kind(other))
        }
    }
}

/// Turns raw structs into the model, collecting problems and warnings for one document.
pub struct Reader {
    document: Document,
    problems: Vec<Problem>,
    warnings: Vec<Problem>,
}

impl Reader {
    pub fn new(document: Document) -> Self {
        Self { document, problems: Vec::new(), warnings: Vec::new() }
    }

    pub fn error(&mut self, path: YamlPath, kind: ProblemKind) {
        self.problems.push(Problem { document: self.document.clone(), path, kind });
    }

    pub fn invalid(&mut self, path: YamlPath, message: impl Into<String>) {
        self.error(path, ProblemKind::Invalid(message.into()));
    }

    pub fn warn(&mut self, path: YamlPath, kind: ProblemKind) {
        self.warnings.push(Problem { document: self.document.clone(), path, kind });
    }

    /// Whether a problem was already reported exactly at `path`.
    pub fn has_problem_at(&self, path: &YamlPath) -> bool {
        self.problems.iter().any(|p| &p.path == path)
    }

    pub fn finish<T>(self, model: T) -> Outcome<T> {
        Outcome { model, problems: self.problems, warnings: self.warnings }
    }

    /// Records a document that could not be read at all.
    pub fn push(&mut self, problem: Problem) {
        self.problems.push(problem);
    }

    /// Every key of `unknown` becomes a warning at `at.key`.
    pub fn unknown_keys(&mut self, unknown: &Mapping, at: &YamlPath) {
        for (key, _) in unknown {
            let key = yaml::scalar_text(key).unwrap_or_else(|| yaml::to_string(key).trim().to_string());
            self.warn(at.key(key.clone()), ProblemKind::UnknownKey { key });
        }
    }

    /// An optional field. Wrong shape: a problem at `at`, and `None`.
    pub fn field<T: Shape>(&mut self, raw: Option<Raw<T>>, at: YamlPath) -> Option<Param<T>> {
        match raw? {
            Raw::Given(value) => Some(Param::Literal(value)),
            Raw::Var(text) => Some(Param::Var(text)),
            Raw::Invalid(found) => {
                self.error(at, ProblemKind::WrongType { expected: T::EXPECTED, found: describe(&found) });
                None
            }
        }
    }

    /// A required field `key` of the map at `parent`.
    pub fn required<T: Shape>(
        &mut self,
        raw: Option<Raw<T>>,
        parent: &YamlPath,
        key: &'static str,
    ) -> Option<Param<T>> {
        if raw.is_none() {
            self.error(parent.clone(), ProblemKind::MissingKey { key });
            return None;
        }
        self.field(raw, parent.key(key))
    }

    /// A name that defines something (`name:` of an instance group, a vm_type, …): any string,
    /// variables included, kept as written.
    pub fn name(&mut self, raw: Option<Raw<String>>, parent: &YamlPath, key: &'static str) -> Option<String> {
        self.required(raw, parent, key).map(|p| match p {
            Param::Literal(s) | Param::Var(s) => s,
        })
    }

    /// An optional plain string (a URL, a sha1, an os name …), variables kept as written.
    pub fn string(&mut self, raw: Option<Raw<String>>, at: YamlPath) -> Option<String> {
        self.field(raw, at).map(|p| match p {
            Param::Literal(s) | Param::Var(s) => s,
        })
    }

    /// A reference to a name defined elsewhere.
    pub fn reference(&mut self, raw: Option<Raw<String>>, at: YamlPath) -> Option<Param<String>> {
        self.field(raw, at).map(|p| match p {
            Param::Literal(s) => Param::from_text(s),
            var => var,
        })
    }

    pub fn int(&mut self, raw: Option<Raw<Int>>, at: YamlPath) -> Option<Param<u64>> {
        self.field(raw, at).map(|p| p.map(|Int(n)| n))
    }

    pub fn flag(&mut self, raw: Option<Raw<Flag>>, at: YamlPath) -> Option<Param<bool>> {
        self.field(raw, at).map(|p| p.map(|Flag(b)| b))
    }

    /// A free-form map (`properties`, `cloud_properties`, `env`, …); absent is empty.
    pub fn map(&mut self, raw: Option<Raw<Mapping>>, at: YamlPath) -> Param<Mapping> {
        self.field(raw, at).unwrap_or_default()
    }

    /// A list of references (`azs`, `vm_extensions`, `static_ips`, …). A list with a malformed
    /// entry is reported and dropped whole, so that every index the checks report is the index
    /// written in the file.
    pub fn references(
        &mut self,
        raw: Option<Raw<Vec<Raw<String>>>>,
        at: YamlPath,
    ) -> Option<Param<Vec<Param<String>>>> {
        match self.field(raw, at.clone())? {
            Param::Var(text) => Some(Param::Var(text)),
            Param::Literal(entries) => {
                let mut out = Vec::with_capacity(entries.len());
                let mut broken = false;
                for (i, entry) in entries.into_iter().enumerate() {
                    match self.reference(Some(entry), at.index(i)) {
                        Some(r) => out.push(r),
                        None => broken = true,
                    }
                }
                (!broken).then_some(Param::Literal(out))
            }
        }
    }

    /// Like [`Reader::references`] for plain strings (placement rules, …), absent is empty.
    pub fn strings(&mut self, raw: Option<Raw<Vec<Raw<String>>>>, at: YamlPath) -> Param<Vec<String>> {
        match self.references(raw, at) {
            None => Param::Literal(Vec::new()),
            Some(p) => p.map(|v| v.into_iter().map(|s| s.text().to_string()).collect()),
        }
    }

    /// The entries of a list of maps, each with its path. An entry (or the whole list) that is
    /// an unresolved variable is skipped with a warning; a malformed one is a problem.
    pub fn entries<R: Shape>(&mut self, raw: Option<Raw<Vec<Raw<R>>>>, at: &YamlPath) -> Vec<(YamlPath, R)> {
        let list = match self.field(raw, at.clone()) {
            None => return Vec::new(),
            Some(Param::Var(var)) => {
                self.warn(at.clone(), ProblemKind::Unresolved { var });
                return Vec::new();
            }
            Some(Param::Literal(list)) => list,
        };
        let mut out = Vec::with_capacity(list.len());
        for (i, entry) in list.into_iter().enumerate() {
            match self.field(Some(entry), at.index(i)) {
                Some(Param::Literal(r)) => out.push((at.index(i), r)),
                Some(Param::Var(var)) => self.warn(at.index(i), ProblemKind::Unresolved { var }),
                None => {}
            }
        }
        out
    }
}

/// Finds names defined twice in one list; the first definition wins.
#[derive(Debug, Default)]
pub struct Names {
    seen: HashMap<String, YamlPath>,
}

impl Names {
    pub fn new() -> Self {
        Self::default()
    }

    /// Records `name` defined at `at`; reports a duplicate. Returns whether it was new.
    pub fn add(&mut self, reader: &mut Reader, what: Item, name: &str, at: &YamlPath) -> bool {
        if let Some(first) = self.seen.get(name) {
            reader.error(at.clone(), ProblemKind::Duplicate { what, name: name.to_string(), first: first.clone() });
            false
        } else {
            self.seen.insert(name.to_string(), at.clone());
            true
        }
    }
}
