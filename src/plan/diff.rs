//! The manifest diff a plan shows, as `bosh deploy` does: old against new fully merged
//! manifest (the manifest with its cloud config and addons), only the changed paths, each with
//! its parent keys as context, `+`/`-` lines.
//!
//! Arrays of hashes that all carry a `name` are matched by name (an instance group moved in
//! the list is not a change of every group after it); other arrays are compared whole. Values
//! under any `properties` key, and every string holding a secret the caller names (generated
//! variables), print as `<redacted>` unless redaction is off. Pure: values in, lines out.

use serde::{Deserialize, Serialize};

use crate::manifest::yaml::{Mapping, Value};

/// One line of the diff.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DiffLine {
    /// Indentation depth (two spaces each).
    pub depth: usize,
    pub kind: LineKind,
    /// `key:`, `key: value`, `- name: x` …, without indentation or marker.
    pub text: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LineKind {
    Context,
    Added,
    Removed,
}

impl DiffLine {
    /// The line as printed: marker, indentation, text.
    pub fn render(&self) -> String {
        let marker = match self.kind {
            LineKind::Context => ' ',
            LineKind::Added => '+',
            LineKind::Removed => '-',
        };
        format!("{marker} {}{}", "  ".repeat(self.depth), self.text)
    }
}

/// What to hide.
#[derive(Debug, Clone, Default)]
pub struct Redaction {
    /// Off: show everything (`--no-redact`).
    pub off: bool,
    /// Secret values (generated variables' strings): any string containing one is redacted.
    pub secrets: Vec<String>,
}

impl Redaction {
    fn hides(&self, under_properties: bool, v: &Value) -> bool {
        if self.off {
            return false;
        }
        if under_properties {
            return true;
        }
        match v {
            Value::String(s) => self.secrets.iter().any(|secret| !secret.is_empty() && s.contains(secret.as_str())),
            _ => false,
        }
    }
}

const REDACTED: &str = "<redacted>";

/// The lines that turn `old` into `new` (empty when they are equal).
pub fn diff(old: &Value, new: &Value, redaction: &Redaction) -> Vec<DiffLine> {
    let mut out = Vec::new();
    let empty = Value::Mapping(Mapping::new());
    let old = if old.is_null() { &empty } else { old };
    match (old, new) {
        (Value::Mapping(a), Value::Mapping(b)) => diff_maps(a, b, 0, false, redaction, &mut out),
        _ if old != new => {
            emit(old, 0, LineKind::Removed, None, false, redaction, &mut out);
            emit(new, 0, LineKind::Added, None, false, redaction, &mut out);
        }
        _ => {}
    }
    out
}

fn key_text(k: &Value) -> String {
    match k {
        Value::String(s) => s.clone(),
        other => scalar(other),
    }
}

