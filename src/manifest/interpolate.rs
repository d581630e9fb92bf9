//! `((variable))` interpolation, as `bosh interpolate` evaluates a document after its ops.
//!
//! Owns the walk over a document that replaces `((name))`, `((!name))` and `((name.key.sub))`:
//! a string that is exactly one reference takes the variable's value with its type (a map, a
//! list, an integer); a reference inside a longer string is replaced by its text, which only
//! strings and integers have. Map keys are interpolated too. Values are not re-interpolated.
//!
//! It also owns bosh's bookkeeping around that walk, because operators depend on it:
//! - every *typed* `variables:` definition is looked up first, in order, so a vars store generates
//!   all of them (and a definition's `options` are themselves interpolated; a certificate's `ca`
//!   is generated before the certificate even when it is defined later);
//! - afterwards the definitions whose values were found are removed from `variables:`;
//! - with `expect_all_found` (`--var-errs`) every missing variable is reported at once, each with
//!   the first place it is used; with `expect_all_used` (`--var-errs-unused`) every provided but
//!   unused variable is reported.
//!
//! Where bosh silently leaves a definition ungenerated because its options use a missing
//! variable, rosh reports that variable as missing. No IO: sources arrive in [`Variables`].

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::sync::LazyLock;

use regex::Regex;

use super::generate::key_length_for;
use super::patch::{self, Pointer, Token};
use super::vars::{self, VariableDefinition, Variables, VarsError};
use super::yaml::{self, Value};

// bosh's pattern, with Go's ASCII `\w` spelled out (Rust's `\w` is Unicode-aware).
static REFERENCE: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"\(\((!?[-/.0-9A-Za-z_\p{L}]+)\)\)").expect("valid regex"));
static WHOLE: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"\A\(\((!?[-/.0-9A-Za-z_\p{L}]+)\)\)\z").expect("valid regex"));

/// The names (with any `!`) of the `((name))` references in `text`, left to right, as
/// [`REFERENCE`] finds them. ASCII text is scanned by hand: building the Unicode-aware regex costs
/// more than a whole manifest's worth of scanning.
fn references(text: &str) -> Vec<&str> {
    if !text.is_ascii() {
        return REFERENCE.captures_iter(text).map(|c| c.get(1).expect("group 1").as_str()).collect();
    }
    let bytes = text.as_bytes();
    let name_byte = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'/' | b'.' | b'_');
    let mut names = Vec::new();
    let mut at = 0;
    while let Some(found) = text[at..].find("((") {
        let start = at + found + 2;
        let mut end = start;
        if bytes.get(end) == Some(&b'!') {
            end += 1;
        }
        let name_start = end;
        while end < bytes.len() && name_byte(bytes[end]) {
            end += 1;
        }
        if end > name_start && text[end..].starts_with("))") {
            names.push(&text[start..end]);
            at = end + 2;
        } else {
            at = start - 1;
        }
    }
    names
}

/// True when `text` is exactly one reference, `((name))` (what [`WHOLE`] matches).
fn is_whole_reference(text: &str) -> bool {
    if !text.is_ascii() {
        return WHOLE.is_match(text);
    }
    text.starts_with("((")
        && text.ends_with("))")
        && references(text).first().is_some_and(|n| n.len() + 4 == text.len())
}

/// How strict an evaluation is.
#[derive(Debug, Clone, Copy, Default)]
pub struct Options {
    /// `--var-errs`: every referenced or typed-defined variable must have a value.
    pub expect_all_found: bool,
    /// `--var-errs-unused`: every provided variable must be used.
    pub expect_all_used: bool,
}

/// A variable that had no value, and where it was first needed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Missing {
    pub name: String,
    /// A YAML path like `instance_groups[3].jobs[0].properties.x`, or `variables[4]` when only
    /// its definition needed it.
    pub first_use: String,
}

