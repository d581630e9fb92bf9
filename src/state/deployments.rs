//! Deployments, as far as this schema version knows them: a name and the release versions and
//! stemcells it uses, which is what makes "refused while a deployment uses it" enforceable.
//! Instances, VMs, disks and the rest come with later migrations.

use std::collections::BTreeSet;

use rusqlite::{Connection, OptionalExtension};

use super::releases::{find_release, find_version};
use super::stemcells::find_stemcell;
use super::{Event, Result, State, StateError, read_serial, record_fact};

/// The releases and stemcells a deployment uses, each as (name, version), sorted.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct DeploymentUsage {
    pub name: String,
    pub releases: Vec<(String, String)>,
    pub stemcells: Vec<(String, String)>,
}

impl State {
    /// Records which release versions and stemcells deployment `name` uses (creating the
    /// deployment if it is new), replacing what was recorded before. Every one must be uploaded.
    /// Returns the state serial, which moves only if the usage changed.
    pub fn set_deployment_usage(
        &self,
        name: &str,
        releases: &[(String, String)],
        stemcells: &[(String, String)],
    ) -> Result<u64> {
        let releases: BTreeSet<(String, String)> = releases.iter().cloned().collect();
        let stemcells: BTreeSet<(String, String)> = stemcells.iter().cloned().collect();
        self.write(|tx| {
            let mut release_ids = Vec::new();
            for (release, version) in &releases {
                let not_found = || StateError::ReleaseNotFound(format!("{release}/{version}"));
                let release_id = find_release(tx, release)?.ok_or_else(not_found)?;
                release_ids.push(find_version(tx, release_id, version)?.ok_or_else(not_found)?);
            }
            let mut stemcell_ids = Vec::new();
            for (stemcell, version) in &stemcells {
                let id = find_stemcell(tx, stemcell, version)?
                    .ok_or_else(|| StateError::StemcellNotFound(format!("{stemcell}/{version}")))?;
                stemcell_ids.push(id);
            }

            let existing = find_deployment(tx, name)?;
            if let Some(id) = existing {
                let (old_releases, old_stemcells) = usage_of(tx, id)?;
                if old_releases == releases && old_stemcells == stemcells {
                    return Ok(read_serial(tx)?);
                }
            }
            let id = match existing {
                Some(id) => id,
                None => {
                    tx.execute("INSERT INTO deployments (name) VALUES (?1)", [name])?;
                    tx.last_insert_rowid()
                }
            };
            tx.execute("DELETE FROM deployment_releases WHERE deployment_id = ?1", [id])?;
            tx.execute("DELETE FROM deployment_stemcells WHERE deployment_id = ?1", [id])?;
            for release_id in release_ids {
                tx.execute(
                    "INSERT INTO deployment_releases (deployment_id, release_version_id) VALUES (?1, ?2)",
                    (id, release_id),
                )?;
            }
            for stemcell_id in stemcell_ids {
                tx.execute(
                    "INSERT INTO deployment_stemcells (deployment_id, stemcell_id) VALUES (?1, ?2)",
                    (id, stemcell_id),
                )?;
            }
            record_fact(tx, &Event::new("update", "deployment", name).deployment(name))
        })
    }

    /// Every deployment and what it uses, by name.
    pub fn deployments(&self) -> Result<Vec<DeploymentUsage>> {
        self.read(|tx| {
            let mut stmt = tx.prepare("SELECT id, name FROM deployments ORDER BY name")?;
            let rows: Vec<(i64, String)> =
                stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?.collect::<rusqlite::Result<_>>()?;
            let mut out = Vec::new();
            for (id, name) in rows {
                let (releases, stemcells) = usage_of(tx, id)?;
                out.push(DeploymentUsage {
                    name,
                    releases: releases.into_iter().collect(),
                    stemcells: stemcells.into_iter().collect(),
                });
            }
            Ok(out)
        })
    }
}

type Usage = (BTreeSet<(String, String)>, BTreeSet<(String, String)>);

fn usage_of(conn: &Connection, deployment_id: i64) -> rusqlite::Result<Usage> {
    let mut stmt = conn.prepare(
        "SELECT r.name, rv.version FROM deployment_releases dr
         JOIN release_versions rv ON rv.id = dr.release_version_id JOIN releases r ON r.id = rv.release_id
         WHERE dr.deployment_id = ?1",
    )?;
    let releases = stmt.query_map([deployment_id], |r| Ok((r.get(0)?, r.get(1)?)))?.collect::<rusqlite::Result<_>>()?;
    let mut stmt = conn.prepare(
        "SELECT s.name, s.version FROM deployment_stemcells ds JOIN stemcells s ON s.id = ds.stemcell_id
         WHERE ds.deployment_id = ?1",
    )?;
    let stemcells =
        stmt.query_map([deployment_id], |r| Ok((r.get(0)?, r.get(1)?)))?.collect::<rusqlite::Result<_>>()?;
    Ok((releases, stemcells))
}

fn find_deployment(conn: &Connection, name: &str) -> rusqlite::Result<Option<i64>> {
    conn.query_row("SELECT id FROM deployments WHERE name = ?1", [name], |r| r.get(0)).optional()
}
