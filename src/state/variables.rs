//! Generated variables (passwords, certificates, keys) per deployment: secrets.
//!
//! Stored as JSON values by name. Nothing here logs or formats them: events name the variables
//! that changed, never their values, and no state type that holds them is serialized by the
//! CLI. Values are only replaced, never merged: a regenerated certificate is a new value.

use std::collections::BTreeMap;

use rusqlite::{Connection, params};

use super::deployments::{ensure_deployment, find_deployment};
use super::{Event, NOW, Result, State, StateError, read_serial, record_fact};

impl State {
    /// The variables of `deployment`, by name (none if it does not exist).
    pub fn variables(&self, deployment: &str) -> Result<BTreeMap<String, serde_json::Value>> {
        self.read(|tx| load(tx, deployment))
    }

    /// Adds or replaces the named variables of `deployment` (creating it if it is new), in one
    /// transaction; others are kept. The serial moves only if a value is new or different.
    pub fn set_variables(&self, deployment: &str, values: &BTreeMap<String, serde_json::Value>) -> Result<u64> {
        self.write(|tx| {
            let old = load(tx, deployment)?;
            let changed: Vec<(&String, &serde_json::Value)> =
                values.iter().filter(|(name, value)| old.get(*name) != Some(*value)).collect();
            if changed.is_empty() {
                return Ok(read_serial(tx)?);
            }
            let id = ensure_deployment(tx, deployment)?;
            for (name, value) in &changed {
                tx.execute(
                    &format!(
                        "INSERT INTO variables (deployment_id, name, value_json) VALUES (?1, ?2, ?3)
                         ON CONFLICT (deployment_id, name) DO UPDATE SET value_json = ?3, created_at = {NOW}"
                    ),
                    params![id, name, value.to_string()],
                )?;
            }
            let names: Vec<&str> = changed.iter().map(|(name, _)| name.as_str()).collect();
            record_fact(tx, &Event::new("update", "variables", names.join(", ")).deployment(deployment))
        })
    }
}

fn load(conn: &Connection, deployment: &str) -> Result<BTreeMap<String, serde_json::Value>> {
    let Some(id) = find_deployment(conn, deployment)? else { return Ok(BTreeMap::new()) };
    let mut stmt = conn.prepare("SELECT name, value_json FROM variables WHERE deployment_id = ?1")?;
    let rows = stmt.query_map([id], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))?;
    let mut out = BTreeMap::new();
    for row in rows {
        let (name, json) = row?;
        // The error names the variable, never its value.
        let value = serde_json::from_str(&json)
            .map_err(|source| StateError::Corrupt { what: format!("variable {name} of {deployment}"), source })?;
        out.insert(name, value);
    }
    Ok(out)
}