#[derive(Debug, thiserror::Error)]
pub enum InterpolateError {
    #[error(transparent)]
    Definitions(#[from] VarsError),
    #[error("{path}: finding variable '{name}': {cause}")]
    Lookup { name: String, path: String, cause: String },
    #[error(
        "{path}: invalid type '{kind}' for value of variable '{name}'; supported types for interpolation within a string are integers and strings"
    )]
    InvalidType { name: String, path: String, kind: &'static str },
    #[error("{path}: variable '{name}' depends on itself ({chain})")]
    Recursion { name: String, path: String, chain: String },
    #[error("generating variable '{name}' (type {kind}): {cause}")]
    Generate { name: String, kind: String, cause: String },
    #[error("{}", VarErrors { missing, unused })]
    Vars { missing: Vec<Missing>, unused: Vec<String> },
    #[error("removing found variable definitions: {0}")]
    Patch(#[from] patch::PatchError),
}

struct VarErrors<'a> {
    missing: &'a [Missing],
    unused: &'a [String],
}

impl fmt::Display for VarErrors<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if !self.missing.is_empty() {
            writeln!(f, "Expected to find variables:")?;
            for m in self.missing {
                writeln!(f, "  - {} (first used at {})", m.name, m.first_use)?;
            }
        }
        if !self.unused.is_empty() {
            writeln!(f, "Expected to use variables:")?;
            for name in self.unused {
                writeln!(f, "  - {name}")?;
            }
        }
        Ok(())
    }
}

/// Evaluates `doc`: generates what the vars store is missing, interpolates every reference,
/// drops the found definitions from `variables:`, and enforces `options`.
pub fn evaluate(doc: Value, vars: &mut Variables, options: &Options) -> Result<Value, InterpolateError> {
    let defs = vars::definitions(&doc)?;
    prefetch_keys(&defs, vars);
    let mut tracker = Tracker::new(vars, &defs);

    for (index, def) in defs.iter().enumerate() {
        if !def.kind.is_empty() {
            tracker.at_definition(index);
            tracker.get(&def.name)?;
        }
    }
    tracker.path.clear();
    let mut doc = tracker.interpolate(doc)?;

    let mut found = Vec::new();
    for (index, def) in defs.iter().enumerate() {
        tracker.at_definition(index);
        if tracker.get(&def.name)?.is_some() {
            found.push(def.name.clone());
        }
    }
    if !remove_definitions_at_once(&mut doc, &found) {
        // Some name is not exactly one definition (or the section changed shape): go through
        // go-patch, which reports that as bosh does.
        remove_definitions_one_by_one(&mut doc, found)?;
    }

    let missing: Vec<Missing> = if options.expect_all_found {
        tracker
            .missing
            .iter()
            .map(|(name, first_use)| Missing { name: name.clone(), first_use: first_use.clone() })
            .collect()
    } else {
        Vec::new()
    };
    let unused: Vec<String> = if options.expect_all_used {
        let mut names: Vec<String> =
            tracker.vars.provided_names().into_iter().filter(|n| !tracker.used.contains(n)).collect();
        names.sort();
        names.dedup();
        names
    } else {
        Vec::new()
    };
    if !missing.is_empty() || !unused.is_empty() {
        return Err(InterpolateError::Vars { missing, unused });
    }
    Ok(doc)
}

/// Drops the definitions named in `found` from `variables:` in one pass, when each name is
/// exactly one definition (what removing them one by one would do). False, and nothing changed,
/// otherwise.
fn remove_definitions_at_once(doc: &mut Value, found: &[String]) -> bool {
    if found.is_empty() {
        return true;
    }
    let Some(Value::Sequence(items)) = doc.as_mapping_mut().and_then(|m| m.get_mut("variables")) else {
        return false;
    };
    let wanted: HashSet<&str> = found.iter().map(String::as_str).collect();
    if wanted.len() != found.len() {
        return false;
    }
    let definition_of = |item: &Value| match item.get("name") {
        Some(Value::String(name)) => wanted.get(name.as_str()).copied(),
        _ => None,
    };
    let mut counts: HashMap<&str, usize> = HashMap::new();
    for item in items.iter() {
        if let Some(name) = definition_of(item) {
            *counts.entry(name).or_default() += 1;
        }
    }
    if wanted.iter().any(|name| counts.get(name) != Some(&1)) {
        return false;
    }
    items.retain(|item| definition_of(item).is_none());
    true
}

