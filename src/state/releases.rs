//! Uploaded releases: versions, and their jobs and packages deduplicated by fingerprint.

use std::collections::BTreeSet;

use rusqlite::{Connection, OptionalExtension, Transaction};

use super::{Event, Recorded, Result, State, StateError, from_json, record_fact, to_json};

/// A release version as uploaded: what its `release.MF` says, with the blob each artifact is stored as.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ReleaseRecord {
    pub name: String,
    pub version: String,
    pub commit_hash: Option<String>,
    pub uncommitted_changes: bool,
    pub jobs: Vec<JobRecord>,
    pub packages: Vec<PackageRecord>,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct JobRecord {
    pub name: String,
    pub version: String,
    pub fingerprint: String,
    /// The digest as `release.MF` writes it: 40-hex SHA-1 or `sha256:<hex>`.
    pub sha1: String,
    /// The blobstore name of the job tarball.
    pub blob_sha256: String,
    /// Names of the packages the job needs.
    pub packages: Vec<String>,
    /// The job's `job.MF` as JSON; opaque to the state.
    pub spec_json: String,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PackageRecord {
    pub name: String,
    pub version: String,
    pub fingerprint: String,
    /// The digest as `release.MF` writes it: 40-hex SHA-1 or `sha256:<hex>`.
    pub sha1: String,
    /// The blobstore name of the package source tarball; `None` in a compiled-only release.
    pub blob_sha256: Option<String>,
    /// Names of the packages it depends on.
    pub dependencies: Vec<String>,
}

/// One line of `rosh releases`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ReleaseSummary {
    pub name: String,
    pub version: String,
    pub commit_hash: Option<String>,
    pub uncommitted_changes: bool,
    /// Deployments using this version, sorted.
    pub in_use_by: Vec<String>,
}

/// What [`State::delete_release`] removed.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Deleted {
    /// The versions deleted, in upload order.
    pub versions: Vec<String>,
    /// Blobs (SHA-256) no release references any more: the caller deletes them from the blobstore.
    pub orphaned_blobs: Vec<String>,
}

impl State {
    /// Records a release version with its jobs and packages, in one transaction. A job or package
    /// already stored under the same name and fingerprint is reused, not stored again. Returns
    /// [`Recorded::AlreadyExists`], changing nothing, when the name/version is already recorded.
    pub fn record_release(&self, release: &ReleaseRecord) -> Result<Recorded> {
        self.record_release_with_requires(release, None)
    }

    /// As [`State::record_release`], keeping the release's `requires:` block (JSON, opaque to the
    /// state; see [`crate::compat::requires`]) with the version, in the same transaction.
    pub fn record_release_with_requires(
        &self,
        release: &ReleaseRecord,
        requires_json: Option<&str>,
    ) -> Result<Recorded> {
        self.write(|tx| {
            let release_id = match find_release(tx, &release.name)? {
                Some(id) => id,
                None => {
                    tx.execute("INSERT INTO releases (name) VALUES (?1)", [&release.name])?;
                    tx.last_insert_rowid()
                }
            };
            if find_version(tx, release_id, &release.version)?.is_some() {
                return Ok(Recorded::AlreadyExists);
            }
            tx.execute(
                "INSERT INTO release_versions (release_id, version, commit_hash, uncommitted_changes, requires_json)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
                (release_id, &release.version, &release.commit_hash, release.uncommitted_changes, requires_json),
            )?;
            let version_id = tx.last_insert_rowid();
            for (position, package) in release.packages.iter().enumerate() {
                let package_id = upsert_package(tx, package)?;
                tx.execute(
                    "INSERT INTO release_version_packages (release_version_id, package_id, version, position)
                     VALUES (?1, ?2, ?3, ?4)",
                    (version_id, package_id, &package.version, position as i64),
                )?;
            }
            for (position, job) in release.jobs.iter().enumerate() {
                let job_id = upsert_job(tx, job)?;
                tx.execute(
                    "INSERT INTO release_version_jobs (release_version_id, job_id, version, position)
                     VALUES (?1, ?2, ?3, ?4)",
                    (version_id, job_id, &job.version, position as i64),
                )?;
            }
            let name = format!("{}/{}", release.name, release.version);
            let serial = record_fact(tx, &Event::new("upload", "release", name))?;
            Ok(Recorded::Created { serial })
        })
    }

