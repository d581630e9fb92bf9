//! YAML documents as rosh reads and writes them.
//!
//! Owns the generic document tree ([`Value`], insertion-ordered mappings), turning text into it
//! and back, and the small conventions every manifest reader shares: an empty document is
//! `null`; anchors and aliases become independent copies (the tree holds no shared nodes, so an
//! op applied to one copy never changes another); `<<` merge keys are applied; `!binary`
//! (and `!!binary`) scalars are base64-decoded into strings, as bosh's Go YAML library does for
//! old release indexes. [`YamlPath`] renders the `instance_groups[2].jobs[0]` paths used in
//! every error. No IO here: callers hand in text and a name to blame.

use std::fmt;

use base64::Engine;

mod emit;
mod fast;
pub use serde_yaml_ng::{Mapping, Number, Value};

/// A YAML text could not be read. Names the source (usually a file path) and, where the parser
/// knows it, the line and column.
#[derive(Debug, thiserror::Error)]
#[error("{source_name}: {message}")]
pub struct ParseError {
    pub source_name: String,
    pub message: String,
}

/// Parses one YAML document. `source_name` is only used in errors.
pub fn parse(text: &str, source_name: &str) -> Result<Value, ParseError> {
    let err = |message: String| ParseError { source_name: source_name.to_string(), message };
    if text.trim().is_empty() {
        return Ok(Value::Null);
    }
    // The fast reader takes the everyday subset; anything else, errors included, is libyaml's.
    let mut value: Value = match fast::parse(text) {
        Some(value) => value,
        None => serde_yaml_ng::from_str(text).map_err(|e| err(describe(&e)))?,
    };
    value.apply_merge().map_err(|e| err(format!("merge key (<<): {e}")))?;
    decode_binary(&mut value).map_err(err)?;
    Ok(value)
}

fn describe(e: &serde_yaml_ng::Error) -> String {
    match e.location() {
        Some(loc) => {
            let text = e.to_string();
            // serde_yaml appends " at line L column C" itself; keep one copy of the location.
            let trimmed = text.split(" at line ").next().unwrap_or(&text);
            format!("line {} column {}: {}", loc.line(), loc.column(), trimmed)
        }
        None => e.to_string(),
    }
}

fn decode_binary(value: &mut Value) -> Result<(), String> {
    match value {
        Value::Tagged(tagged) => {
            let tag = tagged.tag.to_string();
            if matches!(tag.as_str(), "!binary" | "!!binary" | "tag:yaml.org,2002:binary") {
                let Value::String(encoded) = &tagged.value else {
                    return Err(format!("{tag} value is not a string"));
                };
                let compact: String = encoded.split_whitespace().collect();
                let bytes = base64::engine::general_purpose::STANDARD
                    .decode(compact.as_bytes())
                    .map_err(|e| format!("{tag} value is not base64: {e}"))?;
                let text = String::from_utf8_lossy(&bytes).into_owned();
                *value = Value::String(text);
            } else {
                decode_binary(&mut tagged.value)?;
            }
        }
        Value::Sequence(items) => {
            for item in items {
                decode_binary(item)?;
            }
        }
        Value::Mapping(map) => {
            for (_, item) in map.iter_mut() {
                decode_binary(item)?;
            }
        }
        _ => {}
    }
    Ok(())
}

/// Renders a document as YAML text the way `bosh interpolate` prints it: block style, keys in
/// the order they have, sequences not indented under their key.
pub fn to_string(value: &Value) -> String {
    if let Some(text) = emit::emit(value) {
        return text;
    }
    match serde_yaml_ng::to_string(value) {
        Ok(text) => text,
        // Only non-string map keys that serde cannot express fail; every tree parsed from YAML
        // text serializes.
        Err(e) => format!("# unprintable document: {e}\n"),
    }
}

/// A JSON value as YAML (numbers, strings, maps and lists as they are).
pub fn from_json(value: &serde_json::Value) -> Value {
    serde_yaml_ng::to_value(value).unwrap_or(Value::Null)
}