fn remove_definitions_one_by_one(doc: &mut Value, found: Vec<String>) -> Result<(), InterpolateError> {
    for name in found {
        let path = Pointer::from_tokens(vec![
            Token::Key { key: "variables".to_string(), optional: false },
            Token::Matching { key: "name".to_string(), value: name, optional: false, modifiers: Vec::new() },
        ]);
        patch::remove(doc, &path)?;
    }
    Ok(())
}

/// True when a string anywhere in `value` references variable `name` (as `((name))`,
/// `((!name))` or `((name.sub))`). Used to tell an operator which file introduced a reference.
pub fn mentions(value: &Value, name: &str) -> bool {
    match value {
        Value::String(s) => {
            s.contains("((")
                && REFERENCE.captures_iter(s).any(|c| {
                    let reference = c[1].trim_start_matches('!');
                    reference == name || reference.strip_prefix(name).is_some_and(|rest| rest.starts_with('.'))
                })
        }
        Value::Sequence(items) => items.iter().any(|v| mentions(v, name)),
        Value::Mapping(map) => map.iter().any(|(k, v)| mentions(k, name) || mentions(v, name)),
        Value::Tagged(t) => mentions(&t.value, name),
        _ => false,
    }
}

/// Starts key generation for every typed definition the store will have to generate, so the
/// generator can use all cores while the (sequential) walk proceeds.
fn prefetch_keys(defs: &[VariableDefinition], vars: &Variables) {
    let Some(store) = vars.store() else { return };
    let lengths: Vec<u32> = defs
        .iter()
        .filter(|d| !d.kind.is_empty() && vars.lookup(&d.name).is_none())
        .filter_map(|d| key_length_for(&d.kind, &d.options))
        .collect();
    if !lengths.is_empty() {
        store.generator().prefetch(&lengths);
    }
}

/// A key interpolation cannot change: a scalar other than a string, or a string without `((`.
fn inert_key(key: &Value) -> bool {
    match key {
        Value::Null | Value::Bool(_) | Value::Number(_) => true,
        Value::String(s) => !s.contains("(("),
        Value::Sequence(_) | Value::Mapping(_) | Value::Tagged(_) => false,
    }
}

enum Seg {
    Key(String),
    Index(usize),
}

struct Tracker<'a> {
    vars: &'a mut Variables,
    defs: &'a [VariableDefinition],
    /// Missing names with their first use, sorted by name for stable reports.
    missing: BTreeMap<String, String>,
    used: HashSet<String>,
    /// Definitions being resolved, to detect a definition that needs itself.
    resolving: Vec<String>,
    path: Vec<Seg>,
}

impl<'a> Tracker<'a> {
    fn new(vars: &'a mut Variables, defs: &'a [VariableDefinition]) -> Self {
        Self { vars, defs, missing: BTreeMap::new(), used: HashSet::new(), resolving: Vec::new(), path: Vec::new() }
    }

    fn at_definition(&mut self, index: usize) {
        self.path.clear();
        self.path.push(Seg::Key("variables".to_string()));
        self.path.push(Seg::Index(index));
    }

    fn location(&self) -> String {
        let mut p = yaml::YamlPath::root();
        for seg in &self.path {
            p = match seg {
                Seg::Key(k) => p.key(k.clone()),
                Seg::Index(i) => p.index(*i),
            };
        }
        p.to_string()
    }

    fn note_used(&mut self, name: &str) {
        if !self.used.contains(name) {
            self.used.insert(name.to_string());
        }
    }

    fn note_missing(&mut self, name: &str) {
        if !self.missing.contains_key(name) {
            let at = self.location();
            self.missing.insert(name.to_string(), at);
        }
    }

    /// The value of variable `name` (no `.key` suffix), generating it into the store when it
    /// has a typed definition. `None` when no source has it.
    fn get(&mut self, name: &str) -> Result<Option<Value>, InterpolateError> {
        self.note_used(name);
        if let Some(v) = self.vars.lookup(name) {
            return Ok(Some(v.clone()));
        }
        let defs = self.defs;
        let def = defs.iter().find(|d| d.name == name);
        let Some(def) = def.filter(|d| !d.kind.is_empty()) else {
            self.note_missing(name);
            return Ok(None);
        };
        let Some(generator) = self.vars.store().map(|s| s.generator()) else {
            self.note_missing(name);
            return Ok(None);
        };
        if self.resolving.iter().any(|n| n == name) {
            let mut chain = self.resolving.clone();
            chain.push(name.to_string());
            return Err(InterpolateError::Recursion {
                name: name.to_string(),
                path: self.location(),
                chain: chain.join(" -> "),
            });
        }

        self.resolving.push(name.to_string());
        let missing_before = self.missing.len();
        let result = self.generate(def, &generator);
        self.resolving.pop();
        let value = result?;
        if self.missing.len() > missing_before {
            // Its options use a variable nobody provided; that variable is reported instead.
            return Ok(None);
        }
        let value = value.expect("generated when nothing was missing");
        if let Some(store) = self.vars.store_mut() {
            store.insert(name, value.clone());
        }
        Ok(Some(value))
    }