    /// Every release version, by name then upload order.
    pub fn releases(&self) -> Result<Vec<ReleaseSummary>> {
        self.read(|tx| {
            let mut stmt = tx.prepare(
                "SELECT rv.id, r.name, rv.version, rv.commit_hash, rv.uncommitted_changes
                 FROM release_versions rv JOIN releases r ON r.id = rv.release_id
                 ORDER BY r.name, rv.id",
            )?;
            let rows = stmt.query_map([], |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    ReleaseSummary {
                        name: r.get(1)?,
                        version: r.get(2)?,
                        commit_hash: r.get(3)?,
                        uncommitted_changes: r.get(4)?,
                        in_use_by: Vec::new(),
                    },
                ))
            })?;
            let mut out = Vec::new();
            for row in rows {
                let (id, mut summary) = row?;
                summary.in_use_by = deployments_using_release(tx, id)?;
                out.push(summary);
            }
            Ok(out)
        })
    }

    /// The recorded release version, jobs and packages in manifest order.
    pub fn release(&self, name: &str, version: &str) -> Result<Option<ReleaseRecord>> {
        self.read(|tx| {
            let Some(release_id) = find_release(tx, name)? else { return Ok(None) };
            let Some(version_id) = find_version(tx, release_id, version)? else { return Ok(None) };
            let (commit_hash, uncommitted_changes) = tx.query_row(
                "SELECT commit_hash, uncommitted_changes FROM release_versions WHERE id = ?1",
                [version_id],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )?;
            let mut packages = Vec::new();
            let mut stmt = tx.prepare(
                "SELECT p.name, rvp.version, p.fingerprint, p.sha1, p.blob_sha256, p.dependencies_json
                 FROM release_version_packages rvp JOIN packages p ON p.id = rvp.package_id
                 WHERE rvp.release_version_id = ?1 ORDER BY rvp.position",
            )?;
            for row in stmt.query_map([version_id], package_row)? {
                packages.push(decode_package(row?)?);
            }
            let mut jobs = Vec::new();
            let mut stmt = tx.prepare(
                "SELECT j.name, rvj.version, j.fingerprint, j.sha1, j.blob_sha256, j.packages_json, j.spec_json
                 FROM release_version_jobs rvj JOIN jobs j ON j.id = rvj.job_id
                 WHERE rvj.release_version_id = ?1 ORDER BY rvj.position",
            )?;
            for row in stmt.query_map([version_id], job_row)? {
                jobs.push(decode_job(row?)?);
            }
            Ok(Some(ReleaseRecord {
                name: name.to_string(),
                version: version.to_string(),
                commit_hash,
                uncommitted_changes,
                jobs,
                packages,
            }))
        })
    }

    /// The `requires:` block recorded with a release version, as JSON; `None` when it declares
    /// none (or was uploaded before rosh kept them), or when the version is not uploaded.
    pub fn release_requires(&self, name: &str, version: &str) -> Result<Option<String>> {
        self.read(|tx| {
            let Some(release_id) = find_release(tx, name)? else { return Ok(None) };
            let Some(version_id) = find_version(tx, release_id, version)? else { return Ok(None) };
            Ok(tx.query_row("SELECT requires_json FROM release_versions WHERE id = ?1", [version_id], |r| r.get(0))?)
        })
    }

    /// Deletes one version of a release, or all of them, in one transaction. Refused while a
    /// deployment uses any of them. Jobs and packages no other release version lists go too, and
    /// their blobs, if nothing else references them, are returned for the caller to delete.
    pub fn delete_release(&self, name: &str, version: Option<&str>) -> Result<Deleted> {
        let label = match version {
            Some(v) => format!("{name}/{v}"),
            None => name.to_string(),
        };
        self.write(|tx| {
            let not_found = || StateError::ReleaseNotFound(label.clone());
            let release_id = find_release(tx, name)?.ok_or_else(not_found)?;
            let versions: Vec<(i64, String)> = match version {
                Some(v) => vec![(find_version(tx, release_id, v)?.ok_or_else(not_found)?, v.to_string())],
                None => {
                    let mut stmt = tx.prepare("SELECT id, version FROM release_versions WHERE release_id = ?1 ORDER BY id")?;
                    stmt.query_map([release_id], |r| Ok((r.get(0)?, r.get(1)?)))?.collect::<rusqlite::Result<_>>()?
                }
            };
            if versions.is_empty() {
                return Err(not_found());
            }
            for (id, v) in &versions {
                let users = deployments_using_release(tx, *id)?;
                if !users.is_empty() {
                    return Err(StateError::ReleaseInUse { release: format!("{name}/{v}"), deployments: users });
                }
            }

            let mut candidates = BTreeSet::new();
            for (id, _) in &versions {
                let mut stmt = tx.prepare(
                    "SELECT p.blob_sha256 FROM release_version_packages rvp JOIN packages p ON p.id = rvp.package_id
                     WHERE rvp.release_version_id = ?1 AND p.blob_sha256 IS NOT NULL
                     UNION
                     SELECT j.blob_sha256 FROM release_version_jobs rvj JOIN jobs j ON j.id = rvj.job_id
                     WHERE rvj.release_version_id = ?1",
                )?;
                for blob in stmt.query_map([id], |r| r.get::<_, String>(0))? {
                    candidates.insert(blob?);
                }
                tx.execute("DELETE FROM release_versions WHERE id = ?1", [id])?;
            }
            tx.execute(
                "DELETE FROM releases WHERE id = ?1 AND NOT EXISTS (SELECT 1 FROM release_versions WHERE release_id = ?1)",
                [release_id],
            )?;
            tx.execute(
                "DELETE FROM packages WHERE NOT EXISTS
                 (SELECT 1 FROM release_version_packages rvp WHERE rvp.package_id = packages.id)",
                [],
            )?;
            tx.execute(
                "DELETE FROM jobs WHERE NOT EXISTS (SELECT 1 FROM release_version_jobs rvj WHERE rvj.job_id = jobs.id)",
                [],
            )?;
            let still_referenced: BTreeSet<String> = referenced_blobs(tx)?.into_iter().collect();
            let orphaned_blobs = candidates.difference(&still_referenced).cloned().collect();
            record_fact(tx, &Event::new("delete", "release", label.clone()))?;
            Ok(Deleted { versions: versions.into_iter().map(|(_, v)| v).collect(), orphaned_blobs })
        })
    }

    /// The stored package with this name and fingerprint, from whichever release brought it first.
    pub fn package_by_fingerprint(&self, name: &str, fingerprint: &str) -> Result<Option<PackageRecord>> {
        let conn = self.conn();
        let row = conn
            .query_row(
                "SELECT name, version, fingerprint, sha1, blob_sha256, dependencies_json
                 FROM packages WHERE name = ?1 AND fingerprint = ?2",
                [name, fingerprint],
                package_row,
            )
            .optional()?;
        row.map(decode_package).transpose()
    }

    /// The stored job with this name and fingerprint, from whichever release brought it first.
    pub fn job_by_fingerprint(&self, name: &str, fingerprint: &str) -> Result<Option<JobRecord>> {
        let conn = self.conn();
        let row = conn
            .query_row(
                "SELECT name, version, fingerprint, sha1, blob_sha256, packages_json, spec_json
                 FROM jobs WHERE name = ?1 AND fingerprint = ?2",
                [name, fingerprint],
                job_row,
            )
            .optional()?;
        row.map(decode_job).transpose()
    }

    /// Every blob (SHA-256) the state still needs, sorted: the rest of the blobstore is garbage.
    /// Compiled packages count: they outlive the releases they were compiled from.
    pub fn referenced_blobs(&self) -> Result<Vec<String>> {
        referenced_blobs(&self.conn())
    }
}