/// Renders a document as JSON (mapping keys become strings).
pub fn to_json(value: &Value) -> serde_json::Value {
    match value {
        Value::Null => serde_json::Value::Null,
        Value::Bool(b) => serde_json::Value::Bool(*b),
        Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                serde_json::Value::from(i)
            } else if let Some(u) = n.as_u64() {
                serde_json::Value::from(u)
            } else {
                n.as_f64().map(serde_json::Value::from).unwrap_or(serde_json::Value::Null)
            }
        }
        Value::String(s) => serde_json::Value::String(s.clone()),
        Value::Sequence(items) => serde_json::Value::Array(items.iter().map(to_json).collect()),
        Value::Mapping(map) => serde_json::Value::Object(
            map.iter()
                .map(|(k, v)| (scalar_text(k).unwrap_or_else(|| to_string(k).trim().to_string()), to_json(v)))
                .collect(),
        ),
        Value::Tagged(tagged) => to_json(&tagged.value),
    }
}

/// The text of a scalar as it would appear inside a string (`42`, `true`, `abc`); `None` for
/// null, sequences and mappings.
pub fn scalar_text(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        Value::Tagged(t) => scalar_text(&t.value),
        Value::Null | Value::Sequence(_) | Value::Mapping(_) => None,
    }
}

/// A short name for a value's kind, for error messages.
pub fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Sequence(_) => "an array",
        Value::Mapping(_) => "a map",
        Value::Tagged(_) => "a tagged value",
    }
}

/// Looks a string key up in a mapping.
pub fn get<'a>(map: &'a Mapping, key: &str) -> Option<&'a Value> {
    map.get(key)
}

/// A location inside a document, rendered `instance_groups[2].jobs[0].name`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct YamlPath(Vec<Segment>);

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Segment {
    Key(String),
    Index(usize),
}

impl YamlPath {
    pub fn root() -> Self {
        Self(Vec::new())
    }

    pub fn key(&self, key: impl Into<String>) -> Self {
        let mut next = self.clone();
        next.0.push(Segment::Key(key.into()));
        next
    }

    pub fn index(&self, index: usize) -> Self {
        let mut next = self.clone();
        next.0.push(Segment::Index(index));
        next
    }

    pub fn is_root(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Display for YamlPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            return f.write_str("(document root)");
        }
        for (i, segment) in self.0.iter().enumerate() {
            match segment {
                Segment::Key(k) if i == 0 => write!(f, "{k}")?,
                Segment::Key(k) => write!(f, ".{k}")?,
                Segment::Index(n) => write!(f, "[{n}]")?,
            }
        }
        Ok(())
    }
}

/// Every `.yml`/`.yaml` file of `../shared/corpus`, for the tests that hold the YAML layer to
/// real documents.
#[cfg(test)]
fn corpus_yaml_files() -> Vec<std::path::PathBuf> {
    let mut stack = vec![std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/corpus")];
    let mut files = Vec::new();
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else { continue };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "yml" || e == "yaml") {
                files.push(path);
            }
        }
    }
    files
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aliases_are_independent_copies() {
        let mut doc = parse("a: &x {k: 1}\nb: *x\n", "t.yml").unwrap();
        doc["a"]["k"] = Value::from(2);
        assert_eq!(doc["b"]["k"], Value::from(1));
    }

    #[test]
    fn binary_scalars_are_decoded() {
        let doc = parse("version: !binary |-\n  Y2U1YjNh\n", "t.yml").unwrap();
        assert_eq!(doc["version"], Value::from("ce5b3a"));
    }

    #[test]
    fn key_order_is_kept() {
        let doc = parse("zeta: 1\nalpha: 2\nmid: 3\n", "t.yml").unwrap();
        assert_eq!(to_string(&doc), "zeta: 1\nalpha: 2\nmid: 3\n");
    }

    #[test]
    fn empty_and_comment_only_documents_are_null() {
        assert_eq!(parse("", "t.yml").unwrap(), Value::Null);
        assert_eq!(parse("# nothing\n---\n", "t.yml").unwrap(), Value::Null);
    }

    #[test]
    fn parse_errors_name_the_source_and_line() {
        let err = parse("a: [1, 2\nb: c\n", "ops/broken.yml").unwrap_err().to_string();
        assert!(err.starts_with("ops/broken.yml: line "), "{err}");
    }

    #[test]
    fn merge_keys_are_applied() {
        let doc = parse("base: &b {x: 1, y: 2}\nchild:\n  <<: *b\n  y: 3\n", "t.yml").unwrap();
        assert_eq!(doc["child"]["x"], Value::from(1));
        assert_eq!(doc["child"]["y"], Value::from(3));
    }

    #[test]
    fn paths_render_like_bosh_errors() {
        let p = YamlPath::root().key("instance_groups").index(2).key("jobs").index(0);
        assert_eq!(p.to_string(), "instance_groups[2].jobs[0]");
    }
}