    fn generate(
        &mut self,
        def: &VariableDefinition,
        generator: &super::generate::Generator,
    ) -> Result<Option<Value>, InterpolateError> {
        let missing_before = self.missing.len();
        let options = self.interpolate(def.options.clone())?;
        if self.missing.len() > missing_before {
            return Ok(None);
        }
        let mut lookup_error = None;
        let generated = generator.generate(&def.kind, &options, &mut |other: &str| match self.get(other) {
            Ok(v) => v,
            Err(e) => {
                lookup_error.get_or_insert(e);
                None
            }
        });
        if let Some(e) = lookup_error {
            return Err(e);
        }
        generated.map(Some).map_err(|e| InterpolateError::Generate {
            name: def.name.clone(),
            kind: def.kind.clone(),
            cause: e.to_string(),
        })
    }

    /// Resolves `name.key.sub` to the value at `/key/sub` inside variable `name`.
    fn lookup(&mut self, reference: &str) -> Result<Option<Value>, InterpolateError> {
        let mut parts = reference.split('.');
        let base = parts.next().unwrap_or_default();
        let rest: Vec<&str> = parts.collect();
        if rest.is_empty() {
            return self.get(base);
        }
        // A value a source already has is looked into in place: only the part asked for is copied.
        let generated;
        let value = if self.vars.lookup(base).is_some() {
            self.note_used(base);
            self.vars.lookup(base).expect("just found")
        } else {
            let Some(value) = self.get(base)? else { return Ok(None) };
            generated = value;
            &generated
        };
        let fail = |cause: String, path: String| InterpolateError::Lookup { name: reference.to_string(), path, cause };
        let pointer =
            Pointer::parse(&format!("/{}", rest.join("/"))).map_err(|e| fail(e.to_string(), self.location()))?;
        match patch::find(value, &pointer) {
            Ok(v) => Ok(Some(v)),
            Err(first) => {
                // `((creds.0))` may name a map key "0" rather than an index.
                let as_keys = Pointer::from_tokens(
                    pointer
                        .tokens()
                        .iter()
                        .map(|t| match t {
                            Token::Index { index, .. } => Token::Key { key: index.to_string(), optional: false },
                            other => other.clone(),
                        })
                        .collect(),
                );
                if as_keys == pointer {
                    return Err(fail(first.to_string(), self.location()));
                }
                patch::find(value, &as_keys).map(Some).map_err(|e| fail(e.to_string(), self.location()))
            }
        }
    }

    fn interpolate(&mut self, mut node: Value) -> Result<Value, InterpolateError> {
        self.interpolate_in_place(&mut node)?;
        Ok(node)
    }