fn scalar(v: &Value) -> String {
    match v {
        Value::Null => "null".into(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::String(s) if s.contains('\n') => format!("{s:?}"),
        Value::String(s) => s.clone(),
        other => serde_json::to_string(&crate::manifest::yaml::to_json(other)).unwrap_or_default(),
    }
}

fn is_properties(k: &Value) -> bool {
    k.as_str() == Some("properties")
}

fn diff_maps(a: &Mapping, b: &Mapping, depth: usize, props: bool, r: &Redaction, out: &mut Vec<DiffLine>) {
    for (k, old) in a {
        if !b.contains_key(k) {
            emit(old, depth, LineKind::Removed, Some(k), props || is_properties(k), r, out);
        }
    }
    for (k, new) in b {
        let under = props || is_properties(k);
        match a.get(k) {
            None => emit(new, depth, LineKind::Added, Some(k), under, r, out),
            Some(old) if old == new => {}
            Some(old) => diff_value(k, old, new, depth, under, r, out),
        }
    }
}

/// A changed value at key `k`: descend into maps and name-matched arrays, else `-old` `+new`.
fn diff_value(k: &Value, old: &Value, new: &Value, depth: usize, props: bool, r: &Redaction, out: &mut Vec<DiffLine>) {
    match (old, new) {
        (Value::Mapping(a), Value::Mapping(b)) => {
            let mut inner = Vec::new();
            diff_maps(a, b, depth + 1, props, r, &mut inner);
            if !inner.is_empty() {
                out.push(DiffLine { depth, kind: LineKind::Context, text: format!("{}:", key_text(k)) });
                out.extend(inner);
            }
        }
        (Value::Sequence(a), Value::Sequence(b)) if named(a) && named(b) => {
            let mut inner = Vec::new();
            diff_named(a, b, depth + 1, props, r, &mut inner);
            if !inner.is_empty() {
                out.push(DiffLine { depth, kind: LineKind::Context, text: format!("{}:", key_text(k)) });
                out.extend(inner);
            }
        }
        _ => {
            emit(old, depth, LineKind::Removed, Some(k), props, r, out);
            emit(new, depth, LineKind::Added, Some(k), props, r, out);
        }
    }
}

fn name_of(v: &Value) -> Option<&Value> {
    v.as_mapping().and_then(|m| m.get("name"))
}

fn named(items: &[Value]) -> bool {
    !items.is_empty() && items.iter().all(|i| name_of(i).is_some())
}

/// Arrays of hashes matched by `name`: a changed item shows as `- name: x` with its changes.
fn diff_named(a: &[Value], b: &[Value], depth: usize, props: bool, r: &Redaction, out: &mut Vec<DiffLine>) {
    for old in a {
        if !b.iter().any(|n| name_of(n) == name_of(old)) {
            emit_item(old, depth, LineKind::Removed, props, r, out);
        }
    }
    for new in b {
        match a.iter().find(|o| name_of(o) == name_of(new)) {
            None => emit_item(new, depth, LineKind::Added, props, r, out),
            Some(old) if old == new => {}
            Some(old) => {
                let (Some(om), Some(nm)) = (old.as_mapping(), new.as_mapping()) else { continue };
                let mut inner = Vec::new();
                diff_maps(om, nm, depth + 1, props, r, &mut inner);
                let name = name_of(new).map(scalar).unwrap_or_default();
                out.push(DiffLine { depth, kind: LineKind::Context, text: format!("- name: {name}") });
                out.extend(inner);
            }
        }
    }
}

/// A whole array item, added or removed.
fn emit_item(v: &Value, depth: usize, kind: LineKind, props: bool, r: &Redaction, out: &mut Vec<DiffLine>) {
    match v.as_mapping() {
        Some(m) if !m.is_empty() => {
            let mut first = true;
            for (k, val) in m {
                let under = props || is_properties(k);
                let mut lines = Vec::new();
                emit(val, depth + 1, kind, Some(k), under, r, &mut lines);
                if first {
                    if let Some(line) = lines.first_mut() {
                        line.depth = depth;
                        line.text = format!("- {}", line.text);
                    }
                    first = false;
                }
                out.extend(lines);
            }
        }
        _ => {
            let text = if r.hides(props, v) { REDACTED.to_string() } else { scalar(v) };
            out.push(DiffLine { depth, kind, text: format!("- {text}") });
        }
    }
}

/// A whole value (added or removed), as YAML-ish lines.
fn emit(
    v: &Value,
    depth: usize,
    kind: LineKind,
    key: Option<&Value>,
    props: bool,
    r: &Redaction,
    out: &mut Vec<DiffLine>,
) {
    let prefix = key.map(|k| format!("{}:", key_text(k)));
    match v {
        Value::Mapping(m) if !m.is_empty() => {
            let child = match &prefix {
                Some(p) => {
                    out.push(DiffLine { depth, kind, text: p.clone() });
                    depth + 1
                }
                None => depth,
            };
            for (k, val) in m {
                emit(val, child, kind, Some(k), props || is_properties(k), r, out);
            }
        }
        Value::Sequence(items) if !items.is_empty() => {
            let child = match &prefix {
                Some(p) => {
                    out.push(DiffLine { depth, kind, text: p.clone() });
                    depth + 1
                }
                None => depth,
            };
            for item in items {
                emit_item(item, child, kind, props, r, out);
            }
        }
        _ => {
            let text = if r.hides(props, v) {
                REDACTED.to_string()
            } else {
                match v {
                    Value::Mapping(_) => "{}".into(),
                    Value::Sequence(_) => "[]".into(),
                    other => scalar(other),
                }
            };
            out.push(DiffLine {
                depth,
                kind,
                text: match prefix {
                    Some(p) => format!("{p} {text}"),
                    None => text,
                },
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::yaml::parse;

    fn lines(old: &str, new: &str, r: &Redaction) -> Vec<String> {
        diff(&parse(old, "old").unwrap(), &parse(new, "new").unwrap(), r).iter().map(DiffLine::render).collect()
    }

    #[test]
    fn equal_documents_have_no_diff() {
        let doc = "name: a\ninstance_groups:\n- name: web\n  instances: 2\n";
        assert!(lines(doc, doc, &Redaction::default()).is_empty());
    }

    #[test]
    fn groups_are_matched_by_name_and_only_changed_paths_show_with_their_parents() {
        let old =
            "name: a\ninstance_groups:\n- name: kv\n  instances: 1\n- name: web\n  instances: 2\n  vm_type: small\n";
        let new =
            "name: a\ninstance_groups:\n- name: web\n  instances: 3\n  vm_type: small\n- name: kv\n  instances: 1\n";
        assert_eq!(
            lines(old, new, &Redaction::default()),
            vec!["  instance_groups:", "    - name: web", "-     instances: 2", "+     instances: 3"]
        );
    }

    #[test]
    fn properties_and_secrets_are_redacted_unless_asked() {
        let old = "properties:\n  port: 80\nvariables_used: s3cret-old\n";
        let new = "properties:\n  port: 81\nvariables_used: s3cret-new\n";
        let r = Redaction { off: false, secrets: vec!["s3cret-old".into(), "s3cret-new".into()] };
        let shown = lines(old, new, &r);
        assert_eq!(
            shown,
            vec![
                "  properties:",
                "-   port: <redacted>",
                "+   port: <redacted>",
                "- variables_used: <redacted>",
                "+ variables_used: <redacted>",
            ]
        );
        let open = lines(old, new, &Redaction { off: true, secrets: r.secrets.clone() });
        assert!(open.contains(&"+   port: 81".to_string()), "{open:?}");
        assert!(open.contains(&"+ variables_used: s3cret-new".to_string()), "{open:?}");
    }

    #[test]
    fn added_and_removed_items_print_whole() {
        let old = "releases:\n- name: kv\n  version: '1'\n";
        let new = "releases:\n- name: kv\n  version: '1'\n- name: web\n  version: '2'\n";
        assert_eq!(lines(old, new, &Redaction::default()), vec!["  releases:", "+   - name: web", "+     version: 2"]);
    }
}
