//! The compiled package cache, shared by every deployment: a package is compiled once per
//! (name, fingerprint, stemcell OS, stemcell version, dependency key), and every later deploy
//! on that stemcell — of any deployment — reuses the blob.
//!
//! Records stay when the releases that brought the package are deleted, and their blobs count
//! as referenced (see `referenced_blobs` in `releases`), so blob garbage collection never takes
//! a compiled package away. Recording is idempotent: the first record of a key wins, and a second
//! compilation of the same key (two deploys racing) is reported as already there, so its caller
//! uses the recorded blob.

use rusqlite::{Connection, OptionalExtension, params};

use super::{Event, Recorded, Result, State, now, record_fact};

/// What a compiled package is compiled from and for.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize)]
pub struct CompiledKey {
    pub name: String,
    pub fingerprint: String,
    /// The stemcell's operating system (`ubuntu-jammy`).
    pub os: String,
    pub stemcell_version: String,
    /// The sorted `name:fingerprint` of its transitive dependencies.
    pub dependency_key: String,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct CompiledPackageRecord {
    pub key: CompiledKey,
    /// The blobstore name of the compiled tarball.
    pub blob_sha256: String,
    /// The digest as a compiled release's `release.MF` writes it.
    pub sha1: String,
    /// Bytes.
    pub size: u64,
    /// RFC 3339, UTC. Left empty, it is stamped when recorded.
    pub created_at: String,
}

impl State {
    /// The compiled package for `key`, if one was recorded.
    pub fn compiled_package(&self, key: &CompiledKey) -> Result<Option<CompiledPackageRecord>> {
        find(&self.conn(), key)
    }

    /// Records a compiled package; [`Recorded::AlreadyExists`], changing nothing, when its key is
    /// already recorded (whatever blob that record names).
    pub fn record_compiled_package(&self, package: &CompiledPackageRecord) -> Result<Recorded> {
        self.write(|tx| {
            if find(tx, &package.key)?.is_some() {
                return Ok(Recorded::AlreadyExists);
            }
            let created_at = if package.created_at.is_empty() { now(tx)? } else { package.created_at.clone() };
            let key = &package.key;
            tx.execute(
                "INSERT INTO compiled_packages (name, fingerprint, stemcell_os, stemcell_version, dependency_key,
                                               blob_sha256, sha1, size, created_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
                params![
                    key.name,
                    key.fingerprint,
                    key.os,
                    key.stemcell_version,
                    key.dependency_key,
                    package.blob_sha256,
                    package.sha1,
                    package.size as i64,
                    created_at
                ],
            )?;
            let name = format!("{}/{} for {}/{}", key.name, key.fingerprint, key.os, key.stemcell_version);
            let serial = record_fact(tx, &Event::new("compile", "package", name))?;
            Ok(Recorded::Created { serial })
        })
    }

    /// Every compiled package, by name, fingerprint, OS, stemcell version and dependency key.
    pub fn compiled_packages(&self) -> Result<Vec<CompiledPackageRecord>> {
        let conn = self.conn();
        let mut stmt = conn.prepare(&format!(
            "SELECT {COLUMNS} FROM compiled_packages
             ORDER BY name, fingerprint, stemcell_os, stemcell_version, dependency_key"
        ))?;
        Ok(stmt.query_map([], row)?.collect::<rusqlite::Result<_>>()?)
    }
}

const COLUMNS: &str =
    "name, fingerprint, stemcell_os, stemcell_version, dependency_key, blob_sha256, sha1, size, created_at";

fn row(r: &rusqlite::Row<'_>) -> rusqlite::Result<CompiledPackageRecord> {
    Ok(CompiledPackageRecord {
        key: CompiledKey {
            name: r.get(0)?,
            fingerprint: r.get(1)?,
            os: r.get(2)?,
            stemcell_version: r.get(3)?,
            dependency_key: r.get(4)?,
        },
        blob_sha256: r.get(5)?,
        sha1: r.get(6)?,
        size: r.get::<_, i64>(7)? as u64,
        created_at: r.get(8)?,
    })
}

fn find(conn: &Connection, key: &CompiledKey) -> Result<Option<CompiledPackageRecord>> {
    Ok(conn
        .query_row(
            &format!(
                "SELECT {COLUMNS} FROM compiled_packages
                 WHERE name = ?1 AND fingerprint = ?2 AND stemcell_os = ?3 AND stemcell_version = ?4
                   AND dependency_key = ?5"
            ),
            params![key.name, key.fingerprint, key.os, key.stemcell_version, key.dependency_key],
            row,
        )
        .optional()?)
}
