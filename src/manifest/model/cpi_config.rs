//! The CPI config (`rosh update-cpi-config`, as `bosh update-cpi-config`): which clouds a
//! director drives, each by name, so that an AZ's `cpi:` key can pick one.
//!
//! ```yaml
//! cpis:
//! - name: laptop
//!   type: local                 # rosh's embedded local CPI
//! - name: rack
//!   type: static                # machines that already exist, reached over OpenSSH
//!   properties: {machines: [...]}
//! - name: vsphere
//!   type: vsphere               # any BOSH CPI executable
//!   exec_path: /opt/bosh-vsphere-cpi/bin/cpi
//!   properties: {host: ..., user: ...}
//! ```
//!
//! As in BOSH, an external CPI's `properties` reach it in the `context` of every call. A type
//! other than `local` and `static` needs `exec_path`. Pure: a parsed document in, a validated
//! [`CpiConfig`] or an error naming the YAML path out. Without a CPI config a director has one
//! CPI, the local one ([`CpiConfig::default_local`]).

use serde::Deserialize;

use crate::manifest::yaml::Value;
use crate::release::manifest::{FormatError, from_value};

/// The name the implicit CPI has when there is no CPI config.
pub const DEFAULT_CPI: &str = "local";

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCpiConfig {
    cpis: Vec<RawCpi>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCpi {
    name: String,
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    exec_path: Option<String>,
    #[serde(default)]
    properties: Option<Value>,
    /// BOSH's key for renaming CPIs; rosh keeps it only to accept such configs.
    #[serde(default)]
    #[allow(dead_code)]
    migrated_from: Option<Value>,
}

/// One CPI a director can drive.
#[derive(Debug, Clone, PartialEq)]
pub struct CpiDef {
    pub name: String,
    pub kind: CpiKind,
    /// `properties`, as JSON (what external CPIs get in `context`, and rosh's own CPIs' settings).
    pub properties: serde_json::Value,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CpiKind {
    Local,
    Static,
    /// A BOSH CPI executable; `kind` is the config's `type` (`aws`, `vsphere`, `external`…).
    External {
        kind: String,
        exec_path: String,
    },
}

/// A validated CPI config.
#[derive(Debug, Clone, PartialEq)]
pub struct CpiConfig {
    pub cpis: Vec<CpiDef>,
}

impl CpiConfig {
    /// What a director without a CPI config uses: the local CPI, named `local`.
    pub fn default_local() -> CpiConfig {
        CpiConfig {
            cpis: vec![CpiDef {
                name: DEFAULT_CPI.to_string(),
                kind: CpiKind::Local,
                properties: serde_json::json!({}),
            }],
        }
    }

    /// Reads a CPI config document (`source_name` names it in errors).
    pub fn from_value(value: Value, source_name: &str) -> Result<CpiConfig, FormatError> {
        let raw: RawCpiConfig = from_value(value, source_name)?;
        let invalid = |message: String| FormatError::Invalid { source_name: source_name.to_string(), message };
        if raw.cpis.is_empty() {
            return Err(invalid("cpis: lists no CPI".to_string()));
        }
        let mut cpis: Vec<CpiDef> = Vec::with_capacity(raw.cpis.len());
        for (i, cpi) in raw.cpis.into_iter().enumerate() {
            if cpi.name.trim().is_empty() {
                return Err(invalid(format!("cpis[{i}].name: must not be empty")));
            }
            if let Some(first) = cpis.iter().position(|c| c.name == cpi.name) {
                return Err(invalid(format!("cpis[{i}].name: `{}` is already the name of cpis[{first}]", cpi.name)));
            }
            let properties = match cpi.properties {
                None | Some(Value::Null) => serde_json::json!({}),
                Some(v) => serde_json::to_value(&v)
                    .map_err(|e| invalid(format!("cpis[{i}].properties: cannot be represented as JSON: {e}")))?,
            };
            if !properties.is_object() {
                return Err(invalid(format!("cpis[{i}].properties: must be a hash")));
            }
            let kind = match (cpi.kind.as_str(), cpi.exec_path) {
                ("local", None) => CpiKind::Local,
                ("static", None) => CpiKind::Static,
                ("local" | "static", Some(_)) => {
                    return Err(invalid(format!(
                        "cpis[{i}].exec_path: type `{}` is built into rosh and takes no executable",
                        cpi.kind
                    )));
                }
                (_, Some(exec_path)) if !exec_path.trim().is_empty() => CpiKind::External { kind: cpi.kind, exec_path },
                (other, _) => {
                    return Err(invalid(format!(
                        "cpis[{i}]: type `{other}` is not built into rosh (local, static): give `exec_path`, the BOSH CPI executable to run"
                    )));
                }
            };
            if kind == CpiKind::Static
                && properties.get("machines").and_then(|m| m.as_array()).is_none_or(|m| m.is_empty())
            {
                return Err(invalid(format!("cpis[{i}].properties.machines: a static CPI needs at least one machine")));
            }
            cpis.push(CpiDef { name: cpi.name, kind, properties });
        }
        Ok(CpiConfig { cpis })
    }

    pub fn get(&self, name: &str) -> Option<&CpiDef> {
        self.cpis.iter().find(|c| c.name == name)
    }

    /// The CPI an AZ without a `cpi:` key uses: the only one, when there is only one.
    pub fn default_cpi(&self) -> Option<&CpiDef> {
        match self.cpis.as_slice() {
            [only] => Some(only),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::yaml;

    fn read(text: &str) -> Result<CpiConfig, String> {
        CpiConfig::from_value(yaml::parse(text, "cpi.yml").unwrap(), "cpi.yml").map_err(|e| e.to_string())
    }

    #[test]
    fn local_static_and_external_cpis_are_read() {
        let cfg = read(
            "cpis:\n\
             - {name: laptop, type: local}\n\
             - {name: rack, type: static, properties: {machines: [{name: m1, address: 127.0.0.1}]}}\n\
             - {name: vs, type: vsphere, exec_path: /opt/cpi, properties: {host: h}}\n",
        )
        .unwrap();
        assert_eq!(cfg.cpis.len(), 3);
        assert_eq!(cfg.get("laptop").unwrap().kind, CpiKind::Local);
        assert_eq!(cfg.get("rack").unwrap().kind, CpiKind::Static);
        assert_eq!(
            cfg.get("vs").unwrap().kind,
            CpiKind::External { kind: "vsphere".into(), exec_path: "/opt/cpi".into() }
        );
        assert_eq!(cfg.get("vs").unwrap().properties["host"], "h");
        assert_eq!(cfg.default_cpi(), None, "three CPIs: an AZ must say which");
        assert_eq!(CpiConfig::default_local().default_cpi().unwrap().kind, CpiKind::Local);
    }

    #[test]
    fn mistakes_are_named_with_their_path() {
        let cases = [
            ("cpis: []", "cpis: lists no CPI"),
            ("cpis: [{name: a, type: aws}]", "cpis[0]: type `aws` is not built into rosh"),
            (
                "cpis: [{name: a, type: local}, {name: a, type: local}]",
                "cpis[1].name: `a` is already the name of cpis[0]",
            ),
            ("cpis: [{name: a, type: local, exec_path: /x}]", "cpis[0].exec_path"),
            ("cpis: [{name: a, type: static}]", "cpis[0].properties.machines"),
            ("cpis: [{name: a, type: local, propertes: {}}]", "propertes"),
            ("cpis: [{name: a, type: local, properties: [1]}]", "cpis[0].properties: must be a hash"),
        ];
        for (text, expected) in cases {
            let err = read(text).unwrap_err();
            assert!(err.starts_with("cpi.yml: "), "{err}");
            assert!(err.contains(expected), "{text}: {err}");
        }
    }
}
