//! Job properties as templates and links see them: a dotted name (`router.tls.port`) looked up
//! in the properties the manifest gives a job, falling back to the default the job's spec
//! declares. Only declared properties are visible, as in BOSH.

use serde_json::Value;

use crate::release::manifest::JobSpec;

/// The value at dotted `name` inside `properties` (`a.b.c` → `properties.a.b.c`), when present
/// and not null.
pub fn get_path<'a>(properties: &'a Value, name: &str) -> Option<&'a Value> {
    let mut at = properties;
    for part in name.split('.') {
        at = at.as_object()?.get(part)?;
    }
    (!at.is_null()).then_some(at)
}

/// Property `name` of a job: the manifest's value, else the spec's default. `None` when the
/// spec does not declare it, or declares it without a default and the manifest gives none.
pub fn lookup(spec: &JobSpec, properties: &Value, name: &str) -> Option<Value> {
    let definition = spec.properties.get(name)?;
    if let Some(v) = get_path(properties, name) {
        return Some(v.clone());
    }
    definition.default.as_ref().and_then(|d| serde_json::to_value(d).ok()).filter(|v| !v.is_null())
}

/// Every property the spec declares, valued (manifest value or default; declared ones without
/// either are left out), as one nested object: what a renderer or a link provider exposes.
pub fn resolved(spec: &JobSpec, properties: &Value) -> Value {
    let mut out = Value::Object(Default::default());
    for name in spec.properties.keys() {
        if let Some(v) = lookup(spec, properties, name) {
            set_path(&mut out, name, v);
        }
    }
    out
}

/// Sets dotted `name` in a nested object, making intermediate objects.
pub fn set_path(target: &mut Value, name: &str, value: Value) {
    let mut at = target;
    let parts: Vec<&str> = name.split('.').collect();
    for part in &parts[..parts.len() - 1] {
        if !at.is_object() {
            *at = Value::Object(Default::default());
        }
        at = at
            .as_object_mut()
            .expect("made an object")
            .entry(part.to_string())
            .or_insert(Value::Object(Default::default()));
    }
    if !at.is_object() {
        *at = Value::Object(Default::default());
    }
    at.as_object_mut().expect("made an object").insert(parts[parts.len() - 1].to_string(), value);
}

/// The dotted names of the leaves the manifest sets that the spec does not declare (neither the
/// leaf nor any of its parents): worth a warning, since no template can see them.
pub fn undeclared(spec: &JobSpec, properties: &Value) -> Vec<String> {
    let mut out = Vec::new();
    walk(properties, String::new(), &mut |path| {
        let declared = spec
            .properties
            .keys()
            .any(|d| d == path || path.starts_with(&format!("{d}.")) || d.starts_with(&format!("{path}.")));
        if !declared {
            out.push(path.to_string());
        }
    });
    out
}

fn walk(value: &Value, prefix: String, f: &mut impl FnMut(&str)) {
    match value.as_object() {
        Some(map) if !map.is_empty() => {
            for (k, v) in map {
                let path = if prefix.is_empty() { k.clone() } else { format!("{prefix}.{k}") };
                walk(v, path, f);
            }
        }
        _ if !prefix.is_empty() => f(&prefix),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn spec() -> JobSpec {
        crate::release::manifest::parse(
            "name: web\nproperties:\n  web.port: {default: 8080}\n  web.tls.cert: {description: pem}\n  web.peers: {default: []}\n",
            "spec",
        )
        .unwrap()
    }

    #[test]
    fn manifest_values_win_over_defaults_and_undeclared_ones_are_invisible() {
        let props = json!({"web": {"port": 9000, "colour": "red"}});
        assert_eq!(lookup(&spec(), &props, "web.port"), Some(json!(9000)));
        assert_eq!(lookup(&spec(), &json!({}), "web.port"), Some(json!(8080)));
        assert_eq!(lookup(&spec(), &props, "web.tls.cert"), None, "declared, no default, not given");
        assert_eq!(lookup(&spec(), &props, "web.colour"), None, "not declared");
        assert_eq!(resolved(&spec(), &props), json!({"web": {"port": 9000, "peers": []}}));
        assert_eq!(undeclared(&spec(), &props), vec!["web.colour".to_string()]);
        assert!(undeclared(&spec(), &json!({"web": {"tls": {"cert": "x"}}})).is_empty());
    }
}
