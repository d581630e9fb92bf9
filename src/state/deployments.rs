//! Deployments: a name, the release versions and stemcells it uses (which is what makes "refused
//! while a deployment uses it" enforceable), the manifest last deployed successfully with the
//! config versions it used, and whether a deploy is in progress.
//!
//! A deployment's row is created by the first fact recorded about it (its usage, an instance,
//! its variables, a deploy starting), so a first deploy that crashes half way still has a
//! record to hang its VMs on. Instances, disks and variables live in their own modules.

use std::collections::BTreeSet;

use rusqlite::{Connection, OptionalExtension};

use super::configs::{ConfigKind, check_config};
use super::releases::{find_release, find_version};
use super::stemcells::find_stemcell;
use super::{Event, NOW, Result, State, StateError, read_serial, record_fact};

/// One line of `rosh deployments`: what a deployment uses, how many instances it has, and
/// when it was last deployed. Releases and stemcells are (name, version), sorted.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct DeploymentSummary {
    pub name: String,
    pub releases: Vec<(String, String)>,
    pub stemcells: Vec<(String, String)>,
    pub instances: usize,
    /// When the manifest was last deployed successfully (RFC 3339, UTC); `None` before that.
    pub last_deployed_at: Option<String>,
    /// When the deploy now in progress started; `None` when none is (or it ended).
    pub deploying_since: Option<String>,
}

/// The manifest a deployment was last deployed with, and the config versions it used.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct DeployedManifest {
    /// The manifest as deployed (after ops files and variables the CLI resolved).
    pub text: String,
    pub cloud_config_id: Option<i64>,
    /// In the order they were applied.
    pub runtime_config_ids: Vec<i64>,
    /// RFC 3339, UTC.
    pub deployed_at: String,
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
            let id = ensure_deployment(tx, name)?;
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

    /// Every deployment, by name.
    pub fn deployments(&self) -> Result<Vec<DeploymentSummary>> {
        self.read(|tx| {
            let mut stmt = tx.prepare(
                "SELECT d.id, d.name, d.deployed_at, d.deploying_since,
                        (SELECT count(*) FROM instances i WHERE i.deployment_id = d.id)
                 FROM deployments d ORDER BY d.name",
            )?;
            type Row = (i64, String, Option<String>, Option<String>, i64);
            let rows: Vec<Row> = stmt
                .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)))?
                .collect::<rusqlite::Result<_>>()?;
            let mut out = Vec::new();
            for (id, name, last_deployed_at, deploying_since, instances) in rows {
                let (releases, stemcells) = usage_of(tx, id)?;
                out.push(DeploymentSummary {
                    name,
                    releases: releases.into_iter().collect(),
                    stemcells: stemcells.into_iter().collect(),
                    instances: instances as usize,
                    last_deployed_at,
                    deploying_since,
                });
            }
            Ok(out)
        })
    }

    /// The manifest `name` was last deployed with; `None` if it never was (or does not exist).
    pub fn deployment_manifest(&self, name: &str) -> Result<Option<DeployedManifest>> {
        self.read(|tx| deployed_manifest(tx, name))
    }

    /// Records a successful deploy of `name` (creating the deployment if it is new): the manifest
    /// text and the config versions it used; ends the deploy in progress, if one was marked.
    /// Every config id must be a stored config of its kind. The serial moves only if something
    /// differs from the last record (an unchanged redeploy keeps its `deployed_at`).
    pub fn record_deployed_manifest(
        &self,
        name: &str,
        text: &str,
        cloud_config_id: Option<i64>,
        runtime_config_ids: &[i64],
    ) -> Result<u64> {
        // The same runtime config listed twice is applied once, where it first appears.
        let mut seen = BTreeSet::new();
        let runtime_config_ids: Vec<i64> = runtime_config_ids.iter().copied().filter(|id| seen.insert(*id)).collect();
        self.write(|tx| {
            if let Some(id) = cloud_config_id {
                check_config(tx, id, ConfigKind::Cloud)?;
            }
            for &id in &runtime_config_ids {
                check_config(tx, id, ConfigKind::Runtime)?;
            }
            let unchanged = deployed_manifest(tx, name)?.is_some_and(|old| {
                old.text == text
                    && old.cloud_config_id == cloud_config_id
                    && old.runtime_config_ids == runtime_config_ids
            });
            if unchanged && deploying_since(tx, name)?.is_none() {
                return Ok(read_serial(tx)?);
            }
            let id = ensure_deployment(tx, name)?;
            tx.execute(
                &format!(
                    "UPDATE deployments SET manifest_text = ?2, cloud_config_id = ?3, deploying_since = NULL,
                     deployed_at = CASE WHEN ?4 AND deployed_at IS NOT NULL THEN deployed_at ELSE {NOW} END
                     WHERE id = ?1"
                ),
                (id, text, cloud_config_id, unchanged),
            )?;
            tx.execute("DELETE FROM deployment_runtime_configs WHERE deployment_id = ?1", [id])?;
            for (position, config_id) in runtime_config_ids.iter().enumerate() {
                tx.execute(
                    "INSERT INTO deployment_runtime_configs (deployment_id, config_id, position) VALUES (?1, ?2, ?3)",
                    (id, config_id, position as i64),
                )?;
            }
            record_fact(tx, &Event::new("deploy", "deployment", name).deployment(name))
        })
    }

    /// Marks a deploy of `name` as started (creating the deployment if it is new) or, with
    /// `false`, as ended without success. A successful deploy ends it through
    /// [`State::record_deployed_manifest`]. Marking what is already so changes nothing.
    pub fn set_deploying(&self, name: &str, deploying: bool) -> Result<u64> {
        self.write(|tx| {
            let since = deploying_since(tx, name)?;
            if since.is_some() == deploying {
                return Ok(read_serial(tx)?);
            }
            let id = ensure_deployment(tx, name)?;
            if deploying {
                tx.execute(&format!("UPDATE deployments SET deploying_since = {NOW} WHERE id = ?1"), [id])?;
            } else {
                tx.execute("UPDATE deployments SET deploying_since = NULL WHERE id = ?1", [id])?;
            }
            let action = if deploying { "start deploy" } else { "end deploy" };
            record_fact(tx, &Event::new(action, "deployment", name).deployment(name))
        })
    }

    /// When the deploy of `name` now in progress started, if one is.
    pub fn deploying(&self, name: &str) -> Result<Option<String>> {
        Ok(deploying_since(&self.conn(), name)?)
    }

    /// Deletes deployment `name` with its usage, deployed manifest and variables. Refused while
    /// it has instances or active disks, unless `drop_records`: then its instance records are
    /// dropped (their VMs, if any, are the caller's to have deleted) and its disks orphaned,
    /// never deleted; orphaned disks outlive the deployment.
    pub fn delete_deployment(&self, name: &str, drop_records: bool) -> Result<u64> {
        self.write(|tx| {
            let id = find_deployment(tx, name)?.ok_or_else(|| StateError::DeploymentNotFound(name.to_string()))?;
            let instances: i64 =
                tx.query_row("SELECT count(*) FROM instances WHERE deployment_id = ?1", [id], |r| r.get(0))?;
            let disks: i64 = tx.query_row(
                "SELECT count(*) FROM disks WHERE deployment = ?1 AND active = 1 AND orphaned_at IS NULL",
                [name],
                |r| r.get(0),
            )?;
            if (instances > 0 || disks > 0) && !drop_records {
                return Err(StateError::DeploymentInUse {
                    deployment: name.to_string(),
                    instances: instances as usize,
                    disks: disks as usize,
                });
            }
            tx.execute(
                &format!(
                    "UPDATE disks SET instance_uuid = NULL, active = 0, orphaned_at = {NOW}
                     WHERE deployment = ?1 AND orphaned_at IS NULL"
                ),
                [name],
            )?;
            tx.execute("DELETE FROM instances WHERE deployment_id = ?1", [id])?;
            tx.execute("DELETE FROM deployments WHERE id = ?1", [id])?;
            let mut event = Event::new("delete", "deployment", name).deployment(name);
            if instances > 0 || disks > 0 {
                event = event.context(format!(
                    "dropped the records of {instances} instance(s); orphaned {disks} active disk(s)"
                ));
            }
            record_fact(tx, &event)
        })
    }
}