    /// Interpolates `node` where it is: mappings are rebuilt only when a key changes.
    fn interpolate_in_place(&mut self, node: &mut Value) -> Result<(), InterpolateError> {
        match node {
            Value::Mapping(map) => {
                let mut renamed: Vec<(usize, Value)> = Vec::new();
                for (index, (key, value)) in map.iter_mut().enumerate() {
                    self.path.push(Seg::Key(yaml::scalar_text(key).unwrap_or_default()));
                    // Each value first, then its key, as bosh does (it decides which use of a
                    // missing variable is reported first).
                    let new_key = self
                        .interpolate_in_place(value)
                        .and_then(|()| if inert_key(key) { Ok(None) } else { self.interpolate(key.clone()).map(Some) });
                    self.path.pop();
                    if let Some(new_key) = new_key?
                        && new_key != *key
                    {
                        renamed.push((index, new_key));
                    }
                }
                if !renamed.is_empty() {
                    let mut renamed = renamed.into_iter().peekable();
                    let old = std::mem::take(map);
                    for (index, (key, value)) in old.into_iter().enumerate() {
                        let key = match renamed.next_if(|(at, _)| *at == index) {
                            Some((_, new_key)) => new_key,
                            None => key,
                        };
                        // A key renamed onto another keeps the first position and the last value.
                        map.insert(key, value);
                    }
                }
                Ok(())
            }
            Value::Sequence(items) => {
                for (i, item) in items.iter_mut().enumerate() {
                    self.path.push(Seg::Index(i));
                    let result = self.interpolate_in_place(item);
                    self.path.pop();
                    result?;
                }
                Ok(())
            }
            Value::String(s) => {
                if s.contains("((") {
                    let text = std::mem::take(s);
                    *node = self.interpolate_string(text)?;
                }
                Ok(())
            }
            Value::Tagged(tagged) => self.interpolate_in_place(&mut tagged.value),
            Value::Null | Value::Bool(_) | Value::Number(_) => Ok(()),
        }
    }