fn referenced_blobs(conn: &Connection) -> Result<Vec<String>> {
    let mut stmt = conn.prepare(
        "SELECT blob_sha256 FROM packages WHERE blob_sha256 IS NOT NULL
         UNION SELECT blob_sha256 FROM jobs
         UNION SELECT blob_sha256 FROM compiled_packages
         ORDER BY 1",
    )?;
    Ok(stmt.query_map([], |r| r.get(0))?.collect::<rusqlite::Result<_>>()?)
}

pub(super) fn find_release(conn: &Connection, name: &str) -> rusqlite::Result<Option<i64>> {
    conn.query_row("SELECT id FROM releases WHERE name = ?1", [name], |r| r.get(0)).optional()
}

pub(super) fn find_version(conn: &Connection, release_id: i64, version: &str) -> rusqlite::Result<Option<i64>> {
    conn.query_row(
        "SELECT id FROM release_versions WHERE release_id = ?1 AND version = ?2",
        (release_id, version),
        |r| r.get(0),
    )
    .optional()
}

pub(super) fn deployments_using_release(conn: &Connection, version_id: i64) -> rusqlite::Result<Vec<String>> {
    let mut stmt = conn.prepare(
        "SELECT d.name FROM deployment_releases dr JOIN deployments d ON d.id = dr.deployment_id
         WHERE dr.release_version_id = ?1 ORDER BY d.name",
    )?;
    stmt.query_map([version_id], |r| r.get(0))?.collect()
}

