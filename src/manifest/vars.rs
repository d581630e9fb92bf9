//! Where `((variable))` values come from.
//!
//! Owns the variable sources of `bosh interpolate` and their precedence: `-v` over `--var-file`
//! over `-l` (later files win) over `--vars-env` over the vars store; the `variables:` definitions
//! of a manifest; and the vars store, which holds generated values and generates a missing one
//! when its definition has a `type`. Parsing of flag values follows bosh: a `-v` value is parsed
//! as YAML (`-v ips=[10.0.0.1]` is an array, `-v port=80` an integer) unless YAML would only
//! give back a string, in which case the text is kept as typed (minus one pair of wrapping
//! quotes). No IO: the CLI reads files and the environment and passes their contents in; it
//! also writes the store back when [`VarsStore::changed`] says so.

use std::rc::Rc;

use super::generate::Generator;
use super::yaml::{self, Mapping, Value};

/// A `variables:` entry.
#[derive(Debug, Clone, PartialEq)]
pub struct VariableDefinition {
    pub name: String,
    /// `password`, `certificate`, `rsa`, `ssh`, or empty for a definition without a type.
    pub kind: String,
    pub options: Value,
}

impl VariableDefinition {
    pub fn untyped(name: &str) -> Self {
        Self { name: name.to_string(), kind: String::new(), options: Value::Null }
    }
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum VarsError {
    #[error("variables[{index}]: {message}")]
    Definition { index: usize, message: String },
    #[error("expected var '{arg}' to be in format 'name=value'")]
    KvFormat { arg: String },
    #[error("expected var '{arg}' to specify a non-empty {what}")]
    KvEmpty { arg: String, what: &'static str },
    #[error("var '{arg}': value is not valid YAML: {message}")]
    KvYaml { arg: String, message: String },
    #[error("{source_name}: expected a map of variable names to values, found {found}")]
    VarsFileShape { source_name: String, found: &'static str },
    #[error("environment variable {name}: value is not valid YAML: {message}")]
    EnvYaml { name: String, message: String },
    #[error("expected environment variable prefix to be non-empty")]
    EmptyEnvPrefix,
}

/// Reads the `variables:` section of a document. A missing or null section is empty.
pub fn definitions(doc: &Value) -> Result<Vec<VariableDefinition>, VarsError> {
    let section = match doc {
        Value::Mapping(map) => map.get("variables"),
        _ => None,
    };
    let items = match section {
        None | Some(Value::Null) => return Ok(Vec::new()),
        Some(Value::Sequence(items)) => items,
        Some(other) => {
            return Err(VarsError::Definition {
                index: 0,
                message: format!("expected an array, found {}", yaml::kind(other)),
            });
        }
    };
    let mut defs = Vec::with_capacity(items.len());
    for (index, item) in items.iter().enumerate() {
        let err = |message: String| VarsError::Definition { index, message };
        let Value::Mapping(map) = item else {
            return Err(err(format!("expected a map, found {}", yaml::kind(item))));
        };
        let name = match map.get("name") {
            Some(Value::String(s)) => s.clone(),
            Some(other) => yaml::scalar_text(other).ok_or_else(|| err("name must be a string".to_string()))?,
            None => return Err(err("missing name".to_string())),
        };
        let kind = match map.get("type") {
            None | Some(Value::Null) => String::new(),
            Some(Value::String(s)) => s.clone(),
            Some(other) => return Err(err(format!("type must be a string, found {}", yaml::kind(other)))),
        };
        let options = map.get("options").cloned().unwrap_or(Value::Null);
        defs.push(VariableDefinition { name, kind, options });
    }
    Ok(defs)
}

/// Parses a `-v NAME=VALUE` argument the way bosh does.
pub fn parse_var_kv(arg: &str) -> Result<(String, Value), VarsError> {
    let Some((name, raw)) = arg.split_once('=') else {
        return Err(VarsError::KvFormat { arg: arg.to_string() });
    };
    if name.is_empty() {
        return Err(VarsError::KvEmpty { arg: arg.to_string(), what: "name" });
    }
    if raw.is_empty() {
        return Err(VarsError::KvEmpty { arg: arg.to_string(), what: "value" });
    }
    let parsed: Value =
        serde_yaml_ng::from_str(raw).map_err(|e| VarsError::KvYaml { arg: arg.to_string(), message: e.to_string() })?;
    let value = match parsed {
        // YAML turned the text into a string (perhaps folding lines or dropping quotes): keep
        // what the operator typed instead, minus one pair of wrapping quotes.
        Value::String(_) => Value::String(trim_wrapping_quotes(raw).to_string()),
        Value::Null => Value::String(raw.to_string()),
        other => other,
    };
    Ok((name.to_string(), value))
}

fn trim_wrapping_quotes(s: &str) -> &str {
    let b = s.as_bytes();
    if b.len() >= 2 && ((b[0] == b'"' && b[b.len() - 1] == b'"') || (b[0] == b'\'' && b[b.len() - 1] == b'\'')) {
        &s[1..s.len() - 1]
    } else {
        s
    }
}

/// Splits a `--var-file NAME=PATH` argument.
pub fn parse_var_file_arg(arg: &str) -> Result<(String, String), VarsError> {
    let Some((name, path)) = arg.split_once('=') else {
        return Err(VarsError::KvFormat { arg: arg.to_string() });
    };
    if name.is_empty() {
        return Err(VarsError::KvEmpty { arg: arg.to_string(), what: "name" });
    }
    if path.is_empty() {
        return Err(VarsError::KvEmpty { arg: arg.to_string(), what: "path" });
    }
    Ok((name.to_string(), path.to_string()))
}

/// The variables of a `-l` file (or a vars store): a map of names to values; an empty file is
/// no variables.
pub fn vars_file(doc: Value, source_name: &str) -> Result<Mapping, VarsError> {
    match doc {
        Value::Null => Ok(Mapping::new()),
        Value::Mapping(map) => Ok(map),
        other => Err(VarsError::VarsFileShape { source_name: source_name.to_string(), found: yaml::kind(&other) }),
    }
}

/// The variables named `PREFIX_name` among `env`, values parsed as YAML.
pub fn vars_from_env(prefix: &str, env: impl IntoIterator<Item = (String, String)>) -> Result<Mapping, VarsError> {
    if prefix.is_empty() {
        return Err(VarsError::EmptyEnvPrefix);
    }
    let wanted = format!("{prefix}_");
    let mut out = Mapping::new();
    for (key, raw) in env {
        let Some(name) = key.strip_prefix(&wanted) else { continue };
        let value: Value = if raw.trim().is_empty() {
            Value::Null
        } else {
            serde_yaml_ng::from_str(&raw)
                .map_err(|e| VarsError::EnvYaml { name: key.clone(), message: e.to_string() })?
        };
        out.insert(Value::from(name), value);
    }
    Ok(out)
}

/// A vars store: values by name, plus a generator for what is missing.
pub struct VarsStore {
    values: Mapping,
    generator: Rc<Generator>,
    changed: bool,
}

impl VarsStore {
    pub fn new(values: Mapping) -> Self {
        Self { values, generator: Rc::new(Generator::new()), changed: false }
    }

    pub fn get(&self, name: &str) -> Option<&Value> {
        self.values.get(name)
    }

    pub fn contains(&self, name: &str) -> bool {
        self.values.contains_key(name)
    }

    pub fn insert(&mut self, name: &str, value: Value) {
        self.values.insert(Value::from(name), value);
        self.changed = true;
    }

    /// True when something was generated since the store was loaded.
    pub fn changed(&self) -> bool {
        self.changed
    }

    pub fn values(&self) -> &Mapping {
        &self.values
    }

    pub fn generator(&self) -> Rc<Generator> {
        Rc::clone(&self.generator)
    }
}

/// All variable sources of one evaluation, in precedence order.
pub struct Variables {
    /// `-v`, `--var-file`, `-l`, `--vars-env` merged with bosh's precedence.
    statics: Mapping,
    store: Option<VarsStore>,
}

/// Builder input: each source in the order the operator gave it.
#[derive(Default)]
pub struct Sources {
    pub vars_env: Vec<Mapping>,
    pub vars_files: Vec<Mapping>,
    pub var_files: Vec<(String, String)>,
    pub var_kvs: Vec<(String, Value)>,
}

impl Variables {
    pub fn new(sources: Sources, store: Option<VarsStore>) -> Self {
        let mut statics = Mapping::new();
        for map in sources.vars_env.into_iter().chain(sources.vars_files) {
            for (k, v) in map {
                statics.insert(k, v);
            }
        }
        for (k, v) in sources.var_files {
            statics.insert(Value::from(k), Value::String(v));
        }
        for (k, v) in sources.var_kvs {
            statics.insert(Value::from(k), v);
        }
        Self { statics, store }
    }

    pub fn static_value(&self, name: &str) -> Option<&Value> {
        self.statics.get(name)
    }

    pub fn store(&self) -> Option<&VarsStore> {
        self.store.as_ref()
    }

    pub fn store_mut(&mut self) -> Option<&mut VarsStore> {
        self.store.as_mut()
    }

    /// A value from any source, without generating.
    pub fn lookup(&self, name: &str) -> Option<&Value> {
        self.statics.get(name).or_else(|| self.store.as_ref().and_then(|s| s.get(name)))
    }

    /// Every name a source provides (for `--var-errs-unused`).
    pub fn provided_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.statics.keys().filter_map(yaml::scalar_text).collect();
        if let Some(store) = &self.store {
            names.extend(store.values.keys().filter_map(yaml::scalar_text));
        }
        names
    }

    pub fn into_store(self) -> Option<VarsStore> {
        self.store
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kv_values_are_yaml_unless_they_are_strings() {
        assert_eq!(
            parse_var_kv("ips=[10.0.16.4,10.0.47.5]").unwrap().1,
            yaml::parse("['10.0.16.4', '10.0.47.5']", "t").unwrap()
        );
        assert_eq!(parse_var_kv("port=8080").unwrap().1, Value::from(8080));
        assert_eq!(parse_var_kv("flag=true").unwrap().1, Value::Bool(true));
        assert_eq!(parse_var_kv("d=foo.bar.com").unwrap().1, Value::from("foo.bar.com"));
        assert_eq!(parse_var_kv("q='quoted'").unwrap().1, Value::from("quoted"));
        assert_eq!(parse_var_kv("eq=a=b").unwrap(), ("eq".to_string(), Value::from("a=b")));
        assert_eq!(parse_var_kv("r=1234-2024").unwrap().1, Value::from("1234-2024"));
        assert!(matches!(parse_var_kv("novalue"), Err(VarsError::KvFormat { .. })));
        assert!(matches!(parse_var_kv("=x"), Err(VarsError::KvEmpty { what: "name", .. })));
        assert!(matches!(parse_var_kv("x="), Err(VarsError::KvEmpty { what: "value", .. })));
    }

    #[test]
    fn precedence_is_kv_then_var_file_then_vars_files_then_env() {
        let map = |text: &str| vars_file(yaml::parse(text, "t").unwrap(), "t").unwrap();
        let sources = Sources {
            vars_env: vec![map("a: env\nb: env\nc: env\nd: env\ne: env")],
            vars_files: vec![map("a: l1\nb: l1\nc: l1\nd: l1"), map("a: l2\nb: l2\nc: l2")],
            var_files: vec![("a".into(), "file".into()), ("b".into(), "file".into())],
            var_kvs: vec![("a".into(), Value::from("kv"))],
        };
        let vars = Variables::new(sources, None);
        let got: Vec<_> =
            ["a", "b", "c", "d", "e"].iter().map(|n| vars.lookup(n).unwrap().as_str().unwrap().to_string()).collect();
        assert_eq!(got, ["kv", "file", "l2", "l1", "env"]);
    }

    #[test]
    fn env_vars_with_prefix() {
        let env = vec![("FOO_port".to_string(), "80".to_string()), ("BAR_x".to_string(), "y".to_string())];
        let vars = vars_from_env("FOO", env).unwrap();
        assert_eq!(vars.len(), 1);
        assert_eq!(vars.get("port"), Some(&Value::from(80)));
    }

    #[test]
    fn definitions_are_read_in_order() {
        let doc = yaml::parse("variables:\n- {name: b, type: password}\n- name: a\n  type: certificate\n  options: {is_ca: true}\n- {name: c}\n", "t").unwrap();
        let defs = definitions(&doc).unwrap();
        assert_eq!(defs.iter().map(|d| d.name.as_str()).collect::<Vec<_>>(), ["b", "a", "c"]);
        assert_eq!(defs[1].kind, "certificate");
        assert_eq!(defs[2].kind, "");
        let err = definitions(&yaml::parse("variables:\n- {type: password}\n", "t").unwrap()).unwrap_err();
        assert_eq!(err.to_string(), "variables[0]: missing name");
    }
}