    fn interpolate_string(&mut self, text: String) -> Result<Value, InterpolateError> {
        if !text.contains("((") {
            return Ok(Value::String(text));
        }
        let names: Vec<String> =
            references(&text).into_iter().map(|name| name.trim_start_matches('!').to_string()).collect();
        let mut text = text;
        for name in names {
            let Some(found) = self.lookup(&name)? else { continue };
            if is_whole_reference(&text) {
                return Ok(found);
            }
            let rendered = match &found {
                Value::String(s) => s.clone(),
                Value::Number(n) if n.is_i64() || n.is_u64() => n.to_string(),
                other => {
                    return Err(InterpolateError::InvalidType { name, path: self.location(), kind: yaml::kind(other) });
                }
            };
            text = text.replace(&format!("(({name}))"), &rendered).replace(&format!("((!{name}))"), &rendered);
        }
        Ok(Value::String(text))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::vars::{Sources, VarsStore};
    use crate::manifest::yaml::Mapping;

    fn doc(text: &str) -> Value {
        yaml::parse(text, "t.yml").unwrap()
    }

    fn statics(kvs: &[(&str, &str)]) -> Variables {
        let var_kvs = kvs.iter().map(|(k, v)| (k.to_string(), doc(v))).collect();
        Variables::new(Sources { var_kvs, ..Default::default() }, None)
    }

    fn eval(text: &str, vars: &mut Variables, options: Options) -> Result<Value, InterpolateError> {
        evaluate(doc(text), vars, &options)
    }

    #[test]
    fn whole_values_keep_their_type_and_strings_embed() {
        let mut vars =
            statics(&[("port", "8080"), ("ips", "[a, b]"), ("host", "example.com"), ("m", "{k: {sub: deep}}")]);
        let out = eval(
            "p: ((port))\nl: ((ips))\nurl: https://((host)):((port))/x\nbang: ((!host))\ndeep: ((m.k.sub))\nleft: ((nope))\n",
            &mut vars,
            Options::default(),
        )
        .unwrap();
        assert_eq!(out["p"], Value::from(8080));
        assert_eq!(out["l"], doc("[a, b]"));
        assert_eq!(out["url"], Value::from("https://example.com:8080/x"));
        assert_eq!(out["bang"], Value::from("example.com"));
        assert_eq!(out["deep"], Value::from("deep"));
        assert_eq!(out["left"], Value::from("((nope))"));
    }

    #[test]
    fn keys_are_interpolated_in_place() {
        let mut vars = statics(&[("k", "renamed")]);
        let out = eval("a: 1\n((k)): 2\nz: 3\n", &mut vars, Options::default()).unwrap();
        assert_eq!(yaml::to_string(&out), "a: 1\nrenamed: 2\nz: 3\n");
    }

    #[test]
    fn maps_cannot_be_embedded_in_strings() {
        let mut vars = statics(&[("m", "{a: 1}")]);
        let err = eval("x:\n  y: pre-((m))\n", &mut vars, Options::default()).unwrap_err();
        assert_eq!(
            err.to_string(),
            "x.y: invalid type 'a map' for value of variable 'm'; supported types for interpolation within a string are integers and strings"
        );
    }

    #[test]
    fn missing_variables_are_reported_together_with_first_use() {
        let mut vars = statics(&[]);
        let err = eval(
            "a: ((zeta))\nlist:\n- ((alpha))\n- ((zeta))\n",
            &mut vars,
            Options { expect_all_found: true, ..Default::default() },
        )
        .unwrap_err();
        match &err {
            InterpolateError::Vars { missing, .. } => {
                assert_eq!(missing.len(), 2);
                assert_eq!(missing[0], Missing { name: "alpha".into(), first_use: "list[0]".into() });
                assert_eq!(missing[1], Missing { name: "zeta".into(), first_use: "a".into() });
            }
            other => panic!("{other}"),
        }
    }

    #[test]
    fn unused_variables_are_reported() {
        let mut vars = statics(&[("used", "1"), ("spare", "2")]);
        let err =
            eval("a: ((used))\n", &mut vars, Options { expect_all_used: true, ..Default::default() }).unwrap_err();
        assert_eq!(err.to_string(), "Expected to use variables:\n  - spare\n");
    }

    #[test]
    fn found_definitions_leave_the_variables_list() {
        let mut vars = statics(&[("given", "x")]);
        let out = eval(
            "a: ((given))\nvariables:\n- {name: given, type: password}\n- {name: other, type: password}\n",
            &mut vars,
            Options::default(),
        )
        .unwrap();
        assert_eq!(out["variables"], doc("[{name: other, type: password}]"));
    }

    #[test]
    fn typed_definitions_without_a_store_are_missing_under_var_errs() {
        let mut vars = statics(&[]);
        let err = eval(
            "variables:\n- {name: pw, type: password}\n",
            &mut vars,
            Options { expect_all_found: true, ..Default::default() },
        )
        .unwrap_err();
        assert!(err.to_string().contains("  - pw (first used at variables[0])"), "{err}");
    }

    #[test]
    fn sub_keys_that_do_not_exist_are_errors() {
        let mut vars = statics(&[("c", "{ca: x}")]);
        let err = eval("a: ((c.certificate))\n", &mut vars, Options::default()).unwrap_err();
        assert_eq!(
            err.to_string(),
            "a: finding variable 'c.certificate': Expected to find a map key 'certificate' for path '/certificate' (found map keys: 'ca')"
        );
    }

    #[test]
    fn numeric_sub_keys_fall_back_to_map_keys() {
        let mut vars = statics(&[("l", "[zero, one]"), ("m", "{'0': key-zero}")]);
        let out = eval("a: ((l.1))\nb: ((m.0))\n", &mut vars, Options::default()).unwrap();
        assert_eq!(out["a"], Value::from("one"));
        assert_eq!(out["b"], Value::from("key-zero"));
    }

    #[test]
    fn reference_scanner_agrees_with_the_regex() {
        for text in [
            "((a))",
            "x ((a)) y ((!b.c)) z",
            "(((a))",
            "((a)))",
            "((a b))",
            "(()) ((",
            "((a)((b))",
            "((!))((-/._9Z))",
            "(((!x)))",
            "((a))((b))",
            "a(( b ))",
            "((é))",
            "pre((ß.x))post",
        ] {
            let slow: Vec<&str> = REFERENCE.captures_iter(text).map(|c| c.get(1).unwrap().as_str()).collect();
            assert_eq!(references(text), slow, "{text}");
            assert_eq!(is_whole_reference(text), WHOLE.is_match(text), "{text}");
        }
    }

    #[test]
    fn store_values_are_used_and_statics_win() {
        let mut store_map = Mapping::new();
        store_map.insert(Value::from("a"), Value::from("from-store"));
        store_map.insert(Value::from("b"), Value::from("from-store"));
        let sources = Sources { var_kvs: vec![("a".into(), Value::from("from-flag"))], ..Default::default() };
        let mut vars = Variables::new(sources, Some(VarsStore::new(store_map)));
        let out = eval("a: ((a))\nb: ((b))\n", &mut vars, Options::default()).unwrap();
        assert_eq!(out["a"], Value::from("from-flag"));
        assert_eq!(out["b"], Value::from("from-store"));
        assert!(!vars.store().unwrap().changed());
    }
}