fn upsert_package(tx: &Transaction<'_>, package: &PackageRecord) -> Result<i64> {
    let existing: Option<(i64, Option<String>)> = tx
        .query_row(
            "SELECT id, blob_sha256 FROM packages WHERE name = ?1 AND fingerprint = ?2",
            [&package.name, &package.fingerprint],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()?;
    match existing {
        // A compiled-only release stored the package without its source; now we have it.
        Some((id, None)) if package.blob_sha256.is_some() => {
            tx.execute(
                "UPDATE packages SET sha1 = ?2, blob_sha256 = ?3 WHERE id = ?1",
                (id, &package.sha1, &package.blob_sha256),
            )?;
            Ok(id)
        }
        Some((id, _)) => Ok(id),
        None => {
            tx.execute(
                "INSERT INTO packages (name, fingerprint, version, sha1, blob_sha256, dependencies_json)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                (
                    &package.name,
                    &package.fingerprint,
                    &package.version,
                    &package.sha1,
                    &package.blob_sha256,
                    to_json(&package.dependencies),
                ),
            )?;
            Ok(tx.last_insert_rowid())
        }
    }
}

fn upsert_job(tx: &Transaction<'_>, job: &JobRecord) -> Result<i64> {
    let existing: Option<i64> = tx
        .query_row("SELECT id FROM jobs WHERE name = ?1 AND fingerprint = ?2", [&job.name, &job.fingerprint], |r| {
            r.get(0)
        })
        .optional()?;
    if let Some(id) = existing {
        return Ok(id);
    }
    tx.execute(
        "INSERT INTO jobs (name, fingerprint, version, sha1, blob_sha256, packages_json, spec_json)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        (
            &job.name,
            &job.fingerprint,
            &job.version,
            &job.sha1,
            &job.blob_sha256,
            to_json(&job.packages),
            &job.spec_json,
        ),
    )?;
    Ok(tx.last_insert_rowid())
}

type PackageRow = (String, String, String, String, Option<String>, String);
type JobRow = (String, String, String, String, String, String, String);

fn package_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<PackageRow> {
    Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?))
}

fn job_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<JobRow> {
    Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?, r.get(6)?))
}

fn decode_package((name, version, fingerprint, sha1, blob_sha256, deps): PackageRow) -> Result<PackageRecord> {
    let dependencies = from_json(|| format!("dependencies of package {name}"), &deps)?;
    Ok(PackageRecord { name, version, fingerprint, sha1, blob_sha256, dependencies })
}

fn decode_job((name, version, fingerprint, sha1, blob_sha256, packages, spec_json): JobRow) -> Result<JobRecord> {
    let packages = from_json(|| format!("packages of job {name}"), &packages)?;
    Ok(JobRecord { name, version, fingerprint, sha1, blob_sha256, packages, spec_json })
}