fn deployed_manifest(conn: &Connection, name: &str) -> Result<Option<DeployedManifest>> {
    type Row = (i64, Option<String>, Option<i64>, Option<String>);
    let row: Option<Row> = conn
        .query_row(
            "SELECT id, manifest_text, cloud_config_id, deployed_at FROM deployments WHERE name = ?1",
            [name],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
        )
        .optional()?;
    let Some((id, Some(text), cloud_config_id, deployed_at)) = row else { return Ok(None) };
    let mut stmt =
        conn.prepare("SELECT config_id FROM deployment_runtime_configs WHERE deployment_id = ?1 ORDER BY position")?;
    let runtime_config_ids = stmt.query_map([id], |r| r.get(0))?.collect::<rusqlite::Result<_>>()?;
    Ok(Some(DeployedManifest {
        text,
        cloud_config_id,
        runtime_config_ids,
        deployed_at: deployed_at.unwrap_or_default(),
    }))
}

fn deploying_since(conn: &Connection, name: &str) -> rusqlite::Result<Option<String>> {
    Ok(conn
        .query_row("SELECT deploying_since FROM deployments WHERE name = ?1", [name], |r| r.get(0))
        .optional()?
        .flatten())
}

/// The deployment's id, creating its row if it is new.
pub(super) fn ensure_deployment(conn: &Connection, name: &str) -> rusqlite::Result<i64> {
    if let Some(id) = find_deployment(conn, name)? {
        return Ok(id);
    }
    conn.execute("INSERT INTO deployments (name) VALUES (?1)", [name])?;
    Ok(conn.last_insert_rowid())
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

pub(super) fn find_deployment(conn: &Connection, name: &str) -> rusqlite::Result<Option<i64>> {
    conn.query_row("SELECT id FROM deployments WHERE name = ?1", [name], |r| r.get(0)).optional()
}
